#!/usr/bin/env bash
# BuildKit for the Docker CLI: the buildx plugin, built from source through the Go module
# proxy (Debian 12 packages no buildx; Docker's own packages and Docker Desktop ship it).
# buildx drives the engine's built-in BuildKit (its "docker" driver): nothing to pull.
# Idempotent and cached: the binary lives in ~/.cache/cloudlab/buildkit/<version>/ and is
# copied into Docker's CLI plugin folder; a warm run only compares two files.
#   scripts/setup_buildkit.sh            build once (minutes, cold), install, check
#   BUILDX_VERSION=v0.38.2 scripts/setup_buildkit.sh
# Example: `docker buildx version` afterwards prints "github.com/docker/buildx v0.38.2 ...".
set -euo pipefail

VERSION=${BUILDX_VERSION:-v0.38.2}
CACHE=${CLOUDLAB_BUILDKIT_CACHE:-$HOME/.cache/cloudlab/buildkit}/$VERSION
if [ "$(id -u)" = 0 ]; then
  PLUGINS=${DOCKER_CLI_PLUGINS:-/usr/local/lib/docker/cli-plugins}  # every user's CLI
else
  PLUGINS=${DOCKER_CLI_PLUGINS:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}
fi
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ ! -x "$CACHE/docker-buildx" ] && command -v docker >/dev/null \
    && docker buildx version >/dev/null 2>&1; then
  exit 0  # a buildx of its own (Docker's packages, Docker Desktop): nothing to build
fi
if [ ! -x "$CACHE/docker-buildx" ]; then
  GO=$(command -v go || true)
  for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do [ -n "$GO" ] || { [ -x "$g" ] && GO=$g; }; done
  if [ -z "$GO" ]; then
    echo "warning: no Go toolchain (1.26+) to build buildx $VERSION; BuildKit stays off" >&2
    exit 1
  fi
  say "building buildx $VERSION from source (Go module proxy; several minutes cold)"
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s) load=$(cut -d' ' -f1-3 /proc/loadavg)
  # `go install module@version` builds exactly the released go.mod (no replace directives).
  # Version ldflags as buildx's own build sets them (no revision: a module has no git).
  pkg=github.com/docker/buildx
  GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 "$GO" install -trimpath \
    -ldflags "-s -w -X $pkg/version.Version=$VERSION -X $pkg/version.Package=$pkg" \
    "$pkg/cmd/buildx@$VERSION" >"$tmp/build.log" 2>&1 || {
      tail -n 30 "$tmp/build.log" >&2
      echo "warning: building buildx $VERSION failed; BuildKit stays off" >&2
      exit 1
    }
  mv "$tmp/buildx" "$CACHE/docker-buildx"
  echo "$(( $(date +%s) - start )) s on $(nproc) cores, load $load at start," \
    "$(cut -d' ' -f1-3 /proc/loadavg) at the end" >"$CACHE/build-time"
  say "built buildx $VERSION in $(cat "$CACHE/build-time")"
fi

if ! cmp -s "$CACHE/docker-buildx" "$PLUGINS/docker-buildx" 2>/dev/null; then
  mkdir -p "$PLUGINS"
  install -m 0755 "$CACHE/docker-buildx" "$PLUGINS/docker-buildx"
  say "installed $PLUGINS/docker-buildx"
fi
if command -v docker >/dev/null; then
  docker buildx version >/dev/null || {
    echo "warning: docker does not see the buildx plugin in $PLUGINS" >&2
    exit 1
  }
fi
