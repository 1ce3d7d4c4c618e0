//! SLSA provenance v1 of a build: the in-toto statement about the image manifest digest
//! that `kiln build --sign-key` signs and attaches next to (not inside) the image.
//!
//! The predicate records the build definition (the spec and the `name:tag`, `--compression`
//! as external parameters; the epoch and the compressor as internal ones), every input as
//! an in-toto ResourceDescriptor ([`crate::inputs`]) plus the builder itself, and the run:
//! builder id and version, a unique invocation id, start and finish times, and as a
//! byproduct the Debian maintainer scripts that were not run.
//!
//! Which builder ran (its executable's SHA-256) and the invocation id are inputs
//! ([`Builder`]), so a caller can pin them; [`Builder::current`] takes them from the
//! running executable and the system's random source.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kiln_oci::{Digest, media};
use kiln_trust::attest::{BUILD_TYPE, BUILDER_ID, PROVENANCE_PREDICATE_TYPE};
use kiln_trust::{Statement, Subject};
use serde_json::{Value, json};

use crate::build::{BuildReport, KILN_VERSION};
use crate::inputs::BuildInput;

/// Why the facts about the running builder could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("locating the kiln executable")]
    Executable(#[source] std::io::Error),
    #[error("reading {} to hash it", path.display())]
    Hash {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading /dev/urandom for the invocation id")]
    Random(#[source] std::io::Error),
}

/// The builder run a provenance statement describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    /// SHA-256 (hex) of the kiln executable that built.
    pub sha256: String,
    /// A unique id of this invocation (a UUID v4 URN).
    pub invocation_id: String,
}

impl Builder {
    /// The running executable, with a fresh invocation id.
    pub fn current() -> Result<Builder, ProvenanceError> {
        let exe = std::env::current_exe().map_err(ProvenanceError::Executable)?;
        let bytes = std::fs::read(&exe).map_err(|source| ProvenanceError::Hash {
            path: exe.clone(),
            source,
        })?;
        Ok(Builder {
            sha256: Digest::of(&bytes).hex(),
            invocation_id: invocation_id()?,
        })
    }
}

/// A unique invocation id (a random UUID v4 URN).
fn invocation_id() -> Result<String, ProvenanceError> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(ProvenanceError::Random)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// UTC, RFC 3339 with microseconds: two statements made in the same second (two
/// approvals by one key) still differ.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let now = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let whole = crate::time::rfc3339(now.as_secs());
    let base = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{base}.{:06}Z", now.subsec_micros())
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

/// The provenance predicate of build `r` of the spec at `spec_path`, run by `builder`
/// between `started_on` and `finished_on` (RFC 3339).
pub fn predicate(
    spec_path: &Path,
    r: &BuildReport,
    builder: &Builder,
    started_on: &str,
    finished_on: &str,
) -> Value {
    let mut deps: Vec<Value> = r.inputs.iter().map(input_descriptor).collect();
    deps.push(json!({
        "uri": format!("pkg:cargo/kiln@{KILN_VERSION}"),
        "name": "kiln",
        "digest": {"sha256": builder.sha256},
        "annotations": {"kind": "builder", "version": KILN_VERSION},
    }));
    let spec_name = spec_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec_path.to_string_lossy().into_owned());
    // Per package: the scripts not run and, where kiln did their work in
    // their place, what it did.
    let scripts: Vec<Value> = r
        .maintainer_scripts_not_run
        .iter()
        .map(|(pkg, s)| match r.done_by_kiln.get(pkg) {
            Some(done) => json!({"package": pkg, "scripts": s, "doneByKiln": done}),
            None => json!({"package": pkg, "scripts": s}),
        })
        .collect();
    // The byproduct is these bytes, carried inline (`content`): a ResourceDescriptor
    // needs one of uri, digest or content.
    let scripts_json = serde_json::to_vec(&scripts)
        .unwrap_or_else(|e| unreachable!("serialising JSON values: {e}"));
    json!({
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
                "version": {"kiln": KILN_VERSION},
            },
            "metadata": {
                "invocationId": builder.invocation_id,
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
    })
}

