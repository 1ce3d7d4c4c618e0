//! Where an instance's cgroup lives on this host (cgroup v1 or v2) and what
//! its memory controller says after the instance ended: whether the kernel
//! OOM-killed something in it, and its limit.
//!
//! runc creates the cgroup from `linux.cgroupsPath` and `linux.resources`;
//! this module only reads it (and removes empty parents). Detection and
//! parsing are pure functions over the texts of `/proc/self/mountinfo`,
//! `memory.oom_control`, `memory.failcnt`, `memory.events`,
//! `memory.limit_in_bytes` and `memory.max`, so they are tested with fixtures.

use std::path::{Path, PathBuf};

/// How cgroups are mounted here, as runc's cgroupfs driver sees it: v2 when
/// `/sys/fs/cgroup` itself is a `cgroup2` mount, else v1 hierarchies (a
/// `cgroup2` mount elsewhere, as in hybrid mode, carries no controllers but
/// runc makes the instance's directory there too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    V1 {
        /// Mount point of each v1 hierarchy, with the controllers it carries
        /// (`memory`, `cpu,cpuacct`, `name=systemd`...; none for hybrid
        /// mode's `cgroup2` mount).
        hierarchies: Vec<(PathBuf, Vec<String>)>,
    },
    V2 {
        root: PathBuf,
    },
}

/// Unescapes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup layout from the text of `/proc/self/mountinfo`; `None` when no
/// cgroup file system is mounted.
pub fn layout_from_mountinfo(text: &str) -> Option<CgroupLayout> {
    let mut hierarchies = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fstype), Some(superopts)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape(mount_point));
        match *fstype {
            "cgroup2" if mount_point == Path::new("/sys/fs/cgroup") => {
                return Some(CgroupLayout::V2 { root: mount_point });
            }
            "cgroup2" => hierarchies.push((mount_point, Vec::new())),
            "cgroup" => {
                let controllers = superopts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("release_agent"))
                    .map(str::to_string)
                    .collect();
                hierarchies.push((mount_point, controllers));
            }
            _ => {}
        }
    }
    (!hierarchies.is_empty()).then_some(CgroupLayout::V1 { hierarchies })
}

/// What the memory controller of an ended instance's cgroup recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryVerdict {
    /// Processes the OOM killer killed in the cgroup (`None`: the kernel
    /// does not report it, v1 before 4.13).
    pub oom_kills: Option<u64>,
    /// Times the usage hit the limit (v1 `memory.failcnt`, v2 `max` events).
    pub limit_hits: Option<u64>,
    /// The limit in bytes (`None`: unlimited or unknown).
    pub limit_bytes: Option<u64>,
}

impl MemoryVerdict {
    /// Whether the memory limit killed the instance: an OOM kill was
    /// counted, or (kernels that do not count them) the instance died of
    /// SIGKILL after hitting its limit.
    pub fn out_of_memory(&self, killed_by_sigkill: bool) -> bool {
        match self.oom_kills {
            Some(n) => n > 0,
            None => killed_by_sigkill && self.limit_hits.is_some_and(|n| n > 0),
        }
    }
}

/// A `key value` line of a flat-keyed cgroup file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next())
            .flatten()
            .and_then(|v| v.parse().ok())
    })
}

/// A single-number cgroup file (`memory.failcnt`, `memory.limit_in_bytes`).
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// v1 limits at or above this are "unlimited" (the kernel shows
/// `PAGE_COUNTER_MAX` pages rounded, 9223372036854771712 on 4 KiB pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// The verdict from v1's `memory.oom_control`, `memory.failcnt` and
/// `memory.limit_in_bytes` texts.
pub fn memory_verdict_v1(
    oom_control: &str,
    failcnt: Option<&str>,
    limit_in_bytes: Option<&str>,
) -> MemoryVerdict {
    MemoryVerdict {
        oom_kills: keyed(oom_control, "oom_kill"),
        limit_hits: failcnt.and_then(number),
        limit_bytes: limit_in_bytes
            .and_then(number)
            .filter(|n| *n < V1_UNLIMITED),
    }
}

/// The verdict from v2's `memory.events` and `memory.max` texts.
pub fn memory_verdict_v2(events: &str, max: Option<&str>) -> MemoryVerdict {
    MemoryVerdict {
        oom_kills: keyed(events, "oom_kill"),
        limit_hits: keyed(events, "max"),
        limit_bytes: max.and_then(number),
    }
}

