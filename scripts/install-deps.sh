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
# aide: the peer of bench/drift.sh.
for pkg in busybox-static docker-registry apache2-utils aide; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
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
