"""``sqlmaster eval compare RUN_A RUN_B``: two evaluations of the same examples, paired example by example.

    sqlmaster eval compare runs/smol-seed1399 runs/smol-seed7
    sqlmaster eval compare runs/a/eval/spider-dev scored/ --examples 10 --json

Each argument is a run directory (``eval/<dataset>/records.jsonl``), its ``eval/`` directory, or one folder
holding ``records.jsonl`` (an ``eval/<dataset>/`` folder or the output of ``sqlmaster eval score``). Datasets that
both runs evaluated are compared, each on its own. Records are paired by their ``id`` (``eval run`` writes one),
else by question, schema and gold; a record whose gold does not run in either evaluation is left out (as
execution accuracy leaves it out).

For each dataset it prints both execution accuracies on the paired examples, the difference B − A with a paired
bootstrap interval (the per-example differences resampled together, :func:`.stats.bootstrap_ci`; seeded), the
examples that flipped each way with their count per cause (:mod:`.causes`: a fixed example by A's cause, a broken
one by B's), and a few of them. Both sides are read under one convention (A's, unless ``--convention``): each
record holds its match under every convention.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.causes import cause_of, count_causes
from sqlmaster.evaluate.conventions import CONVENTIONS
from sqlmaster.rundir import EVAL_DIR, METRICS_FILE, RECORDS_FILE, RunDir

Record = dict[str, Any]


@dataclass
class Comparison:
    """One dataset's paired comparison of run A and run B (difference = B − A, in accuracy points / 100)."""

    dataset: str
    convention: str
    n_pairs: int  # examples in both runs whose gold runs in both
    accuracy_a: float
    accuracy_b: float
    difference: float  # accuracy_b - accuracy_a
    difference_ci: tuple[float, float]  # paired bootstrap, 95%
    fixed: int  # missed by A, right in B
    broken: int  # right in A, missed by B
    fixed_by_cause: dict[str, int] = field(default_factory=dict)  # A's cause of each fixed example
    broken_by_cause: dict[str, int] = field(default_factory=dict)  # B's cause of each broken example
    unpaired_a: int = 0  # A's records with no partner in B
    unpaired_b: int = 0
    left_out: int = 0  # pairs whose gold does not run (in A or B)
    examples_fixed: list[dict[str, Any]] = field(default_factory=list)
    examples_broken: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ input


def find_records(path: Path) -> dict[str, Path]:
    """``dataset -> records.jsonl`` of one argument (a run, its eval/ folder, or one records folder)."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist. Pass a run directory or a folder holding {RECORDS_FILE}")
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory. Pass a run directory or a folder holding {RECORDS_FILE}")
    if (path / RECORDS_FILE).is_file():
        return {_dataset_name(path): path / RECORDS_FILE}
    eval_dir = path if path.name == EVAL_DIR else RunDir(path).eval
    found = {p.parent.name: p for p in sorted(eval_dir.glob(f"*/{RECORDS_FILE}"))}
    if not found:
        raise ConfigError(
            f"no {RECORDS_FILE} under {path} (looked in {path} and {eval_dir}/<dataset>/). "
            "Pass a run directory evaluated by `sqlmaster eval run`, or an `eval score` output folder"
        )
    return found


def _dataset_name(folder: Path) -> str:
    """The dataset a records folder holds: its metrics.json's ``dataset``, else the folder's name."""
    return _metrics_dataset(folder) or folder.resolve().name


def _metrics_dataset(folder: Path) -> str | None:
    """The ``dataset`` named in the folder's metrics.json (``eval run`` writes it; ``eval score`` does not)."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    name = metrics.get("dataset") if isinstance(metrics, dict) else None
    return str(name) if name else None


def read_records(path: Path) -> list[Record]:
    """A records.jsonl's lines; a line that is not a JSON object is an error naming it."""
    records: list[Record] = []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path} ({reason}). Pass an evaluation's {RECORDS_FILE}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        if not isinstance(record, dict) or "execution_match" not in record:
            raise ConfigError(
                f"{path}:{number} is not a scored record (a JSON object with execution_match). Pass the "
                f"{RECORDS_FILE} that `sqlmaster eval run` or `eval score` wrote"
            )
        records.append(record)
    if not records:
        raise ConfigError(f"{path} holds no records. Evaluate the run first (`sqlmaster eval run`)")
    return records


# ------------------------------------------------------------------------------------------------ pairing


