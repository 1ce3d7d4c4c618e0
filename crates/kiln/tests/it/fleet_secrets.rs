//! `[service.X.secrets]` with real parts: runc instances of the example busybox image (its
//! entrypoint prints the secret once, then serves), a real `kiln serve`, restarts, rotation,
//! rollback and destroy, and at every stage a search for the value over everything kiln keeps
//! on disk: found nowhere.
//!
//! Needs root and runc: every test is `#[ignore]`d (`scripts/test.sh` runs them).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fleet::{Fleet, require_root_and_runc};
use crate::support::*;

/// The image's entrypoint: print the secret once (for `kiln logs` to redact), then serve.
const ENTRYPOINT: &str = r#"entrypoint = ["/bin/busybox", "sh", "-c", "/bin/busybox echo started; /bin/busybox cat /run/secrets/DB_PASSWORD; /bin/busybox echo; exec /bin/busybox httpd -f -p 8080 -h /www"]"#;
const HELLO_ENTRYPOINT: &str =
    r#"entrypoint = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]"#;

/// A value no file on this machine holds by chance.
fn unique_value(label: &str) -> String {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    format!("kiln-{label}-{}", hex::encode(b))
}

/// `/run/kiln/<tag>` of this fleet's state directory (as `kiln serve` names it), unmounted
/// and removed when dropped.
struct RunDir(PathBuf);

impl RunDir {
    fn of(f: &Fleet) -> RunDir {
        let state = fs::canonicalize(f.e.state()).unwrap();
        let tag = hex::encode(&Sha256::digest(state.as_os_str().as_encoded_bytes())[..6]);
        RunDir(Path::new("/run/kiln").join(tag))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn is_tmpfs(p: &Path) -> bool {
    let o = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim() == "tmpfs"
}

/// Every regular file under `root` (symlinks, FIFOs and sockets are not read) that contains
/// `needle`, except `skip`.
fn files_holding(root: &Path, needle: &str, skip: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            out.extend(files_holding(&p, needle, skip));
        } else if md.is_file() && !skip.contains(&p.as_path()) {
            let bytes = fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                out.push(p);
            }
        }
    }
    out
}

/// The value is in no file of the test's directory (state directory with fleet.redb, the
/// audit log, every bundle and runc's state; the daemon's own log) but the secret files
/// themselves, nor in a bundle on the tmpfs.
fn assert_nowhere(f: &Fleet, run: &RunDir, values: &[&str], secret_files: &[&Path], stage: &str) {
    for v in values {
        let found = files_holding(f.e.path(), v, secret_files);
        assert!(found.is_empty(), "{stage}: the secret is in {found:?}");
        let found = files_holding(&run.0.join("bundles"), v, &[]);
        assert!(found.is_empty(), "{stage}: the secret is in {found:?}");
    }
}

