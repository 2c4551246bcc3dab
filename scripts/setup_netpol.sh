#!/usr/bin/env bash
# NetworkPolicy enforcement for the real Kubernetes node: kube-network-policies (the
# Kubernetes SIG Network's nftables + nfqueue enforcer), built from the Go module proxy and
# cached in ~/.cache/cloudlab/netpol/<version>/bin. Idempotent: instant when cached.
# Called by scripts/setup.sh; `cloudlab.k8s.netpol` runs it beside the real node.
set -euo pipefail
VERSION=${NETPOL_VERSION:-v0.8.0}
CACHE=${CLOUDLAB_CACHE:-$HOME/.cache/cloudlab}
DEST="$CACHE/netpol/$VERSION/bin"
BIN="$DEST/kube-network-policies"
if [ -x "$BIN" ]; then
  echo "kube-network-policies $VERSION: $BIN (cached)"
  exit 0
fi
if [ "$(uname -s)" != Linux ] || ! command -v go >/dev/null; then
  echo "note: kube-network-policies needs Linux and a Go toolchain; NetworkPolicy is not" \
       "enforced on the real node (see cloudlab doctor)" >&2
  exit 0
fi
mkdir -p "$DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the module's main package is ./cmd: `go install` names the binary after it
GOBIN="$work" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
  go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kube-network-policies/cmd@$VERSION"
install -m 0755 "$work/cmd" "$BIN"
echo "kube-network-policies $VERSION: $BIN (built)"
