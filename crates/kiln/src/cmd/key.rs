use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_trust::{KeyAlgorithm, PrivateKey, write_private_key};
use serde_json::json;

use super::{Ctx, print_json};

#[derive(clap::Subcommand)]
pub enum KeyCmd {
    /// Generate a key pair: NAME.key (cosign's encrypted format, 0600) and NAME.pub.
    Generate(GenerateArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256 (cosign's default).
    EcdsaP256,
    Ed25519,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Base name: writes NAME.key and NAME.pub.
    name: PathBuf,
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    algorithm: Algorithm,
    /// Write the private key unencrypted (PKCS#8 PEM) instead of using
    /// KILN_KEY_PASSWORD.
    #[arg(long)]
    unencrypted: bool,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

/// Removes the listed files when dropped (temporary files of a command that
/// failed before moving them into place).
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn run(ctx: &Ctx, cmd: KeyCmd) -> Result<()> {
    match cmd {
        KeyCmd::Generate(a) => generate(ctx, a),
    }
}

fn generate(ctx: &Ctx, a: GenerateArgs) -> Result<()> {
    let alg = match a.algorithm {
        Algorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256Sha256,
        Algorithm::Ed25519 => KeyAlgorithm::Ed25519,
    };
    let key_path = a.name.with_extension("key");
    let pub_path = a.name.with_extension("pub");
    if !a.force && pub_path.exists() {
        bail!("{} exists (pass --force to replace it)", pub_path.display());
    }
    let key = PrivateKey::generate(alg)?;
    // Written under temporary names, recorded, then moved into place: a key
    // pair never exists without its audit event (and a failed append leaves
    // nothing behind, so a retry does not fail with "exists").
    let tmp = |p: &std::path::Path| {
        let mut n = std::ffi::OsString::from(".");
        n.push(p.file_name().unwrap_or_default());
        n.push(format!(".kiln-new-{}", std::process::id()));
        p.with_file_name(n)
    };
    let (key_tmp, pub_tmp) = (tmp(&key_path), tmp(&pub_path));
    let cleanup = Cleanup(vec![key_tmp.clone(), pub_tmp.clone()]);
    let written = if a.unencrypted {
        // Stays in a zeroizing buffer until written.
        write_private_key(&key_tmp, &key.to_pkcs8_pem(), true)
    } else {
        let Some(password) = std::env::var("KILN_KEY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            bail!("set KILN_KEY_PASSWORD to encrypt the private key, or pass --unencrypted");
        };
        write_private_key(&key_tmp, &key.to_encrypted_pem(password.as_bytes())?, true)
    };
    written.with_context(|| format!("writing {}", key_path.display()))?;
    let public = key.public_key();
    kiln_oci::layout::write_atomic(&pub_tmp, public.to_pem().as_bytes())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    if !a.force {
        for p in [&key_path, &pub_path] {
            if p.symlink_metadata().is_ok() {
                bail!("{} exists (pass --force to replace it)", p.display());
            }
        }
    }
    ctx.record(
        ctx.event("key.generate")
            .resource(kiln_audit::Resource::named(
                "key",
                public.key_id(),
                pub_path.display().to_string(),
            ))
            .detail("algorithm", alg.scheme())
            .detail("encrypted", !a.unencrypted),
    )?;
    // The event is durable: now the files appear.
    for (from, to) in [(&key_tmp, &key_path), (&pub_tmp, &pub_path)] {
        std::fs::rename(from, to).with_context(|| format!("moving {} into place", to.display()))?;
    }
    drop(cleanup);
    if ctx.json {
        return print_json(&json!({
            "private_key": key_path,
            "public_key": pub_path,
            "algorithm": alg.scheme(),
            "key_id": public.key_id(),
            "encrypted": !a.unencrypted,
        }));
    }
    println!(
        "private key  {} (mode 0600{})",
        key_path.display(),
        if a.unencrypted { ", unencrypted" } else { "" }
    );
    println!("public key   {}", pub_path.display());
    println!("key id       {}", public.key_id());
    Ok(())
}
