"""report.html: the leaderboard and an example explorer in one self-contained page (sqlmaster/evaluate/html_report.py).

The browser test drives the page in a real headless Chromium (Debian's chromium and chromium-driver, through
Selenium, downloading nothing): it opens the file from disk, filters to one cause, opens an example and checks
what is shown against records.jsonl, then takes a screenshot. Without the browser it fails, naming the apt
packages (``apt-get install chromium chromium-driver``); it never skips.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sqlmaster.data.spider import database_path
from sqlmaster.evaluate.html_report import (
    MAX_EXAMPLES,
    MAX_TOTAL_EXAMPLES,
    page_data,
    script_json,
    sql_family,
    write_html,
)
from sqlmaster.evaluate.report import write_report
from sqlmaster.evaluate.score import score_file

REPO = Path(__file__).resolve().parents[1]
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script></script> & "q"'
CAUSES = ("wrong_literal", "wrong_column", "missing_join")


def _record(line: int, gold: str, prediction: str, cause: str | None, **extra: Any) -> dict[str, Any]:
    match = cause is None and extra.get("executes", True)
    record = {
        "question": f"question {line}: how many rows match?",
        "context": "CREATE TABLE singer (singer_id INTEGER, name VARCHAR, age INTEGER)",
        "answer": gold,
        "prediction": prediction,
        "db_id": "concert_singer",
        "execution_match": match,
        "exact_match": match,
        "executes": True,
        "gold_valid": True,
        "gold_nontrivial": True,
        "error": None,
        "rows": {
            "gold": [[line, f"name {line}"]],
            "gold_more": False,
            "prediction": [[line + 1]],
            "prediction_more": True,
        },
        "execution_match_official": match,
        "line": line,
    }
    if cause is not None or line % 3:  # some records carry no cause field at all (scored before causes existed)
        record["cause"] = cause
    record.update(extra)
    return record


def _records(model: str) -> list[dict[str, Any]]:
    """Sixteen records: hits, misses with each cause, a miss without one, an error, and a hostile question."""
    records = []
    for line in range(1, 13):
        cause = None if line % 4 == 0 else CAUSES[line % 3]
        gold = "SELECT count(*) FROM singer WHERE age > 30" if line % 2 else "SELECT name FROM singer ORDER BY age"
        records.append(_record(line, gold, f"SELECT count(*) FROM singer WHERE age > {line}", cause))
    records.append(
        _record(
            13,
            "SELECT name FROM singer",
            "SELECT nam FROM singer",
            None,
            execution_match=False,
            execution_match_official=False,
            executes=False,
            error="sql: no such column: nam",
            rows={"gold": [["Joe"]], "gold_more": False, "prediction": None, "prediction_more": False},
        )
    )
    records.append(_record(14, "SELECT name FROM singer", "SELECT name FROM singer", None, question=HOSTILE))
    records.append(
        _record(
            15,
            "SELECT name FROM singer",
            "SELECT age FROM singer",
            None,
            execution_match=False,
            execution_match_official=False,
        )
    )  # a miss whose record has no cause field
    records.append(
        _record(
            16,
            "SELECT a FROM t UNION SELECT b FROM t",
            "SELECT a FROM t",
            "wrong_literal",
            db_id=None,
            context="CREATE TABLE t (a INT, b INT)",
        )
    )
    return records


def _run(root: Path, name: str, model: str, dataset: str, ea: float) -> Path:
    folder = root / name / "eval" / dataset
    folder.mkdir(parents=True)
    metrics = {
        "dataset": dataset,
        "model": model,
        "execution_accuracy": ea,
        "execution_accuracy_ci": [ea - 0.1, ea + 0.1],
        "exact_match": ea,
        "n": 16,
        "convention": "strict",
        "latency_p50_s": 0.4,
        "latency_p99_s": 0.9,
        "scorer": {"execution_accuracy_by_convention": {"strict": ea, "official": ea + 0.01}},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(model)))
    return root / name


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    runs = [
        _run(root, "smollm2", "smollm2 <b>135m</b>", "spider-dev", 0.4),
        _run(root, "tiny", "tiny", "spider-dev", 0.2),
    ]
    write_report(runs, root / "report")
    # the leaderboard's report.html, again with the causes' descriptions (sqlmaster/evaluate/causes.py's CAUSES)
    board = json.loads((root / "report" / "leaderboard.json").read_text())
    charts = [root / "report" / name for name in board["charts"]]
    write_html(root / "report", board["rows"], charts, "notes", {"wrong_literal": "a value differs <b>"})
    return root / "report" / "report.html"


def _all_records(report: Path) -> list[tuple[str, dict[str, Any]]]:
    """(leaderboard label, record) for every line of every evaluation's records.jsonl."""
    board = json.loads((report.parent / "leaderboard.json").read_text())["rows"]
    return [
        (row["label"], json.loads(line))
        for row in board
        for line in (Path(row["eval_dir"]) / "records.jsonl").read_text().splitlines()
    ]


# ------------------------------------------------------------------------------------------------ without a browser


