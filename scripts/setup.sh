#!/usr/bin/env bash
# Idempotent setup: project venv with cloudlab installed; as root on Debian also the
# system parts; then a Docker engine and the offline base image.
#   scripts/setup.sh                 everything this machine allows
#   scripts/setup.sh --python-only   just the venv
#   scripts/setup.sh --with-browser  also Chromium, for the browser test tier
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
SYSTEM_PACKAGES=(docker.io docker-registry prometheus prometheus-alertmanager mmdebstrap
                 qemu-system-x86 busybox-static haproxy
                 containernetworking-plugins gcc libc6-dev)  # the real Kubernetes node
[ "${1:-}" = "--with-browser" ] && SYSTEM_PACKAGES+=(chromium)
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. Python: venv + editable install, redone only when pyproject.toml changed.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
  say "installing cloudlab and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
  touch "$VENV/.installed"
fi
# JupyterLab's defaults for this workbook (as on Binder): no news question at first start.
mkdir -p "$VENV/share/jupyter/lab/settings"
cp binder/overrides.json "$VENV/share/jupyter/lab/settings/overrides.json"
bash scripts/setup_hub.sh  # the course hub's proxy (npm), cached: `cloudlab hub up`
[ "${1:-}" = "--python-only" ] && exit 0

# 2. System parts: only as root on Debian; elsewhere `cloudlab doctor` says what is missing.
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "warning: apt-get could not install ${missing[*]}; see cloudlab doctor" >&2
  else
    echo "note: not root on Debian, skipping system packages (${missing[*]}); see cloudlab doctor" >&2
  fi
fi

# 3. A Docker engine (started as root when none answers) and the offline base image.
if "$VENV/bin/cloudlab" engine up; then
  "$VENV/bin/cloudlab" images bootstrap || echo "warning: no base image; see cloudlab doctor" >&2
else
  echo "warning: no Docker engine; Docker parts of the workbook will be skipped" >&2
fi
bash scripts/setup_buildkit.sh || echo "warning: no buildx plugin: BuildKit builds are off (see cloudlab doctor)" >&2

# 4. The Kubernetes binaries of the offline cluster (root on Linux; instant when cached):
#    official releases when reachable, else a source build through the Go module proxy;
#    then the real node's kubelet, kube-proxy, CoreDNS and pause (source build, cached).
if [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ]; then
  "$VENV/bin/cloudlab" k8s install \
    || echo "warning: no Kubernetes binaries; the kwok backend is off (see cloudlab doctor)" >&2
  bash scripts/setup_netpol.sh || echo "warning: no NetworkPolicy enforcer for the real node" >&2
fi
