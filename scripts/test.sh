#!/usr/bin/env bash
# Run every test: formatting, lints, unit, property and integration tests,
# and interop with the real tools (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/prepare-example.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets (their own workspace) still build against today's parsers.
cargo check --locked --manifest-path fuzz/Cargo.toml --bins --target-dir target
# Tests that need root or an external tool are #[ignore]d, so a plain
# `cargo test` reports how many it did not run; here they run too, and a
# missing tool fails them. Benchmarks are bench targets, never tests.
cargo test --workspace --locked -- --include-ignored
