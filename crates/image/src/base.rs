//! Base images: an OCI layout on disk, pinned by digest. Every blob is
//! verified (manifest, config, each layer's compressed digest and its
//! uncompressed diff_id) before anything of it is used.

use std::io::{self, Read};
use std::path::Path;

use kiln_oci::expansion::Bounded;
use kiln_oci::targuard::TarGuard;
use kiln_oci::{Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Store, media};
use sha1::Digest as _;

use crate::BuildError;
use crate::tarw::EntryType;
use crate::tree::{self, Content, Node, Origin, Tree};

/// A verified base image and its merged filesystem.
pub struct BaseImage {
    pub spec: String,
    pub store: Store,
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
    pub tree: Tree,
    /// `/var/lib/dpkg/status` of the base, if it has one.
    pub dpkg_status: Option<Vec<u8>>,
    pub warnings: Vec<String>,
}

/// Why a base layer could not be read or is refused.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer's content is refused: a sentence naming the path at fault.
    #[error("{0}")]
    Refused(String),
    #[error("path {0:?} escapes the root")]
    Escapes(String),
    #[error("unsupported layer media type {0}")]
    MediaType(String),
    #[error("{0}")]
    Blob(#[source] kiln_oci::OciError),
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("corrupt tar: {0}")]
    CorruptTar(#[source] io::Error),
    #[error("{path}: {source}")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("uncompressed content hashes to {actual}, the config's diff_id is {diff_id}")]
    DiffId { actual: Digest, diff_id: Digest },
    #[error("spool: {0}")]
    Spool(#[source] io::Error),
    #[error("layer {index} ({digest}): {source}")]
    InLayer {
        index: usize,
        digest: Digest,
        #[source]
        source: Box<LayerError>,
    },
}

fn entry_err(path: &str) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Entry {
        path: path.to_string(),
        source,
    }
}

fn base_err(spec: &str, message: impl Into<String>) -> BuildError {
    BuildError::Base {
        base: spec.to_string(),
        message: message.into(),
    }
}

