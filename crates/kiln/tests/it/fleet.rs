//! `kiln serve` with real parts: runc instances of the example busybox-httpd
//! image behind kiln's front proxy, checked over real HTTP.
//!
//! Needs root and runc: every test is `#[ignore]`d; `scripts/test.sh` runs
//! them, where a missing prerequisite fails them.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Panics unless this runs as root with runc.
pub(crate) fn require_root_and_runc() {
    require_root();
    require("runc");
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An env with a signing key, a policy, and a running `kiln serve`.
pub(crate) struct Fleet {
    pub(crate) e: Env,
    serve: Option<Child>,
    pub(crate) listen: SocketAddr,
    policy: PathBuf,
    key: PathBuf,
}

impl Fleet {
    pub(crate) fn new() -> Fleet {
        let e = Env::new();
        let key = keygen(&e, "ci");
        let policy = e.path().join("trust.toml");
        fs::write(
            &policy,
            "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n",
        )
        .unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut f = Fleet {
            e,
            serve: None,
            listen,
            policy,
            key,
        };
        f.start();
        f
    }

    pub(crate) fn start(&mut self) {
        let log = fs::File::create(self.e.path().join("serve.log")).unwrap();
        let child = self
            .e
            .kiln()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.serve = Some(child);
        let sock = self.e.state().join("fleet/kiln.sock");
        let end = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(
                Instant::now() < end,
                "kiln serve did not start: {}",
                self.serve_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub(crate) fn serve_log(&self) -> String {
        fs::read_to_string(self.e.path().join("serve.log")).unwrap_or_default()
    }

    /// Build (with `spec` edits applied) and sign; returns `hello@sha256:…`.
    pub(crate) fn image(&self, tag: &str, page: &str, edit: impl Fn(String) -> String) -> String {
        fs::write(self.e.spec_dir().join("www/index.html"), page).unwrap();
        let spec = self.e.spec_text();
        let spec = spec.replace("tag = \"1.0.0\"", &format!("tag = \"{tag}\""));
        self.e.write_spec(&edit(spec));
        let digest = self.e.build(&[]);
        let o = run(self
            .e
            .kiln()
            .env("KILN_KEY_PASSWORD", PASSWORD)
            .args(["sign", &format!("hello:{tag}"), "--key"])
            .arg(&self.key));
        assert!(o.status.success(), "{}", stderr(&o));
        self.e
            .write_spec(&fs::read_to_string(repo().join("examples/hello/kiln.toml")).unwrap());
        format!("hello@{digest}")
    }

    pub(crate) fn deploy_file(&self, image: &str, extra: &str) -> PathBuf {
        let p = self.e.path().join("deploy.toml");
        fs::write(
            &p,
            format!(
                "[service.web]\nimage = \"{image}\"\nreplicas = 3\nlisten = \"{}\"\nport = 8080\nstrategy = \"blue-green\"\nstep_pause = \"1s\"\nhealth = {{ http_get = \"/\", interval = \"500ms\", timeout = \"500ms\" }}\npolicy = \"{}\"\n{extra}",
                self.listen,
                self.policy.display()
            ),
        )
        .unwrap();
        p
    }

    pub(crate) fn apply(&self, file: &Path) -> std::process::Output {
        run(self
            .e
            .kiln()
            .args(["apply", "--timeout", "90s", "-f"])
            .arg(file))
    }

    pub(crate) fn status(&self) -> Value {
        let o = run(self.e.kiln().args(["--json", "status"]));
        // 3 degraded and 4 failed answer too.
        assert!(matches!(o.status.code(), Some(0 | 3 | 4)), "{}", stderr(&o));
        json(&o)
    }

    pub(crate) fn web(&self) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "web")
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub(crate) fn events(&self, prefix: &str) -> Vec<Value> {
        self.e.events(prefix)
    }

    pub(crate) fn wait_for(
        &self,
        what: &str,
        secs: u64,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let w = self.web();
            if f(&w) {
                return w;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {w:#}\n{}",
                self.serve_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = run(self.e.kiln().args(["destroy", "web"]));
        self.stop();
        // No container outlives the test.
        self.e.delete_containers();
    }
}

/// GET `path` through the front proxy: (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// A request loop's result: (ok, failed, bodies seen).
type LoadResult = (u64, u64, Vec<String>);

/// Requests in a loop until stopped.
fn load(addr: SocketAddr) -> (Arc<AtomicBool>, std::thread::JoinHandle<LoadResult>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let mut seen: Vec<String> = Vec::new();
        while !s.load(Ordering::Relaxed) {
            match get(addr, "/") {
                Some((200, body)) => {
                    ok += 1;
                    if !seen.contains(&body) {
                        seen.push(body);
                    }
                }
                _ => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, failed, seen)
    });
    (stop, h)
}

fn pids(w: &Value) -> Vec<(String, u32)> {
    w["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["in_rotation"] == true)
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["pid"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root and runc"]
fn replicas_heal_and_blue_green_drops_no_request() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let o = f.apply(&f.deploy_file(&v1, ""));
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    let w = f.web();
    assert_eq!(w["healthy"], 3, "{w:#}");
    assert_eq!(
        get(f.listen, "/").unwrap(),
        (200, "<h1>v1</h1>\n".to_string())
    );

    // kill -9 one instance: replaced, and the service keeps answering.
    let (victim, pid) = pids(&w)[0].clone();
    // SAFETY: signalling a container process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let t = Instant::now();
    let w = f.wait_for("a healed set", 20, |w| {
        w["healthy"] == 3 && !pids(w).iter().any(|(id, _)| *id == victim)
    });
    eprintln!("healed in {:?}", t.elapsed());
    assert_eq!(pids(&w).len(), 3);
    let replaced = f.events("instance.replace");
    assert!(
        replaced
            .iter()
            .any(|e| e["resources"][1]["id"] == victim.as_str()
                || e["resources"][0]["id"] == victim.as_str()
                    && e["reason"].as_str().unwrap_or("").contains("SIGKILL")),
        "{replaced:#?}"
    );

    // Blue-green under a continuous request loop: nothing dropped.
    let v2 = f.image("2.0.0", "<h1>v2</h1>\n", |s| s);
    let (stop, h) = load(f.listen);
    std::thread::sleep(Duration::from_millis(300));
    let o = f.apply(&f.deploy_file(&v2, ""));
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, seen) = h.join().unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the switch",
        ok + failed
    );
    assert!(ok > 20, "load loop too slow: {ok}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("<h1>v2</h1>\n"),
        "{seen:?}"
    );
    let w = f.wait_for("old set destroyed", 30, |w| {
        w["instances"].as_array().unwrap().len() == 3
    });
    assert!(
        w["active"]["image"]
            .as_str()
            .unwrap()
            .ends_with(&v2[v2.len() - 64..])
    );
    assert!(!f.events("release.switch").is_empty());
    assert_eq!(f.events("instance.destroy").len(), 3);

    // Rollback: the previous image, same path, same checks.
    let o = run(f
        .e
        .kiln()
        .args(["rollback", "web", "--reason", "CHG-9 bad release"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(get(f.listen, "/").unwrap().1, "<h1>v1</h1>\n");
    let rb = f.events("release.rollback");
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0]["reason"], "CHG-9 bad release");

    // kiln serve restarts: instances are re-adopted, not restarted.
    let before: Vec<String> = pids(&f.web()).into_iter().map(|(id, _)| id).collect();
    let mut f = f;
    f.stop();
    assert_eq!(get(f.listen, "/"), None, "the proxy lives in kiln serve");
    f.start();
    let w = f.wait_for("re-adopted set", 20, |w| w["healthy"] == 3);
    let after: Vec<String> = pids(&w).into_iter().map(|(id, _)| id).collect();
    assert_eq!(before, after);
    assert_eq!(get(f.listen, "/").unwrap().1, "<h1>v1</h1>\n");
}

#[test]
#[ignore = "needs root and runc"]
fn privacy_change_is_never_a_canary_and_unsigned_never_runs() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let canary = "strategy = \"canary\"\ncanary = [10, 50, 100]\n";
    let file = f.deploy_file(&v1, "");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("strategy = \"blue-green\"\n", canary);
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success());

    // log_level info -> debug: privacy-relevant, so blue-green.
    let v2 = f.image("2.0.0", "<h1>v2</h1>\n", |s| {
        s.replace("log_level = \"info\"", "log_level = \"debug\"")
    });
    let text = fs::read_to_string(&file).unwrap().replace(&v1, &v2);
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert!(o.status.success(), "{}", stderr(&o));
    let starts = f.events("release.start");
    let last = starts.last().unwrap();
    assert!(
        last["details"]["guardrail"]
            .as_str()
            .unwrap_or("")
            .contains("log_level"),
        "{last:#}"
    );
    assert_eq!(last["details"]["strategy"], "blue-green");
    assert!(
        f.events("release.step").is_empty(),
        "a canary step happened"
    );
    assert_eq!(get(f.listen, "/").unwrap().1, "<h1>v2</h1>\n");

    // A canary without privacy changes steps through its weights.
    let v3 = f.image("3.0.0", "<h1>v3</h1>\n", |s| {
        s.replace("log_level = \"info\"", "log_level = \"debug\"")
    });
    let text = fs::read_to_string(&file).unwrap().replace(&v2, &v3);
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert!(o.status.success(), "{}", stderr(&o));
    let steps: Vec<u64> = f
        .events("release.step")
        .iter()
        .map(|e| e["details"]["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [10, 50, 100]);

    // An unsigned image is refused before anything changes.
    let unsigned = {
        fs::write(f.e.spec_dir().join("www/index.html"), "unsigned").unwrap();
        let spec =
            f.e.spec_text()
                .replace("tag = \"1.0.0\"", "tag = \"9.9.9\"");
        f.e.write_spec(&spec);
        format!("hello@{}", f.e.build(&[]))
    };
    let ids = |w: &Value| -> Vec<(String, u32)> { pids(w) };
    let before = ids(&f.web());
    let text = fs::read_to_string(&file).unwrap().replace(&v3, &unsigned);
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refused") && stderr(&o).contains("signature"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ids(&f.web()), before);
    assert_eq!(get(f.listen, "/").unwrap().1, "<h1>v3</h1>\n");
}

#[test]
#[ignore = "needs root and runc"]
fn instances_are_read_only_offline_and_observable_only_through_kiln() {
    require_root_and_runc();
    let f = Fleet::new();
    // The image probes its own sandbox at start and serves the results.
    let probe = f.image("1.0.0", "probe\n", |s| {
        s.replace(
            "entrypoint = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]",
            "entrypoint = [\"/bin/busybox\", \"sh\", \"-c\", \"mkdir -p /tmp/w; cp /www/index.html /tmp/w/; (/bin/busybox touch /probe && echo writable || echo read-only) > /tmp/w/root.txt; (/bin/busybox wget -q -T 2 -O- http://1.1.1.1/ >/dev/null 2>&1 && echo online || echo offline) > /tmp/w/net.txt; /bin/busybox grep CapEff /proc/self/status > /tmp/w/caps.txt; echo probe-ran; exec /bin/busybox httpd -f -p 8080 -h /tmp/w\"]",
        )
    });
    let file = f.deploy_file(&probe, "");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 1");
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    assert_eq!(get(f.listen, "/root.txt").unwrap().1.trim(), "read-only");
    assert_eq!(get(f.listen, "/net.txt").unwrap().1.trim(), "offline");
    assert!(
        get(f.listen, "/caps.txt")
            .unwrap()
            .1
            .contains("0000000000000000")
    );
    // Output reaches the operator through kiln, not through files.
    let o = run(f.e.kiln().args(["logs", "web"]));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("probe-ran"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // The one shell: a debug instance, out of rotation, gone afterwards.
    let mut c =
        f.e.kiln()
            .args(["debug", "web", "--ttl", "30s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"echo inside-$(id -u); exit\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("inside-65532"),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    assert_eq!(f.events("debug.start").len(), 1);
    assert_eq!(f.events("debug.stop").len(), 1);
    assert_eq!(pids(&f.web()).len(), 1);
}

#[test]
#[ignore = "needs root and runc"]
fn bad_input_changes_nothing() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    // A tag instead of a digest.
    let file = f.deploy_file("hello:1.0.0", "");
    let o = f.apply(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("digest"), "{}", stderr(&o));
    // Malformed.
    fs::write(&file, "[service.web\nimage = 1").unwrap();
    let o = f.apply(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("deploy.toml:1"), "{}", stderr(&o));
    // A port someone else holds.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let text = fs::read_to_string(f.deploy_file(&v1, "")).unwrap().replace(
        &f.listen.to_string(),
        &taken.local_addr().unwrap().to_string(),
    );
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).to_lowercase().contains("in use"),
        "{}",
        stderr(&o)
    );
    // Unknown service.
    let o = run(f.e.kiln().args(["rollback", "nosuch"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
    assert!(f.status()["services"].as_array().unwrap().is_empty());
    // Nothing ran.
    assert!(f.e.containers().is_empty());
}

#[test]
#[ignore = "needs root and runc"]
fn max_lifetime_rotates_new_first_and_chaos_is_measured() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let file = f.deploy_file(&v1, "max_lifetime = \"3s\"\n");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success());
    let first: Vec<String> = pids(&f.web()).into_iter().map(|(id, _)| id).collect();
    let (stop, h) = load(f.listen);
    f.wait_for("every instance rotated", 30, |w| {
        let now: Vec<String> = pids(w).into_iter().map(|(id, _)| id).collect();
        now.len() == 2 && now.iter().all(|id| !first.contains(id))
    });
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, _) = h.join().unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} failed while rotating",
        ok + failed
    );
    assert!(
        f.events("instance.replace")
            .iter()
            .any(|e| e["reason"] == "maximum lifetime reached")
    );

    let o = run(f.e.kiln().args([
        "--json",
        "chaos",
        "web",
        "--kill-every",
        "1s",
        "--for",
        "4s",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert!(r["requests"].as_u64().unwrap() > 0);
    assert!(!f.events("chaos.kill").is_empty());
    f.wait_for("healed after chaos", 20, |w| w["healthy"] == 2);
}

#[test]
#[ignore = "needs root and runc"]
fn a_failing_canary_aborts_and_the_stable_release_keeps_serving() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let file = f.deploy_file(&v1, "canary = [50, 100]\n");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("strategy = \"blue-green\"", "strategy = \"canary\"")
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success());
    // v2 exits at once: its instances never become healthy.
    let bad = f.image("2.0.0", "<h1>v2</h1>\n", |s| {
        s.replace(
            "entrypoint = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]",
            "entrypoint = [\"/bin/busybox\", \"false\"]",
        )
    });
    let (stop, h) = load(f.listen);
    let text = fs::read_to_string(&file).unwrap().replace(&v1, &bad);
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, seen) = h.join().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("aborted"), "{}", stderr(&o));
    assert_eq!(failed, 0, "{failed} of {} failed", ok + failed);
    assert_eq!(seen, ["<h1>v1</h1>\n"]);
    let aborts = f.events("release.abort");
    assert_eq!(aborts.len(), 1, "{aborts:#?}");
    let w = f.web();
    assert_eq!(w["healthy"], 2);
    assert!(
        w["active"]["image"]
            .as_str()
            .unwrap()
            .ends_with(&v1[v1.len() - 64..])
    );
}

