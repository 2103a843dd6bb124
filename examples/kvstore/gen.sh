#!/usr/bin/env sh
# Generates the example's Python code into examples/kvstore/gen-py (gitignored, never committed).
# Only kvstore.thrift itself: the session contract it includes (idl/session.thrift) is the runtime's own
# generated code, installed with thrift-handshake as thrift_handshake_gen.session.
# The Node.js client generates its own code (npm run build in node/).
set -eu
cd "$(dirname "$0")"
command -v thrift >/dev/null 2>&1 || {
  echo "gen.sh: the Thrift compiler is missing; install it with: apt-get install -y thrift-compiler" >&2
  exit 2
}
rm -rf gen-py
mkdir -p gen-py
thrift --gen py -out gen-py kvstore.thrift
echo "generated $(pwd)/gen-py"