/// (id, pid) of every instance.
fn instances(w: &Value) -> Vec<(String, u32)> {
    w["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["pid"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

/// What the instance with init `pid` sees at /run/secrets/DB_PASSWORD, read from the host
/// through its root: (content, mode, uid, gid).
fn secret_in(pid: u32) -> (String, u32, u32, u32) {
    let p = format!("/proc/{pid}/root/run/secrets/DB_PASSWORD");
    let md = fs::metadata(&p).unwrap();
    (
        fs::read_to_string(&p).unwrap(),
        md.mode() & 0o7777,
        md.uid(),
        md.gid(),
    )
}

fn write_secret(path: &Path, value: &str, mode: u32) {
    fs::write(path, value).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn logs(f: &Fleet) -> String {
    let o = run(f.e.kiln().args(["logs", "web"]));
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn status_text(f: &Fleet) -> String {
    let o = run(f.e.kiln().arg("status"));
    // 3: degraded (waiting for secrets) answers too.
    assert!(matches!(o.status.code(), Some(0 | 3 | 4)), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn secret_image(f: &Fleet, tag: &str, page: &str) -> String {
    f.image(tag, page, |s| s.replace(HELLO_ENTRYPOINT, ENTRYPOINT))
}

#[test]
#[ignore = "needs root and runc"]
fn secrets_never_persist_and_never_leak() {
    require_root_and_runc();
    let mut f = Fleet::new();
    let run_dir = RunDir::of(&f);
    let v1 = secret_image(&f, "1.0.0", "<h1>v1</h1>\n");
    let v2 = secret_image(&f, "2.0.0", "<h1>v2</h1>\n");
    let secret = f.e.path().join("db-password");
    let (one, two) = (unique_value("one"), unique_value("two"));
    write_secret(&secret, &one, 0o600);
    let table = "\n[service.web.secrets]\nDB_PASSWORD = { file = \"db-password\" }\n";
    let file = f.deploy_file(&v1, table);
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    let skip = [secret.as_path()];
    let check_instances = |w: &Value, want: &str| {
        for (id, pid) in instances(w) {
            assert_eq!(
                secret_in(pid),
                (want.to_string(), 0o400, 65532, 65532),
                "{id}"
            );
        }
    };
    let w = f.web();
    check_instances(&w, &one);
    assert_eq!(w["secrets"], serde_json::json!(["DB_PASSWORD"]));
    assert!(
        is_tmpfs(&run_dir.0),
        "{} is not a tmpfs",
        run_dir.0.display()
    );
    // kiln's own tmpfs, mounted at exactly that path (`/run` itself is a tmpfs here too).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let own = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == run_dir.0.to_str())
        .unwrap_or_else(|| panic!("nothing mounted at {}", run_dir.0.display()));
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(own.contains(flag), "{own}");
    }
    assert_eq!(fs::metadata(&run_dir.0).unwrap().mode() & 0o7777, 0o700);
    // The image's rootfs got no mount point (runc made /run/secrets in the /run tmpfs).
    let rootfs = fs::read_dir(f.e.state().join("fleet/rootfs")).unwrap();
    let mut roots = 0;
    for r in rootfs
        .flatten()
        .filter(|r| r.path().join("rootfs/run").is_dir())
    {
        assert!(!r.path().join("rootfs/run/secrets").exists());
        roots += 1;
    }
    assert!(roots > 0);
    // kiln logs: the instances printed the value; the ring holds it redacted.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = logs(&f);
    while !text.contains("[redacted secret DB_PASSWORD]") && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
        text = logs(&f);
    }
    assert!(text.contains("[redacted secret DB_PASSWORD]"), "{text}");
    assert!(!text.contains(&one), "{text}");
    let status = run(f.e.kiln().args(["--json", "status"]));
    assert!(!String::from_utf8_lossy(&status.stdout).contains(&one));
    assert_nowhere(&f, &run_dir, &[&one], &skip, "after deploy");

    // A restart: running instances are adopted (they keep their files); the daemon holds no
    // value until the next apply, and says so.
    let before = instances(&f.web());
    f.stop();
    f.start();
    let w = f.wait_for("re-adopted", 20, |w| w["healthy"] == 3);
    assert_eq!(instances(&w), before);
    assert_eq!(w["secrets_missing"], serde_json::json!(["DB_PASSWORD"]));
    check_instances(&w, &one);
    assert!(
        status_text(&f).contains("secrets not held since kiln serve restarted (DB_PASSWORD)"),
        "{}",
        status_text(&f)
    );
    assert_nowhere(&f, &run_dir, &[&one], &skip, "after restart");

    // An instance that must be replaced meanwhile waits for the secret.
    let (dead_id, dead_pid) = before[0].clone();
    // SAFETY: killing an instance's init process, by pid.
    unsafe { libc::kill(dead_pid as i32, libc::SIGKILL) };
    let w = f.wait_for("waiting for secrets", 30, |w| {
        w["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("waiting for secrets: run kiln apply"))
    });
    assert_eq!(w["healthy"], 2, "{w:#}");
    assert!(
        status_text(&f).contains("  waiting for secrets: run kiln apply (DB_PASSWORD"),
        "{}",
        status_text(&f)
    );
    assert!(!fs::exists(run_dir.0.join("secrets").join(&dead_id)).unwrap());
    // The same file again: nothing new to roll out, the waiting instance starts.
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    assert!(String::from_utf8_lossy(&o.stdout).contains("= web: unchanged"));
    let w = f.wait_for("replaced", 30, |w| w["healthy"] == 3);
    assert_eq!(w["secrets_missing"], serde_json::json!([]));
    check_instances(&w, &one);

    // Rotation: a new value is a new release; the audit event's HMAC changes.
    write_secret(&secret, &two, 0o600);
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("update (new release)") && out.contains("secrets ~DB_PASSWORD"),
        "{out}"
    );
    let w = f.wait_for("rotated", 60, |w| {
        w["healthy"] == 3 && w["instances"].as_array().unwrap().len() == 3
    });
    check_instances(&w, &two);
    let applies = f.events("fleet.apply");
    let hmacs: Vec<&Value> = applies
        .iter()
        .map(|e| &e["details"]["secrets"]["web"][0]["hmac"])
        .collect();
    assert_eq!(hmacs.len(), 3);
    assert_eq!(hmacs[0], hmacs[1]);
    assert_ne!(hmacs[1], hmacs[2]);
    assert_nowhere(&f, &run_dir, &[&one, &two], &skip, "after rotation");

    // A new image, then a rollback to the old one: the current secret goes with it.
    let file2 = f.deploy_file(&v2, table);
    let o = f.apply(&file2);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(f.e.kiln().args(["rollback", "web"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let w = f.wait_for("rolled back", 60, |w| {
        w["healthy"] == 3
            && w["instances"].as_array().unwrap().len() == 3
            && w["active"]["image"]
                .as_str()
                .unwrap()
                .ends_with(&v1[v1.len() - 64..])
    });
    check_instances(&w, &two);
    assert_nowhere(&f, &run_dir, &[&one, &two], &skip, "after rollback");

    // Destroy: the instances' secret files go with them.
    let o = run(f.e.kiln().args(["destroy", "web"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while f.status()["services"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
    {
        assert!(std::time::Instant::now() < end, "not destroyed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let left: Vec<_> = fs::read_dir(run_dir.0.join("secrets"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert_nowhere(&f, &run_dir, &[&one, &two], &skip, "after destroy");
    assert!(!f.serve_log().contains(&one) && !f.serve_log().contains(&two));
}

#[test]
#[ignore = "needs root and runc"]
fn an_env_secret_keeps_its_bundle_on_tmpfs() {
    require_root_and_runc();
    let f = Fleet::new();
    let run_dir = RunDir::of(&f);
    let v1 = secret_image(&f, "1.0.0", "<h1>v1</h1>\n");
    let secret = f.e.path().join("db-password");
    let value = unique_value("env");
    write_secret(&secret, &format!("{value}\n"), 0o600);
    let file = f.deploy_file(
        &v1,
        "\n[service.web.secrets]\nDB_PASSWORD = { file = \"db-password\", env = true }\n",
    );
    let o = f.apply(&file);
    assert!(o.status.success(), "{}\n{}", stderr(&o), f.serve_log());
    let w = f.web();
    for (id, pid) in instances(&w) {
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
        let want = format!("DB_PASSWORD={value}");
        assert!(
            environ.split(|&b| b == 0).any(|e| e == want.as_bytes()),
            "{id}: not in the environment"
        );
        assert_eq!(secret_in(pid).0, format!("{value}\n"));
        // The bundle (config.json holds the variable) is on the tmpfs, its FIFO too.
        let bundle = run_dir.0.join("bundles").join(&id);
        assert!(bundle.join("config.json").is_file(), "{id}");
        assert!(bundle.join("output.fifo").exists(), "{id}");
        assert!(!f.e.state().join("fleet/instances").join(&id).exists());
    }
    // Nothing in the state directory (runc's state.json included) holds it.
    let found = files_holding(f.e.path(), &value, &[&secret]);
    assert!(found.is_empty(), "the secret is in {found:?}");
    let text = logs(&f);
    assert!(!text.contains(&value), "{text}");
    // Drift checks read the tmpfs bundle's config.json: unchanged, then changed.
    let drift = || {
        // Exits 1 when it finds drift.
        let o = run(f.e.kiln().args(["--json", "drift", "check", "web"]));
        json(&o)
    };
    assert_eq!(drift()["drifted"], 0, "{:#}", drift());
    let (id0, _) = instances(&w)[0].clone();
    let config = run_dir.0.join("bundles").join(&id0).join("config.json");
    // Its record is keyed: a plain SHA-256 of a file kiln generates would let anyone with the
    // state directory test guesses of the secret.
    let plain = hex::encode(Sha256::digest(fs::read(&config).unwrap()));
    let redb = fs::read(f.e.state().join("fleet/fleet.redb")).unwrap();
    assert!(!redb.windows(plain.len()).any(|w| w == plain.as_bytes()));
    assert!(redb.windows(12).any(|w| w == b"hmac-sha256:"));
    let mut bytes = fs::read(&config).unwrap();
    bytes.push(b'\n');
    fs::write(&config, bytes).unwrap();
    let d = drift();
    assert_eq!(d["drifted"], 1, "{d:#}");
    assert!(
        d.to_string().contains("config.json has hmac-sha256:"),
        "{d:#}"
    );
    let ids: Vec<String> = instances(&w).into_iter().map(|(id, _)| id).collect();
    let o = run(f.e.kiln().args(["destroy", "web"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while f.status()["services"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
    {
        assert!(std::time::Instant::now() < end, "not destroyed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for id in ids {
        assert!(!run_dir.0.join("bundles").join(&id).exists());
        assert!(!run_dir.0.join("secrets").join(&id).exists());
    }
}

#[test]
#[ignore = "needs root and runc"]
fn bad_secret_files_are_refused_and_change_nothing() {
    require_root_and_runc();
    let f = Fleet::new();
    let _run_dir = RunDir::of(&f);
    // The secret is read before the image is looked at: any digest will do.
    let image = format!("hello@sha256:{}", "a".repeat(64));
    let secret = f.e.path().join("db-password");
    let file = f.deploy_file(
        &image,
        "\n[service.web.secrets]\nDB_PASSWORD = { file = \"db-password\" }\n",
    );
    let redb = f.e.state().join("fleet/fleet.redb");
    let before = fs::read(&redb).ok();
    let value = unique_value("bad");
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        ("missing", Box::new(|| {}), "does not exist"),
        (
            "directory",
            Box::new(|| fs::create_dir(&secret).unwrap()),
            "a directory, not a regular file",
        ),
        (
            "fifo",
            Box::new(|| {
                let o = Command::new("mkfifo").arg(&secret).output().unwrap();
                assert!(o.status.success());
            }),
            "a FIFO, not a regular file",
        ),
        (
            "symlink",
            Box::new(|| {
                let real = f.e.path().join("real-secret");
                write_secret(&real, &value, 0o600);
                std::os::unix::fs::symlink(&real, &secret).unwrap();
            }),
            "symbolic link",
        ),
        (
            "world-readable",
            Box::new(|| write_secret(&secret, &value, 0o644)),
            "is world-readable (mode 0644)",
        ),
        (
            "world-writable",
            Box::new(|| write_secret(&secret, &value, 0o602)),
            "is world-writable (mode 0602)",
        ),
    ];
    for (what, make, says) in cases {
        let _ = fs::remove_file(&secret);
        let _ = fs::remove_dir(&secret);
        make();
        let o = f.apply(&file);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("deploy.toml:12:"), "{what}: {err}");
        assert!(
            err.contains("service.web.secrets.DB_PASSWORD"),
            "{what}: {err}"
        );
        assert!(err.contains(says), "{what}: {err}");
        assert!(!err.contains(&value), "{what}: {err}");
    }
    assert!(f.status()["services"].as_array().unwrap().is_empty());
    // Each refusal is audited as a failure, with the error (never the value).
    let applies = f.events("fleet.apply");
    assert_eq!(applies.len(), 6, "{applies:#?}");
    assert!(
        applies.iter().all(|e| e["outcome"] == "failure"),
        "{applies:#?}"
    );
    assert!(!serde_json::to_string(&applies).unwrap().contains(&value));
    assert_eq!(fs::read(&redb).ok(), before, "fleet.redb changed");
}
