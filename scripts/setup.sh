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
    # A fresh .venv takes about 2.5 GiB (torch, transformers and the rest). A disk that fills half-way leaves a
    # broken .venv behind pip's bare "No space left on device", so say it before writing anything.
    need_mib="${SQLMASTER_SETUP_NEED_MIB:-3072}"
    free_mib=$(df -Pm . | awk 'NR == 2 {print $4}')
    if (( free_mib < need_mib )); then
        echo "scripts/setup.sh: a fresh install needs about ${need_mib} MiB free on the disk of $(pwd);" \
             "${free_mib} MiB are free. Free some space (old clones, ~/.cache/pip) and run it again." >&2
        exit 1
    fi
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
