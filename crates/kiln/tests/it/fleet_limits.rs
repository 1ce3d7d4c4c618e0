//! Resource limits with real parts: `[service.X.limits]` in each instance's
//! `config.json` and its runc cgroup, a memory hog OOM-killed and replaced
//! with "out of memory" as the reason, a fork bomb held at its pids limit
//! while another service keeps answering, bad limits refused with
//! `file:line:col`, and two `kiln serve` daemons on one host that never touch
//! each other's instances or cgroups.
//!
//! Needs root and runc (cgroup v1 or v2): every test is `#[ignore]`d;
//! `scripts/test.sh` runs them, where a missing prerequisite fails them.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A signing key, a policy and a running `kiln serve` on a private state dir.
struct Daemon {
    e: Env,
    serve: Option<Child>,
    policy: PathBuf,
    key: PathBuf,
}

impl Daemon {
    fn new() -> Daemon {
        require_root();
        require("runc");
        let e = Env::new();
        let key = keygen(&e, "ci");
        let policy = e.path().join("trust.toml");
        fs::write(
            &policy,
            "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n",
        )
        .unwrap();
        let log = fs::File::create(e.path().join("serve.log")).unwrap();
        let serve = e
            .kiln()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon {
            e,
            serve: Some(serve),
            policy,
            key,
        };
        let sock = d.e.state().join("fleet/kiln.sock");
        let end = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(
                Instant::now() < end,
                "kiln serve did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        fs::read_to_string(self.e.path().join("serve.log")).unwrap_or_default()
    }

    /// Builds and signs the hello image with entrypoint `entrypoint` (TOML array text).
    fn image(&self, tag: &str, entrypoint: Option<&str>) -> String {
        let original = self.e.spec_text();
        let mut spec = original.replace("tag = \"1.0.0\"", &format!("tag = \"{tag}\""));
        if let Some(ep) = entrypoint {
            let start = spec.find("entrypoint = ").unwrap();
            let end = start + spec[start..].find('\n').unwrap();
            spec.replace_range(start..end, &format!("entrypoint = {ep}"));
        }
        self.e.write_spec(&spec);
        let digest = self.e.build(&[]);
        self.e.write_spec(&original);
        let o = run(self
            .e
            .kiln()
            .env("KILN_KEY_PASSWORD", PASSWORD)
            .args(["sign", &format!("hello:{tag}"), "--key"])
            .arg(&self.key));
        assert!(o.status.success(), "{}", stderr(&o));
        format!("hello@{digest}")
    }

    /// One `[service.<name>]` table (with its `extra` lines, e.g. limits).
    fn service(&self, name: &str, image: &str, listen: SocketAddr, extra: &str) -> String {
        format!(
            "[service.{name}]\nimage = \"{image}\"\nlisten = \"{listen}\"\nport = 8080\nstep_pause = \"0s\"\nhealth = {{ http_get = \"/\", interval = \"500ms\", timeout = \"500ms\" }}\npolicy = \"{}\"\n{extra}\n",
            self.policy.display()
        )
    }

    fn write_deploy(&self, text: &str) -> PathBuf {
        let p = self.e.path().join("deploy.toml");
        fs::write(&p, text).unwrap();
        p
    }

    fn apply(&self, file: &Path) -> std::process::Output {
        run(self
            .e
            .kiln()
            .args(["apply", "--timeout", "90s", "-f"])
            .arg(file))
    }

    fn status(&self) -> Value {
        let o = run(self.e.kiln().args(["--json", "status"]));
        // 3 degraded and 4 failed answer too.
        assert!(
            matches!(o.status.code(), Some(0 | 3 | 4)),
            "kiln status failed: {}",
            stderr(&o)
        );
        json(&o)
    }

    fn svc(&self, name: &str) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn events(&self, action: &str) -> Vec<Value> {
        self.e.events(action)
    }

    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut(&Daemon) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {:#}\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The instance's `config.json` (`None` once it is gone).
    fn try_config(&self, id: &str) -> Option<Value> {
        let p = self
            .e
            .state()
            .join("fleet/instances")
            .join(id)
            .join("config.json");
        serde_json::from_slice(&fs::read(p).ok()?).ok()
    }

    fn config(&self, id: &str) -> Value {
        self.try_config(id)
            .unwrap_or_else(|| panic!("no config.json for {id}"))
    }

    /// The directory of the instance's cgroup for `controller` (v1) or the unified one (v2).
    fn try_cgroup_dir(&self, id: &str, controller: &str) -> Option<PathBuf> {
        let config = self.try_config(id)?;
        let cg = config["linux"]["cgroupsPath"]
            .as_str()?
            .trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        Some(if root.join("cgroup.controllers").exists() {
            root.join(cg)
        } else {
            root.join(controller).join(cg)
        })
    }

    fn cgroup_dir(&self, id: &str, controller: &str) -> PathBuf {
        self.try_cgroup_dir(id, controller)
            .unwrap_or_else(|| panic!("no cgroup for {id}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Through the daemon first, so it removes its cgroups as it would in use.
        if self.serve.is_some()
            && let Ok(o) = self.e.kiln().args(["--json", "status"]).output()
            && let Ok(st) = serde_json::from_slice::<Value>(&o.stdout)
        {
            for s in st["services"].as_array().into_iter().flatten() {
                if let Some(name) = s["name"].as_str() {
                    let _ = run(self.e.kiln().args(["destroy", name]));
                }
            }
        }
        if let Some(mut c) = self.serve.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        // No container outlives the test.
        self.e.delete_containers();
    }
}

fn ids(svc: &Value) -> Vec<String> {
    let mut v: Vec<String> = svc["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn first_instance(svc: &Value) -> (String, u32) {
    let i = &svc["instances"][0];
    (
        i["id"].as_str().unwrap().to_string(),
        i["pid"].as_u64().unwrap() as u32,
    )
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// GET / through a front proxy: the status code.
fn get(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(buf.get(9..12)?).parse().ok()
}

/// Requests in a loop until stopped: (ok, failed).
fn load(addr: SocketAddr) -> (Arc<AtomicBool>, std::thread::JoinHandle<(u64, u64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        while !s.load(Ordering::Relaxed) {
            match get(addr) {
                Some(200) => ok += 1,
                _ => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, failed)
    });
    (stop, h)
}

#[test]
#[ignore = "needs root and runc"]
fn limits_reach_the_cgroup_a_hog_is_oom_killed_and_a_fork_bomb_is_contained() {
    let d = Daemon::new();
    let web = d.image("1.0.0", None);
    // Serves for three seconds (so the rollout succeeds), then one 64 MiB buffer filled
    // from /dev/zero: far over a 32 MiB limit.
    let hog = d.image(
        "hog",
        Some(
            r#"["/bin/busybox", "sh", "-c", "/bin/busybox httpd -p 8080 -h /www; /bin/busybox sleep 3; exec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=8"]"#,
        ),
    );
    // Serves, then forks without end.
    let bomb = d.image(
        "bomb",
        Some(
            r#"["/bin/busybox", "sh", "-c", "/bin/busybox httpd -p 8080 -h /www; /bin/busybox sleep 2; b() { b & b & }; b; /bin/busybox sleep 3600"]"#,
        ),
    );
    let (web_at, hog_at, bomb_at) = (free_addr(), free_addr(), free_addr());
    let web_only = d.service(
        "web",
        &web,
        web_at,
        "replicas = 2\n[service.web.limits]\nmemory = \"64MiB\"\npids = 100\ncpu = 0.5",
    );
    let o = d.apply(&d.write_deploy(&web_only));
    assert!(o.status.success(), "{}\n{}", stderr(&o), d.log());

    // The limits, in status, in config.json and in the cgroup runc made.
    let w = d.svc("web");
    let want = serde_json::json!({"memory_bytes": 64u64 << 20, "memory": "64 MiB", "pids": 100,
        "cpu": 0.5, "cpu_quota_us": 50_000, "cpu_period_us": 100_000});
    assert_eq!(w["limits"], want, "{w:#}");
    let (id, _) = first_instance(&w);
    assert_eq!(w["instances"][0]["limits"], want);
    let r = &d.config(&id)["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 64u64 << 20, "{r:#}");
    assert_eq!(r["pids"]["limit"], 100);
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["cpu"]["period"], 100_000);
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        let dir = d.cgroup_dir(&id, "");
        assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&dir.join("pids.max")), "100");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    } else {
        let mem = d.cgroup_dir(&id, "memory");
        assert_eq!(
            read(&mem.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(&mem.join("memory.memsw.limit_in_bytes")),
                (64u64 << 20).to_string()
            );
        }
        assert_eq!(read(&d.cgroup_dir(&id, "pids").join("pids.max")), "100");
        let cpu = d.cgroup_dir(&id, "cpu");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    }

    // A `kiln debug` shell of web gets the same limits, in a cgroup under this daemon's.
    let mut shell =
        d.e.kiln()
            .args(["debug", "web", "--ttl", "60s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    // Alive long enough to be looked at, then gone by itself.
    stdin.write_all(b"busybox sleep 10\nexit\n").unwrap();
    drop(stdin);
    let debug_dir = d.e.state().join("fleet/debug");
    let mut debug = None;
    d.wait_for("the debug shell's bundle and cgroup", 30, |_| {
        debug = fs::read_dir(&debug_dir)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let c: Value =
                    serde_json::from_slice(&fs::read(e.path().join("config.json")).ok()?).ok()?;
                let cg = c["linux"]["cgroupsPath"].as_str()?.trim_start_matches('/');
                let root = Path::new("/sys/fs/cgroup");
                let pids = if v2 {
                    root.join(cg)
                } else {
                    root.join("pids").join(cg)
                };
                pids.join("pids.max").exists().then_some((c, pids))
            });
        debug.is_some()
    });
    let (c, pids_dir) = debug.unwrap();
    let r = &c["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 64u64 << 20, "{r:#}");
    assert_eq!(r["pids"]["limit"], 100);
    assert_eq!(r["cpu"]["quota"], 50_000);
    let cg = c["linux"]["cgroupsPath"].as_str().unwrap();
    let parent = d.config(&id)["linux"]["cgroupsPath"]
        .as_str()
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    assert!(cg.starts_with(&format!("{parent}/debug-web-")), "{cg}");
    assert_eq!(read(&pids_dir.join("pids.max")), "100");
    let o = shell.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // A hog and a fork bomb next to it, while web is under continuous load.
    let (stop, h) = load(web_at);
    std::thread::sleep(Duration::from_millis(300));
    let all = format!(
        "{web_only}{}{}",
        d.service(
            "hog",
            &hog,
            hog_at,
            "[service.hog.limits]\nmemory = \"32MiB\"\ncpu = 0.5"
        ),
        d.service(
            "bomb",
            &bomb,
            bomb_at,
            "[service.bomb.limits]\npids = 64\ncpu = 0.5"
        ),
    );
    let o = d.apply(&d.write_deploy(&all));
    assert!(o.status.success(), "{}\n{}", stderr(&o), d.log());

    // The hog dies of its memory limit, is replaced, and the reason says so.
    let oom = |d: &Daemon| -> Option<Value> {
        d.events("instance.replace").into_iter().find(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("killed by the kernel: out of memory (limit 32 MiB)"))
        })
    };
    d.wait_for("an OOM replacement of hog", 60, |d| oom(d).is_some());
    let ev = oom(&d).unwrap();
    eprintln!("OOM replacement: {ev}");
    assert!(
        ev.to_string().contains("\"hog-"),
        "the OOM event names a hog instance: {ev:#}"
    );
    d.wait_for("the OOM reason in hog's status", 30, |d| {
        d.svc("hog")["message"]
            .as_str()
            .is_some_and(|m| m.contains("out of memory (limit 32 MiB)"))
    });

    // The bomb is held at 64 processes: fork fails inside, nothing outside notices.
    let mut bomb_seen = false;
    d.wait_for("the fork bomb at its pids limit", 60, |d| {
        let b = d.svc("bomb");
        let Some(i) = b["instances"].as_array().and_then(|a| a.first()) else {
            return false;
        };
        let id = i["id"].as_str().unwrap();
        let Some(dir) = d.try_cgroup_dir(id, "pids") else {
            return false; // replaced meanwhile
        };
        let (Ok(cur), Ok(events), Ok(max)) = (
            fs::read_to_string(dir.join("pids.current")),
            fs::read_to_string(dir.join("pids.events")),
            fs::read_to_string(dir.join("pids.max")),
        ) else {
            return false;
        };
        assert_eq!(max.trim(), "64");
        let cur: u64 = cur.trim().parse().unwrap();
        assert!(cur <= 64, "{cur} processes under pids = 64");
        let refused: u64 = events
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        bomb_seen = refused > 0;
        eprintln!("bomb {id}: {cur} processes, {refused} forks refused");
        bomb_seen
    });
    assert!(bomb_seen);
    // Both keep misbehaving for a while; the daemon answers throughout.
    for _ in 0..10 {
        assert_eq!(d.svc("web")["healthy"], 2);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = h.join().unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests to web failed next to the hog and the bomb",
        ok + failed
    );
    assert!(ok > 20, "load loop too slow: {ok}");
    eprintln!(
        "web: {ok} requests, none failed; hog: {}",
        d.svc("hog")["message"]
    );

    // Removing them leaves web as it was.
    let o = d.apply(&d.write_deploy(&web_only));
    assert!(o.status.success(), "{}\n{}", stderr(&o), d.log());
    assert_eq!(get(web_at), Some(200));
}

#[test]
#[ignore = "needs root and runc"]
fn bad_limits_are_refused_where_written_and_a_limit_change_is_a_new_release() {
    let d = Daemon::new();
    let web = d.image("1.0.0", None);
    let at = free_addr();
    let good = d.service("web", &web, at, "");
    let o = d.apply(&d.write_deploy(&good));
    assert!(o.status.success(), "{}\n{}", stderr(&o), d.log());
    let before = d.svc("web");
    assert_eq!(
        before["limits"]["memory"], "512 MiB",
        "defaults: {before:#}"
    );
    assert_eq!(before["limits"]["pids"], 512);
    assert_eq!(before["limits"]["cpu"], 1.0);

    // (limits line, line:col in deploy.toml, message fragment): the table starts at line 9.
    let cases = [
        ("memory = \"12parsecs\"", "10:10", "is not a size"),
        ("memory = \"1MiB\"", "10:10", "below the smallest limit"),
        ("pids = 0", "10:8", "out of range"),
        ("cpu = -1", "10:7", "not a number of cores"),
        ("swap = \"0\"", "10:1", "unknown field `swap`"),
        ("cpu = 1024", "10:7", "more than this host has"),
    ];
    for (body, place, needle) in cases {
        let file = d.write_deploy(&format!("{good}[service.web.limits]\n{body}\n"));
        let o = d.apply(&file);
        assert!(!o.status.success(), "{body} was accepted");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("deploy.toml:{place}")) && err.contains(needle),
            "{body}: {err}"
        );
        let now = d.svc("web");
        assert_eq!(
            now["active"], before["active"],
            "{body} changed the release"
        );
        assert_eq!(ids(&now), ids(&before), "{body} changed the instances");
    }

    // A limit change rolls a new release with new instances, like any instance setting.
    let file = d.write_deploy(&format!(
        "{good}[service.web.limits]\nmemory = \"128MiB\"\n"
    ));
    let o = d.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), d.log());
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("~ web: update (new release)")
            && plan.contains("limits memory 512 MiB, pids 512, cpu 1 -> memory 128 MiB"),
        "{plan}"
    );
    d.wait_for("the new release alone", 30, |d| {
        let w = d.svc("web");
        w["active"]["id"] != before["active"]["id"]
            && w["instances"].as_array().unwrap().len() == 1
            && w["healthy"] == 1
    });
    let w = d.svc("web");
    assert_eq!(w["limits"]["memory_bytes"], 128u64 << 20);
    let (id, _) = first_instance(&w);
    assert_eq!(
        d.config(&id)["linux"]["resources"]["memory"]["limit"],
        128u64 << 20
    );
}

