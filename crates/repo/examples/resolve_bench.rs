//! Where the time of a resolve goes, against the machine's Debian mirror
//! (read from `/etc/apt/sources.list.d/*.sources`): one cold resolve into a
//! fresh cache, then warm resolves, each phase timed.
//!
//! `cargo run --release -p kiln-repo --example resolve_bench -- [CACHE_DIR] [PACKAGE...]`

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kiln_repo::{Options, RepoClient, RepositoryConfig, repositories_from_sources, resolve};
use kiln_solve::Request;

fn mirrors() -> Vec<RepositoryConfig> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/etc/apt/sources.list.d").expect("/etc/apt/sources.list.d") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "sources") {
            let text = std::fs::read_to_string(&p).expect("read .sources");
            out.extend(repositories_from_sources(&text).expect("parse .sources"));
        }
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next();
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names.push("python3-flask".into());
    }
    let tmp;
    let cache = match dir {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = std::env::temp_dir().join(format!("kiln-resolve-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    let repos = mirrors();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let req = Request::new(&refs);
    for round in 0..4 {
        let client = RepoClient::new(&cache, Options::default());
        let t = Instant::now();
        let r = resolve(&client, &repos, &req, "amd64", now).expect("resolve");
        println!(
            "resolve {round} ({}): {} packages in {:.3?}",
            if round == 0 { "first" } else { "warm" },
            r.packages.len(),
            t.elapsed()
        );
    }
    // Phases, warm.
    let client = RepoClient::new(&cache, Options::default());
    let mut all = Vec::new();
    let t0 = Instant::now();
    for repo in &repos {
        let keyring = kiln_repo::Keyring::load(&repo.keyring).expect("keyring");
        for s in &repo.suites {
            let t = Instant::now();
            let suite = client
                .fetch_release(repo.base_url(), s, &keyring, now)
                .expect("release");
            let rel = t.elapsed();
            let t = Instant::now();
            for c in &repo.components {
                let pkgs = client.fetch_packages(&suite, c, "amd64").expect("packages");
                let n = pkgs.len();
                let fetched = t.elapsed();
                let t = Instant::now();
                for p in &pkgs {
                    all.push(p.to_solver(500, s));
                }
                println!(
                    "  {s}/{c}: release {rel:.3?}, packages ({n}) {fetched:.3?}, to_solver {:.3?}",
                    t.elapsed()
                );
            }
        }
    }
    let t = Instant::now();
    let u = kiln_solve::Universe::new(all, "amd64").expect("universe");
    let tu = t.elapsed();
    let t = Instant::now();
    let mut req2 = req.clone();
    req2.include
        .extend(["base-files".into(), "base-passwd".into()]);
    let c = kiln_solve::solve(&u, &req2).expect("solve");
    println!(
        "  universe {tu:.3?} ({} entries), solve {:.3?} ({} packages); total {:.3?}",
        u.len(),
        t.elapsed(),
        c.packages.len(),
        t0.elapsed()
    );
    // resolve() decodes only what the request reaches; it must give the
    // closure the full universe gives.
    for set in [
        "python3-flask",
        "nginx-light",
        "curl",
        "postgresql-client",
        "openssh-client",
        "perl",
        "default-jre-headless",
        "ca-certificates",
        "git",
        "python3-pip",
    ] {
        let req = Request::new(&[set]);
        let r = resolve(&client, &repos, &req, "amd64", now).expect("resolve");
        let mut full = req.clone();
        full.include
            .extend(["base-files".into(), "base-passwd".into()]);
        let c = kiln_solve::solve(&u, &full).expect("solve");
        let mut want: Vec<(String, String)> = c
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        want.sort();
        let got: Vec<(String, String)> = r
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        println!(
            "  {set}: {} packages, same as the full universe: {}",
            got.len(),
            got == want
        );
        assert_eq!(got, want, "{set}");
    }
}
