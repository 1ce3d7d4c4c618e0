#!/usr/bin/env bash
# bench/drift.sh — kiln's drift scanner against AIDE 0.18 (a benchmark, not a test).
#
# On a copy of /usr/share ($BENCH_DIR/tree), in the same run and with a warm page
# cache for both (nothing is dropped; every tool reads the tree once before it is
# timed):
#   aide --init, aide --check   rule  p+u+g+s+m+c+i+n+sha256  (permissions, owner,
#                               group, size, mtime, ctime, inode, link count and
#                               SHA-256: AIDE does the same SHA-256 work we do);
#   kiln fim init, kiln fim check (full re-hash), kiln fim check --incremental
#                               with nothing changed.
# Targets (issue 6): full re-hash >= 50x faster than `aide --check`;
# incremental <= 0.2 s.
#
# Installs nothing. Needs `aide` (Debian: apt-get install -y aide). Uses
# `$KILN fim ...` if the CLI has it, else the example binary with the same
# arguments (cargo build --release -p kiln-drift --example fim).
#
# Env: BENCH_DIR (default /tmp/kiln-drift-bench), KILN (default
# target/release/kiln), SRC (default /usr/share), RUNS (incremental runs, default 5).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/kiln-drift-bench}
SRC=${SRC:-/usr/share}
KILN=${KILN:-$ROOT/target/release/kiln}
RUNS=${RUNS:-5}
TREE=$BENCH_DIR/tree

command -v aide >/dev/null || { echo "aide not found: apt-get install -y aide" >&2; exit 2; }
mkdir -p "$BENCH_DIR"
[ -d "$TREE" ] || cp -a "$SRC" "$TREE"

if [ -x "$KILN" ] && "$KILN" fim --help >/dev/null 2>&1; then
    FIM=("$KILN" fim)
else
    echo "# '$KILN fim' not available; using the kiln-drift example binary" >&2
    (cd "$ROOT" && cargo build --quiet --release -p kiln-drift --example fim)
    FIM=("$ROOT/target/release/examples/fim")
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# AIDE: config selection lines are regular expressions.
TREE_RE=$(printf '%s' "$TREE" | sed 's/[.[\*^$()+?{|]/\\&/g')
CONF=$BENCH_DIR/aide.conf
cat >"$CONF" <<CONF
database_in=file:$BENCH_DIR/aide.db
database_out=file:$BENCH_DIR/aide.db.new
gzip_dbout=no
report_url=stdout
KilnRule = p+u+g+s+m+c+i+n+sha256
$TREE_RE KilnRule
CONF
rm -f "$BENCH_DIR/aide.db" "$BENCH_DIR/aide.db.new"

files=$(find "$TREE" -type f | wc -l)
size=$(du -sm "$TREE" | cut -f1)
echo "# tree: $TREE ($files files, ${size} MB), $(nproc) cores, $(aide --version 2>&1 | head -1)"
echo "# fim: ${FIM[*]}"

t0=$(now); aide --config="$CONF" --init >/dev/null; t1=$(now)
aide_init=$(elapsed "$t0" "$t1")
mv "$BENCH_DIR/aide.db.new" "$BENCH_DIR/aide.db"

M=$BENCH_DIR/fim.manifest   # not matched by AIDE's regex for the tree
rm -f "$M" "$M.cache"
t0=$(now); "${FIM[@]}" init "$TREE" --out "$M" 2>/dev/null; t1=$(now)
fim_init=$(elapsed "$t0" "$t1")
sleep 1   # past the cache's racy-timestamp window

t0=$(now); rc=0; aide --config="$CONF" --check >/dev/null || rc=$?; t1=$(now)
aide_check=$(elapsed "$t0" "$t1")
[ "$rc" = 0 ] || echo "# warning: aide --check exit $rc" >&2

t0=$(now); rc=0; "${FIM[@]}" check "$TREE" --manifest "$M" >/dev/null 2>&1 || rc=$?; t1=$(now)
fim_full=$(elapsed "$t0" "$t1")
[ "$rc" = 0 ] || echo "# warning: fim check exit $rc" >&2

