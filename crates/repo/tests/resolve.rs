//! `resolve` against a local HTTP server serving two signed fixture suites
//! (`bookworm` and `bookworm-updates`), and (ignored) against the
//! machine's Debian mirror.

mod support;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kiln_repo::{
    Options, RepoClient, RepositoryConfig, ResolveError, repositories_from_sources, resolve,
};
use kiln_solve::{Request, SolveError};
use support::{Fixture, NOW, Server, Signer, VALID_UNTIL_TEXT, sha256_hex, xz};

fn stanza(name: &str, version: &str, fields: &str) -> String {
    format!(
        "Package: {name}\nVersion: {version}\nArchitecture: amd64\n{fields}\
         Filename: pool/main/{name}_{version}_amd64.deb\nSize: {}\nSHA256: {}\n",
        name.len() * 100,
        sha256_hex(format!("{name} {version}").as_bytes()),
    )
}

fn fixture(stanzas: &[String]) -> Fixture {
    let packages = stanzas.join("\n");
    Fixture {
        deb: Vec::new(),
        packages_xz: xz(packages.as_bytes()),
        packages,
    }
}

struct Setup {
    server: Server,
    _dir: tempfile::TempDir,
    _keyring: tempfile::NamedTempFile,
    client: RepoClient,
    repo: RepositoryConfig,
}

fn setup() -> Setup {
    let server = Server::start();
    let signer = Signer::new(7, true);
    let main = fixture(&[
        stanza(
            "app",
            "1.0-1",
            "Source: app-src (1.0-1)\nDepends: libfoo (>= 2) | libbar, mail-transport-agent\n",
        ),
        stanza("libfoo", "1.5-1", ""),
        stanza("libbar", "0.9-1", ""),
        stanza(
            "postfix",
            "3.7.11-0+deb12u1",
            "Provides: mail-transport-agent\n",
        ),
        stanza("base-files", "12.4+deb12u11", "Essential: yes\n"),
        stanza("base-passwd", "3.6.1", "Essential: yes\n"),
        stanza("broken", "1", "Depends: app, missing-lib (>= 2)\n"),
    ]);
    let updates = fixture(&[stanza("libfoo", "2.1-1", "")]);
    for (suite, f) in [("bookworm", &main), ("bookworm-updates", &updates)] {
        let release = f.release(suite, Some(VALID_UNTIL_TEXT), None);
        f.serve(&server, suite, &release, &signer);
    }
    let keyring = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keyring.path(), signer.keyring_binary()).unwrap();
    let repo = RepositoryConfig {
        url: server.base.clone(),
        suites: vec!["bookworm".into(), "bookworm-updates".into()],
        components: vec!["main".into()],
        keyring: keyring.path().to_path_buf(),
    };
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path(), Options::default());
    Setup {
        server,
        _dir: dir,
        _keyring: keyring,
        client,
        repo,
    }
}

#[test]
fn alternative_virtual_and_version_constraint() {
    let s = setup();
    let r = resolve(
        &s.client,
        std::slice::from_ref(&s.repo),
        &Request::new(&["app"]),
        "amd64",
        NOW,
    )
    .unwrap();
    let got: Vec<String> = r
        .packages
        .iter()
        .map(|p| format!("{}={} #{}", p.name, p.version, p.suite))
        .collect();
    // libfoo 2.1 (the newer suite) satisfies `libfoo (>= 2)`, so the
    // alternative libbar is not needed; postfix is the only MTA;
    // base-files and base-passwd are always in.
    assert_eq!(
        got,
        [
            "app=1.0-1 #0",
            "base-files=12.4+deb12u11 #0",
            "base-passwd=3.6.1 #0",
            "libfoo=2.1-1 #1",
            "postfix=3.7.11-0+deb12u1 #0",
        ]
    );
    let app = &r.packages[0];
    assert_eq!(
        app.url,
        format!("{}/pool/main/app_1.0-1_amd64.deb", s.server.base)
    );
    assert_eq!(app.sha256.hex(), sha256_hex(b"app 1.0-1"));
    assert_eq!(app.size, 300);
    assert_eq!(
        (app.source.as_str(), app.source_version.as_str()),
        ("app-src", "1.0-1")
    );
    assert_eq!(r.packages[3].source, "libfoo");
    assert_eq!(r.suites.len(), 2);
    assert_eq!(r.suites[1].suite, "bookworm-updates");
    assert_eq!(r.suites[0].url, s.server.base);
    assert_ne!(r.suites[0].inrelease_sha256, r.suites[1].inrelease_sha256);
    assert_eq!(
        r.suites[0].signing_certificate,
        Signer::new(7, true).fingerprint()
    );
    // Serializable, and the same again.
    let again = resolve(
        &s.client,
        std::slice::from_ref(&s.repo),
        &Request::new(&["app"]),
        "amd64",
        NOW,
    )
    .unwrap();
    assert_eq!(again, r);
    let _ = toml_round_trip(&r);

    // A version pin selects the older libfoo, and then the alternative.
    let r = resolve(
        &s.client,
        std::slice::from_ref(&s.repo),
        &Request::new(&["app", "libfoo=1.5-1"]),
        "amd64",
        NOW,
    )
    .unwrap();
    let names: Vec<String> = r
        .packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    assert!(names.contains(&"libfoo=1.5-1".to_string()), "{names:?}");
    assert!(names.contains(&"libbar=0.9-1".to_string()), "{names:?}");
}

