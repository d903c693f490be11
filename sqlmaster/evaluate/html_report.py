"""``report.html``: the leaderboard, its charts and an example explorer in one self-contained file.

``sqlmaster eval report`` and ``sqlmaster quickstart`` write it beside ``leaderboard.md``. Open it from disk (a
``file://`` URL) or after ``sqlctl artifacts`` downloaded it: nothing is fetched when it is viewed. Its
Content-Security-Policy allows no network at all, the charts are PNG data URIs and the script and styles are
inline (``html_report.js`` and ``html_report.css`` beside this module).

The explorer reads each evaluation's ``records.jsonl`` (the scorer's output beside ``metrics.json``): the question,
the schema (``context``), gold and predicted SQL, the verdict under each convention, the ``cause`` of a miss when
the records carry one (``—`` when not), and the rows both queries returned on the first database (the scorer's
``rows`` preview). It filters by evaluation, dataset, verdict, cause, database and SQL family (:func:`sql_family`,
from the gold) and searches free text; a leaderboard row links to its examples.

Every string from a run is escaped: the leaderboard here with :func:`html.escape`, the examples in the browser
through ``textContent`` only. The records travel as one JSON blob in a ``<script type="application/json">`` whose
``<``, ``>`` and ``&`` are JSON escapes, so no value can end the tag. Size stays bounded on large runs: at most
``MAX_EXAMPLES`` records per evaluation and ``MAX_TOTAL_EXAMPLES`` in all (the page says how many it left out),
long strings cut at ``MAX_CHARS``, each schema stored once, at most the scorer's ``PREVIEW_ROWS`` rows per
query. A report of three Spider dev runs (2,916 examples) is 2.3 MB.
"""

from __future__ import annotations

import base64
import functools
import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlmaster.atomic import finite, write_text
from sqlmaster.rundir import RECORDS_FILE

HTML_FILE = "report.html"
MAX_EXAMPLES = 3000  # records per evaluation embedded in the page (Spider dev has 1,034); the rest are counted
MAX_TOTAL_EXAMPLES = 15000  # over all evaluations (~780 bytes each: ~12 MB); each gets an equal share
MAX_CHARS = 4000  # a question, SQL or error longer than this is cut, with "…"
MAX_CONTEXT_CHARS = 20000  # a schema longer than this is cut (Spider dev's largest is 3,012 characters)
FAMILIES = ("set_op", "nested", "join", "group_by", "order_by", "aggregate", "where", "select")
_ASSETS = Path(__file__).parent
# Nothing from the network, ever: images are data URIs, script and styles inline.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@functools.lru_cache(maxsize=4096)  # several runs share their golds
def sql_family(gold: str) -> str:
    """The gold query's family, the first that applies in :data:`FAMILIES` order (``other`` when not a SELECT,
    ``unparsed`` when sqlglot cannot read it): set_op (UNION / INTERSECT / EXCEPT), nested (a subquery), join,
    group_by, order_by, aggregate, where, select."""
    from sqlglot import exp

    from sqlmaster.evaluate.sqlast import parse

    tree = parse(gold)
    if tree is None:
        return "unparsed"
    if isinstance(tree, exp.SetOperation):
        return "set_op"
    if not isinstance(tree, exp.Select):
        return "other"
    checks = (
        ("nested", lambda: any(s is not tree for s in tree.find_all(exp.Select))),
        ("join", lambda: bool(tree.args.get("joins"))),  # FROM a, b is a join too
        ("group_by", lambda: tree.args.get("group") is not None),
        ("order_by", lambda: tree.args.get("order") is not None),
        ("aggregate", lambda: tree.find(exp.AggFunc) is not None),
        ("where", lambda: tree.args.get("where") is not None),
    )
    return next((name for name, check in checks if check()), "select")


def _cut(value: Any, limit: int = MAX_CHARS) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _rows(value: Any) -> dict[str, Any] | None:
    """The scorer's ``rows`` preview, capped again here (a hand-edited records.jsonl cannot grow the page)."""
    from sqlmaster.evaluate.execution import PREVIEW_ROWS
    from sqlmaster.evaluate.score import PREVIEW_CHARS, PREVIEW_COLUMNS

    if not isinstance(value, dict):
        return None
    preview: dict[str, Any] = {}
    for key in ("gold", "prediction"):
        rows = value.get(key)
        rows = [r for r in rows if isinstance(r, list)] if isinstance(rows, list) else None
        cells = [[_cell(v, PREVIEW_CHARS) for v in r[:PREVIEW_COLUMNS]] for r in rows[:PREVIEW_ROWS]] if rows else rows
        preview[key] = cells
        preview[f"{key}_more"] = bool(value.get(f"{key}_more")) or (rows is not None and len(rows) > PREVIEW_ROWS)
    return preview


