#!/usr/bin/env bash
# The end-to-end demo: build the hello example reproducibly, show what kiln
# knows about it, prove other tools agree, and serve it with runc; then
# examples/flask, a Python service from Debian's repositories by name.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-target/release/kiln}
demo=${DEMO_DIR:-$PWD/.demo}
rm -rf "$demo"; mkdir -p "$demo"
export KILN_STATE_DIR="$demo/state"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. build examples/hello (busybox httpd + a local .deb) into the store, exporting an OCI layout"
"$KILN" build -f examples/hello/kiln.toml --out "$demo/out"
digest=$("$KILN" --json build -f examples/hello/kiln.toml | jq -r .digest)

step "2. reproducible: a copy elsewhere, other mtimes/owners/umask, a fresh state dir -> same digest"
cp -a examples/hello "$demo/elsewhere"
find "$demo/elsewhere" -exec touch -h -d '2001-02-03' {} +
chown -R 4242:4242 "$demo/elsewhere" 2>/dev/null || true
chmod 0600 "$demo/elsewhere/www/index.html"
epoch=$(git log -1 --format=%ct -- examples/hello 2>/dev/null || echo 0)
other=$(SOURCE_DATE_EPOCH=$epoch KILN_STATE_DIR="$demo/state2" "$KILN" --json build -f "$demo/elsewhere/kiln.toml" | jq -r .digest)
echo "original: $digest"; echo "copy:     $other"
[ "$digest" = "$other" ] || { echo "NOT REPRODUCIBLE" >&2; exit 1; }

step "3. rebuild with nothing changed: every layer from cache"
"$KILN" --json build -f examples/hello/kiln.toml | jq -c '{digest, elapsed_ms, cached: [.layers[].cached]}'

step "4. what the store holds, and what kiln knows about the image"
"$KILN" images
"$KILN" inspect hello:1.0.0
"$KILN" sbom hello:1.0.0 --format cyclonedx | jq -c '[.components[] | select(.type=="library") | .purl]'

step "5. other tools agree: skopeo reads the store and the export"
skopeo inspect "oci:$KILN_STATE_DIR/store:hello:1.0.0" | jq -r '"skopeo (store):  " + .Digest'
skopeo inspect "oci:$demo/out:hello:1.0.0" | jq -r '"skopeo (--out):  " + .Digest'
"$KILN" sbom hello:1.0.0 --format spdx -o "$demo/sbom.spdx.json"
pyspdxtools -i "$demo/sbom.spdx.json" && echo "pyspdxtools: SPDX SBOM valid"

step "6. umoci unpacks it, runc runs it (own network namespace), and it serves the page"
umoci unpack --image "$KILN_STATE_DIR/store:hello:1.0.0" "$demo/bundle" >/dev/null
jq '.process.terminal=false' "$demo/bundle/config.json" > "$demo/c.json" && mv "$demo/c.json" "$demo/bundle/config.json"
id="kiln-demo-$$"
trap 'runc kill "$id" KILL 2>/dev/null; sleep 0.2; runc delete -f "$id" 2>/dev/null || true' EXIT
(cd "$demo/bundle" && runc run -d --pid-file "$demo/pid" "$id" </dev/null >"$demo/runc.log" 2>&1)
for _ in $(seq 50); do
  if page=$(nsenter -t "$(cat "$demo/pid")" -n /bin/busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null); then break; fi
  sleep 0.1
done
echo "$page" | grep -o '<h1>.*</h1>'

step "7. keys, provenance, signatures, 2-of-3 approvals and a trust policy; a tampered image is refused"
export KILN_KEY_PASSWORD=demo
for k in ci alice bob carol; do "$KILN" key generate "$demo/$k" >/dev/null; done
ls -l "$demo/ci.key" "$demo/ci.pub"
cat > "$demo/trust.toml" <<'TOML'
[keys]
ci = "ci.pub"
alice = "alice.pub"
bob = "bob.pub"
carol = "carol.pub"

