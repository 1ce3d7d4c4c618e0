#!/bin/sh
# Scan benchmark (issue 7): 500 packages against 50,000 OSV advisories <= 1 s.
# Prints the time to load the advisories from disk and the time to match.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p kiln-scan --example scan_bench
exec target/release/examples/scan_bench "${1:-500}" "${2:-50000}"
