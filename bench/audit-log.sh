#!/usr/bin/env bash
# Audit-log benchmark (issue 4): durable appends per second with concurrent
# writers, inclusion-proof latency, and `verify` of a 1,000,000-event log.
#
# Peer: Tessera (Trillian's successor) reports ~2,900 durable writes/s on a
# local POSIX disk with 12 cores. Tessera is a Go module and this machine has
# no Go module proxy, so the peer is its published figure, not a run; the
# ratio printed is kiln's measured rate over that figure.
#
#   bench/audit-log.sh            # full run, about 30 s
#   bench/audit-log.sh --quick    # 100k-event log instead of 1M
#
# Environment: BENCH_DIR (default /var/tmp/kiln-bench-log; must be on the
# disk you want to measure, not tmpfs), WRITERS (default 64), EVENTS
# (default 200000 appends per run).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/kiln-bench-log}
WRITERS=${WRITERS:-64}
EVENTS=${EVENTS:-200000}
BIG=1000000
[ "${1:-}" = "--quick" ] && BIG=100000
TESSERA=2900

(cd "$repo" && cargo build --release -q -p kiln-tlog --example log_bench)
B=$repo/target/release/examples/log_bench
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"
fstype=$(stat -f -c %T "$BENCH_DIR")
echo "== log directory $BENCH_DIR ($fstype); events are ~450-byte kiln audit events"

val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

echo "== durable appends (fdatasync before each acknowledgement; group commit)"
for w in 1 16 "$WRITERS"; do
    rm -rf "$BENCH_DIR/a"
    n=$EVENTS; [ "$w" = 1 ] && n=$((EVENTS / 20))   # one writer = one fsync per event
    out=$("$B" appends "$BENCH_DIR/a" "$w" "$n")
    echo "   $out"
    [ "$w" = "$WRITERS" ] && rate=$(echo "$out" | val per_second)
done
echo "== two processes x $((WRITERS / 2)) writers on one log (flock between processes)"
rm -rf "$BENCH_DIR/p"
t0=$(date +%s.%N)
"$B" appends "$BENCH_DIR/p" $((WRITERS / 2)) $((EVENTS / 2)) > "$BENCH_DIR/p1.out" &
"$B" appends "$BENCH_DIR/p" $((WRITERS / 2)) $((EVENTS / 2)) > "$BENCH_DIR/p2.out" &
wait
t1=$(date +%s.%N)
sed 's/^/   /' "$BENCH_DIR/p1.out" "$BENCH_DIR/p2.out"
"$B" verify "$BENCH_DIR/p" | sed 's/^/   verified: /'
prate=$(echo "$EVENTS $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2)}')
echo "   combined: $prate appends/s"

echo "== a $BIG-event log (batches of 1,000)"
"$B" fill "$BENCH_DIR/big" "$BIG" | sed 's/^/   /'
du -sh "$BENCH_DIR/big" | sed 's/^/   size on disk: /'
proof=$("$B" prove "$BENCH_DIR/big" 100000)
echo "   $proof"
sync
ver=$("$B" verify "$BENCH_DIR/big")
echo "   $ver"
us=$(echo "$proof" | val mean_us)
vs=$(echo "$ver" | val verify_s)

echo
printf '%-52s %12s %12s  %s\n' "measure" "kiln" "target" "verdict"
verdict() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? (a >= b) : (a <= b); print ok ? "met" : "NOT MET" }'; }
printf '%-52s %12s %12s  %s\n' "durable appends/s, $WRITERS writers" "$rate" ">= 20000" "$(verdict "$rate" 20000 '>=')"
printf '%-52s %12s %12s  %s\n' "  ratio to Tessera's published ~$TESSERA/s" "$(awk -v r="$rate" -v t=$TESSERA 'BEGIN{printf "%.1fx", r/t}')" "" ""
printf '%-52s %12s %12s  %s\n' "inclusion proof, $BIG-event log (mean µs)" "$us" "< 100" "$(verdict "$us" 100 '<=')"
printf '%-52s %12s %12s  %s\n' "log verify, $BIG events (s)" "$vs" "< 2" "$(verdict "$vs" 2 '<=')"
rm -rf "$BENCH_DIR"
