"""Shared options: one definition per flag so short flags mean the same on every command.

The cluster flags (`--kubeconfig`, `--context`, `-n/--namespace`) exist both on the root callback
(`sqlctl -n team submit ...`) and on each command (`sqlctl submit train -n team`), the command's value
winning; kubectl users type them in either place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from sqlctl.errors import EXIT_FAILURE, SqlctlError, print_error
from sqlctl.kube import ApiError, KubeSettings
from sqlctl.output import OutputFormat

KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: the context's, else 'default').")
]
AllNamespacesOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Look in every namespace.")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="table for people; json or yaml for scripts.")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Stream logs until the run ends.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ChartDirOpt = Annotated[
    Path | None,
    typer.Option("--chart-dir", help="The charts/ folder (env SQLMASTER_CHART_DIR).", show_default=False),
]
JobsDirOpt = Annotated[
    Path | None,
    typer.Option("--jobs-dir", help="The jobs/ folder (env SQLMASTER_JOBS_DIR).", show_default=False),
]
RunIdArg = Annotated[str, typer.Argument(help="Run id (see `sqlctl list`).")]


@dataclass(frozen=True)
class GlobalOptions:
    """Values of the root callback's flags, kept in `ctx.obj`."""

    kube: KubeSettings = field(default_factory=KubeSettings)


def kube_settings(
    ctx: typer.Context, kubeconfig: str | None, context: str | None, namespace: str | None
) -> KubeSettings:
    """Merge command-level cluster flags over the root's."""
    base = ctx.obj.kube if isinstance(ctx.obj, GlobalOptions) else KubeSettings()
    return replace(
        base,
        kubeconfig=kubeconfig or base.kubeconfig,
        context=context or base.context,
        namespace=namespace or base.namespace,
    )


P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn SqlctlError / ApiError into one `error: ...` line on stderr and the right exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SqlctlError as err:
            print_error(err)
            raise typer.Exit(err.code) from None
        except ApiError as exc:
            fix = (
                "Check your RBAC permissions (sqlctl needs the verbs in docs/cluster.md)." if exc.status == 403 else ""
            )
            print_error(SqlctlError(f"the API server answered {exc.status} {exc.reason}: {exc.message}", fix))
            raise typer.Exit(EXIT_FAILURE) from None
        except KeyboardInterrupt:
            print_error(SqlctlError("interrupted", "", code=130))
            raise typer.Exit(130) from None

    return wrapper
