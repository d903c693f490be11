"""``sqlmaster eval report``: a leaderboard (JSON + Markdown) and PNG charts comparing evaluated runs.

    sqlmaster eval report runs/tiny runs/mistral7b --output-dir report/

Each argument is a run directory (holding ``eval/<dataset>/metrics.json``), an ``eval/`` directory, or one
dataset's directory. Writes into OUTPUT_DIR:

* ``leaderboard.json``: one row per (run, dataset), with every headline metric;
* ``leaderboard.md``: per dataset, runs ranked by execution accuracy (95% interval), then exact match,
  embedding distance and latency;
* ``execution_accuracy.png``: execution accuracy with its bootstrap interval, per run and dataset;
* ``latency.png``: per-example latency p50 and p99 per run;
* ``training_loss.png``: training and evaluation loss per run, when the runs hold a trainer_state.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError

METRICS_FILE = "metrics.json"


def find_metrics(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """``(run_dir, metrics.json)`` for every evaluation under ``paths`` (run, eval or dataset directories)."""
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{path} is not a directory. Pass run directories that hold eval/<dataset>/metrics.json")
        if (path / METRICS_FILE).is_file() and _is_eval_metrics(path / METRICS_FILE):
            run_dir = path.parent.parent if path.parent.name == "eval" else path.parent
            found.append((run_dir, path / METRICS_FILE))
            continue
        eval_dir = path if path.name == "eval" else path / "eval"
        hits = sorted(p for p in eval_dir.glob(f"*/{METRICS_FILE}") if _is_eval_metrics(p))
        if not hits:
            raise ConfigError(
                f"no evaluation results under {path} (looked for {eval_dir}/<dataset>/{METRICS_FILE}). "
                "Run `sqlmaster eval run` first"
            )
        run_dir = eval_dir.parent
        found.extend((run_dir, hit) for hit in hits)
    return found


def _is_eval_metrics(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "execution_accuracy" in data and "dataset" in data


def leaderboard_rows(found: Sequence[tuple[Path, Path]]) -> list[dict[str, Any]]:
    """One row per evaluation, ranked within each dataset by execution accuracy (then exact match)."""
    rows = []
    for run_dir, metrics_path in found:
        m = json.loads(metrics_path.read_text())
        rows.append(
            {
                "dataset": m["dataset"],
                "label": _label(m, run_dir),
                "model": m.get("model"),
                "adapter": m.get("adapter"),
                "run_dir": str(run_dir),
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


def _seconds(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# SQLMaster leaderboard", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        n = ", ".join(sorted({str(r["n"]) for r in subset}))
        lines += [
            f"## {dataset} (n = {n})",
            "",
            "| rank | model | execution accuracy [95% CI] | exact match | embedding distance ↓ | "
            "latency p50 / p99 s | tokens/s |",
            "|---:|---|---|---:|---:|---:|---:|",
        ]
        for r in subset:
            distance = f"{r['embedding_distance']:.3f}" if isinstance(r["embedding_distance"], int | float) else "–"
            tokens = f"{r['tokens_per_s']:.0f}" if isinstance(r["tokens_per_s"], int | float) else "–"
            lines.append(
                f"| {r['rank']} | {r['label']} | "
                f"{_pct(r['execution_accuracy'])}{_interval(r['execution_accuracy_ci'])} "
                f"| {_pct(r['exact_match'])} | {distance} | {_seconds(r['latency_p50_s'])} / "
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
        lines.append("")
    lines.append(
        "Execution accuracy: the predicted SQL returns the gold query's rows on every test database. "
        "Intervals are 95% bootstrap intervals. Latency is per example, batched generation's wall time shared "
        "among the batch."
    )
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
    """(train, eval) loss by step from the run's newest trainer_state.json, if it has one."""
    candidates = [run_dir / "trainer_state.json", *run_dir.glob("checkpoints/checkpoint-*/trainer_state.json")]
    states = [p for p in candidates if p.is_file()]
    if not states:
        return None
    newest = max(states, key=lambda p: json.loads(p.read_text()).get("global_step") or 0)
    history = json.loads(newest.read_text()).get("log_history") or []
    train = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
    evals = [(int(h["step"]), float(h["eval_loss"])) for h in history if "eval_loss" in h and "step" in h]
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
    found = find_metrics(run_dirs)
    rows = leaderboard_rows(found)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
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
    (output_dir / "leaderboard.md").write_text(markdown, encoding="utf-8")
    (output_dir / "leaderboard.json").write_text(
        json.dumps({"rows": rows, "charts": [c.name for c in charts]}, indent=2) + "\n", encoding="utf-8"
    )
    return markdown
