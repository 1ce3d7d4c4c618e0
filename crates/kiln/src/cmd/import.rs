//! `kiln import DIR`: copy an OCI layout (a `kiln export`, a `skopeo copy` target) into
//! the store: every manifest in its `index.json` with its config, layers and — for
//! indexes — child manifests, tags included, untagged referrers recorded. Every blob is
//! hashed as it is copied; nothing becomes visible unless all of them match.
//!
//! A file instead of a directory is read as a single-image archive (`oci-archive`, or
//! `docker save`'s format), extracted under the hostile-input rules of
//! [`kiln_image::archive`] into a private directory and imported the same way.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_oci::{
    Descriptor, Digest, ImageIndex, ImageManifest, ImageRef, Store, annotations, media,
};
use serde_json::json;

use super::{Ctx, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// The OCI layout directory, or an oci-archive / docker-archive tar file, to import.
    dir: PathBuf,
}

/// Every blob reachable from the manifest or index `d` (manifests are read and
/// checked on the way).
fn walk(src: &Store, d: &Descriptor, blobs: &mut BTreeMap<Digest, Descriptor>) -> Result<()> {
    if blobs.contains_key(&d.digest) {
        return Ok(());
    }
    if media::is_manifest(&d.media_type) {
        let bytes = src.read_descriptor(d)?;
        let m = ImageManifest::from_bytes(&bytes, &d.digest.to_string())?;
        blobs.insert(d.digest, d.clone());
        for b in std::iter::once(&m.config).chain(&m.layers) {
            blobs.entry(b.digest).or_insert_with(|| b.clone());
        }
    } else if media::is_index(&d.media_type) {
        let bytes = src.read_descriptor(d)?;
        let idx: ImageIndex = serde_json::from_slice(&bytes)
            .with_context(|| format!("image index {} is not valid JSON", d.digest))?;
        blobs.insert(d.digest, d.clone());
        for m in &idx.manifests {
            walk(src, m, blobs)?;
        }
    } else {
        bail!(
            "{} has media type {:?}, neither a manifest nor an index",
            d.digest,
            d.media_type
        );
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let what = format!("importing {}", a.dir.display());
    ctx.touch(kiln_audit::Resource::new(
        "layout",
        a.dir.display().to_string(),
    ));
    let mut _scratch = None;
    let mut _scratch_lock = None;
    let src = if a.dir.is_dir() {
        Store::open(&a.dir).context(what.clone())?
    } else {
        let tmp = ctx.state_dir.join("tmp").join(format!(
            "import-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        sweep_stale_scratch(&ctx.state_dir.join("tmp"));
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        _scratch = Some(RemoveDirOnDrop(tmp.clone()));
        // Held while this import runs: a later import's sweep removes the
        // directory only when nobody holds it (a killed import's leftovers).
        let lock = fs::File::create(tmp.join(".lock"))
            .with_context(|| format!("creating {}", tmp.join(".lock").display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", tmp.join(".lock").display()))?;
        _scratch_lock = Some(lock);
        kiln_image::archive::unpack_archive(&a.dir, &tmp).context(what.clone())?
    };
    let index = src.index().context(what.clone())?;
    let mut tags = Vec::new();
    let mut untagged = Vec::new();
    let mut blobs = BTreeMap::new();
    for d in &index.manifests {
        let mut d = d.clone();
        match d.annotations.remove(annotations::REF_NAME) {
            Some(r) => match ImageRef::parse(&r) {
                Ok(ImageRef::Tag { name, tag }) => tags.push((name, tag, d.clone())),
                _ => bail!(
                    "{what}: {} is tagged {r:?}, which is not NAME:TAG",
                    d.digest
                ),
            },
            None => untagged.push(d.clone()),
        }
        walk(&src, &d, &mut blobs).with_context(|| format!("{what}: manifest {}", d.digest))?;
    }
    let store_root = ctx.state_dir.join("store");
    let fresh = !store_root.join("oci-layout").exists();
    let res = (|| -> Result<(u64, Store)> {
        let store = Store::open_or_init(&store_root)?;
        let mut st = store.staging()?;
        let mut bytes = 0;
        for d in blobs.values() {
            // A regular file of exactly the descriptor's size, hashed as
            // it is copied; never read past size + 1 bytes.
            bytes += st
                .copy_from(&src, d)
                .with_context(|| format!("{what}: blob {}", d.digest))?;
        }
        st.commit()?;
        Ok((bytes, store))
    })();
    let (bytes, store) = match res {
        Ok(v) => v,
        Err(e) => {
            if fresh {
                let _ = fs::remove_dir_all(&store_root);
            }
            return Err(e.context("nothing was imported"));
        }
    };
    // The blobs are committed but unreferenced; the event is recorded
    // before the index names them.
    let mut ev = ctx
        .event("image.import")
        .resource(kiln_audit::Resource::new(
            "layout",
            a.dir.display().to_string(),
        ))
        .detail("blobs_verified", blobs.len())
        .detail(
            "untagged",
            untagged
                .iter()
                .map(|d| d.digest.to_string())
                .collect::<Vec<_>>(),
        );
    for (n, t, d) in &tags {
        ev = ev.resource(kiln_audit::Resource::named(
            "image",
            d.digest.to_string(),
            format!("{n}:{t}"),
        ));
    }
    if let Err(e) = ctx.record(ev) {
        if fresh {
            let _ = fs::remove_dir_all(&store_root);
        }
        return Err(e.context("nothing was imported"));
    }
    store.add_untagged(&untagged)?;
    for (name, tag, d) in &tags {
        store.tag(name, tag, d)?;
    }
    if ctx.json {
        return print_json(&json!({
            "source": a.dir,
            "blobs": blobs.len(),
            "bytes": bytes,
            "tags": tags.iter().map(|(n, t, d)| json!({
                "ref": format!("{n}:{t}"),
                "digest": d.digest,
            })).collect::<Vec<_>>(),
            "untagged": untagged.iter().map(|d| d.digest).collect::<Vec<_>>(),
        }));
    }
    println!(
        "imported     {} blobs ({}) from {}",
        blobs.len(),
        super::human(bytes),
        a.dir.display()
    );
    for (n, t, d) in &tags {
        println!("tag          {n}:{t} -> {}", d.digest);
    }
    println!("untagged     {} manifest(s)", untagged.len());
    Ok(())
}

/// A scratch directory removed when the import ends, however it ends (with its
/// `tmp` parent, if nothing else is in there).
struct RemoveDirOnDrop(PathBuf);
impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Remove the scratch directories of archive imports that were killed:
/// those whose `.lock` nobody holds, or that never got one and are over an
/// hour old. Best effort: a directory that cannot be inspected is left.
fn sweep_stale_scratch(tmp: &std::path::Path) {
    let Ok(rd) = fs::read_dir(tmp) else { return };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with("import-") {
            continue;
        }
        let dir = e.path();
        let stale = match fs::OpenOptions::new().write(true).open(dir.join(".lock")) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600)),
        };
        if stale {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
