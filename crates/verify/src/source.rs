//! Where images and the envelopes about them come from.
//!
//! A [`Source`] answers four questions: which manifest does a reference name, what are
//! the bytes of a blob (bounded, checked against its descriptor), which manifests refer
//! to a digest (OCI 1.1 referrers), and which manifests carry a given tag (cosign's
//! `sha256-<hex>.sig` and `.att` tags). The local store is one ([`Store`] implements the
//! trait); a registry-backed source for the admission webhook and GitOps pulls is another
//! implementation of the same four calls.
//!
//! [`resolve`] turns a reference into a [`Resolved`] image through a source;
//! [`verify_image_blobs`] re-hashes every blob of one.

use kiln_oci::{
    Descriptor, Digest, ImageConfig, ImageManifest, ImageRef, OciError, Resolved, Store,
};

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The local store (or an OCI type) refused: a missing or corrupt blob, an unknown
    /// image, an unreadable index.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// Any other backend (a registry): what was asked for, and why it failed.
    #[error("{what}: {source}")]
    Backend {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A manifest found by tag.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// The repository name the tag is under.
    pub name: String,
    pub tag: String,
    pub descriptor: Descriptor,
}

/// Manifests, blobs and referrers of images, from wherever they are kept. Object safe:
/// the engine takes `&dyn Source`.
pub trait Source {
    /// The manifest descriptor `reference` names.
    fn resolve(&self, reference: &ImageRef) -> Result<Descriptor, SourceError>;
    /// The bytes of the blob `descriptor` names, read into memory (so bounded) and
    /// checked against its size and digest.
    fn read(&self, descriptor: &Descriptor) -> Result<Vec<u8>, SourceError>;
    /// Re-hash the blob `descriptor` names, streaming (layers may be large).
    fn verify(&self, descriptor: &Descriptor) -> Result<(), SourceError>;
    /// The manifests whose `subject` is `subject`, with their descriptors (carrying
    /// `artifactType` when the source knows it).
    fn referrers(&self, subject: &Digest) -> Result<Vec<(Descriptor, ImageManifest)>, SourceError>;
    /// The manifests tagged `tag`, under any repository name the source holds.
    fn tagged(&self, tag: &str) -> Result<Vec<Tagged>, SourceError>;
}

/// The local store as a source.
impl Source for Store {
    fn resolve(&self, reference: &ImageRef) -> Result<Descriptor, SourceError> {
        Ok(Store::resolve(self, reference)?)
    }

    fn read(&self, descriptor: &Descriptor) -> Result<Vec<u8>, SourceError> {
        Ok(self.read_descriptor(descriptor)?)
    }

    fn verify(&self, descriptor: &Descriptor) -> Result<(), SourceError> {
        Ok(self.verify_blob(descriptor)?)
    }

    fn referrers(&self, subject: &Digest) -> Result<Vec<(Descriptor, ImageManifest)>, SourceError> {
        Ok(Store::referrers(self, subject)?)
    }

    fn tagged(&self, tag: &str) -> Result<Vec<Tagged>, SourceError> {
        Ok(self
            .images()?
            .into_iter()
            .filter(|t| t.tag == tag)
            .map(|t| Tagged {
                name: t.name,
                tag: t.tag,
                descriptor: t.descriptor,
            })
            .collect())
    }
}

/// Why a reference did not resolve to a readable image.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A malformed reference, or a manifest or config that is not what it claims.
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("config of {reference}")]
    Config {
        reference: String,
        #[source]
        source: SourceError,
    },
}

/// The image `reference` names in `source`: its descriptor, manifest and config, each
/// checked against its digest as it is read.
pub fn resolve(source: &dyn Source, reference: &str) -> Result<Resolved, ResolveError> {
    let r = ImageRef::parse(reference)?;
    let descriptor = source.resolve(&r)?;
    let mbytes = source.read(&descriptor)?;
    let manifest = ImageManifest::from_bytes(&mbytes, &descriptor.digest.to_string())?;
    let cbytes = source
        .read(&manifest.config)
        .map_err(|source| ResolveError::Config {
            reference: reference.to_owned(),
            source,
        })?;
    let config = ImageConfig::from_bytes(&cbytes, "image config")?;
    Ok(Resolved {
        reference: reference.to_string(),
        descriptor,
        manifest,
        config,
    })
}

/// A blob of an image does not match its descriptor.
#[derive(Debug, thiserror::Error)]
#[error("image {reference} is not intact")]
pub struct IntegrityError {
    pub reference: String,
    /// How many blobs matched before this one.
    pub verified: usize,
    #[source]
    pub source: SourceError,
}

/// Re-hash every blob of the image (manifest, config, layers); returns how many.
pub fn verify_image_blobs(source: &dyn Source, img: &Resolved) -> Result<usize, IntegrityError> {
    let mut n = 0;
    for d in img.blobs() {
        source.verify(d).map_err(|source| IntegrityError {
            reference: img.reference.clone(),
            verified: n,
            source,
        })?;
        n += 1;
    }
    Ok(n)
}

/// An error and its causes, `: `-separated (what `{:#}` of an `anyhow::Error` shows):
/// the form problem lines and failure reasons take.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
