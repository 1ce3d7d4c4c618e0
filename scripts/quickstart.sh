#!/usr/bin/env bash
# One command on a fresh Debian 12 machine with Rust: install what is
# needed, build kiln, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/prepare-example.sh
cargo build --release --locked
# Shell completions and man pages, generated from kiln's own command definitions.
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
tmp=$(mktemp -d)
target/release/kiln completions bash >"$tmp/kiln.bash"
target/release/kiln completions zsh >"$tmp/_kiln"
target/release/kiln completions fish >"$tmp/kiln.fish"
target/release/kiln man --out "$tmp/man1" >/dev/null
$SUDO install -D -m 0644 "$tmp/kiln.bash" /usr/share/bash-completion/completions/kiln
$SUDO install -D -m 0644 "$tmp/_kiln" /usr/local/share/zsh/site-functions/_kiln
$SUDO install -D -m 0644 "$tmp/kiln.fish" /usr/share/fish/vendor_completions.d/kiln.fish
$SUDO install -d /usr/local/share/man/man1
$SUDO install -m 0644 "$tmp"/man1/*.1 /usr/local/share/man/man1/
rm -rf "$tmp"
scripts/demo.sh
