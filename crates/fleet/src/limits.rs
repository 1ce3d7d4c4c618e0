//! `[service.<name>.limits]`: the memory, process and CPU limits of each instance, applied
//! through the cgroup runc creates for it.
//!
//! ```toml
//! [service.web.limits]
//! memory = "256MiB"   # KiB, MiB, GiB, TiB or plain bytes (256MiB = 268435456); default 512MiB
//! pids = 256          # processes and threads; default 512
//! cpu = 1.5           # cores (CFS quota over a 100 ms period); default 1
//! ```
//!
//! Each key is optional (a missing one keeps its default); unknown keys are refused. This
//! module holds the typed [`Limits`], the size parser and formatter, and the checks of the raw
//! table; `deploy/parse.rs` turns its located errors into `file:line:col` ones.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Smallest memory limit: runc and the kernel cannot start a process in less.
pub const MIN_MEMORY: u64 = 4 << 20;
/// Largest memory limit (anything above is a typo).
pub const MAX_MEMORY: u64 = 4 << 40;
/// Fewest processes an instance may be limited to.
pub const MIN_PIDS: u32 = 8;
/// Most processes (the kernel's `pid_max` ceiling).
pub const MAX_PIDS: u32 = 4 << 20;
/// Fewest CPU millicores (a 1 ms quota per 100 ms period).
pub const MIN_CPU_MILLICORES: u32 = 10;
/// Most CPU millicores (1024 cores).
pub const MAX_CPU_MILLICORES: u32 = 1024 * 1000;
/// The CFS period every instance gets, in microseconds (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The effective limits of a service's instances (defaults filled in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Memory limit in bytes. Where the host accounts swap (cgroup v2, or v1 with swap
    /// accounting on), memory + swap is limited to the same, so it cannot swap around it;
    /// on v1 without swap accounting only the memory is limited and the instance can still
    /// push pages out to swap.
    pub memory_bytes: u64,
    /// Most processes and threads.
    pub pids: u32,
    /// CPU in thousandths of a core.
    pub cpu_millicores: u32,
}

impl Default for Limits {
    /// 512 MiB, 512 processes, one core.
    fn default() -> Limits {
        Limits {
            memory_bytes: 512 << 20,
            pids: 512,
            cpu_millicores: 1000,
        }
    }
}

impl Limits {
    /// The CFS quota per [`CPU_PERIOD_US`], in microseconds.
    pub fn cpu_quota_us(&self) -> u64 {
        u64::from(self.cpu_millicores) * CPU_PERIOD_US / 1000
    }

    /// Cores as a number (`1.5`).
    pub fn cpu_cores(&self) -> f64 {
        f64::from(self.cpu_millicores) / 1000.0
    }

    /// What `kiln status --json` shows for a spec's limits: `None` (a spec stored before kiln
    /// had limits) is `{"unlimited": true, ...}`, as its instances are.
    pub fn status_json(limits: Option<&Limits>) -> serde_json::Value {
        match limits {
            Some(l) => l.to_json(),
            None => serde_json::json!({
                "unlimited": true,
                "why": "made before kiln set limits; the next kiln apply replaces it with limited instances",
            }),
        }
    }

    /// What `kiln status --json` shows.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "memory_bytes": self.memory_bytes,
            "memory": format_size(self.memory_bytes),
            "pids": self.pids,
            "cpu": self.cpu_cores(),
            "cpu_quota_us": self.cpu_quota_us(),
            "cpu_period_us": CPU_PERIOD_US,
        })
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory {}, pids {}, cpu {}",
            format_size(self.memory_bytes),
            self.pids,
            self.cpu_cores()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/// Why a size (`"256MiB"`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "{0:?} is not a size: expected a whole number with KiB, MiB, GiB or TiB (e.g. \"256MiB\"), or plain bytes"
    )]
    Malformed(String),
    #[error(
        "{0:?}: decimal units are ambiguous; use the binary ones (KiB, MiB, GiB, TiB = powers of 1024)"
    )]
    DecimalUnit(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

const UNITS: &[(&str, u32)] = &[("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40)];

/// Parses `"<digits>[ ]<KiB|MiB|GiB|TiB|B>"` or plain `"<digits>"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit = unit.trim_start();
    if digits.is_empty() {
        return Err(SizeError::Malformed(s.into()));
    }
    let shift = match unit {
        "" | "B" => 0,
        _ => match UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, shift)) => *shift,
            None if ["K", "M", "G", "T", "KB", "MB", "GB", "TB", "k", "kB"].contains(&unit) => {
                return Err(SizeError::DecimalUnit(s.into()));
            }
            None => return Err(SizeError::Malformed(s.into())),
        },
    };
    let n: u64 = digits.parse().map_err(|_| SizeError::Overflow(s.into()))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(s.into()))
}