/// Load and verify the base at `path` pinned to `digest` (a manifest, or an
/// index from which the `linux/<arch>` manifest is chosen).
pub fn load(spec: &str, path: &Path, digest: &Digest, arch: &str) -> Result<BaseImage, BuildError> {
    let store = Store::open(path).map_err(|e| base_err(spec, e.to_string()))?;
    let bytes = store
        .read_blob(digest)
        .map_err(|e| base_err(spec, e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| base_err(spec, format!("{digest} is not JSON: {e}")))?;
    let mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    let (manifest_digest, mbytes) = if media::is_index(mt) || v.get("manifests").is_some() {
        let idx: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| base_err(spec, format!("index {digest}: {e}")))?;
        let d = idx
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .ok_or_else(|| {
                base_err(spec, format!("index {digest} has no linux/{arch} manifest"))
            })?;
        let b = store
            .read_descriptor(d)
            .map_err(|e| base_err(spec, e.to_string()))?;
        (d.digest, b)
    } else {
        (*digest, bytes)
    };
    let manifest = ImageManifest::from_bytes(&mbytes, &manifest_digest.to_string())
        .map_err(|e| base_err(spec, e.to_string()))?;
    let cbytes = store
        .read_descriptor(&manifest.config)
        .map_err(|e| base_err(spec, format!("config: {e}")))?;
    let config = ImageConfig::from_bytes(&cbytes, "base config")
        .map_err(|e| base_err(spec, e.to_string()))?;
    if config.architecture != arch {
        return Err(base_err(
            spec,
            format!(
                "the base is {}, the spec builds {arch}",
                config.architecture
            ),
        ));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(base_err(
            spec,
            format!(
                "the config lists {} diff_ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    let mut tree = Tree::new();
    let mut dpkg_status = None;
    let mut warnings = Vec::new();
    for (i, (layer, diff_id)) in manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .enumerate()
    {
        store
            .verify_blob(layer)
            .map_err(|e| base_err(spec, format!("layer {i}: {e}")))?;
        read_layer(
            &store,
            layer,
            diff_id,
            &mut tree,
            &mut dpkg_status,
            &mut warnings,
        )
        .map_err(|m| base_err(spec, format!("layer {i} ({}): {m}", layer.digest)))?;
    }
    summarize_untracked(&mut warnings);
    Ok(BaseImage {
        spec: spec.to_string(),
        store,
        manifest_digest,
        manifest,
        config,
        tree,
        dpkg_status,
        warnings,
    })
}

struct HashingReader<R> {
    inner: R,
    h: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

/// The decoder of a layer blob of `size` bytes, bounded: a compressed layer
/// may expand to 16 MiB plus 100 times its size, no more.
fn decompressor<'a>(
    mt: &str,
    f: impl Read + 'a,
    size: u64,
) -> Result<Box<dyn Read + 'a>, LayerError> {
    let f = io::BufReader::with_capacity(1 << 20, f);
    let bounded = |r: Box<dyn Read + 'a>| -> Box<dyn Read + 'a> {
        Box::new(Bounded::for_compressed(r, size))
    };
    Ok(match mt {
        media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => {
            bounded(Box::new(flate2::read::MultiGzDecoder::new(f)))
        }
        media::LAYER_ZSTD => bounded(Box::new(
            zstd::Decoder::with_buffer(f).map_err(LayerError::Io)?,
        )),
        media::LAYER_TAR => Box::new(f),
        other => return Err(LayerError::MediaType(other.into())),
    })
}

/// The most a base's `/var/lib/dpkg/status` may be (it is held in memory).
const MAX_DPKG_STATUS: u64 = 64 << 20;

/// Copies the regular files at `wanted` (absolute image paths) out of the
/// base's layers into `spool`, the topmost layer's version of each winning:
/// path → (offset, size). Used to read base files when the entrypoint is
/// checked; the layers were verified when the base was loaded, and are
/// decoded with the same bounds.
pub(crate) fn extract_files(
    base: &BaseImage,
    wanted: &std::collections::BTreeSet<String>,
    spool: &crate::spool::Spool,
) -> Result<std::collections::HashMap<String, (u64, u64)>, LayerError> {
    let mut out = std::collections::HashMap::new();
    let mut sink = crate::spool::SpoolWriter::new(spool).map_err(LayerError::Spool)?;
    for (i, layer) in base.manifest.layers.iter().enumerate() {
        let what = |e: LayerError| LayerError::InLayer {
            index: i,
            digest: layer.digest,
            source: Box::new(e),
        };
        // A regular file of exactly the descriptor's size, read no further.
        let f = base
            .store
            .open_blob(layer)
            .map_err(|e| what(LayerError::Blob(e)))?;
        let r = decompressor(&layer.media_type, f, layer.size).map_err(what)?;
        let mut ar = tar::Archive::new(TarGuard::new(r));
        for e in ar.entries().map_err(|e| what(LayerError::Io(e)))? {
            let mut e = e.map_err(|e| what(LayerError::CorruptTar(e)))?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let raw = e.path_bytes();
            let Some(Ok(Some(path))) = std::str::from_utf8(&raw).ok().map(normalize_tar_path)
            else {
                continue;
            };
            if !wanted.contains(&path) {
                continue;
            }
            let size = e.size();
            let h = kiln_deb::ContentSink::store(&mut sink, &path, size, &mut e)
                .map_err(|e| what(entry_err(&path)(e)))?;
            let st = sink.stored[usize::try_from(h)
                .unwrap_or(usize::MAX)
                .min(sink.stored.len() - 1)];
            out.insert(path, (st.offset, st.size));
        }
    }
    Ok(out)
}

/// Normalise a tar path to an absolute image path; refuse escapes.
pub(crate) fn normalize_tar_path(raw: &str) -> Result<Option<String>, LayerError> {
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(LayerError::Escapes(raw.into())),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("/{}", parts.join("/"))))
}

fn read_layer(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    tree: &mut Tree,
    dpkg_status: &mut Option<Vec<u8>>,
    warnings: &mut Vec<String>,
) -> Result<(), LayerError> {
    // A regular file of exactly the descriptor's size, read no further.
    let f = store.open_blob(layer).map_err(LayerError::Blob)?;
    let mut r = HashingReader {
        inner: decompressor(&layer.media_type, f, layer.size)?,
        h: sha2::Sha256::new(),
    };
    apply_tar(&mut r, tree, dpkg_status, warnings)?;
    io::copy(&mut r, &mut io::sink()).map_err(LayerError::Io)?;
    let actual = Digest::from_bytes(r.h.finalize().into());
    if actual != *diff_id {
        return Err(LayerError::DiffId {
            actual,
            diff_id: *diff_id,
        });
    }
    Ok(())
}

/// Apply one uncompressed layer tar to `tree` (whiteouts included),
/// refusing paths that escape the root and links to nothing. Untrusted
/// input: this is a fuzz target.
pub fn apply_tar(
    r: &mut dyn Read,
    tree: &mut Tree,
    dpkg_status: &mut Option<Vec<u8>>,
    warnings: &mut Vec<String>,
) -> Result<(), LayerError> {
    let mut upper = Tree::new();
    let mut whiteouts: Vec<(String, bool)> = Vec::new();
    {
        let mut ar = tar::Archive::new(TarGuard::new(r));
        let entries = ar.entries().map_err(LayerError::Io)?;
        for e in entries {
            let mut e = e.map_err(LayerError::CorruptTar)?;
            let raw = e.path_bytes();
            let raw = std::str::from_utf8(&raw)
                .map_err(|_| {
                    LayerError::Refused(format!(
                        "non-UTF-8 path {:?}",
                        String::from_utf8_lossy(&raw)
                    ))
                })?
                .to_string();
            let Some(path) = normalize_tar_path(&raw)? else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or("");
            if name == ".wh..wh..opq" {
                whiteouts.push((tree::parent(&path).unwrap_or("").to_string(), true));
                continue;
            }
            if let Some(victim) = name.strip_prefix(".wh.") {
                let dir = tree::parent(&path).unwrap_or("");
                whiteouts.push((format!("{dir}/{victim}"), false));
                continue;
            }
            let h = e.header();
            let mode = h.mode().map_err(entry_err(&path))? & 0o7777;
            let uid = h.uid().map_err(entry_err(&path))? as u32;
            let gid = h.gid().map_err(entry_err(&path))? as u32;
            let et = h.entry_type();
            let node = if et.is_dir() {
                Node::dir(mode, uid, gid, Origin::Base)
            } else if et.is_file() {
                let mut a = sha2::Sha256::new();
                let mut b = sha1::Sha1::new();
                let mut data = Vec::new();
                let keep = path == "/var/lib/dpkg/status";
                let mut buf = [0u8; 64 * 1024];
                let mut size = 0u64;
                loop {
                    let k = e.read(&mut buf).map_err(entry_err(&path))?;
                    if k == 0 {
                        break;
                    }
                    a.update(&buf[..k]);
                    b.update(&buf[..k]);
                    if keep {
                        if (data.len() + k) as u64 > MAX_DPKG_STATUS {
                            return Err(LayerError::Refused(format!(
                                "{path} is larger than {MAX_DPKG_STATUS} bytes; refused"
                            )));
                        }
                        data.extend_from_slice(&buf[..k]);
                    }
                    size += k as u64;
                }
                if keep {
                    *dpkg_status = Some(data);
                }
                Node {
                    kind: EntryType::File,
                    mode,
                    uid,
                    gid,
                    size,
                    sha256: Some(a.finalize().into()),
                    sha1: Some(b.finalize().into()),
                    link: None,
                    origin: Origin::Base,
                    content: Content::None,
                }
            } else if et.is_symlink() || et.is_hard_link() {
                let target = e
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).to_string())
                    .ok_or_else(|| LayerError::Refused(format!("{path}: link without a target")))?;
                let (kind, link, (sha, sha1), size) = if et.is_hard_link() {
                    let t = normalize_tar_path(&target)?.ok_or_else(|| {
                        LayerError::Refused(format!("{path}: hard link to the root"))
                    })?;
                    let tn = upper.get(&t).or_else(|| tree.get(&t)).ok_or_else(|| {
                        LayerError::Refused(format!(
                            "{path}: hard link to {t}, which does not exist"
                        ))
                    })?;
                    (EntryType::Hardlink, t, (tn.sha256, tn.sha1), tn.size)
                } else {
                    (EntryType::Symlink, target, (None, None), 0)
                };
                Node {
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    sha256: sha,
                    sha1,
                    link: Some(link),
                    origin: Origin::Base,
                    content: Content::None,
                }
            } else {
                warnings.push(format!(
                    "base: {path} ({et:?}) is not a file, directory or link; not tracked"
                ));
                continue;
            };
            if node.kind != EntryType::Dir {
                tree::remove_subtree(&mut upper, &path);
            }
            upper.insert(path, node);
        }
    }
    for (p, opaque) in whiteouts {
        if opaque {
            let prefix = format!("{p}/");
            let doomed: Vec<String> = tree
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in doomed {
                tree.remove(&k);
            }
        } else {
            tree::remove_subtree(tree, &p);
        }
    }
    tree::overlay(tree, &upper);
    // Every entry of this layer must sit in a directory of the result.
    // A layer that leaves a parent out (as tars written with absolute
    // paths often do) or writes beneath a symlink or file (link-then-file)
    // is refused here, naming the path, rather than later as a broken
    // inventory.
    for path in upper.keys() {
        let Some(dir) = tree::parent(path) else {
            continue;
        };
        match tree.get(dir) {
            Some(n) if n.kind == EntryType::Dir => {}
            Some(n) => {
                let what = match n.kind {
                    EntryType::Symlink => format!(
                        "a symlink (to {}); writing through a link is refused",
                        n.link.as_deref().unwrap_or("")
                    ),
                    EntryType::Hardlink => "a hard link, not a directory".to_string(),
                    _ => "a regular file, not a directory".to_string(),
                };
                return Err(LayerError::Refused(format!(
                    "{path}: its parent {dir} is {what}"
                )));
            }
            None => {
                return Err(LayerError::Refused(format!(
                    "{path}: its parent directory {dir} is in neither this layer nor a lower one (a layer must list every directory it writes into)"
                )));
            }
        }
    }
    Ok(())
}