[roles.builder]
keys = ["ci"]
threshold = 1

[roles.reviewers]
keys = ["alice", "bob", "carol"]
threshold = 2

[require]
signature = "builder"
provenance = "builder"
approvals = "reviewers"
TOML
"$KILN" build -f examples/hello/kiln.toml --sign-key "$demo/ci.key" | tail -1
"$KILN" sign hello:1.0.0 --key "$demo/ci.key"
"$KILN" approve hello:1.0.0 --key "$demo/alice.key" --reason "CHG-1234 reviewed"
echo "-- one approval of the two required:"
"$KILN" verify hello:1.0.0 --policy "$demo/trust.toml" || echo "(expected) refused: 1 of 2 approvals"
"$KILN" approve hello:1.0.0 --key "$demo/bob.key" --reason "CHG-1234 reviewed"
echo "-- two approvals:"
"$KILN" verify hello:1.0.0 --policy "$demo/trust.toml"
unset KILN_KEY_PASSWORD
cp -a "$KILN_STATE_DIR" "$demo/state-tampered"
layer=$(jq -r '.layers[-1].digest' "$demo/state-tampered/store/blobs/sha256/${digest#sha256:}")
printf 'X' | dd of="$demo/state-tampered/store/blobs/sha256/${layer#sha256:}" bs=1 seek=100 conv=notrunc status=none
if KILN_STATE_DIR="$demo/state-tampered" "$KILN" verify hello:1.0.0 --policy "$demo/trust.toml"; then
  echo "TAMPERED IMAGE VERIFIED" >&2; exit 1
else
  echo "(expected) one changed byte: verification failed"
fi

step "8. air-gapped: export everything attached, import elsewhere (every blob re-verified), verify there"
"$KILN" export hello:1.0.0 --out "$demo/airgap"
KILN_STATE_DIR="$demo/state-airgap" "$KILN" import "$demo/airgap"
KILN_STATE_DIR="$demo/state-airgap" "$KILN" verify hello:1.0.0 --policy "$demo/trust.toml" | tail -1

step "8b. container engines and digests: verify by key alone; podman loads a single-image archive; a moved tag keeps the old digest until kiln gc"
"$KILN" verify hello:1.0.0 --key "$demo/ci.pub" | tail -1
"$KILN" export hello:1.0.0 --format oci-archive --out "$demo/hello.oci.tar" | tail -1
podman_demo() { podman --root "$demo/podman/root" --runroot "$demo/podman/run" --storage-driver vfs --events-backend none "$@"; }
podman_demo load -q -i "$demo/hello.oci.tar"
podman_demo images --digests --format 'podman: {{.Repository}}:{{.Tag}} {{.Digest}}'
export KILN_STATE_DIR="$demo/state-gc"; cp -a "$demo/state" "$KILN_STATE_DIR"
rm -rf "$demo/hello-moved" && cp -a examples/hello "$demo/hello-moved"
sed -i 's/hello from kiln/hello from kiln, rebuilt/' "$demo/hello-moved/www/index.html"
moved=$("$KILN" build -f "$demo/hello-moved/kiln.toml" | tail -1)
echo "hello:1.0.0 moved from $digest to $moved; the old digest is still an image:"
"$KILN" inspect "hello@$digest" | sed -n 1,3p
"$KILN" images --all
"$KILN" gc --dry-run --keep-untagged 0s | tail -1
"$KILN" gc --keep-untagged 0s | tail -1
if "$KILN" inspect "hello@$digest" >/dev/null 2>&1; then echo "GC KEPT AN UNTAGGED IMAGE" >&2; exit 1; fi
echo "(expected) after gc, hello@${digest:0:19}... is gone with its signature and SBOMs; hello:1.0.0 (the rebuild) stays"
export KILN_STATE_DIR="$demo/state"

