//! The approve step (`kiln approve`): re-hash every blob of an image, sign an in-toto
//! approval of its digest (`https://kiln.dev/approval/v1`: the reason, the approver's key
//! id, the time), stage it in every form kiln attaches attestations in, record
//! `image.approve`, then attach it.

use std::time::SystemTime;

use kiln_audit::{Recorder, Resource};
use kiln_oci::{Resolved, Store};
use kiln_trust::attest::APPROVAL_PREDICATE_TYPE;
use kiln_trust::{Attached, Statement, Subject};
use serde_json::json;

use crate::{Error, Key};

/// What `kiln approve` did.
pub struct Approved {
    /// The approver's key id.
    pub key_id: String,
    /// The approval's time (RFC 3339, microseconds).
    pub time: String,
    pub attached: Attached,
}

/// Approve `img` with `key` for `reason` (dated when signed).
pub fn approve(
    rec: &dyn Recorder,
    store: &Store,
    img: &Resolved,
    key: Key,
    reason: &str,
) -> Result<Approved, Error> {
    let name = kiln_trust::store::image_name(store, img)?;
    kiln_verify::verify_image_blobs(store, img)?;
    let key = key.get()?;
    let digest = img.descriptor.digest;
    let key_id = key.public_key().key_id();
    let time = kiln_image::provenance::rfc3339_micros(SystemTime::now());
    let st = Statement::new(
        vec![Subject::sha256(&name, digest.hex())],
        APPROVAL_PREDICATE_TYPE,
        json!({"reason": reason, "approver": key_id, "time": time}),
    );
    let env = st.sign(&[&*key]);
    let (at, pending) = kiln_trust::store::stage_attestation(
        store,
        &name,
        &img.descriptor,
        &env,
        &key.public_key(),
        APPROVAL_PREDICATE_TYPE,
    )?;
    rec.record(
        rec.event("image.approve")
            .resource(Resource::named(
                "image",
                digest.to_string(),
                img.reference.clone(),
            ))
            .key(key_id.clone())
            .detail("referrer", at.referrer.digest.to_string())
            .detail("envelope", at.envelope.digest.to_string())
            .detail("bundle_referrer", at.bundle.digest.to_string()),
    )?;
    pending.apply(store)?;
    Ok(Approved {
        key_id,
        time,
        attached: at,
    })
}
