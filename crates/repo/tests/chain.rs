//! The verified chain against a local HTTP server serving a fixture
//! repository that the test signs itself, and its hostile variants.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use kiln_repo::{
    Keyring, Kind, LowSpeedLimit, Options, RepoClient, RepoError, RepositoryConfig, Timeouts,
};
use support::{Answer, DATE, Fixture, NOW, Server, Signer, VALID_UNTIL_TEXT, sha256_hex};

fn options() -> Options {
    Options {
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(1),
            low_speed: LowSpeedLimit {
                bytes: 1,
                window: Duration::from_secs(1),
            },
        },
        ..Options::default()
    }
}

fn keyring(s: &Signer) -> Keyring {
    Keyring::from_bytes(&s.keyring_binary(), "test keyring").unwrap()
}

/// Files in one part of the cache, temporary ones included.
fn cached(cache: &Path, kind: &str) -> Vec<String> {
    match fs::read_dir(cache.join(kind).join("sha256")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

struct Setup {
    server: Server,
    fixture: Fixture,
    signer: Signer,
    dir: tempfile::TempDir,
    client: RepoClient,
}

fn setup() -> Setup {
    let server = Server::start();
    let fixture = Fixture::new("../../../etc/passwd");
    let signer = Signer::new(1, true);
    let release = fixture.release("bookworm", Some(VALID_UNTIL_TEXT), None);
    fixture.serve(&server, "bookworm", &release, &signer);
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path(), options());
    Setup {
        server,
        fixture,
        signer,
        dir,
        client,
    }
}

#[test]
fn the_whole_chain_and_the_cache() {
    let s = setup();
    let k = keyring(&s.signer);
    let suite = s
        .client
        .fetch_release(&s.server.base, "bookworm", &k, NOW)
        .unwrap();
    assert_eq!(suite.signed_by.primary, s.signer.fingerprint());
    assert_ne!(
        suite.signed_by.key, suite.signed_by.primary,
        "the subkey signed"
    );
    assert_eq!(suite.release.codename.as_deref(), Some("bookworm"));
    assert_eq!(suite.release.date, Some(DATE));
    let pkgs = s.client.fetch_packages(&suite, "main", "amd64").unwrap();
    assert_eq!(pkgs.len(), 2);
    let hello = &pkgs[0];
    assert_eq!(hello.name, "hello");
    assert_eq!(hello.depends[1].alternatives.len(), 2);
    // Only the by-hash path was served, so it was used.
    assert!(
        s.server
            .hits()
            .iter()
            .any(|h| h.contains("/by-hash/SHA256/"))
    );
    let deb = s.client.fetch_deb(&suite.base_url, hello).unwrap();
    assert_eq!(fs::read(&deb).unwrap(), s.fixture.deb);
    assert_eq!(
        deb,
        s.dir
            .path()
            .join("debs/sha256")
            .join(sha256_hex(&s.fixture.deb))
    );

    // Offline, from the cache alone: the InRelease by its digest, the
    // index and the package.
    s.server.clear();
    let offline = RepoClient::new(
        s.dir.path(),
        Options {
            offline: true,
            ..options()
        },
    );
    let again = offline
        .cached_release(&s.server.base, "bookworm", &suite.signed_sha256, &k, NOW)
        .unwrap();
    assert_eq!(again.release, suite.release);
    let pkgs2 = offline.fetch_packages(&again, "main", "amd64").unwrap();
    assert_eq!(pkgs2, pkgs);
    assert_eq!(offline.fetch_deb(&suite.base_url, hello).unwrap(), deb);
    // The suite's last verified Release, verified again without the network.
    let last = offline
        .fetch_release(&s.server.base, "bookworm", &k, NOW)
        .unwrap();
    assert_eq!(last.signed_sha256, suite.signed_sha256);
    assert_eq!(last.release, suite.release);
    let e = offline
        .fetch_release(&s.server.base, "trixie", &k, NOW)
        .unwrap_err();
    assert!(
        matches!(e, RepoError::NotCached { .. }) && e.to_string().contains("trixie"),
        "{e}"
    );

    // Prune keeps what it is told to.
    let keep = [hello.sha256].into();
    let pruned = s.client.cache().prune(&keep).unwrap();
    assert_eq!(
        pruned.files, 3,
        "the InRelease, the index and its compact form go"
    );
    assert!(
        s.client
            .cache()
            .get(Kind::Deb, &hello.sha256, hello.size)
            .unwrap()
            .is_some()
    );
}

#[test]
fn armored_keyring_and_detached_release() {
    let s = setup();
    let k = Keyring::from_bytes(&s.signer.keyring_armored(), "armored").unwrap();
    assert_eq!(k.certificates(), [s.signer.fingerprint()]);
    // No InRelease: Release + Release.gpg.
    s.server.remove("dists/bookworm/InRelease");
    let release = s.fixture.release("bookworm", None, None);
    s.server.set(
        "dists/bookworm/Release",
        Answer::Body(release.clone().into_bytes()),
    );
    s.server.set(
        "dists/bookworm/Release.gpg",
        Answer::Body(s.signer.detach_sign(release.as_bytes())),
    );
    let suite = s
        .client
        .fetch_release(&s.server.base, "bookworm", &k, NOW)
        .unwrap();
    assert!(suite.url.ends_with("/Release"));
    assert_eq!(suite.signed_sha256.hex(), sha256_hex(release.as_bytes()));
    // A detached signature over other bytes fails.
    s.server.set(
        "dists/bookworm/Release.gpg",
        Answer::Body(s.signer.detach_sign(b"something else")),
    );
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &k, NOW)
        .unwrap_err();
    assert!(matches!(e, RepoError::BadSignature { .. }), "{e}");
}

