//! Against the machine's own Debian mirror, read from
//! `/etc/apt/sources.list.d/*.sources` (no host name is written here):
//! bookworm's InRelease verified with the Debian archive keyring, its
//! Packages.xz, and base-files downloaded and checked.

use std::time::{SystemTime, UNIX_EPOCH};

use kiln_repo::{Keyring, Options, RepoClient, repositories_from_sources};

fn mirror() -> kiln_repo::RepositoryConfig {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/etc/apt/sources.list.d").expect("/etc/apt/sources.list.d") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sources") {
            let text = std::fs::read_to_string(&p).unwrap();
            found.extend(repositories_from_sources(&text).unwrap());
        }
    }
    found
        .into_iter()
        .find(|r| r.suites.iter().any(|s| s == "bookworm"))
        .expect("a .sources entry with suite bookworm")
}

#[test]
#[ignore = "needs the Debian mirror"]
fn bookworm_from_the_machines_mirror() {
    let repo = mirror();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path(), Options::default());
    let suite = client
        .fetch_release(repo.base_url(), "bookworm", &keyring, now)
        .unwrap();
    println!(
        "{}: signed by {} (certificate {}), release digest {}",
        suite.url, suite.signed_by.key, suite.signed_by.primary, suite.signed_sha256
    );
    assert!(keyring.certificates().contains(&suite.signed_by.primary));
    assert_eq!(suite.release.codename.as_deref(), Some("bookworm"));
    let pkgs = client.fetch_packages(&suite, "main", "amd64").unwrap();
    println!("{} packages in main/binary-amd64", pkgs.len());
    assert!(pkgs.len() > 50_000, "{}", pkgs.len());
    let base = pkgs
        .iter()
        .find(|p| p.name == "base-files")
        .expect("base-files");
    assert!(base.essential);
    let deb = client.fetch_deb(&suite.base_url, base).unwrap();
    let bytes = std::fs::read(&deb).unwrap();
    assert_eq!(bytes.len() as u64, base.size);
    assert_eq!(kiln_oci::Digest::of(&bytes), base.sha256);
    assert!(bytes.starts_with(b"!<arch>\n"));
    // Every relation field in the archive parsed; a few sanity checks.
    assert!(pkgs.iter().any(|p| !p.provides.is_empty()));
    assert!(pkgs.iter().any(|p| !p.pre_depends.is_empty()));
}
