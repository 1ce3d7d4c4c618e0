#![no_main]
//! Debian relation fields and `Packages` stanzas as kiln-solve reads them:
//! never a panic, and whatever parses prints back to the same relations.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(groups) = kiln_solve::relation::parse(s) {
        let text = kiln_solve::relation::format_field(&groups);
        assert_eq!(kiln_solve::relation::parse(&text).ok(), Some(groups));
    }
    let _ = kiln_solve::relation::parse_flat(s);
    if let Ok(pkgs) = kiln_solve::packages::parse(s, 500, "fuzz") {
        if let Ok(u) = kiln_solve::Universe::new(pkgs, "amd64") {
            let names: Vec<String> = (0..u.len().min(3))
                .map(|i| u.package(kiln_solve::PkgId(i as u32)).name.clone())
                .collect();
            let mut req = kiln_solve::Request::new(&names);
            req.max_steps = 10_000;
            if let Ok(c) = kiln_solve::solve(&u, &req) {
                let set: Vec<_> = c.ids().into_iter().map(|id| u.package(id)).collect();
                assert!(kiln_solve::check_closure(&set, "amd64").is_ok());
            }
        }
    }
});
