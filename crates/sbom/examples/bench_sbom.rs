//! Times `Inventory::validate` and the three writers on a synthetic
//! ~50,000-path inventory (a copy of /usr/share as one spec directory, plus
//! three packages owning a few thousand files each).
//!
//! ```text
//! cargo run --release -p kiln-sbom --example bench_sbom
//! ```
//!
//! Prints the best of 5 runs of each step, the output sizes and a short
//! SHA-256 of every output (so two builds can be checked for byte-identical
//! output).
//!
//! For profiling, `bench_sbom <step> <runs>` runs only `<step>` (`validate`,
//! `spdx`, `cyclonedx` or `files`) `<runs>` times.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kiln_sbom::{
    FileKind, FileOrigin, FileRecord, ImageSubject, Inventory, Package, PackageOrigin, ToolInfo,
    cyclonedx_json, file_manifest_json, spdx_json,
};
use sha1::Sha1;
use sha2::{Digest, Sha256};

const RUNS: usize = 5;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

fn record(path: String, kind: FileKind, origin: FileOrigin) -> FileRecord {
    FileRecord {
        path,
        kind,
        mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        size: 0,
        sha256: None,
        sha1: None,
        link: None,
        origin,
    }
}

/// Top-level directories of /usr/share; the first nine belong to packages.
const TOP: [&str; 40] = [
    "zoneinfo",
    "zoneinfo-posix",
    "tzdata-extra",
    "perl5",
    "perl",
    "perl-base",
    "locale",
    "i18n",
    "locale-langpack",
    "doc",
    "man",
    "info",
    "common-licenses",
    "mime",
    "misc",
    "pixmaps",
    "icons",
    "fonts",
    "X11",
    "applications",
    "bash-completion",
    "ca-certificates",
    "debconf",
    "dict",
    "gcc",
    "gdb",
    "glib-2.0",
    "lintian",
    "menu",
    "pam",
    "pam-configs",
    "polkit-1",
    "python3",
    "readline",
    "sgml",
    "tabset",
    "terminfo",
    "vim",
    "xml",
    "données partagées",
];

const FILE_STEMS: [&str; 12] = [
    "README.Debian",
    "changelog.Debian",
    "copyright",
    "NEWS",
    "index",
    "ca-certificates.crt",
    "UTF-8",
    "libc.mo",
    "Europe_Berlin",
    "ls.1",
    "coreutils.info",
    "résumé – notes",
];

const FILE_EXTS: [&str; 6] = [".gz", "", ".txt", ".html", ".json", ".pm"];

