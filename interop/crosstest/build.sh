#!/usr/bin/env sh
# Builds Apache Thrift 0.17.0's own test clients, unmodified, from the tree fetch.sh unpacks
# (interop/crosstest/apache/thrift-0.17.0, gitignored), with Debian's `thrift` compiler 0.17.0:
#   py:   ThriftTest's Python code into test/py/gen-py, and a venv (apache/py-venv) holding the tree's own Python
#         library (lib/py, 0.17.0, with its C extension) and six from PyPI: TestClient.py 0.17 does not run on the
#         0.25 library (its SSL cells pass `validate=False`, which 0.25 refuses); PyPI has no thrift 0.17.0.
#         PYTHON names the interpreter (default python3).
#   go:   test/go/bin/testclient, built in module mode against the tree's own lib/go (module github.com/apache/thrift)
#   cpp:  test/cpp/build/TestClient, against Debian's libthrift-dev 0.17 (the packages are installed by
#         interop/setup.sh crosstest-cpp)
#   node: ThriftTest's JS code into lib/nodejs/test/gen-nodejs; the client's npm packages from
#         interop/crosstest/node/package-lock.json (`npm ci`); the thrift library is the tree's own lib/nodejs
#   java: lib/java/crosstest-classes: the TestClient and ThriftTest's Java code compiled with javac against the
#         jars of interop/crosstest/java/pom.xml (libthrift 0.17.0 and what it needs, from Maven Central), which
#         `mvn dependency:copy-dependencies` puts in lib/java/crosstest-lib
# Each part is skipped while its stamp (the compiler's and toolchain's versions) is unchanged.
# Usage: interop/crosstest/build.sh PART...   prints nothing; exits non-zero, saying why, when a step fails
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
TREE="$("$HERE/fetch.sh")"
IDL="$TREE/test/ThriftTest.thrift"
VENV="$(dirname "$TREE")/py-venv"

log() { printf '%s\n' "[crosstest/build] $*" >&2; }

# fresh STAMP_FILE TEXT: whether STAMP_FILE holds TEXT (then the part is built already)
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

gen() {  # gen GENERATOR OUT_DIR [IDL]: thrift's warnings about the IDL's made-up namespaces are dropped
  mkdir -p "$2"
  thrift --gen "$1" -out "$2" "${3:-$IDL}" 2>&1 | grep -v "noexist" >&2 || true
  [ -n "$(ls -A "$2")" ] || { log "thrift --gen $1 wrote nothing into $2"; exit 1; }
}

build_py() {
  python="${PYTHON:-python3}"
  want="$(thrift --version) $("$python" --version)"
  fresh "$TREE/test/py/.built" "$want" && return 0
  rm -rf "$TREE/test/py/gen-py" "$VENV"
  gen py "$TREE/test/py/gen-py"
  "$python" -m venv "$VENV" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check six "$TREE/lib/py" >&2 ||
    { log "could not install Apache's Python library (lib/py) and six into $VENV"; exit 1; }
  printf '%s\n' "$want" >"$TREE/test/py/.built"
}

build_go() {
  want="$(thrift --version) $(go version)"
  dir="$TREE/test/go"
  fresh "$dir/.built" "$want" && return 0
  # as test/go/Makefile.am does: the Go generator cannot express list<map<..list<map>>> (one line of the IDL)
  grep -v 'list.*map.*list.*map' "$IDL" >"$dir/ThriftTest.thrift"
  rm -rf "$dir/src/gen"
  mkdir -p "$dir/src/gen"
  thrift -out "$dir/src/gen" \
    --gen go:thrift_import=github.com/apache/thrift/lib/go/thrift,package_prefix=github.com/apache/thrift/test/go/src/gen/ \
    "$dir/ThriftTest.thrift" 2>&1 | grep -v noexist >&2 || true
  (cd "$TREE" && GOFLAGS=-mod=mod nice go build -buildvcs=false -o "$dir/bin/testclient" ./test/go/src/bin/testclient) ||
    { log "go build of Apache's Go testclient failed"; exit 1; }
  printf '%s\n' "$want" >"$dir/.built"
}

