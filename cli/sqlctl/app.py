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
from sqlctl.kube import KubeSettings
from sqlctl.options import ContextOpt, GlobalOptions, KubeconfigOpt, NamespaceOpt

# The root command. Every command registers itself where it is defined, the one way both CLIs use: a decorator
# (`@app.command("list")`) on its function, or `app.add_typer(...)` beside a group's own Typer (submit, artifacts).
# sqlctl.main imports the command modules, which is what registers them.
app = typer.Typer(
    name="sqlctl",
    help=(__doc__ or "").replace("\n\n", "\n\n\b\n", 1),  # \b: click keeps the example lines as they are
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