step "9. distribution: push image, signatures, attestations and SBOMs to a real registry on loopback; pull back verified"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$demo/registry"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$demo/registry/data" "$port" > "$demo/registry/config.yml"
/usr/bin/docker-registry serve "$demo/registry/config.yml" >"$demo/registry/log" 2>&1 &
regpid=$!
trap 'kill $regpid 2>/dev/null; runc kill "$id" KILL 2>/dev/null; sleep 0.2; runc delete -f "$id" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
"$KILN" push hello:1.0.0 "127.0.0.1:$port/hello:1.0.0" --insecure
skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/hello:1.0.0" | jq -r '"skopeo (registry): " + .Digest'
KILN_STATE_DIR="$demo/state-pulled" "$KILN" pull "127.0.0.1:$port/hello:1.0.0" --insecure
KILN_STATE_DIR="$demo/state-pulled" "$KILN" inspect "127.0.0.1:$port/hello:1.0.0" | sed -n '/Referrers/,$p'
KILN_STATE_DIR="$demo/state-pulled" "$KILN" verify "127.0.0.1:$port/hello:1.0.0" --policy "$demo/trust.toml" | tail -1
step "10. the audit log: every change above is an event in a Merkle log with signed checkpoints"
"$KILN" log show | tail -n 8
"$KILN" log checkpoint | tee "$demo/saved-checkpoint.txt"
"$KILN" log prove 0 | jq -c '{index, tree_size, leaf_hash, hashes: (.hashes | length)}'
"$KILN" log verify --key "$("$KILN" log key)"
KILN_KEY_PASSWORD=demo "$KILN" key generate "$demo/dave" >/dev/null   # one more change
"$KILN" log verify --checkpoint "$demo/saved-checkpoint.txt"
"$KILN" log export "$demo/tiles"
python3 scripts/check-tlog-tiles.py "$demo/tiles" "$("$KILN" log key)"
echo "-- an edited event in a copy of the state: named by index"
cp -a "$KILN_STATE_DIR" "$demo/state-edited"
python3 - "$demo/state-edited/log/entries" <<'PY'
import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read())
i = b.index(b'"image.approve"'); b[i + 1:i + 6] = b"IMAGE"; open(p, "wb").write(b)
PY
if KILN_STATE_DIR="$demo/state-edited" "$KILN" log verify; then echo "EDITED LOG VERIFIED" >&2; exit 1; fi
echo "(expected) the edit is detected"

step "11. the assessor's evidence bundle (PCI DSS 4.0), verified offline without the state directory"
"$KILN" evidence --framework pci-dss-4.0 --out "$demo/evidence"
KILN_STATE_DIR="$demo/empty" "$KILN" evidence verify "$demo/evidence" --key "$("$KILN" log key)"
ls "$demo/evidence"

