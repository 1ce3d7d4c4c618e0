//! The solver against apt itself, on this machine's own indexes
//! (`/var/lib/apt/lists/*_binary-amd64_Packages*`, decompressed with
//! `apt-helper cat-file`): for each package set, kiln's closure (names)
//! must equal what `apt-get -s -o Dir::State::status=/dev/null
//! --no-install-recommends install base-files base-passwd <set>` installs,
//! except where a difference is listed with its reason, and must pass
//! `check_closure` either way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kiln_solve::{Package, Request, Universe, check_closure, packages, solve};

const LISTS: &str = "/var/lib/apt/lists";

fn index_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(LISTS)
        .expect("read /var/lib/apt/lists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("_binary-amd64_Packages"))
        })
        .collect();
    files.sort();
    files
}

fn load() -> Universe {
    let files = index_files();
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("_bookworm_main_")),
        "no bookworm main index in {LISTS} (run apt-get update): {files:?}"
    );
    let t = Instant::now();
    let mut all: Vec<Package> = Vec::new();
    let mut read = std::time::Duration::ZERO;
    for f in &files {
        let out = Command::new("/usr/lib/apt/apt-helper")
            .arg("cat-file")
            .arg(f)
            .output()
            .expect("run apt-helper");
        assert!(out.status.success(), "apt-helper cat-file {f:?} failed");
        let text = String::from_utf8(out.stdout).expect("utf-8 index");
        let t_read = Instant::now();
        let origin = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let ps = packages::parse(&text, 500, &origin).expect("parse index");
        read += t_read.elapsed();
        eprintln!("{origin}: {} packages", ps.len());
        all.extend(ps);
    }
    let t_universe = Instant::now();
    let u = Universe::new(all, "amd64").expect("universe");
    eprintln!(
        "universe: {} packages, loaded in {:.2?} (parsing {read:.2?}, indexing {:.2?})",
        u.len(),
        t.elapsed(),
        t_universe.elapsed()
    );
    u
}

/// apt's `Inst` lines: name to version.
fn apt_install(set: &[&str], recommends: bool) -> BTreeMap<String, String> {
    let out = Command::new("apt-get")
        .args(["-s", "-q", "-o", "Dir::State::status=/dev/null"])
        .arg(if recommends {
            "--install-recommends"
        } else {
            "--no-install-recommends"
        })
        .args(["install", "base-files", "base-passwd"])
        .args(set)
        .env("LC_ALL", "C")
        .output()
        .expect("run apt-get");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "apt-get -s failed for {set:?}: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.trim_start_matches('(');
            Some((
                name.split(':').next().unwrap_or(name).to_string(),
                version.to_string(),
            ))
        })
        .collect()
}

/// Package sets, chosen to hit alternatives, virtual packages,
/// Pre-Depends and version constraints; with the differences from apt
/// that kiln makes deliberately (package, reason).
/// (package, why kiln differs)
type Known = &'static [(&'static str, &'static str)];

const SETS: &[(&[&str], Known)] = &[
    (&["python3-flask"], &[]),
    (&["curl"], &[]),
    (&["nginx-light"], &[]),
    (&["postgresql-client"], &[]),
    (&["openssh-client"], &[]),
    (&["perl"], &[]),
    (&["default-jre-headless"], &[]),
    (&["ca-certificates"], &[]),
    (&["python3"], &[]),
    (&["git"], &[]),
    (&["iproute2"], &[]),
    (&["gnupg"], &[]),
    (&["wget"], &[]),
    (&["procps"], &[]),
    (&["tzdata"], &[]),
    (&["vim-tiny"], &[]),
    (&["mariadb-client"], &[]),
    (&["apache2"], &[]),
    (&["rsyslog"], &[]),
    (&["ruby"], &[]),
    (&["bsd-mailx"], &[]),
    (&["mutt"], &[]),
    (&["cron"], &[]),
    (&["logrotate"], &[]),
    (&["sudo"], &[]),
    (&["openssh-server"], &[]),
    (&["systemd"], &[]),
    (&["dbus"], &[]),
    (&["python3-pip"], &[]),
    (&["build-essential"], &[]),
    (&["php-cli"], &[]),
    (&["default-mysql-client"], &[]),
    (&["postfix"], &[]),
    (&["rsync"], &[]),
    (&["man-db"], &[]),
    (&["exim4"], &[]),
    (&["emacs-nox"], &[]),
    (&["libreoffice-core"], &[]),
    (&["nodejs"], &[]),
    (&["golang-go"], &[]),
];

