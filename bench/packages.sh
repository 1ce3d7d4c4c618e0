#!/usr/bin/env bash
# Packages benchmark: kiln against mmdebstrap for the Flask example's package
# set (examples/flask), in one run. Measures
#   - `kiln lock` with warm indexes (target <= 0.3 s),
#   - a cold `kiln build` (empty cache: every .deb downloaded from the mirror),
#   - a warm `kiln build` (.debs cached, a fresh store; target <= 2 s),
#   - a no-change rebuild (everything cached),
#   - the peer, mmdebstrap to a tar with exactly the locked packages
#     (name=version) and its own .deb cache warmed through setup/customize
#     hooks (--skip=download/empty), in two variants:
#       extract:   the same packages unpacked, no maintainer scripts (what kiln does);
#       essential: the same packages plus Debian's Essential set, scripts run.
#     (`--variant=custom` with only these packages cannot run: dpkg needs sh,
#     ldconfig, rm, tar... from the Essential set to run maintainer scripts.)
# and prints the ratios warm kiln build / warm mmdebstrap (target <= 0.2).
# A benchmark, not a test: exits 0 whether or not the targets are met
# (non-zero only when something could not be run).
#
# The mirror is this machine's apt sources (/etc/apt/sources.list.d), as in
# the example. Environment: KILN (binary, default target/release/kiln, built
# if missing), BENCH_DIR (work dir, default /tmp/kiln-bench-packages).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN:-$repo/target/release/kiln}
BENCH_DIR=${BENCH_DIR:-/tmp/kiln-bench-packages}
RUNS=5

if [ -t 2 ]; then
    log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
else
    log() { printf '== %s\n' "$*" >&2; }
fi
die() { echo "bench: $*" >&2; exit 1; }
case "${1:-}" in
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "usage: $0" >&2; exit 2 ;;
esac

# --- tools -------------------------------------------------------------------
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ "$(id -u)" = 0 ] || die "mmdebstrap's root mode (the fair peer: it runs maintainer scripts in a chroot) needs root"
if [ ! -x "$KILN" ]; then
    log "building kiln (cargo build --release --locked)"
    (cd "$repo" && cargo build --release --locked)
    [ -x "$KILN" ] || die "no kiln binary at $KILN"
fi
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")

# --- input: the Flask example --------------------------------------------------
run=$BENCH_DIR/run
rm -rf "$run"; mkdir -p "$run"
trap 'rm -rf "$run"' EXIT
cp -a "$repo/examples/flask" "$run/flask"
spec=$run/flask/kiln.toml
rm -f "$run/flask/kiln.lock"