fn ids(w: &Value) -> Vec<String> {
    pids(w).into_iter().map(|(id, _)| id).collect()
}

fn rootfs_dir(f: &Fleet) -> PathBuf {
    let base = f.e.state().join("fleet/rootfs");
    let d = fs::read_dir(&base)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("rootfs").is_dir())
        .unwrap();
    d.path().join("rootfs")
}

#[test]
#[ignore = "needs root and runc"]
fn drift_is_detected_logged_and_replaced_while_serving() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let file = f.deploy_file(&v1, "");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success());
    let o = run(f.e.kiln().args(["drift", "check", "web"]));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let (stop, h) = load(f.listen);
    type Tamper = Box<dyn Fn(&Path)>;
    let tampers: Vec<(&str, Tamper)> = vec![
        (
            "a changed byte",
            Box::new(|r: &Path| {
                let p = r.join("www/index.html");
                let mut b = fs::read(&p).unwrap();
                b[1] ^= 0x20;
                fs::write(p, b).unwrap();
            }),
        ),
        (
            "an added file",
            Box::new(|r: &Path| fs::write(r.join("www/extra.html"), "x").unwrap()),
        ),
        (
            "a chmod",
            Box::new(|r: &Path| set_mode(&r.join("www/home.html"), 0o666)),
        ),
    ];
    for (what, tamper) in tampers {
        let before = ids(&f.web());
        let n = f.events("drift.detected").len();
        tamper(&rootfs_dir(&f));
        f.wait_for(what, 20, |w| {
            let now = ids(w);
            w["healthy"] == 2 && now.len() == 2 && now.iter().all(|id| !before.contains(id))
        });
        let ev = f.events("drift.detected");
        assert_eq!(ev.len(), n + 1, "{what}: {ev:#?}");
        assert_eq!(ev[n]["details"]["kind"], "filesystem");
        let diff = ev[n]["details"]["diff"].to_string();
        assert!(diff.contains("/www/"), "{what}: {diff}");
        assert!(
            !diff.contains("<h1>"),
            "{what}: file contents in the audit log"
        );
    }
    // A process started inside from outside the instance.
    let (victim, pid) = pids(&f.web())[0].clone();
    let mut intruder = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-a", "/bin/busybox", "sleep", "30"])
        .spawn()
        .unwrap();
    f.wait_for("process drift replaced", 20, |w| {
        !ids(w).contains(&victim) && w["healthy"] == 2
    });
    let _ = intruder.kill();
    let _ = intruder.wait();
    let ev = f.events("drift.detected");
    assert!(
        ev.last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("outside the instance"),
        "{ev:#?}"
    );
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, seen) = h.join().unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed while replacing drifted instances",
        ok + failed
    );
    // Until the replacements are healthy the drifted instances keep serving
    // (they share the tampered root filesystem, so taking them all out would
    // be an outage); afterwards only the image's page is served.
    assert!(seen.contains(&"<h1>v1</h1>\n".to_string()), "{seen:?}");
    assert_eq!(get(f.listen, "/").unwrap().1, "<h1>v1</h1>\n");
    let o = run(f.e.kiln().args(["drift", "check"]));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let o = run(f.e.kiln().args(["drift", "history"]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.matches("drift.detected").count() >= 4, "{text}");
    assert!(text.contains("instance.replace"), "{text}");
    // The tampered copies are kept as evidence.
    assert!(
        fs::read_dir(f.e.state().join("fleet/quarantine"))
            .unwrap()
            .count()
            >= 3
    );
}

