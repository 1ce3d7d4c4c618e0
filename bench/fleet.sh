#!/usr/bin/env bash
# Fleet benchmark (issue 5), one run, as root, on the hello example:
#  1. instance start → first passed health check (image cached), p50 over
#     REPLICAS instances, against bare `runc run -d` of the same bundle;
#  2. a blue-green rollout of 10 replicas under a request loop: failed
#     requests and the switch time;
#  3. requests/s through the front proxy against the same load generator
#     (ab, keep-alive off) pointed directly at one instance inside its
#     network namespace;
#  4. the cost of HTTP analysis (issue 15): requests/s and the proxy's CPU
#     time through kiln's proxy with `[service.web.analysis]` on and off, and
#     through HAProxy (mode tcp: in mode http, ab against busybox httpd behind
#     HAProxy hung in our runs) in front of the same single instance.
#
#   bench/fleet.sh
#
# Environment: KILN (default target/release/kiln), BENCH_DIR (default
# /var/tmp/kiln-bench-fleet), REPLICAS (default 20), REQUESTS (default 20000).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN:-$repo/target/release/kiln}
BENCH_DIR=${BENCH_DIR:-/var/tmp/kiln-bench-fleet}
REPLICAS=${REPLICAS:-20}
REQUESTS=${REQUESTS:-20000}
[ "$(id -u)" = 0 ] || { echo "bench/fleet.sh: run as root (runc)" >&2; exit 1; }
for t in runc ab jq curl nsenter haproxy; do command -v $t >/dev/null || { echo "missing $t (scripts/install-deps.sh)" >&2; exit 1; }; done
[ -x "$KILN" ] || (cd "$repo" && cargo build --release -q -p kiln)
[ -x "$repo/examples/hello/bin/busybox" ] || "$repo/scripts/prepare-example.sh"

rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"; cd "$BENCH_DIR"
export KILN_STATE_DIR=$BENCH_DIR/state KILN_KEY_PASSWORD=bench
cp -a "$repo/examples/hello" hello
"$KILN" key generate ci >/dev/null
v1=$("$KILN" build -f hello/kiln.toml 2>/dev/null | tail -1)
"$KILN" sign hello:1.0.0 --key ci.key >/dev/null
sed -i 's/hello from kiln/hello from kiln, v2/' hello/www/index.html
sed -i 's/^tag = "1.0.0"/tag = "2.0.0"/' hello/kiln.toml
v2=$("$KILN" build -f hello/kiln.toml 2>/dev/null | tail -1)
"$KILN" sign hello:2.0.0 --key ci.key >/dev/null
printf '[keys]\nci = "ci.pub"\n[roles.ci]\nkeys = ["ci"]\nthreshold = 1\n[require]\nsignature = "ci"\n' > trust.toml
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
deploy() { # image replicas [extra toml]
  printf '[service.web]\nimage = "hello@%s"\nreplicas = %s\nlisten = "127.0.0.1:%s"\nport = 8080\nstrategy = "blue-green"\nhealth = { http_get = "/", interval = "1s", timeout = "500ms" }\npolicy = "trust.toml"\n%b' "$1" "$2" "$port" "${3:-}" > deploy.toml
}
"$KILN" serve > serve.log 2>&1 &
serve=$!
trap '"$KILN" destroy web >/dev/null 2>&1; kill $serve 2>/dev/null; wait $serve 2>/dev/null' EXIT
for _ in $(seq 100); do [ -S state/fleet/kiln.sock ] && break; sleep 0.1; done

