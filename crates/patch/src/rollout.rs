//! The roll-out of a patch: services in a `deploy.toml` that run the spec's image are
//! moved to the fixed digest, and the file is applied through the daemon like
//! `kiln apply` does (same request, same wait for convergence).

use std::path::Path;
use std::time::Duration;

use kiln_fleet::Deployment;
use kiln_fleet::api::{self, Request};

use crate::Error;

/// How long the roll-out may take to converge (`kiln apply`'s default).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);

/// Point every `image = "NAME@sha256:…"` line of `deploy` at `image`, atomically.
pub(crate) fn update_deploy_file(deploy: &Path, name: &str, image: &str) -> Result<(), Error> {
    let text = kiln_oci::untrusted::read_small_string(deploy).map_err(|source| Error::Read {
        path: deploy.to_path_buf(),
        source,
    })?;
    let mut changed = false;
    let updated: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("image")
                && let Some((_, v)) = t.split_once('=')
                && v.trim()
                    .trim_matches('"')
                    .starts_with(&format!("{name}@sha256:"))
            {
                changed = true;
                return format!("image = \"{image}\"");
            }
            l.to_string()
        })
        .collect();
    if !changed {
        return Err(Error::NothingToRollOut {
            path: deploy.to_path_buf(),
            name: name.to_owned(),
        });
    }
    kiln_oci::layout::write_atomic(deploy, (updated.join("\n") + "\n").as_bytes())?;
    Ok(())
}

/// Apply `deploy` through the daemon of `state_dir` with `reason`, and wait until its
/// services converged.
pub(crate) fn apply(state_dir: &Path, deploy: &Path, reason: &str) -> Result<(), Error> {
    // Parsed here first: errors point at file:line:col before anything is sent.
    let d = Deployment::load(deploy)?;
    let path = std::fs::canonicalize(deploy).map_err(|source| Error::Resolving {
        path: deploy.to_path_buf(),
        source,
    })?;
    api::request(
        state_dir,
        &Request::Apply {
            path,
            reason: Some(reason.to_owned()),
        },
    )?;
    let names: Vec<String> = d.services.keys().cloned().collect();
    api::wait_converged(state_dir, &names, CONVERGE_TIMEOUT, |_, _| {})?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_services_on_the_specs_image_move_to_the_fixed_digest() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("deploy.toml");
        let old = format!("hello@sha256:{}", "a".repeat(64));
        let fixed = format!("hello@sha256:{}", "b".repeat(64));
        let other = format!("other@sha256:{}", "c".repeat(64));
        std::fs::write(
            &f,
            format!(
                "[services.web]\n  image = \"{old}\"\nreplicas = 3\n\n[services.db]\nimage = \"{other}\"\n"
            ),
        )
        .unwrap();
        update_deploy_file(&f, "hello", &fixed).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            text,
            format!(
                "[services.web]\nimage = \"{fixed}\"\nreplicas = 3\n\n[services.db]\nimage = \"{other}\"\n"
            )
        );
        let e = update_deploy_file(&f, "absent", &fixed).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("no service runs absent@sha256:…; nothing to roll out"),
            "{e}"
        );
    }
}
