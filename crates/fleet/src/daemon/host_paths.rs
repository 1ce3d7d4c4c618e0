//! Names a daemon gives things outside its state directory: cgroups and the
//! tmpfs it keeps under `/run`. Each carries a tag derived from the state
//! directory, so two `kiln serve` daemons with different state directories on
//! one host never collide (runc roots and bundles are already inside the state
//! directory; network namespaces are anonymous, one per instance).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Twelve hex characters of the SHA-256 of the state directory's canonical
/// path (the path as given when it cannot be canonicalized).
pub(crate) fn state_tag(state_dir: &Path) -> String {
    let path = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

/// The cgroup path (relative to each controller's root, as runc's
/// `linux.cgroupsPath` takes it) of instance `id`.
pub(crate) fn cgroup_path(tag: &str, id: &str) -> String {
    format!("/kiln/{tag}/{id}")
}

/// The daemon's directory under `/run` (for memory-only files): a tmpfs, mounted by the
/// daemon itself when `/run` is not one.
pub(crate) fn run_dir(tag: &str) -> PathBuf {
    Path::new("/run/kiln").join(tag)
}

/// Instance `id`'s secret files (bind-mounted read-only at `/run/secrets`).
pub(crate) fn secrets_dir(tag: &str, id: &str) -> PathBuf {
    run_dir(tag).join("secrets").join(id)
}

/// The bundle of instance `id` when its `config.json` holds a secret (an `env = true` one).
pub(crate) fn tmpfs_bundle_dir(tag: &str, id: &str) -> PathBuf {
    run_dir(tag).join("bundles").join(id)
}

/// Where instance `id`'s bundle is: on the tmpfs if it is there, else in `bundles_dir`
/// (`<state>/fleet/instances`).
pub(crate) fn bundle_dir(bundles_dir: &Path, tag: &str, id: &str) -> PathBuf {
    let t = tmpfs_bundle_dir(tag, id);
    if t.is_dir() { t } else { bundles_dir.join(id) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_per_state_dir_and_are_stable() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (ta, tb) = (state_tag(a.path()), state_tag(b.path()));
        assert_ne!(ta, tb);
        assert_eq!(ta.len(), 12);
        assert_eq!(ta, state_tag(&a.path().join(".")));
        assert_eq!(cgroup_path(&ta, "web-0001"), format!("/kiln/{ta}/web-0001"));
        assert!(run_dir(&ta).starts_with("/run/kiln"));
        assert_eq!(
            secrets_dir(&ta, "web-0001"),
            run_dir(&ta).join("secrets/web-0001")
        );
        assert_eq!(
            bundle_dir(Path::new("/s/fleet/instances"), &ta, "web-0001"),
            Path::new("/s/fleet/instances/web-0001")
        );
    }
}
