//! The inputs of a build, as in-toto ResourceDescriptors need them (SLSA
//! `resolvedDependencies`).
//!
//! Every input carries a URI and an in-toto DigestSet whose algorithms are the
//! ones the in-toto attestation spec defines (`spec/v1/digest_set.md`):
//!
//! * `sha256` only over well-defined bytes: a file, a `.deb`, the spec, the lock
//!   file, a base image's manifest.
//! * `dirHash` for a directory: Go's `golang.org/x/mod/sumdb/dirhash` Hash1 in
//!   lowercase hex, i.e. the SHA-256 of the lines `<sha256 hex>  <path>\n` of the
//!   directory's regular files (hard links included, symlinks and empty
//!   directories not), paths relative to the directory, sorted bytewise. The same
//!   value as `find . -type f | cut -c3- | LC_ALL=C sort | xargs -r sha256sum |
//!   sha256sum` run in the source directory. Hash1 is undefined for file names
//!   containing a newline (Go refuses them) and GNU `sha256sum` escapes names
//!   containing a backslash, so for such a directory no digest is given and the
//!   description says why; the image layer's own digest still covers it.
//! * a symlink source is recorded by `content` (its target, verbatim).
//!
//! How layers are compressed is not an input (it is no artifact): provenance
//! records it under `internalParameters`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;
use sha2::Digest as _;

use crate::spec::{FileSpec, Spec};
use crate::tarw::EntryType;
use crate::tree::{Content, Lookup, Tree};

/// in-toto DigestSet key of a directory digest (see the module docs).
pub const DIR_HASH: &str = "dirHash";

/// One input of a build: `kind` (spec, lock, repository, package, base, file, directory,
/// symlink, deb), a URI
/// and an in-toto DigestSet. At least one of `digest` and `content` is set, except for a
/// directory whose names `dirHash` cannot encode (then `description` says so).
#[derive(Clone, Debug, Serialize)]
pub struct BuildInput {
    pub kind: String,
    pub uri: String,
    /// Algorithm → lowercase hex (`sha256`, or `dirHash` for a directory).
    pub digest: BTreeMap<String, String>,
    /// The input's bytes, when they are the input itself (a symlink's target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<u8>>,
    /// Extra facts about the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl BuildInput {
    fn sha256(kind: &str, uri: String, hex: String) -> BuildInput {
        BuildInput {
            kind: kind.into(),
            uri,
            digest: BTreeMap::from([("sha256".to_owned(), hex)]),
            content: None,
            description: None,
        }
    }
}

/// in-toto `dirHash` (Go dirhash Hash1, hex) of `(relative path, sha256)` pairs, which must
/// come sorted bytewise by path. `None` when a path has a newline or a backslash (see the
/// module docs).
pub fn dir_hash<'a>(files: impl IntoIterator<Item = (&'a str, [u8; 32])>) -> Option<String> {
    let mut h = sha2::Sha256::new();
    for (path, sha) in files {
        if path.contains(['\n', '\\']) {
            return None;
        }
        h.update(format!("{}  {path}\n", hex::encode(sha)).as_bytes());
    }
    Some(hex::encode(h.finalize()))
}

/// A spec-relative path for URIs (falls back to the path as given).
fn relative(spec: &Spec, p: &Path) -> String {
    p.strip_prefix(&spec.dir)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The inputs of a build, from the spec, the hashed files layer tree, the layers beneath
/// it (`lower`, for where `[[files]]` landed) and the base (its name and manifest digest).
pub(crate) fn build_inputs(
    spec: &Spec,
    files_tree: &Tree,
    lower: &dyn Lookup,
    base: Option<(&str, &kiln_oci::Digest)>,
) -> Vec<BuildInput> {
    let spec_name = spec
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| relative(spec, &spec.path));
    let mut out = vec![BuildInput::sha256(
        "spec",
        format!("file:{spec_name}"),
        spec.sha256.clone(),
    )];
    if let Some(sha) = &spec.lock_sha256 {
        let mut lock = BuildInput::sha256(
            "lock",
            format!("file:{}", crate::lock::LOCK_FILE),
            sha.clone(),
        );
        lock.description = Some(match &spec.packages {
            Some(_) => "the resolved package closure (and any kiln patch pins)".into(),
            None => "package pins written by kiln patch".into(),
        });
        out.push(lock);
    }
    if let (Some(_), Some(lock)) = (&spec.packages, &spec.lock) {
        // Each suite by its verified InRelease, each package by its download.
        for r in &lock.repositories {
            let mut i = BuildInput::sha256(
                "repository",
                format!("{}/dists/{}/InRelease", r.url, r.suite),
                r.inrelease_sha256.clone(),
            );
            i.description = Some(format!("signed by {}", r.signing_key));
            out.push(i);
        }
        for p in &lock.packages {
            let mut i = BuildInput::sha256("package", p.url.clone(), p.sha256.clone());
            i.description = Some(format!("{} {} {}", p.name, p.version, p.architecture));
            out.push(i);
        }
    }
    if let Some((name, d)) = base {
        out.push(BuildInput::sha256("base", format!("oci:{name}"), d.hex()));
    }
    for f in &spec.files {
        out.push(files_input(spec, f, files_tree, lower));
    }
    for d in spec.debs.iter().filter(|d| d.from.is_none()) {
        out.push(BuildInput::sha256(
            "deb",
            format!("file:{}", relative(spec, &d.path)),
            d.sha256.clone(),
        ));
    }
    out
}

