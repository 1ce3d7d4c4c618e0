//! Canary analysis on real traffic through kiln's front proxy, manual rollout control and
//! the PROXY protocol, with runc instances of the busybox example image.
//!
//! Needs root and runc: every test is `#[ignore]`d; `scripts/test.sh` runs them.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fleet::{Fleet, get, require_root_and_runc};
use crate::support::*;

/// v1: the example page, with `/health.html` for the health check.
fn good_image(f: &Fleet, tag: &str, page: &str) -> String {
    fs::write(f.e.spec_dir().join("www/health.html"), "ok\n").unwrap();
    f.image(tag, page, |s| s)
}

/// An image whose `/` answers 500 (a CGI `index.cgi`) while `/health.html` is fine.
fn failing_image(f: &Fleet, tag: &str) -> String {
    let dir = f.e.spec_dir();
    fs::create_dir_all(dir.join("www500")).unwrap();
    fs::write(dir.join("www500/health.html"), "ok\n").unwrap();
    fs::write(
        dir.join("index.cgi"),
        "#!/bin/busybox sh\necho \"Status: 500 Internal Server Error\"\necho \"Content-Type: text/plain\"\necho\necho broken\n",
    )
    .unwrap();
    f.image(tag, "unused\n", |s| {
        s.replace("\"-h\", \"/www\"]", "\"-h\", \"/www500\"]")
            + "\n[[files]]\nsrc = \"www500/\"\ndst = \"/www500\"\n\n[[files]]\nsrc = \"index.cgi\"\ndst = \"/www500/cgi-bin/index.cgi\"\nmode = \"0755\"\n"
    })
}

/// A canary deploy file (2 replicas, steps 50 → 100) with `analysis` as its table.
fn canary_file(f: &Fleet, image: &str, analysis: &str) -> PathBuf {
    let file = f.deploy_file(
        image,
        &format!("canary = [50, 100]\n\n[service.web.analysis]\n{analysis}\n"),
    );
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("strategy = \"blue-green\"", "strategy = \"canary\"")
        .replace("replicas = 3", "replicas = 2")
        .replace("http_get = \"/\"", "http_get = \"/health.html\"");
    fs::write(&file, text).unwrap();
    file
}

fn swap_image(file: &PathBuf, from: &str, to: &str) {
    let text = fs::read_to_string(file).unwrap().replace(from, to);
    fs::write(file, text).unwrap();
}

/// Each request's start and status (0: no answer).
type Requests = Vec<(Instant, u16)>;

fn request_loop(addr: SocketAddr) -> (Arc<AtomicBool>, std::thread::JoinHandle<Requests>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut out = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let t = Instant::now();
            let code = get(addr, "/").map_or(0, |(c, _)| c);
            out.push((t, code));
            std::thread::sleep(Duration::from_millis(5));
        }
        out
    });
    (stop, h)
}

fn kiln_ok(f: &Fleet, args: &[&str]) -> std::process::Output {
    let o = run(f.e.kiln().args(args));
    assert!(o.status.success(), "kiln {args:?}: {}", stderr(&o));
    o
}

#[test]
#[ignore = "needs root and runc"]
fn a_canary_answering_500_aborts_at_the_first_step_with_the_numbers() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = good_image(&f, "1.0.0", "<h1>v1</h1>\n");
    let file = canary_file(
        &f,
        &v1,
        "min_requests = 20\nmax_error_rate = 0.01\nstep_timeout = \"60s\"",
    );
    let o = f.apply(&file);
    assert!(o.status.success(), "{}", stderr(&o));
    let bad = failing_image(&f, "2.0.0");
    let (stop, h) = request_loop(f.listen);
    swap_image(&file, &v1, &bad);
    let o = f.apply(&file);
    let aborted_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let reqs = h.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("aborted"), "{}", stderr(&o));
    let before = reqs.iter().filter(|(t, _)| *t < aborted_at).count();
    let failed_before = reqs
        .iter()
        .filter(|(t, c)| *t < aborted_at && *c != 200)
        .count();
    let after: Vec<_> = reqs.iter().filter(|(t, _)| *t >= aborted_at).collect();
    let failed_after = after.iter().filter(|(_, c)| *c != 200).count();
    eprintln!(
        "{before} requests during the canary ({failed_before} failed), {} after the abort",
        after.len()
    );
    assert!(failed_before >= 1, "the canary served no 500 at all");
    assert!(!after.is_empty());
    assert_eq!(
        failed_after, 0,
        "{failed_after} requests failed after the abort"
    );
    // The abort event says which numbers decided, and at which step.
    let aborts = f.events("release.abort");
    assert_eq!(aborts.len(), 1, "{aborts:#?}");
    let a = &aborts[0]["details"]["analysis"];
    assert_eq!(a["verdict"], "fail", "{a:#}");
    assert_eq!(a["min_requests"], 20);
    assert_eq!(a["max_error_rate"], 0.01);
    assert!(a["errors"].as_u64().unwrap() >= 1, "{a:#}");
    assert!(a["requests"].as_u64().unwrap() >= a["errors"].as_u64().unwrap());
    assert!(
        aborts[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("canary step 1: "),
        "{:#}",
        aborts[0]
    );
    // The stable release serves, and the proxy's per-release counters are in status.
    let w = f.web();
    assert_eq!(w["healthy"], 2);
    assert!(
        w["active"]["image"]
            .as_str()
            .unwrap()
            .ends_with(&v1[v1.len() - 64..])
    );
    let releases = w["proxy"]["releases"].as_array().unwrap();
    let five = releases
        .iter()
        .map(|r| r["responses"]["5xx"].as_u64().unwrap())
        .sum::<u64>();
    assert!(five >= 1, "{releases:#?}");
}