impl CgroupLayout {
    /// This host's layout, from `/proc/self/mountinfo`.
    pub fn detect() -> Option<CgroupLayout> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        layout_from_mountinfo(&text)
    }

    /// The directory of cgroup `path` (as in `linux.cgroupsPath`, absolute)
    /// for `controller` (`memory`, `pids`, `cpu`); the unified directory on v2.
    pub fn dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            CgroupLayout::V2 { root } => Some(root.join(rel)),
            CgroupLayout::V1 { hierarchies } => hierarchies
                .iter()
                .find(|(_, c)| c.iter().any(|c| c == controller))
                .map(|(m, _)| m.join(rel)),
        }
    }

    /// What the memory controller of cgroup `path` recorded; `None` when
    /// the cgroup is gone (read it before `runc delete`).
    pub fn memory_verdict(&self, path: &str) -> Option<MemoryVerdict> {
        let dir = self.dir("memory", path)?;
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        match self {
            CgroupLayout::V1 { .. } => Some(memory_verdict_v1(
                &read("memory.oom_control")?,
                read("memory.failcnt").as_deref(),
                read("memory.limit_in_bytes").as_deref(),
            )),
            CgroupLayout::V2 { .. } => Some(memory_verdict_v2(
                &read("memory.events")?,
                read("memory.max").as_deref(),
            )),
        }
    }

    /// Whether a memory + swap limit can be set (v1 needs swap accounting:
    /// `memory.memsw.limit_in_bytes`; runc skips a zero swap on v2 itself).
    pub fn swap_limit_supported(&self) -> bool {
        match self {
            CgroupLayout::V2 { .. } => true,
            CgroupLayout::V1 { .. } => self
                .dir("memory", "/")
                .is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists()),
        }
    }

    /// Removes the directory of cgroup `path` in every hierarchy if it is
    /// empty (errors such as EBUSY for one still in use are ignored).
    pub fn remove_if_empty(&self, path: &str) {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return;
        }
        let dirs: Vec<PathBuf> = match self {
            CgroupLayout::V2 { root } => vec![root.join(rel)],
            CgroupLayout::V1 { hierarchies } => {
                hierarchies.iter().map(|(m, _)| m.join(rel)).collect()
            }
        };
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
24 1 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const JOINED: &str = "\
35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 master:3 - cgroup cgroup rw,cpu,cpuacct
36 31 0:33 / /sys/fs/cgroup/my\\040memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn detects_v1_hybrid_and_v2() {
        let v1 = layout_from_mountinfo(HYBRID).unwrap();
        assert!(matches!(v1, CgroupLayout::V1 { .. }));
        let p = "/kiln/abc/web-0001";
        assert_eq!(
            v1.dir("memory", p).unwrap(),
            Path::new("/sys/fs/cgroup/memory/kiln/abc/web-0001")
        );
        assert_eq!(
            v1.dir("pids", p).unwrap(),
            Path::new("/sys/fs/cgroup/pids/kiln/abc/web-0001")
        );
        assert_eq!(
            v1.dir("cpu", p).unwrap(),
            Path::new("/sys/fs/cgroup/cpu/kiln/abc/web-0001")
        );
        assert_eq!(
            v1.dir("name=systemd", p).unwrap(),
            Path::new("/sys/fs/cgroup/systemd/kiln/abc/web-0001")
        );
        assert!(v1.dir("blkio", p).is_none());
        let CgroupLayout::V1 { hierarchies } = &v1 else {
            unreachable!()
        };
        // Hybrid mode's unified mount: no controller, but a directory to clean up.
        assert!(hierarchies.contains(&("/sys/fs/cgroup/unified".into(), vec![])));
        assert_eq!(hierarchies.len(), 6);

        let v2 = layout_from_mountinfo(UNIFIED).unwrap();
        assert_eq!(
            v2,
            CgroupLayout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(
            v2.dir("memory", p).unwrap(),
            Path::new("/sys/fs/cgroup/kiln/abc/web-0001")
        );
        assert!(v2.swap_limit_supported());

        let j = layout_from_mountinfo(JOINED).unwrap();
        assert_eq!(
            j.dir("cpu", "/x").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/x")
        );
        assert_eq!(
            j.dir("memory", "/x").unwrap(),
            Path::new("/sys/fs/cgroup/my memory/x")
        );

        assert_eq!(layout_from_mountinfo("garbage\n\n1 2 3 - x\n"), None);
    }

    #[test]
    fn oom_v1() {
        let killed = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        let v = memory_verdict_v1(killed, Some("57\n"), Some("33554432\n"));
        assert_eq!(v.oom_kills, Some(1));
        assert_eq!(v.limit_hits, Some(57));
        assert_eq!(v.limit_bytes, Some(32 << 20));
        assert!(v.out_of_memory(true));
        assert!(v.out_of_memory(false));

        let fine = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        let v = memory_verdict_v1(fine, Some("3\n"), Some("9223372036854771712\n"));
        assert!(!v.out_of_memory(true));
        assert_eq!(v.limit_bytes, None);

        // Before 4.13 there is no oom_kill line: a SIGKILL after hitting the limit.
        let old = "oom_kill_disable 0\nunder_oom 0\n";
        let v = memory_verdict_v1(old, Some("12\n"), None);
        assert_eq!(v.oom_kills, None);
        assert!(v.out_of_memory(true));
        assert!(!v.out_of_memory(false));
        let v = memory_verdict_v1(old, Some("0\n"), None);
        assert!(!v.out_of_memory(true));
    }

    #[test]
    fn oom_v2() {
        let events = "low 0\nhigh 0\nmax 812\noom 3\noom_kill 2\noom_group_kill 0\n";
        let v = memory_verdict_v2(events, Some("268435456\n"));
        assert_eq!(v.oom_kills, Some(2));
        assert_eq!(v.limit_hits, Some(812));
        assert_eq!(v.limit_bytes, Some(256 << 20));
        assert!(v.out_of_memory(false));

        let v = memory_verdict_v2("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", Some("max\n"));
        assert!(!v.out_of_memory(true));
        assert_eq!(v.limit_bytes, None);
        // `oom_group_kill` is not `oom_kill`.
        let v = memory_verdict_v2("oom_group_kill 4\n", None);
        assert_eq!(v.oom_kills, None);
    }

    #[test]
    fn removes_only_empty_dirs() {
        let t = tempfile::tempdir().unwrap();
        let l = CgroupLayout::V2 {
            root: t.path().to_path_buf(),
        };
        std::fs::create_dir_all(t.path().join("kiln/tag/web-1")).unwrap();
        l.remove_if_empty("/kiln/tag");
        assert!(t.path().join("kiln/tag").exists());
        l.remove_if_empty("/kiln/tag/web-1");
        l.remove_if_empty("/kiln/tag");
        assert!(!t.path().join("kiln/tag").exists());
        l.remove_if_empty("/");
        assert!(t.path().exists());
    }
}
