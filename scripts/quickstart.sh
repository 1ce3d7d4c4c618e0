#!/usr/bin/env bash
# One command on a fresh Debian 12 machine with Rust: install what is
# needed, build kiln, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/prepare-example.sh
cargo build --release --locked
scripts/demo.sh
