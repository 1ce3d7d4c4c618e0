//! What a Debian system needs beyond unpacked packages when maintainer
//! scripts are never run (the distroless approach): the merged-/usr links,
//! accounts, the CA bundle and `update-alternatives` links, made the way the
//! packages' scripts would make them.
//!
//! The spec's `[[accounts]]` and `[[ca_certificates]]` arrive here as
//! [`System`]; the packages layer ([`crate::debs::build`]) applies it:
//! [`usr::add_merged_usr`] before unpacking, then [`apply`] once every
//! package is unpacked. Each step is in its own module: [`usr`] (the
//! merged-/usr links), [`accounts`] (`/etc/passwd`, `group`, `shadow`,
//! `gshadow`), [`certs`] (`/etc/ssl/certs/ca-certificates.crt`) and
//! [`alternatives`] (`update-alternatives --install` from postinsts).
//! What was done in a script's place is returned per package as notes
//! (`kiln: ...`), recorded next to the scripts not run.

pub mod accounts;
pub mod alternatives;
pub mod certs;
pub mod usr;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::tarw::EntryType;
use crate::tree::{self, Content, Node, Tree};

/// One `[[accounts]]` entry: a system account added after base-passwd's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Created (owned `uid:gid`, 0755) when given; `/nonexistent` otherwise.
    pub home: Option<String>,
    /// Default `/usr/sbin/nologin`.
    pub shell: Option<String>,
}

/// One `[[ca_certificates]]` entry: a PEM file appended to the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraCa {
    /// Absolute host path, inside the spec directory.
    pub src: PathBuf,
    /// As written in the spec.
    pub src_text: String,
}

/// The system settings of a spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct System {
    /// Create `/bin`, `/sbin`, `/lib`, `/lib64` as links into `/usr`
    /// before unpacking (set when packages come from repositories).
    pub merged_usr: bool,
    pub accounts: Vec<Account>,
    pub ca_certificates: Vec<ExtraCa>,
}

/// Why the system could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("accounts[{index}] ({name}): {message}")]
    Account {
        index: usize,
        name: String,
        message: String,
    },
    #[error(
        "[[accounts]] need the base-passwd package installed by this build (its /usr/share/base-passwd/*.master give the system accounts)"
    )]
    NoBasePasswd,
    #[error("{path}: {message}")]
    Generated { path: String, message: String },
    #[error("ca_certificates[{index}] {src}: {message}")]
    Ca {
        index: usize,
        src: String,
        message: String,
    },
    #[error("ca_certificates[{index}] {src}: cannot read: {source}")]
    CaIo {
        index: usize,
        src: String,
        #[source]
        source: std::io::Error,
    },
    #[error("[[ca_certificates]] need the ca-certificates package installed by this build")]
    NoCaCertificates,
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Loop(#[from] tree::SymlinkLoop),
}

/// What the packages layer knows when [`apply`] runs.
pub struct Installed<'a> {
    /// Packages unpacked by this layer, by name.
    pub names: &'a BTreeSet<String>,
    /// Each unpacked package's `postinst`, by package name.
    pub postinsts: &'a BTreeMap<String, Vec<u8>>,
}

/// What kiln did in place of maintainer scripts, per package
/// (`kiln: generated /etc/passwd ...`), and what it could not.
pub type Notes = BTreeMap<String, Vec<String>>;

/// Make the system files in `layer` (the packages unpacked over `lower`):
/// accounts, the CA bundle, then alternatives (last, so that they never
/// replace a file generated here).
pub fn apply(
    system: &System,
    layer: &mut Tree,
    lower: &dyn tree::Lookup,
    installed: &Installed<'_>,
) -> Result<Notes, SystemError> {
    let mut notes = Notes::new();
    accounts::apply(&system.accounts, layer, lower, installed, &mut notes)?;
    certs::apply(&system.ca_certificates, layer, lower, installed, &mut notes)?;
    alternatives::apply(layer, lower, installed, &mut notes)?;
    Ok(notes)
}

/// The packages unpacked so far over the lower layers: the upper entry of a
/// path wins, and a non-directory in it hides what is beneath in `lower`.
pub(crate) struct Over<'a>(pub &'a Tree, pub &'a dyn tree::Lookup);

impl tree::Lookup for Over<'_> {
    fn node(&self, path: &str) -> Option<&Node> {
        if let Some(n) = self.0.get(path) {
            return Some(n);
        }
        let mut a = tree::parent(path);
        while let Some(x) = a {
            if self.0.get(x).is_some_and(|n| n.kind != EntryType::Dir) {
                return None;
            }
            a = tree::parent(x);
        }
        self.1.node(path)
    }
}

/// The bytes of a regular file of the packages layer, at most `limit`.
pub(crate) fn read_node(path: &str, n: &Node, limit: u64) -> Result<Vec<u8>, SystemError> {
    let err = |message: String| SystemError::Generated {
        path: path.to_string(),
        message,
    };
    if n.kind != EntryType::File {
        return Err(err("not a regular file".into()));
    }
    if n.size > limit {
        return Err(err(format!("{} bytes, more than {limit}", n.size)));
    }
    match &n.content {
        Content::Bytes(b) => Ok(b.as_ref().clone()),
        Content::Spool(spool, offset) => {
            let len = usize::try_from(n.size).map_err(|_| err("too large".into()))?;
            let mut buf = vec![0u8; len];
            spool
                .read_at(*offset, &mut buf)
                .map_err(|source| SystemError::Read {
                    path: path.to_string(),
                    source,
                })?;
            Ok(buf)
        }
        Content::None | Content::Host(..) => Err(err("contents not available here".into())),
    }
}

/// A symlink node made by kiln.
pub(crate) fn symlink(target: &str) -> Node {
    Node::symlink(target, tree::Origin::Spec)
}

/// An absolute path with no empty, `.` or `..` component and no NUL or
/// newline: what kiln writes as an image path from untrusted text.
pub(crate) fn is_clean_abs(p: &str) -> bool {
    p.len() > 1
        && p.len() <= 4096
        && p.starts_with('/')
        && !p.contains(['\0', '\n'])
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod mirror_tests;

fn note(notes: &mut Notes, pkg: &str, text: String) {
    notes.entry(pkg.to_string()).or_default().push(text);
}
