#!/usr/bin/env bash
# Install what kiln's demo and tests need on Debian 12: the real tools kiln
# interoperates with (runc, skopeo, umoci, busybox-static, Debian's
# docker-registry, htpasswd, ab, aide) and the Python SBOM validators. Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
for pair in runc:runc skopeo:skopeo umoci:umoci jq:jq nsenter:util-linux dpkg-deb:dpkg gzip:gzip zstd:zstd curl:curl openssl:openssl; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# aide: the peer of bench/drift.sh. redis-server, redis-tools (redis-benchmark), haproxy:
# the egress tests and bench/egress.sh. prometheus (promtool), chromium: the dashboard test.
for pkg in busybox-static docker-registry apache2-utils aide redis-server redis-tools haproxy prometheus chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# kiln-solve's apt oracle (crates/solve/tests/apt_oracle.rs) compares kiln's closures with
# `apt-get -s` over the machine's own package indexes: they must have been downloaded.
if ! compgen -G '/var/lib/apt/lists/*_binary-amd64_Packages*' >/dev/null; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "install-deps: apt-get update (package indexes for the apt oracle)" >&2
  $SUDO apt-get update -qq
fi

# podman: `podman load` of kiln's oci-archive and docker-archive exports
# (crates/kiln/tests/it/export.rs). Tests use a temporary --root/--runroot.
if ! command -v podman >/dev/null 2>&1; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "install-deps: apt-get install podman" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends podman >/dev/null
fi

if ! python3 -c 'import spdx_tools, cyclonedx.validation.json, packageurl, securesystemslib.signer, nacl.secret, cryptography' >/dev/null 2>&1; then
  echo "install-deps: pip install SBOM validators, securesystemslib, pynacl, cryptography" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    'spdx-tools>=0.8,<0.9' 'cyclonedx-python-lib[json-validation]>=8,<12' packageurl-python \
    'securesystemslib[crypto]>=1.0,<2' 'pynacl>=1.5,<2' 'cryptography>=42'
fi

# --- interop clients (issue 11 items 11-12): the in-toto and Sigstore parsers and the real
# cosign, all pinned. Caches live outside the repository, keyed by version.
KILN_CI_CACHE=${KILN_CI_CACHE:-/var/cache/kiln-ci}
COSIGN_VERSION=v2.6.5
if [ ! -x "$KILN_CI_CACHE/cosign-$COSIGN_VERSION/cosign" ]; then
  echo "install-deps: go install github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION (slow)" >&2
  mkdir -p "$KILN_CI_CACHE/cosign-$COSIGN_VERSION.tmp"
  GOBIN="$KILN_CI_CACHE/cosign-$COSIGN_VERSION.tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION"
  rm -rf "$KILN_CI_CACHE/cosign-$COSIGN_VERSION"
  mv "$KILN_CI_CACHE/cosign-$COSIGN_VERSION.tmp" "$KILN_CI_CACHE/cosign-$COSIGN_VERSION"
fi
if ! python3 -c 'import in_toto_attestation.v1.statement, sigstore_protobuf_specs.dev.sigstore.bundle.v1' >/dev/null 2>&1; then
  echo "install-deps: pip install in-toto-attestation, sigstore-protobuf-specs" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    'in-toto-attestation==0.9.3' 'sigstore-protobuf-specs==0.5.2'
fi
# @sigstore/verify from crates/kiln/tests/it/node/package-lock.json, into a cache dir keyed
# by the lock file's hash (the tests find it through KILN_CI_CACHE the same way).
node_dir="$KILN_CI_CACHE/node-$(sha256sum "$(dirname "$0")/../crates/kiln/tests/it/node/package-lock.json" | cut -c1-16)"
if [ ! -d "$node_dir/node_modules/@sigstore/verify" ]; then
  echo "install-deps: npm ci @sigstore/verify into $node_dir" >&2
  rm -rf "$node_dir.tmp" && mkdir -p "$node_dir.tmp"
  cp "$(dirname "$0")/../crates/kiln/tests/it/node/package.json" \
     "$(dirname "$0")/../crates/kiln/tests/it/node/package-lock.json" "$node_dir.tmp/"
  (cd "$node_dir.tmp" && npm ci --no-audit --no-fund --ignore-scripts --silent)
  rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
fi
# --- end interop clients
