//! `--out`: export one image and its referrers as a standalone OCI layout.
//! Written beside the target and renamed into place, so a failure leaves
//! the previous export (or nothing) behind, never half a layout.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_oci::{Descriptor, ImageManifest, Store};

use crate::BuildError;

/// Copy `image` (tagged `name:tag`) and `referrers` from `store` into `dir`.
pub fn export(
    store: &Store,
    name: &str,
    tag: &str,
    image: &Descriptor,
    referrers: &[Descriptor],
    dir: &Path,
) -> Result<(), BuildError> {
    export_with(store, name, tag, image, referrers, &[], dir)
}

/// A manifest exported under its own tag (e.g. cosign's `sha256-<hex>.sig`).
#[derive(Clone, Debug)]
pub struct Tagged {
    pub name: String,
    pub tag: String,
    pub descriptor: Descriptor,
}

/// [`export`], plus `tagged`: further manifests (cosign's legacy `.sig` /
/// `.att` tags) copied with their own tags. Every blob is re-hashed before it
/// is copied.
pub fn export_with(
    store: &Store,
    name: &str,
    tag: &str,
    image: &Descriptor,
    referrers: &[Descriptor],
    tagged: &[Tagged],
    dir: &Path,
) -> Result<(), BuildError> {
    export_recorded(
        store,
        Some((name, tag)),
        image,
        referrers,
        tagged,
        dir,
        || Ok::<_, std::convert::Infallible>(()),
    )
}

/// [`export_with`] for an image that may have no tag (an untagged image is
/// recorded in the layout's `index.json` without a `ref.name`), calling
/// `record` once the layout is complete under its temporary name and before
/// it is renamed into place; an error from `record` removes the temporary
/// layout and leaves `dir` as it was.
pub fn export_recorded<E>(
    store: &Store,
    name_tag: Option<(&str, &str)>,
    image: &Descriptor,
    referrers: &[Descriptor],
    tagged: &[Tagged],
    dir: &Path,
    record: impl FnOnce() -> Result<(), E>,
) -> Result<(), BuildError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if dir.exists() {
        let is_layout = dir.join("oci-layout").is_file();
        let empty = fs::read_dir(dir)
            .map(|mut r| r.next().is_none())
            .unwrap_or(false);
        if !is_layout && !empty {
            return Err(BuildError::Output(format!(
                "--out {}: exists and is neither empty nor an OCI layout; refusing to replace it",
                dir.display()
            )));
        }
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| BuildError::io(&parent, e))?;
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{base}.kiln-tmp-{}", std::process::id()));
    let guard = RemoveOnDrop(tmp.clone());
    let _ = fs::remove_dir_all(&tmp);
    let out = Store::open_or_init(&tmp)?.unstamped();
    let mut st = out.staging()?;
    let mut copy = |d: &Descriptor| -> Result<(), BuildError> {
        if st.has(&d.digest) {
            return Ok(());
        }
        st.copy_from(store, d)?;
        Ok(())
    };
    let extra = tagged.iter().map(|t| &t.descriptor);
    for m in std::iter::once(image).chain(referrers).chain(extra) {
        copy(m)?;
        let bytes = store.read_descriptor(m)?;
        let man = ImageManifest::from_bytes(&bytes, &m.digest.to_string())?;
        copy(&man.config)?;
        for l in &man.layers {
            copy(l)?;
        }
    }
    st.commit()?;
    out.add_untagged(referrers)?;
    match name_tag {
        Some((name, tag)) => out.tag(name, tag, image)?,
        None => out.add_untagged(std::slice::from_ref(image))?,
    }
    for t in tagged {
        out.tag(&t.name, &t.tag, &t.descriptor)?;
    }
    fs::remove_dir_all(tmp.join(".kiln")).map_err(|e| BuildError::io(&tmp, e))?;
    record().map_err(|e| BuildError::Aborted { source: e.into() })?;
    // Swap into place.
    let old = parent.join(format!(".{base}.kiln-old-{}", std::process::id()));
    if dir.exists() {
        fs::rename(dir, &old).map_err(|e| BuildError::io(dir, e))?;
    }
    if let Err(e) = fs::rename(&tmp, dir) {
        let _ = fs::rename(&old, dir);
        return Err(BuildError::io(dir, e));
    }
    std::mem::forget(guard);
    let _ = fs::remove_dir_all(&old);
    let _ = kiln_oci::layout::sync_dir(&parent);
    Ok(())
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