def example_key(record: Mapping[str, Any]) -> str:
    """What names an example across runs: its ``id``, else its question, schema (or database) and gold."""
    if record.get("id") is not None:
        return f"id:{record['id']}"
    where = record.get("db_id") or record.get("db_path") or record.get("context") or ""
    return json.dumps([record.get("question"), where, record.get("answer")], ensure_ascii=False)


def pair_records(a: list[Record], b: list[Record]) -> tuple[list[tuple[Record, Record]], int, int]:
    """Pairs (A's record, B's record) in A's order, and the number of unpaired records on each side.

    Records sharing a key pair in the order they come. The same ``id`` on a different question or gold means the
    runs evaluated different datasets: a ConfigError.
    """
    by_key: dict[str, list[Record]] = {}
    for record in b:
        by_key.setdefault(example_key(record), []).append(record)
    pairs = []
    for record in a:
        partners = by_key.get(example_key(record))
        if partners:
            partner = partners.pop(0)
            for name in ("question", "answer"):
                if record.get(name) != partner.get(name):
                    raise ConfigError(
                        f"example {example_key(record)} has a different {name} in each run: they evaluated "
                        "different datasets. Compare evaluations of the same dataset (the same split)"
                    )
            pairs.append((record, partner))
    return pairs, len(a) - len(pairs), len(b) - len(pairs)


def record_convention(record: Mapping[str, Any]) -> str:
    """The convention ``execution_match`` is under: the one not written as ``execution_match_<name>``."""
    main = [c for c in CONVENTIONS if f"execution_match_{c}" not in record]
    return main[0] if len(main) == 1 else CONVENTIONS[-1]


def match_under(record: Mapping[str, Any], convention: str) -> bool | None:
    """The record's match under ``convention``; ``None`` when its gold does not run (under it)."""
    if record.get("gold_valid") is False:
        return None
    value = record.get(
        "execution_match" if record_convention(record) == convention else f"execution_match_{convention}"
    )
    return value if isinstance(value, bool) else None


def _cause(record: Mapping[str, Any], convention: str) -> str:
    """A missed record's cause under ``convention`` (stored for the record's own convention, else computed)."""
    if record_convention(record) == convention:
        return cause_of(record) or "other"
    from sqlmaster.evaluate.causes import classify
    from sqlmaster.evaluate.conventions import apply_convention

    prediction = apply_convention(str(record.get("prediction") or ""), convention)
    gold = apply_convention(str(record.get("answer") or ""), convention)
    return classify(prediction, gold, None if record.get("executes") else record.get("error")).cause


# ------------------------------------------------------------------------------------------------ comparison


def _example(a: Mapping[str, Any], b: Mapping[str, Any], cause: str) -> dict[str, Any]:
    return {
        "key": example_key(a),
        "question": a.get("question"),
        "gold": a.get("answer"),
        "a": a.get("prediction"),
        "b": b.get("prediction"),
        "cause": cause,
    }


def compare_records(
    dataset: str,
    a: list[Record],
    b: list[Record],
    convention: str | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    examples: int = 5,
) -> Comparison:
    """Pair A's and B's records and compare them (see the module docstring). Raises ConfigError when no example
    is in both, or none of the paired ones has a gold that runs."""
    from sqlmaster.evaluate.stats import bootstrap_ci

    pairs, unpaired_a, unpaired_b = pair_records(a, b)
    if not pairs:
        raise ConfigError(
            f"{dataset}: no example is in both runs ({len(a)} and {len(b)} records, none with the same id or "
            "question). Compare evaluations of the same dataset"
        )
    convention = convention or record_convention(a[0])
    scored = [(x, y, mx, my) for x, y in pairs if (mx := match_under(x, convention)) is not None
              and (my := match_under(y, convention)) is not None]  # fmt: skip
    if not scored:
        raise ConfigError(f"{dataset}: none of the {len(pairs)} paired examples has a gold query that runs")
    diffs = [int(my) - int(mx) for _, _, mx, my in scored]
    fixed = [(x, y, _cause(x, convention)) for x, y, mx, my in scored if my and not mx]
    broken = [(x, y, _cause(y, convention)) for x, y, mx, my in scored if mx and not my]
    lo, hi = bootstrap_ci(diffs, resamples, seed)
    n = len(scored)
    return Comparison(
        dataset=dataset,
        convention=convention,
        n_pairs=n,
        accuracy_a=sum(mx for _, _, mx, _ in scored) / n,
        accuracy_b=sum(my for _, _, _, my in scored) / n,
        difference=sum(diffs) / n,
        difference_ci=(lo, hi),
        fixed=len(fixed),
        broken=len(broken),
        fixed_by_cause=count_causes(c for _, _, c in fixed),
        broken_by_cause=count_causes(c for _, _, c in broken),
        unpaired_a=unpaired_a,
        unpaired_b=unpaired_b,
        left_out=len(pairs) - n,
        examples_fixed=[_example(x, y, c) for x, y, c in fixed[:examples]],
        examples_broken=[_example(x, y, c) for x, y, c in broken[:examples]],
    )


