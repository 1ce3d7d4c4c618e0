//! inventory_from_store on the hello example built with kiln_image.

use std::path::Path;
use std::sync::Arc;

use kiln_image::{BuildOptions, Compression, Spec, build};
use kiln_oci::Store;
use kiln_scan::inventory::FilesSource;
use kiln_scan::{AdvisoryDb, Gate, Severity, inventory_from_store, scan};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if e.file_type().expect("type").is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn hello_image_inventory_and_scan() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("hello");
    copy_dir(&repo.join("examples/hello"), &dir);
    let bb = dir.join("bin/busybox");
    if !bb.exists() {
        std::fs::create_dir_all(dir.join("bin")).expect("bin");
        if Path::new("/bin/busybox").exists() {
            std::fs::copy("/bin/busybox", &bb).expect("busybox");
        } else {
            // A stand-in that cannot start: the build's entrypoint check is off.
            std::fs::write(&bb, b"#!/bin/sh\necho not-really-busybox\n").expect("busybox");
            let spec = dir.join("kiln.toml");
            let text = std::fs::read_to_string(&spec).expect("spec");
            let text = text.replacen("[image]\n", "[image]\ncheck_entrypoint = false\n", 1);
            std::fs::write(&spec, text).expect("spec");
        }
    }
    let spec = Spec::load(&dir.join("kiln.toml")).expect("spec");
    let state = tmp.path().join("state");
    let report = build(
        &spec,
        &BuildOptions {
            state_dir: state.clone(),
            compression: Compression::Gzip,
            tag: None,
            out: None,
            threads: 2,
            source_date_epoch: Some("1700000000".into()),
            progress: Arc::new(kiln_image::build::Quiet),
            offline: false,
        },
    )
    .expect("build");
    let store = Store::open(state.join("store")).expect("store");
    let inv = inventory_from_store(&store, &report.digest).expect("inventory");
    let p = inv
        .packages
        .iter()
        .find(|p| p.name == "hello-config")
        .expect("hello-config in the dpkg status");
    assert_eq!(p.version, "1.0-1");
    assert_eq!(p.source_name, "hello-config");
    assert_eq!(inv.files_source, FilesSource::FileManifest);
    assert!(inv.files.iter().any(|f| f.path == "/bin/busybox"));
    assert_eq!(inv.config.config.user.as_deref(), Some("65532:65532"));
    let b = inv.baseline.as_ref().expect("baseline label");
    assert_eq!(b.ingress, vec![8080]);
    assert_eq!(inv.image, "hello");

    let tmp_osv = tmp.path().join("osv");
    std::fs::create_dir_all(&tmp_osv).expect("osv");
    std::fs::write(
        tmp_osv.join("DSA-0001.json"),
        r#"{"id":"DSA-0001","modified":"2025-01-01T00:00:00Z","summary":"hello-config bug",
            "database_specific":{"severity":"high"},
            "affected":[{"package":{"ecosystem":"Debian:12","name":"hello-config"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}]}"#,
    )
    .expect("write");
    let db = AdvisoryDb::load(&[tmp_osv]).expect("load");
    let r = scan(&inv, &db);
    assert_eq!(r.vulnerabilities.len(), 1, "{r:?}");
    assert_eq!(r.vulnerabilities[0].fixed.as_deref(), Some("1.0-2"));
    // The example is a clean baseline.
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let g = Gate {
        fail_on: Some(Severity::High),
        ..Gate::default()
    };
    assert!(!g.evaluate(&r).pass);
}
