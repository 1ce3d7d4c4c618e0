//! Single-image tar archives for container engines, and reading them back.
//!
//! * `oci-archive`: a tar of an OCI image layout holding exactly one image
//!   (its manifest, config and layers, byte for byte: the manifest digest is
//!   kiln's), tagged by `org.opencontainers.image.ref.name`. `podman load`
//!   and `skopeo copy oci-archive:` read it.
//! * `docker-archive`: the `docker save` format (v1.2): `manifest.json`
//!   (`Config`, `RepoTags`, `Layers`), the config as `<hex>.json` (so the
//!   image ID is kiln's config digest) and every layer uncompressed as
//!   `<diff_id hex>/layer.tar`, each checked against its `diff_id`.
//!
//! Signatures and referrers stay out: they belong to the layout export.
//!
//! Reading ([`unpack_archive`]) treats the tar as hostile: the archive must
//! be a regular file (opened without blocking: a FIFO or device fails at
//! once); only regular files and directories with plain relative names (no
//! `..`, no absolute paths, no links, devices or sparse entries), at most
//! [`MAX_ENTRIES`] entries, no tar extension header over 1 MiB
//! ([`kiln_oci::targuard`]), extracted into a fresh directory; the bytes
//! written can never exceed the archive's own size. Nothing is decompressed
//! on import (a docker archive's layers are uncompressed tars, checked
//! against their `diff_id`; a compressed one fails that check). A docker archive is then turned into an
//! OCI layout whose blobs are all checked (config by its file name, layers
//! by the config's `diff_ids`) before it is handed to the importer.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use kiln_oci::targuard::TarGuard;
use kiln_oci::untrusted::{Follow, open_regular, read_capped};
use kiln_oci::{
    Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, OciError, Sha256Writer, Store,
    annotations, media,
};
use serde::{Deserialize, Serialize};

use crate::BuildError;

/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 100_000;
/// Largest JSON document (`manifest.json`, `index.json`, a config) read.
pub const MAX_JSON: u64 = 4 << 20;

/// Which single-image archive to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    Oci,
    Docker,
}

/// One `manifest.json` entry of a docker archive.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

fn out_err(msg: String) -> BuildError {
    BuildError::Output(msg)
}

