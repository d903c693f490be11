"""`sqlctl models`: the model registry as a table (or -o json|yaml)."""

from __future__ import annotations

from sqlctl.app import app
from sqlctl.options import ChartDirOpt, JobsDirOpt, OutputFormat, OutputOpt, cli_errors


@app.command("models")
@cli_errors
def models(output: OutputOpt = OutputFormat.table, chart_dir: ChartDirOpt = None, jobs_dir: JobsDirOpt = None) -> None:
    """List registry models, whether they are gated (need HF_TOKEN), and which tasks have jobs/ files."""
    from sqlctl.output import emit, table
    from sqlctl.paths import resolve_paths
    from sqlctl.registry import load_models

    registry = load_models()
    try:
        paths = resolve_paths(chart_dir, jobs_dir, need_jobs=False)
        tasks = {t: set(paths.job_models(t)) for t in ("train", "eval")}
    except Exception:  # the registry is still useful without a repository checkout
        tasks = {"train": set(), "eval": set()}
    rows = []
    for info in registry.values():
        jobs = [t for t in ("train", "eval") if info.name in tasks[t]]
        rows.append(
            {
                "name": info.name,
                "hubId": info.hub_id,
                "gated": info.gated,
                "jobs": jobs,
                **{k: v for k, v in info.fields.items() if k not in ("name", "gated") and k != "hub_id"},
            }
        )
    if output != OutputFormat.table:
        emit(rows, output)
        return
    table(
        ["name", "hub id", "gated", "jobs"],
        [[r["name"], r["hubId"] or "-", "yes" if r["gated"] else "no", ",".join(r["jobs"]) or "-"] for r in rows],
    )