def _cell(value: Any, limit: int) -> Any:
    return value if value is None or isinstance(value, bool | int | float) else _cut(value, limit)


def _database(record: dict[str, Any]) -> str:
    if isinstance(record.get("db_id"), str) and record["db_id"]:
        return str(record["db_id"])
    if isinstance(record.get("db_path"), str) and record["db_path"]:
        return Path(record["db_path"]).stem
    return "(synthesized)"


def _verdict(record: dict[str, Any]) -> str:
    """One word for the filter: match, wrong_rows (ran, other rows), error (did not run), gold_invalid."""
    if record.get("worker_failure"):
        return "error"
    if record.get("gold_valid") is False:
        return "gold_invalid"
    if record.get("execution_match") is True:
        return "match"
    return "wrong_rows" if record.get("executes") else "error"


def _example(record: dict[str, Any], evaluation: int, convention: str, contexts: dict[str, int]) -> dict[str, Any]:
    """The page's form of one records.jsonl line (short strings, the schema as an index into ``contexts``)."""
    context = _cut(record.get("context"), MAX_CONTEXT_CHARS)
    verdicts = {convention: record.get("execution_match")}
    verdicts.update(
        {k.removeprefix("execution_match_"): v for k, v in record.items() if k.startswith("execution_match_")}
    )
    gold: str = record["answer"] if isinstance(record.get("answer"), str) else ""
    cause = record.get("cause")
    return {
        "evaluation": evaluation,
        "line": record.get("line"),
        "question": _cut(record.get("question")) or "",
        "context": None if context is None else contexts.setdefault(context, len(contexts)),
        "gold": _cut(gold),
        "prediction": _cut(record.get("prediction")),
        "verdict": _verdict(record),
        "verdicts": {str(k): v if isinstance(v, bool) else None for k, v in verdicts.items()},
        "exact_match": record.get("exact_match"),
        "executes": record.get("executes"),
        "error": _cut(record.get("error")),
        "cause": cause if isinstance(cause, str) and cause else None,
        "cause_detail": _cut(record.get("cause_detail"), 200),
        "database": _database(record),
        "family": sql_family(gold),
        "rows": _rows(record.get("rows")),
    }


def read_records(path: Path, cap: int = MAX_EXAMPLES) -> tuple[list[dict[str, Any]], int, int]:
    """``(records, total, unreadable)``: the first ``cap`` JSON objects of a records.jsonl, how many lines it
    has, and how many of them were not JSON objects (left out of the page, and counted there)."""
    records: list[dict[str, Any]] = []
    total = unreadable = 0
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError:
        return [], 0, 0
    with handle:
        for line in handle:
            if not line.strip():
                continue
            total += 1
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                record = None
            if not isinstance(record, dict):
                unreadable += 1
            elif len(records) < cap:
                records.append(record)
    return records, total, unreadable


