#!/usr/bin/env bash
# Fetch into .whl/ (git-ignored) exactly the wheels the lent GPU machine lacks, for Python 3.12 on x86-64 Linux,
# and check that they and the working tree fit the device tool's 64 MiB limit. scripts/gpu-suite.sh installs
# them there into a temporary site dir. docs/gpu.md says why each one travels.
#
#   scripts/gpu-wheels.sh            # needs PyPI; run it here before the device call
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# Carried because the machine has none (trl, datasets and datasets' dill, multiprocess; liger-kernel) or another
# version than CI and the images (transformers 5.17 there: our code uses 5.23's names; peft; fsspec, which
# datasets pins; regex, which transformers 5.23 checks at import: >= 2025.10.22). Versions and sha256 hashes
# come from requirements/train.lock, the images' lock: one source.
names=(transformers trl peft datasets dill multiprocess fsspec regex)
extra=(liger-kernel==0.8.5)  # not in the images' lock: a speed lever the suite measures before anyone ships it

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && python=.venv/bin/python
pinned=$(mktemp)
trap 'rm -f "$pinned"' EXIT
for name in "${names[@]}"; do
  # The pin line and its --hash continuation lines, exactly as the lock has them.
  block=$(awk -v n="$name" 'BEGIN{IGNORECASE=1} $0 ~ "^"n"==" {on=1} on {print; if ($0 !~ /\\$/) exit}' \
    requirements/train.lock)
  if [[ -z "$block" ]]; then
    echo "error: requirements/train.lock pins no ${name}. Re-lock (scripts/lock.sh) or drop it from $0" >&2
    exit 2
  fi
  printf '%s\n' "$block" >>"$pinned"
done

rm -rf .whl
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
download=(-m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
  "${platforms[@]}" -d .whl)
"$python" "${download[@]}" --require-hashes -r "$pinned"
"$python" "${download[@]}" "${extra[@]}"
expected=$(( ${#names[@]} + ${#extra[@]} ))

count=$(ls .whl/*.whl | wc -l)
if [[ "$count" -ne "$expected" ]]; then
  echo "error: expected $expected wheels (one version each), got $count in .whl/" >&2
  exit 1
fi
wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + tree))
limit=$((64 * 1024 * 1024))
ls -l .whl/*.whl | awk '{printf "  %8.2f MiB  %s\n", $5 / 1048576, $9}'
printf 'wheels %.1f MiB + working tree %.1f MiB = %.1f MiB of the 64 MiB a device call carries\n' \
  "$(echo "$wheels / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
if [[ "$total" -ge "$limit" ]]; then
  echo "error: wheels and working tree exceed 64 MiB. Carry fewer wheels" >&2
  exit 1
fi
