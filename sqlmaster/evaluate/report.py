"""``sqlmaster eval report``: a leaderboard (JSON + Markdown) and PNG charts comparing evaluated runs.

    sqlmaster eval report runs/tiny runs/mistral7b --output-dir report/

Each argument is a run directory (holding ``eval/<dataset>/metrics.json``), an ``eval/`` directory, or one
dataset's directory. Writes into OUTPUT_DIR:

* ``leaderboard.json``: one row per (run, dataset), with every headline metric;
* ``leaderboard.md``: per dataset, runs ranked by execution accuracy (95% interval), then exact match,
  embedding distance and latency;
* ``execution_accuracy.png``: execution accuracy with its bootstrap interval, per run and dataset;
* ``latency.png``: per-example latency p50 and p99 per run;
* ``training_loss.png``: training and evaluation loss per run, when the runs hold a trainer_state.json;
* ``report.html``: all of the above in one self-contained page, with an explorer of each evaluation's examples
  (records.jsonl): filters by verdict, cause, dataset, database and SQL family (:mod:`.html_report`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlmaster import boundedjson
from sqlmaster.atomic import write_json, write_text
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.html_report import write_html
from sqlmaster.rundir import CHECKPOINT_PREFIX, EVAL_DIR, METRICS_FILE, TRAINER_STATE_FILE, RunDir


def find_metrics(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """``(run_dir, metrics.json)`` for every evaluation under ``paths`` (run, eval or dataset directories).

    A metrics.json under ``eval/<dataset>/`` that cannot be read is an error naming the file, not a silent gap
    in the leaderboard.
    """
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{path} is not a directory. Pass run directories that hold eval/<dataset>/metrics.json")
        direct = path / METRICS_FILE
        eval_dir = path if path.name == EVAL_DIR else RunDir(path).eval
        dataset_dir = direct.is_file() and (not eval_dir.is_dir() or path.parent.name == EVAL_DIR)
        if dataset_dir and _load_metrics(direct, strict=True) is not None:
            run_dir = path.parent.parent if path.parent.name == EVAL_DIR else path.parent
            found.append((run_dir, direct))
            continue
        hits = sorted(p for p in eval_dir.glob(f"*/{METRICS_FILE}") if _load_metrics(p, strict=True) is not None)
        if not hits:
            raise ConfigError(
                f"no evaluation results under {path} (looked for {eval_dir}/<dataset>/{METRICS_FILE}). "
                "Run `sqlmaster eval run` first"
            )
        run_dir = eval_dir.parent
        found.extend((run_dir, hit) for hit in hits)
    return found


def _load_metrics(path: Path, strict: bool = False) -> dict[str, Any] | None:
    """An evaluation's metrics, or None when the file is some other metrics.json (training's).

    ``strict``: a file that is not readable JSON is a ConfigError naming it (else None)."""
    try:
        data = boundedjson.load_file(path, "metrics")
    except (OSError, ConfigError) as exc:
        if not strict:
            return None
        reason = str(exc).split(". ")[0] if isinstance(exc, ConfigError) else type(exc).__name__
        raise ConfigError(
            f"{path} is not a readable metrics file ({reason}). Re-run `sqlmaster eval run` for that dataset, or "
            "move the file out of the run directory"
        ) from None
    if not isinstance(data, dict) or "execution_accuracy" not in data or "dataset" not in data:
        return None
    return data


def leaderboard_rows(found: Sequence[tuple[Path, Path]]) -> list[dict[str, Any]]:
    """One row per evaluation, ranked within each dataset by execution accuracy (then exact match)."""
    rows = []
    for run_dir, metrics_path in found:
        m = _load_metrics(metrics_path, strict=True) or {}
        convention = m.get("convention") or "strict"  # evaluations before conventions were named kept DISTINCT
        others = {
            str(c): v
            for c, v in ((m.get("scorer") or {}).get("execution_accuracy_by_convention") or {}).items()
            if c != convention
        }
        rows.append(
            {
                "dataset": str(m["dataset"]),
                "convention": convention,
                "execution_accuracy_other_conventions": others,
                "label": _label(m, run_dir),
                "model": m.get("model"),
                "adapter": m.get("adapter"),
                "run_dir": str(run_dir),
                "eval_dir": str(metrics_path.parent),  # its records.jsonl: report.html's examples
                "execution_accuracy": m.get("execution_accuracy"),
                "execution_accuracy_ci": m.get("execution_accuracy_ci"),
                "exact_match": m.get("exact_match"),
                "exact_match_ci": m.get("exact_match_ci"),
                "executes": m.get("executes"),
                "embedding_distance": m.get("embedding_distance"),
                "embedding_distance_ci": m.get("embedding_distance_ci"),
                "embedder": m.get("embedder"),
                "latency_p50_s": m.get("latency_p50_s"),
                "latency_p99_s": m.get("latency_p99_s"),
                "tokens_per_s": m.get("tokens_per_s"),
                "n": m.get("n"),
                "gold_invalid": m.get("gold_invalid"),
                "template": m.get("template"),
                "backend": m.get("backend"),
                "decoding": m.get("decoding") or "greedy",  # evaluations before voting were greedy
                "miss_causes": m.get("miss_causes") or (m.get("scorer") or {}).get("miss_causes") or {},
                "all_predictions_empty": bool(m.get("all_predictions_empty")),
            }
        )
    rows.sort(key=lambda r: (r["dataset"], -_num(r["execution_accuracy"]), -_num(r["exact_match"])))
    for dataset in {r["dataset"] for r in rows}:
        for rank, row in enumerate((r for r in rows if r["dataset"] == dataset), start=1):
            row["rank"] = rank
    return rows


def _label(metrics: dict[str, Any], run_dir: Path) -> str:
    """The model's name, plus the run directory's name when it says more (e.g. two runs of one model)."""
    model = str(metrics.get("model") or run_dir.name)
    return model if run_dir.name in (model, "", ".") else f"{model} ({run_dir.name})"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else -1.0


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "–"


def _interval(ci: Any) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci):
        return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return ""


def _convention(row: dict[str, Any]) -> str:
    others = "; ".join(f"{c} {_pct(v)}" for c, v in sorted(row["execution_accuracy_other_conventions"].items()))
    return f"{row['convention']}" + (f" ({others})" if others else "")


def _seconds(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


TOP_CAUSES = 5  # causes of misses shown per run under each dataset's table


def _causes_section(subset: list[dict[str, Any]]) -> list[str]:
    """Under a dataset's table: each run's most frequent causes of misses, as shares of its misses."""
    from sqlmaster.evaluate.causes import CAUSES

    counted = [r for r in subset if r.get("miss_causes")]
    if not counted:
        return []
    lines = ["", "Why the misses missed (the top causes, share of the run's misses):", ""]
    lines += ["| model | misses | top causes |", "|---|---:|---|"]
    shown: set[str] = set()
    for r in counted:
        counts = {str(k): int(v) for k, v in r["miss_causes"].items() if isinstance(v, int)}
        total = sum(counts.values())
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP_CAUSES]
        shown.update(k for k, _ in top)
        cells = ", ".join(f"{k} {100 * v / total:.0f}% ({v})" for k, v in top) if total else "–"
        lines.append(f"| {r['label']} | {total} | {cells} |")
    legend = "; ".join(f"{k}: {CAUSES[k]}" for k in CAUSES if k in shown)
    return [*lines, "", f"Causes: {legend}."] if legend else lines


EXPLANATION = (
    "Execution accuracy: the predicted SQL returns the gold query's rows on every test database, under the "
    "named convention (official: the Spider test-suite evaluator's, DISTINCT removed from both queries; "
    "strict: the SQL as written), with the other convention's figure in brackets. "
    "Intervals are 95% bootstrap intervals. Latency is per example, batched generation's wall time shared "
    "among the batch. Decoding: greedy, sampled, or vote@N (N candidates per question, the greedy one among "
    "them; the answer is the one whose result most candidates share)."
)


EMPTY_FLAG = " **(every prediction empty: broken model or adapter)**"  # never an ordinary 0%


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# SQLMaster leaderboard", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        n = ", ".join(sorted({str(r["n"]) for r in subset}))
        lines += [
            f"## {dataset} (n = {n})",
            "",
            "| rank | model | decoding | execution accuracy [95% CI] | convention | exact match | "
            "embedding distance ↓ | latency p50 / p99 s | tokens/s |",
            "|---:|---|---|---|---|---:|---:|---:|---:|",
        ]
        for r in subset:
            distance = f"{r['embedding_distance']:.3f}" if isinstance(r["embedding_distance"], int | float) else "–"
            tokens = f"{r['tokens_per_s']:.0f}" if isinstance(r["tokens_per_s"], int | float) else "–"
            lines.append(
                f"| {r['rank']} | {r['label']}{EMPTY_FLAG if r['all_predictions_empty'] else ''} | {r['decoding']} | "
                f"{_pct(r['execution_accuracy'])}{_interval(r['execution_accuracy_ci'])} "
                f"| {_convention(r)} | {_pct(r['exact_match'])} | {distance} | {_seconds(r['latency_p50_s'])} / "
                f"{_seconds(r['latency_p99_s'])} | {tokens} |"
            )
        embedders = sorted({str(r["embedder"]) for r in subset if r["embedder"]})
        invalid = sorted({int(r["gold_invalid"] or 0) for r in subset})
        notes = [f"embedding distance by {', '.join(embedders)}"] if embedders else []
        if invalid != [0]:
            counts = " or ".join(map(str, invalid))
            notes.append(f"{counts} gold queries that do not run are left out of execution accuracy (n_scored)")
        if notes:
            text = "; ".join(notes)
            lines += ["", text[0].upper() + text[1:] + "."]
        lines += _causes_section(subset)
        lines.append("")
    lines.append(EXPLANATION)
    return "\n".join(lines).rstrip() + "\n"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display in pods or CI
    import matplotlib.pyplot as plt

    return plt


def plot_execution_accuracy(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: one group per dataset, one bar per run, with the bootstrap interval as error bars."""
    plt = _plt()
    datasets = sorted({r["dataset"] for r in rows})
    labels = sorted({r["label"] for r in rows})
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(datasets) * max(1, len(labels)) ** 0.5 + 3), 4.2))
    for i, label in enumerate(labels):
        xs: list[float] = []
        ys: list[float] = []
        errs: list[list[float]] = [[], []]
        for j, dataset in enumerate(datasets):
            row = next((r for r in rows if r["dataset"] == dataset and r["label"] == label), None)
            if row is None or not isinstance(row["execution_accuracy"], int | float):
                continue
            value = 100 * row["execution_accuracy"]
            lo, hi = row.get("execution_accuracy_ci") or (None, None)
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(value)
            errs[0].append(value - 100 * lo if isinstance(lo, int | float) else 0.0)
            errs[1].append(100 * hi - value if isinstance(hi, int | float) else 0.0)
        bars = ax.bar(xs, ys, width, yerr=errs, capsize=4, label=label)
        # Values sit inside the bars: above them is where the interval's whisker goes.
        ax.bar_label(bars, fmt="%.1f", label_type="center", fontsize=8)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("execution accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Execution accuracy with 95% bootstrap intervals")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_latency(rows: list[dict[str, Any]], path: Path) -> Path:
    """p50 and p99 per-example latency per run and dataset."""
    plt = _plt()
    entries = [r for r in rows if isinstance(r["latency_p50_s"], int | float)]
    names = [f"{r['label']}\n{r['dataset']}" for r in entries]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(entries) + 2), 4.0))
    xs = range(len(entries))
    ax.bar([x - 0.2 for x in xs], [r["latency_p50_s"] for r in entries], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [r["latency_p99_s"] or 0.0 for r in entries], 0.4, label="p99")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("seconds per example")
    ax.set_title("Generation latency per example")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def loss_history(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]] | None:
    """(train, eval) loss by step from the run's newest trainer_state.json, if it has a readable one (the chart
    is optional: a damaged file leaves it out rather than failing the report)."""
    rd = RunDir(run_dir)
    pattern = f"{CHECKPOINT_PREFIX}*/{TRAINER_STATE_FILE}"
    candidates = [rd.path / TRAINER_STATE_FILE, *rd.checkpoints.glob(pattern)]
    states = []
    for path in candidates:
        try:
            state = boundedjson.load_file(path, "trainer state") if path.is_file() else None
        except (OSError, ConfigError):
            state = None
        if isinstance(state, dict):
            states.append(state)
    if not states:
        return None
    newest = max(states, key=lambda st: _num(st.get("global_step")))
    history = newest.get("log_history")
    history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    try:
        train = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
        evals = [(int(h["step"]), float(h["eval_loss"])) for h in history if "eval_loss" in h and "step" in h]
    except (TypeError, ValueError):
        return None
    return (train, evals) if train or evals else None