#[test]
fn a_tampered_inrelease_is_a_bad_signature() {
    let s = setup();
    let release = s.fixture.release("bookworm", None, None);
    let signed = String::from_utf8(s.signer.clearsign(&release)).unwrap();
    let tampered = signed.replace("Origin: Test", "Origin: Evil");
    assert_ne!(signed, tampered);
    s.server.set(
        "dists/bookworm/InRelease",
        Answer::Body(tampered.into_bytes()),
    );
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &keyring(&s.signer), NOW)
        .unwrap_err();
    assert!(matches!(e, RepoError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("/dists/bookworm/InRelease"), "{e}");
    // Unsigned text appended after the signature is refused too.
    let appended = format!("{signed}\nPackage: injected\n");
    s.server.set(
        "dists/bookworm/InRelease",
        Answer::Body(appended.into_bytes()),
    );
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &keyring(&s.signer), NOW)
        .unwrap_err();
    assert!(matches!(e, RepoError::BadSignature { .. }), "{e}");
    assert!(cached(s.dir.path(), "indexes").is_empty());
}

#[test]
fn another_key_is_unknown() {
    let s = setup();
    let other = Signer::new(2, false);
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &keyring(&other), NOW)
        .unwrap_err();
    assert!(matches!(e, RepoError::UnknownKey { .. }), "{e}");
    assert!(e.to_string().contains("not in the keyring"), "{e}");
    // A primary key that signs directly is fine when it is the keyring's.
    let release = s.fixture.release("bookworm", None, None);
    s.server.set(
        "dists/bookworm/InRelease",
        Answer::Body(other.clearsign(&release)),
    );
    let suite = s
        .client
        .fetch_release(&s.server.base, "bookworm", &keyring(&other), NOW)
        .unwrap();
    assert_eq!(suite.signed_by.key, other.fingerprint());
    assert!(cached(s.dir.path(), "indexes").len() == 1);
}

#[test]
fn expired_and_not_yet_valid_releases() {
    let s = setup();
    let k = keyring(&s.signer);
    let week = 7 * 86_400;
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &k, DATE + week)
        .unwrap_err();
    assert!(matches!(e, RepoError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("2026-07-18T10:16:37Z"), "{e}");
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &k, DATE - 1)
        .unwrap_err();
    assert!(matches!(e, RepoError::NotYetValid { .. }), "{e}");
    assert!(cached(s.dir.path(), "indexes").is_empty());
    s.client
        .fetch_release(&s.server.base, "bookworm", &k, DATE + week - 1)
        .unwrap();
}

