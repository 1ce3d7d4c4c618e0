#![no_main]
//! OSV advisories, dpkg status files and Debian versions: what `kiln scan`
//! and `kiln patch` read from the outside.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut db = kiln_scan::AdvisoryDb::default();
    let _ = db.add_json(data, "fuzz.json");
    let _ = kiln_scan::inventory_from_status(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some((a, b)) = s.split_once('\n') {
            if let (Ok(x), Ok(y)) = (kiln_scan::DebVersion::parse(a), kiln_scan::DebVersion::parse(b)) {
                // A total order: exactly one of <, ==, > and it flips.
                assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
            }
        }
    }
});