/// One warning for all of a base's device nodes, FIFOs and sockets (a
/// Debian base has dozens under /dev), not one per node.
fn summarize_untracked(warnings: &mut Vec<String>) {
    const SUFFIX: &str = "is not a file, directory or link; not tracked";
    let (nodes, mut rest): (Vec<String>, Vec<String>) =
        warnings.drain(..).partition(|w| w.ends_with(SUFFIX));
    if nodes.len() > 1 {
        let paths: Vec<&str> = nodes
            .iter()
            .take(3)
            .filter_map(|w| w.strip_prefix("base: ")?.split(" (").next())
            .collect();
        rest.push(format!(
            "base: {} device nodes, FIFOs or sockets (e.g. {}) are not tracked; instances get their own /dev",
            nodes.len(),
            paths.join(", ")
        ));
    } else {
        rest.extend(nodes);
    }
    *warnings = rest;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarw::{EntryType as T, Header, TarWriter};
    use proptest::prelude::*;

    /// A raw tar with exactly the names given (our writer, so no sanitising).
    fn tar_of(entries: &[(&str, T, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (p, k, link, data) in entries {
            w.header(&Header {
                path: p,
                kind: *k,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: data.len() as u64,
                mtime: 0,
                link: *link,
                xattrs: &[],
            })
            .unwrap();
            if *k == T::File {
                w.content(data).unwrap();
                w.pad(data.len() as u64).unwrap();
            }
        }
        w.finish().unwrap()
    }

    /// Applies a layer; its error as the message a build shows.
    fn apply(tree: &mut Tree, bytes: &[u8]) -> Result<(), String> {
        apply_tar(&mut &bytes[..], tree, &mut None, &mut Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn device_nodes_give_one_summary_warning() {
        let mut b = tar::Builder::new(Vec::new());
        for (p, t) in [
            ("dev/null", tar::EntryType::Char),
            ("dev/zero", tar::EntryType::Char),
            ("dev/sda", tar::EntryType::Block),
            ("run/fifo", tar::EntryType::Fifo),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_path(p).unwrap();
            h.set_entry_type(t);
            h.set_size(0);
            h.set_mode(0o666);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let mut warnings = vec!["something else".to_string()];
        apply_tar(&mut &bytes[..], &mut Tree::new(), &mut None, &mut warnings).unwrap();
        summarize_untracked(&mut warnings);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[1].starts_with("base: 4 device nodes"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("/dev/null, /dev/zero, /dev/sda"),
            "{warnings:?}"
        );
        // One alone keeps its own message.
        let mut one =
            vec!["base: dev/null (Char) is not a file, directory or link; not tracked".to_string()];
        summarize_untracked(&mut one);
        assert_eq!(one.len(), 1);
        assert!(one[0].contains("dev/null (Char)"));
    }

    /// A GNU long-name header of 4 MiB: the `tar` crate would buffer it
    /// whole; the guard refuses it first, naming the limit.
    #[test]
    fn huge_extension_headers_are_refused() {
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(4 << 20);
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.resize(512 + (4 << 20) + 1024, b'a');
        let e = apply(&mut Tree::new(), &bytes).unwrap_err();
        assert!(
            e.contains("tar extension header (L) of 4194304 bytes"),
            "{e}"
        );
        assert!(e.contains("at most 1048576"), "{e}");
    }

    #[test]
    fn traversal_and_dangling_links_are_refused() {
        let mut t = Tree::new();
        let e = apply(
            &mut t,
            &tar_of(&[("a/../../etc/passwd", T::File, None, b"x")]),
        )
        .unwrap_err();
        assert!(e.contains("escapes the root"), "{e}");
        let e = apply(&mut t, &tar_of(&[("x", T::Hardlink, Some("nowhere"), b"")])).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = apply(
            &mut t,
            &tar_of(&[("x", T::Hardlink, Some("../../etc/shadow"), b"")]),
        )
        .unwrap_err();
        assert!(e.contains("escapes the root"), "{e}");
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let mut t = Tree::new();
        apply(
            &mut t,
            &tar_of(&[
                ("etc", T::Dir, None, b""),
                ("etc/a", T::File, None, b"1"),
                ("etc/b", T::File, None, b"2"),
                ("opt", T::Dir, None, b""),
                ("opt/x", T::File, None, b"3"),
            ]),
        )
        .unwrap();
        apply(
            &mut t,
            &tar_of(&[
                ("etc/.wh.a", T::File, None, b""),
                ("opt/.wh..wh..opq", T::File, None, b""),
                ("opt/y", T::File, None, b"4"),
            ]),
        )
        .unwrap();
        assert!(!t.contains_key("/etc/a"));
        assert!(t.contains_key("/etc/b"));
        assert!(!t.contains_key("/opt/x"), "opaque dir kept a lower entry");
        assert!(
            t.contains_key("/opt/y"),
            "opaque dir hid its own layer's entry"
        );
    }

    #[test]
    fn missing_parents_and_writes_through_links_name_their_cause() {
        let mut t = Tree::new();
        let e = apply(&mut t, &tar_of(&[("/etc/passwd", T::File, None, b"x")])).unwrap_err();
        assert!(
            e.contains("/etc/passwd: its parent directory /etc is in neither this layer"),
            "{e}"
        );
        let mut t = Tree::new();
        let e = apply(
            &mut t,
            &tar_of(&[
                ("a", T::Symlink, Some("b"), b""),
                ("a/x", T::File, None, b"x"),
            ]),
        )
        .unwrap_err();
        assert!(e.contains("/a/x: its parent /a is a symlink (to b)"), "{e}");
        // Across layers too: a link in a lower layer, a file beneath it above.
        let mut t = Tree::new();
        apply(
            &mut t,
            &tar_of(&[("d", T::Dir, None, b""), ("l", T::Symlink, Some("d"), b"")]),
        )
        .unwrap();
        let e = apply(&mut t, &tar_of(&[("l/x", T::File, None, b"x")])).unwrap_err();
        assert!(e.contains("/l/x: its parent /l is a symlink (to d)"), "{e}");
        let mut t = Tree::new();
        let e = apply(
            &mut t,
            &tar_of(&[("f", T::File, None, b"1"), ("f/x", T::File, None, b"x")]),
        )
        .unwrap_err();
        assert!(e.contains("its parent /f is a regular file"), "{e}");
        // Absolute paths with their parents listed are fine.
        let mut t = Tree::new();
        apply(
            &mut t,
            &tar_of(&[
                ("/etc", T::Dir, None, b""),
                ("/etc/passwd", T::File, None, b"x"),
            ]),
        )
        .unwrap();
        assert!(t.contains_key("/etc/passwd"));
    }

    proptest! {
        #[test]
        fn apply_tar_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut t = Tree::new();
            let _ = apply(&mut t, &bytes);
        }

        #[test]
        fn no_accepted_path_escapes(parts in proptest::collection::vec("(\\.\\.|\\.|[a-c]{1,2})", 1..6)) {
            let p = parts.join("/");
            let mut t = Tree::new();
            if apply(&mut t, &tar_of(&[(p.as_str(), T::File, None, b"z")])).is_ok() {
                for k in t.keys() {
                    prop_assert!(k.starts_with('/') && !k.split('/').any(|c| c == ".." || c == "."), "{k}");
                }
            }
        }
    }
}
