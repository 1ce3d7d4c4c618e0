//! Snapshot, determinism and content tests for the three serialisations.
//!
//! Regenerate the fixtures with `UPDATE_SNAPSHOTS=1 cargo test -p kiln-sbom --test snapshots`.

mod common;

use std::path::PathBuf;

use kiln_sbom::{
    FileManifest, Inventory, SbomFormat, cyclonedx_json, file_manifest_json, purl, spdx_json,
    summarize,
};
use serde_json::Value;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check_snapshot(name: &str, actual: &[u8]) {
    let path = fixture_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let actual_path = path.with_extension("actual.json");
        let _ = std::fs::write(&actual_path, actual);
        panic!(
            "{} differs from the snapshot; new output written to {} \
             (run with UPDATE_SNAPSHOTS=1 to accept it)",
            path.display(),
            actual_path.display()
        );
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("writer emits valid JSON")
}

#[test]
fn small_inventory_is_valid() {
    common::small().validate().expect("small is valid");
    common::realistic().validate().expect("realistic is valid");
    common::empty().validate().expect("empty is valid");
    common::hostile().validate().expect("hostile is valid");
}

#[test]
fn spdx_snapshot() {
    check_snapshot("small.spdx.json", &spdx_json(&common::small()));
}

#[test]
fn cyclonedx_snapshot() {
    check_snapshot("small.cdx.json", &cyclonedx_json(&common::small()));
}

#[test]
fn file_manifest_snapshot() {
    check_snapshot("small.files.json", &file_manifest_json(&common::small()));
}

#[test]
fn outputs_are_deterministic_and_independent_of_package_order() {
    let inv = common::realistic();
    let mut shuffled = inv.clone();
    shuffled.packages.reverse();
    for write in [spdx_json, cyclonedx_json, file_manifest_json] {
        let a = write(&inv);
        assert_eq!(a, write(&inv.clone()));
        assert_eq!(a, write(&shuffled));
    }
}

#[test]
fn outputs_are_pretty_with_trailing_newline() {
    let inv = common::small();
    for bytes in [
        spdx_json(&inv),
        cyclonedx_json(&inv),
        file_manifest_json(&inv),
    ] {
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.starts_with("{\n  \""), "2-space pretty JSON");
        assert!(text.ends_with("}\n"));
        assert!(!text.ends_with("\n\n"));
    }
}

/// Every output is byte for byte what serde_json's pretty printer makes of
/// it (2-space indent, its string escaping) plus one newline, including for
/// records the templates special-case (missing hashes, hard links, escapes).
#[test]
fn outputs_are_canonical_pretty_json() {
    let mut odd = common::realistic();
    for f in &mut odd.files {
        match f.path.as_str() {
            "/bin/busybox" => f.sha1 = None,
            "/etc/hello.conf" => f.sha256 = None,
            "/usr/bin/hello" => (f.sha1, f.sha256) = (None, None),
            _ => {}
        }
    }
    for inv in [
        common::small(),
        common::realistic(),
        common::empty(),
        common::hostile(),
        odd,
    ] {
        for bytes in [
            spdx_json(&inv),
            cyclonedx_json(&inv),
            file_manifest_json(&inv),
        ] {
            let mut canonical = serde_json::to_vec_pretty(&json(&bytes)).expect("serialise");
            canonical.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&canonical)
            );
        }
    }
}

#[test]
fn different_images_get_different_identifiers() {
    let a = common::small();
    let mut b = a.clone();
    b.image.digest = format!("sha256:{}", common::sha256(b"other"));
    let (sa, sb) = (json(&spdx_json(&a)), json(&spdx_json(&b)));
    assert_ne!(sa["documentNamespace"], sb["documentNamespace"]);
    let (ca, cb) = (json(&cyclonedx_json(&a)), json(&cyclonedx_json(&b)));
    assert_ne!(ca["serialNumber"], cb["serialNumber"]);
}

