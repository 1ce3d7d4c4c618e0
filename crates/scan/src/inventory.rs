//! The package inventory of an image: dpkg status stanzas, read straight out
//! of the image's layer tars (no unpacking), plus the image config and the
//! kiln file manifest for baseline findings.
//!
//! Layers are applied in order: a later layer's file replaces an earlier one,
//! `.wh.<name>` deletes `<name>` (and everything under it) from the layers
//! below, `.wh..wh..opq` empties its directory of everything from the layers
//! below. Each layer blob is hashed while it is read and must match its
//! descriptor digest.
//!
//! Status rules: a stanza is kept when its `Status:` is
//! `<want> ok installed` (formats.md: "skip packages whose status is not
//! installed"; `hold ok installed` is installed too). In distroless
//! `var/lib/dpkg/status.d/*` files stanzas usually have no `Status:` at
//! all; there an absent `Status:` means installed. In the main status file a
//! stanza without `Status:` is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use kiln_oci::expansion::Bounded;
use kiln_oci::{Digest, ImageConfig, ImageManifest, Store, media};
use kiln_sbom::FileManifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::baseline::BaselineConfig;
use crate::{Result, ScanError};

pub const STATUS_PATH: &str = "var/lib/dpkg/status";
pub const STATUS_D: &str = "var/lib/dpkg/status.d";

/// One installed binary package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package (`Source:`), defaulting to `name`.
    pub source_name: String,
    /// The source version (`Source: name (version)`), defaulting to `version`.
    pub source_version: String,
    /// The `Status:` value (`install ok installed`, or empty in `status.d`).
    pub status: String,
    /// Where the stanza came from, relative to the image root
    /// (`var/lib/dpkg/status` or `var/lib/dpkg/status.d/<file>`).
    #[serde(default)]
    pub status_file: String,
}

/// One filesystem entry of the image (for baseline findings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Absolute path, e.g. `/etc/ssh/ssh_host_ed25519_key`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink` or `other`.
    pub kind: String,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
}

/// Where [`Inventory::files`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilesSource {
    /// The image's kiln file manifest referrer.
    FileManifest,
    /// The layer tars (no file manifest attached).
    Layers,
    /// Supplied by the caller.
    None,
}

/// Everything a scan needs to know about an image.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// Image name (file-manifest subject, `org.opencontainers.image.ref.name`
    /// or the digest); the caller may overwrite it.
    pub image: String,
    pub digest: Option<Digest>,
    pub packages: Vec<Package>,
    /// `ID` from `/etc/os-release` (or `/usr/lib/os-release`).
    pub os_id: Option<String>,
    /// `VERSION_ID` from os-release, e.g. `12`.
    pub os_version_id: Option<String>,
    pub config: ImageConfig,
    /// The `dev.kiln.baseline` label, parsed.
    pub baseline: Option<BaselineConfig>,
    pub file_manifest: Option<FileManifest>,
    pub files: Vec<FileMeta>,
    pub files_source: FilesSource,
    /// Non-fatal problems (unparseable baseline label, etc.).
    pub warnings: Vec<String>,
}

impl Inventory {
    /// An inventory of just packages (tests, `kiln patch` on a spec).
    pub fn from_packages(image: &str, packages: Vec<Package>) -> Inventory {
        Inventory {
            image: image.to_string(),
            digest: None,
            packages,
            os_id: None,
            os_version_id: None,
            config: ImageConfig::default(),
            baseline: None,
            file_manifest: None,
            files: Vec::new(),
            files_source: FilesSource::None,
            warnings: Vec::new(),
        }
    }

    /// The Debian release (`12`) when the image's os-release says Debian.
    pub fn debian_release(&self) -> Option<&str> {
        match (self.os_id.as_deref(), self.os_version_id.as_deref()) {
            (Some("debian"), Some(v)) if !v.is_empty() => Some(v),
            _ => None,
        }
    }
}

/// Parse a dpkg status file; installed packages only, in file order.
pub fn inventory_from_status(bytes: &[u8]) -> Result<Vec<Package>> {
    parse_status(bytes, STATUS_PATH, false)
}

