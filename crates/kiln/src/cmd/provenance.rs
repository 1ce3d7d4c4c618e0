//! SLSA provenance v1 for `kiln build --sign-key`: an in-toto statement about the image
//! manifest digest, DSSE-signed and attached next to (not inside) the image.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kiln_image::{BuildInput, BuildReport};
use kiln_oci::{Descriptor, Digest, media};
use kiln_trust::attest::{BUILD_TYPE, BUILDER_ID, PROVENANCE_PREDICATE_TYPE};
use kiln_trust::{PrivateKey, Statement, Subject};
use serde_json::{Value, json};

use super::Ctx;
use super::approve::{Attached, attach, now_rfc3339};

/// A unique invocation id (a random UUID v4 URN).
fn invocation_id() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for the invocation id")?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The sha256 of the running kiln executable.
fn kiln_binary_sha256() -> Result<String> {
    let exe = std::env::current_exe().context("locating the kiln executable")?;
    let bytes =
        std::fs::read(&exe).with_context(|| format!("reading {} to hash it", exe.display()))?;
    Ok(Digest::of(&bytes).hex())
}

/// The user-facing name of a layer compression (`--compression`).
fn compression_name(media_type: &str) -> &'static str {
    match media_type {
        media::LAYER_GZIP => "gzip",
        media::LAYER_ZSTD => "zstd",
        _ => "none",
    }
}

/// The in-toto ResourceDescriptor of one build input: its URI, its DigestSet (`sha256`, or
/// `dirHash` for a directory) and/or its `content`.
fn input_descriptor(i: &BuildInput) -> Value {
    let mut d = json!({
        "uri": i.uri,
        "annotations": {"kind": i.kind},
    });
    if let Some(o) = d.as_object_mut() {
        if !i.digest.is_empty() {
            o.insert("digest".into(), json!(i.digest));
        }
        if let Some(c) = &i.content {
            o.insert("content".into(), json!(STANDARD.encode(c)));
        }
    }
    if let (Some(desc), Some(ann)) = (&i.description, d["annotations"].as_object_mut()) {
        ann.insert("description".into(), json!(desc));
    }
    d
}

/// The provenance predicate of build `r` of `spec_path`.
pub fn predicate(
    spec_path: &Path,
    r: &BuildReport,
    started_on: &str,
    finished_on: &str,
) -> Result<Value> {
    let mut deps: Vec<Value> = r.inputs.iter().map(input_descriptor).collect();
    deps.push(json!({
        "uri": format!("pkg:cargo/kiln@{}", kiln_image::build::KILN_VERSION),
        "name": "kiln",
        "digest": {"sha256": kiln_binary_sha256()?},
        "annotations": {"kind": "builder", "version": kiln_image::build::KILN_VERSION},
    }));
    let spec_name = spec_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec_path.to_string_lossy().into_owned());
    let scripts: Vec<Value> = r
        .maintainer_scripts_not_run
        .iter()
        .map(|(pkg, s)| json!({"package": pkg, "scripts": s}))
        .collect();
    // The byproduct is these bytes, carried inline (`content`): a ResourceDescriptor
    // needs one of uri, digest or content.
    let scripts_json = serde_json::to_vec(&scripts).context("serialising the byproduct")?;
    Ok(json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "spec": spec_name,
                "name": r.name,
                "tag": r.tag,
                "compression": compression_name(&r.compression_media_type),
            },
            "internalParameters": {
                "epoch": r.epoch,
                "epochSource": r.epoch_source,
                "created": r.created,
                "compressor": {
                    "layerMediaType": r.compression_media_type,
                    "description": r.compression,
                },
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {
                "id": BUILDER_ID,
                "version": {"kiln": kiln_image::build::KILN_VERSION},
            },
            "metadata": {
                "invocationId": invocation_id()?,
                "startedOn": started_on,
                "finishedOn": finished_on,
            },
            "byproducts": [{
                "name": "maintainer-scripts-not-run",
                "mediaType": "application/json",
                "content": STANDARD.encode(&scripts_json),
                "digest": {"sha256": Digest::of(&scripts_json).hex()},
                "annotations": {
                    "note": "Debian maintainer scripts were not run during the build",
                    "packages": scripts,
                },
            }],
        },
    }))
}

/// Signs the provenance of build `r` with `key` and attaches it to the image.
pub fn attach_for_build(
    ctx: &Ctx,
    spec_path: &Path,
    r: &BuildReport,
    key: &PrivateKey,
    started_on: &str,
) -> Result<(Attached, super::Pending)> {
    let store = ctx.store()?;
    // The image is staged, not yet tagged: its event comes first.
    let subject = Descriptor::new(media::MANIFEST, r.digest, r.manifest_size);
    let pred = predicate(spec_path, r, started_on, &now_rfc3339())?;
    let st = Statement::new(
        vec![Subject::sha256(&r.name, r.digest.hex())],
        PROVENANCE_PREDICATE_TYPE,
        pred,
    );
    let env = st.sign(&[key]);
    attach(
        &store,
        &r.name,
        &subject,
        &env,
        &key.public_key(),
        PROVENANCE_PREDICATE_TYPE,
    )
    .context("attaching the provenance")
}
