//! Media types (image-spec 1.1, media-types.md).

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Digest of the empty descriptor's content `{}`.
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
pub const EMPTY_CONTENT: &[u8] = b"{}";
/// Docker schema 2 types, accepted when reading a base image.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Whether `mt` is a manifest media type kiln can read.
pub fn is_manifest(mt: &str) -> bool {
    mt == MANIFEST || mt == DOCKER_MANIFEST
}

/// Whether `mt` is an index media type kiln can read.
pub fn is_index(mt: &str) -> bool {
    mt == INDEX || mt == DOCKER_LIST
}