/// Parse stanzas; `missing_status_ok` for distroless `status.d` files.
pub fn parse_status(bytes: &[u8], file: &str, missing_status_ok: bool) -> Result<Vec<Package>> {
    let text = String::from_utf8_lossy(bytes);
    let err = |line: usize, message: String| ScanError::Status {
        file: file.to_string(),
        line,
        message,
    };
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut start = 0usize;
    let mut flush = |fields: &mut Vec<(String, String)>, start: usize| -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.trim().to_string())
        };
        let status = get("Status");
        let installed = match &status {
            None => missing_status_ok,
            Some(s) => {
                let w: Vec<&str> = s.split_whitespace().collect();
                w.len() == 3 && w[1] == "ok" && w[2] == "installed"
            }
        };
        if installed {
            let name = get("Package")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err(start, "stanza has no Package field".into()))?;
            let version = get("Version")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err(start, format!("package {name} has no Version field")))?;
            let (source_name, source_version) = match get("Source").filter(|s| !s.is_empty()) {
                None => (name.clone(), version.clone()),
                Some(src) => parse_source(&src, &version)
                    .map_err(|m| err(start, format!("package {name}: {m}")))?,
            };
            out.push(Package {
                arch: get("Architecture").unwrap_or_default(),
                name,
                version,
                source_name,
                source_version,
                status: status.unwrap_or_default(),
                status_file: file.to_string(),
            });
        }
        fields.clear();
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            flush(&mut fields, start)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line);
                }
                None => return Err(err(lineno, "continuation line outside a field".into())),
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(err(
                lineno,
                format!("expected `Field: value`, got {line:?}"),
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(err(lineno, format!("bad field name {name:?}")));
        }
        if fields.is_empty() {
            start = lineno;
        }
        fields.push((name.to_string(), value.to_string()));
    }
    flush(&mut fields, start)?;
    Ok(out)
}

/// A `Source` field that is neither `name` nor `name (version)`.
#[derive(Debug, thiserror::Error)]
#[error("bad Source field {0:?}")]
struct BadSource(String);

/// `Source: name` or `Source: name (version)`.
fn parse_source(src: &str, version: &str) -> std::result::Result<(String, String), BadSource> {
    match src.split_once('(') {
        None => {
            if src.contains(char::is_whitespace) || src.contains(')') {
                return Err(BadSource(src.into()));
            }
            Ok((src.to_string(), version.to_string()))
        }
        Some((n, rest)) => {
            let n = n.trim();
            let v = rest
                .strip_suffix(')')
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.contains([' ', '(', ')']));
            match v {
                Some(v) if !n.is_empty() && !n.contains(char::is_whitespace) => {
                    Ok((n.to_string(), v.to_string()))
                }
                _ => Err(BadSource(src.into())),
            }
        }
    }
}

/// What a layer walk keeps for one path.
#[derive(Clone, Debug)]
enum Node {
    Meta(FileMeta),
}

/// Content of interesting files (status, status.d/*, os-release).
#[derive(Clone, Debug)]
enum Content {
    Bytes(Vec<u8>),
    Symlink(String),
}

fn interesting(path: &str) -> bool {
    path == STATUS_PATH
        || path
            .strip_prefix(STATUS_D)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| !r.is_empty() && !r.contains('/'))
        || path == "etc/os-release"
        || path == "usr/lib/os-release"
}

