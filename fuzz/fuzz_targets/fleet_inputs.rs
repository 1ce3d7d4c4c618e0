#![no_main]
//! deploy.toml and FIM manifests: the desired state and the drift baselines.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_fleet::Deployment::parse(std::path::Path::new("/nonexistent/deploy.toml"), s);
    }
    let _ = kiln_drift::read_manifest(data);
});
