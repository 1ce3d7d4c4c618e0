//! Tests of [`super`]: exports served by a local HTTP server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// One canned HTTP response.
struct Reply {
    status: u16,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// Announce this length instead of the body's (a truncated download).
    length: Option<usize>,
}

impl Reply {
    fn zip(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            content_type: Some("application/zip"),
            body,
            length: None,
        }
    }
}

/// Serve `replies` in order, one per connection; the URL of `/Debian/all.zip`.
fn serve(replies: Vec<Reply>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for r in replies {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut rd = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while rd.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut head = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                r.status,
                r.length.unwrap_or(r.body.len())
            );
            if let Some(ct) = r.content_type {
                head.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            head.push_str("\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&r.body);
        }
    });
    format!("http://127.0.0.1:{port}/Debian/all.zip")
}

fn record(id: &str, pkg: &str, modified: &str, ecosystem: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","modified":"{modified}","affected":[{{"package":{{"ecosystem":"{ecosystem}","name":"{pkg}"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"1.2-1"}}]}}]}}]}}"#
    )
    .into_bytes()
}

fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (n, d) in entries {
        w.start_file(*n, o).unwrap();
        w.write_all(d).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn export() -> Vec<u8> {
    zip_of(&[
        (
            "DSA-1-1.json",
            record("DSA-1-1", "openssl", "2026-01-02T03:04:05Z", "Debian:12"),
        ),
        (
            "DLA-2-1.json",
            record("DLA-2-1", "zlib", "2026-02-01T00:00:00Z", "Debian:11"),
        ),
        (
            "PYSEC-1.json",
            record("PYSEC-1", "flask", "2026-03-01T00:00:00Z", "PyPI"),
        ),
        ("README.txt", b"not a record".to_vec()),
    ])
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn opts(url: &str) -> SyncOptions {
    let mut o = SyncOptions::new(url);
    o.timeout = Duration::from_secs(10);
    o
}

/// Only `current` and set directories: no temporary left behind.
fn listing(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir(state))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_sync_stores_the_set_and_scans_load_it() {
    let state = tempfile::tempdir().unwrap();
    let body = export();
    let hex = hex::encode(Sha256::digest(&body));
    let url = serve(vec![Reply::zip(body.clone()), Reply::zip(body)]);
    let s = sync(state.path(), &opts(&url), at(1_800_000_000)).unwrap();
    assert!(!s.unchanged && s.previous.is_none());
    assert_eq!(s.set.archive_digest, format!("sha256:{hex}"));
    assert_eq!((s.set.files, s.set.skipped, s.set.count), (3, 1, 2));
    assert_eq!(
        s.set.newest_modified.as_deref(),
        Some("2026-02-01T00:00:00Z")
    );
    assert_eq!(s.set.fetched_at, "2027-01-15T08:00:00Z");
    assert_eq!(listing(state.path()), [hex.clone(), "current".to_string()]);
    let (set, db) = load_current(state.path()).unwrap().unwrap();
    assert_eq!(set, s.set);
    assert_eq!(db.len(), 2);
    assert_eq!(db.set_digest(), set.set_digest);
    assert_eq!(db.source, url);
    assert_eq!(db.feed.as_ref().unwrap().archive_digest, set.archive_digest);
    // The same export again: nothing unpacked anew, a new fetch time.
    let again = sync(state.path(), &opts(&url), at(1_800_003_600)).unwrap();
    assert!(again.unchanged);
    assert_eq!(again.previous.as_ref(), Some(&s.set));
    assert_eq!(
        current(state.path()).unwrap().unwrap().fetched_at,
        "2027-01-15T09:00:00Z"
    );
}

#[test]
fn nothing_synced_is_none() {
    let state = tempfile::tempdir().unwrap();
    assert!(load_current(state.path()).unwrap().is_none());
}

#[test]
fn bad_downloads_change_nothing() {
    let state = tempfile::tempdir().unwrap();
    let good = export();
    let url = serve(vec![
        Reply::zip(good.clone()),
        Reply {
            content_type: Some("text/html; charset=utf-8"),
            ..Reply::zip(good.clone())
        },
        Reply {
            content_type: None,
            ..Reply::zip(good.clone())
        },
        Reply {
            length: Some(good.len() + 1000),
            ..Reply::zip(good.clone())
        },
        Reply {
            status: 404,
            ..Reply::zip(b"no".to_vec())
        },
        Reply::zip(zip_of(&[(
            "../x.json",
            record("X", "x", "2026-01-01T00:00:00Z", "Debian"),
        )])),
        Reply::zip(zip_of(&[(
            "P.json",
            record("P", "x", "2026-01-01T00:00:00Z", "PyPI"),
        )])),
        Reply::zip(zip_of(&[("B.json", b"{\"id\": 5}".to_vec())])),
        Reply::zip(good.clone()),
    ]);
    let first = sync(state.path(), &opts(&url), at(1_800_000_000)).unwrap();
    let before = listing(state.path());
    let err = |e: FeedError| e.to_string();
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_001)).unwrap_err());
    assert!(
        e.contains("content type \"text/html; charset=utf-8\" is not a zip archive"),
        "{e}"
    );
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_002)).unwrap_err());
    assert!(e.contains("content type (none)"), "{e}");
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_003)).unwrap_err());
    assert!(e.contains("truncated download"), "{e}");
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_004)).unwrap_err());
    assert!(e.contains("HTTP status 404"), "{e}");
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_005)).unwrap_err());
    assert!(e.contains("\"../x.json\"") && e.contains("refused"), "{e}");
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_006)).unwrap_err());
    assert!(e.contains("no Debian advisory"), "{e}");
    let e = err(sync(state.path(), &opts(&url), at(1_800_000_007)).unwrap_err());
    assert!(e.contains("B.json"), "{e}");
    assert_eq!(listing(state.path()), before);
    assert_eq!(current(state.path()).unwrap().unwrap(), first.set);
    // Too large for the limit: refused by its Content-Length.
    let mut small = opts(&url);
    small.max_bytes = 100;
    let e = err(sync(state.path(), &small, at(1_800_000_008)).unwrap_err());
    assert!(e.contains("more than 100 bytes"), "{e}");
    assert_eq!(listing(state.path()), before);
}

