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

/// Hard links are identity, not content: a tree file that gains a name
/// outside the tree (so it can be edited from there without touching the
/// tree), or is swapped for a link to an outside file with the same
/// content, is a change; hard links inside the tree at `init` are not.
#[test]
fn fim_sees_hard_links_made_from_outside_the_tree() {
    let e = Env::new();
    let tree = e.path().join("tree");
    copy_dir(&repo().join("examples/hello"), &tree);
    // A legitimate internal hard link, present at init.
    fs::hard_link(tree.join("www/index.html"), tree.join("www/copy.html")).unwrap();
    let m = e.path().join("tree.manifest");
    let o = run(e
        .kiln()
        .arg("fim")
        .arg("init")
        .arg(&tree)
        .arg("--out")
        .arg(&m));
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = fs::read_to_string(&m).unwrap();
    assert!(manifest.contains("\"nlink\": 2"), "{manifest}");
    let check = |incremental: bool| {
        let mut c = e.kiln();
        c.args(["--json", "fim", "check"])
            .arg(&tree)
            .arg("--manifest")
            .arg(&m);
        if incremental {
            c.arg("--incremental");
        }
        run(&mut c)
    };
    for inc in [false, true] {
        let o = check(inc);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let outside = e.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // (b) An outside name for a tree file: nlink 1 -> 2, nothing else moves.
    fs::hard_link(tree.join("kiln.toml"), outside.join("kiln.toml")).unwrap();
    for inc in [true, false] {
        let o = check(inc);
        assert_eq!(
            o.status.code(),
            Some(4),
            "incremental {inc}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let v = json(&o);
        let c = &v["diff"]["changed"][0];
        assert_eq!(c["path"], "/kiln.toml", "{v:#}");
        assert_eq!(c["fields"], serde_json::json!(["nlink"]), "{v:#}");
        assert_eq!(c["baseline"]["nlink"], 1, "{v:#}");
        assert_eq!(c["actual"]["nlink"], 2, "{v:#}");
    }
    // Editing through the outside name is seen by the incremental check too
    // (the metadata cache must not hide it).
    fs::write(outside.join("kiln.toml"), "edited from outside\n").unwrap();
    let o = check(true);
    assert_eq!(o.status.code(), Some(4));
    let v = json(&o);
    let fields = v["diff"]["changed"][0]["fields"].to_string();
    assert!(
        fields.contains("sha256") && fields.contains("nlink"),
        "{v:#}"
    );
    fs::remove_file(outside.join("kiln.toml")).unwrap();
    fs::write(
        tree.join("kiln.toml"),
        fs::read(repo().join("examples/hello/kiln.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(check(true).status.code(), Some(0));
    // (a) A tree file replaced by a hard link to an outside file with the
    // same content and metadata: the outside name keeps a second link.
    let twin = outside.join("home");
    fs::copy(tree.join("pkg/build-deb.sh"), &twin).unwrap();
    set_mode(&twin, 0o755);
    fs::hard_link(&twin, tree.join("pkg/.swap")).unwrap();
    fs::rename(tree.join("pkg/.swap"), tree.join("pkg/build-deb.sh")).unwrap();
    let o = check(true);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = json(&o);
    assert_eq!(
        v["diff"]["changed"][0]["path"], "/pkg/build-deb.sh",
        "{v:#}"
    );
    assert_eq!(
        v["diff"]["changed"][0]["fields"],
        serde_json::json!(["nlink"]),
        "{v:#}"
    );
}
