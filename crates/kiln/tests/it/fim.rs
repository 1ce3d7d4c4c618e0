//! `kiln fim`: standalone file integrity monitoring with AIDE's exit status.

use std::fs;
use std::os::unix::fs::symlink;

use crate::support::*;

#[test]
fn fim_reports_each_kind_of_change_with_the_aide_bitmask() {
    let e = Env::new();
    let tree = e.path().join("tree");
    copy_dir(&repo().join("examples/hello"), &tree);
    symlink("www/index.html", tree.join("link")).unwrap();
    let m = e.path().join("tree.manifest");
    let o = run(e
        .kiln()
        .arg("fim")
        .arg("init")
        .arg(&tree)
        .arg("--out")
        .arg(&m));
    assert!(o.status.success(), "{}", stderr(&o));
    let check = |incremental: bool| {
        let mut c = e.kiln();
        c.arg("fim")
            .arg("check")
            .arg(&tree)
            .arg("--manifest")
            .arg(&m);
        if incremental {
            c.arg("--incremental");
        }
        run(&mut c)
    };
    assert_eq!(check(false).status.code(), Some(0));
    assert_eq!(check(true).status.code(), Some(0));
    fs::write(tree.join("added"), "x").unwrap();
    assert_eq!(check(true).status.code(), Some(1));
    fs::remove_file(tree.join("added")).unwrap();
    fs::remove_file(tree.join("www/home.html")).unwrap();
    assert_eq!(check(true).status.code(), Some(2));
    set_mode(&tree.join("kiln.toml"), 0o600);
    assert_eq!(check(true).status.code(), Some(6));
    fs::remove_file(tree.join("link")).unwrap();
    symlink("elsewhere", tree.join("link")).unwrap();
    fs::write(tree.join("new"), "y").unwrap();
    let o = check(false);
    assert_eq!(o.status.code(), Some(7));
    let out = String::from_utf8_lossy(&o.stdout);
    for p in ["/new", "/www/home.html", "/kiln.toml", "/link"] {
        assert!(out.contains(p), "{p} missing from:\n{out}");
    }
    // A missing manifest is an error, not a finding.
    let o = run(e
        .kiln()
        .arg("fim")
        .arg("check")
        .arg(&tree)
        .arg("--manifest")
        .arg(e.path().join("nope")));
    assert_eq!(o.status.code(), Some(18));
    // Checks are audit events (PCI DSS 11.5.2 evidence).
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "drift.check"]));
    assert!(json(&o).as_array().unwrap().len() >= 6);
}