/// `./a//b/` → `a/b`; `None` for `..` or empty.
fn normalize(p: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(p);
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn remove_tree<V>(map: &mut BTreeMap<String, V>, path: &str, include_self: bool) {
    if include_self {
        map.remove(path);
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let keys: Vec<String> = map
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        map.remove(&k);
    }
}

/// The most bytes of one package-database or release file read into memory.
const MAX_INTERESTING: u64 = 64 << 20;

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Read the inventory of image `manifest` in `store`.
pub fn inventory_from_store(store: &Store, manifest: &Digest) -> Result<Inventory> {
    let image = manifest.to_string();
    let bad = |message: String| ScanError::Image {
        image: image.clone(),
        message,
    };
    let mbytes = store.read_blob(manifest)?;
    let m = ImageManifest::from_bytes(&mbytes, &image)?;
    if let Some(mt) = &m.media_type
        && !media::is_manifest(mt)
    {
        return Err(bad(format!("media type {mt} is not an image manifest")));
    }
    let cbytes = store.read_descriptor(&m.config)?;
    let config = ImageConfig::from_bytes(&cbytes, &m.config.digest.to_string())?;

    let mut files: BTreeMap<String, Node> = BTreeMap::new();
    let mut contents: BTreeMap<String, Content> = BTreeMap::new();
    for desc in &m.layers {
        let layer = desc.digest.to_string();
        let lbad = |message: String| bad(format!("layer {layer}: {message}"));
        let path = store.blob_path(&desc.digest);
        // A regular file only (no symlink, FIFO or device), never read past
        // one byte more than the descriptor's size.
        let (file, _) = kiln_oci::untrusted::open_regular(&path, kiln_oci::untrusted::Follow::No)
            .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                ScanError::Oci(kiln_oci::OciError::MissingBlob(layer.clone()))
            }
            _ => ScanError::io(&path, e),
        })?;
        let mut raw = HashingReader {
            inner: file.take(desc.size.saturating_add(1)),
            hasher: Sha256::new(),
            size: 0,
        };
        {
            let decoded: Box<dyn Read + '_> = match desc.media_type.as_str() {
                media::LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => {
                    Box::new(&mut raw)
                }
                media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => Box::new(Bounded::for_compressed(
                    flate2::read::MultiGzDecoder::new(&mut raw),
                    desc.size,
                )),
                media::LAYER_ZSTD => Box::new(Bounded::for_compressed(
                    zstd::stream::read::Decoder::new(&mut raw)
                        .map_err(|e| lbad(format!("zstd: {e}")))?,
                    desc.size,
                )),
                other => return Err(lbad(format!("unsupported layer media type {other}"))),
            };
            let mut lw = LayerWalk::default();
            // Huge PAX/GNU extension headers are refused before the tar
            // reader buffers them.
            let mut ar = tar::Archive::new(kiln_oci::targuard::TarGuard::new(decoded));
            let entries = ar.entries().map_err(|e| lbad(format!("tar: {e}")))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| lbad(format!("tar: {e}")))?;
                lw.entry(&mut entry)
                    .map_err(|e| lbad(format!("tar: {e}")))?;
            }
            // Drain the rest so the digest covers the whole blob.
            let mut inner = ar.into_inner().into_inner();
            io::copy(&mut inner, &mut io::sink()).map_err(|e| lbad(format!("read: {e}")))?;
            lw.apply(&mut files, &mut contents);
        }
        io::copy(&mut raw, &mut io::sink()).map_err(|e| ScanError::io(&path, e))?;
        let actual = Digest::from_bytes(raw.hasher.finalize().into());
        if actual != desc.digest || raw.size != desc.size {
            return Err(lbad(format!(
                "blob does not match its descriptor (sha256:{}, {} bytes)",
                actual.hex(),
                raw.size
            )));
        }
    }

    let mut packages = Vec::new();
    let mut warnings = Vec::new();
    if let Some(Content::Bytes(b)) = contents.get(STATUS_PATH) {
        packages.extend(parse_status(b, STATUS_PATH, false)?);
    }
    for (p, c) in contents.range(format!("{STATUS_D}/")..) {
        if !p.starts_with(STATUS_D) {
            break;
        }
        let name = p.rsplit('/').next().unwrap_or("");
        // distroless also ships `<pkg>.md5sums` files next to the stanzas.
        if name.ends_with(".md5sums") || name.starts_with('.') {
            continue;
        }
        if let Content::Bytes(b) = c {
            packages.extend(parse_status(b, p, true)?);
        }
    }
    let os_release = match contents.get("etc/os-release") {
        Some(Content::Bytes(b)) => Some(b.clone()),
        Some(Content::Symlink(t)) => {
            // Debian: /etc/os-release -> ../usr/lib/os-release
            let target = if t.starts_with('/') {
                normalize(t.as_bytes())
            } else {
                normalize(format!("etc/{t}").as_bytes())
            };
            match target.and_then(|t| contents.get(&t)) {
                Some(Content::Bytes(b)) => Some(b.clone()),
                _ => None,
            }
        }
        None => match contents.get("usr/lib/os-release") {
            Some(Content::Bytes(b)) => Some(b.clone()),
            _ => None,
        },
    };
    let (os_id, os_version_id) = os_release
        .map(|b| parse_os_release(&b))
        .unwrap_or((None, None));

    let baseline = match config.config.labels.get(crate::baseline::BASELINE_LABEL) {
        None => None,
        Some(s) => match serde_json::from_str::<BaselineConfig>(s) {
            Ok(b) => Some(b),
            Err(e) => {
                warnings.push(format!(
                    "label {} is not valid baseline JSON: {e}",
                    crate::baseline::BASELINE_LABEL
                ));
                None
            }
        },
    };

    let mut file_manifest = None;
    for (_, rm) in store.referrers(manifest)? {
        if rm.artifact_type.as_deref() != Some(kiln_sbom::MEDIA_TYPE_FILE_MANIFEST) {
            continue;
        }
        let Some(blob) = rm.layers.first() else {
            continue;
        };
        let bytes = store.read_descriptor(blob)?;
        let fm = FileManifest::parse(&bytes)
            .map_err(|e| bad(format!("file manifest {}: {e}", blob.digest)))?;
        file_manifest = Some(fm);
        break;
    }
    let (files, files_source) = match &file_manifest {
        Some(fm) => (
            fm.entries
                .iter()
                .map(|e| FileMeta {
                    path: e.path.clone(),
                    kind: e.kind.as_str().to_string(),
                    mode: e.mode,
                })
                .collect(),
            FilesSource::FileManifest,
        ),
        None => (
            files
                .into_values()
                .map(|Node::Meta(m)| m)
                .collect::<Vec<_>>(),
            FilesSource::Layers,
        ),
    };
    let name = file_manifest
        .as_ref()
        .map(|f| f.subject.name.clone())
        .or_else(|| m.annotations.get(kiln_oci::annotations::REF_NAME).cloned())
        .unwrap_or_else(|| image.clone());
    Ok(Inventory {
        image: name,
        digest: Some(*manifest),
        packages,
        os_id,
        os_version_id,
        config,
        baseline,
        file_manifest,
        files,
        files_source,
        warnings,
    })
}