@pytest.mark.parametrize(
    ("gold", "family"),
    [
        ("SELECT a FROM t UNION SELECT a FROM u", "set_op"),
        ("SELECT a FROM t WHERE b IN (SELECT b FROM u)", "nested"),
        ("SELECT a FROM t JOIN u ON t.id = u.id WHERE a > 1", "join"),
        ("SELECT a FROM t, u", "join"),
        ("SELECT a, count(*) FROM t GROUP BY a", "group_by"),
        ("SELECT a FROM t ORDER BY a LIMIT 1", "order_by"),
        ("SELECT max(a) FROM t WHERE b = 1", "aggregate"),
        ("SELECT a FROM t WHERE b = 'x'", "where"),
        ("SELECT a FROM t", "select"),
        ("SELEC a FROM", "unparsed"),
    ],
)
def test_sql_family_comes_from_the_gold(gold: str, family: str) -> None:
    assert sql_family(gold) == family


def test_the_data_blob_cannot_end_its_script_tag() -> None:
    value = {"q": "</script><script>alert(1)</script><!-- & \udc80", "n": float("nan")}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and text.isascii()
    assert json.loads(text) == {"q": value["q"], "n": None}


def test_the_page_is_self_contained_and_escapes_run_strings(report: Path) -> None:
    page = report.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page), "the page fetches something"
    assert "<b>135m</b>" not in page and "smollm2 &lt;b&gt;135m&lt;/b&gt; (smollm2)" in page  # the leaderboard's label
    assert HOSTILE not in page and "onerror" in page  # the question is in the blob, escaped
    assert page.count("data:image/png;base64,") == 2  # execution accuracy and latency charts, inline
    board = (report.parent / "leaderboard.md").read_text()
    assert "[report.html](report.html)" in board


