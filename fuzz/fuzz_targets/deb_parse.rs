//! Feeds arbitrary bytes to `Deb::parse` and, when they are UTF-8, to
//! `parse_stanzas`; whatever parses is rendered back, which must not panic.

#![no_main]

use kiln_deb::{Deb, parse_stanzas, render_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(deb) = Deb::parse(data) {
        let status = deb.status_stanza();
        let rendered = render_status(std::slice::from_ref(&status));
        assert_eq!(
            parse_stanzas(&rendered).ok(),
            Some(vec![status]),
            "status stanza must round-trip"
        );
        let _ = (deb.list_file(), deb.md5sums_file(), deb.info_files());
        let _ = (deb.source(), deb.info_name(), deb.maintainer_scripts());
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(stanzas) = parse_stanzas(text)
    {
        let rendered = render_status(&stanzas);
        assert_eq!(
            parse_stanzas(&rendered).ok(),
            Some(stanzas),
            "rendered stanzas must parse back unchanged"
        );
    }
});
