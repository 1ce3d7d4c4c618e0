//! A scan that saw no data must not read as a scan that found nothing:
//! every way of loading no applicable advisory, or scanning an image with no
//! packages, fails the gate unless explicitly allowed; the age of the data is
//! the newest `modified` of what applied; the advisory set has a reproducible
//! digest.

use std::path::Path;

use kiln_scan::{AdvisoryDb, Gate, Inventory, Package, scan};
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn pkg(name: &str, version: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        source_name: name.into(),
        source_version: version.into(),
        status: "install ok installed".into(),
        status_file: "var/lib/dpkg/status".into(),
    }
}

fn rec(id: &str, eco: &str, modified: u64) -> Value {
    json!({
        "id": id,
        "modified": kiln_oci::time::rfc3339(modified),
        "affected": [{
            "package": { "ecosystem": eco, "name": "bash" },
            "ranges": [{ "type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9"}] }]
        }]
    })
}

fn image(release: Option<&str>) -> Inventory {
    let mut inv = Inventory::from_packages("img", vec![pkg("bash", "5.2-1")]);
    if let Some(r) = release {
        inv.os_id = Some("debian".into());
        inv.os_version_id = Some(r.into());
    }
    inv
}

fn load(dir: &Path) -> AdvisoryDb {
    AdvisoryDb::load(&[dir.to_path_buf()]).expect("load")
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), v.to_string()).expect("write");
}

/// A way to fill an advisory directory.
type Setup = Box<dyn Fn(&Path)>;

/// Every "no data" variant: the default gate fails with a reason naming the
/// cause; `allow_empty_advisories` lets it pass, with count 0 recorded.
#[test]
fn no_applicable_advisories_fails_the_gate() {
    let allow = Gate {
        allow_empty_advisories: true,
        ..Gate::default()
    };
    let cases: Vec<(&str, Setup, &str)> = vec![
        ("empty directory", Box::new(|_| {}), "no advisories loaded"),
        (
            "only non-JSON files",
            Box::new(|d| {
                std::fs::write(d.join("README.md"), "advisories").expect("w");
                std::fs::write(d.join("x.yaml"), "id: X").expect("w");
            }),
            "2 other file(s) skipped",
        ),
        (
            "an empty JSON array",
            Box::new(|d| write(d, "all.json", &json!([]))),
            "1 advisory file(s) read",
        ),
        (
            "only other ecosystems",
            Box::new(|d| {
                write(d, "a.json", &rec("PYSEC-1", "PyPI", T0));
                write(d, "b.json", &rec("GHSA-1", "Ubuntu:22.04", T0));
            }),
            "2 record(s) without a Debian entry",
        ),
        (
            "only withdrawn records",
            Box::new(|d| {
                let mut r = rec("DSA-W", "Debian:12", T0);
                r["withdrawn"] = json!("2026-01-02T00:00:00Z");
                write(d, "w.json", &r);
            }),
            "1 withdrawn",
        ),
        (
            "only another Debian release",
            Box::new(|d| write(d, "a.json", &rec("DSA-11", "Debian:11", T0))),
            "applies to Debian 12",
        ),
    ];
    for (what, setup, needle) in cases {
        let tmp = tempfile::tempdir().expect("tmp");
        setup(tmp.path());
        let r = scan(&image(Some("12")), &load(tmp.path()));
        assert_eq!(r.advisories.count, 0, "{what}");
        let v = Gate::default().evaluate_at(&r, T0);
        assert!(!v.pass, "{what}: an empty scan passed the gate");
        assert!(
            v.reasons.iter().any(|x| x.contains(needle)),
            "{what}: {:?}",
            v.reasons
        );
        assert!(
            v.reasons
                .iter()
                .any(|x| x.contains("--allow-empty-advisories")),
            "{what}: {:?}",
            v.reasons
        );
        assert_eq!(Gate::default().refusals(&r).len(), 1, "{what}");
        assert!(allow.evaluate_at(&r, T0).pass, "{what}");
        assert!(allow.refusals(&r).is_empty(), "{what}");
    }
}

/// A missing advisory path is an error naming it, not an empty set.
#[test]
fn missing_path_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let gone = tmp.path().join("nope");
    let e = AdvisoryDb::load(std::slice::from_ref(&gone)).expect_err("missing dir");
    assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
}

/// A FIFO (or device) named `*.json` is refused at once instead of hanging
/// the scan.
#[test]
fn non_regular_advisory_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fifo = tmp.path().join("x.json");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstr");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = AdvisoryDb::load(&[tmp.path().to_path_buf()]).expect_err("fifo");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = AdvisoryDb::load(&[fifo]).expect_err("fifo given directly");
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// An unknown release matches every Debian release, so advisories of any
/// release count; the table says the release is unknown.
#[test]
fn unknown_release_counts_every_release_and_the_table_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(tmp.path(), "a.json", &rec("DSA-11", "Debian:11", T0));
    let r = scan(&image(None), &load(tmp.path()));
    assert_eq!(r.advisories.count, 1);
    assert_eq!(r.advisories.release, None);
    assert!(Gate::default().evaluate_at(&r, T0).pass);
    let t = r.table();
    assert!(
        t.contains("note: the image's Debian release is unknown"),
        "{t}"
    );
    // A known release is named in the table too.
    let r = scan(&image(Some("11")), &load(tmp.path()));
    assert!(
        r.table().contains("advisories for Debian 11"),
        "{}",
        r.table()
    );
}