/// `ID` and `VERSION_ID` from an os-release file (quotes removed).
pub fn parse_os_release(bytes: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(bytes);
    let (mut id, mut ver) = (None, None);
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        match k.trim() {
            "ID" => id = Some(v),
            "VERSION_ID" => ver = Some(v),
            _ => {}
        }
    }
    (id, ver)
}

/// The entries of one layer, applied to the lower layers at the end.
#[derive(Default)]
struct LayerWalk {
    whiteouts: Vec<String>,
    opaque: Vec<String>,
    files: Vec<(String, Node)>,
    contents: Vec<(String, Option<Content>)>,
}

impl LayerWalk {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
        let raw = entry.path_bytes().into_owned();
        let Some(path) = normalize(&raw) else {
            return Ok(());
        };
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d.to_string(), b.to_string()),
            None => (String::new(), path.clone()),
        };
        if base == ".wh..wh..opq" {
            self.opaque.push(dir);
            return Ok(());
        }
        if let Some(target) = base.strip_prefix(".wh.") {
            self.whiteouts.push(if dir.is_empty() {
                target.to_string()
            } else {
                format!("{dir}/{target}")
            });
            return Ok(());
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let et = header.entry_type();
        let kind = if et.is_dir() {
            "dir"
        } else if et.is_symlink() {
            "symlink"
        } else if et.is_hard_link() {
            "hardlink"
        } else if et.is_file() {
            "file"
        } else {
            "other"
        };
        if !path.is_empty() {
            self.files.push((
                path.clone(),
                Node::Meta(FileMeta {
                    path: format!("/{path}"),
                    kind: kind.to_string(),
                    mode,
                }),
            ));
        }
        if interesting(&path) {
            let c = if et.is_file() {
                // Held in memory: bounded.
                let mut b = Vec::new();
                entry.take(MAX_INTERESTING + 1).read_to_end(&mut b)?;
                if b.len() as u64 > MAX_INTERESTING {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("/{path} is larger than {MAX_INTERESTING} bytes"),
                    ));
                }
                Some(Content::Bytes(b))
            } else if et.is_symlink() {
                entry
                    .link_name_bytes()
                    .map(|l| Content::Symlink(String::from_utf8_lossy(&l).into_owned()))
            } else if et.is_hard_link() {
                let target = entry.link_name_bytes().and_then(|l| normalize(&l));
                target.and_then(|t| {
                    self.contents
                        .iter()
                        .rev()
                        .find(|(p, _)| *p == t)
                        .and_then(|(_, c)| c.clone())
                })
            } else {
                None
            };
            self.contents.push((path, c));
        }
        Ok(())
    }

    fn apply(self, files: &mut BTreeMap<String, Node>, contents: &mut BTreeMap<String, Content>) {
        for d in &self.opaque {
            remove_tree(files, d, false);
            remove_tree(contents, d, false);
        }
        for w in &self.whiteouts {
            remove_tree(files, w, true);
            remove_tree(contents, w, true);
        }
        // A non-directory replacing a directory hides what was below it.
        let replaced: BTreeSet<&str> = self
            .files
            .iter()
            .filter(|(_, Node::Meta(m))| m.kind != "dir")
            .map(|(p, _)| p.as_str())
            .collect();
        for p in replaced {
            remove_tree(files, p, false);
            remove_tree(contents, p, false);
        }
        for (p, n) in self.files {
            files.insert(p, n);
        }
        for (p, c) in self.contents {
            match c {
                Some(c) => {
                    contents.insert(p, c);
                }
                None => {
                    contents.remove(&p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_basic() {
        let s = b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2+b1\n";
        let p = inventory_from_status(s).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].source_name, "glibc");
        assert_eq!(p[0].source_version, "2.36-9+deb12u4");
        assert_eq!(p[0].arch, "amd64");
        assert_eq!(p[1].source_name, "openssl");
        assert_eq!(p[1].source_version, "3.0.11-1~deb12u2");
        assert_eq!(p[1].version, "3.0.11-1~deb12u2+b1");
    }

    #[test]
    fn status_errors() {
        let e = inventory_from_status(b"Package: a\nStatus: install ok installed\n").unwrap_err();
        assert!(e.to_string().contains("no Version"), "{e}");
        let e = inventory_from_status(b"garbage line\n").unwrap_err();
        assert!(e.to_string().starts_with("var/lib/dpkg/status:1:"), "{e}");
        let e = inventory_from_status(
            b"Package: a\nStatus: install ok installed\nVersion: 1\nSource: b (1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad Source"), "{e}");
    }

    /// A layer whose GNU long-name header claims 4 MiB: refused by the
    /// tar guard, naming the limit, before the tar reader buffers it.
    #[test]
    fn huge_tar_extension_headers_are_refused() {
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(4 << 20);
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_cksum();
        let mut layer = h.as_bytes().to_vec();
        layer.resize(512 + (4 << 20) + 1024, b'a');
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut st = store.staging().unwrap();
        let l = st.put(media::LAYER_TAR, &layer).unwrap();
        let cfg = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: kiln_oci::RootFs {
                kind: "layers".into(),
                diff_ids: vec![l.digest],
            },
            ..Default::default()
        };
        let c = st.put(media::CONFIG, &cfg.to_bytes()).unwrap();
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            artifact_type: None,
            config: c,
            layers: vec![l],
            subject: None,
            annotations: Default::default(),
        };
        let md = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
        st.commit().unwrap();
        let e = inventory_from_store(&store, &md.digest)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tar extension header (L) of 4194304 bytes"),
            "{e}"
        );
    }

    #[test]
    fn status_d_without_status() {
        let p = parse_status(b"Package: base-files\nVersion: 12.4\n", "x", true).unwrap();
        assert_eq!(p.len(), 1);
        assert!(
            parse_status(b"Package: base-files\nVersion: 12.4\n", "x", false)
                .unwrap()
                .is_empty()
        );
    }
}
