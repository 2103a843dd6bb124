# Sourced by scripts/demo and scripts/test: creates or reuses the project's venv (.venv) and installs the
# project into it. Needs only Python 3.9+; as root on Debian/Ubuntu it installs python3-venv when missing.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${THRIFT_HANDSHAKE_VENV:-$ROOT/.venv}"

log() { printf '%s\n' "[$(basename "$0")] $*" >&2; }

as_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  # apt_install PACKAGE...: installs Debian packages, refreshing the package lists once if needed.
  as_root || return 1
  command -v apt-get >/dev/null 2>&1 || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null
  }
}

find_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  log "Python 3.9 or newer is required"; return 1
}

make_venv() {
  py="$(find_python)"
  if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    log "python venv support is missing; installing python3-venv"
    apt_install python3-venv "python$version-venv" || apt_install python3-venv || {
      log "cannot create a venv: install python3-venv (apt-get install python3-venv) and run again"; return 1; }
    "$py" -m venv "$VENV"
  fi
}

ensure_fastbinary() {
  # PyPI has thrift wheels (with the C extension) for CPython 3.10+; elsewhere pip builds the sdist and,
  # without a C compiler and Python headers, silently installs thrift without its accelerated protocol.
  "$VENV/bin/python" -c 'import thrift.protocol.fastbinary' 2>/dev/null && return 0
  version="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  log "thrift was installed without its C extension; building it (needs a C compiler and Python headers)"
  apt_install gcc "python$version-dev" || apt_install gcc python3-dev || {
    log "WARNING: cannot install gcc and python3-dev: thrift runs without its C extension (slower)"; return 0; }
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps --no-cache-dir --no-binary thrift thrift
}

ensure_venv() {
  [ -x "$VENV/bin/python" ] || make_venv
  stamp="$VENV/.installed-$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    log "installing thrift-handshake and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
    ensure_fastbinary
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  PATH="$VENV/bin:$PATH"
  export PATH
}
