#!/usr/bin/env bash
# Build the Kubernetes control plane that the `k8s` tests run against (tests/k8s/controlplane.py).
#
# Result: kube-apiserver, kube-controller-manager, kube-scheduler (v1.20.2, built from Debian bookworm's
# source package) and etcd (copied from Debian's etcd-server) in one cache folder OUTSIDE the clone:
#     ${SQLMASTER_K8S_CACHE:-$HOME/.cache/sqlmaster/k8s-1.20.2}/bin
# The folder is self-contained, so CI can cache it (key: this script's hash) and skip the build.
#
# Idempotent: when the cached binaries exist and report the right version it exits at once (< 1 s).
# Otherwise (about 4 minutes on 2 cores, 1.4 GB peak memory, ~2.5 GB temporary disk) it installs the
# Debian packages it needs, downloads the source package, builds with the upstream Makefile (a plain
# `go build` fails: the tarball lacks generated OpenAPI code that `make` generates), installs the binaries
# and deletes the source tree and Go build cache.
#
# Needs root (or passwordless sudo) only for apt-get, and only when a package or the deb-src entry is missing.
# Env: SQLMASTER_K8S_CACHE (cache folder), SQLMASTER_K8S_WORKDIR (where to build; default a temp dir),
#      SQLMASTER_K8S_FORCE=1 (rebuild even when the cache is valid).
set -euo pipefail

K8S_VERSION="v1.20.2"
ETCD_VERSION_PREFIX="3.4."
CACHE="${SQLMASTER_K8S_CACHE:-$HOME/.cache/sqlmaster/k8s-1.20.2}"
BIN="$CACHE/bin"
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler)
APT_PACKAGES=(golang-go etcd-server rsync make openssl ca-certificates)
DEB_SRC_FILE=/etc/apt/sources.list.d/sqlmaster-debian-src.sources

log() { printf 'k8s-build: %s\n' "$*" >&2; }
die() { printf 'k8s-build: error: %s\n' "$*" >&2; exit 1; }

# True when every cached binary is present and reports the expected version.
cache_is_valid() {
    local b
    for b in "${KUBE_BINS[@]}"; do
        [[ -x "$BIN/$b" ]] || return 1
        "$BIN/$b" --version 2>/dev/null | grep -qx "Kubernetes $K8S_VERSION" || return 1
    done
    [[ -x "$BIN/etcd" ]] || return 1
    "$BIN/etcd" --version 2>/dev/null | grep -q "^etcd Version: $ETCD_VERSION_PREFIX" || return 1
}

if [[ "${SQLMASTER_K8S_FORCE:-0}" != 1 ]] && cache_is_valid; then
    log "cached control plane is up to date in $BIN (Kubernetes $K8S_VERSION); nothing to do"
    exit 0
fi

# ---------------------------------------------------------------------------------------------------------
# System packages and the deb-src entry (root only).
SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    fi
fi
as_root() {
    if [[ "$(id -u)" != 0 && ${#SUDO[@]} -eq 0 ]]; then
        die "need root to run '$*'. Run this script as root, give passwordless sudo, or install: ${APT_PACKAGES[*]}"
    fi
    "${SUDO[@]}" "$@"
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# `apt-get source` needs a deb-src line for bookworm main; add one unless some source list already has it.
have_deb_src() {
    grep -rsqE '^[[:space:]]*deb-src[[:space:]].*bookworm[[:space:]].*main' /etc/apt/sources.list /etc/apt/sources.list.d/*.list && return 0
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        # deb822 stanzas: look for one whose Types include deb-src and Suites include bookworm.
        awk 'BEGIN{RS=""} /Types:[^\n]*deb-src/ && /Suites:[^\n]*bookworm([[:space:]]|$)/ && /Components:[^\n]*main/ {found=1} END{exit !found}' "$f" && return 0
    done
    return 1
}

need_update=0
if ! have_deb_src; then
    log "adding the bookworm deb-src entry in $DEB_SRC_FILE"
    as_root tee "$DEB_SRC_FILE" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need_update=1
fi
if ((${#missing[@]} > 0)); then
    need_update=1
fi
# The source index may be absent even when the deb-src entry exists (apt-get update never ran since).
if ((need_update == 0)) && ! apt-cache showsrc kubernetes >/dev/null 2>&1; then
    need_update=1
fi
if ((need_update)); then
    log "apt-get update"
    as_root apt-get update -qq
fi
if ((${#missing[@]} > 0)); then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || die "go is not on PATH after installing golang-go"
[[ -x /usr/bin/etcd ]] || die "/usr/bin/etcd is missing after installing etcd-server"

# ---------------------------------------------------------------------------------------------------------
# Download, build, install.
start=$(date +%s)
if [[ -n "${SQLMASTER_K8S_WORKDIR:-}" ]]; then
    WORK="$SQLMASTER_K8S_WORKDIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/sqlmaster-k8s-build.XXXXXX")"
fi
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

cd "$WORK"
log "downloading the Debian kubernetes source package into $WORK"
apt-get source --download-only kubernetes >"$WORK/apt-source.log" 2>&1 || {
    cat "$WORK/apt-source.log" >&2
    die "apt-get source kubernetes failed; check the deb-src entry in $DEB_SRC_FILE and network access to deb.debian.org"
}
shopt -s nullglob
tarballs=(kubernetes_*.orig.tar.gz)
((${#tarballs[@]} == 1)) || die "expected one kubernetes_*.orig.tar.gz in $WORK, found: ${tarballs[*]:-none}"
tar xzf "${tarballs[0]}"
srcdirs=(kubernetes-*/)
((${#srcdirs[@]} == 1)) || die "expected one kubernetes-*/ source folder, found: ${srcdirs[*]:-none}"
cd "${srcdirs[0]}"

# Keep Go's caches inside the work folder so that the build leaves nothing behind in $HOME.
export GOCACHE="$WORK/go-build" GOPATH="$WORK/gopath" GOFLAGS="" GO111MODULE="" GOTOOLCHAIN=local
log "building ${KUBE_BINS[*]} with $(go version) (about 4 minutes on 2 cores)"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$WORK/make.log" 2>&1 || {
    tail -n 40 "$WORK/make.log" >&2
    die "make failed (last 40 lines above)"
}

out="_output/local/bin/$(go env GOOS)/$(go env GOARCH)"
mkdir -p "$BIN"
# Install through temporary names so that an interrupted run never leaves a half-written binary that
# looks valid.
for b in "${KUBE_BINS[@]}"; do
    "$out/$b" --version | grep -qx "Kubernetes $K8S_VERSION" \
        || die "$b reports '$("$out/$b" --version)', expected Kubernetes $K8S_VERSION (Debian source changed?)"
    install -m 0755 "$out/$b" "$BIN/.$b.tmp"
    mv -f "$BIN/.$b.tmp" "$BIN/$b"
done
install -m 0755 /usr/bin/etcd "$BIN/.etcd.tmp"
mv -f "$BIN/.etcd.tmp" "$BIN/etcd"

cache_is_valid || die "installed binaries in $BIN do not pass the version check"
log "built in $(($(date +%s) - start)) s; binaries in $BIN:"
ls -l "$BIN" >&2
