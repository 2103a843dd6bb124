#!/usr/bin/env sh
# Installs what the interop clients need, idempotently (fast when already done):
#   node: `npm ci` in interop/node (thrift 0.24.0 from package-lock.json), skipped while the lockfile is unchanged
#   go:   `go mod download` in interop/go (github.com/apache/thrift from go.mod/go.sum)
# Usage: interop/setup.sh [node] [go]   (default: both). Exits non-zero, saying what to install, if a step fails.
# The generated Thrift code is not installed here: the tests generate it into temp dirs.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf '%s\n' "[interop/setup] $*" >&2; }

setup_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node and npm are required for the Node.js interop client: install Node.js >= 18 with npm (e.g. apt-get install nodejs npm)"
    return 1
  fi
  dir="$HERE/node"
  stamp="$dir/node_modules/.interop-setup"
  want="$(cat "$dir/package.json" "$dir/package-lock.json" | cksum | cut -d' ' -f1) $(node --version)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dir/node_modules/thrift/package.json" ]; then
    return 0
  fi
  log "npm ci in $dir"
  if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    log "npm ci failed in $dir (is the npm registry reachable?)"
    return 1
  fi
  printf '%s\n' "$want" >"$stamp"
}

setup_go() {
  if ! command -v go >/dev/null 2>&1; then
    log "go is required for the Go interop client: install Go >= 1.21 (https://go.dev/dl/, or apt-get install golang-go)"
    return 1
  fi
  dir="$HERE/go"
  if ! (cd "$dir" && go mod download); then
    log "go mod download failed in $dir (is the Go module proxy reachable? see GOPROXY)"
    return 1
  fi
}

status=0
[ $# -gt 0 ] || set -- node go
for part in "$@"; do
  case "$part" in
    node) setup_node || status=1 ;;
    go) setup_go || status=1 ;;
    *) log "unknown part '$part' (expected: node, go)"; status=2 ;;
  esac
done
exit "$status"