step "12. the fleet: kiln serve runs only verified images, read-only and shell-less under runc, behind its own proxy"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$KILN" serve >"$demo/serve.log" 2>&1 &
servepid=$!
cleanup_fleet() { "$KILN" destroy web >/dev/null 2>&1 || true; kill "$servepid" 2>/dev/null || true; }
trap 'cleanup_fleet; kill $regpid 2>/dev/null; runc kill "$id" KILL 2>/dev/null; sleep 0.2; runc delete -f "$id" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$KILN_STATE_DIR/fleet/kiln.sock" ] && break; sleep 0.1; done
deploy() { # image strategy
  cat > "$demo/deploy.toml" <<TOML
[service.web]
image = "$1"
replicas = 3
listen = "127.0.0.1:$port"
port = 8080
strategy = "$2"
canary = [10, 50, 100]
step_pause = "1s"
health = { http_get = "/", interval = "1s", timeout = "500ms" }
policy = "$demo/trust.toml"
TOML
  [ "$2" = canary ] || sed -i '/^canary =/d' "$demo/deploy.toml"
}
deploy "hello@$digest" blue-green
"$KILN" apply -f "$demo/deploy.toml" --reason "CHG-2000 first deploy"
"$KILN" status
curl -fsS "http://127.0.0.1:$port/" | grep -o '<h1>.*</h1>'
echo "-- kill -9 one instance: replaced, never repaired"
kill -9 "$("$KILN" --json status | jq '.services[0].instances[0].pid')"
sleep 1.5
"$KILN" status | sed -n 2,6p
echo "-- v2 (signed, with provenance and two approvals), blue-green under a request loop"
rm -rf "$demo/hello2" && cp -a examples/hello "$demo/hello2"
sed -i 's/hello from kiln/hello from kiln, v2/' "$demo/hello2/www/index.html"
sed -i 's/^tag = "1.0.0"/tag = "2.0.0"/' "$demo/hello2/kiln.toml"
export KILN_KEY_PASSWORD=demo
v2=$("$KILN" build -f "$demo/hello2/kiln.toml" --sign-key "$demo/ci.key" | tail -1)
"$KILN" sign hello:2.0.0 --key "$demo/ci.key" >/dev/null
for who in alice bob; do "$KILN" approve hello:2.0.0 --key "$demo/$who.key" --reason "CHG-2001 reviewed" >/dev/null; done
unset KILN_KEY_PASSWORD
( while [ ! -e "$demo/stop-load" ]; do curl -s -o /dev/null -w '%{http_code}\n' --max-time 3 "http://127.0.0.1:$port/" || echo 000; done > "$demo/codes.txt" ) &
loadpid=$!
sleep 0.5
deploy "hello@$v2" blue-green
"$KILN" apply -f "$demo/deploy.toml" --reason "CHG-2001 release v2"
sleep 0.5; touch "$demo/stop-load"; wait "$loadpid"; rm -f "$demo/stop-load"
echo "requests during the switch: $(wc -l < "$demo/codes.txt"), failed: $(grep -vc '^200$' "$demo/codes.txt" || true)"
curl -fsS "http://127.0.0.1:$port/" | grep -o '<h1>.*</h1>'
echo "-- v3 changes log_level (privacy-relevant): a canary is refused, it goes blue-green, all-or-nothing"
sed -i 's/^log_level = "info"/log_level = "debug"/; s/^tag = "2.0.0"/tag = "3.0.0"/' "$demo/hello2/kiln.toml"
export KILN_KEY_PASSWORD=demo
v3=$("$KILN" build -f "$demo/hello2/kiln.toml" --sign-key "$demo/ci.key" | tail -1)
"$KILN" sign hello:3.0.0 --key "$demo/ci.key" >/dev/null
for who in alice carol; do "$KILN" approve hello:3.0.0 --key "$demo/$who.key" --reason "CHG-2002 reviewed" >/dev/null; done
unset KILN_KEY_PASSWORD
deploy "hello@$v3" canary
"$KILN" apply -f "$demo/deploy.toml" --reason "CHG-2002 debug logging"
"$KILN" log show --action release.start | tail -1
echo "-- an image without approvals is refused; nothing changes"
sed -i 's/^tag = "3.0.0"/tag = "4.0.0"/' "$demo/hello2/kiln.toml"
sed -i 's/v2/v4, unreviewed/' "$demo/hello2/www/index.html"
v4=$("$KILN" build -f "$demo/hello2/kiln.toml" | tail -1)
deploy "hello@$v4" blue-green
if "$KILN" apply -f "$demo/deploy.toml"; then echo "UNVERIFIED IMAGE DEPLOYED" >&2; exit 1; fi
echo "-- rollback, instance output through kiln, chaos"
"$KILN" rollback web --reason "CHG-2003 back to v2"
curl -fsS "http://127.0.0.1:$port/" | grep -o '<h1>.*</h1>'
"$KILN" logs web | tail -n 3
"$KILN" chaos web --kill-every 1s --for 5s
"$KILN" log show --since "$(date -u +%F)" | grep -E 'release\.|instance\.replace|chaos\.kill' | tail -n 6

