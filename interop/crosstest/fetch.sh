#!/usr/bin/env sh
# Fetches Apache Thrift 0.17.0's release sources (the compiler's version) from Debian's source package
# `thrift` (its orig tarball, Apache's release tarball, checked against a pinned SHA-256) and unpacks them into
# interop/crosstest/apache/thrift-0.17.0 (gitignored). Idempotent: nothing is fetched while that tree is there.
# Why Debian's source package: it is a package registry these machines reach, with `apt-get source` as its
# ordinary client; Apache's test clients are not committed here, and GitHub is not reachable from CI.
# Uses its own package lists under apache/apt (deb-src for bookworm main), so the system's apt setup is left alone.
# Usage: interop/crosstest/fetch.sh   prints the tree's path
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
DEST="$HERE/apache"
TREE="$DEST/thrift-0.17.0"
TARBALL="thrift_0.17.0.orig.tar.gz"
SHA256="f5888bcd3b8de40c2c2ab86896867ad9b18510deb412cba3e5da76fb4c604c29"
SUITE="${CROSSTEST_DEBIAN_SUITE:-bookworm}"
MIRROR="${CROSSTEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '%s\n' "[crosstest/fetch] $*" >&2; }

if [ -f "$TREE/.unpacked" ]; then
  printf '%s\n' "$TREE"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { log "apt-get is needed (Debian's source package thrift 0.17.0)"; exit 1; }
mkdir -p "$DEST/apt/lists/partial" "$DEST/download"
printf 'deb-src %s %s main\n' "$MIRROR" "$SUITE" >"$DEST/apt/sources.list"
apt() {
  apt-get -q -o Dir::Etc::SourceList="$DEST/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::State::Lists="$DEST/apt/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
if [ ! -f "$DEST/download/$TARBALL" ]; then
  log "fetching Debian's source package thrift (=0.17.0) from $MIRROR $SUITE"
  apt update >/dev/null || { log "apt-get update of $MIRROR $SUITE (deb-src) failed"; exit 1; }
  # any Debian revision of 0.17.0 will do: they share the orig tarball, whose SHA-256 is checked below
  (cd "$DEST/download" && apt source --download-only thrift >/dev/null) ||
    { log "apt-get source --download-only thrift ($SUITE) failed"; exit 1; }
  [ -f "$DEST/download/$TARBALL" ] ||
    { log "Debian's $SUITE has no thrift 0.17.0 source: $(ls "$DEST/download")"; exit 1; }
fi
echo "$SHA256  $DEST/download/$TARBALL" | sha256sum -c --quiet - ||
  { log "$TARBALL does not have the SHA-256 pinned here"; rm -f "$DEST/download/$TARBALL"; exit 1; }
rm -rf "$TREE"
tar -xzf "$DEST/download/$TARBALL" -C "$DEST"
rm -rf "$DEST/apt/lists"  # 40 MB of package lists, needed only to fetch
touch "$TREE/.unpacked"
printf '%s\n' "$TREE"