def test_the_page_caps_records_per_evaluation(tmp_path: Path) -> None:
    folder = tmp_path / "eval" / "spider-dev"
    folder.mkdir(parents=True)
    line = json.dumps(_record(1, "SELECT 1", "SELECT 2", "wrong_literal"))
    (folder / "records.jsonl").write_text((line + "\n") * (MAX_EXAMPLES + 5) + "not json\n")
    row = {"label": "m", "dataset": "spider-dev", "convention": "strict", "eval_dir": str(folder)}
    data = page_data([row])
    assert len(data["examples"]) == MAX_EXAMPLES and len(data["contexts"]) == 1  # the schema is stored once
    evaluation = data["evaluations"][0]
    assert (evaluation["shown"], evaluation["records"], evaluation["unreadable"]) == (MAX_EXAMPLES, MAX_EXAMPLES + 6, 1)
    assert data["examples"][0]["rows"] == _record(1, "", "", None)["rows"]
    many = page_data([row] * 7)  # seven evaluations share the page's total
    assert len(many["examples"]) == 7 * (MAX_TOTAL_EXAMPLES // 7) <= MAX_TOTAL_EXAMPLES


def test_a_hand_edited_rows_field_cannot_grow_the_page(tmp_path: Path) -> None:
    record = _record(1, "SELECT 1", "SELECT 2", "wrong_literal")
    record["rows"] = {"gold": [["x" * 10_000] * 50] * 1000, "prediction": "not a list", "gold_more": False}
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    (example,) = page_data([{"label": "m", "dataset": "d", "eval_dir": str(tmp_path)}])["examples"]
    gold = example["rows"]["gold"]
    assert len(gold) == 10 and len(gold[0]) == 12 and len(gold[0][0]) == 81 and example["rows"]["gold_more"]
    assert example["rows"]["prediction"] is None


def test_scored_records_carry_the_rows_each_query_returned(tmp_path: Path) -> None:
    """The scorer's records.jsonl holds a capped preview of both results on the first database."""
    rows = [
        {
            "question": "q",
            "db_path": str(database_path("concert_singer")),
            "answer": "SELECT count(*) FROM singer",
            "prediction": "SELECT name FROM singer",
        },
        {
            "question": "q",
            "db_path": str(database_path("concert_singer")),
            "answer": "SELECT name FROM singer",
            "prediction": "SELECT nope FROM singer",
        },
        {
            "question": "q",
            "context": "CREATE TABLE t (a INTEGER, b VARCHAR)",
            "answer": "SELECT a FROM t",
            "prediction": "SELECT a FROM t",
        },
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    score_file(tmp_path / "in.jsonl", tmp_path / "out", workers=0)
    wrong, error, right = (json.loads(x)["rows"] for x in (tmp_path / "out" / "records.jsonl").read_text().splitlines())
    assert wrong["gold"] == [[6]] and len(wrong["prediction"]) == 2 and wrong["prediction_more"]  # read 1 past
    assert error["prediction"] is None and error["gold"] and not error["gold_more"]
    assert right["gold"] == right["prediction"] and len(right["gold"]) <= 10


# ------------------------------------------------------------------------------------------------ in Chromium


def _screenshot_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screenshot_report", REPO / "scripts" / "screenshot-report.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    script = _screenshot_script()
    problem = script.missing()
    if problem:
        pytest.fail(f"{problem}; the report.html browser tests fail, never skip, without it")
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = script.start_chromium(profile, 1400, 1000)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(driver: Any, report: Path, fragment: str = "") -> None:
    """Load the page afresh: going from one #fragment to another on the same page would only fire hashchange,
    and the list read next could still be the old one."""
    driver.get("about:blank")
    driver.get(report.as_uri() + fragment)


def _detail(driver: Any, field: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, f'#detail [data-field="{field}"]').get_attribute("textContent"))


def _table(driver: Any, field: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.CSS_SELECTOR, f'#detail [data-field="{field}"]')
    return [
        [td.get_attribute("textContent") for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table.find_elements(By.TAG_NAME, "tr")
    ]


def _listed(driver: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, "#examples tbody tr"))


def test_explorer_filters_to_a_cause_and_shows_the_record(browser: Any, report: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, report)
    records = _all_records(report)
    assert len(_listed(browser)) == len(records) == 32
    Select(browser.find_element(By.ID, "f-cause")).select_by_value("wrong_literal")
    expected = [(m, r) for m, r in records if r.get("cause") == "wrong_literal"]
    listed = _listed(browser)
    assert len(listed) == len(expected) > 0
    assert {tr.find_element(By.CSS_SELECTOR, "td.cause").text for tr in listed} == {"wrong_literal"}
    assert "#cause=wrong_literal" in browser.current_url

    line = int(listed[-1].find_element(By.CSS_SELECTOR, "td.line").text)
    model = listed[-1].find_element(By.CSS_SELECTOR, "td.model").text
    listed[-1].click()  # the list is drawn again, the row selected
    record = next(r for m, r in records if r["line"] == line and m == model)
    assert _detail(browser, "question") == record["question"]
    assert _detail(browser, "gold") == record["answer"] and _detail(browser, "prediction") == record["prediction"]
    assert _detail(browser, "cause") == record["cause"] == "wrong_literal"
    assert _detail(browser, "cause_label") == "a value differs <b>"
    assert _detail(browser, "verdict-strict") == ("✓ yes" if record["execution_match"] else "✗ no")
    assert _detail(browser, "verdict-official") == ("✓ yes" if record["execution_match_official"] else "✗ no")
    assert _detail(browser, "family") == sql_family(record["answer"])
    assert _detail(browser, "context") == record["context"]
    assert _table(browser, "rows-gold") == [[str(v) for v in row] for row in record["rows"]["gold"]]
    assert _table(browser, "rows-prediction") == [[str(v) for v in row] for row in record["rows"]["prediction"]]

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_explorer_shows_a_dash_without_a_cause_and_hostile_text_as_text(browser: Any, report: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, report, "#verdict=wrong_rows&cause=")  # misses whose records name no cause
    listed = _listed(browser)
    assert listed and {tr.find_element(By.CSS_SELECTOR, "td.cause").text for tr in listed} == {"—"}
    listed[0].click()
    assert _detail(browser, "cause") == "—"

    _open(browser, report, "#search=onerror")
    (first, _) = _listed(browser)  # one per run
    first.click()
    assert _detail(browser, "question") == HOSTILE
    assert browser.execute_script("return window.__pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#detail img, #detail script, #examples img")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe  # no script error, no request the page's policy refused
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_a_leaderboard_row_links_to_its_examples(browser: Any, report: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, report, "#cause=wrong_column")
    links = browser.find_elements(By.CSS_SELECTOR, "#leaderboard a.examples:not([data-cause])")
    assert len(links) == 2
    data = json.loads(browser.execute_script("return document.getElementById('report-data').textContent"))
    second = links[1]
    evaluation = data["evaluations"][int(second.get_attribute("data-evaluation"))]
    second.click()
    assert Select(browser.find_element(By.ID, "f-evaluation")).first_selected_option.get_attribute("value") == (
        second.get_attribute("data-evaluation")
    )
    assert Select(browser.find_element(By.ID, "f-cause")).first_selected_option.get_attribute("value") == "*"
    listed = _listed(browser)
    assert len(listed) == evaluation["records"] == 16
    assert {tr.find_element(By.CSS_SELECTOR, "td.model").text for tr in listed} == {evaluation["label"]}


def test_a_leaderboard_cause_links_to_those_misses(browser: Any, report: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, report)
    link = browser.find_elements(By.CSS_SELECTOR, "#leaderboard a.examples[data-cause]")[0]
    cause, evaluation = link.get_attribute("data-cause"), int(link.get_attribute("data-evaluation"))
    count = int(link.find_element(By.XPATH, "..").text.split(", ")[0].split()[-1])
    link.click()
    listed = _listed(browser)
    label = json.loads((report.parent / "leaderboard.json").read_text())["rows"][evaluation]["label"]
    expected = [r for m, r in _all_records(report) if m == label and r.get("cause") == cause]
    assert cause == "wrong_literal" and len(listed) == len(expected) == count  # the most frequent cause
    assert {tr.find_element(By.CSS_SELECTOR, "td.cause").text for tr in listed} == {cause}
