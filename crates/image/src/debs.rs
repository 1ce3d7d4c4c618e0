//! The packages layer: `.deb` inputs verified against their pinned SHA-256,
//! unpacked (data.tar) and registered in the dpkg database inside the image
//! (`/var/lib/dpkg/status`, `info/<pkg>.list`, `.md5sums`, `.conffiles`),
//! so Debian tooling and scanners see them. Maintainer scripts are never
//! run; the SBOM records which ones a package has.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_deb::{Deb, EntryKind, Limits, Stanza};
use kiln_oci::untrusted::{Follow, open_regular};
use kiln_sbom::{Package, PackageOrigin};
use sha2::Digest as _;

use crate::BuildError;
use crate::spec::{DebSpec, Spec};
use crate::spool::{Spool, SpoolWriter, Stored};
use crate::system::{self, Over};
use crate::tarw::EntryType;
use crate::tree::{self, Content, Node, Origin, Tree};

/// The packages layer and the packages it installs.
pub struct PackagesLayer {
    pub tree: Tree,
    pub installed: Vec<Package>,
}

fn deb_err(spec: &Spec, d: &DebSpec, message: impl Into<String>) -> BuildError {
    BuildError::Deb {
        spec_loc: match &d.from {
            Some(_) => spec.dir.join(crate::lock::LOCK_FILE).display().to_string(),
            None => format!("{}:{}:{}", spec.path.display(), d.loc.line, d.loc.column),
        },
        path: d.path.clone(),
        message: match &d.from {
            Some(from) => format!("{from}: {}", message.into()),
            None => format!("debs[{}]: {}", d.index, message.into()),
        },
    }
}

/// Where a package entry lands, as dpkg decides it: every parent is resolved
/// through the symlinks of the filesystem so far (`fs`: packages unpacked
/// before it over the base), so `/lib/x/libfoo.so` on a merged-/usr base
/// lands in `/usr/lib/x/libfoo.so`; and a *directory* entry whose own path
/// is a symlink (or a chain of them) ending at a directory keeps the
/// symlink: it resolves to that directory instead of replacing the link
/// with an empty one. A non-directory entry replaces whatever is at its
/// path. Resolution never leaves the root.
pub fn resolve_entry(
    fs: &dyn tree::Lookup,
    path: &str,
    is_dir: bool,
) -> Result<String, tree::SymlinkLoop> {
    let resolved = tree::resolve_parents(fs, path)?;
    if !is_dir {
        return Ok(resolved);
    }
    let mut cur = resolved.clone();
    for _ in 0..40 {
        match fs.node(&cur) {
            Some(n) if n.kind == EntryType::Symlink => {
                let target = n.link.as_deref().unwrap_or("");
                let base = if target.starts_with('/') {
                    "/"
                } else {
                    tree::parent(&cur).unwrap_or("/")
                };
                cur = tree::resolve_parents(fs, &tree::lexical_join(base, target))?;
            }
            Some(n) if n.kind == EntryType::Dir => return Ok(cur),
            // A dangling link, or a link to a non-directory: the directory
            // replaces the link, as with dpkg.
            _ => return Ok(resolved),
        }
    }
    Err(tree::SymlinkLoop(path.into()))
}

/// SHA-256 of everything read through it.
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

/// Read one `.deb` in a single streaming pass: its files go to `spool`, and
/// its SHA-256 is checked against the pin over the very bytes that were
/// parsed (a package that fails to parse but does not match its pin is
/// reported as a mismatch). Nothing of it is held in memory whole.
fn read_deb(
    spec: &Spec,
    d: &DebSpec,
    spool: &Spool,
) -> Result<(Deb, Vec<Stored>, String), BuildError> {
    // Opened without blocking and refused unless a regular file (a FIFO or
    // a device named as a package fails at once); read no further than the
    // size it had when opened.
    let (file, len) = open_regular(&d.path, Follow::Yes)
        .map_err(|e| deb_err(spec, d, format!("cannot read: {e}")))?;
    let mut r = HashingReader {
        inner: io::BufReader::with_capacity(256 << 10, file.take(len)),
        h: sha2::Sha256::new(),
    };
    let mut sink = SpoolWriter::new(spool).map_err(|e| deb_err(spec, d, format!("spool: {e}")))?;
    let parsed = Deb::read(&mut r, Some(len), Limits::default(), &mut sink);
    // Hash what was not read (after an error), bounded by the length at open.
    let drained = io::copy(&mut r, &mut io::sink());
    let actual = hex::encode(r.h.finalize());
    if actual != d.sha256 {
        return Err(deb_err(
            spec,
            d,
            format!(
                "sha256 mismatch: the file hashes to {actual}, the spec pins {}",
                d.sha256
            ),
        ));
    }
    drained.map_err(|e| deb_err(spec, d, format!("cannot read: {e}")))?;
    let deb = parsed.map_err(|e| deb_err(spec, d, e.to_string()))?;
    Ok((deb, sink.stored, actual))
}

