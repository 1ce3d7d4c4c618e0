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
    let written = if a.unencrypted {
        // Stays in a zeroizing buffer until written.
        write_private_key(&key_path, &key.to_pkcs8_pem(), a.force)
    } else {
        let Some(password) = std::env::var("KILN_KEY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            bail!("set KILN_KEY_PASSWORD to encrypt the private key, or pass --unencrypted");
        };
        write_private_key(
            &key_path,
            &key.to_encrypted_pem(password.as_bytes())?,
            a.force,
        )
    };
    written.with_context(|| format!("writing {}", key_path.display()))?;
    let public = key.public_key();
    kiln_oci::layout::write_atomic(&pub_path, public.to_pem().as_bytes())
        .with_context(|| format!("writing {}", pub_path.display()))?;
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
