//! `kiln serve --metrics`: a live scrape that `promtool check metrics`
//! accepts, the dashboard loaded by headless Chromium after a canary
//! aborted (the aborted release and its numbers in the DOM, a screenshot
//! kept under the test's directory), and the bearer token.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fleet::{Fleet, free_port, get, require_root_and_runc};
use crate::support::*;

/// A `kiln serve` of our own (with flags the shared helper does not pass);
/// killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn serve(f: &Fleet, args: &[&str]) -> Serve {
    let log = fs::File::create(f.e.path().join("serve.log")).unwrap();
    let child =
        f.e.kiln()
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
    let s = Serve(child);
    let sock = f.e.state().join("fleet/kiln.sock");
    let end = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < end,
            "kiln serve did not start: {}",
            f.serve_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// GET with an optional bearer token: (status, body).
fn http(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn wait_listening(addr: SocketAddr, f: &Fleet) {
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < end,
            "no metrics listener: {}",
            f.serve_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn chromium(args: &[&str]) -> std::process::Output {
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,2400",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", stderr(&o));
    o
}

const HOSTILE: &str = "<script>document.title='owned'</script><img src=x>";

#[test]
#[ignore = "needs root, runc, chromium, promtool"]
fn metrics_pass_promtool_and_the_dashboard_shows_an_aborted_canary() {
    require_root_and_runc();
    require("promtool");
    require("chromium");
    let mut f = Fleet::new();
    f.stop();
    // Anything but loopback without a token is refused at start.
    let o = run(f.e.kiln().args(["serve", "--metrics", "0.0.0.0:9"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--metrics-token-file"),
        "{}",
        stderr(&o)
    );

    let maddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let srv = serve(&f, &["--metrics", &maddr.to_string()]);
    wait_listening(maddr, &f);

    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s);
    let file = f.deploy_file(&v1, "canary = [50, 100]\n");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("strategy = \"blue-green\"", "strategy = \"canary\"")
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    assert!(f.apply(&file).status.success(), "{}", f.serve_log());
    // Some traffic for the stable release's numbers.
    let stop = Arc::new(AtomicBool::new(false));
    let (s, listen) = (stop.clone(), f.listen);
    let load = std::thread::spawn(move || {
        let mut ok = 0u64;
        while !s.load(Ordering::Relaxed) {
            if matches!(get(listen, "/"), Some((200, _))) {
                ok += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ok
    });
    // v2 exits at once: its instances never become healthy; the canary aborts.
    let bad = f.image("2.0.0", "<h1>v2</h1>\n", |s| {
        s.replace(
            "entrypoint = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]",
            "entrypoint = [\"/bin/busybox\", \"false\"]",
        )
    });
    let text = fs::read_to_string(&file).unwrap().replace(&v1, &bad);
    fs::write(&file, text).unwrap();
    let o = run(f
        .e
        .kiln()
        .args(["--reason", HOSTILE, "apply", "--timeout", "90s", "-f"])
        .arg(&file));
    stop.store(true, Ordering::Relaxed);
    let ok = load.join().unwrap();
    assert!(ok > 0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let aborts = f.events("release.abort");
    assert_eq!(aborts.len(), 1, "{aborts:#?}");
    let aborted = aborts[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "release")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let active = f.web()["active"]["id"].as_str().unwrap().to_string();

    // A live scrape: promtool accepts it.
    let (code, metrics) = http(maddr, "/metrics", None);
    assert_eq!(code, 200);
    let scrape = f.e.path().join("scrape.txt");
    fs::write(&scrape, &metrics).unwrap();
    let o = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(&scrape).unwrap())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    for want in [
        "process_start_time_seconds ",
        "kiln_release_outcomes_total{service=\"web\",outcome=\"aborted\"} 1\n",
        "kiln_release_outcomes_total{service=\"web\",outcome=\"started\"} ",
        "kiln_release_duration_seconds_count{service=\"web\",outcome=\"aborted\"} 1\n",
        "kiln_service_healthy_instances{service=\"web\"} 2\n",
        "kiln_audit_append_duration_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
    let conns_line =
        format!("kiln_release_connections_total{{service=\"web\",release=\"{active}\"}} ");
    let conns: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&conns_line))
        .unwrap_or_else(|| panic!("{conns_line} missing:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(conns >= ok, "{conns} connections, {ok} answered");

    // The dashboard in a real browser.
    let dir = f.e.path().join("dashboard");
    fs::create_dir_all(&dir).unwrap();
    let base = format!("http://{maddr}");
    let shot = dir.join("releases.png");
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        &format!("{base}/releases"),
    ]);
    assert!(fs::metadata(&shot).unwrap().len() > 1000, "no screenshot");
    chromium(&[
        &format!("--screenshot={}", dir.join("fleet.png").display()),
        &format!("{base}/"),
    ]);
    let dom =
        String::from_utf8(chromium(&["--dump-dom", &format!("{base}/releases")]).stdout).unwrap();
    fs::write(dir.join("releases.html"), &dom).unwrap();
    assert!(dom.contains(&format!("web {aborted}")), "{dom}");
    assert!(dom.contains("aborted"), "{dom}");
    assert!(dom.contains("release.abort"), "{dom}");
    // The hostile reason is text, never markup: no script ran, no element was made.
    assert!(dom.contains("&lt;script&gt;document.title="), "{dom}");
    assert!(!dom.contains("<script>document.title"), "{dom}");
    assert!(!dom.contains("<img src=\"x\""), "{dom}");
    let title = dom.split("<title>").nth(1).unwrap_or_default();
    assert!(!title.starts_with("owned"), "{dom}");
    let fleet_dom =
        String::from_utf8(chromium(&["--dump-dom", &format!("{base}/")]).stdout).unwrap();
    fs::write(dir.join("fleet.html"), &fleet_dom).unwrap();
    assert!(fleet_dom.contains(&active), "{fleet_dom}");
    assert!(
        fleet_dom.contains(&format!("<td>{active}</td><td>{conns}</td>")),
        "{conns} connections of {active} not shown: {fleet_dom}"
    );
    assert!(fleet_dom.contains("<svg"), "no chart: {fleet_dom}");
    let (code, ev) = http(maddr, "/evidence", None);
    assert_eq!(code, 200);
    assert!(ev.contains("pci-dss-4.0"), "{ev}");
    // Each audit event links to its inclusion proof.
    let abort_index = {
        let (_, audit) = http(maddr, "/audit", None);
        assert!(audit.contains("release.abort"));
        let o = run(f
            .e
            .kiln()
            .args(["--json", "log", "show", "--action", "release.abort"]));
        json(&o)[0]["index"].as_u64().unwrap()
    };
    let (code, proof) = http(maddr, &format!("/proof/{abort_index}"), None);
    assert_eq!(code, 200, "{proof}");
    let proof: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(proof["index"], abort_index);
    assert!(proof["entry"].as_str().unwrap().contains("release.abort"));
    // Read-only.
    let mut s = TcpStream::connect(maddr).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    drop(srv);

    // A token: a group-readable file is refused; without or with a wrong
    // token, 401.
    let tok = f.e.path().join("metrics.token");
    fs::write(&tok, "s3cret-token\n").unwrap();
    fs::set_permissions(&tok, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(f
        .e
        .kiln()
        .args([
            "serve",
            "--metrics",
            &maddr.to_string(),
            "--metrics-token-file",
        ])
        .arg(&tok));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    fs::set_permissions(&tok, fs::Permissions::from_mode(0o600)).unwrap();
    let tok_s = tok.display().to_string();
    let _srv = serve(
        &f,
        &[
            "--metrics",
            &maddr.to_string(),
            "--metrics-token-file",
            &tok_s,
        ],
    );
    wait_listening(maddr, &f);
    assert_eq!(http(maddr, "/metrics", None).0, 401);
    assert_eq!(http(maddr, "/", Some("wrong")).0, 401);
    assert_eq!(http(maddr, "/metrics", Some("s3cret-token")).0, 200);
    let _ = run(f.e.kiln().args(["destroy", "web"]));
}