/// The resolution goes through serde (the lock file will); a TOML round trip
/// is what the dev-dependencies offer.
fn toml_round_trip(r: &kiln_repo::Resolution) -> String {
    let text = toml::to_string(r).unwrap();
    let back: kiln_repo::Resolution = toml::from_str(&text).unwrap();
    assert_eq!(&back, r);
    text
}

#[test]
fn unsatisfiable_include_names_the_chain() {
    let s = setup();
    let e = resolve(
        &s.client,
        std::slice::from_ref(&s.repo),
        &Request::new(&["broken"]),
        "amd64",
        NOW,
    )
    .unwrap_err();
    let ResolveError::Solve(SolveError::Unsatisfiable { chain, reason, .. }) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        chain.first().map(String::as_str),
        Some("broken"),
        "{chain:?}"
    );
    assert!(
        chain
            .iter()
            .chain([reason])
            .any(|c| c.contains("missing-lib")),
        "{chain:?}: {reason}"
    );
}

#[test]
fn excluding_a_required_package_is_an_error() {
    let s = setup();
    let mut req = Request::new(&["app"]);
    req.exclude = vec!["postfix".into()];
    let e = resolve(&s.client, std::slice::from_ref(&s.repo), &req, "amd64", NOW).unwrap_err();
    assert!(matches!(e, ResolveError::Solve(_)), "{e:?}");
    // Excluding an always-included package cannot work either.
    let mut req = Request::new(&["app"]);
    req.exclude = vec!["base-passwd".into()];
    assert!(resolve(&s.client, std::slice::from_ref(&s.repo), &req, "amd64", NOW).is_err());
}

#[test]
fn a_bad_signature_stops_resolution() {
    let s = setup();
    let other = Signer::new(8, false);
    let keyring = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keyring.path(), other.keyring_binary()).unwrap();
    let repo = RepositoryConfig {
        keyring: keyring.path().to_path_buf(),
        ..s.repo.clone()
    };
    let e = resolve(&s.client, &[repo], &Request::new(&["app"]), "amd64", NOW).unwrap_err();
    assert!(matches!(e, ResolveError::Repository { .. }), "{e:?}");
}

/// The machine's mirrors from `/etc/apt/sources.list.d/*.sources`, limited
/// to `suites`.
fn mirrors(suites: &[&str]) -> Vec<RepositoryConfig> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/etc/apt/sources.list.d").expect("/etc/apt/sources.list.d") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sources") {
            let text = std::fs::read_to_string(&p).unwrap();
            for mut r in repositories_from_sources(&text).unwrap() {
                r.suites.retain(|s| suites.contains(&s.as_str()));
                if !r.suites.is_empty() {
                    out.push(r);
                }
            }
        }
    }
    out
}

#[test]
#[ignore = "needs the Debian mirror"]
fn python3_flask_from_the_machines_mirror() {
    let suites = ["bookworm", "bookworm-updates", "bookworm-security"];
    let repos = mirrors(&suites);
    let found: Vec<&str> = repos
        .iter()
        .flat_map(|r| r.suites.iter().map(String::as_str))
        .collect();
    for s in suites {
        assert!(
            found.contains(&s),
            "no {s} in /etc/apt/sources.list.d: {found:?}"
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path(), Options::default());
    let req = Request::new(&["python3-flask"]);
    let t = Instant::now();
    resolve(&client, &repos, &req, "amd64", now).unwrap();
    let cold = t.elapsed();
    // Warm cache: the Packages indexes come from the cache by hash.
    let t = Instant::now();
    let r = resolve(&client, &repos, &req, "amd64", now).unwrap();
    let warm = t.elapsed();
    println!(
        "python3-flask: {} packages; cold {cold:.2?}, warm {warm:.2?} (fetch, verify, parse and solve)",
        r.packages.len()
    );
    for p in &r.packages {
        println!("  {} {} {} {}", p.name, p.version, p.url, p.sha256);
    }
    for s in &r.suites {
        println!(
            "  {} {} {} {}",
            s.url, s.suite, s.inrelease_sha256, s.signing_key
        );
    }
    // The same closure, checked independently against the solver's view.
    let t = Instant::now();
    let mut all = Vec::new();
    for repo in &repos {
        for (suite, pkgs) in client.fetch_repository(repo, "amd64", now).unwrap() {
            for p in pkgs {
                all.push(p.to_solver(500, &suite.suite));
            }
        }
    }
    let fetch = t.elapsed();
    let t = Instant::now();
    let u = kiln_solve::Universe::new(all, "amd64").unwrap();
    let c = kiln_solve::solve(&u, &req_with_base(&req)).unwrap();
    let solve = t.elapsed();
    println!("warm fetch+parse {fetch:.2?}; universe+solve {solve:.2?}");
    let pkgs: Vec<&kiln_solve::Package> = c.ids().into_iter().map(|id| u.package(id)).collect();
    kiln_solve::check_closure(&pkgs, "amd64").unwrap();
    let mut expected: Vec<(String, String)> = c
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    expected.sort();
    let got: Vec<(String, String)> = r
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(got, expected);
    for name in [
        "python3-flask",
        "python3-werkzeug",
        "python3.11",
        "base-files",
        "base-passwd",
    ] {
        assert!(
            got.iter().any(|(n, _)| n == name),
            "{name} missing: {got:?}"
        );
    }
    assert!(
        r.packages
            .iter()
            .all(|p| p.url.ends_with(".deb") && p.size > 0)
    );
}

fn req_with_base(req: &Request) -> Request {
    let mut r = req.clone();
    r.include
        .extend(["base-files".into(), "base-passwd".into()]);
    r
}
