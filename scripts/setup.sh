#!/usr/bin/env bash
# Create .venv and install SQLMaster with the workload and (optionally) the development extras.
#   scripts/setup.sh            # train + eval extras: enough for `sqlmaster quickstart`
#   scripts/setup.sh dev        # + test tools (pytest, ruff, mypy, schema validators)
# torch is pinned to 2.13.0, the version the CUDA images install; on this kind of machine pip takes its CPU
# build from the local wheel directory. Nothing here may pull a second torch.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="train,eval"
[[ "${1:-}" == "dev" ]] && extras="train,eval,dev"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# torch first and alone, so no later resolution can swap it for another build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
.venv/bin/python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"unexpected torch {torch.__version__}"
print(f"sqlmaster installed in .venv (torch {torch.__version__})")
PY