#[test]
fn another_suites_release_does_not_stand_in() {
    let s = setup();
    let release = s.fixture.release("bullseye", None, None);
    s.server.set(
        "dists/bookworm/InRelease",
        Answer::Body(s.signer.clearsign(&release)),
    );
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &keyring(&s.signer), NOW)
        .unwrap_err();
    assert!(e.to_string().contains("not of bookworm"), "{e}");
}

fn suite_with(s: &Setup, release: &str) -> kiln_repo::Suite {
    s.server.set(
        "dists/bookworm/InRelease",
        Answer::Body(s.signer.clearsign(release)),
    );
    s.client
        .fetch_release(&s.server.base, "bookworm", &keyring(&s.signer), NOW)
        .unwrap()
}

#[test]
fn a_packages_index_with_the_wrong_hash_is_refused() {
    let s = setup();
    let wrong = sha256_hex(b"not the index");
    let suite = suite_with(&s, &s.fixture.release("bookworm", None, Some(&wrong)));
    // Serve the real index at the (wrong) by-hash path and the plain path.
    let by_hash = format!("dists/bookworm/main/binary-amd64/by-hash/SHA256/{wrong}");
    s.server
        .set(&by_hash, Answer::Body(s.fixture.packages_xz.clone()));
    let e = s
        .client
        .fetch_packages(&suite, "main", "amd64")
        .unwrap_err();
    assert!(matches!(e, RepoError::HashMismatch { .. }), "{e}");
    assert!(e.to_string().contains("by-hash"), "{e}");
    assert_eq!(
        cached(s.dir.path(), "indexes").len(),
        1,
        "only the InRelease"
    );
}

#[test]
fn a_truncated_index_is_refused() {
    let s = setup();
    let suite = suite_with(&s, &s.fixture.release("bookworm", None, None));
    let path = format!(
        "dists/bookworm/main/binary-amd64/by-hash/SHA256/{}",
        sha256_hex(&s.fixture.packages_xz)
    );
    let half = s.fixture.packages_xz.len() / 2;
    // The connection closes early.
    s.server.set(
        &path,
        Answer::CutShort {
            body: s.fixture.packages_xz.clone(),
            sent: half,
        },
    );
    let e = s
        .client
        .fetch_packages(&suite, "main", "amd64")
        .unwrap_err();
    assert!(matches!(e, RepoError::Truncated { .. }), "{e}");
    // The server says it is short.
    s.server
        .set(&path, Answer::Body(s.fixture.packages_xz[..half].to_vec()));
    let e = s
        .client
        .fetch_packages(&suite, "main", "amd64")
        .unwrap_err();
    assert!(
        matches!(e, RepoError::Truncated { got, .. } if got == half as u64),
        "{e}"
    );
    // Longer than the Release says.
    let mut long = s.fixture.packages_xz.clone();
    long.extend_from_slice(b"trailing");
    s.server.set(&path, Answer::Body(long));
    let e = s
        .client
        .fetch_packages(&suite, "main", "amd64")
        .unwrap_err();
    assert!(matches!(e, RepoError::SizeMismatch { .. }), "{e}");
    assert_eq!(
        cached(s.dir.path(), "indexes").len(),
        1,
        "only the InRelease"
    );
}

#[test]
fn a_deb_with_the_wrong_hash_is_refused() {
    let s = setup();
    let suite = suite_with(&s, &s.fixture.release("bookworm", None, None));
    let pkgs = s.client.fetch_packages(&suite, "main", "amd64").unwrap();
    let mut other = s.fixture.deb.clone();
    other[0] ^= 1;
    s.server.set(
        "pool/main/h/hello/hello_2.10-3_amd64.deb",
        Answer::Body(other),
    );
    let e = s.client.fetch_deb(&suite.base_url, &pkgs[0]).unwrap_err();
    assert!(matches!(e, RepoError::HashMismatch { .. }), "{e}");
    assert!(e.to_string().contains("hello_2.10-3_amd64.deb"), "{e}");
    assert!(cached(s.dir.path(), "debs").is_empty());
}

