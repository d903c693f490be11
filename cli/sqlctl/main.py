"""`sqlctl`: submit SQLMaster training and evaluation runs to Kubernetes, follow them, collect results.

sqlctl submit train --model mistral7b          # render charts/sqlmaster-train, create, follow logs
sqlctl submit train --model tiny --local       # same recipe as a local process, no cluster
sqlctl list                                    # runs in the namespace
sqlctl status RUN                              # Job conditions, pods, why a pod is Pending
sqlctl logs RUN -f                             # follow across pod retries
sqlctl artifacts pull RUN --dest ./pulled      # adapter, metrics, reports, verified by sha256
sqlctl cancel RUN                              # delete the Job and its pods
"""

from __future__ import annotations

import typer

from sqlctl import __version__
from sqlctl.commands import artifacts, cancel, listing, logs, models, status, submit
from sqlctl.kube import KubeSettings
from sqlctl.options import ContextOpt, GlobalOptions, KubeconfigOpt, NamespaceOpt

app = typer.Typer(
    name="sqlctl",
    help=(__doc__ or "").replace("\n\n", "\n\n\b\n", 1),  # \b: click keeps the example lines as they are
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(submit.app, name="submit", help="Submit a training or evaluation run (cluster or --local).")
app.add_typer(artifacts.app, name="artifacts", help="Bring a run's outputs to this machine.")
app.command("list")(listing.list_runs)
app.command("status")(status.status)
app.command("logs")(logs.logs)
app.command("cancel")(cancel.cancel)
app.command("models")(models.models)


def _version(value: bool) -> None:
    if value:
        print(f"sqlctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Submit, follow, inspect and collect SQLMaster runs on a Kubernetes GPU cluster."""
    ctx.obj = GlobalOptions(kube=KubeSettings(kubeconfig=kubeconfig, context=context, namespace=namespace))


def main() -> None:
    """Console entry point (`sqlctl`); commands turn their errors into `error: ...` and an exit code."""
    app()
