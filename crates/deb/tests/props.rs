//! Property tests: deb822 round-trips, and no panics on arbitrary or mutated input.

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;

use common::*;
use kiln_deb::{Deb, Stanza, parse_stanzas, render_status};
use proptest::prelude::*;

fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][!-9;-~]{0,15}"
}

/// Values that `Stanza::set` accepts: no surrounding whitespace, continuation
/// lines indented and not blank, inner lines possibly ending in spaces.
fn field_value() -> impl Strategy<Value = String> {
    let first = prop_oneof![Just(String::new()), "[!-~é€][ -~é€]{0,30}"];
    let continuation = ("[ \t]{1,2}", "[!-~é][ -~é]{0,20}", "[ \t]{0,2}")
        .prop_map(|(indent, text, trailing)| format!("{indent}{text}{trailing}"));
    (first, prop::collection::vec(continuation, 0..4)).prop_map(|(first, rest)| {
        let mut value = first;
        for line in rest {
            value.push('\n');
            value.push_str(&line);
        }
        value.trim_end_matches([' ', '\t']).to_string()
    })
}

fn stanza() -> impl Strategy<Value = Stanza> {
    prop::collection::vec((field_name(), field_value()), 1..8).prop_map(|fields| {
        let mut seen = HashSet::new();
        let mut stanza = Stanza::new();
        for (name, value) in fields {
            if seen.insert(name.to_ascii_lowercase()) {
                stanza.set(&name, &value).expect("generated field is valid");
            }
        }
        stanza
    })
}

/// One valid .deb per data.tar compression, built once.
fn valid_debs() -> &'static [Vec<u8>] {
    static DEBS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    DEBS.get_or_init(|| {
        let extra: &[(&str, &[u8])] = &[
            ("conffiles", b"/etc/t.conf\n"),
            ("postinst", b"#!/bin/sh\n"),
        ];
        ["", ".gz", ".xz", ".zst"]
            .iter()
            .map(|ext| deb_with(CONTROL, extra, &sample_entries(), ext))
            .collect()
    })
}

/// Everything a caller may do with a parsed package must not panic either.
fn exercise(deb: &Deb) {
    let status = deb.status_stanza();
    let rendered = render_status(std::slice::from_ref(&status));
    assert_eq!(parse_stanzas(&rendered).unwrap(), [status]);
    let _ = (deb.list_file(), deb.md5sums_file(), deb.info_files());
    let _ = (deb.source(), deb.info_name(), deb.maintainer_scripts());
}

proptest! {
    #[test]
    fn stanza_render_parse_round_trip(s in stanza()) {
        let text = s.render();
        prop_assert!(text.ends_with('\n'));
        prop_assert_eq!(parse_stanzas(&text).unwrap(), vec![s.clone()]);
        prop_assert_eq!(Stanza::parse(&text).unwrap(), s);
    }

    #[test]
    fn status_file_round_trip(stanzas in prop::collection::vec(stanza(), 0..5)) {
        let text = render_status(&stanzas);
        prop_assert_eq!(parse_stanzas(&text).unwrap(), stanzas);
    }

    #[test]
    fn parse_stanzas_never_panics(text in any::<String>()) {
        let _ = parse_stanzas(&text);
    }

    #[test]
    fn parsed_stanzas_render_stably(text in "([A-Za-z#-]{0,4}(: ?)?[ -~]{0,6}[\r\n \t]{0,3}){0,12}") {
        if let Ok(stanzas) = parse_stanzas(&text) {
            let rendered = render_status(&stanzas);
            prop_assert_eq!(parse_stanzas(&rendered).unwrap(), stanzas);
        }
    }

    #[test]
    fn deb_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Deb::parse(&bytes);
        let mut ar = b"!<arch>\n".to_vec();
        ar.extend_from_slice(&bytes);
        let _ = Deb::parse(&ar);
    }

    #[test]
    fn deb_parse_never_panics_on_mutated_debs(
        which in 0..4usize,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = valid_debs()[which].clone();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(deb) = Deb::parse(&bytes) {
            exercise(&deb);
        }
    }

    #[test]
    fn deb_parse_never_panics_on_mutated_tar_headers(
        edits in prop::collection::vec((0..3072usize, any::<u8>()), 1..6),
    ) {
        // Mutate only the uncompressed data.tar, where headers live.
        let mut data = tar(&sample_entries());
        for (at, byte) in edits {
            let i = at % data.len();
            data[i] = byte;
        }
        let control = compress(".gz", &control_tar(CONTROL, &[]));
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &data),
        ]);
        if let Ok(deb) = Deb::parse(&bytes) {
            exercise(&deb);
        }
    }
}

#[test]
fn valid_samples_parse() {
    for bytes in valid_debs() {
        let deb = Deb::parse(bytes).unwrap();
        assert_eq!(deb.data.len(), 7);
        exercise(&deb);
    }
}

/// This machine's real dpkg status file parses and renders back byte for byte.
#[test]
fn system_status_file_round_trips() {
    // Debian's dpkg (installed by scripts/install-deps.sh) keeps this file.
    let text = std::fs::read_to_string("/var/lib/dpkg/status")
        .expect("/var/lib/dpkg/status is required: this suite runs on Debian with dpkg");
    let stanzas = parse_stanzas(&text).unwrap();
    assert!(stanzas.iter().all(|s| s.get("Package").is_some()));
    assert_eq!(render_status(&stanzas), text);
    // Every value is one that `Stanza::set` accepts.
    for stanza in &stanzas {
        let mut copy = Stanza::new();
        for (name, value) in stanza.fields() {
            copy.set(name, value).unwrap();
        }
        assert_eq!(&copy, stanza);
    }
}
