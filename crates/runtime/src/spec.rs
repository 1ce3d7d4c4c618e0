//! From an image config to an OCI runtime-spec `config.json`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use crate::{Rootfs, RuntimeError};

/// `PATH` when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The numeric identity an instance's process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A read-only bind mount added to an instance (debug tools).
///
/// The destination must be under `/tmp` or `/run` (tmpfs, so runc creates
/// the mount point there, never in the shared rootfs) or be an existing
/// directory of the rootfs; [`Bundle::write`] checks this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
}

/// Everything that varies between instances of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// runc container id and hostname: `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`.
    pub id: String,
    pub args: Vec<String>,
    /// `KEY=value`, image env first, overrides applied.
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    /// Only for debug instances.
    pub terminal: bool,
    pub nofile: u64,
    pub tmp_size_mib: u64,
    pub run_size_mib: u64,
    pub cgroups_path: Option<String>,
    pub memory_limit_bytes: Option<i64>,
    /// Memory + swap (set it equal to the memory limit to allow no swap);
    /// only where the host accounts swap (v1 `memory.memsw.*`).
    pub memory_swap_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
    /// CFS quota and period in microseconds (`cpu.cfs_quota_us` /
    /// `cpu.cfs_period_us` on v1, `cpu.max` on v2).
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub bind_mounts: Vec<BindMount>,
    pub annotations: BTreeMap<String, String>,
}

impl InstanceSpec {
    /// The image's own process (entrypoint + cmd, env, working dir, user —
    /// a user name is resolved through the rootfs's `/etc/passwd` and
    /// `/etc/group`) with kiln's defaults: NOFILE 1024, `/tmp` 64 MiB,
    /// `/run` 16 MiB, no cgroup limits.
    pub fn from_image(id: &str, rootfs: &Rootfs) -> Result<InstanceSpec, RuntimeError> {
        let c = &rootfs.config.config;
        let mut args: Vec<String> = c.entrypoint.clone().unwrap_or_default();
        args.extend(c.cmd.clone().unwrap_or_default());
        let mut env = c.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let cwd = match c.working_dir.as_deref() {
            None | Some("") => "/".to_string(),
            Some(w) => w.to_string(),
        };
        let spec = InstanceSpec {
            id: id.to_string(),
            args,
            env,
            cwd,
            user: resolve_user(&rootfs.path, c.user.as_deref())?,
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
            bind_mounts: Vec::new(),
            annotations: BTreeMap::new(),
        };
        Ok(spec)
    }

    /// Set (or replace) one environment variable.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let prefix = format!("{key}=");
        self.env.retain(|e| !e.starts_with(&prefix));
        self.env.push(format!("{key}={value}"));
    }

    /// Check what runc would otherwise reject late or misinterpret.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |s: String| Err(RuntimeError::Spec(s));
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 63
            && self.id.as_bytes()[0].is_ascii_alphanumeric()
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !id_ok {
            return bad(format!(
                "instance id {:?} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,62}}",
                self.id
            ));
        }
        if self.args.is_empty() || self.args[0].is_empty() {
            return bad("no command: the image has no entrypoint or cmd".into());
        }
        if !self.cwd.starts_with('/') {
            return bad(format!("working directory {:?} is not absolute", self.cwd));
        }
        if let Some(e) = self.env.iter().find(|e| !e.contains('=')) {
            return bad(format!("environment entry {e:?} has no `=`"));
        }
        if self.tmp_size_mib == 0 || self.run_size_mib == 0 || self.nofile == 0 {
            return bad("tmpfs sizes and NOFILE must be positive".into());
        }
        for b in &self.bind_mounts {
            if !clean_abs(&b.destination) {
                return bad(format!(
                    "bind mount destination {:?} must be absolute and normalised",
                    b.destination
                ));
            }
            if !b.source.is_absolute() {
                return bad(format!(
                    "bind mount source {} must be absolute",
                    b.source.display()
                ));
            }
        }
        Ok(())
    }
}

fn clean_abs(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && Path::new(p)
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)))
        && !p.ends_with('/')
        && !p.contains("//")
}

