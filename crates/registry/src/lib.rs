//! A synchronous OCI distribution-spec v2 client for kiln.
//!
//! * [`Client::push_image`] uploads an image (or index) from a [`kiln_oci::Store`]:
//!   blobs the registry lacks go up in chunked uploads, then the manifest.
//! * [`Client::push_referrers`] uploads the OCI 1.1 referrers of a manifest
//!   (signatures, SBOMs), maintaining the `sha256-<hex>` tag-schema index when
//!   the registry has no referrers API.
//! * [`Client::pull`] downloads an image and its referrers into a store,
//!   verifying the digest and size of every manifest and blob before any of
//!   it becomes visible in the store.
//!
//! Authentication answers `WWW-Authenticate` challenges: Basic (with the
//! configured credentials) and Bearer (a token from the challenge's realm).

#![forbid(unsafe_code)]

mod client;
mod error;
mod ops;
mod reference;
pub mod retry;
mod speed;

pub use client::{Client, DEFAULT_CHUNK_SIZE, MAX_MANIFEST_SIZE, Options};
pub use error::RegistryError;
pub use ops::{Pulled, fallback_tag};
pub use reference::Reference;
pub use speed::{BadLowSpeedLimit, LowSpeed, LowSpeedLimit, LowSpeedReader, Timeouts, TooSlow};
