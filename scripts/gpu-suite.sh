#!/usr/bin/env bash
# The GPU proof in one command (issue 10): training and generation, SQLMaster against the original recipe.
#
#   scripts/gpu-suite.sh OUT_DIR          # on a CUDA machine (the lent H200): everything within 8 minutes
#   scripts/gpu-suite.sh --cpu OUT_DIR    # CPU rehearsal: tiny shapes, same code path and JSON (CI runs it)
#
# Writes OUT_DIR/gpu-suite.json, gpu-suite.txt and gpu-suite-logs.tar.gz (GPU_SUITE_WORK: where run folders go,
# default a temporary folder; GPU_SUITE_SECONDS: the whole budget, default 470 s on GPU, 420 s on CPU). Wheels in .whl/ (scripts/gpu-wheels.sh fetches them)
# are installed first into a temporary site dir that shadows the machine's own packages; docs/gpu.md says why
# each is carried and gives the exact device command.
set -euo pipefail

cpu=""
if [[ "${1:-}" == "--cpu" ]]; then
  cpu="--cpu"
  shift
fi
if [[ $# -ne 1 ]]; then
  echo "error: give one output folder. Usage: scripts/gpu-suite.sh [--cpu] OUT_DIR" >&2
  exit 2
fi
out=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
# The issue's 8 minutes less a margin on GPU; the CPU rehearsal takes ~2 minutes on 2 idle cores (its GRPO phase ~30 s of them).
total=${GPU_SUITE_SECONDS:-$([[ -n "$cpu" ]] && echo 420 || echo 470)}
mkdir -p "$out"

python=${PYTHON:-python3}
if [[ -x "$repo/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
  python="$repo/.venv/bin/python"
fi

site=""
if [[ -z "$cpu" ]] && compgen -G "$repo/.whl/*.whl" >/dev/null; then
  site=$(mktemp -d /tmp/gpu-suite-site.XXXXXX)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$repo"/.whl/*.whl
  echo "installed $(ls "$repo"/.whl/*.whl | wc -l) carried wheels into $site"
fi

export PYTHONPATH="${site:+$site:}$repo:$repo/cli${PYTHONPATH:+:$PYTHONPATH}"
# Nothing outside the machine is reachable: never wait on the hub, never report to W&B.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
left=$(( total - ($(date +%s) - start) ))
exec "$python" "$repo/bench/gpu_suite.py" "$out" $cpu --budget-s "$left" ${GPU_SUITE_WORK:+--work-dir "$GPU_SUITE_WORK"}