def plot_training_loss(
    histories: dict[str, tuple[list[tuple[int, float]], list[tuple[int, float]]]], path: Path
) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for index, (label, (train, evals)) in enumerate(sorted(histories.items())):
        color = f"C{index % 10}"
        if train:
            ax.plot(*zip(*train, strict=True), color=color, label=f"{label} train")
        if evals:
            ax.plot(
                *zip(*evals, strict=True), color=color, linestyle="--", marker="o", markersize=3, label=f"{label} eval"
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training and evaluation loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dirs: Sequence[Path], output_dir: Path) -> str:
    """Write leaderboard.json, leaderboard.md and the charts into ``output_dir``; return the Markdown."""
    if not run_dirs:
        raise ConfigError("no run directories given. Pass one or more directories that hold eval/<dataset>/")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output-dir {output_dir} is a file, not a directory. Pass a directory path")
    found = find_metrics(run_dirs)
    rows = leaderboard_rows(found)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror
        raise ConfigError(f"cannot create --output-dir {output_dir} ({reason}). Choose a writable path") from None
    if not os.access(output_dir, os.W_OK):
        raise ConfigError(
            f"cannot write into --output-dir {output_dir} (permission denied). Choose a writable path"
        ) from None
    markdown = render_markdown(rows)
    charts = [plot_execution_accuracy(rows, output_dir / "execution_accuracy.png")]
    if any(isinstance(r["latency_p50_s"], int | float) for r in rows):
        charts.append(plot_latency(rows, output_dir / "latency.png"))
    histories = {}
    for row in rows:
        history = loss_history(Path(row["run_dir"]))
        if history is not None:
            histories[row["label"]] = history
    if histories:
        charts.append(plot_training_loss(histories, output_dir / "training_loss.png"))
    markdown += "\n" + "\n".join(f"![{c.stem.replace('_', ' ')}]({c.name})" for c in charts) + "\n"
    from sqlmaster.evaluate.causes import CAUSES

    html = write_html(output_dir, rows, charts, EXPLANATION, cause_labels=CAUSES)
    markdown += (
        f"\nEvery example, with filters by verdict, cause, database and SQL family: [{html.name}]({html.name})\n"
    )
    write_text(output_dir / "leaderboard.md", markdown, errors="backslashreplace")
    write_json(output_dir / "leaderboard.json", {"rows": rows, "charts": [c.name for c in charts]})
    return markdown
