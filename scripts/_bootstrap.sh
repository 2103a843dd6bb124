# Sourced by scripts/demo, scripts/test and scripts/mutation: chooses the Python, creates or reuses the
# project's venv (.venv) and installs the project into it. Needs only Python 3.9+; as root on
# Debian/Ubuntu it installs python3-venv when missing.
#
# Which Python:
#   PYTHON=/path/to/python3.X scripts/test   that one, or an error if it is missing or older than 3.9
#                                            (never silently another); a venv built with another
#                                            Python is rebuilt with this one
#   scripts/test                             the existing venv's Python if it works, else the first
#                                            3.9+ of python3, python3.13 ... python3.9 on PATH
# The scripts print the Python and the venv they use. THRIFT_HANDSHAKE_VENV moves the venv;
# THRIFT_HANDSHAKE_VENV_OPTIONS adds options to `python -m venv` (e.g. --system-site-packages).
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${THRIFT_HANDSHAKE_VENV:-$ROOT/.venv}"
MIN_PYTHON="3.9"

log() { printf '%s\n' "[$(basename "$0")] $*" >&2; }

die() { log "error: $*"; exit 1; }

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

apt_has() {
  # apt_has PACKAGE: whether apt knows a package of that name (refreshing the lists once if it does not).
  command -v apt-cache >/dev/null 2>&1 || return 1
  apt_candidate "$1" && return 0
  as_root || return 1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || return 1
  apt_candidate "$1"
}

apt_candidate() {
  apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -qv '(none)'
}

probe_python() {
  # probe_python INTERPRETER: sets PY_VERSION (X.Y.Z), PY_PREFIX (sys.base_prefix: the installation a
  # venv was made from) and PY_EXE; fails if the interpreter does not run.
  out="$("$1" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3])); print(sys.base_prefix); print(sys.executable)' 2>/dev/null)" || return 1
  PY_VERSION="$(printf '%s\n' "$out" | sed -n 1p)"
  PY_PREFIX="$(printf '%s\n' "$out" | sed -n 2p)"
  PY_EXE="$(printf '%s\n' "$out" | sed -n 3p)"
  [ -n "$PY_VERSION" ] && [ -n "$PY_PREFIX" ]
}

supported() {
  # supported X.Y[.Z]: whether that version is MIN_PYTHON or newer.
  printf '%s\n' "$1" | awk -F. -v min="$MIN_PYTHON" '{ split(min, m, "."); exit !($1 > m[1] || ($1 == m[1] && $2 >= m[2])) }'
}

