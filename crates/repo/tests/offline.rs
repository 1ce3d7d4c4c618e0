//! Offline resolution and the compact index cache against a local HTTP
//! server: the last verified Release of each suite is re-verified from the
//! cache (its `Valid-Until` still honoured), a damaged compact index is
//! detected and made again, and a Release that lists only `Packages.gz`
//! is read.

mod support;

use std::fs;
use std::io::Write;

use kiln_repo::{Keyring, Kind, Options, RepoClient, RepoError, RepositoryConfig, resolve};
use kiln_solve::Request;
use support::{Fixture, NOW, Server, Signer, VALID_UNTIL_TEXT, sha256_hex};

fn offline(dir: &std::path::Path) -> RepoClient {
    RepoClient::new(
        dir,
        Options {
            offline: true,
            ..Options::default()
        },
    )
}

fn fixture() -> (
    Server,
    Fixture,
    Signer,
    tempfile::NamedTempFile,
    RepositoryConfig,
) {
    let server = Server::start();
    let mut f = Fixture::new("pool/main/e/evil.deb");
    // base-files and base-passwd (every resolve includes them), and libc6.
    for name in ["base-files", "base-passwd", "libc6"] {
        f.packages.push_str(&format!(
            "\nPackage: {name}\nVersion: 2.36\nArchitecture: amd64\nEssential: yes\n\
             Filename: pool/{name}.deb\nSize: 3\nSHA256: {}\n",
            sha256_hex(name.as_bytes())
        ));
    }
    f.packages_xz = support::xz(f.packages.as_bytes());
    let signer = Signer::new(3, true);
    let release = f.release("bookworm", Some(VALID_UNTIL_TEXT), None);
    f.serve(&server, "bookworm", &release, &signer);
    let keyring = tempfile::NamedTempFile::new().unwrap();
    fs::write(keyring.path(), signer.keyring_binary()).unwrap();
    let repo = RepositoryConfig {
        url: server.base.clone(),
        suites: vec!["bookworm".into()],
        components: vec!["main".into()],
        keyring: keyring.path().to_path_buf(),
    };
    (server, f, signer, keyring, repo)
}

#[test]
fn resolve_offline_from_the_last_verified_release() {
    let (server, _f, _signer, _k, repo) = fixture();
    let dir = tempfile::tempdir().unwrap();
    // Offline before any online run: a clear error naming the suite.
    let e = resolve(
        &offline(dir.path()),
        std::slice::from_ref(&repo),
        &Request::new(&["hello"]),
        "amd64",
        NOW,
    )
    .unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("bookworm") && text.contains("not in the cache"),
        "{text}"
    );

    let online = RepoClient::new(dir.path(), Options::default());
    let r = resolve(
        &online,
        std::slice::from_ref(&repo),
        &Request::new(&["hello"]),
        "amd64",
        NOW,
    )
    .unwrap();
    server.clear();
    let hits = server.hits().len();
    let again = resolve(
        &offline(dir.path()),
        std::slice::from_ref(&repo),
        &Request::new(&["hello"]),
        "amd64",
        NOW,
    )
    .unwrap();
    assert_eq!(again, r);
    assert_eq!(server.hits().len(), hits, "offline makes no request");

    // Valid-Until is honoured offline: the expired Release names its suite.
    let later = support::DATE + 30 * 86_400;
    let e = resolve(
        &offline(dir.path()),
        std::slice::from_ref(&repo),
        &Request::new(&["hello"]),
        "amd64",
        later,
    )
    .unwrap_err();
    let src = std::error::Error::source(&e).unwrap();
    assert!(
        matches!(
            src.downcast_ref::<RepoError>(),
            Some(RepoError::Expired { .. })
        ),
        "{src}"
    );
    assert!(src.to_string().contains("dists/bookworm/"), "{src}");
}

#[test]
fn a_damaged_compact_index_is_made_again() {
    let (server, f, signer, _k, _repo) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path(), Options::default());
    let k = Keyring::from_bytes(&signer.keyring_binary(), "k").unwrap();
    let suite = client
        .fetch_release(&server.base, "bookworm", &k, NOW)
        .unwrap();
    let pkgs = client.fetch_packages(&suite, "main", "amd64").unwrap();
    let xz = kiln_oci::Digest::of(&f.packages_xz);
    let parsed = client.cache().path(Kind::Parsed, &xz);
    let good = fs::read(&parsed).unwrap();
    // Corrupt one byte, then cut it short: each time detected and rebuilt
    // (offline too, from the cached index).
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    for damaged in [bad, good[..good.len() - 5].to_vec()] {
        fs::write(&parsed, &damaged).unwrap();
        let again = offline(dir.path())
            .fetch_packages(&suite, "main", "amd64")
            .unwrap();
        assert_eq!(again, pkgs);
        assert_eq!(fs::read(&parsed).unwrap(), good);
    }
    // Index and compact form both gone: offline, a clear error.
    fs::remove_file(&parsed).unwrap();
    fs::remove_file(client.cache().path(Kind::Index, &xz)).unwrap();
    let e = offline(dir.path())
        .fetch_packages(&suite, "main", "amd64")
        .unwrap_err();
    assert!(matches!(e, RepoError::NotCached { .. }), "{e}");
}

#[test]
fn packages_gz_when_there_is_no_xz() {
    let server = Server::start();
    let f = Fixture::new("pool/main/e/evil.deb");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(f.packages.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let release = format!(
        "Origin: Test\nSuite: bookworm\nCodename: bookworm\nDate: {}\nValid-Until: {VALID_UNTIL_TEXT}\n\
         Architectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
        support::DATE_TEXT,
        sha256_hex(&gz),
        gz.len()
    );
    let signer = Signer::new(4, false);
    server.set(
        "dists/bookworm/InRelease",
        support::Answer::Body(signer.clearsign(&release)),
    );
    server.set(
        "dists/bookworm/main/binary-amd64/Packages.gz",
        support::Answer::Body(gz),
    );
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path(), Options::default());
    let k = Keyring::from_bytes(&signer.keyring_binary(), "k").unwrap();
    let suite = client
        .fetch_release(&server.base, "bookworm", &k, NOW)
        .unwrap();
    let pkgs = client.fetch_packages(&suite, "main", "amd64").unwrap();
    assert_eq!(
        pkgs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["hello", "evil"]
    );
}
