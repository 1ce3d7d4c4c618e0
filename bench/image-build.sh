#!/usr/bin/env bash
# Image-build benchmark: kiln against umoci repack, tar|gzip -6 and
# tar|zstd -3 -T2 on the same input (a copy of /usr/share) in one run, then
# prints wall times, ratios against the project's targets, kiln's phase times
# and the output sizes. A benchmark, not a test: it exits 0 whether or not the
# targets are met (non-zero only when something could not be run).
#
#   bench/image-build.sh            full run (/usr/share, ~650 MB; ~1 minute)
#   bench/image-build.sh --quick    smoke run on /usr/share/doc only
#
# Environment: KILN (binary, default target/release/kiln, built with
# `cargo build --release --locked` if missing), BENCH_DIR (work dir, default
# /tmp/kiln-bench; the source copy there is kept and reused between runs).
set -euo pipefail

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN:-$repo/target/release/kiln}
BENCH_DIR=${BENCH_DIR:-/tmp/kiln-bench}
REBUILD_RUNS=5

if [ -t 2 ]; then
    log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
else
    log() { printf '== %s\n' "$*" >&2; }
fi
die() { echo "bench: $*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------
missing=()
command -v umoci >/dev/null || missing+=(umoci)
command -v zstd >/dev/null || missing+=(zstd)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x "$KILN" ]; then
    log "building kiln (cargo build --release --locked)"
    (cd "$repo" && cargo build --release --locked)
    [ -x "$KILN" ] || die "no kiln binary at $KILN"
fi
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")

# --- input -------------------------------------------------------------------
# Full: $BENCH_DIR/src/share = /usr/share. Quick: $BENCH_DIR/src-quick/share/doc
# = /usr/share/doc. Either way the spec maps share/ to /usr/share.
if [ $quick = 1 ]; then
    from=/usr/share/doc; src=$BENCH_DIR/src-quick; tree=$src/share/doc
else
    from=/usr/share; src=$BENCH_DIR/src; tree=$src/share
fi
size_of() { du -s --apparent-size -B1 "$1" | cut -f1; }
count_of() { find "$1" | wc -l; }
mkdir -p "$BENCH_DIR"
want_size=$(size_of "$from"); want_count=$(count_of "$from")
if [ -d "$tree" ] && [ "$(size_of "$tree")" = "$want_size" ] && [ "$(count_of "$tree")" = "$want_count" ]; then
    log "reusing the copy of $from in $src"
else
    log "copying $from to $src (cp -a)"
    rm -rf "$src"; mkdir -p "$(dirname "$tree")"
    cp -a "$from" "$tree"
fi
cat > "$src/kiln.toml" <<'EOF'
[image]
name = "bench"
tag = "1"

[[files]]
src = "share/"
dst = "/usr/share"
EOF
in_bytes=$(size_of "$src/share"); in_files=$(count_of "$src/share")

# Outputs, state dirs and the umoci layout/bundle: removed at exit.
run=$BENCH_DIR/run
rm -rf "$run"; mkdir -p "$run"
trap 'rm -rf "$run"' EXIT

# This VM (like many) reclaims cold page cache proactively (DAMON), so the
# inputs are re-read right before every timed step: each tool starts warm.
# (Piped through cat: GNU tar skips reading files when writing to /dev/null.)
warm() {
    local d
    for d in "$@"; do
        [ -d "$d" ] && tar -C "$d" -cf - . | cat >/dev/null
    done
    return 0
}
WARM_DIRS=("$src")

# --- timing helpers ----------------------------------------------------------
now() { date +%s.%N; }
# timed NAME CMD...: sync, then run CMD and store its wall seconds in T[NAME].
declare -A T
timed() {
    local name=$1; shift
    warm "${WARM_DIRS[@]}"
    sync
    local t0 t1
    t0=$(now)
    "$@"
    t1=$(now)
    T[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    log "$(printf '%-28s %8ss' "$name" "${T[$name]}")"
}
tarball() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - -C "$src" share; }
tar_gzip() { tarball | gzip -n -6 > "$run/out.tar.gz"; }
tar_zstd() { tarball | zstd -3 -T2 -q > "$run/out.tar.zst"; }
kiln_build() { # STATE_DIR JSON_OUT [kiln args...]
    local state=$1 out=$2; shift 2
    KILN_STATE_DIR=$state "$KILN" build -f "$src/kiln.toml" --json "$@" > "$out"
}

# --- 1. umoci repack ---------------------------------------------------------
L=$run/umoci-layout; B=$run/umoci-bundle
umoci init --layout "$L"
umoci new --image "$L:base"
rootless=()
[ "$(id -u)" = 0 ] || rootless=(--rootless)  # the brief runs it as root
umoci unpack "${rootless[@]}" --image "$L:base" "$B" >/dev/null
mkdir -p "$B/rootfs/usr"
cp -a "$src/share" "$B/rootfs/usr/share"
WARM_DIRS=("$B/rootfs")
timed "umoci repack" umoci repack --image "$L:new" "$B"
WARM_DIRS=("$src")
umoci_manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "new") | .digest' "$L/index.json")
umoci_layer=$(jq -r '.layers[-1].size' "$L/blobs/sha256/${umoci_manifest#sha256:}")
rm -rf "$B"  # free the bundle's copy before the next steps

