//! Real runc: start a busybox httpd instance, health-check it through its
//! network namespace, and prove the isolation from inside a second instance.
//! Needs root, runc and /bin/busybox: every test is `#[ignore]`d, and run by
//! `scripts/test.sh` (`--include-ignored`), where a missing prerequisite
//! fails it. The start-up latency benchmark is `benches/startup_latency.rs`.

mod common;
mod runc_env;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_runtime::{
    BindMount, InstanceSpec, Runtime, Status, http_get_in_netns, set_child_subreaper, try_reap,
};
use runc_env::{Env, Guard, pipe, prerequisites, wait_healthy};

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
#[ignore = "needs root, runc and /bin/busybox"]
fn serves_health_checks_and_is_isolated() {
    prerequisites();
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
#[ignore = "needs root, runc and /bin/busybox"]
fn a_bad_command_is_a_clear_error() {
    prerequisites();
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

#[test]
#[ignore = "needs root, runc and /bin/busybox"]
fn cgroup_limits_apply() {
    prerequisites();
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
    spec.memory_swap_bytes = Some(64 << 20);
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

#[test]
#[ignore = "needs root, runc and /bin/busybox"]
fn prepared_listeners_exist_before_the_process_runs() {
    prerequisites();
    set_child_subreaper().unwrap();
    let env = Env::new();
    let id = "prepared-1";
    let mut spec = InstanceSpec::from_image(id, &env.rootfs).unwrap();
    // Its first instruction connects to a listener kiln made in its namespace.
    spec.args = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        "echo hi | /bin/busybox nc 127.0.1.1 7000 && echo connected".into(),
    ];
    let b = env.bundle(&spec);
    let (mut out, w) = pipe();
    let (_err_r, ew) = pipe();
    let _g = Guard(&env.runc, id.into());
    let mut listener = None;
    env.runc
        .start_prepared(id, &b, w, ew, &mut |pid| {
            listener = Some(kiln_runtime::listen_in_netns(
                pid,
                "127.0.1.1:7000".parse().unwrap(),
            )?);
            Ok(())
        })
        .unwrap();
    let (mut conn, _) = listener.unwrap().accept().unwrap();
    let mut got = [0u8; 3];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi\n");
    drop(conn);
    let mut s = String::new();
    out.read_to_string(&mut s).unwrap();
    assert_eq!(s.trim(), "connected");
    // A failing preparation deletes the container.
    let (_o, w) = pipe();
    let (_e, ew) = pipe();
    let err = env
        .runc
        .start_prepared("prepared-2", &b, w, ew, &mut |_| {
            Err(std::io::Error::other("no"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("no"), "{err}");
    assert_eq!(env.runc.state("prepared-2").unwrap(), None);
}
