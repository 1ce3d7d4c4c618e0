#!/usr/bin/env bash
# Egress benchmark (issue 14), one run, as root, on the hello example with a declared
# egress to a local redis-server and a bulk TCP source:
#  1. bulk throughput: a client reads a BULK_MIB MiB stream from a server on the host,
#     - direct (client on the host),
#     - through kiln's egress path (client inside the instance's network namespace,
#       connecting to the declared name's 127.0.x.y, kiln forwarding from the host side),
#     - through HAProxy in tcp mode on the same path (its `bind … namespace` listens inside
#       the same network namespace, its server side connects from the host);
#  2. request rate: redis-benchmark (SET/GET, 50 clients) the same three ways, without
#     pipelining and with -P 16.
# Prints each figure, the ratios to direct, and the bulk target (kiln >= 0.8x direct).
#
#   bench/egress.sh
#
# Environment: KILN (default target/release/kiln), BENCH_DIR (default
# /var/tmp/kiln-bench-egress), BULK_MIB (default 1024), REQUESTS (default 100000).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN:-$repo/target/release/kiln}
BENCH_DIR=${BENCH_DIR:-/var/tmp/kiln-bench-egress}
BULK_MIB=${BULK_MIB:-1024}
REQUESTS=${REQUESTS:-100000}
[ "$(id -u)" = 0 ] || { echo "bench/egress.sh: run as root (runc, nsenter)" >&2; exit 1; }
for t in runc jq nsenter python3 redis-server redis-benchmark haproxy; do
  command -v $t >/dev/null || { echo "missing $t (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -x "$KILN" ] || (cd "$repo" && cargo build --release -q -p kiln)
[ -x "$repo/examples/hello/bin/busybox" ] || "$repo/scripts/prepare-example.sh"

rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"; cd "$BENCH_DIR"
export KILN_STATE_DIR=$BENCH_DIR/state KILN_KEY_PASSWORD=bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); rport=$(free_port); bport=$(free_port)
ns=kiln-bench-egress-$$
pids=()
cleanup() {
  "$KILN" destroy web >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount "/var/run/netns/$ns" 2>/dev/null || true
  rm -f "/var/run/netns/$ns"
}
trap cleanup EXIT

# The bulk source: each connection gets BULK_MIB MiB, then EOF. The client reads to EOF
# and prints MiB/s.
cat > bulk.py <<'EOF'
import socket, sys, time
if sys.argv[1] == "serve":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", int(sys.argv[2]))); l.listen(16)
    chunk = memoryview(bytearray(1 << 20)); n = int(sys.argv[3])
    while True:
        c, _ = l.accept()
        try:
            for _ in range(n):
                c.sendall(chunk)
        except OSError:
            pass
        c.close()
else:
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    buf = bytearray(1 << 20); view = memoryview(buf); total = 0
    t0 = time.monotonic()
    while True:
        k = s.recv_into(view)
        if k == 0:
            break
        total += k
    dt = time.monotonic() - t0
    if total != int(sys.argv[4]) << 20:
        sys.exit(f"short read: {total} bytes")
    print(f"{total / dt / (1 << 20):.0f}")
EOF
python3 bulk.py serve "$bport" "$BULK_MIB" & pids+=($!)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >redis.log 2>&1 & pids+=($!)

cp -a "$repo/examples/hello" hello
sed -i 's/^egress = \[\]/egress = [{ to = "cache.internal:6379", reason = "bench" }, { to = "bulk.internal:9000", reason = "bench" }]/' hello/kiln.toml
"$KILN" key generate ci >/dev/null
img=$("$KILN" build -f hello/kiln.toml 2>/dev/null | tail -1)
"$KILN" sign hello:1.0.0 --key ci.key >/dev/null
printf '[keys]\nci = "ci.pub"\n[roles.ci]\nkeys = ["ci"]\nthreshold = 1\n[require]\nsignature = "ci"\n' > trust.toml
printf '[service.web]\nimage = "hello@%s"\nlisten = "127.0.0.1:%s"\nport = 8080\nhealth = { http_get = "/", interval = "1s", timeout = "500ms" }\npolicy = "trust.toml"\n\n[service.web.egress]\n"cache.internal:6379" = "127.0.0.1:%s"\n"bulk.internal:9000" = "127.0.0.1:%s"\n' \
  "$img" "$port" "$rport" "$bport" > deploy.toml
"$KILN" serve > serve.log 2>&1 & pids+=($!)
for _ in $(seq 100); do [ -S state/fleet/kiln.sock ] && break; sleep 0.1; done
"$KILN" apply -f deploy.toml >/dev/null
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
pid=$("$KILN" --json status | jq '.services[0].instances[0].pid')
via() { "$KILN" --json status | jq -r --arg to "$1" '.services[0].instances[0].egress[] | select(.to == $to) | .via'; }
cache_via=$(via cache.internal:6379); bulk_via=$(via bulk.internal:9000)
innet() { nsenter --net="/proc/$pid/ns/net" "$@"; }