echo "== 1. start → healthy, $REPLICAS instances (image unpacked once, then cached)"
deploy "$v1" 1; "$KILN" apply -f deploy.toml >/dev/null    # unpack the image
deploy "$v1" "$((REPLICAS + 1))"; "$KILN" apply -f deploy.toml >/dev/null
kiln_p50=$("$KILN" --json status | jq '[.services[0].instances[].start_to_healthy_ms | select(. != null)] | sort | .[length/2|floor]')
bundle=$(ls -d state/fleet/instances/* | head -1)
cp "$bundle/config.json" bare-config.json
mkdir -p bare && cp bare-config.json bare/config.json
times=()
for i in $(seq "$REPLICAS"); do
    t0=$(date +%s%N)
    runc --root "$BENCH_DIR/runc-bare" run -d --bundle bare "bare-$i" </dev/null >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
    runc --root "$BENCH_DIR/runc-bare" delete -f "bare-$i" >/dev/null 2>&1
done
runc_p50=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int(NR/2)+1]}')
echo "   kiln start → first healthy check p50: ${kiln_p50} ms;  bare runc run -d p50: ${runc_p50} ms"

echo "== 2. blue-green, 10 replicas, under a request loop"
deploy "$v1" 10; "$KILN" apply -f deploy.toml >/dev/null
( while [ ! -e stop ]; do curl -s -o /dev/null -w '%{http_code}\n' --max-time 3 "http://127.0.0.1:$port/" || echo 000; done > codes.txt ) &
load=$!
sleep 1
deploy "$v2" 10; "$KILN" apply -f deploy.toml >/dev/null
sleep 1; touch stop; wait $load
total=$(wc -l < codes.txt); failed=$(grep -vc '^200$' codes.txt || true)
switch_ms=$("$KILN" --json log show --action release.switch | jq '.[-1].event.details.rollout_ms')
echo "   $total requests, $failed failed; rollout (start 10 new → all healthy → switch) ${switch_ms} ms"

echo "== 3. requests/s: through the front proxy vs direct to one instance (ab -n $REQUESTS -c 8)"
pid=$("$KILN" --json status | jq '.services[0].instances[0].pid')
direct=$(nsenter -t "$pid" -n ab -q -n "$REQUESTS" -c 8 http://127.0.0.1:8080/ 2>/dev/null | awk '/Requests per second/ {print $4}')
proxied=$(ab -q -n "$REQUESTS" -c 8 "http://127.0.0.1:$port/" 2>/dev/null | awk '/Requests per second/ {print $4}')
echo "   direct ${direct}/s, through the proxy (10 instances) ${proxied}/s"

echo "== 4. HTTP analysis: kiln proxy with analysis on / off, HAProxy (mode tcp), one instance (ab -n $REQUESTS -c 8)"
deploy "$v1" 1; "$KILN" apply -f deploy.toml >/dev/null
# The one instance of the active release (the 10 of section 2 may still be draining).
ipid=$("$KILN" --json status | jq '.services[0] as $s | [$s.instances[] | select(.release == $s.active.id and .in_rotation) | .pid][0]')
# Each run opens ~20k connections inside the instance's namespace (40k for HAProxy, whose
# client and backend sides are both there): let TIME_WAIT ports be reused there.
nsenter -t "$ipid" -n sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# measure LABEL PID-TO-CHARGE CMD...: prints "req/s cpu-ms-per-10k-requests"
measure() {
    local who=$1; shift
    local c0 c1 rps
    c0=$(ticks "$who")
    rps=$("$@" 2>/dev/null | awk '/Requests per second/ {print $4}')
    c1=$(ticks "$who")
    echo "${rps:-0} $(( (c1 - c0) * 1000 / hz * 10000 / REQUESTS ))"
}
ab -q -n 2000 -c 8 "http://127.0.0.1:$port/" >/dev/null 2>&1 || true     # warm up
# Off and on alternate twice; the better run of each counts (the machine may be shared).
best() { awk -v a="$1" -v b="$2" -v ca="$3" -v cb="$4" 'BEGIN {if (a >= b) print a, ca; else print b, cb}'; }
off_rps=0 off_cpu=0 on_rps=0 on_cpu=0
for _ in 1 2; do
    deploy "$v1" 1; "$KILN" apply -f deploy.toml >/dev/null; sleep 1
    read -r r c < <(measure "$serve" ab -q -n "$REQUESTS" -c 8 "http://127.0.0.1:$port/")
    read -r off_rps off_cpu < <(best "$off_rps" "$r" "$off_cpu" "$c")
    deploy "$v1" 1 '[service.web.analysis]\nhttp = true\n'; "$KILN" apply -f deploy.toml >/dev/null; sleep 1
    read -r r c < <(measure "$serve" ab -q -n "$REQUESTS" -c 8 "http://127.0.0.1:$port/")
    read -r on_rps on_cpu < <(best "$on_rps" "$r" "$on_cpu" "$c")
done
on_requests=$("$KILN" --json status | jq '[.services[0].proxy.releases[].requests] | add')
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global\n  maxconn 4096\n  nbthread 2\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  server s1 127.0.0.1:8080\n' "$hport" > haproxy.cfg
# HAProxy runs in the instance's network namespace (the instance listens only there); so
# does its load generator.
nsenter -t "$ipid" -n haproxy -db -f haproxy.cfg >haproxy.log 2>&1 &
hap=$!
trap '"$KILN" destroy web >/dev/null 2>&1; kill $hap 2>/dev/null; kill $serve 2>/dev/null; wait $serve 2>/dev/null' EXIT
sleep 1
nsenter -t "$ipid" -n ab -q -n 2000 -c 8 "http://127.0.0.1:$hport/" >/dev/null 2>&1 || true
# A failed HAProxy run reports 0 (and NOT MET) instead of ending the script before the summary.
read -r hap_rps hap_cpu < <(measure "$hap" nsenter -t "$ipid" -n ab -q -s 10 -n "$REQUESTS" -c 8 "http://127.0.0.1:$hport/" || echo "0 0") || { hap_rps=0; hap_cpu=0; }
kill $hap 2>/dev/null; wait $hap 2>/dev/null || true
echo "   analysis off ${off_rps}/s (${off_cpu} CPU-ms per 10k requests), on ${on_rps}/s (${on_cpu} CPU-ms; ${on_requests} responses counted), HAProxy ${hap_rps}/s (${hap_cpu} CPU-ms)"

echo
printf '%-50s %12s %14s  %s\n' measure kiln target verdict
ratio=$(awk -v a="$kiln_p50" -v b="$runc_p50" 'BEGIN {printf "%.2f", a / b}')
printf '%-50s %12s %14s  %s\n' "start → healthy p50 (ms)" "$kiln_p50" "<= 150" "$(awk -v a="$kiln_p50" 'BEGIN {print (a <= 150) ? "met" : "NOT MET"}')"
printf '%-50s %12s %14s\n' "  ratio to bare runc run -d ($runc_p50 ms)" "${ratio}x" ""
printf '%-50s %12s %14s  %s\n' "blue-green of 10 under load: failed requests" "$failed" "0" "$([ "$failed" = 0 ] && echo met || echo 'NOT MET')"
printf '%-50s %12s %14s\n' "  switch (rollout) time (ms)" "$switch_ms" ""
pr=$(awk -v a="$proxied" -v b="$direct" 'BEGIN {printf "%.2f", a / b}')
printf '%-50s %12s %14s  %s\n' "proxy throughput / direct" "$pr" ">= 0.80" "$(awk -v r="$pr" 'BEGIN {print (r >= 0.8) ? "met" : "NOT MET"}')"
cost=$(awk -v on="$on_rps" -v off="$off_rps" 'BEGIN {printf "%.3f", 1 - on / off}')
printf '%-50s %12s %14s  %s\n' "HTTP analysis cost (1 - on/off req/s)" "$cost" "<= 0.10" "$(awk -v c="$cost" 'BEGIN {print (c <= 0.10) ? "met" : "NOT MET"}')"
printf '%-50s %12s %14s\n' "  proxy CPU-ms per 10k requests, off / on" "$off_cpu / $on_cpu" ""
vh=$(awk -v a="$on_rps" -v b="$hap_rps" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}')
printf '%-50s %12s %14s  %s\n' "kiln (analysis on) / HAProxy req/s" "$vh" ">= 0.90" "$(awk -v r="$vh" 'BEGIN {print (r >= 0.9) ? "met" : "NOT MET"}')"
printf '%-50s %12s %14s\n' "  HAProxy CPU-ms per 10k requests" "$hap_cpu" ""