fn tar_header(path: &str, size: u64) -> Result<tar::Header, BuildError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| BuildError::Internal(format!("tar path {path}: {e}")))?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Write `image` (tagged `reference`, if any) from `store` as a single-image
/// archive at `out`: written to a temporary name beside it, then `record` is
/// called (the audit event), then renamed into place; an error from `record`
/// removes the temporary file and leaves `out` as it was.
pub fn write_archive<E>(
    store: &Store,
    image: &Descriptor,
    reference: Option<&str>,
    format: ArchiveFormat,
    out: &Path,
    record: impl FnOnce() -> Result<(), E>,
) -> Result<(), BuildError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if out.is_dir() {
        return Err(out_err(format!(
            "--out {}: is a directory; an archive is a file",
            out.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "archive".into());
    let tmp = parent.join(format!(".{base}.kiln-tmp-{}", std::process::id()));
    let scratch = parent.join(format!(".{base}.kiln-layers-{}", std::process::id()));
    let _g1 = RemoveOnDrop(tmp.clone());
    let _g2 = RemoveOnDrop(scratch.clone());
    let f = File::create(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
    let mut tar = tar::Builder::new(BufWriter::new(f));
    let mbytes = store.read_descriptor(image)?;
    let manifest = ImageManifest::from_bytes(&mbytes, &image.digest.to_string())?;
    let cbytes = store.read_descriptor(&manifest.config)?;
    let config = ImageConfig::from_bytes(&cbytes, "image config")?;
    let append = |tar: &mut tar::Builder<BufWriter<File>>,
                  path: &str,
                  size: u64,
                  r: &mut dyn Read|
     -> Result<(), BuildError> {
        let h = tar_header(path, size)?;
        tar.append(&h, r).map_err(|e| BuildError::io(&tmp, e))
    };
    match format {
        ArchiveFormat::Oci => {
            let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
            append(
                &mut tar,
                "oci-layout",
                layout.len() as u64,
                &mut &layout[..],
            )?;
            let mut d = image.clone();
            d.annotations.clear();
            if let Some(r) = reference {
                d.annotations
                    .insert(annotations::REF_NAME.to_string(), r.to_string());
            }
            let mut idx = ImageIndex::new();
            idx.manifests.push(d);
            let ib = idx.to_bytes();
            append(&mut tar, "index.json", ib.len() as u64, &mut &ib[..])?;
            for b in std::iter::once(image)
                .chain(std::iter::once(&manifest.config))
                .chain(&manifest.layers)
            {
                store.verify_blob(b)?;
                let mut f = store.open_blob(b)?;
                append(
                    &mut tar,
                    &format!("blobs/sha256/{}", b.digest.hex()),
                    b.size,
                    &mut f,
                )?;
            }
        }
        ArchiveFormat::Docker => {
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(out_err(format!(
                    "{}: {} layers but {} diff_ids in its config",
                    image.digest,
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                )));
            }
            let cname = format!("{}.json", manifest.config.digest.hex());
            append(&mut tar, &cname, cbytes.len() as u64, &mut &cbytes[..])?;
            fs::create_dir_all(&scratch).map_err(|e| BuildError::io(&scratch, e))?;
            let mut layers = Vec::new();
            for (l, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                store.verify_blob(l)?;
                let p = scratch.join(diff_id.hex());
                let size = decompress_layer(store, l, diff_id, &p)?;
                let name = format!("{}/layer.tar", diff_id.hex());
                if !layers.contains(&name) {
                    let mut f = File::open(&p).map_err(|e| BuildError::io(&p, e))?;
                    append(&mut tar, &name, size, &mut f)?;
                }
                let _ = fs::remove_file(&p);
                layers.push(name);
            }
            let entry = DockerEntry {
                config: cname,
                repo_tags: reference.map(|r| vec![r.to_string()]),
                layers,
            };
            let mb = serde_json::to_vec(&[entry])
                .map_err(|e| BuildError::Internal(format!("manifest.json: {e}")))?;
            append(&mut tar, "manifest.json", mb.len() as u64, &mut &mb[..])?;
        }
    }
    let w = tar.into_inner().map_err(|e| BuildError::io(&tmp, e))?;
    let f = w
        .into_inner()
        .map_err(|e| BuildError::io(&tmp, e.into_error()))?;
    f.sync_all().map_err(|e| BuildError::io(&tmp, e))?;
    // The change and its audit event both happen or neither does: the
    // archive becomes visible only once `record` has succeeded.
    record().map_err(|e| BuildError::Aborted { source: e.into() })?;
    fs::rename(&tmp, out).map_err(|e| BuildError::io(out, e))?;
    let _ = kiln_oci::layout::sync_dir(&parent);
    Ok(())
}

/// Decompress layer `l` into `dst`, checking its `diff_id`; returns the size.
fn decompress_layer(
    store: &Store,
    l: &Descriptor,
    diff_id: &Digest,
    dst: &Path,
) -> Result<u64, BuildError> {
    let src = store.blob_path(&l.digest);
    // A regular file of exactly the descriptor's size, decompressed no
    // further than 16 MiB + 100x its size (the builder's bomb bound).
    let f = store.open_blob(l)?;
    let bounded = |r: Box<dyn Read>| -> Box<dyn Read> {
        Box::new(kiln_oci::expansion::Bounded::for_compressed(r, l.size))
    };
    let mut r: Box<dyn Read> = match l.media_type.as_str() {
        media::LAYER_TAR => Box::new(f),
        media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => {
            bounded(Box::new(flate2::read::MultiGzDecoder::new(f)))
        }
        media::LAYER_ZSTD => bounded(Box::new(
            zstd::Decoder::new(f).map_err(|e| BuildError::io(&src, e))?,
        )),
        other => {
            return Err(BuildError::Oci(OciError::UnsupportedMediaType {
                what: format!("layer {}", l.digest),
                media_type: other.to_string(),
            }));
        }
    };
    let out = File::create(dst).map_err(|e| BuildError::io(dst, e))?;
    let mut w = Sha256Writer::new(BufWriter::new(out));
    io::copy(&mut r, &mut w).map_err(|e| BuildError::io(&src, e))?;
    let (actual, n, mut inner) = w.finish();
    inner.flush().map_err(|e| BuildError::io(dst, e))?;
    if actual != *diff_id {
        return Err(out_err(format!(
            "layer {} decompresses to {actual}, but the config's diff_id is {diff_id}",
            l.digest
        )));
    }
    Ok(n)
}

/// Why an archive was refused.
fn bad(archive: &Path, msg: impl std::fmt::Display) -> BuildError {
    BuildError::Source {
        path: archive.to_path_buf(),
        message: msg.to_string(),
    }
}

/// A relative path of plain components, or `None` (`..`, absolute, odd bytes).
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => {
                let s = s.to_str()?;
                let ok = !s.is_empty()
                    && s.len() <= 255
                    && s.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'+')
                    });
                if !ok || s.starts_with("..") {
                    return None;
                }
                out.push(s);
            }
            _ => return None,
        }
    }
    if out.as_os_str().is_empty() || out.components().count() > 4 {
        None
    } else {
        Some(out)
    }
}

