//! `kiln verify IMAGE --policy trust.toml`: check an image in the store against a trust
//! policy with the policy engine (`kiln-verify`), print each verdict, record the event.
//! Exit 0 only if all hold. `kiln verify IMAGE --key ci.pub` is the cosign-style check:
//! every blob, and a signature by that key in either form kiln writes (`.sig` simple
//! signing or the Sigstore bundle referrer), with no policy file.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use kiln_trust::{Policy, PublicKey};

use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).args(["policy", "key"])))]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// The trust policy (trust.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Instead of a policy: a public key (PEM) that must have signed the image, as a cosign
    /// `.sig` or a Sigstore bundle (like `cosign verify --key`).
    #[arg(long)]
    key: Option<PathBuf>,
}

/// What the image was verified against.
enum Trust<'a> {
    Policy(&'a Path),
    Key { path: &'a Path, key_id: String },
}

impl Trust<'_> {
    fn describe(&self) -> String {
        match self {
            Trust::Policy(p) => p.display().to_string(),
            Trust::Key { path, .. } => format!("--key {}", path.display()),
        }
    }
}

/// The public key of `kiln verify --key`.
fn read_public_key(path: &Path) -> Result<PublicKey> {
    let pem = kiln_oci::untrusted::read_small_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("{} is not a public key", path.display()))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let digest = img.descriptor.digest;
    let (policy, trust) = match (&a.policy, &a.key) {
        (Some(p), None) => (Policy::load(p)?, Trust::Policy(p)),
        (None, Some(k)) => {
            let key = read_public_key(k)?;
            let key_id = key.key_id();
            let name = k.display().to_string();
            (
                Policy::single_key(k, &name, key),
                Trust::Key { path: k, key_id },
            )
        }
        _ => bail!("give exactly one of --policy and --key"),
    };
    let report = kiln_verify::evaluate(&store, &img, &policy, SystemTime::now())?;
    let against = match &trust {
        Trust::Policy(p) => kiln_verify::policy_resource(p),
        Trust::Key { path, key_id } => kiln_verify::key_resource(path, key_id),
    };
    ctx.record(report.audit_event(ctx, against))?;
    let verdicts = report.verdicts();
    let failed = report.failed();
    if ctx.json {
        let mut out = serde_json::json!({
            "image": img.reference,
            "digest": digest,
            "pass": failed == 0,
            "verdicts": verdicts,
        });
        match &trust {
            Trust::Policy(p) => out["policy"] = serde_json::json!(p),
            Trust::Key { path, key_id } => {
                out["key"] = serde_json::json!({"path": path, "key_id": key_id});
            }
        }
        print_json(&out)?;
    } else {
        for v in &verdicts {
            println!(
                "{}  {}: {}",
                if v.pass { "PASS" } else { "FAIL" },
                v.rule,
                v.reason
            );
            for d in &v.details {
                println!("        - {d}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{} does not satisfy {}: {failed} of {} rule(s) failed",
            img.reference,
            trust.describe(),
            verdicts.len()
        );
    }
    if !ctx.json {
        println!("verified {digest}");
    }
    Ok(())
}