#[test]
#[ignore = "needs the Debian mirror indexes in /var/lib/apt/lists and apt-get"]
fn closures_match_apt() {
    let u = load();
    let mut unexplained = Vec::new();
    for (set, known) in SETS {
        let mut include = vec!["base-files", "base-passwd"];
        include.extend_from_slice(set);
        let t = Instant::now();
        let closure = match solve(&u, &Request::new(&include)) {
            Ok(c) => c,
            Err(e) => panic!("{set:?}: {e}"),
        };
        let took = t.elapsed();
        let pkgs: Vec<&Package> = closure.ids().into_iter().map(|id| u.package(id)).collect();
        if let Err(v) = check_closure(&pkgs, "amd64") {
            panic!(
                "{set:?}: closure is inconsistent: {}",
                v.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        let ours: BTreeSet<String> = closure.names().into_iter().map(str::to_string).collect();
        let apt_versions = apt_install(set, false);
        let apt: BTreeSet<String> = apt_versions.keys().cloned().collect();
        for p in &closure.packages {
            if let Some(v) = apt_versions.get(&p.name)
                && *v != p.version
            {
                unexplained.push(format!(
                    "{set:?}: {} {} but apt installs {v}",
                    p.name, p.version
                ));
            }
        }
        let only_ours: Vec<&String> = ours.difference(&apt).collect();
        let only_apt: Vec<&String> = apt.difference(&ours).collect();
        eprintln!(
            "{set:?}: {} packages in {took:.2?}; only kiln: {only_ours:?}; only apt: {only_apt:?}",
            ours.len()
        );
        for name in only_ours.iter().chain(only_apt.iter()) {
            match known.iter().find(|(n, _)| n == name) {
                Some((_, why)) => eprintln!("  {name}: known difference: {why}"),
                None => unexplained.push(format!("{set:?}: {name}")),
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "differences from apt: {unexplained:?}"
    );
}

/// With `recommends = true` against apt's `--install-recommends`.
#[test]
#[ignore = "needs the Debian mirror indexes in /var/lib/apt/lists and apt-get"]
fn recommends_compared_with_apt() {
    let u = load();
    for set in [
        "python3-flask",
        "curl",
        "git",
        "openssh-client",
        "nginx-light",
        "postgresql-client",
    ] {
        let mut req = Request::new(&["base-files", "base-passwd", set]);
        req.recommends = true;
        let t = Instant::now();
        let closure = solve(&u, &req).unwrap_or_else(|e| panic!("{set}: {e}"));
        let took = t.elapsed();
        let pkgs: Vec<&Package> = closure.ids().into_iter().map(|id| u.package(id)).collect();
        if let Err(v) = check_closure(&pkgs, "amd64") {
            panic!("{set}: closure is inconsistent: {v:?}");
        }
        let ours: BTreeSet<String> = closure.names().into_iter().map(str::to_string).collect();
        let apt: BTreeSet<String> = apt_install(&[set], true).into_keys().collect();
        let only_ours: Vec<&String> = ours.difference(&apt).collect();
        let only_apt: Vec<&String> = apt.difference(&ours).collect();
        eprintln!(
            "{set} with recommends: {} packages in {took:.2?}; only kiln: {only_ours:?}; only apt: {only_apt:?}",
            ours.len(),
        );
        assert!(
            only_ours.is_empty() && only_apt.is_empty(),
            "{set}: differs from apt"
        );
    }
}

/// Load the real universe and solve the sets, printing how long
/// each step takes (no apt; nothing asserted about time).
#[test]
#[ignore = "needs the Debian mirror indexes in /var/lib/apt/lists"]
fn timing() {
    let u = load();
    for set in [
        "python3-flask",
        "curl",
        "nginx-light",
        "postgresql-client",
        "openssh-client",
        "perl",
    ] {
        let req = Request::new(&["base-files", "base-passwd", set]);
        let t = Instant::now();
        let n = solve(&u, &req).map(|c| c.packages.len());
        eprintln!("{set}: {n:?} packages in {:.2?}", t.elapsed());
    }
}
