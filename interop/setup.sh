#!/usr/bin/env sh
# Installs what the interop clients need, idempotently (fast when already done):
#   node: `npm ci` in interop/node (thrift 0.24.0 from package-lock.json), skipped while the lockfile is unchanged
#   go:   `go mod download` in interop/go (github.com/apache/thrift from go.mod/go.sum)
#   java: `mvn dependency:go-offline` in interop/java (libthrift 0.17.0, slf4j, javax.annotation and the build
#         plugins into ~/.m2), skipped while pom.xml is unchanged
#   cpp:  Debian's libthrift-dev 0.17 with boost and OpenSSL headers, pkg-config, g++ and cmake (apt-get, as root,
#         only what is missing)
#   rust: `cargo fetch --locked` in interop/rust (the thrift crate 0.17.0 and sha2 from Cargo.lock)
#   node-server: `npm ci` in interop/servers/node (thrift 0.24.0 from its package-lock.json), skipped while unchanged
#   go-server:   `go mod download` in interop/servers/go (github.com/apache/thrift v0.17.0 from go.mod/go.sum)
#   cpp-server:  the same Debian packages as cpp (the C++ server builds against libthrift-dev 0.17 too)
#   crosstest-cpp: Debian's packages of Apache's C++ TestClient (tests/test_crosstest.py): those of cpp and boost's
#         program_options, filesystem and random, libevent, zlib (apt-get, as root, only what is missing)
#   perl:   Debian's libthrift-perl 0.17 with Bit::Vector and Class::Accessor, which it needs and does not pull in
#   ruby:   Debian's ruby and ruby-thrift (0.14 runtime; 0.17-generated code works with it)
#   c_glib: Debian's libthrift-c-glib-dev 0.17 with GLib's headers, gcc and pkg-config
# Usage: interop/setup.sh [node] [go] [java] [cpp] [rust] [node-server] [go-server] [cpp-server] [crosstest-cpp] [perl] [ruby] [c_glib]   (default: all). Exits non-zero, saying what to
# install, if a step fails. The generated Thrift code is not installed here: the builds generate it.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf '%s\n' "[interop/setup] $*" >&2; }

setup_node() {  # setup_node [DIR]: npm ci in DIR (default: the client's folder)
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node and npm are required for the Node.js interop programs: install Node.js >= 18 with npm (e.g. apt-get install nodejs npm)"
    return 1
  fi
  dir="${1:-$HERE/node}"
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

version_older() {
  # version_older A B: whether Go version A (e.g. 1.19.8) is older than B (e.g. 1.21).
  printf '%s\n%s\n' "$1" "$2" | awk -F. 'NR == 1 { a1 = $1; a2 = $2; a3 = $3 + 0 }
    NR == 2 { exit !(a1 < $1 || (a1 == $1 && (a2 < $2 || (a2 == $2 && a3 < $3 + 0)))) }'
}

go_toolchain() {
  # go_toolchain OLD_GO VERSION: Go's own toolchain download (the module golang.org/toolchain, the one
  # GOTOOLCHAIN uses, from the module proxy), fetched with whatever go is installed, even one too old to
  # know GOTOOLCHAIN (Debian 12's 1.19). Prints the toolchain's root.
  goos="$("$1" env GOOS)" goarch="$("$1" env GOARCH)"
  module="golang.org/toolchain@v0.0.1-go$2.$goos-$goarch"
  log "fetching Go $2 ($module) through the module proxy"
  # outside any module, so go.mod is neither read by the old go nor changed
  json="$(cd "${TMPDIR:-/tmp}" && GO111MODULE=on GOFLAGS=-mod=mod "$1" mod download -json "$module")" || return 1
  root="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [ -n "$root" ] && [ -f "$root/bin/go" ] || return 1
  # module files are stored without execute bits; go itself sets them the same way when it switches
  chmod +x "$root"/bin/* "$root"/pkg/tool/*/* 2>/dev/null || true
  printf '%s\n' "$root"
}

setup_go() {  # setup_go [DIR]: go mod download in DIR (default: the client's module)
  # Needs Go >= the go.mod's version. An older go (Debian 12 has 1.19) fetches the newer toolchain through
  # the module proxy; with INTEROP_BIN set (scripts/test sets it to a directory on its PATH) it is linked
  # there as `go`, else the PATH to use is printed.
  dir="${1:-$HERE/go}"
  want="$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$dir/go.mod")"
  if ! command -v go >/dev/null 2>&1; then
    log "go is required for the Go interop programs: install Go >= $want (apt-get install golang-go, then run this again; or https://go.dev/dl/)"
    return 1
  fi
  go="$(command -v go)"
  have="$(go env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p')"
  [ -n "$have" ] || have="$(go version | sed -n 's/.* go\([0-9][0-9.]*\).*/\1/p')"
  if version_older "$have" "$want"; then
    case "$want" in *.*.*) toolchain="$want" ;; *) toolchain="$want.0" ;; esac
    toolchain="${GO_TOOLCHAIN_VERSION:-$toolchain}"
    if ! root="$(go_toolchain "$go" "$toolchain")"; then
      log "go $have is older than the $want that $dir/go.mod needs, and Go $toolchain could not be fetched"
      log "through the module proxy (see GOPROXY): install Go >= $want (https://go.dev/dl/, or Debian's"
      log "bookworm-backports golang-$want-go) and put it first on PATH"
      return 1
    fi
    go="$root/bin/go"
    if [ -n "${INTEROP_BIN:-}" ]; then
      mkdir -p "$INTEROP_BIN"
      ln -sf "$go" "$INTEROP_BIN/go"
      ln -sf "$root/bin/gofmt" "$INTEROP_BIN/gofmt"
      log "go $have on PATH is older than $want: using Go $toolchain ($INTEROP_BIN/go -> $go)"
    else
      log "go $have on PATH is older than $want: Go $toolchain is in $root/bin; put it first on PATH:"
      log "  export PATH=\"$root/bin:\$PATH\""
    fi
  fi
  if ! (cd "$dir" && "$go" mod download); then
    log "go mod download failed in $dir (is the Go module proxy reachable? see GOPROXY)"
    return 1
  fi
}

