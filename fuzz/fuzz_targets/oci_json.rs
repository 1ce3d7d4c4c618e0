#![no_main]
//! OCI manifests, configs and image references from untrusted layouts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_oci::ImageManifest::from_bytes(data, "fuzz");
    let _ = kiln_oci::ImageConfig::from_bytes(data, "fuzz");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_oci::ImageRef::parse(s);
        let _ = s.parse::<kiln_oci::Digest>();
    }
});
