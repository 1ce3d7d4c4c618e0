//! One module per subcommand.

pub mod approve;
pub mod build;
pub mod export;
pub mod images;
pub mod import;
pub mod inspect;
pub mod key;
pub mod provenance;
pub mod pull;
pub mod push;
pub mod sbom;
pub mod sign;
pub mod verify;

use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_oci::{Descriptor, ImageConfig, ImageManifest, ImageRef, Store};

/// What every command gets.
pub struct Ctx {
    pub state_dir: PathBuf,
    pub json: bool,
}

impl Ctx {
    /// The store, which must already exist for read-only commands.
    pub fn store(&self) -> Result<Store> {
        let root = self.state_dir.join("store");
        if !root.join("oci-layout").exists() {
            anyhow::bail!(
                "no image store at {} (build an image first, or pass --state-dir)",
                root.display()
            );
        }
        Ok(Store::open(root)?)
    }
}

/// A resolved image: its descriptor, manifest and config, all verified.
pub struct Resolved {
    pub reference: String,
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

pub fn resolve(store: &Store, reference: &str) -> Result<Resolved> {
    let r = ImageRef::parse(reference)?;
    let descriptor = store.resolve(&r)?;
    let mbytes = store.read_descriptor(&descriptor)?;
    let manifest = ImageManifest::from_bytes(&mbytes, &descriptor.digest.to_string())?;
    let cbytes = store
        .read_descriptor(&manifest.config)
        .with_context(|| format!("config of {reference}"))?;
    let config = ImageConfig::from_bytes(&cbytes, "image config")?;
    Ok(Resolved {
        reference: reference.to_string(),
        descriptor,
        manifest,
        config,
    })
}

/// Human-readable byte size.
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
