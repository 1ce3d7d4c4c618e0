#![no_main]
//! The file manifest (the drift baseline) read back from a store.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_sbom::FileManifest::parse(data);
    let _ = kiln_sbom::summarize(data);
});