step "13. drift: a host root edits an instance's files, or enters it with nsenter -> detected, logged, replaced"
"$KILN" drift check web
active=$("$KILN" --json status | jq -r '.services[0].active.image' | sed 's/.*sha256://')
rootfs=$KILN_STATE_DIR/fleet/rootfs/$active/rootfs
sed -i 's/hello from kiln/hacked/' "$rootfs/www/index.html"
sleep 2
"$KILN" status | sed -n 1,5p
curl -fsS "http://127.0.0.1:$port/" | grep -o '<h1>.*</h1>'
victim=$("$KILN" --json status | jq '.services[0].instances[0].pid')
nsenter -t "$victim" -a /bin/busybox sleep 30 & intruder=$!
sleep 2; kill "$intruder" 2>/dev/null || true
"$KILN" drift history | tail -n 5 | cut -c1-200
echo "-- standalone FIM of any tree (AIDE-compatible exit status: 1 added, 2 removed, 4 changed)"
cp -a /usr/share/doc "$demo/fimtree"
"$KILN" fim init "$demo/fimtree" --out "$demo/fimtree.manifest" > "$demo/fim.out"; head -1 "$demo/fim.out"
"$KILN" fim check "$demo/fimtree" --manifest "$demo/fimtree.manifest" --incremental > "$demo/fim.out"; head -1 "$demo/fim.out"
touch "$demo/fimtree/intruder"; chmod 0600 "$(find "$demo/fimtree" -type f | head -1)"
"$KILN" fim check "$demo/fimtree" --manifest "$demo/fimtree.manifest" > "$demo/fim.out" || echo "exit status $? (1 added + 4 changed)"
sed -n 1,8p "$demo/fim.out"
step "14. scan and patch: an advisory for hello-config arrives; kiln patch pins the fix, rebuilds, scans, signs, rolls out"
mkdir -p "$demo/osv" "$demo/pool"
# The advisory is dated now: the scan rule measures the age of the data from it.
modified=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat > "$demo/osv/DEBIAN-CVE-2026-1000.json" <<JSON
{"id":"DEBIAN-CVE-2026-1000","modified":"$modified","aliases":["CVE-2026-1000"],"summary":"hello-config: default config exposes a debug endpoint","affected":[{"package":{"ecosystem":"Debian:12","name":"hello-config"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}],"database_specific":{"severity":"high"}}
JSON
rm -rf "$demo/pkg" && cp -a examples/hello/pkg/hello-config "$demo/pkg"
sed -i 's/^Version: .*/Version: 1.0-2/' "$demo/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip --build "$demo/pkg" "$demo/pool/hello-config_1.0-2_all.deb" >/dev/null
"$KILN" scan hello:2.0.0 --advisories "$demo/osv" || echo "(expected) the gate fails: a high-severity fix is available"
"$KILN" scan hello:2.0.0 --advisories "$demo/osv" --fail-on none --sarif | jq -c '{version, results: [.runs[0].results[].ruleId]}'
# The same advisory as a feed (osv.dev's <ecosystem>/all.zip layout) from a local web server:
# kiln advisories sync checks and stores it, and kiln scan uses it without --advisories.
mkdir -p "$demo/feed/Debian"
(cd "$demo/osv" && python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    [z.write(f) for f in sys.argv[2:]]' "$demo/feed/Debian/all.zip" ./*.json)
feedport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$feedport" --bind 127.0.0.1 --directory "$demo/feed" >/dev/null 2>&1 &
feedpid=$!
for _ in $(seq 50); do curl -fsI "http://127.0.0.1:$feedport/Debian/all.zip" >/dev/null 2>&1 && break; sleep 0.1; done
"$KILN" advisories sync --url "http://127.0.0.1:$feedport/Debian/all.zip"
kill "$feedpid"
"$KILN" scan hello:2.0.0 --fail-on none | sed -n 1,3p
# An accepted risk, written down (OpenVEX with kiln:expires): suppressed with its reason, not dropped.
cat > "$demo/vex.json" <<JSON
{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/hello","author":"demo","timestamp":"$modified","version":1,
 "statements":[{"vulnerability":{"name":"CVE-2026-1000"},"products":[{"@id":"pkg:deb/debian/hello-config"}],"status":"affected",
  "action_statement":"debug endpoint not reachable: ingress allows / only; patched below","kiln:expires":"$(date -u -d '+7 days' +%Y-%m-%dT%H:%M:%SZ)"}]}
JSON
"$KILN" scan hello:2.0.0 --vex "$demo/vex.json" | sed -n '/SUPPRESSED/,$p'
export KILN_KEY_PASSWORD=demo
# The patch policy: signature + provenance + a passing scan no older than 24 h, all of
# which kiln patch produces itself (human approvals would gate it the same way).
cat > "$demo/trust-patch.toml" <<'TOML'
[keys]
ci = "ci.pub"

[roles.builder]
keys = ["ci"]
threshold = 1

[require]
signature = "builder"
provenance = "builder"
scan = "builder"
scan_max_age_hours = 24
TOML
"$KILN" scan hello:2.0.0 --advisories "$demo/osv" --fail-on none --attest --key "$demo/ci.key" >/dev/null
"$KILN" serve >"$demo/serve.log" 2>&1 & servepid=$!
for _ in $(seq 100); do [ -S "$KILN_STATE_DIR/fleet/kiln.sock" ] && break; sleep 0.1; done
deploy "hello@$v2" blue-green
sed -i "s|^policy = .*|policy = \"$demo/trust-patch.toml\"|" "$demo/deploy.toml"
"$KILN" apply -f "$demo/deploy.toml" --reason "CHG-2004 scanned v2" | tail -1
rm -rf "$demo/hello5" && cp -a examples/hello "$demo/hello5"
sed -i 's/hello from kiln/hello from kiln, v2/' "$demo/hello5/www/index.html"
"$KILN" patch -f "$demo/hello5/kiln.toml" --advisories "$demo/osv" --debs "$demo/pool" --key "$demo/ci.key" --deploy "$demo/deploy.toml"
cat "$demo/hello5/kiln.lock"
"$KILN" status | sed -n 1,2p
"$KILN" patch report
unset KILN_KEY_PASSWORD
cleanup_fleet

step "15. packages by name: examples/flask from Debian's signed repositories: lock, build, rebuild bit-identical elsewhere, serve under runc"
rm -rf "$demo/flask" && cp -a examples/flask "$demo/flask"   # the lock is written beside this copy
"$KILN" lock -f "$demo/flask/kiln.toml"
sed -n '/^\[\[repository\]\]/,/^$/p' "$demo/flask/kiln.lock" | head -n 8
grep -A9 '^name = "python3-flask"' "$demo/flask/kiln.lock" | head -n 8
fdigest=$("$KILN" --json build -f "$demo/flask/kiln.toml" --locked | jq -r .digest)
fother=$(KILN_STATE_DIR="$demo/state-flask" "$KILN" --json build -f "$demo/flask/kiln.toml" --locked | jq -r .digest)
echo "state dir 1: $fdigest"; echo "state dir 2: $fother (every .deb downloaded again and checked against the lock)"
[ "$fdigest" = "$fother" ] || { echo "NOT REPRODUCIBLE FROM THE LOCK" >&2; exit 1; }
"$KILN" --json build -f "$demo/flask/kiln.toml" --locked --offline | jq -c '{offline: .digest}'
"$KILN" sbom flask-example:1.0.0 --format cyclonedx | jq -c '[.components[] | select(.type=="library") | .purl] | {packages: length, first: .[0:2]}'
"$KILN" sbom flask-example:1.0.0 --format cyclonedx | jq -r '.components[] | select(.type=="library") | . as $c
  | (.properties // [])[] | select(.name=="kiln:package:done-by-kiln") | "\($c.name): \(.value)"'
rm -rf "$demo/flask-bundle"
umoci unpack --image "$KILN_STATE_DIR/store:flask-example:1.0.0" "$demo/flask-bundle" >/dev/null
jq '.process.terminal=false | .root.readonly=true' "$demo/flask-bundle/config.json" > "$demo/c.json" && mv "$demo/c.json" "$demo/flask-bundle/config.json"
fid="kiln-demo-flask-$$"
(cd "$demo/flask-bundle" && runc run -d --pid-file "$demo/flask.pid" "$fid" </dev/null >"$demo/flask.log" 2>&1)
for _ in $(seq 100); do
  if page=$(nsenter -t "$(cat "$demo/flask.pid")" -n /bin/busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null); then break; fi
  sleep 0.1
done
echo "$page"
runc kill "$fid" KILL 2>/dev/null; sleep 0.2; runc delete -f "$fid" 2>/dev/null || true

step "16. a real service: examples/flask under kiln serve reaches its Redis only through a declared egress, gets a secret that never touches disk, and runs with limits"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redisport=$(freeport); appport=$(freeport)
redis-server --port "$redisport" --bind 127.0.0.1 --save '' --appendonly no >"$demo/redis.log" 2>&1 &
redispid=$!
mkdir -p -m 0700 "$demo/secrets"
secret="kiln-demo-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
(umask 077; printf '%s' "$secret" > "$demo/secrets/orders-db")
export KILN_KEY_PASSWORD=demo
"$KILN" build -f "$demo/flask/kiln.toml" --locked --sign-key "$demo/ci.key" | tail -1
"$KILN" sign flask-example:1.0.0 --key "$demo/ci.key" >/dev/null
for who in alice bob; do "$KILN" approve flask-example:1.0.0 --key "$demo/$who.key" --reason "CHG-3000 reviewed" >/dev/null; done
unset KILN_KEY_PASSWORD
"$KILN" serve >"$demo/serve2.log" 2>&1 &
servepid=$!
cleanup_fleet() { "$KILN" destroy app >/dev/null 2>&1 || true; kill "$servepid" 2>/dev/null || true; kill "$redispid" 2>/dev/null || true; }
for _ in $(seq 100); do [ -S "$KILN_STATE_DIR/fleet/kiln.sock" ] && break; sleep 0.1; done
cat > "$demo/app.toml" <<TOML
[service.app]
image = "flask-example@$fdigest"
replicas = 2
listen = "127.0.0.1:$appport"
port = 8080
health = { http_get = "/health", interval = "1s", timeout = "1s" }
policy = "$demo/trust.toml"

[service.app.egress]            # the image declares cache.internal:6379; this says where it is here
"cache.internal:6379" = "127.0.0.1:$redisport"

[service.app.secrets]           # read at apply, kept in memory, delivered on tmpfs
DB_PASSWORD = { file = "$demo/secrets/orders-db" }

[service.app.limits]
memory = "256MiB"
pids = 128
cpu = 0.5
TOML
sed -n '/egress\]/,$p' "$demo/app.toml"
"$KILN" apply -f "$demo/app.toml" --reason "CHG-3001 flask with its cache"
for _ in 1 2 3; do curl -fsS "http://127.0.0.1:$appport/visits"; done
echo "redis itself says: $(redis-cli -p "$redisport" get kiln-example:visits)"
curl -fsS "http://127.0.0.1:$appport/secret"
"$KILN" --json status | jq -c '.services[] | select(.name=="app") | {limits, egress: .instances[0].egress}'
if grep -rqF "$secret" "$KILN_STATE_DIR"; then echo "THE SECRET IS ON DISK" >&2; exit 1; fi
echo "the secret's value: not in the state directory (fleet.redb, bundles, audit log)"
"$KILN" log show --action fleet.apply | tail -1
echo "-- a destination the image did not declare cannot be mapped:"
sed 's/^"cache.internal:6379"/"db.internal:5432" = "127.0.0.1:5432"\n&/' "$demo/app.toml" > "$demo/app-bad.toml"
"$KILN" apply -f "$demo/app-bad.toml" || echo "(expected) refused; nothing changed"
cleanup_fleet

echo; echo "demo complete: $digest"