/// Resolve an image `User` (`""`, `uid`, `uid:gid`, `name`, `name:group`,
/// `uid:group`) to numbers. Names are looked up in the rootfs's
/// `/etc/passwd` and `/etc/group`, read without following any symlink (a
/// symlinked `/etc` or `/etc/passwd` is an error: nothing is resolved on the
/// host). A numeric uid without a gid takes the passwd entry's gid if there
/// is one, else 0. Supplementary groups come from `/etc/group` membership.
pub fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<User, RuntimeError> {
    let spec = user.unwrap_or("").trim();
    if spec.is_empty() {
        return Ok(User::default());
    }
    let err = |reason: String| RuntimeError::User {
        user: spec.to_string(),
        reason,
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) if u.is_empty() || g.is_empty() => {
            return Err(err("expected user[:group]".into()));
        }
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if let (Ok(uid), Some(Ok(gid))) = (u.parse::<u32>(), g.map(str::parse::<u32>)) {
        // Fully numeric: nothing to look up.
        return Ok(User {
            uid,
            gid,
            additional_gids: Vec::new(),
        });
    }
    let passwd = read_in_rootfs(rootfs, "etc/passwd").map_err(|e| err(e.to_string()))?;
    let group = read_in_rootfs(rootfs, "etc/group").map_err(|e| err(e.to_string()))?;
    let pw: Vec<Vec<&str>> = lines(passwd.as_deref());
    let gr: Vec<Vec<&str>> = lines(group.as_deref());
    let num = u.parse::<u32>().ok();
    let entry = pw.iter().find(|f| {
        f.len() >= 4
            && match num {
                Some(n) => f[2].parse::<u32>().ok() == Some(n),
                None => f[0] == u,
            }
    });
    let (uid, name, pw_gid) = match (u.parse::<u32>(), entry) {
        (Ok(n), e) => (n, e.map(|f| f[0]), e.and_then(|f| f[3].parse::<u32>().ok())),
        (Err(_), Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| err(format!("/etc/passwd has a bad uid for {u}")))?,
            Some(f[0]),
            f[3].parse::<u32>().ok(),
        ),
        (Err(_), None) => {
            return Err(err(format!("no user {u:?} in the image's /etc/passwd")));
        }
    };
    let gid = match g {
        None => pw_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gr
                .iter()
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| err(format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    let mut additional_gids: Vec<u32> = match name {
        Some(n) => gr
            .iter()
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse::<u32>().ok())
            .filter(|x| *x != gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

fn lines(b: Option<&str>) -> Vec<Vec<&str>> {
    b.unwrap_or("")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .collect()
}

/// Why a file of the rootfs could not be read.
#[derive(Debug, thiserror::Error)]
enum RootfsReadError {
    #[error("/{0} in the image is a symlink; refusing to follow it")]
    Symlink(String),
    #[error("/{0} in the image is not a regular file")]
    NotAFile(String),
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("/{rel}: {source}")]
    Read {
        rel: String,
        #[source]
        source: io::Error,
    },
}

/// Read a small file of the rootfs without following any symlink.
/// `Ok(None)` if it does not exist.
fn read_in_rootfs(rootfs: &Path, rel: &str) -> Result<Option<String>, RootfsReadError> {
    let at = |p: &Path| {
        let path = p.to_path_buf();
        move |source| RootfsReadError::Io { path, source }
    };
    let comps: Vec<&str> = rel.split('/').collect();
    let mut p = rootfs.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(RootfsReadError::Symlink(comps[..=i].join("/")));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at(&p)(e)),
        }
    }
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&p)
        .map_err(at(&p))?;
    let md = f.metadata().map_err(at(&p))?;
    if !md.is_file() {
        return Err(RootfsReadError::NotAFile(rel.into()));
    }
    let mut s = String::new();
    (&mut f)
        .take(4 << 20)
        .read_to_string(&mut s)
        .map_err(|source| RootfsReadError::Read {
            rel: rel.into(),
            source,
        })?;
    Ok(Some(s))
}

