//! Real runc: start a busybox httpd instance, health-check it through its
//! network namespace, and prove the isolation from inside a second instance.
//! Needs root and runc: skipped with a note otherwise, unless
//! KILN_REQUIRE_INTEROP=1 (then a missing prerequisite fails the test).

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_oci::Store;
use kiln_runtime::{
    BindMount, Bundle, InstanceSpec, Rootfs, Runc, Runtime, Status, http_get_in_netns,
    set_child_subreaper, try_reap, unpack,
};

fn prerequisites() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root");
    }
    if !Runc::new("/nonexistent").available() {
        missing.push("runc");
    }
    if !Path::new("/bin/busybox").exists() {
        missing.push("/bin/busybox");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("interop test needs {}", missing.join(", "));
    if std::env::var("KILN_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{msg} (KILN_REQUIRE_INTEROP=1)");
    }
    eprintln!("SKIPPED: {msg}; set KILN_REQUIRE_INTEROP=1 to make this a failure");
    false
}

struct Env {
    tmp: tempfile::TempDir,
    runc: Runc,
    rootfs: Rootfs,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(tmp.path().join("store")).unwrap();
        let d = common::busybox_image(&store);
        let rootfs = unpack(&store, &d, &tmp.path().join("images")).unwrap();
        let runc = Runc::new(tmp.path().join("runc"));
        Env { tmp, runc, rootfs }
    }

    fn bundle(&self, spec: &InstanceSpec) -> PathBuf {
        let dir = self.tmp.path().join("bundles").join(&spec.id);
        Bundle::write(&dir, spec, &self.rootfs.path).unwrap();
        dir
    }
}

/// Force-deletes the container when dropped (also on test failure).
struct Guard<'a>(&'a Runc, String);
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.delete(&self.1, true);
    }
}

fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded, so both fds are open and owned by us alone.
    unsafe {
        use std::os::fd::FromRawFd;
        (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}

fn wait_healthy(pid: u32, deadline: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if let Ok(200) = http_get_in_netns(pid, 8080, "/", Duration::from_millis(300)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < deadline,
            "instance not healthy after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Run a short script in a fresh instance of the image; its stdout.
/// A read-only bind mount of a host tools dir is at /run/tools.
fn run_script(env: &Env, id: &str, script: &str) -> String {
    let mut spec = InstanceSpec::from_image(id, &env.rootfs).unwrap();
    spec.args = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ];
    let tools = env.tmp.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("hello"), "tool").unwrap();
    spec.bind_mounts.push(BindMount {
        source: tools,
        destination: "/run/tools".into(),
    });
    let b = env.bundle(&spec);
    let (mut out, w) = pipe();
    let (_err_r, ew) = pipe();
    let _g = Guard(&env.runc, id.into());
    env.runc.start(id, &b, w, ew).unwrap();
    let mut s = String::new();
    out.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn serves_health_checks_and_is_isolated() {
    if !prerequisites() {
        return;
    }
    // Become the parent of the detached containers, as the daemon does.
    set_child_subreaper().unwrap();
    let env = Env::new();
    assert_eq!(env.runc.list().unwrap(), vec![]);

    // The serving instance.
    let spec = InstanceSpec::from_image("web-1", &env.rootfs).unwrap();
    assert_eq!((spec.user.uid, spec.user.gid), (65532, 65532));
    let b = env.bundle(&spec);
    let (_out, ow) = pipe();
    let (_err, ew) = pipe();
    let _g = Guard(&env.runc, "web-1".into());
    let pid = env.runc.start("web-1", &b, ow, ew).unwrap();
    let took = wait_healthy(pid, Duration::from_secs(5));
    eprintln!("first healthy GET after {took:?}");
    assert_eq!(
        http_get_in_netns(pid, 8080, "/nope", Duration::from_secs(1)).unwrap(),
        404
    );
    assert_eq!(
        http_get_in_netns(pid, 8080, "/health", Duration::from_secs(1)).unwrap(),
        200
    );
    assert_eq!(
        http_get_in_netns(pid, 8080, "/old.html", Duration::from_secs(1)).unwrap(),
        404
    );
    let st = env.runc.state("web-1").unwrap().unwrap();
    assert_eq!((st.pid, st.status.clone()), (pid, Status::Running));
    assert_eq!(env.runc.list().unwrap().len(), 1);

    // From inside a second instance.
    let out = run_script(
        &env,
        "probe-1",
        r#"
        if touch /pwned 2>/dev/null; then echo ROOT=writable; else echo ROOT=readonly; fi
        if echo x > /tmp/x && [ "$(cat /tmp/x)" = x ]; then echo TMP=writable; else echo TMP=broken; fi
        cp /bin/busybox /tmp/bb
        if /tmp/bb true 2>/dev/null; then echo TMPEXEC=allowed; else echo TMPEXEC=denied; fi
        if [ "$(cat /run/tools/hello)" = tool ] && ! touch /run/tools/x 2>/dev/null; then echo TOOLS=ro; else echo TOOLS=bad; fi
        echo "IFACES=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ',')"
        if /bin/busybox wget -q -T 2 -O /dev/null http://1.1.1.1/ 2>/dev/null; then echo EGRESS=open; else echo EGRESS=blocked; fi
        grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='
        echo "ID=$(id -u):$(id -g)"
        echo "HOST=$(hostname)"
        # unshare(CLONE_NEWUSER) needs no capability: only seccomp stops it.
        if /bin/busybox unshare -U true 2>/dev/null; then echo UNSHARE=allowed; else echo UNSHARE=denied; fi
        "#,
    );
    eprintln!("{out}");
    for want in [
        "ROOT=readonly",
        "TMP=writable",
        "TMPEXEC=denied",
        "TOOLS=ro",
        "IFACES=lo,",
        "EGRESS=blocked",
        "CapInh=0000000000000000",
        "CapPrm=0000000000000000",
        "CapEff=0000000000000000",
        "CapBnd=0000000000000000",
        "CapAmb=0000000000000000",
        "NoNewPrivs=1",
        "Seccomp=2",
        "ID=65532:65532",
        "HOST=probe-1",
        "UNSHARE=denied",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == want),
            "missing {want:?} in:\n{out}"
        );
    }
    // Nothing was written to the shared rootfs.
    assert!(!env.rootfs.path.join("pwned").exists());
    assert!(!env.rootfs.path.join("tmp/x").exists());

    // kill -9 of the container's pid is seen by `state`.
    // SAFETY: plain syscall on a pid we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let t = Instant::now();
    loop {
        let st = env.runc.state("web-1").unwrap().unwrap();
        if st.status == Status::Stopped {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still {:?}",
            st.status
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The subreaper collects the exit status: killed by signal 9.
    let t = Instant::now();
    let status = loop {
        if let Some(s) = try_reap(pid).unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "{status:#x}"
    );
    env.runc.delete("web-1", false).unwrap();
    assert_eq!(env.runc.state("web-1").unwrap(), None);
    assert!(
        !env.runc.root.join("web-1").exists(),
        "runc state cleaned up"
    );
    assert_eq!(env.runc.list().unwrap(), vec![]);
    // Deleting again is fine; killing a deleted instance is a clear error.
    env.runc.delete("web-1", true).unwrap();
    assert!(matches!(
        env.runc.kill("web-1", 15),
        Err(kiln_runtime::RuntimeError::NoSuchInstance(_))
    ));
}

#[test]
fn a_bad_command_is_a_clear_error() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let mut spec = InstanceSpec::from_image("bad-1", &env.rootfs).unwrap();
    spec.args = vec!["/no/such/binary".into()];
    let b = env.bundle(&spec);
    let (_o, ow) = pipe();
    let (_e, ew) = pipe();
    let _g = Guard(&env.runc, "bad-1".into());
    let e = env.runc.start("bad-1", &b, ow, ew).unwrap_err();
    eprintln!("{e}");
    assert!(
        e.to_string().contains("no such file") || e.to_string().contains("not found"),
        "{e}"
    );
}

/// Informational: start → first healthy GET, p50 over 20 runs, against bare
/// `runc run --detach` of the same bundle. `cargo test -p kiln-runtime
/// --release --test runc -- --ignored --nocapture startup_latency`
#[test]
#[ignore]
fn startup_latency() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let spec = InstanceSpec::from_image("lat", &env.rootfs).unwrap();
    let b = env.bundle(&spec);
    let p50 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut kiln, mut kiln_cmd, mut bare_cmd, mut bare_health) = (vec![], vec![], vec![], vec![]);
    for i in 0..20 {
        let id = format!("lat-{i}");
        let (_o, ow) = pipe();
        let (_e, ew) = pipe();
        let t = Instant::now();
        let pid = env.runc.start(&id, &b, ow, ew).unwrap();
        kiln_cmd.push(t.elapsed());
        wait_healthy(pid, Duration::from_secs(5));
        kiln.push(t.elapsed());
        env.runc.delete(&id, true).unwrap();

        let id = format!("bare-{i}");
        let pidf = env.tmp.path().join("bare.pid");
        let t = Instant::now();
        let st = std::process::Command::new("runc")
            .arg("--root")
            .arg(&env.runc.root)
            .args(["run", "--detach", "--bundle"])
            .arg(&b)
            .arg("--pid-file")
            .arg(&pidf)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        bare_cmd.push(t.elapsed());
        let pid: u32 = std::fs::read_to_string(&pidf)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_healthy(pid, Duration::from_secs(5));
        bare_health.push(t.elapsed());
        env.runc.delete(&id, true).unwrap();
    }
    let (k, kc, bc, bh) = (p50(kiln), p50(kiln_cmd), p50(bare_cmd), p50(bare_health));
    eprintln!(
        "p50 over 20: kiln start {kc:?}, start→healthy {k:?}; bare `runc run -d` {bc:?}, →healthy {bh:?}; \
         ratio start→healthy / bare runc run: {:.2}x, vs bare →healthy: {:.2}x",
        k.as_secs_f64() / bc.as_secs_f64(),
        k.as_secs_f64() / bh.as_secs_f64()
    );
}

#[test]
fn cgroup_limits_apply() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let mut spec = InstanceSpec::from_image("limits-1", &env.rootfs).unwrap();
    spec.args = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null"
            .into(),
    ];
    spec.cgroups_path = Some(format!("/kiln-test/limits-{}", std::process::id()));
    spec.pids_limit = Some(32);
    spec.memory_limit_bytes = Some(64 << 20);
    let b = env.bundle(&spec);
    let (mut out, w) = pipe();
    let (mut err, ew) = pipe();
    let _g = Guard(&env.runc, spec.id.clone());
    env.runc.start(&spec.id, &b, w, ew).unwrap();
    let mut s = String::new();
    out.read_to_string(&mut s).unwrap();
    let mut e = String::new();
    err.read_to_string(&mut e).unwrap();
    let lines: Vec<&str> = s.split_whitespace().collect();
    assert_eq!(
        lines,
        ["32", (64u64 << 20).to_string().as_str()],
        "stdout {s:?} stderr {e:?}"
    );
    drop(_g);
    // runc removed the instance's cgroup; remove the empty parents it made.
    for c in [
        "pids", "memory", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer", "systemd",
        "unified", "",
    ] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join("kiln-test"));
    }
}
