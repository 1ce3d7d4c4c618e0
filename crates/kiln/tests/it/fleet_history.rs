//! Operating without a shell: `kiln status` exit codes (0 healthy, 3 degraded, 4 the latest
//! release failed, 1 no daemon), `kiln history` of an aborted release (with the daemon running
//! and stopped), and `kiln logs` with timestamps, --tail, --since, --instance, and the output
//! of destroyed instances.
//!
//! Needs root and runc (`#[ignore]`d; `scripts/test.sh` runs them).

use std::fs;
use std::time::{Duration, Instant};

use crate::fleet::{Fleet, require_root_and_runc};
use crate::support::*;

const ORIGINAL: &str =
    r#"entrypoint = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]"#;
/// Says hello, then serves.
const TALKING: &str = r#"entrypoint = ["/bin/busybox", "sh", "-c", "/bin/busybox echo hello from web; exec /bin/busybox httpd -f -p 8080 -h /www"]"#;
/// Says why, then dies: never healthy.
const DYING: &str =
    r#"entrypoint = ["/bin/busybox", "sh", "-c", "/bin/busybox echo dying now; exit 1"]"#;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn status_code(f: &Fleet, args: &[&str]) -> Option<i32> {
    run(f.e.kiln().arg("status").args(args)).status.code()
}

fn logs(f: &Fleet, args: &[&str]) -> Vec<String> {
    let o = run(f.e.kiln().arg("logs").arg("web").args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

fn wait_code(f: &Fleet, want: i32, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while status_code(f, &[]) != Some(want) {
        assert!(
            Instant::now() < end,
            "kiln status never exited {want}: {:#}\n{}",
            f.web(),
            f.serve_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root and runc"]
fn status_history_and_logs_say_what_happened() {
    require_root_and_runc();
    let mut f = Fleet::new();
    let v1 = f.image("1.0.0", "<h1>v1</h1>\n", |s| s.replace(ORIGINAL, TALKING));
    let file = f.deploy_file(&v1, "canary = [50, 100]\n");
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("strategy = \"blue-green\"", "strategy = \"canary\"")
        .replace("replicas = 3", "replicas = 2");
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert!(o.status.success(), "{}", stderr(&o));

    // Healthy: exit 0, state in the JSON.
    wait_code(&f, 0, 30);
    let o = run(f.e.kiln().args(["--json", "status", "web"]));
    assert_eq!(o.status.code(), Some(0));
    let st = json(&o);
    assert_eq!(st["exit"], 0);
    assert_eq!(st["services"][0]["state"], "healthy");
    assert_eq!(st["services"][0]["active"]["id"], "r1");
    assert_eq!(status_code(&f, &["nosuch"]), Some(1));

    // Logs: every line with its instance and receive time; the filters.
    let end = Instant::now() + Duration::from_secs(10);
    while logs(&f, &[]).len() < 2 {
        assert!(Instant::now() < end, "no output: {:?}", logs(&f, &[]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let stamped = logs(&f, &["--timestamps"]);
    for l in &stamped {
        let (time, rest) = l.split_once(' ').unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
            "{l}"
        );
        assert!(
            rest.starts_with("web-") && rest.ends_with(" | hello from web"),
            "{l}"
        );
    }
    assert_eq!(logs(&f, &["--tail", "1"]).len(), 1);
    assert_eq!(logs(&f, &["--since", "1h"]).len(), stamped.len());
    assert!(logs(&f, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let first = logs(&f, &[])[0].split(" | ").next().unwrap().to_string();
    let own = logs(&f, &["--instance", &first]);
    assert!(!own.is_empty() && own.iter().all(|l| l.starts_with(&format!("{first} | "))));
    let o = run(f.e.kiln().args(["logs", "web", "--instance", "web-9999"]));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // Degraded: the test kills every instance again and again until `kiln status` says 3.
    // One kill alone is not enough to observe: its replacement can be healthy within
    // milliseconds, before the next poll. Repeated unplanned exits end in the crash-loop
    // backoff, which stays degraded for seconds. Healthy (0) again afterwards.
    let end = Instant::now() + Duration::from_secs(60);
    while status_code(&f, &[]) != Some(3) {
        assert!(
            Instant::now() < end,
            "kiln status never exited 3: {:#}",
            f.web()
        );
        for i in f.web()["instances"].as_array().into_iter().flatten() {
            if let Some(pid) = i["pid"].as_i64() {
                // SAFETY: killing a test instance's process.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_code(&f, 0, 120);

    // A release whose instances die: the rollout aborts; exit 4, history says why.
    let bad = f.image("2.0.0", "<h1>v2</h1>\n", |s| s.replace(ORIGINAL, DYING));
    let text = fs::read_to_string(&file).unwrap().replace(&v1, &bad);
    fs::write(&file, text).unwrap();
    let o = f.apply(&file);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(status_code(&f, &[]), Some(4));
    let st = json(&run(f.e.kiln().args(["--json", "status"])));
    assert_eq!(st["exit"], 4);
    assert_eq!(st["services"][0]["state"], "failed");

    let check_history = |f: &Fleet| {
        let o = run(f.e.kiln().args(["--json", "history", "web"]));
        assert!(o.status.success(), "{}", stderr(&o));
        let h = json(&o);
        let rels = h["releases"].as_array().unwrap();
        assert_eq!(rels.len(), 2, "{h:#}");
        assert_eq!(rels[0]["id"], "r1");
        assert_eq!(rels[0]["outcome"], "serving");
        assert_eq!(rels[1]["id"], "r2");
        assert_eq!(rels[1]["outcome"], "failed", "{h:#}");
        assert!(
            rels[1]["outcome_reason"]
                .as_str()
                .unwrap()
                .contains("instance failures"),
            "{h:#}"
        );
        assert_eq!(rels[1]["strategy"], "canary [50, 100]");
        assert!(rels[1]["duration_ms"].as_u64().is_some());
        let o = run(f.e.kiln().args(["history", "web"]));
        let text = stdout(&o);
        assert!(text.contains("r2  failed"), "{text}");
        assert!(text.contains("instance failures"), "{text}");
    };
    check_history(&f);

    // The dead instances are gone; their output is still there.
    let dying: Vec<String> = logs(&f, &[])
        .into_iter()
        .filter(|l| l.ends_with(" | dying now"))
        .collect();
    assert!(!dying.is_empty(), "{:?}", logs(&f, &[]));
    let gone = dying[0].split(" | ").next().unwrap().to_string();
    assert!(
        f.web()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != gone.as_str())
    );
    assert!(!logs(&f, &["--instance", &gone]).is_empty());

    // Without a daemon: status exits 1, history reads the log and the database.
    f.stop();
    assert_eq!(status_code(&f, &[]), Some(1));
    check_history(&f);
    f.start();
}