now() { date +%s.%N; }
declare -A T
timed() { # NAME CMD...
    local name=$1; shift
    sync
    local t0 t1
    t0=$(now)
    "$@"
    t1=$(now)
    T[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    log "$(printf '%-34s %8ss' "$name" "${T[$name]}")"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
kiln() { "$KILN" "$@"; }

# --- 1. kiln lock: once cold (indexes downloaded), then warm -------------------
S=$run/state-lock
timed "kiln lock (cold indexes)" kiln lock -f "$spec" --state-dir "$S" --json > "$run/lock.json"
locks=()
for i in $(seq 1 $RUNS); do
    rm -f "$run/flask/kiln.lock"
    timed "kiln lock (warm) #$i" kiln lock -f "$spec" --state-dir "$S" --json > "$run/lock.json"
    locks+=("${T[kiln lock (warm) #$i]}")
done
T[kiln lock (warm)]=$(median "${locks[@]}")

# --- 2. kiln build: cold cache, warm cache, no change --------------------------
B=$run/state-build
timed "kiln build (cold cache)" kiln build -f "$spec" --state-dir "$B" --locked --json > "$run/cold.json"
warms=()
for i in $(seq 1 $RUNS); do
    # A fresh store and layer cache each time; only the .deb and index cache stays.
    rm -rf "$B/store" "$B/cache/layers" "$B/cache/hashes" "$B/audit"
    timed "kiln build (warm cache) #$i" kiln build -f "$spec" --state-dir "$B" --locked --json > "$run/warm-$i.json"
    warms+=("${T[kiln build (warm cache) #$i]}")
done
T[kiln build (warm cache)]=$(median "${warms[@]}")
timed "kiln no-change rebuild" kiln build -f "$spec" --state-dir "$B" --locked --json > "$run/nochange.json"

notes=()
d0=$(jq -r .digest "$run/cold.json")
for i in $(seq 1 $RUNS); do
    [ "$(jq -r .digest "$run/warm-$i.json")" = "$d0" ] || notes+=("warm build #$i: digest differs from the cold build")
done
[ "$(jq -r .digest "$run/nochange.json")" = "$d0" ] || notes+=("no-change rebuild: digest differs")

# --- 3. the peer: mmdebstrap --variant=custom with the same packages ----------
pkgs=$(python3 - "$run/flask/kiln.lock" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
print(",".join(f"{p['name']}={p['version']}" for p in lock["package"]))
PY
)
npkgs=$(tr ',' '\n' <<<"$pkgs" | wc -l)
# The mirror lines from this machine's apt sources (one-line format).
mirrors=()
while IFS= read -r line; do mirrors+=("$line"); done < <(python3 - <<'PY'
import glob
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for para in open(f).read().split("\n\n"):
        kv = {}
        for l in para.splitlines():
            if l.startswith("#") or ":" not in l or l.startswith((" ", "\t")):
                continue
            k, v = l.split(":", 1)
            kv[k.strip()] = v.strip()
        if "deb" not in kv.get("Types", "").split():
            continue
        for uri in kv["URIs"].split():
            for suite in kv["Suites"].split():
                print(f"deb [signed-by={kv.get('Signed-By', '/usr/share/keyrings/debian-archive-keyring.gpg')}] {uri} {suite} {kv.get('Components', 'main')}")
PY
)
cache=$run/mmdebstrap-cache; mkdir -p "$cache"
mmdeb() { # VARIANT OUT [extra args]
    local variant=$1 out=$2; shift 2
    mmdebstrap --quiet --mode=root --variant="$variant" --include="$pkgs" \
        --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/ && cp -a $cache/. \"\$1\"/var/cache/apt/archives/" \
        --customize-hook="cp -a \"\$1\"/var/cache/apt/archives/. $cache/" \
        "$@" bookworm "$out" "${mirrors[@]}"
}
# The first run fills the cache (Essential's packages too); then warm runs.
timed "mmdebstrap essential (cold cache)" mmdeb essential "$run/mm-cold.tar"
declare -A peers
for v in extract essential; do
    runs=()
    for i in $(seq 1 3); do
        timed "mmdebstrap $v (warm) #$i" mmdeb "$v" "$run/mm-$v.tar" --skip=download/empty
        runs+=("${T[mmdebstrap $v (warm) #$i]}")
    done
    T[mmdebstrap $v (warm)]=$(median "${runs[@]}")
    peers[$v]="${runs[*]}"
done

# --- report --------------------------------------------------------------------
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 1e9) }'; }
echo
echo "kiln packages benchmark: examples/flask, $npkgs packages (the locked closure), $(nproc) cores"
echo "kiln: $KILN"
echo
echo "wall time (s)"
for k in "kiln lock (cold indexes)" "kiln lock (warm)" "kiln build (cold cache)" "kiln build (warm cache)" \
         "kiln no-change rebuild" "mmdebstrap essential (cold cache)" "mmdebstrap extract (warm)" \
         "mmdebstrap essential (warm)"; do
    printf '  %-36s %8s\n' "$k" "${T[$k]}"
done
echo "  (medians of: lock ${locks[*]}; warm build ${warms[*]}; extract ${peers[extract]}; essential ${peers[essential]})"
echo
echo "targets"
check() { awk -v l="$1" -v v="$2" -v t="$3" 'BEGIN { printf "  %-46s %8.3f   <= %-5.2f %s\n", l, v, t, (v <= t ? "PASS" : "FAIL") }'; }
check "kiln lock, warm (s)" "${T[kiln lock (warm)]}" 0.3
check "kiln build, warm cache (s)" "${T[kiln build (warm cache)]}" 2.0
check "warm kiln build / warm mmdebstrap extract" "$(div "${T[kiln build (warm cache)]}" "${T[mmdebstrap extract (warm)]}")" 0.2
check "warm kiln build / warm mmdebstrap essential" "$(div "${T[kiln build (warm cache)]}" "${T[mmdebstrap essential (warm)]}")" 0.2
echo
echo "sizes: kiln layers $(jq '[.layers[].size] | add' "$run/cold.json") bytes (gzip); mmdebstrap tars (uncompressed): extract $(stat -c %s "$run/mm-extract.tar"), essential $(stat -c %s "$run/mm-essential.tar") bytes"
for n in "${notes[@]}"; do echo "note: $n"; done