# HAProxy in tcp mode on the same path: listening inside the instance's namespace (on
# 127.0.2.x, beside kiln's 127.0.1.x), connecting out from the host.
mkdir -p /var/run/netns; touch "/var/run/netns/$ns"; mount --bind "/proc/$pid/ns/net" "/var/run/netns/$ns"
cat > haproxy.cfg <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend cache
  bind 127.0.2.1:6379 namespace $ns
  default_backend cache
backend cache
  server r 127.0.0.1:$rport
frontend bulk
  bind 127.0.2.2:9000 namespace $ns
  default_backend bulk
backend bulk
  server b 127.0.0.1:$bport
EOF
haproxy -f haproxy.cfg -db >haproxy.log 2>&1 & pids+=($!)
for _ in $(seq 50); do innet python3 -c 'import socket; socket.create_connection(("127.0.2.1", 6379), 1)' 2>/dev/null && break; sleep 0.1; done

bulk() { # host port [nsenter]
  "${@:3}" python3 bulk.py get "$1" "$2" "$BULK_MIB"
}
echo "== 1. bulk: a $BULK_MIB MiB stream, MiB/s (best of 3), and the forwarder's CPU time"
best() { local b=0 v; for _ in 1 2 3; do v=$("$@"); [ "$v" -gt "$b" ] && b=$v; done; echo "$b"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
serve_pid=$(pgrep -f "^$KILN serve" | head -1); haproxy_pid=$(pgrep -x haproxy | head -1)
bulk_direct=$(best bulk 127.0.0.1 "$bport")
t0=$(ticks "$serve_pid"); bulk_kiln=$(best bulk "${bulk_via%:*}" "${bulk_via##*:}" innet); t1=$(ticks "$serve_pid")
h0=$(ticks "$haproxy_pid"); bulk_haproxy=$(best bulk 127.0.2.2 9000 innet); h1=$(ticks "$haproxy_pid")
hz=$(getconf CLK_TCK)
cpu_kiln=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v m="$BULK_MIB" 'BEGIN {printf "%.2f", t / hz / (3 * m / 1024)}')
cpu_haproxy=$(awk -v t=$((h1 - h0)) -v hz="$hz" -v m="$BULK_MIB" 'BEGIN {printf "%.2f", t / hz / (3 * m / 1024)}')
echo "   direct $bulk_direct, kiln egress $bulk_kiln, haproxy $bulk_haproxy"
echo "   CPU per GiB forwarded: kiln serve ${cpu_kiln} s, haproxy ${cpu_haproxy} s ($(nproc) CPUs; the direct run keeps the source and the sink busy)"

rb() { # host port pipeline [nsenter]
  "${@:4}" redis-benchmark -h "$1" -p "$2" -P "$3" -n "$REQUESTS" -c 50 -t set,get --csv 2>/dev/null \
    | awk -F'"' '/"SET"|"GET"/ {s += $4; n++} END {printf "%.0f", s / n}'
}
echo "== 2. redis-benchmark SET/GET, 50 clients, $REQUESTS requests each, requests/s (mean of SET and GET)"
declare -A r
for p in 1 16; do
  r[direct,$p]=$(rb 127.0.0.1 "$rport" "$p")
  r[kiln,$p]=$(rb "${cache_via%:*}" "${cache_via##*:}" "$p" innet)
  r[haproxy,$p]=$(rb 127.0.2.1 6379 "$p" innet)
  echo "   -P $p: direct ${r[direct,$p]}, kiln egress ${r[kiln,$p]}, haproxy ${r[haproxy,$p]}"
done

echo "== kiln's counters for the instance"
"$KILN" --json status | jq -c '.services[0].instances[0].egress[] | {to, opened, refused, active, bytes_out, bytes_in}'

echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '%-34s %10s %10s %10s %8s %8s  %s\n' measure direct kiln haproxy kiln/d haproxy/d verdict
kr=$(ratio "$bulk_kiln" "$bulk_direct")
printf '%-34s %10s %10s %10s %8s %8s  %s\n' "bulk $BULK_MIB MiB (MiB/s)" "$bulk_direct" "$bulk_kiln" "$bulk_haproxy" "$kr" \
  "$(ratio "$bulk_haproxy" "$bulk_direct")" "$(awk -v r="$kr" 'BEGIN {print (r >= 0.8) ? "met (>= 0.80)" : "NOT MET (>= 0.80)"}')"
printf '%-34s %10s %10s %10s\n' "  CPU s per GiB forwarded" "" "$cpu_kiln" "$cpu_haproxy"
for p in 1 16; do
  printf '%-34s %10s %10s %10s %8s %8s\n' "redis SET/GET -P $p (req/s)" "${r[direct,$p]}" "${r[kiln,$p]}" "${r[haproxy,$p]}" \
    "$(ratio "${r[kiln,$p]}" "${r[direct,$p]}")" "$(ratio "${r[haproxy,$p]}" "${r[direct,$p]}")"
done