#[test]
#[ignore = "needs root and runc"]
fn patch_reaches_the_fleet_through_the_normal_rollout() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let file = f.deploy_file(&v1, "");
    assert!(f.apply(&file).status.success());
    let osv = f.e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    fs::write(
        osv.join("DEBIAN-CVE-2026-3000.json"),
        // Dated now, not hard-coded: a fixed date goes stale.
        format!(
            r#"{{"id":"DEBIAN-CVE-2026-3000","modified":"{}","affected":[{{"package":{{"ecosystem":"Debian:12","name":"hello-config"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"1.0-2"}}]}}]}}],"database_specific":{{"severity":"critical"}}}}"#,
            kiln_oci::time::rfc3339_millis(std::time::SystemTime::now())
        ),
    )
    .unwrap();
    // The fixed package, built with dpkg-deb.
    let src = f.e.path().join("pkg");
    copy_dir(&repo().join("examples/hello/pkg/hello-config"), &src);
    let control = src.join("DEBIAN/control");
    let text = fs::read_to_string(&control)
        .unwrap()
        .replace("Version: 1.0-1", "Version: 1.0-2");
    fs::write(&control, text).unwrap();
    set_mode(&src.join("DEBIAN/postinst"), 0o755);
    let pool = f.e.path().join("pool");
    fs::create_dir_all(&pool).unwrap();
    let o = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&src)
        .arg(pool.join("hello-config_1.0-2_all.deb")));
    assert!(o.status.success(), "{}", stderr(&o));
    let (stop, h) = load(f.listen);
    let o = run(f
        .e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "patch", "-f"])
        .arg(f.e.spec())
        .arg("--advisories")
        .arg(&osv)
        .arg("--debs")
        .arg(&pool)
        .arg("--key")
        .arg(&f.key)
        .arg("--deploy")
        .arg(&file));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, _) = h.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    assert_eq!(
        failed,
        0,
        "{failed} of {} failed during the patch rollout",
        ok + failed
    );
    let r = json(&o);
    let fixed = r["image"].as_str().unwrap();
    let w = f.web();
    assert_eq!(w["healthy"], 3);
    assert_eq!(w["active"]["image"], fixed);
    assert!(r["fleet_ms"].as_u64().is_some());
    let o = run(f.e.kiln().args(["--json", "patch", "report"]));
    assert!(json(&o)[0]["fleet_ms"].as_u64().is_some());
}