def compare_runs(
    run_a: Path, run_b: Path, dataset: str | None = None, convention: str | None = None, **options: Any
) -> list[Comparison]:
    """Compare every dataset both runs evaluated (or only ``dataset``)."""
    if convention is not None and convention not in CONVENTIONS:
        raise ConfigError(f"unknown convention {convention!r}. Use one of: {', '.join(CONVENTIONS)}")
    side_a, side_b = find_records(Path(run_a)), find_records(Path(run_b))
    if len(side_a) == 1 and len(side_b) == 1 and dataset is None:
        (name_a, path_a), (name_b, path_b) = *side_a.items(), *side_b.items()
        if name_a != name_b and _metrics_dataset(path_a.parent) and _metrics_dataset(path_b.parent):
            raise ConfigError(
                f"the runs evaluated different datasets: A {name_a}, B {name_b}. Compare evaluations of the same "
                "dataset"
            )
        common = {name_a if name_a == name_b else f"{name_a} / {name_b}": (path_a, path_b)}
    else:
        common = {name: (side_a[name], side_b[name]) for name in side_a if name in side_b}
    if dataset is not None:
        common = {k: v for k, v in common.items() if k == dataset}
    if not common:
        wanted = f" {dataset!r}" if dataset else ""
        raise ConfigError(
            f"the runs share no dataset{wanted}: A has {', '.join(sorted(side_a))}; B has "
            f"{', '.join(sorted(side_b))}. Compare evaluations of the same dataset (--dataset NAME picks one)"
        )
    return [
        compare_records(name, read_records(pa), read_records(pb), convention, **options)
        for name, (pa, pb) in common.items()
    ]


# ------------------------------------------------------------------------------------------------ output


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _by_cause(counts: dict[str, int]) -> str:
    return ", ".join(f"{cause} {n}" for cause, n in counts.items()) or "–"


def _shown_examples(title: str, examples: list[dict[str, Any]]) -> list[str]:
    lines = [f"  {title}:"] if examples else []
    for e in examples:
        lines += [f"    - {e['question']}  [{e['cause']}]", f"      gold: {e['gold']}"]
        lines += [f"      A: {e['a']}", f"      B: {e['b']}"]
    return lines


def render_text(comparisons: list[Comparison], run_a: Path, run_b: Path) -> str:
    """The terminal report: per dataset, the paired difference B − A, the flips by cause, a few flips."""
    lines = [f"A: {run_a}", f"B: {run_b}"]
    for c in comparisons:
        low, high = c.difference_ci
        lines += [
            "",
            f"{c.dataset} ({c.convention} convention; {c.n_pairs} paired examples)",
            f"  execution accuracy  A {100 * c.accuracy_a:.1f}%  B {100 * c.accuracy_b:.1f}%",
            f"  B - A  {_points(c.difference)} points  [95% paired bootstrap interval {_points(low)}, {_points(high)}]",
            f"  flipped: {c.fixed} fixed (A missed, B right), {c.broken} broken (A right, B missed)",
            f"  fixed, by A's cause:  {_by_cause(c.fixed_by_cause)}",
            f"  broken, by B's cause: {_by_cause(c.broken_by_cause)}",
        ]
        left = [
            f"{n} {what}"
            for n, what in (
                (c.unpaired_a, "of A's records not in B"),
                (c.unpaired_b, "of B's records not in A"),
                (c.left_out, "pairs whose gold does not run"),
            )
            if n
        ]
        if left:
            lines.append(f"  left out: {'; '.join(left)}")
        lines += _shown_examples(f"fixed (first {len(c.examples_fixed)})", c.examples_fixed)
        lines += _shown_examples(f"broken (first {len(c.examples_broken)})", c.examples_broken)
    return "\n".join(lines)


def render_json(comparisons: list[Comparison]) -> str:
    return json.dumps([asdict(c) for c in comparisons], ensure_ascii=False, indent=2)
