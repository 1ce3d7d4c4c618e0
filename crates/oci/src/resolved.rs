//! A resolved image: the manifest descriptor a reference names, with its manifest and
//! config read and digest-checked.

use crate::{Descriptor, ImageConfig, ImageManifest};

/// An image found by reference: its descriptor, manifest and config, all verified
/// against their digests when read.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference as the user gave it (`NAME:TAG`, `NAME@sha256:…`, `sha256:…`).
    pub reference: String,
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

impl Resolved {
    /// The image's blobs in the order they are checked: manifest, config, layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.descriptor)
            .chain(std::iter::once(&self.manifest.config))
            .chain(self.manifest.layers.iter())
    }
}