/// Hard links hide drift from content hashes and from inotify on the root
/// filesystem: a file swapped for a link to an outside file with the same
/// content and metadata, or a tree file given an outside name (so it can be
/// edited from there without any event in the tree), must still get the
/// instances replaced. A hard link the image itself has is no drift.
#[test]
#[ignore = "needs root and runc"]
fn hard_links_from_outside_the_rootfs_are_drift() {
    require_root_and_runc();
    let f = Fleet::new();
    // A legitimate hard link inside the image.
    let www = f.e.spec_dir().join("www");
    fs::hard_link(www.join("index.html"), www.join("copy.html")).unwrap();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let file = f.deploy_file(&v1, "");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success(), "{}", f.serve_log());
    let o = run(f.e.kiln().args(["drift", "check", "web"]));
    assert!(
        o.status.success(),
        "the image's own hard link is not drift: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let outside = f.e.path().join("outside");
    fs::create_dir(&outside).unwrap();
    type Tamper = Box<dyn Fn(&Path, &Path)>;
    let tampers: Vec<(&str, &str, &str, Tamper)> = vec![
        (
            "a file replaced by a hard link to an outside twin",
            "/etc/hello/hello.conf",
            "ino",
            Box::new(|r: &Path, out: &Path| {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let p = r.join("etc/hello/hello.conf");
                let meta = fs::symlink_metadata(&p).unwrap();
                let twin = out.join("twin.conf");
                fs::write(&twin, fs::read(&p).unwrap()).unwrap();
                fs::set_permissions(&twin, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .unwrap();
                std::os::unix::fs::chown(&twin, Some(meta.uid()), Some(meta.gid())).unwrap();
                fs::hard_link(&twin, r.join("etc/hello/.swap")).unwrap();
                fs::rename(r.join("etc/hello/.swap"), &p).unwrap();
            }),
        ),
        (
            "an outside hard link to a rootfs file the image links twice",
            "/www/index.html",
            "nlink",
            Box::new(|r: &Path, out: &Path| {
                fs::hard_link(r.join("www/index.html"), out.join("index.html")).unwrap();
            }),
        ),
    ];
    for (what, path, field, tamper) in tampers {
        let before = ids(&f.web());
        let n = f.events("drift.detected").len();
        tamper(&rootfs_dir(&f), &outside);
        f.wait_for(what, 60, |w| {
            let now = ids(w);
            w["healthy"] == 2 && now.len() == 2 && now.iter().all(|id| !before.contains(id))
        });
        let ev = f.events("drift.detected");
        assert_eq!(ev.len(), n + 1, "{what}: {ev:#?}");
        assert_eq!(ev[n]["details"]["kind"], "filesystem");
        let diff = &ev[n]["details"]["diff"];
        // Every name of the tampered inode (the image's other name for it
        // too), and nothing else, with the identity field that moved.
        let changed = diff["changed"].as_array().unwrap();
        assert!(changed.iter().any(|c| c["path"] == path), "{what}: {diff}");
        assert!(
            changed.iter().all(|c| c["fields"]
                .as_array()
                .unwrap()
                .contains(&Value::from(field))),
            "{what}: {diff}"
        );
        // Editing the outside name now reaches no instance.
        for p in fs::read_dir(&outside).unwrap().flatten() {
            fs::write(p.path(), "<h1>attacker</h1>\n").unwrap();
        }
        for url in ["/", "/copy.html"] {
            let (code, body) = get(f.listen, url).unwrap();
            assert_eq!(
                (code, body.as_str()),
                (200, "<h1>v1</h1>\n"),
                "{what}: {url}"
            );
        }
        for p in fs::read_dir(&outside).unwrap().flatten() {
            fs::remove_file(p.path()).unwrap();
        }
    }
    let o = run(f.e.kiln().args(["drift", "check"]));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// Swap the rootfs's `/www/index.html` for an outside file with the same
/// content, mode and owner, whose only other name is then removed (so its
/// link count is 1 again, as the manifest implies); returns a writable
/// handle to that inode, the attacker's way to edit it unseen.
fn swap_in_outside_twin(r: &Path, out: &Path) -> fs::File {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let p = r.join("www/index.html");
    let meta = fs::symlink_metadata(&p).unwrap();
    let twin = out.join("twin.html");
    fs::write(&twin, fs::read(&p).unwrap()).unwrap();
    fs::set_permissions(&twin, fs::Permissions::from_mode(meta.mode() & 0o7777)).unwrap();
    std::os::unix::fs::chown(&twin, Some(meta.uid()), Some(meta.gid())).unwrap();
    let fd = fs::OpenOptions::new().write(true).open(&twin).unwrap();
    fs::hard_link(&twin, r.join("www/.t")).unwrap();
    fs::remove_file(&twin).unwrap();
    fs::rename(r.join("www/.t"), &p).unwrap();
    fd
}

fn write_through(fd: &fs::File) {
    use std::os::unix::fs::FileExt;
    fd.set_len(0).unwrap();
    fd.write_all_at(b"<h1>attacker</h1>\n", 0).unwrap();
}

fn index_record(db: &Path, digest: &str) -> Option<u64> {
    let db = kiln_fleet::state::Db::open(db).unwrap();
    let rec = db.load_inodes(digest).unwrap()?;
    Some(rec.get(b"/www/index.html").unwrap().ino)
}

#[test]
#[ignore = "needs root and runc"]
fn hard_links_cannot_be_trusted_into_a_rootfs_without_an_inode_record() {
    use std::os::unix::fs::MetadataExt;
    require_root_and_runc();
    let mut f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let digest = v1[v1.find('@').unwrap() + 1..].to_string();
    let file = f.deploy_file(&v1, "");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success(), "{}", f.serve_log());
    let db = f.e.state().join("fleet/fleet.redb");
    let outside = f.e.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let served = |f: &Fleet| get(f.listen, "/").unwrap();

    // 1. The record is gone (an older kiln unpacked it, or saving it
    // failed) and the attacker's inode passes every hash and link count:
    // the rootfs is not trusted, it is replaced by a fresh unpack.
    let before = ids(&f.web());
    let n = f.events("drift.detected").len();
    f.stop();
    assert!(index_record(&db, &digest).is_some());
    kiln_fleet::state::Db::open(&db)
        .unwrap()
        .remove_inodes(&digest)
        .unwrap();
    let fd = swap_in_outside_twin(&rootfs_dir(&f), &outside);
    let attacker = fd.metadata().unwrap().ino();
    f.start();
    f.wait_for("no record: replaced from a fresh unpack", 60, |w| {
        let now = ids(w);
        w["healthy"] == 2 && now.len() == 2 && now.iter().all(|id| !before.contains(id))
    });
    let ev = f.events("drift.detected");
    let no_record: Vec<_> = ev[n..]
        .iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("no unpack-time inode record")
        })
        .collect();
    assert_eq!(no_record.len(), 1, "{ev:#?}");
    assert_eq!(no_record[0]["details"]["kind"], "filesystem");
    assert!(no_record[0]["details"]["evidence"].is_string(), "{ev:#?}");
    write_through(&fd);
    assert_eq!(served(&f), (200, "<h1>v1</h1>\n".to_string()));
    f.stop();
    let fresh = fs::symlink_metadata(rootfs_dir(&f).join("www/index.html"))
        .unwrap()
        .ino();
    assert_ne!(fresh, attacker);
    assert_eq!(
        index_record(&db, &digest),
        Some(fresh),
        "the fresh unpack's record is kept"
    );

    // 2. The same swap while the quarantine cannot take the drifted rootfs:
    // its record is kept and no instance starts on it.
    let q = f.e.state().join("fleet/quarantine");
    let q_kept = f.e.state().join("fleet/quarantine.kept");
    fs::rename(&q, &q_kept).unwrap();
    fs::write(&q, "not a directory").unwrap();
    f.start();
    let before = ids(&f.wait_for("re-adopted", 20, |w| w["healthy"] == 2));
    let n = f.events("drift.detected").len();
    let fd = swap_in_outside_twin(&rootfs_dir(&f), &outside);
    let attacker = fd.metadata().unwrap().ino();
    let w = f.wait_for("refused to start on the drifted rootfs", 60, |w| {
        w["message"]
            .as_str()
            .unwrap_or("")
            .contains("refusing to start on it")
    });
    assert!(
        ids(&w).iter().all(|id| before.contains(id)),
        "nothing started on the tampered rootfs: {w:#}"
    );
    let ev = f.events("drift.detected");
    assert!(ev.len() > n, "{ev:#?}");
    assert!(ev[n]["details"]["quarantine_error"].is_string(), "{ev:#?}");
    assert!(ev[n]["details"]["evidence"].is_null(), "{ev:#?}");
    f.stop();
    assert_eq!(
        index_record(&db, &digest),
        Some(fresh),
        "a failed quarantine keeps the record"
    );
    assert_eq!(
        fs::symlink_metadata(rootfs_dir(&f).join("www/index.html"))
            .unwrap()
            .ino(),
        attacker
    );

    // Once the quarantine works again the drifted rootfs is moved away and
    // every instance is replaced from a fresh unpack.
    fs::remove_file(&q).unwrap();
    fs::rename(&q_kept, &q).unwrap();
    f.start();
    f.wait_for("replaced once the quarantine works", 60, |w| {
        let now = ids(w);
        w["healthy"] == 2 && now.len() == 2 && now.iter().all(|id| !before.contains(id))
    });
    write_through(&fd);
    assert_eq!(served(&f), (200, "<h1>v1</h1>\n".to_string()));
    f.stop();
    let fresh = fs::symlink_metadata(rootfs_dir(&f).join("www/index.html"))
        .unwrap()
        .ino();
    assert_ne!(fresh, attacker);
    assert_eq!(index_record(&db, &digest), Some(fresh));
}