setup_java() {
  for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "$tool is required for the Java interop client: install a JDK >= 11 and Maven (apt-get install default-jdk-headless maven)"
      return 1
    fi
  done
  dir="$HERE/java"
  repo="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}"
  stamp="$repo/.thrift-handshake-interop-$(cat "$dir/pom.xml" | cksum | cut -d' ' -f1)"
  [ -f "$stamp" ] && return 0
  log "mvn dependency:go-offline in $dir (libthrift 0.17.0 and the build plugins into $repo)"
  if ! (cd "$dir" && mvn -q -B -Dstyle.color=never dependency:go-offline >&2); then
    log "mvn dependency:go-offline failed in $dir (is Maven Central reachable?)"
    return 1
  fi
  mkdir -p "$repo" && touch "$stamp"
}

# The Debian packages of the C++ client, and a check that each is there.
CPP_PACKAGES="libthrift-dev libboost-dev libssl-dev pkg-config g++ cmake"  # libthrift-dev has libthriftz (THeader) too

cpp_missing() {
  missing=""
  command -v g++ >/dev/null 2>&1 || missing="$missing g++"
  command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
  command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
  if command -v pkg-config >/dev/null 2>&1; then
    { pkg-config --atleast-version=0.17 thrift && pkg-config --exists thrift-z; } 2>/dev/null || missing="$missing libthrift-dev"
    pkg-config --exists libcrypto 2>/dev/null || missing="$missing libssl-dev"
  fi
  [ -f /usr/include/boost/version.hpp ] || missing="$missing libboost-dev"
  printf '%s' "$missing"
}

setup_cpp() {
  missing="$(cpp_missing)"
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing the C++ client's packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends $CPP_PACKAGES >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1
      apt-get install -y --no-install-recommends $CPP_PACKAGES >/dev/null
    }
    missing="$(cpp_missing)"
    [ -z "$missing" ] && return 0
  fi
  log "the C++ interop client needs:$missing (as root: apt-get install -y --no-install-recommends $CPP_PACKAGES)"
  return 1
}

# apt_packages WHAT "PACKAGES" MISSING: installs PACKAGES (as root) when MISSING, the output of a check, is not empty.
apt_packages() {
  [ -z "$3" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing the $1's packages:$3"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $2 >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1
      apt-get install -y --no-install-recommends $2 >/dev/null
    } || true
    return 2  # installed: the caller checks again
  fi
  log "the $1 needs:$3 (as root: apt-get install -y --no-install-recommends $2)"
  return 1
}

