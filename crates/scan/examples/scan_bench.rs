//! Scan benchmark: 500 installed packages against 50,000 OSV advisories.
//!
//! Generates a dpkg status file and 50,000 advisory files (one record per
//! file, osv.dev's Debian export shape, ~5,000 source package names of which
//! ~10% are installed) in a temp dir, then times loading the advisories from
//! disk and matching. Usage: `scan_bench [packages] [advisories]`.

use std::fmt::Write as _;
use std::time::Instant;

use kiln_scan::{AdvisoryDb, Inventory, inventory_from_status, scan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n_pkgs: usize = args.next().map_or(Ok(500), |s| s.parse())?;
    let n_adv: usize = args.next().map_or(Ok(50_000), |s| s.parse())?;
    let n_names = 5_000usize;
    let tmp = tempfile::tempdir()?;

    // Installed: 500 binaries from the first 500 source names (10% of 5,000).
    let mut status = String::new();
    for i in 0..n_pkgs {
        let src = format!("src{i:04}");
        let _ = write!(
            status,
            "Package: lib{src}-{}\nStatus: install ok installed\nPriority: optional\nSection: libs\n\
             Installed-Size: 100\nMaintainer: Debian <x@debian.org>\nArchitecture: amd64\n\
             Multi-Arch: same\nSource: {src} (1.{}.{}-{}+deb12u{})\nVersion: 1.{}.{}-{}+deb12u{}+b1\n\
             Depends: libc6 (>= 2.34)\nDescription: package {i}\n long description line\n\n",
            i % 3,
            i % 7,
            i % 11,
            1 + i % 3,
            i % 5,
            i % 7,
            i % 11,
            1 + i % 3,
            i % 5,
        );
    }
    let status_path = tmp.path().join("status");
    std::fs::write(&status_path, &status)?;

    let osv = tmp.path().join("osv");
    std::fs::create_dir_all(&osv)?;
    let gen_start = Instant::now();
    for a in 0..n_adv {
        let name = format!("src{:04}", (a * 7919) % n_names);
        let fixed = format!("1.{}.{}-{}+deb12u{}", a % 7, (a / 7) % 13, 1 + a % 3, a % 9);
        let range = if a % 10 == 0 {
            r#"[{"introduced":"0"}]"#.to_string()
        } else {
            format!(r#"[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]"#)
        };
        let rec = format!(
            r#"{{
  "schema_version": "1.6.0",
  "id": "DEBIAN-CVE-2024-{a:05}",
  "modified": "2025-0{}-1{}T0{}:00:00.{:06}Z",
  "published": "2024-01-01T00:00:00Z",
  "aliases": ["CVE-2024-{a:05}"],
  "summary": "issue {a} in {name}",
  "details": "A flaw was found in {name}. Attackers could do things.",
  "affected": [{{
    "package": {{"ecosystem": "Debian:12", "name": "{name}", "purl": "pkg:deb/debian/{name}?arch=source"}},
    "ranges": [{{"type": "ECOSYSTEM", "events": {range}}}],
    "versions": ["1.0.0-1", "1.0.1-1"],
    "ecosystem_specific": {{"urgency": "{}"}}
  }}],
  "severity": [{{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:{}/PR:N/UI:N/S:U/C:H/I:{}/A:N"}}],
  "references": [{{"type": "ADVISORY", "url": "https://security-tracker.debian.org/tracker/CVE-2024-{a:05}"}}]
}}"#,
            1 + a % 9,
            a % 10,
            a % 10,
            a,
            ["low", "medium", "high", "unimportant"][a % 4],
            ["L", "H"][a % 2],
            ["H", "N"][a % 3 % 2],
        );
        let sub = osv.join(format!("{:02}", a % 100));
        if a < 100 {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(sub.join(format!("DEBIAN-CVE-2024-{a:05}.json")), rec)?;
    }
    eprintln!(
        "generated {n_pkgs} packages, {n_adv} advisories in {} ms",
        gen_start.elapsed().as_millis()
    );

    let t0 = Instant::now();
    let packages = inventory_from_status(&std::fs::read(&status_path)?)?;
    let t_inv = t0.elapsed();
    let t1 = Instant::now();
    let db = AdvisoryDb::load(&[osv])?;
    let t_load = t1.elapsed();
    let mut inv = Inventory::from_packages("bench", packages);
    inv.os_id = Some("debian".into());
    inv.os_version_id = Some("12".into());
    let t2 = Instant::now();
    let report = scan(&inv, &db);
    let t_match = t2.elapsed();
    println!("packages: {}", inv.packages.len());
    println!("advisories: {}", db.len());
    println!("vulnerabilities: {}", report.vulnerabilities.len());
    println!("status parse: {:.1} ms", t_inv.as_secs_f64() * 1e3);
    println!(
        "load advisories from disk: {:.1} ms",
        t_load.as_secs_f64() * 1e3
    );
    println!("match: {:.1} ms", t_match.as_secs_f64() * 1e3);
    let total = t_inv + t_load + t_match;
    println!(
        "total: {:.1} ms (target <= 1000 ms: {})",
        total.as_secs_f64() * 1e3,
        if total.as_millis() <= 1000 {
            "ok"
        } else {
            "MISSED"
        }
    );
    Ok(())
}