#[test]
#[ignore = "needs root and runc"]
fn two_daemons_on_one_host_never_touch_each_other() {
    let (a, b) = (Daemon::new(), Daemon::new());
    let (a_at, b_at) = (free_addr(), free_addr());
    for (d, at) in [(&a, a_at), (&b, b_at)] {
        let img = d.image("1.0.0", None);
        let o = d.apply(&d.write_deploy(&d.service("web", &img, at, "replicas = 2")));
        assert!(o.status.success(), "{}\n{}", stderr(&o), d.log());
    }
    let (wa, wb) = (a.svc("web"), b.svc("web"));
    // Same service name, same instance ids...
    assert_eq!(ids(&wa), ids(&wb));
    // ...but their own runc roots and cgroups.
    for id in ids(&wa) {
        let (ca, cb) = (a.cgroup_dir(&id, "memory"), b.cgroup_dir(&id, "memory"));
        assert_ne!(ca, cb);
        assert!(ca.is_dir(), "{}", ca.display());
        assert!(cb.is_dir(), "{}", cb.display());
        let pids_of = |dir: &Path| read(&dir.join("cgroup.procs"));
        assert_ne!(pids_of(&ca), pids_of(&cb));
    }
    assert_eq!((get(a_at), get(b_at)), (Some(200), Some(200)));

    // Killing one of a's instances is a's business only.
    let (load_stop, load_b) = load(b_at);
    let b_before: Vec<(String, u64)> = wb["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().into(), i["pid"].as_u64().unwrap()))
        .collect();
    let (victim, pid) = first_instance(&wa);
    let victim_cgroup = a.cgroup_dir(&victim, "memory");
    // SAFETY: signalling a container process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    a.wait_for("a healed", 30, |a| {
        let w = a.svc("web");
        w["healthy"] == 2 && !ids(&w).contains(&victim)
    });
    assert_eq!(get(a_at), Some(200));
    load_stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load_b.join().unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests to b failed",
        ok + failed
    );
    let wb = b.svc("web");
    let b_after: Vec<(String, u64)> = wb["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().into(), i["pid"].as_u64().unwrap()))
        .collect();
    assert_eq!(b_before, b_after);
    assert_eq!(wb["healthy"], 2);
    assert!(b.events("instance.replace").is_empty());
    assert!(b.cgroup_dir(&victim, "memory").is_dir());
    assert!(
        !victim_cgroup.exists(),
        "a's destroyed instance left its cgroup"
    );

    // When a's last instance is gone, so is a's cgroup directory; b's stays.
    let a_dir = a.cgroup_dir(&ids(&a.svc("web"))[0], "memory");
    let a_dir = a_dir.parent().unwrap();
    let b_dir = b.cgroup_dir(&victim, "memory");
    let b_dir = b_dir.parent().unwrap();
    let o = run(a.e.kiln().args(["destroy", "web"]));
    assert!(o.status.success(), "{}", stderr(&o));
    a.wait_for("a's service gone", 30, |a| a.svc("web").is_null());
    assert!(!a_dir.exists(), "{} is left", a_dir.display());
    assert!(b_dir.is_dir());
    assert_eq!(get(b_at), Some(200));
    assert!(!a.events("instance.replace").is_empty());
}