# Apache's C++ TestClient (test/cpp/src/TestClient.cpp) links thriftnb (libevent), thriftz and boost's libraries.
CROSSTEST_CPP_PACKAGES="$CPP_PACKAGES libboost-program-options-dev libboost-filesystem-dev libboost-random-dev libevent-dev zlib1g-dev"

crosstest_cpp_missing() {
  missing="$(cpp_missing)"
  for header in boost/program_options.hpp boost/filesystem.hpp boost/random/random_device.hpp event.h zlib.h; do
    [ -f "/usr/include/$header" ] || missing="$missing $header"
  done
  for lib in boost_program_options boost_filesystem event; do
    [ -e "/usr/lib/$(uname -m)-linux-gnu/lib$lib.so" ] || missing="$missing lib$lib.so"
  done
  printf '%s' "$missing"
}

setup_crosstest_cpp() {
  apt_packages "cross test's C++ client" "$CROSSTEST_CPP_PACKAGES" "$(crosstest_cpp_missing)"
  case $? in 0) return 0 ;; 1) return 1 ;; esac
  missing="$(crosstest_cpp_missing)"
  [ -z "$missing" ] && return 0
  log "still missing for the cross test's C++ client:$missing"
  return 1
}

# setup_debian WHAT "PACKAGES" CHECK: installs PACKAGES (as root) unless the shell command CHECK succeeds.
setup_debian() {
  sh -c "$3" >/dev/null 2>&1 && return 0
  apt_packages "$1" "$2" " (check failed: $3)"
  case $? in 0) return 0 ;; 1) return 1 ;; esac
  sh -c "$3" >/dev/null 2>&1 && return 0
  log "the $1 still fails its check after installing $2: $3"
  return 1
}

PERL_PACKAGES="perl libthrift-perl libbit-vector-perl libclass-accessor-perl"
PERL_CHECK="perl -MThrift -MThrift::BinaryProtocol -MBit::Vector -MClass::Accessor -e 1"
RUBY_PACKAGES="ruby ruby-thrift"
RUBY_CHECK="ruby -e 'require \"thrift\"'"
C_GLIB_PACKAGES="libthrift-c-glib-dev libglib2.0-dev gcc pkg-config"
C_GLIB_CHECK="command -v gcc && pkg-config --atleast-version=0.17 thrift_c_glib && pkg-config --exists glib-2.0 gobject-2.0"

setup_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is required for the Rust interop client: install Rust >= 1.78 (https://rustup.rs)"
    return 1
  fi
  dir="$HERE/rust"
  if ! (cd "$dir" && cargo fetch --locked -q >&2); then
    log "cargo fetch failed in $dir (is crates.io reachable? is cargo >= 1.78, for Cargo.lock version 4?)"
    return 1
  fi
}

status=0
[ $# -gt 0 ] || set -- node go java cpp rust node-server go-server cpp-server crosstest-cpp perl ruby c_glib
for part in "$@"; do
  case "$part" in
    node) setup_node || status=1 ;;
    go) setup_go || status=1 ;;
    java) setup_java || status=1 ;;
    cpp) setup_cpp || status=1 ;;
    rust) setup_rust || status=1 ;;
    node-server) setup_node "$HERE/servers/node" || status=1 ;;
    go-server) setup_go "$HERE/servers/go" || status=1 ;;
    cpp-server) setup_cpp || status=1 ;;
    crosstest-cpp) setup_crosstest_cpp || status=1 ;;
    perl) setup_debian "Perl client" "$PERL_PACKAGES" "$PERL_CHECK" || status=1 ;;
    ruby) setup_debian "Ruby client" "$RUBY_PACKAGES" "$RUBY_CHECK" || status=1 ;;
    c_glib) setup_debian "C (c_glib) client" "$C_GLIB_PACKAGES" "$C_GLIB_CHECK" || status=1 ;;
    *) log "unknown part '$part' (expected: node, go, java, cpp, rust, node-server, go-server, cpp-server, crosstest-cpp, perl, ruby, c_glib)"; status=2 ;;
  esac
done
exit "$status"