#[test]
#[ignore = "needs root and runc"]
fn a_canary_without_traffic_pauses_and_resume_continues_it() {
    require_root_and_runc();
    let f = Fleet::new();
    let v1 = good_image(&f, "1.0.0", "<h1>v1</h1>\n");
    let file = canary_file(&f, &v1, "min_requests = 5\nstep_timeout = \"2s\"");
    assert!(f.apply(&file).status.success());
    // Nothing to control yet.
    let o = run(f.e.kiln().args(["rollout", "resume", "web"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no rollout in progress"),
        "{}",
        stderr(&o)
    );
    let v2 = good_image(&f, "2.0.0", "<h1>v2</h1>\n");
    swap_image(&file, &v1, &v2);
    let o = run(f.e.kiln().args(["apply", "--no-wait", "-f"]).arg(&file));
    assert!(o.status.success(), "{}", stderr(&o));
    let paused = |w: &Value| w["rollout"]["paused"].is_string();
    let w = f.wait_for("the first step to pause", 90, paused);
    assert_eq!(w["rollout"]["step"], 0);
    assert!(w["message"].as_str().unwrap().contains("paused"), "{w:#}");
    let pauses = f.events("release.pause");
    assert_eq!(pauses[0]["details"]["analysis"]["verdict"], "timeout");
    assert_eq!(pauses[0]["details"]["step"], 1);
    // Resume: the step counts as passed; the next one (100 %) pauses again without traffic.
    kiln_ok(&f, &["rollout", "resume", "web"]);
    let w = f.wait_for("the second step to pause", 30, |w| {
        paused(w) && w["rollout"]["step"] == 1
    });
    assert_eq!(w["rollout"]["canary"], serde_json::json!([50, 100]));
    kiln_ok(&f, &["rollout", "resume", "web"]);
    let w = f.wait_for("the switch", 60, |w| {
        w["rollout"].is_null() && w["healthy"] == 2
    });
    assert!(
        w["active"]["image"]
            .as_str()
            .unwrap()
            .ends_with(&v2[v2.len() - 64..])
    );
    let resumes: Vec<Value> = f
        .events("release.resume")
        .into_iter()
        .filter(|e| e["outcome"] == "success")
        .collect();
    assert_eq!(resumes.len(), 2, "{resumes:#?}");
    assert_eq!(resumes[0]["actor"]["user"], "root");
    assert_eq!(get(f.listen, "/").unwrap().1, "<h1>v2</h1>\n");
}

#[test]
#[ignore = "needs root and runc"]
fn the_backend_sees_a_proxy_v2_header_with_the_client_address() {
    require_root_and_runc();
    let f = Fleet::new();
    // The instance answers each connection with a hex dump of its first 28 bytes.
    let img = f.image("1.0.0", "unused\n", |s| {
        s.replace(
            "entrypoint = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]",
            "entrypoint = [\"/bin/busybox\", \"nc\", \"-ll\", \"-p\", \"8080\", \"-e\", \"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox dd bs=28 count=1 2>/dev/null | /bin/busybox od -An -tx1\"]",
        )
    });
    let file = f.deploy_file(&img, "proxy_protocol = true\n");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 1")
        .replace("http_get = \"/\"", "tcp = true");
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    let mut c = TcpStream::connect(f.listen).unwrap();
    let me = c.local_addr().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let got: Vec<u8> = out
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut want = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12,
        127, 0, 0, 1, 127, 0, 0, 1,
    ];
    want.extend_from_slice(&me.port().to_be_bytes());
    want.extend_from_slice(&f.listen.port().to_be_bytes());
    assert_eq!(got, want, "{out}");
}