#[test]
fn a_filename_leaving_the_repository_is_refused() {
    let s = setup();
    let suite = suite_with(&s, &s.fixture.release("bookworm", None, None));
    let pkgs = s.client.fetch_packages(&suite, "main", "amd64").unwrap();
    let before = s.server.hits().len();
    let e = s.client.fetch_deb(&suite.base_url, &pkgs[1]).unwrap_err();
    assert!(matches!(e, RepoError::UnsafeFilename { .. }), "{e}");
    assert_eq!(s.server.hits().len(), before, "no request was made");
    for bad in [
        "/etc/passwd",
        "pool/../../x.deb",
        "pool/x.deb?y",
        "pool/%2e%2e/x.deb",
    ] {
        let mut p = pkgs[0].clone();
        p.filename = bad.into();
        assert!(
            matches!(
                s.client.fetch_deb(&suite.base_url, &p),
                Err(RepoError::UnsafeFilename { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_stalled_server_times_out() {
    let s = setup();
    let suite = suite_with(&s, &s.fixture.release("bookworm", None, None));
    let pkgs = s.client.fetch_packages(&suite, "main", "amd64").unwrap();
    s.server.set(
        "pool/main/h/hello/hello_2.10-3_amd64.deb",
        Answer::Stall {
            body: s.fixture.deb.clone(),
            sent: 100,
        },
    );
    let e = s.client.fetch_deb(&suite.base_url, &pkgs[0]).unwrap_err();
    assert!(matches!(e, RepoError::Timeout { .. }), "{e}");
    assert!(cached(s.dir.path(), "debs").is_empty());
    // A stalled InRelease too.
    let body = s
        .signer
        .clearsign(&s.fixture.release("bookworm", None, None));
    s.server
        .set("dists/bookworm/InRelease", Answer::Stall { body, sent: 10 });
    let e = s
        .client
        .fetch_release(&s.server.base, "bookworm", &keyring(&s.signer), NOW)
        .unwrap_err();
    assert!(matches!(e, RepoError::Timeout { .. }), "{e}");
}

#[test]
fn fetch_repository_reads_every_suite() {
    let s = setup();
    let kr = s.dir.path().join("keyring.asc");
    fs::write(&kr, s.signer.keyring_armored()).unwrap();
    let repo = RepositoryConfig {
        url: format!("{}/", s.server.base),
        suites: vec!["bookworm".into()],
        components: vec!["main".into()],
        keyring: kr,
    };
    let got = s.client.fetch_repository(&repo, "amd64", NOW).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.len(), 2);
    let e = s
        .client
        .fetch_packages(&got[0].0, "contrib", "amd64")
        .unwrap_err();
    assert!(matches!(e, RepoError::MissingIndex { .. }), "{e}");
}

#[test]
fn a_busy_or_unreachable_mirror_is_tried_again_then_refused() {
    let s = setup();
    let k = keyring(&s.signer);
    let path = "dists/bookworm/InRelease";
    let release = s.fixture.release("bookworm", Some(VALID_UNTIL_TEXT), None);
    let body = s.signer.clearsign(&release);
    let gets = |srv: &Server| srv.hits().iter().filter(|h| h.ends_with(path)).count();
    // Two 503s, then the file: the third attempt gets it.
    s.server.set(
        path,
        Answer::Busy {
            times: 2,
            then: Box::new(Answer::Body(body.clone())),
        },
    );
    s.client
        .fetch_release(&s.server.base, "bookworm", &k, NOW)
        .unwrap();
    assert_eq!(gets(&s.server), 3);
    // Busy on every attempt: a clear error after three, nothing cached.
    let t = setup();
    t.server.set(
        path,
        Answer::Busy {
            times: 5,
            then: Box::new(Answer::Body(body)),
        },
    );
    let e = t
        .client
        .fetch_release(&t.server.base, "bookworm", &k, NOW)
        .unwrap_err();
    assert!(format!("{e:?}").contains("503"), "{e:?}");
    assert_eq!(gets(&t.server), 3);
    assert!(cached(t.dir.path(), "indexes").is_empty());
    // Nobody listening: refused three times, then an error naming the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = t
        .client
        .fetch_release(
            &format!("http://127.0.0.1:{port}/debian"),
            "bookworm",
            &k,
            NOW,
        )
        .unwrap_err();
    assert!(format!("{e:?}").contains(&port.to_string()), "{e:?}");
}