# --- 2, 3. tar | gzip, tar | zstd -------------------------------------------
timed "tar | gzip -n -6" tar_gzip
timed "tar | zstd -3 -T2" tar_zstd
gz_size=$(stat -c %s "$run/out.tar.gz"); zst_size=$(stat -c %s "$run/out.tar.zst")
rm -f "$run/out.tar.gz" "$run/out.tar.zst"

# --- 4, 5. kiln cold ---------------------------------------------------------
rm -rf "$run/state-gzip"
timed "kiln gzip (cold)" kiln_build "$run/state-gzip" "$run/kiln-gzip.json"
rm -rf "$run/state-gzip"
rm -rf "$run/state-zstd"
timed "kiln zstd (cold)" kiln_build "$run/state-zstd" "$run/kiln-zstd.json" --compression zstd

# --- 6. kiln rebuild, nothing changed (same state dir as 5) ------------------
rebuilds=()
for i in $(seq 1 $REBUILD_RUNS); do
    timed "kiln no-change rebuild #$i" kiln_build "$run/state-zstd" "$run/kiln-rebuild-$i.json" --compression zstd
    rebuilds+=("${T[kiln no-change rebuild #$i]}")
done
T[kiln no-change rebuild]=$(printf '%s\n' "${rebuilds[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
notes=()
cold_digest=$(jq -r .digest "$run/kiln-zstd.json")
for i in $(seq 1 $REBUILD_RUNS); do
    j=$run/kiln-rebuild-$i.json
    [ "$(jq -r .digest "$j")" = "$cold_digest" ] || notes+=("rebuild #$i: digest differs from the cold zstd build")
    [ "$(jq '[.layers[].cached] | all' "$j")" = true ] || notes+=("rebuild #$i: not every layer was cached")
done

# --- report ------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
layer_size() { jq '[.layers[].size] | add' "$1"; }
# phases_ms is a list of [name, ms] pairs (or an object name -> ms).
phases() { jq -r '.phases_ms | (if type == "object" then to_entries | map([.key, .value]) else . end)
                  | map("\(.[0])=\(.[1])") | join("  ")' "$1"; }

echo
echo "kiln image-build benchmark$([ $quick = 1 ] && echo ' (--quick: /usr/share/doc only; targets are set for the full /usr/share)')"
echo "input:   $from -> $(mib "$in_bytes"), $in_files files, dirs and links; $(nproc) cores"
echo "kiln:    $KILN"
echo
echo "wall time (s, sync before each step, warm page cache)"
for k in "umoci repack" "tar | gzip -n -6" "tar | zstd -3 -T2" "kiln gzip (cold)" "kiln zstd (cold)"; do
    printf '  %-30s %8s\n' "$k" "${T[$k]}"
done
printf '  %-30s %8s   (median of %d: %s)\n' "kiln no-change rebuild" "${T[kiln no-change rebuild]}" \
    $REBUILD_RUNS "${rebuilds[*]}"
echo
echo "ratios"
printf '  %-34s %8s   %-8s %s\n' "" value target result
ratio() { # LABEL VALUE TARGET
    awk -v l="$1" -v v="$2" -v t="$3" 'BEGIN {
        printf "  %-34s %8.3f   <= %-5.2f %s\n", l, v, t, (v <= t ? "PASS" : "FAIL") }'
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", (b > 0 ? a / b : 1e9) }'; }
ratio "kiln gzip / umoci repack" "$(div "${T[kiln gzip (cold)]}" "${T[umoci repack]}")" 0.50
ratio "kiln gzip / tar|gzip -6" "$(div "${T[kiln gzip (cold)]}" "${T[tar | gzip -n -6]}")" 0.25
ratio "kiln zstd / tar|zstd -3 -T2" "$(div "${T[kiln zstd (cold)]}" "${T[tar | zstd -3 -T2]}")" 1.00
ratio "kiln no-change rebuild (s)" "${T[kiln no-change rebuild]}" 0.50
echo
echo "kiln phases_ms"
printf '  %-18s elapsed_ms=%s  %s\n' "gzip (cold)" "$(jq .elapsed_ms "$run/kiln-gzip.json")" "$(phases "$run/kiln-gzip.json")"
printf '  %-18s elapsed_ms=%s  %s\n' "zstd (cold)" "$(jq .elapsed_ms "$run/kiln-zstd.json")" "$(phases "$run/kiln-zstd.json")"
printf '  %-18s elapsed_ms=%s  %s\n' "rebuild #1" "$(jq .elapsed_ms "$run/kiln-rebuild-1.json")" "$(phases "$run/kiln-rebuild-1.json")"
echo
echo "output sizes (compressed layer bytes)"
printf '  %-30s %14s  %s\n' "umoci repack layer (gzip)" "$umoci_layer" "$(mib "$umoci_layer")"
printf '  %-30s %14s  %s\n' "tar | gzip -n -6" "$gz_size" "$(mib "$gz_size")"
printf '  %-30s %14s  %s\n' "kiln gzip layers" "$(layer_size "$run/kiln-gzip.json")" "$(mib "$(layer_size "$run/kiln-gzip.json")")"
printf '  %-30s %14s  %s\n' "tar | zstd -3 -T2" "$zst_size" "$(mib "$zst_size")"
printf '  %-30s %14s  %s\n' "kiln zstd layers" "$(layer_size "$run/kiln-zstd.json")" "$(mib "$(layer_size "$run/kiln-zstd.json")")"
if [ ${#notes[@]} -gt 0 ]; then
    echo
    echo "notes"
    printf '  %s\n' "${notes[@]}"
fi