/// No dpkg packages: nothing was matched, so it fails unless allowed.
#[test]
fn image_without_packages_fails_the_gate() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(tmp.path(), "a.json", &rec("DSA-1", "Debian:12", T0));
    let mut inv = image(Some("12"));
    inv.packages.clear();
    let r = scan(&inv, &load(tmp.path()));
    let v = Gate::default().evaluate_at(&r, T0);
    assert!(!v.pass);
    assert!(v.reasons[0].contains("no installed dpkg packages"), "{v:?}");
    let allow = Gate {
        allow_no_packages: true,
        ..Gate::default()
    };
    assert!(allow.evaluate_at(&r, T0).pass);
}

/// The age is measured from the newest `modified` of the advisories that
/// apply, never from when they were read; with none, or one in the future,
/// the age is unknown and the gate fails.
#[test]
fn advisory_age_comes_from_the_data() {
    let max24 = |allow_empty| Gate {
        max_advisory_age_hours: Some(24),
        allow_empty_advisories: allow_empty,
        ..Gate::default()
    };
    let tmp = tempfile::tempdir().expect("tmp");
    write(tmp.path(), "old.json", &rec("DSA-12", "Debian:12", T0));
    // Fresh data, but for another release: it does not make Debian 12 fresh.
    write(
        tmp.path(),
        "new.json",
        &rec("DSA-13", "Debian:13", T0 + 10 * 86_400),
    );
    let db = load(tmp.path());
    let r = scan(&image(Some("12")), &db);
    assert_eq!(r.advisories.count, 1);
    assert_eq!(
        r.advisories.newest_modified.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert!(max24(false).evaluate_at(&r, T0 + 23 * 3600).pass);
    // Read just now (loaded_at is the wall clock) but modified 25 h before
    // `now`: stale.
    let v = max24(false).evaluate_at(&r, T0 + 25 * 3600);
    assert!(!v.pass);
    assert!(v.reasons[0].contains("25 hours old"), "{v:?}");
    // The Debian 13 image uses the fresh record.
    let r13 = scan(&image(Some("13")), &db);
    assert!(max24(false).evaluate_at(&r13, T0 + 10 * 86_400 + 3600).pass);
    // Zero advisories, even allowed: the age is unknown.
    let empty = tempfile::tempdir().expect("tmp");
    let r0 = scan(&image(Some("12")), &load(empty.path()));
    let v = max24(true).evaluate_at(&r0, T0);
    assert!(!v.pass);
    assert!(v.reasons[0].contains("age of the data is unknown"), "{v:?}");
    // A newest `modified` far in the future makes any age meaningless.
    let v = max24(false).evaluate_at(&r, T0 - 2 * 3600);
    assert!(!v.pass);
    assert!(v.reasons[0].contains("in the future"), "{v:?}");
}

/// The set digest: SHA-256 over the sorted hex SHA-256 of each file read;
/// independent of file names and order, sensitive to any byte.
#[test]
fn set_digest_is_reproducible() {
    use sha2::{Digest, Sha256};
    let a = rec("DSA-1", "Debian:12", T0).to_string();
    let b = rec("DSA-2", "Debian:12", T0).to_string();
    let t1 = tempfile::tempdir().expect("tmp");
    std::fs::write(t1.path().join("a.json"), &a).expect("w");
    std::fs::write(t1.path().join("b.json"), &b).expect("w");
    let t2 = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(t2.path().join("sub")).expect("mkdir");
    std::fs::write(t2.path().join("z.json"), &a).expect("w");
    std::fs::write(t2.path().join("sub/0.json"), &b).expect("w");
    let d1 = load(t1.path()).set_digest();
    assert_eq!(d1, load(t2.path()).set_digest());
    let mut lines = [
        hex::encode(Sha256::digest(a.as_bytes())),
        hex::encode(Sha256::digest(b.as_bytes())),
    ];
    lines.sort();
    let expect = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(format!("{}\n{}\n", lines[0], lines[1])))
    );
    assert_eq!(d1, expect);
    std::fs::write(t2.path().join("z.json"), format!("{a} ")).expect("w");
    assert_ne!(d1, load(t2.path()).set_digest());
    // The report carries it, with the algorithm's name.
    let r = scan(&image(Some("12")), &load(t1.path()));
    assert_eq!(r.advisories.digest, d1);
    assert_eq!(
        r.advisories.digest_algorithm,
        kiln_scan::osv::SET_DIGEST_ALGORITHM
    );
    assert_eq!((r.advisories.count, r.advisories.loaded), (2, 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The order files are added in never changes the digest.
    #[test]
    fn set_digest_ignores_order(ids in proptest::collection::vec("[A-Z]{1,6}", 1..8), seed in any::<u64>()) {
        let recs: Vec<String> = ids.iter().map(|i| rec(i, "Debian:12", T0).to_string()).collect();
        let mut fwd = AdvisoryDb::default();
        for (n, r) in recs.iter().enumerate() {
            fwd.add_json(r.as_bytes(), &format!("{n}.json")).expect("valid");
        }
        let mut order: Vec<usize> = (0..recs.len()).collect();
        let len = order.len();
        order.rotate_left((seed as usize) % len);
        order.reverse();
        let mut other = AdvisoryDb::default();
        for n in order {
            other.add_json(recs[n].as_bytes(), "x.json").expect("valid");
        }
        prop_assert_eq!(fwd.set_digest(), other.set_digest());
    }
}