choose_python() {
  # Sets PY (the command) and its PY_VERSION, PY_PREFIX, PY_EXE; exits with the reason if there is none.
  if [ -n "${PYTHON:-}" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 ||
      die "PYTHON=$PYTHON: no such command or file; set PYTHON to a Python $MIN_PYTHON+ interpreter (e.g. PYTHON=/usr/bin/python3)"
    probe_python "$PYTHON" || die "PYTHON=$PYTHON does not run as a Python interpreter"
    supported "$PY_VERSION" ||
      die "PYTHON=$PYTHON is Python $PY_VERSION; thrift-handshake needs Python $MIN_PYTHON or newer (unset PYTHON or point it at a newer one)"
    PY="$PYTHON" PY_HOW="PYTHON=$PYTHON"
    return 0
  fi
  if [ -x "$VENV/bin/python" ] && probe_python "$VENV/bin/python" && supported "$PY_VERSION"; then
    PY="$VENV/bin/python" PY_HOW="the venv's own; PYTHON=... chooses another"  # no choice made: keep it
    return 0
  fi
  for candidate in python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
    if command -v "$candidate" >/dev/null 2>&1 && probe_python "$candidate" && supported "$PY_VERSION"; then
      PY="$candidate" PY_HOW="first on PATH: $candidate; PYTHON=... chooses another"
      return 0
    fi
  done
  die "Python $MIN_PYTHON or newer is required: install it (apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.X"
}

make_venv() {
  # shellcheck disable=SC2086  # the options are words
  if ! "$PY" -m venv ${THRIFT_HANDSHAKE_VENV_OPTIONS:-} "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    minor="$(printf '%s\n' "$PY_VERSION" | cut -d. -f1,2)"
    log "python venv support is missing; installing python3-venv"
    apt_install python3-venv "python$minor-venv" || apt_install python3-venv || {
      die "cannot create a venv with $PY_EXE: install its venv module (Debian: apt-get install python$minor-venv) and run again"; }
    # shellcheck disable=SC2086
    "$PY" -m venv ${THRIFT_HANDSHAKE_VENV_OPTIONS:-} "$VENV"
  fi
}

prepare_venv() {
  # Chooses the Python and makes sure $VENV is a venv of it (rebuilt if it was made with another one).
  choose_python
  chosen_version="$PY_VERSION" chosen_prefix="$PY_PREFIX" chosen_exe="$PY_EXE"
  if [ -e "$VENV" ] || [ -L "$VENV/bin/python" ]; then
    reason=""
    if ! [ -x "$VENV/bin/python" ] || ! probe_python "$VENV/bin/python"; then
      reason="it has no working Python"
    elif [ "$PY_VERSION" != "$chosen_version" ] || [ "$PY_PREFIX" != "$chosen_prefix" ]; then
      reason="it was built with Python $PY_VERSION ($PY_PREFIX), not the chosen Python $chosen_version ($chosen_prefix)"
    fi
    if [ -n "$reason" ]; then
      if [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV" 2>/dev/null)" ]; then
        die "$VENV is not a venv and not empty; remove it (rm -rf '$VENV') or set THRIFT_HANDSHAKE_VENV elsewhere"
      fi
      log "rebuilding $VENV: $reason"
      rm -rf "$VENV"
    fi
  fi
  PY_VERSION="$chosen_version" PY_PREFIX="$chosen_prefix" PY_EXE="$chosen_exe"
  [ -x "$VENV/bin/python" ] || make_venv
  log "Python $chosen_version from $chosen_prefix ($PY_HOW), venv $VENV"
}

ensure_fastbinary() {
  # PyPI has thrift wheels (with the C extension) only for some versions and Pythons (0.25.0: CPython
  # 3.10-3.13; 0.17.0: none); elsewhere pip builds the sdist and, without a C compiler and this Python's
  # headers, silently installs thrift without its accelerated protocol.
  "$VENV/bin/python" -c 'import thrift.protocol.fastbinary' 2>/dev/null && return 0
  log "thrift was installed without its C extension; building it (needs a C compiler and Python headers)"
  missing=""
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing="gcc"
  include="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  if [ ! -f "$include/Python.h" ]; then
    minor="$(printf '%s\n' "$PY_VERSION" | cut -d. -f1,2)"
    # apt has headers only for the distribution's own Python (base prefix /usr): python3.X-dev.
    if [ "$PY_PREFIX" = /usr ] && apt_has "python$minor-dev"; then
      missing="$missing python$minor-dev"
    else
      log "WARNING: no Python.h in $include and apt has none for this Python ($PY_EXE): install its headers"
      log "WARNING: the way that Python was installed; thrift runs without its C extension (slower)"
      return 0
    fi
  fi
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    apt_install $missing || {
      log "WARNING: cannot install$(printf ' %s' $missing): thrift runs without its C extension (slower)"; return 0; }
  fi
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps --no-cache-dir --no-binary thrift thrift
}

ensure_venv() {
  prepare_venv
  stamp="$VENV/.installed-$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" "$ROOT/setup.py" | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    log "installing thrift-handshake and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    # pip's and setuptools' chatter (e.g. the "Editable installation" warning) only when it fails
    pip_log="$VENV/.pip-install.log"
    "$VENV/bin/python" -m pip install -q -e "${ROOT}[test]" >"$pip_log" 2>&1 || {
      cat "$pip_log" >&2; die "installing the project into $VENV failed (above; also in $pip_log)"; }
    ensure_fastbinary
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  PATH="$VENV/bin:$PATH"
  export PATH
}
