#!/usr/bin/env bash
# Verify benchmark: whole-process wall time of `kiln verify` on the hello example
# signed by 3 keys under a 3-of-3 policy, over 50 runs (hyperfine if available, else a
# bash loop). Prints the median in ms and PASS/FAIL against the target (<= 20 ms).
# cosign is not installed here, so there is no peer run to compare against.
#
#   bench/verify.sh
#
# Environment: KILN (binary, default target/release/kiln, built with
# `cargo build --release --locked` if missing), BENCH_DIR (work dir, default
# /tmp/kiln-bench-verify), RUNS (default 50), TARGET_MS (default 20).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN:-$repo/target/release/kiln}
BENCH_DIR=${BENCH_DIR:-/tmp/kiln-bench-verify}
RUNS=${RUNS:-50}
TARGET_MS=${TARGET_MS:-20}

log() { printf '== %s\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

if [ ! -x "$KILN" ]; then
    log "building kiln (cargo build --release --locked)"
    (cd "$repo" && cargo build --release --locked -p kiln)
    [ -x "$KILN" ] || die "no kiln binary at $KILN"
fi
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")

if [ ! -x "$repo/examples/hello/bin/busybox" ]; then
    log "preparing examples/hello (scripts/prepare-example.sh)"
    "$repo/scripts/prepare-example.sh" || die "examples/hello/bin/busybox is missing"
fi
if ! command -v hyperfine >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing hyperfine"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null 2>&1 || true
fi

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR/keys"
export KILN_STATE_DIR=$BENCH_DIR/state
export KILN_KEY_PASSWORD=bench
unset SOURCE_DATE_EPOCH

log "building examples/hello"
digest=$("$KILN" build -f "$repo/examples/hello/kiln.toml" | tail -n1)
log "image $digest"

for k in k1 k2 k3; do
    "$KILN" key generate "$BENCH_DIR/keys/$k" >/dev/null
    "$KILN" sign hello:1.0.0 --key "$BENCH_DIR/keys/$k.key" >/dev/null
done
cat >"$BENCH_DIR/keys/trust.toml" <<TOML
[keys]
k1 = "k1.pub"
k2 = "k2.pub"
k3 = "k3.pub"

[roles.builder]
keys = ["k1", "k2", "k3"]
threshold = 3

[require]
signature = "builder"
TOML
policy=$BENCH_DIR/keys/trust.toml
cmd=("$KILN" verify hello:1.0.0 --policy "$policy")

log "sanity run"
"${cmd[@]}" || die "kiln verify failed on the 3-of-3 signed image"

median_ms=
if command -v hyperfine >/dev/null; then
    log "hyperfine: $RUNS runs"
    hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$BENCH_DIR/hyperfine.json" \
        "$KILN verify hello:1.0.0 --policy $policy" >&2
    median_ms=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f" % (r["median"]*1000))' "$BENCH_DIR/hyperfine.json")
    tool=hyperfine
else
    log "hyperfine not available: bash loop, $RUNS runs"
    for _ in 1 2 3; do "${cmd[@]}" >/dev/null; done
    times=()
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s%N)
        "${cmd[@]}" >/dev/null
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
    done
    median_ms=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}')
    tool="bash loop"
fi

echo
echo "kiln verify (3-of-3 signatures, $RUNS runs, $tool): median ${median_ms} ms"
if awk -v m="$median_ms" -v t="$TARGET_MS" 'BEGIN { exit !(m <= t) }'; then
    echo "PASS: median ${median_ms} ms <= target ${TARGET_MS} ms"
else
    echo "FAIL: median ${median_ms} ms > target ${TARGET_MS} ms"
fi
echo "peer: cosign is not available here, so there is no cosign verify run to compare"