pub fn synthesize() -> Inventory {
    let mut files = vec![
        record("/".into(), FileKind::Dir, FileOrigin::Base),
        record("/usr".into(), FileKind::Dir, FileOrigin::Base),
        record("/usr/share".into(), FileKind::Dir, FileOrigin::Base),
    ];
    let packages_spec: [(&str, &str, bool); 3] = [
        ("tzdata", "2024a-0+deb12u1", true),
        ("perl-modules-5.36", "5.36.0-7+deb12u1", true),
        ("locales", "2.36-9+deb12u4", false),
    ];
    let mut package_files: [Vec<String>; 3] = Default::default();
    let mut n = 0u64;
    for (a, top) in TOP.iter().enumerate() {
        let owner = (a < 9).then_some(a / 3);
        let origin = match owner {
            Some(2) => FileOrigin::Base,
            Some(p) => FileOrigin::Package(packages_spec[p].0.to_string()),
            None => FileOrigin::Spec,
        };
        let top_path = format!("/usr/share/{top}");
        files.push(record(top_path.clone(), FileKind::Dir, origin.clone()));
        for b in 0..25 {
            let dir_path = format!(
                "{top_path}/{}-{b:02}",
                ["pkg", "lib", "data", "en_US"][b % 4]
            );
            files.push(record(dir_path.clone(), FileKind::Dir, origin.clone()));
            let mut regular: Vec<(String, String, String)> = Vec::new();
            for i in 0..49usize {
                n += 1;
                let stem = FILE_STEMS[(i + b) % FILE_STEMS.len()];
                let ext = FILE_EXTS[(i * 7 + a) % FILE_EXTS.len()];
                let path = format!("{dir_path}/{stem}-{i:02}{ext}");
                let mut r = record(path.clone(), FileKind::File, origin.clone());
                if i % 16 == 15 {
                    r.kind = FileKind::Symlink;
                    r.mode = 0o777;
                    let target = format!("../{}-{:02}/{stem}", ["pkg", "lib"][i % 2], i % 25);
                    r.size = target.len() as u64;
                    r.link = Some(target);
                } else if i % 40 == 39 && b % 5 == 0 && !regular.is_empty() {
                    // A few hard links, to an earlier file of the same directory.
                    let (target, sha256, sha1) = regular[i % regular.len()].clone();
                    r.kind = FileKind::Hardlink;
                    r.link = Some(target);
                    r.sha256 = Some(sha256);
                    r.sha1 = Some(sha1);
                    r.size = 100;
                } else {
                    let content = format!("content of file number {n} at {path}");
                    let (h256, h1) = (sha256_hex(content.as_bytes()), sha1_hex(content.as_bytes()));
                    r.size = content.len() as u64;
                    r.sha256 = Some(h256.clone());
                    r.sha1 = Some(h1.clone());
                    if i % 9 == 0 {
                        r.mode = 0o755;
                    }
                    regular.push((path.clone(), h256, h1));
                }
                files.push(r);
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in &files {
        let owner = TOP
            .iter()
            .take(9)
            .position(|t| f.path.starts_with(&format!("/usr/share/{t}/")))
            .or_else(|| {
                TOP.iter()
                    .take(9)
                    .position(|t| f.path == format!("/usr/share/{t}"))
            });
        if let Some(a) = owner {
            package_files[a / 3].push(f.path.clone());
        }
    }
    let packages = packages_spec
        .iter()
        .zip(package_files)
        .map(|(&(name, version, deb), files)| Package {
            name: name.into(),
            version: version.into(),
            architecture: "all".into(),
            source_name: name.into(),
            source_version: version.into(),
            maintainer: Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>".into()),
            homepage: Some("https://www.debian.org/".into()),
            summary: Some(format!("{name} package")),
            distro: Some("bookworm".into()),
            origin: if deb {
                PackageOrigin::Deb {
                    sha256: sha256_hex(name.as_bytes()),
                }
            } else {
                PackageOrigin::Base
            },
            files,
            maintainer_scripts_not_run: vec!["postinst".into()],
            done_by_kiln: vec![],
        })
        .collect();
    Inventory {
        image: ImageSubject {
            name: "ghcr.io/acme/usr-share".into(),
            tag: "1.0.0".into(),
            digest: format!("sha256:{}", sha256_hex(b"bench")),
            created: "2024-05-01T12:34:56Z".into(),
            architecture: "amd64".into(),
            os: "linux".into(),
        },
        tool: ToolInfo {
            name: "kiln".into(),
            version: "0.1.0".into(),
        },
        packages,
        files,
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let value = black_box(f());
        best = best.min(start.elapsed());
        last = Some(value);
    }
    match last {
        Some(v) => (best, v),
        None => unreachable!("at least one run"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inv = synthesize();
    if let Some(step) = args.first() {
        let runs = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(RUNS);
        let (t, len) = match step.as_str() {
            "validate" => best_of(runs, || usize::from(inv.validate().is_ok())),
            "spdx" => best_of(runs, || spdx_json(&inv).len()),
            "cyclonedx" => best_of(runs, || cyclonedx_json(&inv).len()),
            "files" => best_of(runs, || file_manifest_json(&inv).len()),
            other => panic!("unknown step {other:?}: validate, spdx, cyclonedx or files"),
        };
        println!("{step}: best of {runs}: {:.2} ms ({len})", ms(t));
        return;
    }
    let owned: usize = inv.packages.iter().map(|p| p.files.len()).sum();
    println!(
        "inventory: {} paths, {} packages owning {} paths",
        inv.files.len(),
        inv.packages.len(),
        owned
    );

    let (t_validate, valid) = best_of(RUNS, || inv.validate().is_ok());
    assert!(
        valid,
        "synthetic inventory must be valid: {:?}",
        inv.validate()
    );
    let (t_spdx, spdx) = best_of(RUNS, || spdx_json(&inv));
    let (t_cdx, cdx) = best_of(RUNS, || cyclonedx_json(&inv));
    let (t_files, files) = best_of(RUNS, || file_manifest_json(&inv));

    println!("{:<20} {:>9} {:>10}  sha256", "step", "ms", "bytes");
    println!("{:<20} {:>9.2}", "validate", ms(t_validate));
    for (name, t, bytes) in [
        ("spdx_json", t_spdx, &spdx),
        ("cyclonedx_json", t_cdx, &cdx),
        ("file_manifest_json", t_files, &files),
    ] {
        println!(
            "{name:<20} {:>9.2} {:>10}  {}",
            ms(t),
            bytes.len(),
            &sha256_hex(bytes)[..16]
        );
    }
    println!(
        "{:<20} {:>9.2}",
        "total",
        ms(t_validate + t_spdx + t_cdx + t_files)
    );
}
