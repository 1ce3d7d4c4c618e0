//! Stand-in for `kiln fim` until the CLI is wired:
//!
//! ```text
//! fim init DIR --out MANIFEST
//! fim check DIR --manifest MANIFEST [--incremental] [--json]
//! ```
//!
//! Exit status of `check`: the AIDE bitmask (1 added, 2 removed, 4 changed);
//! 16 on usage errors, 18 on I/O or manifest errors.

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: fim init DIR --out MANIFEST\n       fim check DIR --manifest MANIFEST [--incremental] [--json]"
    );
    ExitCode::from(16)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return usage();
    };
    let mut dir: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut manifest: Option<PathBuf> = None;
    let mut incremental = false;
    let mut json = false;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = it.next().map(PathBuf::from),
            "--manifest" => manifest = it.next().map(PathBuf::from),
            "--incremental" => incremental = true,
            "--json" => json = true,
            s if !s.starts_with("--") && dir.is_none() => dir = Some(PathBuf::from(s)),
            _ => return usage(),
        }
    }
    let Some(dir) = dir else {
        return usage();
    };
    match (cmd.as_str(), out, manifest) {
        ("init", Some(out), None) => match kiln_drift::fim_init(&dir, &out) {
            Ok(s) => {
                eprintln!(
                    "fim init: {} entries ({} files, {} dirs), {} bytes hashed in {:.3}s; {} ({})",
                    s.entries,
                    s.stats.files,
                    s.stats.dirs,
                    s.stats.bytes_hashed,
                    s.stats.elapsed.as_secs_f64(),
                    s.digest,
                    s.schema
                );
                for p in &s.problems {
                    eprintln!("fim init: left out {}: {}", p.path, p.reason);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fim init: {e}");
                ExitCode::from(18)
            }
        },
        ("check", None, Some(m)) => match kiln_drift::fim_check(&dir, &m, incremental) {
            Ok((diff, stats)) => {
                if json {
                    match serde_json::to_string_pretty(&serde_json::json!({
                        "diff": diff,
                        "stats": stats,
                    })) {
                        Ok(s) => println!("{s}"),
                        Err(e) => eprintln!("fim check: {e}"),
                    }
                } else {
                    print!("{}", diff.render());
                }
                eprintln!(
                    "fim check: {} files, {} dirs, {} files / {} bytes hashed in {:.3}s{}",
                    stats.files,
                    stats.dirs,
                    stats.files_hashed,
                    stats.bytes_hashed,
                    stats.elapsed.as_secs_f64(),
                    if stats.full {
                        " (full)"
                    } else {
                        " (incremental)"
                    }
                );
                ExitCode::from(u8::try_from(diff.exit_code()).unwrap_or(4))
            }
            Err(e) => {
                eprintln!("fim check: {e}");
                ExitCode::from(18)
            }
        },
        _ => usage(),
    }
}