def page_data(rows: Sequence[dict[str, Any]], cause_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the page's script reads: the evaluations (leaderboard rows), the schemas, the examples, and each cause
    id's one-line description (``cause_labels``; the page shows the bare ids without them)."""
    contexts: dict[str, int] = {}
    evaluations, examples = [], []
    cap = min(MAX_EXAMPLES, MAX_TOTAL_EXAMPLES // max(1, len(rows)))
    for index, row in enumerate(rows):
        eval_dir = row.get("eval_dir")
        records, total, unreadable = read_records(Path(eval_dir) / RECORDS_FILE, cap) if eval_dir else ([], 0, 0)
        convention = str(row.get("convention") or "strict")
        examples += [_example(r, index, convention, contexts) for r in records]
        evaluations.append(
            {
                "label": row["label"],
                "dataset": row["dataset"],
                "convention": convention,
                "records": total,
                "shown": len(records),
                "unreadable": unreadable,
            }
        )
    labels = {str(k): str(v) for k, v in (cause_labels or {}).items()}
    return {"evaluations": evaluations, "contexts": list(contexts), "examples": examples, "cause_labels": labels}


def script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` (each a JSON escape), ASCII only
    (a lone surrogate stays its ``\\udXXX`` escape), no NaN."""
    text = json.dumps(finite(data), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _pct(value: Any, ci: Any = None) -> str:
    if not isinstance(value, int | float):
        return "–"
    text = f"{100 * value:.1f}%"
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci):
        text += f" <span class=ci>[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]</span>"
    return text


TOP_CAUSES = 3  # causes of misses linked from each leaderboard row


def _top_causes(index: int, examples: Sequence[dict[str, Any]]) -> str:
    """The evaluation's most frequent causes of misses (from its records), each a link to those examples."""
    counts = Counter(
        e["cause"] or "" for e in examples if e["evaluation"] == index and e["verdict"] not in ("match", "gold_invalid")
    )
    links = []
    for cause, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CAUSES]:
        href = html.escape(f"#evaluation={index}&cause={quote(cause)}")
        attrs = f'class=examples href="{href}" data-evaluation="{index}" data-cause="{html.escape(cause)}"'
        links.append(f"<a {attrs}>{html.escape(cause or '—')}</a> {n}")
    return ", ".join(links) or "–"


def _leaderboard_row(index: int, row: dict[str, Any], examples: Sequence[dict[str, Any]]) -> str:
    others = "; ".join(f"{c} {_pct(v)}" for c, v in sorted(row["execution_accuracy_other_conventions"].items()))
    latency = [row.get("latency_p50_s"), row.get("latency_p99_s")]
    cells = [
        str(row["rank"]),
        html.escape(str(row["label"])),
        html.escape(str(row["decoding"])),
        _pct(row["execution_accuracy"], row["execution_accuracy_ci"]),
        html.escape(str(row["convention"]) + (f" ({others})" if others else "")),
        _pct(row["exact_match"]),
        " / ".join(f"{v:.2f}" if isinstance(v, int | float) else "–" for v in latency),
        html.escape(str(row.get("n"))),
        f'<a class=examples href="#evaluation={index}" data-evaluation="{index}">examples</a>',
        _top_causes(index, examples),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_leaderboard(rows: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]]) -> str:
    """The leaderboard as HTML tables, one per dataset, every run's string escaped; each row links to its
    examples and to its misses of each of its top causes."""
    parts = []
    head = (
        "<tr><th>rank</th><th>model</th><th>decoding</th><th>execution accuracy [95% CI]</th><th>convention</th>"
        "<th>exact match</th><th>latency p50 / p99 s</th><th>n</th><th></th><th>top causes of misses</th></tr>"
    )
    for dataset in sorted({str(r["dataset"]) for r in rows}):
        body = "".join(_leaderboard_row(i, r, examples) for i, r in enumerate(rows) if r["dataset"] == dataset)
        parts.append(
            f"<h3>{html.escape(dataset)}</h3><table class=board><thead>{head}</thead><tbody>{body}</tbody></table>"
        )
    return "\n".join(parts)


def _charts(charts: Sequence[Path]) -> str:
    images = []
    for chart in charts:
        data = base64.b64encode(chart.read_bytes()).decode("ascii")
        alt = html.escape(chart.stem.replace("_", " "))
        images.append(
            f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'
        )
    return "".join(images)


def render_html(
    rows: Sequence[dict[str, Any]], charts: Sequence[Path], notes: str, cause_labels: Mapping[str, str] | None = None
) -> str:
    """The whole page: leaderboard, charts, the explorer's shell, the data blob and the inline script."""
    data = page_data(rows, cause_labels)
    css = (_ASSETS / "html_report.css").read_text(encoding="utf-8")
    js = (_ASSETS / "html_report.js").read_text(encoding="utf-8")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SQLMaster report</title><style>{css}</style></head>
<body>
<header><h1>SQLMaster report</h1></header>
<div class=top><section id=leaderboard><h2>Leaderboard</h2>{render_leaderboard(rows, data["examples"])}
<p class=notes>{html.escape(notes)}</p></section>
<section id=charts><h2>Charts</h2><div class=charts>{_charts(charts)}</div></section></div>
<section id=explorer><h2>Examples</h2>
<form id=filters onsubmit="return false">
<label>evaluation <select id=f-evaluation></select></label>
<label>dataset <select id=f-dataset></select></label>
<label>verdict <select id=f-verdict></select></label>
<label>cause <select id=f-cause></select></label>
<label>database <select id=f-database></select></label>
<label>SQL family <select id=f-family></select></label>
<label>search <input id=f-search type=search placeholder="question, SQL, error"></label>
</form>
<p id=count></p><div id=causes></div><p id=capped></p>
<div class=explorer><div class=list><table id=examples><thead><tr><th>#</th><th>question</th><th>verdict</th>
<th>cause</th><th>family</th><th>database</th><th>model</th><th>dataset</th></tr></thead><tbody></tbody></table>
<button id=more type=button hidden>show more</button></div>
<div id=detail hidden></div></div>
<noscript>The example explorer needs JavaScript; the leaderboard and charts above do not.</noscript>
</section>
<script type="application/json" id=report-data>{script_json(data)}</script>
<script>{js}</script>
</body></html>
"""


def write_html(
    output_dir: Path,
    rows: Sequence[dict[str, Any]],
    charts: Sequence[Path],
    notes: str,
    cause_labels: Mapping[str, str] | None = None,
) -> Path:
    """Write ``report.html`` into ``output_dir`` (atomically) and return its path."""
    path = Path(output_dir) / HTML_FILE
    write_text(path, render_html(rows, charts, notes, cause_labels), errors="backslashreplace")
    return path
