#!/bin/sh
# Rebuild debs/hello-config_1.0-1_all.deb from pkg/hello-config (needs dpkg-deb).
# The result is committed; rebuilding gives the same bytes with the same dpkg version.
set -eu
cd "$(dirname "$0")"
find hello-config -exec touch -h -d @0 {} +
chmod -R u=rwX,go=rX hello-config && chmod 0755 hello-config/DEBIAN/postinst
SOURCE_DATE_EPOCH=0 dpkg-deb --root-owner-group -Zgzip --build hello-config ../debs/hello-config_1.0-1_all.deb
sha256sum ../debs/hello-config_1.0-1_all.deb