/// The seccomp profile: default allow, EPERM for the syscalls Docker's
/// default profile blocks that a serving process never needs (mounting,
/// namespaces, tracing, kernel modules and keyrings, BPF, clock and swap
/// changes, reboot...). Names the host's libseccomp does not know are
/// ignored by runc.
pub fn seccomp_profile() -> Value {
    const DENY: &[&str] = &[
        "acct",
        "add_key",
        "adjtimex",
        "bpf",
        "chroot",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "fanotify_init",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "io_uring_enter",
        "io_uring_register",
        "io_uring_setup",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "mount_setattr",
        "move_mount",
        "move_pages",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "set_mempolicy",
        "setns",
        "settimeofday",
        "stime",
        "swapoff",
        "swapon",
        "syslog",
        "sysfs",
        "_sysctl",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
    ];
    let arches: &[&str] = match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "x86" => &["SCMP_ARCH_X86"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => &["SCMP_ARCH_ARM"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "powerpc64" => &["SCMP_ARCH_PPC64"],
        _ => &[],
    };
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": arches,
        "syscalls": [{
            "names": DENY,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
        }],
    })
}

/// The OCI runtime-spec (1.0.2) `config.json` for `spec`. `root.path` is
/// `rootfs`; [`Bundle::write`] replaces it with the shared rootfs's
/// absolute path.
pub fn runtime_config(spec: &InstanceSpec) -> Value {
    let u = &spec.user;
    let caps = json!({
        "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
    });
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "noexec", "mode=1777",
                           format!("size={}m", spec.tmp_size_mib)]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "noexec", "mode=755",
                           format!("uid={}", u.uid), format!("gid={}", u.gid),
                           format!("size={}m", spec.run_size_mib)]}),
    ];
    for b in &spec.bind_mounts {
        mounts.push(json!({
            "destination": b.destination,
            "type": "bind",
            "source": b.source,
            "options": ["rbind", "ro", "nosuid", "nodev"],
        }));
    }
    let mut linux = json!({
        "namespaces": [
            {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
            {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
        ],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
            "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        ],
        "readonlyPaths": [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
        ],
        "seccomp": seccomp_profile(),
    });
    let mut resources = serde_json::Map::new();
    if let Some(m) = spec.memory_limit_bytes {
        let mut mem = json!({"limit": m});
        if let Some(s) = spec.memory_swap_bytes {
            mem["swap"] = json!(s);
        }
        resources.insert("memory".into(), mem);
    }
    if let Some(p) = spec.pids_limit {
        resources.insert("pids".into(), json!({"limit": p}));
    }
    if spec.cpu_quota_us.is_some() || spec.cpu_period_us.is_some() {
        let mut cpu = serde_json::Map::new();
        if let Some(q) = spec.cpu_quota_us {
            cpu.insert("quota".into(), json!(q));
        }
        if let Some(p) = spec.cpu_period_us {
            cpu.insert("period".into(), json!(p));
        }
        resources.insert("cpu".into(), Value::Object(cpu));
    }
    if !resources.is_empty() {
        linux["resources"] = Value::Object(resources);
    }
    if let Some(cg) = &spec.cgroups_path {
        linux["cgroupsPath"] = json!(cg);
    }
    let mut v = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.terminal,
            "user": {"uid": u.uid, "gid": u.gid},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": spec.nofile, "soft": spec.nofile}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": spec.id,
        "mounts": mounts,
        "linux": linux,
    });
    if !u.additional_gids.is_empty() {
        v["process"]["user"]["additionalGids"] = json!(u.additional_gids);
    }
    if !spec.annotations.is_empty() {
        v["annotations"] = json!(spec.annotations);
    }
    v
}