/// `268435456` → `"256 MiB"`: the largest binary unit that divides exactly, else bytes.
pub fn format_size(n: u64) -> String {
    for (unit, shift) in UNITS.iter().rev() {
        if n != 0 && n.trailing_zeros() >= *shift {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

// ---------------------------------------------------------------------------------------------
// The raw table
// ---------------------------------------------------------------------------------------------

/// `[service.<name>.limits]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    memory: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pids: Option<Spanned<i64>>,
    #[serde(default)]
    cpu: Option<Spanned<toml::Value>>,
}

/// A limits error at a byte range of the deploy file.
#[derive(Debug)]
pub(crate) struct Located {
    pub span: Range<usize>,
    pub message: String,
}

/// Where the explicitly given values are (byte offsets), for checks against the host that
/// run after parsing.
#[derive(Clone, Debug, Default)]
pub(crate) struct LimitsAt {
    pub memory: Option<usize>,
    pub cpu: Option<usize>,
}

/// Checks the raw table of `key` (`service.web.limits`) into effective limits.
pub(crate) fn from_raw(key: &str, raw: RawLimits) -> Result<(Limits, LimitsAt), Located> {
    let mut out = Limits::default();
    let mut at = LimitsAt::default();
    let err = |span: Range<usize>, message: String| Located { span, message };
    if let Some(m) = &raw.memory {
        let bytes = match m.get_ref() {
            toml::Value::String(s) => {
                parse_size(s).map_err(|e| err(m.span(), format!("{key}.memory: {e}")))?
            }
            toml::Value::Integer(n) => u64::try_from(*n)
                .map_err(|_| err(m.span(), format!("{key}.memory: {n} is negative")))?,
            other => {
                return Err(err(
                    m.span(),
                    format!(
                        "{key}.memory: expected a size such as \"256MiB\" (or bytes), found a {}",
                        other.type_str()
                    ),
                ));
            }
        };
        if bytes < MIN_MEMORY {
            return Err(err(
                m.span(),
                format!(
                    "{key}.memory: {} is below the smallest limit an instance can start with ({})",
                    format_size(bytes),
                    format_size(MIN_MEMORY)
                ),
            ));
        }
        if bytes > MAX_MEMORY {
            return Err(err(
                m.span(),
                format!(
                    "{key}.memory: {} is more than the largest limit ({})",
                    format_size(bytes),
                    format_size(MAX_MEMORY)
                ),
            ));
        }
        out.memory_bytes = bytes;
        at.memory = Some(m.span().start);
    }
    if let Some(p) = &raw.pids {
        let n = *p.get_ref();
        out.pids = u32::try_from(n)
            .ok()
            .filter(|n| (MIN_PIDS..=MAX_PIDS).contains(n))
            .ok_or_else(|| {
                err(
                    p.span(),
                    format!("{key}.pids: {n} is out of range ({MIN_PIDS}..={MAX_PIDS})"),
                )
            })?;
    }
    if let Some(c) = &raw.cpu {
        let cores = match c.get_ref() {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(n) => *n as f64,
            other => {
                return Err(err(
                    c.span(),
                    format!(
                        "{key}.cpu: expected a number of cores such as 1 or 0.5, found a {}",
                        other.type_str()
                    ),
                ));
            }
        };
        out.cpu_millicores = cpu_millicores(cores).ok_or_else(|| {
            err(
                c.span(),
                format!(
                    "{key}.cpu: {cores} is not a number of cores from {} to {} with at most three decimals",
                    f64::from(MIN_CPU_MILLICORES) / 1000.0,
                    MAX_CPU_MILLICORES / 1000
                ),
            )
        })?;
        at.cpu = Some(c.span().start);
    }
    Ok((out, at))
}

/// Cores → millicores, if in range and a whole number of millicores.
fn cpu_millicores(cores: f64) -> Option<u32> {
    if !cores.is_finite() {
        return None;
    }
    let m = cores * 1000.0;
    let r = m.round();
    if (m - r).abs() > 1e-6
        || r < f64::from(MIN_CPU_MILLICORES)
        || r > f64::from(MAX_CPU_MILLICORES)
    {
        return None;
    }
    // In range (checked above), so the cast is exact.
    Some(r as u32)
}

impl Limits {
    /// Puts the limits into an instance's runtime spec: memory (and memory + swap equal to it
    /// where the host accounts swap, so it cannot swap around the limit; without swap
    /// accounting only memory is limited), pids, CPU quota.
    pub(crate) fn apply_to(&self, spec: &mut kiln_runtime::InstanceSpec, swap_accounted: bool) {
        spec.memory_limit_bytes = i64::try_from(self.memory_bytes).ok();
        spec.memory_swap_bytes = spec.memory_limit_bytes.filter(|_| swap_accounted);
        spec.pids_limit = Some(i64::from(self.pids));
        spec.cpu_quota_us = i64::try_from(self.cpu_quota_us()).ok();
        spec.cpu_period_us = Some(CPU_PERIOD_US);
    }
}

/// The exit description `how` (`"was killed by SIGKILL"`, `"exited with status 1"`) of an
/// instance whose memory controller recorded `v`, rewritten when its memory limit killed it:
/// `"was killed by the kernel: out of memory (limit 32 MiB)"`. `None`: not a memory death.
pub fn oom_reason(how: &str, v: &kiln_runtime::cgroup::MemoryVerdict) -> Option<String> {
    let sigkill = how == "was killed by SIGKILL";
    if !v.out_of_memory(sigkill) {
        return None;
    }
    let limit = v
        .limit_bytes
        .map_or_else(String::new, |b| format!(" (limit {})", format_size(b)));
    Some(if sigkill {
        format!("was killed by the kernel: out of memory{limit}")
    } else {
        let n = v.oom_kills.unwrap_or(0);
        let what = if n == 1 {
            "a process".to_string()
        } else {
            format!("{n} processes")
        };
        format!("{how} after the kernel killed {what} in it: out of memory{limit}")
    })
}

/// Online CPUs and `MemTotal` of this host (`None` for what cannot be read), for
/// [`crate::Deployment::check_limits_fit`].
pub fn host_capacity() -> (Option<u32>, Option<u64>) {
    // SAFETY: sysconf has no memory-safety preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpus = u32::try_from(cpus).ok().filter(|n| *n > 0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t));
    (cpus, mem)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert_eq, proptest};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert!(matches!(
            parse_size("256MB"),
            Err(SizeError::DecimalUnit(_))
        ));
        assert!(matches!(parse_size("256M"), Err(SizeError::DecimalUnit(_))));
        for bad in ["", "MiB", "-1MiB", "1.5GiB", "12 parsecs", "0x10", " MiB 3"] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("17179869184TiB"),
            Err(SizeError::Overflow(_))
        ));
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(3 << 30), "3 GiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(1000), "1000 B");
        assert_eq!(format_size(0), "0 B");
    }

    #[test]
    fn defaults_and_cpu() {
        let d = Limits::default();
        assert_eq!(d.memory_bytes, 512 << 20);
        assert_eq!(d.pids, 512);
        assert_eq!(d.cpu_quota_us(), 100_000);
        assert_eq!(cpu_millicores(1.5), Some(1500));
        assert_eq!(cpu_millicores(0.01), Some(10));
        assert_eq!(cpu_millicores(1024.0), Some(1_024_000));
        assert_eq!(cpu_millicores(0.005), None);
        assert_eq!(cpu_millicores(0.0), None);
        assert_eq!(cpu_millicores(-1.0), None);
        assert_eq!(cpu_millicores(1024.5), None);
        assert_eq!(cpu_millicores(0.0001), None);
        assert_eq!(cpu_millicores(f64::NAN), None);
        // An old stored spec without the field, or with part of it, gets the defaults.
        let l: Limits = serde_json::from_str("{}").unwrap();
        assert_eq!(l, d);
        let l: Limits = serde_json::from_str(r#"{"pids": 64}"#).unwrap();
        assert_eq!((l.pids, l.memory_bytes), (64, 512 << 20));
    }

    #[test]
    fn oom_reasons() {
        use kiln_runtime::cgroup::{memory_verdict_v1, memory_verdict_v2};
        let v1 = memory_verdict_v1("under_oom 0\noom_kill 1\n", Some("40"), Some("33554432"));
        assert_eq!(
            oom_reason("was killed by SIGKILL", &v1).as_deref(),
            Some("was killed by the kernel: out of memory (limit 32 MiB)")
        );
        let v2 = memory_verdict_v2("max 9\noom 2\noom_kill 2\n", Some("268435456"));
        assert_eq!(
            oom_reason("exited with status 1", &v2).as_deref(),
            Some(
                "exited with status 1 after the kernel killed 2 processes in it: out of memory (limit 256 MiB)"
            )
        );
        let none = memory_verdict_v2("max 0\noom 0\noom_kill 0\n", Some("max"));
        assert_eq!(oom_reason("was killed by SIGKILL", &none), None);
        let no_limit = memory_verdict_v1("oom_kill 1\n", None, None);
        assert_eq!(
            oom_reason("was killed by SIGKILL", &no_limit).as_deref(),
            Some("was killed by the kernel: out of memory")
        );
    }

    #[test]
    fn into_the_runtime_spec() {
        let rootfs_less = kiln_runtime::InstanceSpec {
            id: "web-0001".into(),
            args: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/".into(),
            user: kiln_runtime::User::default(),
            terminal: false,
            nofile: 1024,
            tmp_size_mib: 64,
            run_size_mib: 16,
            cgroups_path: None,
            memory_limit_bytes: None,
            memory_swap_bytes: None,
            pids_limit: None,
            cpu_quota_us: None,
            cpu_period_us: None,
            bind_mounts: vec![],
            annotations: Default::default(),
        };
        let l = Limits {
            memory_bytes: 256 << 20,
            pids: 64,
            cpu_millicores: 1500,
        };
        let mut s = rootfs_less.clone();
        l.apply_to(&mut s, true);
        let v = kiln_runtime::runtime_config(&s);
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 256 << 20);
        assert_eq!(r["memory"]["swap"], 256 << 20);
        assert_eq!(r["pids"]["limit"], 64);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        let mut s = rootfs_less;
        l.apply_to(&mut s, false);
        assert_eq!(s.memory_swap_bytes, None);
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    /// Parses a one-service deploy file whose text ends with `extra` (from line 6).
    fn parse(extra: &str) -> Result<crate::Deployment, crate::DeployError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trust.toml"), "").unwrap();
        let text = format!(
            "[service.web]\nimage = \"hello@{D1}\"\nlisten = \"127.0.0.1:18080\"\nport = 8080\npolicy = \"trust.toml\"\n{extra}"
        );
        crate::Deployment::parse(&dir.path().join("deploy.toml"), &text)
    }

    #[test]
    fn parses_the_table_with_defaults() {
        let d = parse("").unwrap();
        assert_eq!(d.services["web"].limits, Some(Limits::default()));
        let d =
            parse("[service.web.limits]\nmemory = \"256MiB\"\npids = 256\ncpu = 1.5\n").unwrap();
        assert_eq!(
            d.services["web"].limits,
            Some(Limits {
                memory_bytes: 256 << 20,
                pids: 256,
                cpu_millicores: 1500
            })
        );
        // Any one key overrides its default only; bytes and whole cores work too.
        let d = parse("limits = { memory = 33554432 }\n").unwrap();
        assert_eq!(d.services["web"].limits.unwrap().memory_bytes, 32 << 20);
        assert_eq!(d.services["web"].limits.unwrap().pids, 512);
        let d = parse("[service.web.limits]\ncpu = 2\n").unwrap();
        assert_eq!(d.services["web"].limits.unwrap().cpu_millicores, 2000);
        assert_eq!(d.services["web"].limits.unwrap().memory_bytes, 512 << 20);
    }

    #[test]
    fn a_spec_stored_before_limits_is_unlimited_says_so_and_the_next_apply_differs() {
        let parsed = parse("").unwrap().services["web"].clone();
        let mut v = serde_json::to_value(&parsed).unwrap();
        v.as_object_mut().unwrap().remove("limits");
        let old: crate::deploy::ServiceSpec = serde_json::from_value(v).unwrap();
        assert_eq!(old.limits, None);
        // Its instances got no limits, and status says that, not the defaults.
        let shown = Limits::status_json(old.limits.as_ref());
        assert_eq!(shown["unlimited"], true, "{shown}");
        assert_eq!(
            Limits::status_json(parsed.limits.as_ref())["memory_bytes"],
            512u64 << 20
        );
        // The same file applied again is a new release (limited instances).
        let now = parse("").unwrap();
        let mut before = parse("").unwrap();
        before.services.insert("web".into(), old);
        let crate::deploy::ServiceAction::Update(changes) =
            &crate::deploy::plan(&before, &now).services["web"]
        else {
            panic!("no update");
        };
        assert!(
            changes.iter().any(|c| c.needs_new_release()
                && c.to_string().starts_with("limits none -> memory 512 MiB")),
            "{changes:?}"
        );
    }

    #[test]
    fn each_bad_value_names_its_place() {
        let cases = [
            (
                "memory = \"2MiB\"\n",
                7,
                10,
                "below the smallest limit an instance can start with (4 MiB)",
            ),
            ("memory = \"256MB\"\n", 7, 10, "decimal units are ambiguous"),
            (
                "memory = \"lots\"\n",
                7,
                10,
                "service.web.limits.memory: \"lots\" is not a size",
            ),
            (
                "memory = \"8TiB\"\n",
                7,
                10,
                "is more than the largest limit (4 TiB)",
            ),
            ("memory = -5\n", 7, 10, "-5 is negative"),
            ("memory = 1.5\n", 7, 10, "found a float"),
            (
                "pids = 4\n",
                7,
                8,
                "service.web.limits.pids: 4 is out of range (8..=4194304)",
            ),
            ("pids = \"64\"\n", 7, 8, "invalid type: string"),
            (
                "cpu = 0\n",
                7,
                7,
                "service.web.limits.cpu: 0 is not a number of cores",
            ),
            (
                "cpu = 2000.0\n",
                7,
                7,
                "is not a number of cores from 0.01 to 1024",
            ),
            ("cpu = 0.0005\n", 7, 7, "at most three decimals"),
            ("cpu = \"1\"\n", 7, 7, "found a string"),
            ("swap = \"1GiB\"\n", 7, 1, "unknown field `swap`"),
        ];
        for (body, line, col, needle) in cases {
            let e = parse(&format!("[service.web.limits]\n{body}")).unwrap_err();
            assert_eq!((e.line, e.column), (line, col), "{e}\n{body}");
            assert!(e.message.contains(needle), "{e}\n{body}");
        }
    }

    #[test]
    fn host_capacity_is_checked_where_written() {
        let d = parse("[service.web.limits]\nmemory = \"1GiB\"\ncpu = 4\n").unwrap();
        let e = d.check_limits_fit(Some(2), None).unwrap_err();
        assert_eq!((e.line, e.column), (8, 7), "{e}");
        assert!(
            e.message.contains("4 cores is more than this host has (2)"),
            "{e}"
        );
        let e = d.check_limits_fit(None, Some(512 << 20)).unwrap_err();
        assert_eq!((e.line, e.column), (7, 10), "{e}");
        assert!(
            e.message
                .contains("1 GiB is more than this host's memory (512 MiB)"),
            "{e}"
        );
        d.check_limits_fit(Some(4), Some(1 << 30)).unwrap();
        // Defaults are not checked (nothing was written).
        parse("")
            .unwrap()
            .check_limits_fit(Some(0), Some(0))
            .unwrap();
    }

    #[test]
    fn meminfo() {
        let t = "MemTotal:        8126464 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total(t), Some(8126464 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    proptest! {
        #[test]
        fn size_round_trips(n in 0u64..(1 << 44), unit in 0usize..5) {
            let (suffix, shift) = match unit {
                0 => ("", 0),
                1 => ("KiB", 10),
                2 => ("MiB", 20),
                3 => ("GiB", 30),
                _ => ("TiB", 40),
            };
            let v = n >> shift;
            let text = format!("{v}{suffix}");
            prop_assert_eq!(parse_size(&text), Ok(v << shift));
            let shown = format_size(v << shift);
            prop_assert_eq!(parse_size(&shown), Ok(v << shift));
        }

        #[test]
        fn size_parser_never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
        }
    }
}
