//! kiln-runtime: the lowest layer of the immutable fleet (issue 5).
//!
//! It turns a verified image into a running, isolated, read-only instance
//! under real `runc`, and nothing more. The split follows youki's design: a
//! library of pure parts (safe unpacking, OCI runtime-spec generation) and a
//! narrow syscall/CLI seam ([`Runtime`]) that higher layers (the supervisor,
//! the front proxy) depend on and can fake in their tests.
//!
//! - [`unpack`]: once per manifest digest, every blob and diff_id verified,
//!   layers applied with OCI whiteouts, hostile tar input refused, atomically
//!   renamed into `root/<hex>/rootfs`, shared read-only by every instance.
//! - [`InstanceSpec`] and [`runtime_config`]: the `config.json` (read-only
//!   root, tmpfs `/tmp` and `/run` with size caps, no capabilities,
//!   `noNewPrivileges`, seccomp deny list, new pid/mount/ipc/uts/net/cgroup
//!   namespaces). [`Bundle::write`] puts it in a bundle directory.
//! - [`Runtime`] and [`Runc`]: start/kill/delete/state/list via the runc CLI.
//! - [`connect_in_netns`] and [`http_get_in_netns`]: sockets created inside an
//!   instance's network namespace (the only way in: the namespace has only `lo`).
//! - [`cgroup`]: where runc put an instance's cgroup (v1 or v2) and whether
//!   the kernel OOM-killed it.
//! - [`set_child_subreaper`] and [`try_reap`]: so a daemon becomes the parent
//!   of detached containers and can collect their exit status.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cgroup;
mod netns;
mod runc;
mod spec;
mod sys;
mod unpack;

use std::path::PathBuf;

pub use netns::{
    NetnsSockets, connect_in_netns, http_get_in_netns, http_get_in_netns_after, listen_in_netns,
    set_child_subreaper, try_reap,
};
pub use runc::{Runc, Runtime, State, Status};
pub use spec::{
    BindMount, Bundle, DEFAULT_PATH, InstanceSpec, User, resolve_user, runtime_config,
    seccomp_profile,
};
pub use unpack::{EntryPathError, Rootfs, normalize_path, unpack};

/// Errors from unpacking, spec generation and the runc driver.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: refusing tar entry {entry:?}: {reason}")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: corrupt tar: {reason}")]
    CorruptLayer { layer: String, reason: String },
    #[error("layer blob {digest} is corrupt: its content hashes to {actual}")]
    LayerDigestMismatch { digest: String, actual: String },
    #[error("layer blob {digest} has size {actual}, its descriptor says {expected}")]
    LayerSizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {index} ({digest}): uncompressed content hashes to {actual}, the config's diff_id is {expected}"
    )]
    DiffIdMismatch {
        index: usize,
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("invalid image {manifest}: {reason}")]
    BadImage { manifest: String, reason: String },
    #[error("unsupported layer media type {media_type} ({digest})")]
    UnsupportedLayer { digest: String, media_type: String },
    #[error("cannot resolve user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("invalid instance spec: {0}")]
    Spec(String),
    #[error("runc {op} {id}: {message}")]
    Runc {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("no instance {0}")]
    NoSuchInstance(String),
    #[error("preparing {id} before it starts: {source}")]
    Prepare {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("recording the inodes of {path}: {source}")]
    Inodes {
        path: PathBuf,
        #[source]
        source: kiln_drift::DriftError,
    },
}

impl RuntimeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.into(),
            source,
        }
    }
}
