//! The image inventory and its three serialisations.
//!
//! An [`Inventory`] records what ended up in an image: the image itself, the
//! Debian packages installed in it and every path of its final root
//! filesystem. From it this crate writes
//!
//! * an SPDX 2.3 JSON document ([`spdx_json`]),
//! * a CycloneDX 1.5 JSON BOM ([`cyclonedx_json`]),
//! * the kiln file manifest ([`file_manifest_json`]), the baseline a drift
//!   detector compares running instances against; [`FileManifest::parse`]
//!   reads it back strictly.
//!
//! Every writer is byte-deterministic: the same inventory gives the same
//! bytes. Nothing reads a clock, draws random numbers or iterates a hash map;
//! identifiers (SPDX IDs, the CycloneDX serial number, the SPDX document
//! namespace) are derived from the inventory. Output is pretty JSON with a
//! 2-space indent, keys in a fixed order and a trailing newline.
//!
//! The writers accept any inventory and never panic, but only a valid one
//! (see [`Inventory::validate`]) is guaranteed to produce documents that pass
//! the SPDX and CycloneDX validators.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cyclonedx;
mod error;
mod json;
mod manifest;
mod owners;
pub mod purl;
mod spdx;
mod summary;
mod util;

pub use cyclonedx::cyclonedx_json;
pub use error::SbomError;
pub use manifest::{
    FILE_MANIFEST_SCHEMA, FileManifest, ManifestEntry, ManifestSubject, file_manifest_json,
};
pub use spdx::spdx_json;
pub use summary::{SbomFormat, Summary, summarize};

/// Media type of an SPDX JSON document.
pub const MEDIA_TYPE_SPDX: &str = "application/spdx+json";
/// Media type of a CycloneDX JSON BOM.
pub const MEDIA_TYPE_CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// Media type of the kiln file manifest.
pub const MEDIA_TYPE_FILE_MANIFEST: &str = "application/vnd.kiln.file-manifest.v1+json";

/// Everything kiln knows about what is inside one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The image the inventory describes.
    pub image: ImageSubject,
    /// The tool that built it.
    pub tool: ToolInfo,
    /// Debian packages installed in the image, from `.deb` inputs and from the
    /// base image's dpkg status.
    pub packages: Vec<Package>,
    /// Every path of the final root filesystem, sorted by path (byte order,
    /// which puts parents before children), each path once.
    pub files: Vec<FileRecord>,
}

/// The image an inventory is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSubject {
    /// Repository name, e.g. `hello` or `ghcr.io/acme/hello`.
    pub name: String,
    /// Tag, e.g. `1.0.0`.
    pub tag: String,
    /// Digest of the image manifest, `sha256:<64 lowercase hex>`.
    pub digest: String,
    /// Creation time, RFC 3339, e.g. `1970-01-01T00:00:00Z`.
    pub created: String,
    /// OCI architecture, e.g. `amd64`.
    pub architecture: String,
    /// OCI operating system, e.g. `linux`.
    pub os: String,
}

/// The tool that produced the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    /// Tool name, `kiln`.
    pub name: String,
    /// Tool version.
    pub version: String,
}

/// One installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Binary package name.
    pub name: String,
    /// Version, `[epoch:]upstream[-revision]`.
    pub version: String,
    /// Debian architecture, e.g. `amd64` or `all`.
    pub architecture: String,
    /// Source package name (dpkg `Source:`, defaulting to the binary name).
    pub source_name: String,
    /// Source package version (the parenthesised version in `Source:`,
    /// defaulting to `version`).
    pub source_version: String,
    /// `Maintainer:` field, e.g. `Jane Doe <jane@example.org>`.
    pub maintainer: Option<String>,
    /// `Homepage:` field.
    pub homepage: Option<String>,
    /// First line of `Description:`.
    pub summary: Option<String>,
    /// Distribution codename (`bookworm`), used as the purl `distro` qualifier.
    pub distro: Option<String>,
    /// Where the package came from.
    pub origin: PackageOrigin,
    /// Absolute paths the package owns (its dpkg file list).
    pub files: Vec<String>,
    /// Maintainer scripts the package ships that kiln did not run
    /// (`preinst`, `postinst`, ...).
    pub maintainer_scripts_not_run: Vec<String>,
    /// What kiln did in the scripts' place (`kiln: generated /etc/passwd
    /// ...`, `kiln: alternatives awk -> /usr/bin/mawk ...`) and what it could
    /// not (`kiln: not done: ...`).
    pub done_by_kiln: Vec<String>,
}

/// Where a package came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageOrigin {
    /// Installed by kiln from a `.deb` file.
    Deb {
        /// Lowercase hex SHA-256 of the `.deb` file.
        sha256: String,
    },
    /// Already installed in the base image (from its dpkg status).
    Base,
}

/// One path of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Absolute, normalised path, e.g. `/bin/busybox`; the root is `/`.
    pub path: String,
    /// What kind of entry it is.
    pub kind: FileKind,
    /// Permission bits (`0o7777` at most: rwx plus setuid, setgid, sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes of the content (regular files and hard links).
    pub size: u64,
    /// Lowercase hex SHA-256 of the content; regular files and hard links only.
    pub sha256: Option<String>,
    /// Lowercase hex SHA-1 of the content (SPDX requires it); regular files
    /// and hard links only.
    pub sha1: Option<String>,
    /// Symlink target (as written), or the absolute path a hard link points to.
    pub link: Option<String>,
    /// Which input put the entry there.
    pub origin: FileOrigin,
}

/// Kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to another regular file of the image.
    Hardlink,
}

impl FileKind {
    /// The name used in the file manifest: `file`, `dir`, `symlink`, `hardlink`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Hardlink => "hardlink",
        }
    }

    /// Inverse of [`FileKind::as_str`].
    pub fn from_name(name: &str) -> Option<FileKind> {
        match name {
            "file" => Some(FileKind::File),
            "dir" => Some(FileKind::Dir),
            "symlink" => Some(FileKind::Symlink),
            "hardlink" => Some(FileKind::Hardlink),
            _ => None,
        }
    }

    /// Whether the entry has content of its own (regular file or hard link).
    pub fn has_content(self) -> bool {
        matches!(self, FileKind::File | FileKind::Hardlink)
    }
}

/// Which input put a path into the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileOrigin {
    /// The base image.
    Base,
    /// The named package (installed by kiln).
    Package(String),
    /// The image spec (files, directories and links it declares).
    Spec,
}

impl Package {
    /// The source package `(name, version)`, each defaulting to the binary
    /// package's when empty (as dpkg does when `Source:` is absent or has no
    /// version in parentheses). Vulnerability data is keyed by these.
    pub fn source(&self) -> (&str, &str) {
        fn or<'a>(value: &'a str, default: &'a str) -> &'a str {
            let value = value.trim();
            if value.is_empty() { default } else { value }
        }
        (
            or(&self.source_name, &self.name),
            or(&self.source_version, &self.version),
        )
    }
}

impl Inventory {
    /// Checks the invariants the writers rely on: a `sha256:` image digest,
    /// an RFC 3339 creation time, absolute normalised file paths sorted and
    /// unique with their parent directories listed, valid modes, SHA-256 and
    /// SHA-1 on every regular file and hard link, link targets where needed,
    /// and packages that exist for every `FileOrigin::Package`.
    pub fn validate(&self) -> Result<(), SbomError> {
        let bad = |reason: String| Err(SbomError::Inventory(reason));
        if self.image.name.is_empty() {
            return bad("image name is empty".into());
        }
        if !util::is_sha256_digest(&self.image.digest) {
            return bad(format!(
                "image digest must be sha256:<64 lowercase hex>, got {:?}",
                self.image.digest
            ));
        }
        if util::normalize_created(&self.image.created).is_none() {
            return bad(format!(
                "image created time is not RFC 3339: {:?}",
                self.image.created
            ));
        }
        if self.tool.name.is_empty() {
            return bad("tool name is empty".into());
        }
        for (i, p) in self.packages.iter().enumerate() {
            if p.name.is_empty() {
                return bad(format!("package {i} has an empty name"));
            }
            if p.version.is_empty() {
                return bad(format!("package {i} ({}) has an empty version", p.name));
            }
            if let PackageOrigin::Deb { sha256 } = &p.origin
                && !util::is_lower_hex(sha256, 64)
            {
                return bad(format!(
                    "package {i} ({}): .deb sha256 must be 64 lowercase hex digits",
                    p.name
                ));
            }
            for f in &p.files {
                if let Err(why) = util::check_abs_path(f) {
                    return bad(format!("package {i} ({}) file {f:?}: {why}", p.name));
                }
            }
        }
        let package_names: std::collections::BTreeSet<&str> =
            self.packages.iter().map(|p| p.name.as_str()).collect();
        // The origin package most recently found (files of a package are
        // usually adjacent).
        let mut known_package: Option<&str> = None;
        // The first record breaking the SHA-1 and origin rules below. These
        // are checked in the same pass as the entry rules, but an entry-rule
        // error anywhere takes precedence, as if they were checked after.
        let mut first_bad: Option<SbomError> = None;
        let result = manifest::check_entries_and(&self.files, |index, f| {
            let problem = |reason: &str| SbomError::InventoryFile {
                index,
                path: Some(f.path.clone()),
                reason: reason.to_string(),
            };
            let error = match (&f.sha1, f.kind.has_content()) {
                (Some(h), true) if util::is_lower_hex(h, 40) => None,
                (Some(_), true) => Some(problem("sha1 must be 40 lowercase hex digits")),
                (None, true) => Some(problem("regular files and hard links need a sha1")),
                (Some(_), false) => Some(problem("only regular files and hard links have a sha1")),
                (None, false) => None,
            };
            let error = error.or_else(|| match &f.origin {
                FileOrigin::Package(name) if known_package != Some(name.as_str()) => {
                    if package_names.contains(name.as_str()) {
                        known_package = Some(name.as_str());
                        None
                    } else {
                        Some(problem(&format!(
                            "origin package {name:?} is not in the inventory"
                        )))
                    }
                }
                _ => None,
            });
            match error {
                Some(e) => {
                    first_bad = Some(e);
                    false
                }
                None => true,
            }
        });
        result.map_err(|p| SbomError::InventoryFile {
            index: p.index,
            path: p.path,
            reason: p.reason,
        })?;
        if let Some(e) = first_bad {
            return Err(e);
        }
        Ok(())
    }
}
