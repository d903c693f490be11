"""Shared options: one definition per flag so short flags mean the same on every command.

The cluster flags (`--kubeconfig`, `--context`, `-n/--namespace`) exist both on the root callback
(`sqlctl -n team submit ...`) and on each command (`sqlctl submit train -n team`), the command's value
winning; kubectl users type them in either place.
"""

from __future__ import annotations

import functools
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec, TypeVar

import typer

from sqlctl.errors import SqlctlError, print_error
from sqlctl.kube import ApiError, KubeSettings
from sqlctl.output import OutputFormat
from sqlmaster import exitcodes


def _fail(err: SqlctlError) -> NoReturn:
    """Stop during argument parsing with the one-line error (click's usage block is several lines)."""
    print_error(err)
    raise typer.Exit(err.code)


def _checked_run_id(value: str | None) -> str | None:
    """Run ids are checked here, before any command contacts the API server with them."""
    from sqlctl.runid import validate_run_id

    try:
        return None if value is None else validate_run_id(value)
    except SqlctlError as err:
        _fail(err)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _checked_namespace(value: str | None) -> str | None:
    """A namespace is a DNS-1123 label; anything else would reach the API server as a path segment."""
    if value is not None and not _DNS_LABEL.match(value):
        shown = value if len(value) <= 60 else f"{value[:40]}…({len(value)} characters)"
        _fail(
            SqlctlError(
                f"namespace {shown!r} is not a valid namespace name",
                "Use lowercase letters, digits and '-', at most 63 characters (see `kubectl get namespaces`).",
            )
        )
    return value


KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace (default: the context's, else 'default').",
        callback=_checked_namespace,
    ),
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
RunIdArg = Annotated[str, typer.Argument(help="Run id (see `sqlctl list`).", callback=_checked_run_id)]


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
            raise typer.Exit(exitcodes.FAILURE) from None
        except KeyboardInterrupt:
            code = exitcodes.interrupted(signal.SIGINT)
            print_error(SqlctlError("interrupted", "", code=code))
            raise typer.Exit(code) from None

    return wrapper