/// A bundle directory: `config.json` (whose root is the shared rootfs) plus
/// runc's pid and log files.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    /// Validate `spec`, create `dir` and write `dir/config.json` with
    /// `root.path` = `rootfs` made absolute. Nothing is written in `rootfs`.
    pub fn write(dir: &Path, spec: &InstanceSpec, rootfs: &Path) -> Result<Bundle, RuntimeError> {
        spec.validate()?;
        let rootfs = if rootfs.is_absolute() {
            rootfs.to_path_buf()
        } else {
            std::path::absolute(rootfs).map_err(|e| RuntimeError::io(rootfs, e))?
        };
        let md = fs::symlink_metadata(&rootfs).map_err(|e| RuntimeError::io(&rootfs, e))?;
        if !md.is_dir() {
            return Err(RuntimeError::Spec(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )));
        }
        for b in &spec.bind_mounts {
            let under_tmpfs = ["/tmp/", "/run/"]
                .iter()
                .any(|p| b.destination.starts_with(p));
            if !under_tmpfs {
                let rel = b.destination.trim_start_matches('/');
                let mut p = rootfs.clone();
                let parts: Vec<&str> = rel.split('/').collect();
                // A file (e.g. an instance's /etc/hosts) may be bound over a
                // regular file of the image; everything above it is a directory.
                let file_source = fs::metadata(&b.source).is_ok_and(|m| m.is_file());
                for (i, c) in parts.iter().enumerate() {
                    p.push(OsStr::new(c));
                    let last = i + 1 == parts.len();
                    match fs::symlink_metadata(&p) {
                        Ok(m) if m.is_dir() => {}
                        Ok(m) if last && file_source && m.is_file() => {}
                        _ => {
                            return Err(RuntimeError::Spec(format!(
                                "bind mount destination {} is neither under /tmp or /run nor a directory (or, for a file, a regular file) of the image (runc would have to write the shared rootfs)",
                                b.destination
                            )));
                        }
                    }
                }
            }
        }
        fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
        let mut v = runtime_config(spec);
        v["root"]["path"] = json!(rootfs);
        let bytes = serde_json::to_vec_pretty(&v).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        kiln_oci::layout::write_atomic(&dir.join("config.json"), &bytes)?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(t.path().join("etc/passwd"), passwd).unwrap();
        fs::write(t.path().join("etc/group"), group).unwrap();
        t
    }

    #[test]
    fn resolves_users() {
        let t = rootfs_with(
            "root:x:0:0::/root:/bin/sh\napp:x:65532:65533::/:/bin/false\n",
            "root:x:0:\napp:x:65533:\nweb:x:40:app,other\n",
        );
        let r = |s: &str| resolve_user(t.path(), Some(s));
        assert_eq!(r("").unwrap(), User::default());
        assert_eq!(
            r("app").unwrap(),
            User {
                uid: 65532,
                gid: 65533,
                additional_gids: vec![40]
            }
        );
        assert_eq!(r("65532").unwrap().gid, 65533);
        assert_eq!(
            r("1000").unwrap(),
            User {
                uid: 1000,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(r("1000:7").unwrap().gid, 7);
        assert_eq!(r("app:web").unwrap().gid, 40);
        assert!(r("nobody").is_err());
        assert!(r("app:nogroup").is_err());
        assert!(r(":").is_err());
    }

    #[test]
    fn refuses_symlinked_etc() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("etc")).unwrap();
        let e = resolve_user(t.path(), Some("root")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        // A fully numeric user needs no lookup.
        assert_eq!(
            resolve_user(t.path(), Some("0:0")).unwrap(),
            User::default()
        );
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            id: "web-1".into(),
            args: vec!["/bin/busybox".into(), "true".into()],
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: "/".into(),
            user: User {
                uid: 65532,
                gid: 65532,
                additional_gids: vec![],
            },
            terminal: false,
            nofile: 4096,
            tmp_size_mib: 8,
            run_size_mib: 4,
            cgroups_path: Some("/kiln/web-1".into()),
            memory_limit_bytes: Some(64 << 20),
            memory_swap_bytes: Some(64 << 20),
            pids_limit: Some(64),
            cpu_quota_us: Some(150_000),
            cpu_period_us: Some(100_000),
            bind_mounts: vec![],
            annotations: BTreeMap::from([("kiln.service".into(), "web".into())]),
        }
    }

    #[test]
    fn config_has_the_isolation_settings() {
        let v = runtime_config(&spec());
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["terminal"], false);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(v["process"]["capabilities"][set], json!([]));
        }
        assert_eq!(v["hostname"], "web-1");
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for n in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
            assert!(ns.contains(&n), "{n}");
        }
        let tmp = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/tmp")
            .unwrap();
        assert!(
            tmp["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=8m"))
        );
        assert!(
            tmp["options"]
                .as_array()
                .unwrap()
                .contains(&json!("noexec"))
        );
        // OCI `linux.resources`: runc writes these to v1 files or translates
        // them for v2 (memory.max, memory.swap.max = swap - limit, pids.max,
        // cpu.max = "quota period").
        let r = &v["linux"]["resources"];
        assert_eq!(r["pids"]["limit"], 64);
        assert_eq!(r["memory"], json!({"limit": 64 << 20, "swap": 64 << 20}));
        assert_eq!(r["cpu"], json!({"quota": 150_000, "period": 100_000}));
        let mut s = spec();
        (s.memory_swap_bytes, s.cpu_quota_us, s.cpu_period_us) = (None, None, None);
        let v2 = runtime_config(&s);
        assert_eq!(
            v2["linux"]["resources"]["memory"],
            json!({"limit": 64 << 20})
        );
        assert!(v2["linux"]["resources"].get("cpu").is_none());
        assert_eq!(v["linux"]["cgroupsPath"], "/kiln/web-1");
        let names = &v["linux"]["seccomp"]["syscalls"][0]["names"];
        for s in ["mount", "ptrace", "unshare", "setns", "bpf", "kexec_load"] {
            assert!(names.as_array().unwrap().contains(&json!(s)), "{s}");
        }
        assert_eq!(v["annotations"]["kiln.service"], "web");
    }

    #[test]
    fn validation() {
        let mut s = spec();
        s.id = "../x".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.args.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.bind_mounts.push(BindMount {
            source: "/opt/tools".into(),
            destination: "/run/../etc".into(),
        });
        assert!(s.validate().is_err());
        let mut s = spec();
        s.set_env("PATH", "/bin");
        assert_eq!(s.env, vec!["PATH=/bin".to_string()]);
    }

    #[test]
    fn bundle_points_at_the_shared_rootfs() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        let mut s = spec();
        s.bind_mounts.push(BindMount {
            source: "/usr/bin".into(),
            destination: "/run/tools".into(),
        });
        let b = Bundle::write(&t.path().join("b"), &s, &rootfs).unwrap();
        let v: Value = serde_json::from_slice(&fs::read(b.config_path()).unwrap()).unwrap();
        assert_eq!(v["root"]["path"], json!(rootfs));
        s.bind_mounts[0].destination = "/opt/tools".into();
        assert!(Bundle::write(&t.path().join("c"), &s, &rootfs).is_err());
    }

    #[test]
    fn a_file_binds_over_a_regular_file_of_the_image_only() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        let hosts = t.path().join("hosts");
        fs::write(&hosts, "127.0.1.1 db\n").unwrap();
        let mut s = spec();
        s.bind_mounts.push(BindMount {
            source: hosts.clone(),
            destination: "/etc/hosts".into(),
        });
        // No /etc/hosts in the image: runc would have to create it.
        assert!(Bundle::write(&t.path().join("a"), &s, &rootfs).is_err());
        std::os::unix::fs::symlink("/etc/hosts", rootfs.join("etc/hosts")).unwrap();
        assert!(Bundle::write(&t.path().join("b"), &s, &rootfs).is_err());
        fs::remove_file(rootfs.join("etc/hosts")).unwrap();
        fs::write(rootfs.join("etc/hosts"), "").unwrap();
        Bundle::write(&t.path().join("c"), &s, &rootfs).unwrap();
        // A directory source never binds over a file.
        s.bind_mounts[0].source = t.path().to_path_buf();
        assert!(Bundle::write(&t.path().join("d"), &s, &rootfs).is_err());
    }
}
