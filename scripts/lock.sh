#!/usr/bin/env bash
# Lock each CUDA image's whole Python environment, every package pinned with its hashes, from pyproject.toml's extras.
#   scripts/lock.sh                          # (re)write requirements/<image>.lock; pins that still fit are kept
#   scripts/lock.sh --upgrade                # newest versions pyproject.toml allows (any `uv pip compile` option
#   scripts/lock.sh --upgrade-package vllm   #   is passed on, e.g. these two)
#   scripts/lock.sh --check [IMAGE ...]      # CI (tests/test_locks.py): writes nothing, fails when a lock does not
#                                            #   install on the image's platform or no longer matches pyproject.toml
# The Dockerfiles install the locks with `pip install --require-hashes --no-deps --only-binary=:all:`.
# Needs network access to PyPI; uv comes from the `dev` extra (scripts/setup.sh dev), or set UV=/path/to/uv.
set -euo pipefail
cd "$(dirname "$0")/.."

# The images' platform: Ubuntu 22.04 (glibc 2.35) on x86_64 with Ubuntu's python3.11, wheels only (the CUDA
# runtime base has no compiler). On linux x86_64, PyPI's torch 2.13.0 is the CUDA 13 build the images want.
PLATFORM=x86_64-manylinux_2_35
PYTHON_VERSION=3.11
# PyPI, explicitly: a developer's pip or uv configuration may point elsewhere (this kind of machine serves a CPU
# torch from a local wheel folder). --no-config and the unset below keep uv's own settings out as well.
INDEX=https://pypi.org/simple
declare -A EXTRAS=([train]="train" [eval]="train eval vllm")  # the extras each image installs (Dockerfile.<image>)
IMAGES=(train eval)

UV=${UV:-.venv/bin/uv}
for var in $(compgen -e); do
    [[ $var == UV_* && $var != UV_CACHE_DIR ]] && unset "$var"
done
if [[ ! -x $UV ]]; then
    echo "error: uv not found at $UV. Run scripts/setup.sh dev (the dev extra installs uv) or set UV=/path/to/uv" >&2
    exit 2
fi
common=(--no-config --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" --default-index "$INDEX"
    --only-binary :all: --no-python-downloads)

# The project's own build requirements ([build-system] requires, one line in pyproject.toml) go into every lock:
# the Dockerfiles build the project with --no-build-isolation, so nothing unlocked is fetched for it either.
build_requires=$(sed -n '/^\[build-system\]/,/^\[/ s/^requires *= *\[\(.*\)\]/\1/p' pyproject.toml |
    tr -d ' "' | tr ',' '\n')
if [[ -z $build_requires ]]; then
    echo "error: no one-line 'requires = [...]' under [build-system] in pyproject.toml. Keep it on one line" >&2
    exit 2
fi

# compile IMAGE OUT [uv options...]: resolve pyproject.toml's extras for IMAGE (and the build requirements, from
# stdin) into OUT, preferring OUT's pins.
compile() {
    local image=$1 out=$2 extras=()
    shift 2
    for extra in ${EXTRAS[$image]}; do extras+=(--extra "$extra"); done
    "$UV" pip compile --quiet "${common[@]}" pyproject.toml - "${extras[@]}" --generate-hashes \
        --custom-compile-command "scripts/lock.sh" --output-file "$out" "$@" <<<"$build_requires"
}

pins() { grep -E '^[A-Za-z0-9]' "$1" | sed 's/ .*//' | sort; }  # name==version, one a line
# hashes FILE: "name==version sha256:..." for every hash in a lock.
hashes() {
    awk '/^[A-Za-z0-9]/ {pin = $1} /--hash=/ {sub(/.*--hash=/, ""); sub(/ .*/, ""); print pin, $0}' "$1" | sort
}

if [[ ${1:-} != --check ]]; then
    for image in "${IMAGES[@]}"; do
        compile "$image" "requirements/$image.lock" "$@"
        echo "requirements/$image.lock: $(pins "requirements/$image.lock" | wc -l) packages"
    done
    exit 0
fi

shift
(($# == 0)) && set -- "${IMAGES[@]}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for image in "$@"; do
    lock=requirements/$image.lock
    if [[ -z ${EXTRAS[$image]+x} || ! -f $lock ]]; then
        echo "error: no lock for image '$image'. Pass one of: ${IMAGES[*]} (or run scripts/lock.sh to write them)" >&2
        exit 2
    fi
    # 1. The lock installs on the image's platform: its pins and all their dependencies resolve, with hashes required
    #    (what `pip install --require-hashes` in the Dockerfile needs), without downloading the wheels.
    if ! "$UV" pip install --quiet --dry-run "${common[@]}" --require-hashes --target "$tmp/target-$image" \
        -r "$lock"; then
        echo "FAIL $lock does not resolve for $PLATFORM / Python $PYTHON_VERSION (see above)" >&2
        status=1
        continue
    fi
    # 2. pyproject.toml's extras still resolve, to the same pins: the lock is current. The lock's pins, without its
    #    hashes (uv would keep those), are the preferences; the hashes come fresh from PyPI.
    pins "$lock" >"$tmp/$image.lock"
    if ! compile "$image" "$tmp/$image.lock"; then
        echo "FAIL pyproject.toml's extras for the $image image do not resolve (see above)" >&2
        status=1
        continue
    fi
    if ! diff <(pins "$lock") <(pins "$tmp/$image.lock") >"$tmp/diff"; then
        echo "FAIL $lock is out of date with pyproject.toml ('<' locked, '>' resolved now); run scripts/lock.sh:" >&2
        grep '^[<>]' "$tmp/diff" >&2
        status=1
        continue
    fi
    # 3. Every locked hash is one PyPI publishes for that version (files added since are fine; a wrong one is not).
    unknown=$(comm -23 <(hashes "$lock") <(hashes "$tmp/$image.lock"))
    if [[ -n $unknown ]]; then
        echo "FAIL $lock has hashes PyPI does not list for these versions; run scripts/lock.sh:" >&2
        echo "$unknown" >&2
        status=1
        continue
    fi
    echo "ok $lock: $(pins "$lock" | wc -l) packages resolve for $PLATFORM / Python $PYTHON_VERSION"
done
exit $status