best=""
for _ in $(seq "$RUNS"); do
    t0=$(now); rc=0; "${FIM[@]}" check "$TREE" --manifest "$M" --incremental >/dev/null 2>&1 || rc=$?; t1=$(now)
    t=$(elapsed "$t0" "$t1")
    [ "$rc" = 0 ] || echo "# warning: fim check --incremental exit $rc" >&2
    all="${all:-}$t "
    best=$(awk -v a="${best:-999}" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
done

ratio=$(awk -v a="$aide_check" -v b="$fim_full" 'BEGIN { printf "%.1f", a / b }')
printf '%-34s %8ss\n' "aide --init" "$aide_init" "fim init" "$fim_init" \
    "aide --check" "$aide_check" "fim check (full re-hash)" "$fim_full"
printf '%-34s %8ss   (runs: %s)\n' "fim check --incremental (best)" "$best" "$all"
ok1=$(awk -v r="$ratio" 'BEGIN { print (r >= 50) ? "PASS" : "FAIL" }')
ok2=$(awk -v t="$best" 'BEGIN { print (t <= 0.2) ? "PASS" : "FAIL" }')
echo "full re-hash speed-up vs aide --check: ${ratio}x (target >= 50x)  $ok1"
echo "incremental, nothing changed:         ${best}s (target <= 0.2s)  $ok2"

# Detection latency under kiln serve: one changed file in a running
# instance's root filesystem → the drift.detected event (as root, with runc).
if [ "$(id -u)" = 0 ] && command -v runc >/dev/null && "$KILN" --help 2>/dev/null | grep -q '^  serve'; then
    L=$BENCH_DIR/latency; rm -rf "$L"; mkdir -p "$L"
    export KILN_STATE_DIR=$L/state KILN_KEY_PASSWORD=bench
    cp -a "$ROOT/examples/hello" "$L/hello"
    [ -x "$L/hello/bin/busybox" ] || cp /bin/busybox "$L/hello/bin/busybox"
    (cd "$L" && "$KILN" key generate ci >/dev/null)
    d=$("$KILN" build -f "$L/hello/kiln.toml" 2>/dev/null | tail -1)
    "$KILN" sign hello:1.0.0 --key "$L/ci.key" >/dev/null
    printf '[keys]\nci = "ci.pub"\n[roles.ci]\nkeys = ["ci"]\nthreshold = 1\n[require]\nsignature = "ci"\n' > "$L/trust.toml"
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf '[service.web]\nimage = "hello@%s"\nreplicas = 2\nlisten = "127.0.0.1:%s"\nport = 8080\npolicy = "trust.toml"\n' "$d" "$p" > "$L/deploy.toml"
    "$KILN" serve > "$L/serve.log" 2>&1 & serve=$!
    for _ in $(seq 100); do [ -S "$L/state/fleet/kiln.sock" ] && break; sleep 0.1; done
    "$KILN" apply -f "$L/deploy.toml" >/dev/null
    lat=()
    for i in 1 2 3 4 5; do
        sleep 1.5
        n=$("$KILN" --json log show --action drift.detected | jq length)
        r=$(ls -d "$L"/state/fleet/rootfs/*/rootfs | head -1)
        t0=$(now); echo "tampered $i" >> "$r/www/index.html"
        while [ "$("$KILN" --json log show --action drift.detected | jq length)" = "$n" ]; do sleep 0.01; done
        t1=$(now); lat+=("$(elapsed "$t0" "$t1")")
    done
    "$KILN" destroy web >/dev/null; kill "$serve"; wait "$serve" 2>/dev/null || true
    med=$(printf '%s\n' "${lat[@]}" | sort -n | sed -n 3p)
    ok3=$(awk -v t="$med" 'BEGIN { print (t <= 2) ? "PASS" : "FAIL" }')
    echo "detection latency under kiln serve:   ${med}s median of 5 (${lat[*]}) (target <= 2s)  $ok3"
else
    echo "detection latency under kiln serve: skipped (needs root, runc and kiln serve)"
fi
