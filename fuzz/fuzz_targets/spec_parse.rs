#![no_main]
//! kiln.toml: any bytes must give a spec or a located error, never a panic
//! (bytes that are not UTF-8 are located by `textpos::decode`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match kiln_oci::textpos::decode(data.to_vec()) {
        Ok(text) => {
            let _ = kiln_image::Spec::parse(std::path::Path::new("/nonexistent/kiln.toml"), &text);
        }
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1);
            assert_eq!(data.get(e.offset), Some(&e.byte));
        }
    }
});