build_cpp() {
  want="$(thrift --version) $(g++ --version | head -1) $(pkg-config --modversion thrift)"
  dir="$TREE/test/cpp"
  fresh "$dir/.built" "$want" && return 0
  rm -rf "$dir/gen-cpp" "$dir/build"
  # the generator options of test/cpp/CMakeLists.txt
  gen cpp:templates,cob_style "$dir/gen-cpp"
  mkdir -p "$dir/build"
  for source in "$dir"/gen-cpp/SecondService.cpp "$dir"/gen-cpp/ThriftTest.cpp "$dir"/gen-cpp/ThriftTest_types.cpp \
                "$dir"/gen-cpp/ThriftTest_constants.cpp "$dir"/src/TestClient.cpp; do
    [ -f "$source" ] || continue
    (nice g++ -std=c++11 -O1 -w -c -I"$dir/gen-cpp" $(pkg-config --cflags thrift) "$source" \
       -o "$dir/build/$(basename "$source" .cpp).o") &
  done
  wait
  # shellcheck disable=SC2046
  nice g++ -o "$dir/build/TestClient" "$dir"/build/*.o $(pkg-config --libs thrift-nb thrift-z thrift) -lssl -lcrypto \
    -lboost_program_options -lboost_filesystem -levent -pthread ||
    { log "linking Apache's C++ TestClient failed (interop/setup.sh crosstest-cpp installs its packages)"; exit 1; }
  printf '%s\n' "$want" >"$dir/.built"
}

build_node() {
  want="$(thrift --version) $(node --version) $(cksum <"$HERE/node/package-lock.json")"
  dir="$TREE/lib/nodejs/test"
  fresh "$dir/.built" "$want" && return 0
  (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error >&2) || { log "npm ci in $HERE/node failed"; exit 1; }
  rm -rf "$dir/gen-nodejs"
  gen js:node "$dir/gen-nodejs"
  printf '%s\n' "$want" >"$dir/.built"
}

build_java() {
  want="$(thrift --version) $(javac -version 2>&1) $(cksum <"$HERE/java/pom.xml")"
  dir="$TREE/lib/java"
  fresh "$dir/.built" "$want" && return 0
  rm -rf "$dir/crosstest-lib" "$dir/crosstest-gen" "$dir/crosstest-classes" "$dir/crosstest-truststore"
  (cd "$HERE/java" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
     -DoutputDirectory="$dir/crosstest-lib" >&2) || { log "mvn dependency:copy-dependencies failed"; exit 1; }
  gen java "$dir/crosstest-gen"
  mkdir -p "$dir/crosstest-classes"
  find "$dir/crosstest-gen" "$dir/src/crossTest/java" -name '*.java' ! -name 'TestTServletServer.java' \
    ! -name 'TestServer.java' ! -name 'TestNonblockingServer.java' >"$dir/crosstest-sources"
  nice javac -nowarn -encoding UTF-8 -d "$dir/crosstest-classes" -cp "$dir/crosstest-lib/*" @"$dir/crosstest-sources" >&2 ||
    { log "javac of Apache's Java TestClient failed"; exit 1; }
  # The tree's src/crossTest/resources/.truststore holds the 2014 localhost certificate that test/keys/server.crt
  # (2022) replaced, so the ssl cells trust test/keys/server.crt (self-signed) from a truststore made here.
  keytool -importcert -noprompt -alias thrift-test -file "$TREE/test/keys/server.crt" \
    -keystore "$dir/crosstest-truststore" -storetype PKCS12 -storepass thrift >/dev/null 2>&1 ||
    { log "keytool could not make a truststore of test/keys/server.crt"; exit 1; }
  printf '%s\n' "$want" >"$dir/.built"
}

[ $# -gt 0 ] || set -- py go cpp node java
for part in "$@"; do
  case "$part" in
    py) build_py ;;
    go) build_go ;;
    cpp) build_cpp ;;
    node) build_node ;;
    java) build_java ;;
    *) log "unknown part '$part' (expected: py, go, cpp, node, java)"; exit 2 ;;
  esac
done
