//! The packages layer: `.deb` inputs verified against their pinned SHA-256,
//! unpacked (data.tar) and registered in the dpkg database inside the image
//! (`/var/lib/dpkg/status`, `info/<pkg>.list`, `.md5sums`, `.conffiles`),
//! so Debian tooling and scanners see them. Maintainer scripts are never
//! run; the SBOM records which ones a package has.

use std::collections::BTreeSet;

use kiln_deb::{Deb, EntryKind, Stanza};
use kiln_sbom::{Package, PackageOrigin};
use sha2::Digest as _;

use crate::BuildError;
use crate::spec::{DebSpec, Spec};
use crate::tarw::EntryType;
use crate::tree::{self, Content, Node, Origin, Tree};

/// The packages layer and the packages it installs.
pub struct PackagesLayer {
    pub tree: Tree,
    pub installed: Vec<Package>,
}

fn deb_err(spec: &Spec, d: &DebSpec, message: impl Into<String>) -> BuildError {
    BuildError::Deb {
        spec_loc: format!("{}:{}:{}", spec.path.display(), d.loc.line, d.loc.column),
        path: d.path.clone(),
        message: format!("debs[{}]: {}", d.index, message.into()),
    }
}

/// Build the packages layer over `lower` (whose dpkg status, if any, is
/// `base_status`). Returns `None` when the spec has no debs.
pub fn build(
    spec: &Spec,
    lower: &dyn tree::Lookup,
    base_status: Option<&[u8]>,
) -> Result<Option<PackagesLayer>, BuildError> {
    if spec.debs.is_empty() {
        return Ok(None);
    }
    let mut layer = Tree::new();
    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut installed = Vec::new();
    let mut names = BTreeSet::new();
    for d in &spec.debs {
        let bytes =
            std::fs::read(&d.path).map_err(|e| deb_err(spec, d, format!("cannot read: {e}")))?;
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
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
        let deb = Deb::parse(&bytes).map_err(|e| deb_err(spec, d, e.to_string()))?;
        let name = deb.name().to_string();
        if !names.insert(name.clone()) {
            return Err(deb_err(spec, d, format!("package {name} is listed twice")));
        }
        let mut owned = Vec::new();
        for e in &deb.data {
            let path = tree::resolve_parents(lower, &e.path).map_err(|m| deb_err(spec, d, m))?;
            let origin = Origin::Package(name.clone());
            let node = match &e.kind {
                EntryKind::Dir => Node::dir(e.mode, e.uid, e.gid, origin),
                EntryKind::File(data) => Node::bytes(data.clone(), e.mode, e.uid, e.gid, origin),
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
                    let t = tree::resolve_parents(lower, t).map_err(|m| deb_err(spec, d, m))?;
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
                return Err(deb_err(
                    spec,
                    d,
                    format!("{name} ships {path}, which {owner} already ships"),
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
            distro: None,
            origin: PackageOrigin::Deb { sha256: actual },
            files: owned,
            maintainer_scripts_not_run: deb
                .maintainer_scripts()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        });
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
        });
    }
    out
}
