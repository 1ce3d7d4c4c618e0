#![no_main]
//! Audit events read back from a log (and from evidence bundles), and an
//! evidence bundle's MANIFEST body.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = kiln_audit::Event::parse(data) {
        let _ = e.unix_time();
        let _ = kiln_audit::Event::parse(&e.to_bytes()).expect("re-parse");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_evidence::manifest::parse(s);
        let _ = kiln_oci::time::parse_utc(s);
    }
});
