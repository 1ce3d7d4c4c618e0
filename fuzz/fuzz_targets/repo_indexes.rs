#![no_main]
//! Debian repository metadata: Release and Packages files, relationship
//! fields, OpenPGP keyrings and signed InRelease files, as kiln-repo reads
//! them from a mirror.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_repo::Release::parse(s);
        if let Ok(pkgs) = kiln_repo::parse_packages(s) {
            for p in pkgs {
                // The canonical form of every parsed relation parses back.
                // The solver's view of any parsed stanza never panics.
                let _ = kiln_solve::Universe::new(vec![p.to_solver(500, "fuzz")], "amd64");
                let text = kiln_repo::relation::format_field(&p.depends);
                assert_eq!(kiln_repo::relation::parse(&text).ok(), Some(p.depends));
            }
        }
        let _ = kiln_repo::repositories_from_sources(s);
    }
    if let Ok(k) = kiln_repo::Keyring::from_bytes(data, "fuzz") {
        let _ = k.verify_inrelease("fuzz", data, 0);
    }
});
