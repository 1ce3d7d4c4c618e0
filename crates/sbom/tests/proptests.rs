//! Property tests: purl encoding, file-manifest round trip, and parsers that
//! never panic.

mod common;

use std::collections::BTreeMap;

use kiln_sbom::{
    FileKind, FileManifest, FileOrigin, FileRecord, Inventory, ManifestEntry, cyclonedx_json,
    file_manifest_json, purl, spdx_json, summarize,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- purl ---

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
            {
                return None; // canonical: uppercase hex only
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Every character of `s` is unreserved, part of a `%XX` escape, or in `extra`.
fn only_safe(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| purl::is_unreserved(b) || b == b'%' || extra.contains(&b))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9+.:~ @?#&=/%-]{0,12}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn deb_purl_is_encoded(
        name in text(), version in text(), arch in text(), distro in proptest::option::of(text())
    ) {
        let p = purl::deb(&name, &version, &arch, distro.as_deref());
        prop_assert!(p.bytes().all(|b| b.is_ascii_graphic()), "non-printable or space in {p}");
        let rest = p.strip_prefix("pkg:deb/debian/").expect("prefix");
        let (main, qualifiers) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (n, v) = match main.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (main, None),
        };
        prop_assert!(only_safe(n, b""), "name part {n}");
        prop_assert_eq!(decode(n), Some(name.to_lowercase()));
        match v {
            Some(v) => {
                prop_assert!(only_safe(v, b":"), "version part {v}");
                prop_assert_eq!(decode(v), Some(version.clone()));
            }
            None => prop_assert!(version.is_empty()),
        }
        let mut expected = Vec::new();
        if !arch.is_empty() {
            expected.push(("arch", arch.clone()));
        }
        if let Some(d) = distro.filter(|d| !d.is_empty()) {
            expected.push(("distro", d));
        }
        let mut seen = Vec::new();
        for pair in qualifiers.into_iter().flat_map(|q| q.split('&')) {
            let (k, v) = pair.split_once('=').expect("key=value");
            prop_assert!(only_safe(v, b""), "qualifier value {v}");
            seen.push((k, decode(v).expect("decodes")));
        }
        let seen: Vec<(&str, String)> = seen;
        prop_assert_eq!(seen, expected);
    }

    #[test]
    fn oci_purl_is_encoded(name in text(), hex in "[0-9a-f]{64}") {
        let digest = format!("sha256:{hex}");
        let p = purl::oci(&name, &digest);
        prop_assert!(p.bytes().all(|b| b.is_ascii_graphic()), "non-printable or space in {p}");
        let rest = p.strip_prefix("pkg:oci/").expect("prefix");
        let (main, qualifiers) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (n, v) = main.split_once('@').expect("version present");
        prop_assert!(only_safe(n, b""), "name part {n}");
        let last = name.rsplit('/').next().unwrap_or_default();
        prop_assert_eq!(decode(n), Some(last.to_lowercase()));
        prop_assert_eq!(v, format!("sha256%3A{hex}"));
        match qualifiers {
            Some(q) => {
                let value = q.strip_prefix("repository_url=").expect("repository_url");
                prop_assert!(only_safe(value, b"/"), "repository_url {value}");
                prop_assert_eq!(decode(value), Some(name.clone()));
            }
            None => prop_assert!(!name.contains('/')),
        }
    }
}

// ------------------------------------------------------ file manifest ---

fn component() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._-]{1,8}", "[a-z é ü–]{1,6}", "[^/\u{0}]{1,6}",]
        .prop_filter("not . or ..", |c| c != "." && c != "..")
}

fn origin() -> impl Strategy<Value = FileOrigin> {
    prop_oneof![
        Just(FileOrigin::Base),
        Just(FileOrigin::Spec),
        "[a-z0-9][a-z0-9+.-]{0,10}".prop_map(FileOrigin::Package),
    ]
}

#[derive(Debug, Clone)]
struct Wanted {
    components: Vec<String>,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: Vec<u8>,
    target: String,
    pick: usize,
    origin: FileOrigin,
}

fn wanted() -> impl Strategy<Value = Wanted> {
    (
        proptest::collection::vec(component(), 1..4),
        0u8..4,
        0u32..=0o7777,
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..8),
        "[^\u{0}]{1,16}",
        any::<usize>(),
        origin(),
    )
        .prop_map(
            |(components, kind, mode, uid, gid, size, content, target, pick, origin)| Wanted {
                components,
                kind,
                mode,
                uid,
                gid,
                size,
                content,
                target,
                pick,
                origin,
            },
        )
}

