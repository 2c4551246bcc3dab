#!/usr/bin/env bash
# The course hub's proxy: configurable-http-proxy from npm, cached, idempotent.
#   scripts/setup_hub.sh      installs it into ~/.cache/cloudlab/hub (instant when there)
# JupyterHub (PyPI) comes with the venv; `cloudlab hub up` finds the proxy here.
set -euo pipefail
CHP_VERSION=${CHP_VERSION:-5.3.0}
DEST=${CLOUDLAB_HUB_CACHE:-$HOME/.cache/cloudlab/hub}
BIN="$DEST/node_modules/.bin/configurable-http-proxy"
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "$CHP_VERSION"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "warning: no npm; the course hub (cloudlab hub up) needs Node.js and npm" >&2
  exit 0
fi
printf '\033[1m==> %s\033[0m\n' "installing configurable-http-proxy $CHP_VERSION into $DEST"
mkdir -p "$DEST"
npm install --silent --no-audit --no-fund --prefix "$DEST" \
  "configurable-http-proxy@$CHP_VERSION" >/dev/null \
  || { echo "warning: npm could not install configurable-http-proxy; see cloudlab doctor" >&2; exit 0; }
"$BIN" --version >/dev/null
