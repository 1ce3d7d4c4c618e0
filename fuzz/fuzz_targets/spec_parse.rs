#![no_main]
//! kiln.toml: any text must give a spec or a located error, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kiln_image::Spec::parse(std::path::Path::new("/nonexistent/kiln.toml"), text);
    }
});