/// The in-toto statement of `predicate` about the image of build `r` (to be signed).
pub fn statement(r: &BuildReport, predicate: Value) -> Statement {
    Statement::new(
        vec![Subject::sha256(&r.name, r.digest.hex())],
        PROVENANCE_PREDICATE_TYPE,
        predicate,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn report() -> BuildReport {
        BuildReport {
            name: "hello".into(),
            tag: "1.0".into(),
            digest: Digest::of(b"manifest"),
            manifest_size: 8,
            config_digest: Digest::of(b"config"),
            epoch: 1_700_000_000,
            epoch_source: "SOURCE_DATE_EPOCH".into(),
            created: "2023-11-14T22:13:20Z".into(),
            compression: "gzip level 6".into(),
            compression_media_type: media::LAYER_GZIP.into(),
            base: None,
            layers: Vec::new(),
            referrers: Vec::new(),
            packages: 1,
            files: 2,
            spec_sha256: Digest::of(b"spec").hex(),
            inputs: vec![BuildInput {
                kind: "spec".into(),
                uri: "file:kiln.toml".into(),
                digest: BTreeMap::from([("sha256".to_owned(), Digest::of(b"spec").hex())]),
                content: None,
                description: None,
            }],
            out: None,
            warnings: Vec::new(),
            maintainer_scripts_not_run: BTreeMap::from([(
                "hello-config".to_owned(),
                vec!["postinst".to_owned()],
            )]),
            done_by_kiln: BTreeMap::new(),
            elapsed_ms: 0,
            phases_ms: Vec::new(),
        }
    }

    #[test]
    fn the_predicate_names_the_builder_run_it_is_given() {
        let builder = Builder {
            sha256: "ab".repeat(32),
            invocation_id: "urn:uuid:00000000-0000-4000-8000-000000000000".into(),
        };
        let r = report();
        let p = predicate(
            Path::new("/x/kiln.toml"),
            &r,
            &builder,
            "2023-11-14T22:13:20.000001Z",
            "2023-11-14T22:13:21.000002Z",
        );
        let b = &p["buildDefinition"];
        assert_eq!(b["buildType"], BUILD_TYPE);
        assert_eq!(b["externalParameters"]["spec"], "kiln.toml");
        assert_eq!(b["externalParameters"]["compression"], "gzip");
        let deps = b["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["uri"], "file:kiln.toml");
        assert_eq!(deps[1]["digest"]["sha256"], builder.sha256);
        let run = &p["runDetails"];
        assert_eq!(run["builder"]["id"], BUILDER_ID);
        assert_eq!(run["metadata"]["invocationId"], builder.invocation_id);
        assert_eq!(run["metadata"]["finishedOn"], "2023-11-14T22:13:21.000002Z");
        let scripts = &run["byproducts"][0]["annotations"]["packages"][0];
        assert_eq!(scripts["package"], "hello-config");
        assert!(scripts.get("doneByKiln").is_none());
        // What kiln did in a package's scripts' place is listed beside them.
        let mut r2 = report();
        r2.done_by_kiln.insert(
            "hello-config".into(),
            vec!["kiln: alternatives hello -> /usr/bin/hello".into()],
        );
        let p2 = predicate(Path::new("kiln.toml"), &r2, &builder, "a", "b");
        assert_eq!(
            p2["runDetails"]["byproducts"][0]["annotations"]["packages"][0]["doneByKiln"][0],
            "kiln: alternatives hello -> /usr/bin/hello"
        );
        let st = statement(&r, p);
        assert_eq!(st.predicate_type, PROVENANCE_PREDICATE_TYPE);
        assert_eq!(st.subject[0].digest["sha256"], r.digest.hex());
    }

    #[test]
    fn invocation_ids_are_uuid_v4_urns_and_times_have_microseconds() {
        let id = invocation_id().unwrap();
        assert_eq!(id.len(), "urn:uuid:".len() + 36, "{id}");
        assert_eq!(&id[9 + 14..9 + 15], "4", "{id}");
        assert_ne!(id, invocation_id().unwrap());
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_042);
        assert_eq!(rfc3339_micros(t), "2023-11-14T22:13:20.000042Z");
    }
}
