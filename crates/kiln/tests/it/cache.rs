//! `kiln cache status` and `kiln cache prune` on a repository cache filled
//! through kiln-repo's own API: what a lock names and what the newest
//! verified Release of a suite lists are kept, the rest goes; `--all`
//! empties; an unreadable lock removes nothing.

use kiln_repo::{Cache, Kind, LastRelease};

use crate::support::{Env, json, run, stderr};

#[test]
fn status_and_prune() {
    let e = Env::new();
    let c = Cache::new(e.state().join("cache"));
    let (locked_deb, _) = c.insert_bytes(Kind::Deb, b"a locked package").unwrap();
    let (stray_deb, stray_path) = c.insert_bytes(Kind::Deb, b"an old package").unwrap();
    let (index, _) = c.insert_bytes(Kind::Index, b"Packages.xz bytes").unwrap();
    let (old_index, _) = c.insert_bytes(Kind::Index, b"an older index").unwrap();
    // A compact index is named by the digest of the index it was made from.
    for d in [index, old_index] {
        c.insert_with(Kind::Parsed, &d, |w| {
            w.write_all(b"compact").unwrap();
            Ok(())
        })
        .unwrap();
    }
    let release = format!(
        "-----BEGIN PGP SIGNED MESSAGE-----\n\nSuite: bookworm\nSHA256:\n {} 17 main/binary-amd64/Packages.xz\n",
        index.hex()
    );
    let (inrelease, _) = c.insert_bytes(Kind::Index, release.as_bytes()).unwrap();
    c.set_last_release(
        "http://mirror.invalid/debian",
        "bookworm",
        &LastRelease::InRelease(inrelease),
    )
    .unwrap();
    // A download in progress.
    let tmp = e.state().join("cache/debs/sha256/.tmp-1-2-abc");
    std::fs::write(&tmp, b"partial").unwrap();

    let o = run(e.kiln().args(["cache", "status", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["files"], 7, "{v}");
    assert_eq!(v["kinds"][0]["kind"], "debs");
    assert_eq!(v["kinds"][0]["files"], 2);
    assert_eq!(v["kinds"][0]["temporary"], 1);
    assert_eq!(v["kinds"][1]["files"], 3);
    assert_eq!(v["kinds"][2]["kind"], "parsed");
    assert_eq!(v["suites"][0]["suite"], "bookworm");
    let o = run(e.kiln().args(["cache", "status"]));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("bookworm"));

    // A lock that cannot be read: an error, and nothing is removed.
    let o = run(e
        .kiln()
        .args(["cache", "prune", "-f"])
        .arg(e.path().join("missing.lock")));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.lock"), "{}", stderr(&o));
    assert!(stray_path.exists());

    let lock = e.path().join("kiln.lock");
    std::fs::write(
        &lock,
        format!(
            "[[package]]\nname = \"a\"\nsha256 = \"{}\"\n",
            locked_deb.hex()
        ),
    )
    .unwrap();
    let o = run(e
        .kiln()
        .args(["cache", "prune", "--json", "--lock"])
        .arg(&lock));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&o)["files"],
        3,
        "the old package, index and compact index"
    );
    assert!(c.get(Kind::Deb, &locked_deb, 16).unwrap().is_some());
    assert!(c.get(Kind::Deb, &stray_deb, 14).unwrap().is_none());
    assert!(c.path(Kind::Parsed, &index).exists());
    assert!(!c.path(Kind::Parsed, &old_index).exists());
    assert!(c.path(Kind::Index, &inrelease).exists());
    assert!(tmp.exists(), "a temporary file in use is never removed");

    let o = run(e.kiln().args(["cache", "prune", "--all", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["suites_forgotten"], 1);
    let v = json(&run(e.kiln().args(["cache", "status", "--json"])));
    assert_eq!(v["files"], 0, "{v}");
    assert_eq!(v["suites"].as_array().map(Vec::len), Some(0));
    assert!(tmp.exists());
}