#[test]
fn changed_records_are_detected_and_a_sync_repairs_them() {
    let state = tempfile::tempdir().unwrap();
    let body = export();
    let url = serve(vec![Reply::zip(body.clone()), Reply::zip(body)]);
    let s = sync(state.path(), &opts(&url), at(1_800_000_000)).unwrap();
    let hex = s.set.archive_digest.strip_prefix("sha256:").unwrap();
    let f = dir(state.path()).join(hex).join("osv/DSA-1-1.json");
    fs::write(
        &f,
        record("DSA-1-1", "openssl", "2026-01-02T03:04:05Z", "Debian:11"),
    )
    .unwrap();
    let e = load_current(state.path()).unwrap_err().to_string();
    assert!(
        e.contains("changed since they were synced") && e.contains("kiln advisories sync"),
        "{e}"
    );
    let again = sync(state.path(), &opts(&url), at(1_800_000_100)).unwrap();
    assert!(!again.unchanged, "a damaged set is replaced");
    assert!(load_current(state.path()).unwrap().is_some());
}

#[test]
fn prune_keeps_the_current_and_the_previous_set() {
    let state = tempfile::tempdir().unwrap();
    let a = export();
    let b = zip_of(&[(
        "DSA-9-1.json",
        record("DSA-9-1", "curl", "2026-04-01T00:00:00Z", "Debian:12"),
    )]);
    let c = zip_of(&[(
        "DSA-8-1.json",
        record("DSA-8-1", "curl", "2026-05-01T00:00:00Z", "Debian:12"),
    )]);
    let url = serve(vec![Reply::zip(a), Reply::zip(b), Reply::zip(c)]);
    let first = sync(state.path(), &opts(&url), at(1_800_000_000)).unwrap();
    let second = sync(state.path(), &opts(&url), at(1_800_000_001)).unwrap();
    let third = sync(state.path(), &opts(&url), at(1_800_000_002)).unwrap();
    assert_eq!(listing(state.path()).len(), 4);
    let removed = prune(state.path(), &[third.previous.as_ref().unwrap()]);
    let hex = |s: &SyncedSet| {
        s.archive_digest
            .strip_prefix("sha256:")
            .unwrap()
            .to_string()
    };
    assert_eq!(removed, [hex(&first.set)]);
    let mut want = vec![hex(&second.set), hex(&third.set), "current".to_string()];
    want.sort();
    assert_eq!(listing(state.path()), want);
    assert!(load_current(state.path()).unwrap().is_some());
}
