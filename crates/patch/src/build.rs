//! The build step (`kiln build`): build a spec into the store, optionally sign SLSA
//! provenance for it, record `image.build`, then make the image visible.
//!
//! Order: every blob is committed unreferenced (the image, its referrers, the
//! provenance), the event is recorded, then the tag, the referrers, the provenance and
//! `--out` appear.

use std::path::Path;
use std::time::SystemTime;

use kiln_audit::{Recorder, Resource};
use kiln_image::provenance::{self, Builder};
use kiln_image::{BuildOptions, BuildReport, Spec};
use kiln_oci::{Descriptor, Pending, Store, media};
use kiln_trust::attest::PROVENANCE_PREDICATE_TYPE;
use kiln_trust::{Attached, PrivateKey};

use crate::Error;

/// What to build.
pub struct BuildRequest<'a> {
    /// The spec file (named in the provenance and the event).
    pub spec_path: &'a Path,
    pub spec: &'a Spec,
    pub options: &'a BuildOptions,
    /// Sign provenance with this key, describing this builder run.
    pub provenance: Option<(&'a PrivateKey, &'a Builder)>,
    /// When the build started (RFC 3339; the provenance's `startedOn`).
    pub started_on: &'a str,
}

/// What a build produced.
pub struct Built {
    pub report: BuildReport,
    /// Where the signed provenance was attached.
    pub provenance: Option<Attached>,
}

/// Build, attach signed provenance, record `image.build`, publish.
pub fn build(rec: &dyn Recorder, req: &BuildRequest) -> Result<Built, Error> {
    let (r, publish) =
        kiln_image::build_staged(req.spec, req.options).map_err(|source| Error::Build {
            spec: req.spec_path.to_path_buf(),
            source,
        })?;
    let store = Store::open(req.options.state_dir.join("store"))?;
    let mut pending = Pending::default();
    let provenance = match req.provenance {
        Some((key, builder)) => {
            let (at, p) =
                attach_provenance(&store, req.spec_path, &r, key, builder, req.started_on)
                    .map_err(Error::Provenance)?;
            pending.extend(p);
            Some(at)
        }
        None => None,
    };
    let image = Resource::named(
        "image",
        r.digest.to_string(),
        format!("{}:{}", r.name, r.tag),
    );
    let mut ev = rec
        .event("image.build")
        .resource(image)
        .detail("spec_sha256", r.spec_sha256.clone())
        .detail("config", r.config_digest.to_string())
        .detail(
            "layers",
            r.layers
                .iter()
                .map(|l| l.digest.to_string())
                .collect::<Vec<_>>(),
        )
        .detail(
            "referrers",
            r.referrers
                .iter()
                .map(|x| serde_json::json!({"artifact_type": x.artifact_type, "digest": x.digest}))
                .collect::<Vec<_>>(),
        )
        .detail("epoch", r.epoch)
        .detail(
            "provenance",
            provenance.as_ref().map(|p| p.referrer.digest.to_string()),
        )
        .detail(
            "provenance_bundle",
            provenance.as_ref().map(|p| p.bundle.digest.to_string()),
        );
    if let Some((k, _)) = req.provenance {
        ev = ev.key(k.public_key().key_id());
    }
    rec.record(ev)?;
    publish.apply().map_err(|source| Error::Publish {
        image: format!("{}:{}", r.name, r.tag),
        source,
    })?;
    pending.apply(&store)?;
    Ok(Built {
        report: r,
        provenance,
    })
}

/// Signs the provenance of build `r` with `key` and stages it next to the image (which
/// is staged, not yet tagged: its event comes first).
fn attach_provenance(
    store: &Store,
    spec_path: &Path,
    r: &BuildReport,
    key: &PrivateKey,
    builder: &Builder,
    started_on: &str,
) -> Result<(Attached, Pending), kiln_trust::StoreError> {
    let subject = Descriptor::new(media::MANIFEST, r.digest, r.manifest_size);
    let finished_on = provenance::rfc3339_micros(SystemTime::now());
    let predicate = provenance::predicate(spec_path, r, builder, started_on, &finished_on);
    let env = provenance::statement(r, predicate).sign(&[key]);
    kiln_trust::store::stage_attestation(
        store,
        &r.name,
        &subject,
        &env,
        &key.public_key(),
        PROVENANCE_PREDICATE_TYPE,
    )
}
