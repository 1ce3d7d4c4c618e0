//! OCI image-spec 1.1: digests, descriptors, manifests, configs, and the
//! content-addressed store kiln keeps under its state directory.
//!
//! The store *is* an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), so `skopeo inspect oci:<store>:name:tag` and
//! `umoci unpack --image <store>:name:tag` work on it directly.
//!
//! Every other kiln crate depends on this one, so it also holds the workspace's
//! shared primitives, each implemented once: [`time`] (the civil-date code and
//! RFC 3339 timestamps), [`duration`] (the `7d`/`500ms` parser), [`sync`] (the
//! lock-poison policy), [`untrusted`] (bounded reads of untrusted files) and
//! [`textpos`] (line/column positions for error messages).

#![warn(clippy::undocumented_unsafe_blocks)]

mod digest;
pub mod duration;
mod error;
pub mod expansion;
pub mod gc;
pub mod layout;
pub mod media;
mod pending;
mod resolved;
pub mod sync;
mod sys;
pub mod targuard;
pub mod textpos;
pub mod time;
mod types;
pub mod untrusted;

pub use digest::{Digest, Sha256Writer};
pub use error::OciError;
pub use layout::{
    ImageRef, IndexLock, MAX_MANIFEST_SIZE, Staging, Store, TaggedImage, WritebackFile,
};
pub use pending::Pending;
pub use resolved::Resolved;
pub use types::{
    Descriptor, History, ImageConfig, ImageIndex, ImageManifest, Platform, RootFs, RuntimeConfig,
};

/// Annotation keys from the image-spec (annotations.md).
pub mod annotations {
    pub const CREATED: &str = "org.opencontainers.image.created";
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    pub const VERSION: &str = "org.opencontainers.image.version";
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
    pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
    /// kiln's own, on `index.json` entries of its store: when the manifest
    /// entered the store (RFC 3339, UTC). `kiln gc` ages untagged images by it.
    pub const STORED: &str = "dev.kiln.stored";
    /// kiln's own, on an untagged image entry: the `name:tag` that pointed at
    /// it before the tag moved.
    pub const UNTAGGED_FROM: &str = "dev.kiln.untagged.from";
}