/// Extract the tar `archive` into the empty directory `dir` (hostile-input
/// rules in the module docs), then return the OCI layout it holds, converting
/// a docker archive.
pub fn unpack_archive(archive: &Path, dir: &Path) -> Result<Store, BuildError> {
    // A regular file (a symlink to one is followed), opened without
    // blocking: a FIFO or a device fails at once. Read no further than its
    // size when opened, through the guard against huge tar extension headers.
    let (f, budget) = open_regular(archive, Follow::Yes).map_err(|e| bad(archive, e))?;
    let raw = dir.join("raw");
    fs::create_dir_all(&raw).map_err(|e| BuildError::io(&raw, e))?;
    let mut t = tar::Archive::new(TarGuard::new(f.take(budget)));
    let mut written = 0u64;
    let mut count = 0usize;
    for entry in t.entries().map_err(|e| bad(archive, e))? {
        let mut entry = entry.map_err(|e| bad(archive, format!("not a readable tar: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(archive, format!("more than {MAX_ENTRIES} entries")));
        }
        let path = entry.path().map_err(|e| bad(archive, e))?.into_owned();
        let Some(rel) = safe_relative(&path) else {
            return Err(bad(
                archive,
                format!(
                    "entry {:?} is not a plain relative path",
                    path.display().to_string()
                ),
            ));
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                let d = raw.join(&rel);
                fs::create_dir_all(&d).map_err(|e| BuildError::io(&d, e))?;
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            // pax/GNU metadata entries are consumed by the tar reader.
            other => {
                return Err(bad(
                    archive,
                    format!(
                        "entry {} is a {other:?}, not a regular file or directory",
                        rel.display()
                    ),
                ));
            }
        }
        let size = entry.header().size().map_err(|e| bad(archive, e))?;
        written = written.saturating_add(size);
        if written > budget {
            return Err(bad(
                archive,
                "its entries are larger than the archive itself",
            ));
        }
        let dst = raw.join(&rel);
        if dst.exists() {
            return Err(bad(
                archive,
                format!("entry {} appears twice", rel.display()),
            ));
        }
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p).map_err(|e| BuildError::io(p, e))?;
        }
        let mut out = File::create_new(&dst).map_err(|e| BuildError::io(&dst, e))?;
        let n = io::copy(&mut (&mut entry).take(size), &mut out)
            .map_err(|e| bad(archive, format!("entry {}: {e}", rel.display())))?;
        if n != size {
            return Err(bad(
                archive,
                format!("entry {} is truncated", rel.display()),
            ));
        }
    }
    if raw.join("oci-layout").is_file() && raw.join("index.json").is_file() {
        return Ok(Store::open(&raw)?.unstamped());
    }
    if raw.join("manifest.json").is_file() {
        return docker_to_layout(archive, &raw, &dir.join("layout"));
    }
    Err(bad(
        archive,
        "neither an oci-archive (oci-layout, index.json) nor a docker archive (manifest.json)",
    ))
}

