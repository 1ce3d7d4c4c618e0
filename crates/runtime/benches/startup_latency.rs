//! Instance start-up latency, informational: kiln's start → first healthy
//! GET, p50 over 20 runs, against bare `runc run --detach` of the same
//! bundle, printed as a ratio. A benchmark, not a test: it asserts nothing
//! about time and never runs under `cargo test`. Needs root, runc and
//! /bin/busybox:
//!
//!     cargo bench -p kiln-runtime --bench startup_latency

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/runc_env/mod.rs"]
mod runc_env;

use std::time::{Duration, Instant};

use kiln_runtime::{InstanceSpec, Runtime};
use runc_env::{Env, pipe, prerequisites, wait_healthy};

fn main() {
    prerequisites();
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
