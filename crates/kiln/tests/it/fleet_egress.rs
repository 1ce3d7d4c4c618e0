//! Declared egress with real parts: a real `redis-server` and a TCP echo server on the
//! host, reached from a runc instance (busybox httpd CGI scripts using busybox `nc`)
//! through the names its image declares, and nothing else.
//!
//! Needs root, runc and redis-server (`scripts/install-deps.sh`): `#[ignore]`d, run by
//! `scripts/test.sh`, where a missing prerequisite fails the test.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redis-server` on a free loopback port, no persistence.
fn redis() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), port)
}

/// A line echo server: answers the first line of each connection, then closes.
fn echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut r = BufReader::new(&s);
                if r.read_line(&mut line).is_ok() {
                    let _ = (&s).write_all(format!("echo:{line}").as_bytes());
                }
            });
        }
    });
    port
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let o = run(Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

const CGI: &[(&str, &str)] = &[
    (
        "redis",
        "printf 'PING\\r\\nSET kiln-egress from-instance\\r\\nQUIT\\r\\n' | /bin/busybox nc cache.internal 6379",
    ),
    (
        "echo",
        "printf 'hello-egress\\n' | /bin/busybox nc echo.internal 7000",
    ),
    (
        "gone",
        "printf 'x\\n' | /bin/busybox nc -w 3 gone.internal 7001; echo done",
    ),
    (
        "direct",
        "if printf 'PING\\r\\n' | /bin/busybox nc -w 2 127.0.0.1 \"$QUERY_STRING\"; then echo CONNECTED; else echo FAILED; fi",
    ),
];

struct Fleet {
    e: Env,
    serve: Option<Child>,
    listen: SocketAddr,
    policy: PathBuf,
    key: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let e = Env::new();
        let key = keygen(&e, "ci");
        let policy = e.path().join("trust.toml");
        fs::write(
            &policy,
            "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n",
        )
        .unwrap();
        let mut f = Fleet {
            e,
            serve: None,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            policy,
            key,
        };
        f.start();
        f
    }

    fn start(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.e.path().join("serve.log"))
            .unwrap();
        let sock = self.e.state().join("fleet/kiln.sock");
        let _ = fs::remove_file(&sock);
        let child = self
            .e
            .kiln()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.serve = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(Instant::now() < end, "kiln serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn serve_log(&self) -> String {
        fs::read_to_string(self.e.path().join("serve.log")).unwrap_or_default()
    }

    /// The hello image with CGI scripts and a declared egress; returns `hello@sha256:…`.
    fn image(&self) -> String {
        let cgi = self.e.spec_dir().join("cgi");
        fs::create_dir_all(&cgi).unwrap();
        for (name, body) in CGI {
            fs::write(
                cgi.join(name),
                format!("#!/bin/busybox sh\necho 'Content-Type: text/plain'\necho\n{body}\n"),
            )
            .unwrap();
        }
        let spec = self.e.spec_text().replace(
            "egress = []",
            "egress = [{ to = \"cache.internal:6379\", reason = \"session cache\" },\n          { to = \"echo.internal:7000\", reason = \"echo\" },\n          { to = \"gone.internal:7001\", reason = \"a destination that is down\" }]",
        );
        // The process reaches redis at its first instruction: the listeners exist before
        // it runs.
        let spec = spec.replace(
            r#"entrypoint = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]"#,
            r#"entrypoint = ["/bin/busybox", "sh", "-c", "printf \"SET egress-at-start yes\\r\\nQUIT\\r\\n\" | /bin/busybox nc cache.internal 6379; exec /bin/busybox httpd -f -p 8080 -h /www"]"#,
        );
        let spec = spec.replace(
            "[[debs]]",
            "[[files]]\nsrc = \"cgi/\"\ndst = \"/www/cgi-bin\"\nmode = \"0755\"\n\n[[debs]]",
        );
        self.e.write_spec(&spec);
        let digest = self.e.build(&[]);
        let o = run(self
            .e
            .kiln()
            .env("KILN_KEY_PASSWORD", PASSWORD)
            .args(["sign", "hello:1.0.0", "--key"])
            .arg(&self.key));
        assert!(o.status.success(), "{}", stderr(&o));
        format!("hello@{digest}")
    }

    fn deploy_file(&self, image: &str, egress: &str) -> PathBuf {
        let p = self.e.path().join("deploy.toml");
        fs::write(
            &p,
            format!(
                "[service.web]\nimage = \"{image}\"\nreplicas = 1\nlisten = \"{}\"\nport = 8080\nhealth = {{ http_get = \"/\", interval = \"500ms\", timeout = \"500ms\" }}\npolicy = \"{}\"\n\n[service.web.egress]\n{egress}",
                self.listen,
                self.policy.display()
            ),
        )
        .unwrap();
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
        assert!(matches!(o.status.code(), Some(0 | 3 | 4)), "{}", stderr(&o));
        json(&o)
    }

    fn web(&self) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "web")
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn events(&self, prefix: &str) -> Vec<Value> {
        self.e.events(prefix)
    }

    /// The one instance's egress counters, by `to`.
    fn egress(&self) -> Vec<Value> {
        let w = self.web();
        w["instances"][0]["egress"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn route(&self, to: &str) -> Value {
        self.egress()
            .into_iter()
            .find(|r| r["to"] == to)
            .unwrap_or(Value::Null)
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

/// GET `path` through the front proxy: the body of a 200 answer.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    if let Err(e) = r {
        eprintln!("GET {path}: {e} after {text:?}");
        return None;
    }
    if text.get(9..12) != Some("200") {
        eprintln!("GET {path}: {text:?}");
    }
    // A CGI script ends its headers with a bare "\n\n".
    let body = [
        text.find("\r\n\r\n").map(|i| i + 4),
        text.find("\n\n").map(|i| i + 2),
    ]
    .into_iter()
    .flatten()
    .min()
    .map_or_else(String::new, |i| text[i..].to_string());
    (text.get(9..12)? == "200").then_some(body)
}

fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `path` of the `file:line:col` prefix of a failed apply's message.
fn located(o: &std::process::Output, file: &Path, line: usize) -> bool {
    stderr(o).contains(&format!("{}:{line}:", file.display()))
}

#[test]
#[ignore = "needs root, runc and redis-server"]
fn declared_egress_reaches_redis_and_echo_and_nothing_else() {
    require_root();
    require("runc");
    require("redis-server");
    require("redis-cli");
    let (_redis, rport) = redis();
    let eport = echo();
    let closed = free_port();
    let mut f = Fleet::new();
    let image = f.image();
    let good = format!(
        "\"cache.internal:6379\" = \"127.0.0.1:{rport}\"\n\"echo.internal:7000\" = \"localhost:{eport}\"\n\"gone.internal:7001\" = \"127.0.0.1:{closed}\"\n"
    );

    // Bad input: file:line:col, and nothing changes.
    for (egress, line, want) in [
        (
            format!("{good}\"other.internal:1\" = \"127.0.0.1:1\"\n"),
            13,
            "is not declared by the image",
        ),
        (
            format!("\"cache.internal:6379\" = \"127.0.0.1:{rport}\"\n"),
            9,
            "does not map it",
        ),
        (
            good.replace(&format!("127.0.0.1:{closed}"), &f.listen.to_string()),
            12,
            "front proxy listens on",
        ),
        (
            good.replace(&format!("127.0.0.1:{closed}"), "127.0.0.1:99999"),
            12,
            "the port must be a number",
        ),
    ] {
        let file = f.deploy_file(&image, &egress);
        let o = f.apply(&file);
        assert!(!o.status.success(), "{egress}");
        assert!(located(&o, &file, line), "{egress}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{egress}: {}", stderr(&o));
        assert_eq!(f.status()["services"], serde_json::json!([]), "{egress}");
    }

    let file = f.deploy_file(&image, &good);
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    assert_eq!(f.web()["healthy"], 1);

    // Redis through its declared name: PONG, and the SET is visible from the host.
    let body = get(f.listen, "/cgi-bin/redis").expect("redis CGI");
    assert!(body.contains("+PONG"), "{body}");
    assert!(body.contains("+OK"), "{body}");
    assert_eq!(redis_cli(rport, &["GET", "kiln-egress"]), "from-instance");
    assert_eq!(redis_cli(rport, &["GET", "egress-at-start"]), "yes");
    // The echo server, mapped by a DNS name.
    let body = get(f.listen, "/cgi-bin/echo").expect("echo CGI");
    assert_eq!(body.trim(), "echo:hello-egress", "{body}");
    // Nothing else: not the redis port on its real address, not another host listener.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    for port in [rport, other.local_addr().unwrap().port()] {
        let body = get(f.listen, &format!("/cgi-bin/direct?{port}")).expect("direct CGI");
        assert!(
            body.contains("FAILED") && !body.contains("PONG"),
            "{port}: {body}"
        );
    }
    // A destination that is down: visible as refused, with why.
    let body = get(f.listen, "/cgi-bin/gone").expect("gone CGI");
    assert!(body.contains("done"), "{body}");

    let gone = wait_until("the refusal in status", 10, || {
        let r = f.route("gone.internal:7001");
        (r["refused"].as_u64() >= Some(1)).then_some(r)
    });
    assert_eq!(gone["opened"], 0, "{gone:#}");
    assert!(
        gone["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{gone:#}"
    );
    let cache = wait_until("redis counters", 10, || {
        let r = f.route("cache.internal:6379");
        // One connection at start, one from the CGI script.
        (r["active"] == 0 && r["opened"] == 2).then_some(r)
    });
    assert_eq!(cache["via"], "127.0.1.1:6379", "{cache:#}");
    assert_eq!(cache["refused"], 0);
    assert!(cache["bytes_out"].as_u64().unwrap() > 20, "{cache:#}");
    assert!(cache["bytes_in"].as_u64().unwrap() >= 12, "{cache:#}");
    let echo_r = f.route("echo.internal:7000");
    assert_eq!(echo_r["opened"], 1, "{echo_r:#}");
    assert_eq!(echo_r["bytes_out"], 13, "{echo_r:#}");
    assert_eq!(echo_r["bytes_in"], 18, "{echo_r:#}");

    // The instance's /etc/hosts is its own, read-only, over the shared rootfs.
    let id = f.web()["instances"][0]["id"].as_str().unwrap().to_string();
    let hosts =
        fs::read_to_string(f.e.state().join(format!("fleet/instances/{id}/hosts"))).unwrap();
    assert!(hosts.contains("127.0.1.1\tcache.internal\n"), "{hosts}");
    assert!(hosts.contains("127.0.1.3\tgone.internal\n"), "{hosts}");

    // A daemon restart: the adopted instance gets its listeners again.
    f.stop();
    f.start();
    let body = wait_until("redis after a restart", 20, || {
        get(f.listen, "/cgi-bin/redis").filter(|b| b.contains("+PONG"))
    });
    assert!(body.contains("+OK"), "{body}");
    wait_until("counters after a restart", 10, || {
        (f.route("cache.internal:6379")["opened"].as_u64() >= Some(1)).then_some(())
    });

    // kiln's own listeners are not drift: the runtime check (every second) leaves the
    // instance alone.
    std::thread::sleep(Duration::from_secs(3));
    let drift = f.events("drift.detected");
    assert!(drift.is_empty(), "{drift:#?}");
    assert_eq!(f.web()["instances"][0]["id"], id.as_str(), "not replaced");

    // Destroyed: a final fleet.egress event with the counts, no payload.
    let o = run(f.e.kiln().args(["destroy", "web"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = wait_until("the final fleet.egress event", 20, || {
        f.events("fleet.egress")
            .into_iter()
            .find(|e| e["details"]["final"] == true)
    });
    let text = ev.to_string();
    assert!(text.contains("cache.internal:6379"), "{text}");
    assert!(
        !text.contains("from-instance") && !text.contains("PONG"),
        "{text}"
    );
}