/// One `.deb` read: its metadata, where its files are in its spool, its
/// SHA-256 (hex), and the spool.
type Read1 = (Deb, Vec<Stored>, String, Arc<Spool>);

/// Read every `.deb` of the spec, a few at a time (decompressing the data
/// archives is most of a warm build), each into a spool file of its own;
/// results in spec order, and the first failure in spec order is the error
/// whatever finished first.
fn read_all(spec: &Spec, spool_dir: &Path) -> Result<Vec<Read1>, BuildError> {
    let n = spec.debs.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, 4)
        .min(n.max(1));
    let next = AtomicUsize::new(0);
    let read_one = |d: &DebSpec| -> Result<Read1, BuildError> {
        let spool = Arc::new(Spool::new(spool_dir).map_err(|e| BuildError::io(spool_dir, e))?);
        let (deb, stored, actual) = read_deb(spec, d, &spool)?;
        Ok((deb, stored, actual, spool))
    };
    let mut done: Vec<(usize, Result<Read1, BuildError>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(d) = spec.debs.get(i) else { break };
                        out.push((i, read_one(d)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join().unwrap_or_else(|_| {
                    vec![(
                        0,
                        Err(BuildError::Internal("a .deb reader panicked".into())),
                    )]
                })
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Build the packages layer over `lower` (whose dpkg status, if any, is
/// `base_status`). Returns `None` when the spec has no debs.
pub fn build(
    spec: &Spec,
    lower: &dyn tree::Lookup,
    base_status: Option<&[u8]>,
    spool_dir: &Path,
) -> Result<Option<PackagesLayer>, BuildError> {
    if spec.debs.is_empty() {
        return Ok(None);
    }
    let mut layer = Tree::new();
    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut installed = Vec::new();
    let mut names = BTreeSet::new();
    let mut postinsts = BTreeMap::new();
    if spec.system.merged_usr {
        system::usr::add_merged_usr(&mut layer, lower, &spec.arch);
    }
    for (d, read) in spec.debs.iter().zip(read_all(spec, spool_dir)?) {
        let (deb, stored, actual, spool) = read;
        let name = deb.name().to_string();
        if !names.insert(name.clone()) {
            return Err(deb_err(spec, d, format!("package {name} is listed twice")));
        }
        if let Some(p) = deb.control_files.get("postinst") {
            postinsts.insert(name.clone(), p.clone());
        }
        let mut owned = Vec::new();
        for e in &deb.data {
            let fs = Over(&layer, lower);
            let path = resolve_entry(&fs, &e.path, e.kind == EntryKind::Dir)
                .map_err(|m| deb_err(spec, d, m.to_string()))?;
            let origin = Origin::Package(name.clone());
            let node = match &e.kind {
                EntryKind::Dir => Node::dir(e.mode, e.uid, e.gid, origin),
                EntryKind::File(f) => {
                    let st = usize::try_from(f.handle)
                        .ok()
                        .and_then(|i| stored.get(i))
                        .ok_or_else(|| {
                            BuildError::Internal(format!("{}: no spooled contents", e.path))
                        })?;
                    Node {
                        kind: EntryType::File,
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                        size: st.size,
                        sha256: Some(st.sha256),
                        sha1: Some(st.sha1),
                        link: None,
                        origin,
                        content: Content::Spool(Arc::clone(&spool), st.offset),
                    }
                }
                EntryKind::Symlink(t) => Node {
                    kind: EntryType::Symlink,
                    mode: 0o777,
                    uid: e.uid,
                    gid: e.gid,
                    size: 0,
                    sha256: None,
                    sha1: None,
                    link: Some(t.clone()),
                    origin,
                    content: Content::None,
                },
                EntryKind::Hardlink(t) => {
                    let t = resolve_entry(&fs, t, false)
                        .map_err(|m| deb_err(spec, d, m.to_string()))?;
                    let target = layer
                        .get(&t)
                        .filter(|n| n.kind == EntryType::File)
                        .ok_or_else(|| {
                            deb_err(
                                spec,
                                d,
                                format!("{}: hard link to {t}, not a file of the package", e.path),
                            )
                        })?;
                    Node {
                        kind: EntryType::Hardlink,
                        mode: target.mode,
                        uid: target.uid,
                        gid: target.gid,
                        size: target.size,
                        sha256: target.sha256,
                        sha1: target.sha1,
                        link: Some(t.clone()),
                        origin,
                        content: Content::None,
                    }
                }
            };
            if let Some(old) = layer.get(&path) {
                if old.kind == EntryType::Dir && node.kind == EntryType::Dir {
                    continue;
                }
                let owner = match &old.origin {
                    Origin::Package(p) => p.clone(),
                    _ => "another input".into(),
                };
                let at = if path == e.path {
                    path.clone()
                } else {
                    format!("{} (at {path})", e.path)
                };
                return Err(deb_err(
                    spec,
                    d,
                    format!("{name} ships {at}, which {owner} already ships"),
                ));
            }
            if node.kind != EntryType::Dir {
                owned.push(path.clone());
            }
            layer.insert(path, node);
        }
        // The dpkg database entries of this package (what dpkg writes under
        // /var/lib/dpkg/info: .list, .md5sums, .conffiles, scripts, ...).
        for (file, content, mode) in deb.info_files() {
            layer.insert(
                format!("/var/lib/dpkg/info/{file}"),
                Node::bytes(content, mode, 0, 0, Origin::Package(name.clone())),
            );
        }
        stanzas.push(deb.status_stanza());
        let (source_name, source_version) = deb.source();
        let get = |k: &str| deb.control.get(k).map(str::to_string);
        installed.push(Package {
            name: name.clone(),
            version: deb.version().to_string(),
            architecture: deb.architecture().to_string(),
            source_name,
            source_version,
            maintainer: get("Maintainer"),
            homepage: get("Homepage"),
            summary: deb
                .control
                .get("Description")
                .and_then(|s| s.lines().next())
                .map(str::to_string),
            distro: d.distro.clone(),
            origin: PackageOrigin::Deb { sha256: actual },
            files: owned,
            maintainer_scripts_not_run: deb
                .maintainer_scripts()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            done_by_kiln: Vec::new(),
        });
    }
    // What the maintainer scripts would have made: accounts, the CA bundle,
    // alternatives.
    let notes = system::apply(
        &spec.system,
        &mut layer,
        lower,
        &system::Installed {
            names: &names,
            postinsts: &postinsts,
        },
    )?;
    for p in &mut installed {
        if let Some(n) = notes.get(&p.name) {
            p.done_by_kiln = n.clone();
        }
    }
    // Keep the base's installed packages (minus those replaced here).
    if let Some(st) = base_status {
        let text = String::from_utf8_lossy(st);
        let base = kiln_deb::parse_stanzas(&text).map_err(|e| BuildError::Base {
            base: "dpkg status".into(),
            message: format!("/var/lib/dpkg/status: {e}"),
        })?;
        stanzas.extend(
            base.into_iter()
                .filter(|s| !s.get("Package").is_some_and(|p| names.contains(p))),
        );
    }
    // The info database's format: 1 names the files of `Multi-Arch: same`
    // packages `<pkg>:<arch>.*`, as kiln_deb does; without this file dpkg
    // reads the database as format 0 and finds none of them.
    if lower.node("/var/lib/dpkg/info/format").is_none() {
        layer.insert(
            "/var/lib/dpkg/info/format".into(),
            Node::bytes(b"1\n".to_vec(), 0o644, 0, 0, Origin::Spec),
        );
    }
    stanzas.sort_by(|a, b| {
        (a.get("Package"), a.get("Architecture")).cmp(&(b.get("Package"), b.get("Architecture")))
    });
    layer.insert(
        "/var/lib/dpkg/status".into(),
        Node::bytes(
            kiln_deb::render_status(&stanzas).into_bytes(),
            0o644,
            0,
            0,
            Origin::Spec,
        ),
    );
    tree::add_parents(&mut layer, lower);
    Ok(Some(PackagesLayer {
        tree: layer,
        installed,
    }))
}

/// Packages recorded as installed in a base image's dpkg status.
pub fn base_packages(status: &[u8], replaced: &BTreeSet<String>) -> Vec<Package> {
    let text = String::from_utf8_lossy(status);
    let Ok(stanzas) = kiln_deb::parse_stanzas(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in stanzas {
        let (Some(name), Some(version)) = (s.get("Package"), s.get("Version")) else {
            continue;
        };
        if replaced.contains(name) || !s.get("Status").is_some_and(|st| st.ends_with(" installed"))
        {
            continue;
        }
        let (source_name, source_version) = match s.get("Source") {
            Some(src) => match src.split_once(" (") {
                Some((n, v)) => (
                    n.trim().to_string(),
                    v.trim_end_matches(')').trim().to_string(),
                ),
                None => (src.trim().to_string(), version.to_string()),
            },
            None => (name.to_string(), version.to_string()),
        };
        out.push(Package {
            name: name.to_string(),
            version: version.to_string(),
            architecture: s.get("Architecture").unwrap_or("all").to_string(),
            source_name,
            source_version,
            maintainer: s.get("Maintainer").map(str::to_string),
            homepage: s.get("Homepage").map(str::to_string),
            summary: s
                .get("Description")
                .and_then(|d| d.lines().next())
                .map(str::to_string),
            distro: None,
            origin: PackageOrigin::Base,
            files: Vec::new(),
            maintainer_scripts_not_run: Vec::new(),
            done_by_kiln: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn link(t: &str) -> Node {
        Node::symlink(t, Origin::Base)
    }

    fn dir() -> Node {
        Node::dir(0o755, 0, 0, Origin::Base)
    }

    fn usrmerge() -> Tree {
        let mut t = Tree::new();
        for d in [
            "/usr",
            "/usr/bin",
            "/usr/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/etc",
        ] {
            t.insert(d.into(), dir());
        }
        t.insert("/bin".into(), link("usr/bin"));
        t.insert("/lib".into(), link("usr/lib"));
        t.insert("/lib64".into(), link("/usr/lib64"));
        t.insert("/sbin".into(), link("usr/sbin"));
        t.insert("/chain".into(), link("bin"));
        t.insert("/conf".into(), link("etc/passwd"));
        t
    }

    #[test]
    fn directories_follow_symlinks_to_directories() {
        let t = usrmerge();
        let r = |p, d| resolve_entry(&t, p, d).unwrap();
        // The link survives: the directory entry resolves through it.
        assert_eq!(r("/lib", true), "/usr/lib");
        assert_eq!(r("/bin", true), "/usr/bin");
        assert_eq!(r("/chain", true), "/usr/bin");
        assert_eq!(
            r("/lib/x86_64-linux-gnu", true),
            "/usr/lib/x86_64-linux-gnu"
        );
        // Files go through the link.
        assert_eq!(
            r("/lib/x86_64-linux-gnu/libfoo.so", false),
            "/usr/lib/x86_64-linux-gnu/libfoo.so"
        );
        assert_eq!(r("/bin/foo", false), "/usr/bin/foo");
        // Dangling (no /usr/sbin, no /usr/lib64) or to a non-directory: replaced.
        assert_eq!(r("/sbin", true), "/sbin");
        assert_eq!(r("/lib64", true), "/lib64");
        assert_eq!(r("/conf", true), "/conf");
        // A non-directory replaces the link itself.
        assert_eq!(r("/lib", false), "/lib");
    }

    #[test]
    fn symlink_loops_are_errors() {
        let mut t = Tree::new();
        t.insert("/a".into(), link("b"));
        t.insert("/b".into(), link("a"));
        assert!(
            resolve_entry(&t, "/a", true)
                .unwrap_err()
                .to_string()
                .contains("too many levels")
        );
        assert!(
            resolve_entry(&t, "/a/x", false)
                .unwrap_err()
                .to_string()
                .contains("too many levels")
        );
    }

    fn arb_fs() -> impl Strategy<Value = Tree> {
        let target = prop_oneof![
            "(/?)([ab]|\\.\\.)(/([ab]|\\.\\.)){0,2}",
            Just("/".to_string()),
        ];
        proptest::collection::btree_map(
            "(/[ab]){1,3}",
            prop_oneof![Just(None), target.prop_map(Some)],
            0..10,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(p, t)| (p, t.map(|t| link(&t)).unwrap_or_else(dir)))
                .collect()
        })
    }

    proptest! {
        /// Whatever the links, a resolved path is absolute, normalised,
        /// has no symlink among its ancestors, and resolving it again
        /// changes nothing; a directory never resolves to a link that leads
        /// to a directory; with no links, nothing moves.
        #[test]
        fn resolution_properties(fs in arb_fs(), path in "(/[ab]){1,4}", is_dir in any::<bool>()) {
            let Ok(r) = resolve_entry(&fs, &path, is_dir) else { return Ok(()); };
            prop_assert!(r.starts_with('/'));
            prop_assert!(!r[1..].split('/').any(|c| c.is_empty() || c == "." || c == ".."), "{}", r);
            let mut a = tree::parent(&r);
            while let Some(x) = a {
                prop_assert!(fs.get(x).is_none_or(|n| n.kind != EntryType::Symlink), "{} under link {}", r, x);
                a = tree::parent(x);
            }
            // (For a directory this also means it is not a link to one.)
            let again = resolve_entry(&fs, &r, is_dir);
            prop_assert_eq!(again.as_ref(), Ok(&r));
            if fs.values().all(|n| n.kind != EntryType::Symlink) {
                prop_assert_eq!(&r, &path);
            }
        }
    }
}