/// Builds a valid file list (parents present, sorted, hard links to listed
/// files with the same hash) from arbitrary wishes.
fn build_files(wishes: Vec<Wanted>, with_root: bool) -> Vec<FileRecord> {
    let mut map: BTreeMap<String, FileRecord> = BTreeMap::new();
    if with_root {
        map.insert("/".into(), common::dir("/", 0o755, FileOrigin::Base));
    }
    'wish: for w in wishes {
        let mut path = String::new();
        let last = w.components.len() - 1;
        for (i, c) in w.components.iter().enumerate() {
            path.push('/');
            path.push_str(c);
            let existing = map.get(&path).map(|r| r.kind);
            if i < last {
                match existing {
                    Some(FileKind::Dir) => {}
                    Some(_) => continue 'wish,
                    None => {
                        map.insert(path.clone(), common::dir(&path, 0o755, FileOrigin::Base));
                    }
                }
            } else if existing.is_some() {
                continue 'wish;
            }
        }
        let files: Vec<(String, Option<String>)> = map
            .values()
            .filter(|r| r.kind == FileKind::File)
            .map(|r| (r.path.clone(), r.sha256.clone()))
            .collect();
        let mut record = match w.kind {
            0 => common::file(&path, w.mode, &w.content, w.origin),
            1 => common::dir(&path, w.mode, w.origin),
            2 => common::symlink(&path, &w.target, w.origin),
            _ if files.is_empty() => common::file(&path, w.mode, &w.content, w.origin),
            _ => {
                let (target, _) = &files[w.pick % files.len()];
                let target_record = &map[target];
                FileRecord {
                    path: path.clone(),
                    kind: FileKind::Hardlink,
                    link: Some(target.clone()),
                    origin: w.origin,
                    ..target_record.clone()
                }
            }
        };
        record.mode = w.mode;
        record.uid = w.uid;
        record.gid = w.gid;
        if record.kind.has_content() {
            record.size = w.size;
        }
        map.insert(path, record);
    }
    map.into_values().collect()
}

fn inventory() -> impl Strategy<Value = Inventory> {
    (
        proptest::collection::vec(wanted(), 0..24),
        any::<bool>(),
        "[0-9a-f]{64}",
        "[^\u{0}]{1,12}",
    )
        .prop_map(|(wishes, with_root, hex, name)| {
            let mut inv = common::empty();
            inv.image.name = name;
            inv.image.digest = format!("sha256:{hex}");
            inv.files = build_files(wishes, with_root);
            // One package per name used in a file origin, owning those files.
            let mut names: Vec<String> = inv
                .files
                .iter()
                .filter_map(|f| match &f.origin {
                    FileOrigin::Package(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            names.sort();
            names.dedup();
            let template = common::realistic().packages[1].clone();
            inv.packages = names
                .into_iter()
                .map(|name| kiln_sbom::Package {
                    files: inv
                        .files
                        .iter()
                        .filter(|f| f.origin == FileOrigin::Package(name.clone()))
                        .map(|f| f.path.clone())
                        .collect(),
                    name,
                    ..template.clone()
                })
                .collect();
            inv
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn file_manifest_round_trips(inv in inventory()) {
        let bytes = file_manifest_json(&inv);
        let parsed = FileManifest::parse(&bytes);
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
        let parsed = parsed.expect("checked");
        let expected: Vec<ManifestEntry> = inv.files.iter().map(ManifestEntry::from).collect();
        prop_assert_eq!(&parsed.entries, &expected);
        prop_assert_eq!(&parsed.subject.name, &inv.image.name);
        prop_assert_eq!(&parsed.subject.digest, &inv.image.digest);
        prop_assert_eq!(parsed.to_json(), bytes);
    }

    #[test]
    fn sbom_writers_are_total_and_deterministic(mut inv in inventory(), reverse in any::<bool>()) {
        let spdx = spdx_json(&inv);
        let cdx = cyclonedx_json(&inv);
        if reverse {
            inv.packages.reverse();
        }
        prop_assert_eq!(&spdx_json(&inv), &spdx);
        prop_assert_eq!(&cyclonedx_json(&inv), &cdx);
        let s = summarize(&spdx).expect("spdx summary");
        prop_assert_eq!(s.packages, inv.packages.len());
        let c = summarize(&cdx).expect("cdx summary");
        prop_assert_eq!(c.packages, inv.packages.len());
        prop_assert_eq!(c.files, s.files);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = FileManifest::parse(&bytes);
        let _ = summarize(&bytes);
    }

    #[test]
    fn parse_never_panics_on_mutated_manifests(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6)
    ) {
        let mut bytes = file_manifest_json(&common::realistic());
        for (at, byte, op) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        // Whatever survives must be a fixed point of parse ∘ to_json.
        if let Ok(m) = FileManifest::parse(&bytes) {
            let again = FileManifest::parse(&m.to_json());
            prop_assert_eq!(again.ok(), Some(m));
        }
        let _ = summarize(&bytes);
    }
}

/// The inventory strategy really produces every kind of entry, nesting, and
/// package origins (so the round trip above is not vacuous).
#[test]
fn inventory_strategy_covers_all_kinds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = inventory();
    let mut kinds = std::collections::BTreeSet::new();
    let (mut nested, mut packaged, mut total) = (false, false, 0);
    for _ in 0..200 {
        let inv = strategy
            .new_tree(&mut runner)
            .expect("strategy produces a value")
            .current();
        inv.validate().expect("generated inventories are valid");
        for f in &inv.files {
            kinds.insert(f.kind);
            nested |= f.path.matches('/').count() >= 3;
            packaged |= matches!(f.origin, FileOrigin::Package(_));
        }
        total += inv.files.len();
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(nested && packaged && total > 1000, "{total}");
}