/// Where `[[files]]` entry `f` landed in the layer: its `dst` (plus the source's file name
/// when `dst` ends in `/`), with parent directories resolved through the symlinks of the
/// layers beneath, exactly as [`crate::source::collect`] placed it.
fn landed_at(f: &FileSpec, lower: &dyn Lookup) -> Option<String> {
    let dst = if f.dst.ends_with('/') {
        format!("{}{}", f.dst, f.src.file_name()?.to_str()?)
    } else {
        f.dst.clone()
    };
    crate::tree::resolve_parents(lower, &dst).ok()
}

/// The input of one `[[files]]` entry, read from the layer tree (never from the host again):
/// the node where the entry landed, and for a directory the regular files and hard links
/// under it whose bytes came from under the entry's source (so another `[[files]]` entry
/// nested inside it is not counted).
fn files_input(spec: &Spec, f: &FileSpec, files_tree: &Tree, lower: &dyn Lookup) -> BuildInput {
    let uri = format!("file:{}", relative(spec, &f.src));
    let mut input = BuildInput {
        kind: "directory".into(),
        uri,
        digest: BTreeMap::new(),
        content: None,
        description: None,
    };
    let Some((top, node)) = landed_at(f, lower).and_then(|p| files_tree.get_key_value(&p)) else {
        input.kind = "file".into();
        input.description = Some("no digest: not found in the files layer".into());
        return input;
    };
    match node.kind {
        EntryType::File | EntryType::Hardlink => {
            input.kind = "file".into();
            match node.sha256 {
                Some(sha) => {
                    input.digest.insert("sha256".into(), hex::encode(sha));
                }
                None => input.description = Some("no digest: the file was not hashed".into()),
            }
            return input;
        }
        EntryType::Symlink => {
            input.kind = "symlink".into();
            input.content = Some(node.link.clone().unwrap_or_default().into_bytes());
            input.description = Some("a symbolic link; content is its target".into());
            return input;
        }
        EntryType::Dir => {}
    }
    let prefix = format!("{}/", top.trim_end_matches('/'));
    let mut members: Vec<(&str, [u8; 32])> = Vec::new();
    for (path, n) in files_tree.range(prefix.clone()..) {
        let Some(rel) = path.strip_prefix(prefix.as_str()) else {
            break;
        };
        let Some(sha) = n.sha256 else { continue };
        // A regular file: read from exactly `src/rel`. A hard link keeps no host path (its
        // group's first path carries the bytes, maybe from another entry): `src/rel` must be
        // that same inode.
        let member = match (n.kind, &n.content) {
            (EntryType::File, Content::Host(h, _)) => h.as_path() == f.src.join(rel),
            (EntryType::File, _) => false,
            (EntryType::Hardlink, _) => {
                let leader = n.link.as_deref().and_then(|t| files_tree.get(t));
                match leader.map(|t| &t.content) {
                    Some(Content::Host(_, key)) => std::fs::symlink_metadata(f.src.join(rel))
                        .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == (key.dev, key.ino)),
                    _ => false,
                }
            }
            _ => false,
        };
        if member {
            members.push((rel, sha));
        }
    }
    match dir_hash(members) {
        Some(h) => {
            input.digest.insert(DIR_HASH.to_owned(), h);
        }
        None => {
            input.description = Some(
                "no digest: a file name contains a newline or a backslash, which the in-toto \
                 dirHash cannot encode"
                    .into(),
            )
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> [u8; 32] {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).unwrap();
        b
    }

    /// The worked example of in-toto's spec/v1/digest_set.md (`go-hello-world@v0.0.1`,
    /// whose Go module sum is `h1:Khu2En+0gcYPZ2kuIihfswbzxv/mIHXgzPZ018Oty48=`).
    #[test]
    fn dir_hash_matches_the_in_toto_example() {
        let files = [
            (
                "github.com/marklodato/go-hello-world@v0.0.1/README.md",
                "3a137eef6458bfb76bb2c63fc29ffc7166604d2d2e09ed9d8250a534122a8364",
            ),
            (
                "github.com/marklodato/go-hello-world@v0.0.1/go.mod",
                "28e7c942a036902d981759d0bf5704d2bfc7cb500caf68b84711b234af01c6a5",
            ),
            (
                "github.com/marklodato/go-hello-world@v0.0.1/main.go",
                "ddc4da627d9a9f45fb29641a1b185d6f53287ecfd921aacbf4fe54b7a86fe8d1",
            ),
        ];
        assert_eq!(
            dir_hash(files.iter().map(|(p, h)| (*p, unhex(h)))).unwrap(),
            "2a1bb6127fb481c60f67692e22285fb306f3c6ffe62075e0ccf674d7c3adcb8f"
        );
        // No files: the SHA-256 of nothing.
        assert_eq!(
            dir_hash([]).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn dir_hash_is_undefined_for_newlines_and_backslashes() {
        for bad in ["a\nb", "a\\b", "\n"] {
            assert_eq!(dir_hash([("ok", [0; 32]), (bad, [1; 32])]), None, "{bad:?}");
        }
    }
}