#[test]
fn spdx_content() {
    let inv = common::realistic();
    let doc = json(&spdx_json(&inv));
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["creationInfo"]["created"], "2024-05-01T12:34:56Z");
    assert_eq!(doc["creationInfo"]["creators"][0], "Tool: kiln-0.1.0");
    let hex = inv.image.digest.trim_start_matches("sha256:");
    assert_eq!(
        doc["documentNamespace"],
        format!("https://kiln.dev/spdx/registry.example.com%3A5000/acme/hello/sha256-{hex}")
    );

    let packages = doc["packages"].as_array().expect("packages");
    assert_eq!(packages.len(), 4);
    let image = &packages[0];
    assert_eq!(image["SPDXID"], "SPDXRef-Image");
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    assert_eq!(image["versionInfo"], "1.0.0");
    assert_eq!(
        image["externalRefs"][0]["referenceLocator"],
        format!(
            "pkg:oci/hello@sha256%3A{hex}?repository_url=registry.example.com%3A5000/acme/hello"
        )
    );
    // Sorted by name: busybox, libc6, tzdata.
    let names: Vec<&str> = packages[1..]
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["busybox", "libc6", "tzdata"]);
    let busybox = &packages[1];
    assert_eq!(busybox["versionInfo"], "1:1.35.0-4+b3");
    assert_eq!(
        busybox["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/busybox@1:1.35.0-4%2Bb3?arch=amd64&distro=bookworm"
    );
    assert_eq!(
        busybox["supplier"],
        "Organization: Debian Busybox Team (busybox@packages.debian.org)"
    );
    assert_eq!(
        busybox["sourceInfo"],
        "built from Debian source package busybox 1:1.35.0-4"
    );
    assert_eq!(busybox["filesAnalyzed"], true);
    assert_eq!(busybox["checksums"][0]["algorithm"], "SHA256");
    let comment = busybox["comment"].as_str().unwrap_or_default();
    assert!(comment.contains("Maintainer scripts not run: postinst, prerm."));
    let libc = &packages[2];
    assert!(libc.get("supplier").is_none(), "unformattable maintainer");
    assert!(libc.get("homepage").is_none(), "invalid homepage left out");
    assert_eq!(
        libc["sourceInfo"],
        "built from Debian source package glibc 2.36-9+deb12u4"
    );
    assert_eq!(
        libc["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
    );

    // Files: package-owned and spec regular files and hard links only.
    let files = doc["files"].as_array().expect("files");
    let names: Vec<&str> = files
        .iter()
        .map(|f| f["fileName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "./bin/busybox",
            "./bin/ls",
            "./etc/hello.conf",
            "./srv/données/hello world – ünïcode.txt",
            "./srv/données/spaced  name",
            "./usr/bin/hello",
            "./usr/lib/x86_64-linux-gnu/libc.so.6",
            "./usr/lib/x86_64-linux-gnu/libm.so.6",
            "./usr/share/doc/busybox/copyright",
            "./usr/share/zoneinfo/Etc/UTC",
            "./usr/share/zoneinfo/UCT",
            "./usr/share/zoneinfo/Zulu",
        ]
    );
    for f in files {
        let id = f["SPDXID"].as_str().unwrap_or_default();
        assert!(id.starts_with("SPDXRef-File-"));
        assert!(
            id["SPDXRef-".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            "{id}"
        );
        let algs: Vec<&str> = f["checksums"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["algorithm"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(algs, ["SHA1", "SHA256"]);
    }

    // Verification code of busybox: its files are /bin/busybox, /bin/ls (same content)
    // and the copyright file.
    let mut sha1s = [
        common::sha1(b"\x7fELF busybox 1.35.0"),
        common::sha1(b"\x7fELF busybox 1.35.0"),
        common::sha1(b"Copyright: Erik Andersen\n"),
    ];
    sha1s.sort();
    assert_eq!(
        busybox["packageVerificationCode"]["packageVerificationCodeValue"],
        common::sha1(sha1s.concat().as_bytes())
    );

    let rels = doc["relationships"].as_array().expect("relationships");
    let has = |from: &str, kind: &str, to: &str| {
        rels.iter().any(|r| {
            r["spdxElementId"] == from
                && r["relationshipType"] == kind
                && r["relatedSpdxElement"] == to
        })
    };
    assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
    for p in &packages[1..] {
        assert!(has(
            "SPDXRef-Image",
            "CONTAINS",
            p["SPDXID"].as_str().unwrap_or_default()
        ));
    }
    let file_id = |name: &str| {
        files
            .iter()
            .find(|f| f["fileName"] == name)
            .and_then(|f| f["SPDXID"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let busybox_id = busybox["SPDXID"].as_str().unwrap_or_default();
    assert!(has(busybox_id, "CONTAINS", &file_id("./bin/busybox")));
    assert!(has(
        "SPDXRef-Image",
        "CONTAINS",
        &file_id("./etc/hello.conf")
    ));
    assert!(has(
        libc["SPDXID"].as_str().unwrap_or_default(),
        "CONTAINS",
        &file_id("./usr/lib/x86_64-linux-gnu/libc.so.6")
    ));
    // Every package that contains files says so; packages without files do not.
    for p in packages {
        let id = p["SPDXID"].as_str().unwrap_or_default();
        let contains_files = rels.iter().any(|r| {
            r["spdxElementId"] == id
                && r["relationshipType"] == "CONTAINS"
                && r["relatedSpdxElement"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("SPDXRef-File-"))
        });
        assert_eq!(p["filesAnalyzed"], contains_files, "{id}");
        assert_eq!(
            p.get("packageVerificationCode").is_some(),
            contains_files,
            "{id}"
        );
    }
}

#[test]
fn spdx_without_spec_files_does_not_analyse_the_image() {
    let doc = json(&spdx_json(&common::empty()));
    assert_eq!(doc["packages"][0]["filesAnalyzed"], false);
    assert!(doc["packages"][0].get("packageVerificationCode").is_none());
    assert!(doc.get("files").is_none());
    assert_eq!(doc["name"], "scratch");
}

#[test]
fn cyclonedx_content() {
    let inv = common::realistic();
    let bom = json(&cyclonedx_json(&inv));
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert_eq!(bom["version"], 1);
    let serial = bom["serialNumber"].as_str().unwrap_or_default();
    assert!(serial.starts_with("urn:uuid:"));
    assert_eq!(serial.len(), "urn:uuid:".len() + 36);
    assert_eq!(bom["metadata"]["timestamp"], "2024-05-01T12:34:56Z");
    assert_eq!(bom["metadata"]["tools"]["components"][0]["name"], "kiln");
    let image = &bom["metadata"]["component"];
    assert_eq!(image["type"], "container");
    assert_eq!(image["name"], "registry.example.com:5000/acme/hello");
    assert_eq!(image["version"], "1.0.0");
    assert_eq!(image["bom-ref"], image["purl"]);

    let components = bom["components"].as_array().expect("components");
    let libraries: Vec<&Value> = components
        .iter()
        .filter(|c| c["type"] == "library")
        .collect();
    let files: Vec<&Value> = components.iter().filter(|c| c["type"] == "file").collect();
    assert_eq!(libraries.len(), 3);
    assert_eq!(files.len(), 12);
    let busybox = libraries[0];
    assert_eq!(busybox["name"], "busybox");
    assert_eq!(busybox["bom-ref"], busybox["purl"]);
    assert_eq!(
        busybox["purl"],
        "pkg:deb/debian/busybox@1:1.35.0-4%2Bb3?arch=amd64&distro=bookworm"
    );
    let prop = |c: &Value, name: &str| -> Vec<String> {
        c["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == name)
            .map(|p| p["value"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(prop(busybox, "kiln:package:source-version"), ["1:1.35.0-4"]);
    assert_eq!(
        prop(busybox, "kiln:package:maintainer-scripts-not-run"),
        ["postinst,prerm"]
    );
    assert_eq!(prop(busybox, "kiln:package:origin"), ["deb"]);
    assert_eq!(prop(libraries[1], "kiln:package:source-name"), ["glibc"]);
    assert_eq!(prop(libraries[1], "kiln:package:origin"), ["base-image"]);
    let utc = files
        .iter()
        .find(|f| f["name"] == "/usr/share/zoneinfo/UCT")
        .expect("UCT");
    assert_eq!(utc["hashes"][0]["alg"], "SHA-1");
    assert_eq!(utc["hashes"][1]["alg"], "SHA-256");
    assert_eq!(prop(utc, "kiln:file:package"), ["tzdata"]);
    assert_eq!(
        prop(utc, "kiln:file:hardlink-target"),
        ["/usr/share/zoneinfo/Etc/UTC"]
    );

    let deps = bom["dependencies"].as_array().expect("dependencies");
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0]["ref"], image["bom-ref"]);
    let depends: Vec<&Value> = deps[0]["dependsOn"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(depends.len(), 3);
}

#[test]
fn file_manifest_lists_every_path() {
    let inv = common::realistic();
    let bytes = file_manifest_json(&inv);
    let m = FileManifest::parse(&bytes).expect("round trip");
    assert_eq!(m.entries.len(), inv.files.len());
    assert_eq!(m.subject.name, inv.image.name);
    assert_eq!(m.subject.digest, inv.image.digest);
    let doc = json(&bytes);
    let tmp = &doc["entries"][inv.files.iter().position(|f| f.path == "/tmp").unwrap_or(0)];
    assert_eq!(tmp["mode"], "1777");
    assert_eq!(tmp["type"], "dir");
    let hello = m.get("/usr/bin/hello").expect("listed");
    assert_eq!(hello.mode, 0o4755);
    let ls = &doc["entries"][inv
        .files
        .iter()
        .position(|f| f.path == "/bin/ls")
        .unwrap_or(0)];
    assert_eq!(ls["type"], "hardlink");
    assert_eq!(ls["link"], "/bin/busybox");
    assert_eq!(ls["origin"], "package:busybox");
    assert!(ls.get("sha1").is_none());
}

#[test]
fn summarize_recognises_all_three() {
    let inv = common::realistic();
    let s = summarize(&spdx_json(&inv)).expect("spdx");
    assert_eq!(s.format, SbomFormat::Spdx);
    assert_eq!(s.version, "2.3");
    assert_eq!((s.packages, s.files), (3, 12));
    assert_eq!(
        s.subject.as_deref(),
        Some("registry.example.com:5000/acme/hello:1.0.0")
    );

    let c = summarize(&cyclonedx_json(&inv)).expect("cyclonedx");
    assert_eq!(c.format, SbomFormat::CycloneDx);
    assert_eq!(c.version, "1.5");
    assert_eq!((c.packages, c.files), (3, 12));

    let m = summarize(&file_manifest_json(&inv)).expect("manifest");
    assert_eq!(m.format, SbomFormat::FileManifest);
    assert_eq!((m.packages, m.files), (2, inv.files.len()));

    assert!(summarize(b"[]").is_err());
    assert!(summarize(b"{}").is_err());
    assert!(summarize(b"not json").is_err());
    assert!(summarize(br#"{"spdxVersion": 3}"#).is_err());
    assert!(summarize(br#"{"spdxVersion": "SPDX-2.3", "packages": {}}"#).is_err());
    assert!(
        summarize(br#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [1]}"#)
            .is_err()
    );
    let nested = br#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[
        {"type":"library","name":"a","components":[{"type":"file","name":"f"},{"type":"library","name":"b"}]}]}"#;
    let n = summarize(nested).expect("nested");
    assert_eq!((n.packages, n.files, n.version.as_str()), (2, 1, "1.4"));
}

#[test]
fn inventory_validation_catches_bad_records() {
    let good = common::realistic();
    let mut bad: Vec<(&str, Inventory)> = Vec::new();
    let mut inv = good.clone();
    inv.image.digest = "sha256:XYZ".into();
    bad.push(("digest", inv));
    let mut inv = good.clone();
    inv.image.created = "yesterday".into();
    bad.push(("created", inv));
    let mut inv = good.clone();
    inv.files.swap(1, 2);
    bad.push(("order", inv));
    let mut inv = good.clone();
    if let Some(f) = inv.files.iter_mut().find(|f| f.path == "/bin/busybox") {
        f.sha1 = None;
    }
    bad.push(("sha1", inv));
    let mut inv = good.clone();
    if let Some(f) = inv.files.iter_mut().find(|f| f.path == "/bin/busybox") {
        f.origin = common::pkg("nonexistent");
    }
    bad.push(("origin", inv));
    let mut inv = good.clone();
    inv.files.retain(|f| f.path != "/usr/lib");
    bad.push(("parent", inv));
    let mut inv = good;
    inv.packages[0].files.push("relative/path".into());
    bad.push(("package file", inv));
    for (what, inv) in bad {
        assert!(inv.validate().is_err(), "{what} should be rejected");
    }
}

#[test]
fn purl_examples_from_formats_reference() {
    assert_eq!(
        purl::deb("curl", "7.50.3-1", "i386", Some("jessie")),
        "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"
    );
    let hex = "0".repeat(64);
    assert_eq!(
        purl::oci("hello", &format!("sha256:{hex}")),
        format!("pkg:oci/hello@sha256%3A{hex}")
    );
}
