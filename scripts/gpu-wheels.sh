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
# datasets pins). Versions: requirements/train.txt's pin (the images' lock), else the version installed in .venv
# (the one CI tests with) for transitive dependencies that file does not list.
names=(transformers trl peft datasets dill multiprocess fsspec)
extra=(liger-kernel==0.8.5)  # not in the images' lock (yet): a speed lever the suite measures

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && python=.venv/bin/python
pins=()
for name in "${names[@]}"; do
  pin=$(grep -i -m1 -E "^${name}==" requirements/train.txt | sed 's/[ ;\\].*//' || true)
  if [[ -z "$pin" ]]; then
    version=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
    if [[ -z "$version" ]]; then
      echo "error: neither requirements/train.txt nor .venv has ${name}. Run scripts/setup.sh first" >&2
      exit 2
    fi
    pin="${name}==${version}"
  fi
  pins+=("$pin")
done
pins+=("${extra[@]}")
rm -rf .whl
mkdir -p .whl
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"

count=$(ls .whl/*.whl | wc -l)
if [[ "$count" -ne "${#pins[@]}" ]]; then
  echo "error: expected ${#pins[@]} wheels, got $count in .whl/. Check the pins: ${pins[*]}" >&2
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