/// Read a small JSON file of the extracted archive.
fn read_json(archive: &Path, path: &Path) -> Result<Vec<u8>, BuildError> {
    // Checked on the open descriptor: regular, not a link, at most MAX_JSON.
    read_capped(path, MAX_JSON, Follow::No).map_err(|e| {
        bad(
            archive,
            format!(
                "{}: {e} (a regular file of at most {MAX_JSON} bytes is expected)",
                path.display()
            ),
        )
    })
}

/// Hash a file; the file must be regular.
fn hash_file(path: &Path) -> Result<(Digest, u64), BuildError> {
    let (f, len) = open_regular(path, Follow::No).map_err(|e| BuildError::Source {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut w = Sha256Writer::new(io::sink());
    io::copy(&mut f.take(len), &mut w).map_err(|e| BuildError::io(path, e))?;
    let (d, n, _) = w.finish();
    Ok((d, n))
}

/// Turn an extracted docker archive into an OCI layout at `out`, checking
/// every config against its name and every layer against its `diff_id`.
fn docker_to_layout(archive: &Path, raw: &Path, out: &Path) -> Result<Store, BuildError> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&read_json(archive, &raw.join("manifest.json"))?)
            .map_err(|e| bad(archive, format!("manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(bad(archive, "manifest.json lists no image"));
    }
    let store = Store::open_or_init(out)?.unstamped();
    let mut st = store.staging()?;
    let mut tagged = Vec::new();
    let mut untagged = Vec::new();
    let mut seen: BTreeMap<PathBuf, (Digest, u64)> = BTreeMap::new();
    for e in &entries {
        let cpath = safe_relative(Path::new(&e.config)).ok_or_else(|| {
            bad(
                archive,
                format!("Config {:?} is not a plain path", e.config),
            )
        })?;
        let cbytes = read_json(archive, &raw.join(&cpath))?;
        let cdigest = Digest::of(&cbytes);
        // docker names the config by its digest (`<hex>.json`, or blobs/sha256/<hex>).
        let stem = cpath
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".json"))
            .unwrap_or_default();
        if Digest::from_hex(stem).is_ok_and(|d| d != cdigest) {
            return Err(bad(
                archive,
                format!("config {} hashes to {cdigest}", cpath.display()),
            ));
        }
        let config = ImageConfig::from_bytes(&cbytes, &format!("config {}", cpath.display()))?;
        if config.rootfs.diff_ids.len() != e.layers.len() {
            return Err(bad(
                archive,
                format!(
                    "config {} has {} diff_ids for {} layers",
                    cpath.display(),
                    config.rootfs.diff_ids.len(),
                    e.layers.len()
                ),
            ));
        }
        let config_desc = st.put(media::CONFIG, &cbytes)?;
        let mut layers = Vec::new();
        for (l, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
            let lpath = safe_relative(Path::new(l))
                .ok_or_else(|| bad(archive, format!("layer {l:?} is not a plain path")))?;
            let p = raw.join(&lpath);
            // A layer listed twice (two identical layers) was moved into staging already.
            let (d, n) = match seen.get(&lpath) {
                Some(v) => *v,
                None => {
                    let v = hash_file(&p)?;
                    seen.insert(lpath.clone(), v);
                    v
                }
            };
            if d != *diff_id {
                return Err(bad(
                    archive,
                    format!("layer {l} hashes to {d}, but the config's diff_id is {diff_id}"),
                ));
            }
            if !st.has(&d) {
                let (f, tmp) = st.temp_file()?;
                drop(f);
                fs::rename(&p, &tmp).map_err(|e| BuildError::io(&p, e))?;
                st.adopt(tmp, d)?;
            }
            layers.push(Descriptor::new(media::LAYER_TAR, d, n));
        }
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.to_string()),
            artifact_type: None,
            config: config_desc,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let mdesc = st.put(media::MANIFEST, &m.to_bytes())?;
        match e.repo_tags.as_deref() {
            Some(tags) if !tags.is_empty() => {
                for t in tags {
                    match kiln_oci::ImageRef::parse(t) {
                        Ok(kiln_oci::ImageRef::Tag { name, tag }) => {
                            tagged.push((name, tag, mdesc.clone()))
                        }
                        _ => {
                            return Err(bad(
                                archive,
                                format!("RepoTags entry {t:?} is not NAME:TAG"),
                            ));
                        }
                    }
                }
            }
            _ => untagged.push(mdesc),
        }
    }
    st.commit()?;
    store.add_untagged(&untagged)?;
    for (n, t, d) in &tagged {
        store.tag(n, t, d)?;
    }
    Ok(store)
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn accepted_paths_stay_inside(parts in proptest::collection::vec("(\\.\\.|\\.|/|[a-c]{1,2}|\\\\)", 1..7)) {
            let p = parts.concat();
            if let Some(r) = safe_relative(Path::new(&p)) {
                proptest::prop_assert!(r.is_relative());
                proptest::prop_assert!(r.components().all(|c| matches!(c, Component::Normal(_))));
                proptest::prop_assert!(r.components().all(|c| c.as_os_str() != ".."));
            }
        }

        #[test]
        fn random_archives_never_panic_or_escape(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let dir = tempfile::tempdir().unwrap();
            let a = dir.path().join("in.tar");
            fs::write(&a, &bytes).unwrap();
            let out = dir.path().join("out");
            fs::create_dir(&out).unwrap();
            let _ = unpack_archive(&a, &out);
            let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            proptest::prop_assert_eq!(names.len(), 2);
        }
    }

    /// Runs `f` on a thread; a read that blocks fails the test instead of
    /// hanging it.
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("unpack_archive blocked: killed after 60 s")
    }

    /// An archive that is a FIFO, a device, or holds a huge extension
    /// header is refused at once, naming the archive and the cause.
    #[test]
    fn hostile_archives_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in.fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(4 << 20);
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_cksum();
        let mut long = h.as_bytes().to_vec();
        long.resize(512 + (4 << 20) + 1024, b'a');
        let longp = dir.path().join("long.tar");
        fs::write(&longp, &long).unwrap();
        for (i, (a, want)) in [
            (fifo, "FIFO"),
            (PathBuf::from("/dev/zero"), "character device"),
            (longp, "tar extension header (L) of 4194304 bytes"),
        ]
        .into_iter()
        .enumerate()
        {
            let out = dir.path().join(format!("out{i}"));
            fs::create_dir(&out).unwrap();
            let aa = a.clone();
            let e = within_a_minute(move || unpack_archive(&aa, &out).map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&a.display().to_string()) && e.contains(want),
                "{e}"
            );
        }
    }

    #[test]
    fn docker_archive_with_a_repeated_layer_and_two_images() {
        let layer = tar_of(&[("etc/x", tar::EntryType::Regular, b"x")]);
        let diff = Digest::of(&layer);
        let config = |arch: &str| {
            format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["A=1"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}}}}"#
            )
        };
        let (c1, c2) = (config("amd64"), config("arm64"));
        let (n1, n2) = (
            format!("{}.json", Digest::of(c1.as_bytes()).hex()),
            format!("{}.json", Digest::of(c2.as_bytes()).hex()),
        );
        let manifest = format!(
            r#"[{{"Config":"{n1}","RepoTags":["app:1"],"Layers":["l/layer.tar","l/layer.tar"]}},{{"Config":"{n2}","RepoTags":null,"Layers":["l/layer.tar","l/layer.tar"]}}]"#
        );
        let bytes = tar_of(&[
            (n1.as_str(), tar::EntryType::Regular, c1.as_bytes()),
            (n2.as_str(), tar::EntryType::Regular, c2.as_bytes()),
            ("l/layer.tar", tar::EntryType::Regular, &layer),
            (
                "manifest.json",
                tar::EntryType::Regular,
                manifest.as_bytes(),
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("d.tar");
        fs::write(&a, &bytes).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let store = unpack_archive(&a, &out).unwrap();
        let idx = store.index().unwrap();
        assert_eq!(idx.manifests.len(), 2, "{idx:?}");
        assert!(store.has_blob(&diff));
        let imgs = store.images().unwrap();
        assert_eq!((imgs[0].name.as_str(), imgs[0].tag.as_str()), ("app", "1"));

        // A config whose bytes do not match its name is refused.
        // n1 holds the second config's bytes.
        let lying = tar_of(&[
            (n1.as_str(), tar::EntryType::Regular, c2.as_bytes()),
            ("l/layer.tar", tar::EntryType::Regular, &layer),
            (
                "manifest.json",
                tar::EntryType::Regular,
                manifest.as_bytes(),
            ),
        ]);
        fs::write(&a, &lying).unwrap();
        let out = dir.path().join("out2");
        fs::create_dir(&out).unwrap();
        let e = unpack_archive(&a, &out).err().unwrap().to_string();
        assert!(e.contains("hashes to"), "{e}");
    }

    #[test]
    fn safe_paths() {
        assert!(safe_relative(Path::new("blobs/sha256/ab")).is_some());
        assert!(safe_relative(Path::new("./index.json")).is_some());
        for p in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "",
            ".",
            "a/b/c/d/e",
            "a\\b",
        ] {
            assert!(safe_relative(Path::new(p)).is_none(), "{p}");
        }
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, t, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *t == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            // Bypass the builder's own path checks: hostile archives do.
            let name = p.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_archives_are_refused_without_writing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "traversal",
                tar_of(&[("../evil", tar::EntryType::Regular, b"x")]),
            ),
            (
                "absolute",
                tar_of(&[("/tmp/evil", tar::EntryType::Regular, b"x")]),
            ),
            (
                "symlink",
                tar_of(&[("oci-layout", tar::EntryType::Symlink, b"")]),
            ),
            (
                "hardlink",
                tar_of(&[("index.json", tar::EntryType::Link, b"")]),
            ),
            ("fifo", tar_of(&[("index.json", tar::EntryType::Fifo, b"")])),
            (
                "twice",
                tar_of(&[
                    ("index.json", tar::EntryType::Regular, b"{}"),
                    ("index.json", tar::EntryType::Regular, b"{}"),
                ]),
            ),
            ("empty", tar_of(&[])),
            (
                "not json",
                tar_of(&[("manifest.json", tar::EntryType::Regular, b"[")]),
            ),
            ("garbage", b"this is not a tar archive at all".repeat(40)),
        ];
        for (what, bytes) in cases {
            let a = dir.path().join(format!("{what}.tar"));
            fs::write(&a, &bytes).unwrap();
            let out = dir.path().join(format!("{what}.out"));
            fs::create_dir(&out).unwrap();
            let r = unpack_archive(&a, &out);
            assert!(r.is_err(), "{what} accepted");
        }
        assert!(!dir.path().parent().unwrap().join("evil").exists());
        // Not a regular file: refused before reading.
        let out = dir.path().join("dev.out");
        fs::create_dir(&out).unwrap();
        let e = unpack_archive(Path::new("/dev/zero"), &out).err().unwrap();
        assert!(e.to_string().contains("only regular files are read"), "{e}");
    }
}
