#!/bin/sh
# Put busybox (from Debian's busybox-static package) where examples/hello expects it.
# The binary is third-party and ~2 MB, so it is copied at setup time, never committed.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src=/bin/busybox
if [ ! -x "$src" ] || ! dpkg -S "$src" 2>/dev/null | grep -q busybox-static; then
  echo "prepare-example: busybox-static is not installed (apt-get install busybox-static)" >&2
  exit 1
fi
mkdir -p "$here/examples/hello/bin"
cp "$src" "$here/examples/hello/bin/busybox"
chmod 0755 "$here/examples/hello/bin/busybox"
