//! The reconciler's decisions, without root or runc: the pure [`decide`]
//! driven step by step with a hand-set clock, and the shell driven with an
//! in-memory host, a tempdir state directory and fake image gates.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::clock::ManualClock;
use super::host::{HealthCell, Host, HostError, Launched, Watch};
use super::reconcile::{Action, Input, Seen, Slot, Timing, Verdict, decide};
use super::*;
use crate::deploy::{Deployment, ServiceSpec};
use crate::proxy::Dial;
use crate::state::{Instance, Phase, Release, ServiceState};

const T0: u64 = 1_700_000_000_000;
const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A parsed `[service.web]` with `extra` lines; its proxy listens on an
/// ephemeral port.
fn spec(dir: &Path, image: &str, extra: &str) -> ServiceSpec {
    std::fs::write(dir.join("trust.toml"), "").unwrap();
    let text = format!(
        "[service.web]\nimage = \"{image}\"\nlisten = \"127.0.0.1:18080\"\nport = 8080\npolicy = \"trust.toml\"\n{extra}\n"
    );
    let path = dir.join("deploy.toml");
    let mut d = Deployment::parse(&path, &text).unwrap();
    let mut s = d.services.remove("web").unwrap();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s
}

fn release(id: &str, spec: &ServiceSpec, baseline: Option<Value>) -> Release {
    Release {
        id: id.into(),
        image: spec.image.clone(),
        spec: spec.clone(),
        created: "2023-11-14T22:13:20.000Z".into(),
        baseline,
        reason: None,
    }
}

fn instance(id: &str, release: &str, pid: u32, started: u64, phase: Phase) -> Instance {
    Instance {
        id: id.into(),
        release: release.into(),
        pid,
        started,
        phase,
        in_rotation: phase == Phase::Healthy,
        replaces: None,
        retiring_since: 0,
        retire_reason: None,
        start_to_healthy_ms: None,
        config_sha256: None,
        rootfs: None,
        drifted: None,
    }
}

/// A service serving release `r0001` of `old` with `n` healthy instances.
fn serving(old: &ServiceSpec, n: u32, baseline: Option<Value>) -> ServiceState {
    let mut svc = ServiceState {
        releases: vec![release("r0001", old, baseline)],
        active: Some("r0001".into()),
        ..ServiceState::default()
    };
    for i in 0..n {
        let id = format!("web-{:04}", i + 1);
        svc.instances.insert(
            id.clone(),
            instance(&id, "r0001", 100 + i, T0 - 60_000, Phase::Healthy),
        );
    }
    svc
}

/// The pure reconciler, stepped by hand: started instances appear (as the
/// shell would add them), each watched and not yet healthy.
struct Sim {
    svc: ServiceState,
    seq: u64,
    desired: ServiceSpec,
    now: u64,
    seen: HashMap<String, Seen>,
    verdict: Option<Verdict>,
    timing: Timing,
    /// Every action of every step, in order.
    log: Vec<Action>,
}

impl Sim {
    fn new(svc: ServiceState, desired: ServiceSpec) -> Sim {
        let mut sim = Sim {
            svc,
            seq: 10,
            desired,
            now: T0,
            seen: HashMap::new(),
            verdict: None,
            timing: Timing::default(),
            log: Vec::new(),
        };
        for id in sim.svc.instances.keys() {
            sim.seen.insert(id.clone(), healthy());
        }
        sim
    }

    fn step(&mut self) -> Vec<Action> {
        let actions = decide(
            &mut self.svc,
            &mut self.seq,
            &Input {
                name: "web",
                desired: Some(&self.desired),
                seen: &self.seen,
                verdict: self.verdict.as_ref(),
                proxy_error: None,
                now: self.now,
                timing: &self.timing,
            },
        );
        for a in &actions {
            match a {
                Action::Start {
                    release, replaces, ..
                } => {
                    self.seq += 1;
                    let id = format!("web-{:04}", self.seq);
                    let mut i = instance(&id, release, self.seq as u32, self.now, Phase::Starting);
                    i.replaces = replaces.clone();
                    self.svc.instances.insert(id.clone(), i);
                    self.seen.insert(
                        id,
                        Seen {
                            watched: true,
                            ..Seen::default()
                        },
                    );
                }
                Action::Remove { id, .. } => {
                    self.seen.remove(id);
                }
                Action::VerdictUsed => self.verdict = None,
                _ => {}
            }
        }
        self.log.extend(actions.iter().cloned());
        actions
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    fn ids_of(&self, release: &str) -> Vec<String> {
        self.svc
            .instances
            .values()
            .filter(|i| i.release == release)
            .map(|i| i.id.clone())
            .collect()
    }
}

fn healthy() -> Seen {
    Seen {
        watched: true,
        ok_streak: 1,
        ever_ok: true,
        first_ok_ms: Some(T0),
        ..Seen::default()
    }
}

fn events(actions: &[Action]) -> Vec<&kiln_audit::Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(e) => Some(&**e),
            _ => None,
        })
        .collect()
}

fn event<'a>(actions: &'a [Action], name: &str) -> Option<&'a kiln_audit::Event> {
    events(actions).into_iter().find(|e| e.action == name)
}

fn starts(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count()
}

fn rotation(actions: &[Action]) -> Option<&Vec<Slot>> {
    actions.iter().rev().find_map(|a| match a {
        Action::Rotate(s) => Some(s),
        _ => None,
    })
}

#[test]
fn five_unplanned_replacements_in_30_s_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), OLD, "");
    let mut sim = Sim::new(serving(&s, 1, None), s);
    for n in 1..=5u64 {
        let id = sim.ids_of("r0001").pop().unwrap();
        sim.seen.get_mut(&id).unwrap().exited = Some("exited with status 1".into());
        let a = sim.step();
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Remove { id: x, .. } if *x == id))
        );
        let ev = event(&a, "instance.replace").expect("replacement recorded");
        assert_eq!(ev.reason.as_deref(), Some("instance exited with status 1"));
        if n < 5 {
            assert_eq!(starts(&a), 1, "replacement {n} starts at once");
            assert_eq!(sim.svc.backoff_until, 0);
            assert!(
                sim.svc.message.starts_with("replaced "),
                "{}",
                sim.svc.message
            );
        } else {
            assert_eq!(starts(&a), 0, "the fifth replacement waits");
            assert_eq!(sim.svc.backoff_until, sim.now + 250);
            assert!(
                sim.svc
                    .message
                    .starts_with("crash loop: 5 replacements in 30 s, next start in "),
                "{}",
                sim.svc.message
            );
        }
        sim.advance(1_000);
    }
    // The backoff passed: the next start happens.
    assert_eq!(starts(&sim.step()), 1);
    // Deliberate kills (chaos) are not crashes.
    let mut sim2 = Sim::new(serving(&sim.desired.clone(), 1, None), sim.desired.clone());
    for _ in 0..6 {
        let id = sim2.ids_of("r0001").pop().unwrap();
        let seen = sim2.seen.get_mut(&id).unwrap();
        seen.exited = Some("was killed by SIGKILL".into());
        seen.deliberate = true;
        sim2.step();
        sim2.advance(1_000);
    }
    assert_eq!(sim2.svc.backoff_until, 0);
    assert!(sim2.svc.restarts.is_empty());
}

#[test]
fn a_failing_canary_aborts_and_returns_all_weight_to_the_stable_set() {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(dir.path(), OLD, "replicas = 2");
    let new = spec(
        dir.path(),
        NEW,
        "replicas = 2\nstrategy = \"canary\"\ncanary = [10, 50, 100]",
    );
    let mut sim = Sim::new(serving(&old, 2, None), new);
    // No verdict yet: ask for one, change nothing else.
    let a = sim.step();
    assert!(matches!(&a[0], Action::Verify { .. }));
    assert!(sim.svc.rollout.is_none());
    sim.verdict = Some(Verdict::Pass { baseline: None });
    let a = sim.step();
    let r = sim.svc.rollout.clone().expect("rollout");
    assert_eq!(r.canary, Some(vec![10, 50, 100]));
    assert_eq!(starts(&a), 2);
    let canaries = sim.ids_of(&r.release);
    for id in &canaries {
        *sim.seen.get_mut(id).unwrap() = healthy();
    }
    // Healthy: the first step sends 10 % of new connections to the canary.
    let a = sim.step();
    let rot = rotation(&a).expect("rotation");
    let w = crate::proxy::weights_for_step(10, 2, 2);
    assert_eq!(rot.len(), 4);
    for slot in rot {
        let want = if slot.release == r.release {
            w.canary
        } else {
            w.stable
        };
        assert_eq!(slot.weight, want, "{slot:?}");
    }
    assert_eq!(
        event(&a, "release.step").unwrap().details["percent"],
        json!(10)
    );
    // Canary instances crash: three failures abort the rollout.
    let mut last = Vec::new();
    for _ in 0..3 {
        let id = sim.ids_of(&r.release).pop().unwrap();
        sim.seen.get_mut(&id).unwrap().exited = Some("was killed by SIGSEGV".into());
        last = sim.step();
        sim.advance(100);
    }
    // Every rotation from the abort on has the stable set only, all weight
    // (the proxy never sees an aborted instance again).
    assert!(event(&last, "release.abort").is_some());
    let rotations: Vec<&Vec<Slot>> = last
        .iter()
        .filter_map(|a| match a {
            Action::Rotate(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!rotations.is_empty());
    for rot in rotations {
        assert_eq!(rot.len(), 2, "{rot:?}");
        assert!(rot.iter().all(|s| s.release == "r0001" && s.weight == 1));
    }
    let a = sim.step();
    let abort = event(&sim.log, "release.abort").expect("aborted");
    assert_eq!(abort.reason.as_deref(), Some("3 instance failures"));
    assert!(sim.svc.rollout.is_none());
    assert_eq!(sim.svc.active.as_deref(), Some("r0001"));
    assert!(
        sim.ids_of(&r.release).is_empty(),
        "canary instances removed"
    );
    assert!(sim.svc.failed.is_some(), "not retried until a new apply");
    assert!(
        sim.svc
            .message
            .contains("aborted: 3 instance failures; still serving r0001"),
        "{}",
        sim.svc.message
    );
    let rot = rotation(&a).expect("rotation");
    assert_eq!(rot.len(), 2);
    assert!(rot.iter().all(|s| s.release == "r0001" && s.weight == 1));
    assert!(event(&sim.log, "release.switch").is_none());
}

#[test]
fn a_blue_green_set_that_never_becomes_healthy_never_switches_and_aborts_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(dir.path(), OLD, "replicas = 2");
    let new = spec(dir.path(), NEW, "replicas = 2");
    let mut sim = Sim::new(serving(&old, 2, None), new);
    // Only the rollout timeout can end it here.
    sim.timing.start_timeout = Duration::from_secs(600);
    sim.verdict = Some(Verdict::Pass { baseline: None });
    sim.step();
    let r = sim.svc.rollout.clone().expect("rollout");
    assert_eq!(r.canary, None);
    let aborted_at = loop {
        assert!(sim.now - T0 <= 130_000, "no abort after the timeout");
        for id in sim.ids_of(&r.release) {
            let s = sim.seen.get_mut(&id).unwrap();
            s.fail_streak += 1;
            s.last_error = "connect :8080: refused".into();
        }
        let a = sim.step();
        // Nothing switches: only the old set serves, with all the weight.
        if let Some(rot) = rotation(&a) {
            assert_eq!(rot.len(), 2);
            assert!(rot.iter().all(|s| s.release == "r0001" && s.weight == 1));
        }
        assert_eq!(sim.svc.active.as_deref(), Some("r0001"));
        if event(&a, "release.abort").is_some() {
            break sim.now;
        }
        sim.advance(10_000);
    };
    assert!(aborted_at - T0 > 120_000, "aborted only after 120 s");
    let abort = event(&sim.log, "release.abort").unwrap();
    assert_eq!(abort.reason.as_deref(), Some("not healthy within 120 s"));
    assert!(event(&sim.log, "release.switch").is_none());
    assert!(sim.ids_of(&r.release).is_empty());
    assert_eq!(sim.ids_of("r0001").len(), 2);
}

#[test]
fn max_lifetime_rotation_starts_the_new_instance_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), OLD, "max_lifetime = \"2m\"");
    let mut sim = Sim::new(serving(&s, 1, None), s);
    let old = "web-0001".to_string();
    let a = sim.step();
    assert_eq!(starts(&a), 0, "not yet");
    sim.advance(60_001);
    let a = sim.step();
    assert!(matches!(
        a.iter().find(|a| matches!(a, Action::Start { .. })),
        Some(Action::Start { replaces: Some(x), .. }) if *x == old
    ));
    let new = sim
        .svc
        .instances
        .values()
        .find(|i| i.replaces.is_some())
        .unwrap()
        .id
        .clone();
    // Until the successor is healthy the old one keeps serving alone.
    for _ in 0..3 {
        sim.advance(1_000);
        let a = sim.step();
        assert_eq!(starts(&a), 0, "one successor only");
        let rot = rotation(&a).unwrap();
        assert_eq!(rot.iter().map(|s| &s.id).collect::<Vec<_>>(), [&old]);
        assert_eq!(sim.svc.instances[&old].phase, Phase::Healthy);
    }
    *sim.seen.get_mut(&new).unwrap() = healthy();
    let a = sim.step();
    let rot = rotation(&a).unwrap();
    assert_eq!(rot.iter().map(|s| &s.id).collect::<Vec<_>>(), [&new]);
    assert_eq!(sim.svc.instances[&old].phase, Phase::Retiring);
    assert_eq!(sim.svc.instances[&new].replaces, None);
    let ev = event(&a, "instance.replace").unwrap();
    assert_eq!(ev.reason.as_deref(), Some("maximum lifetime reached"));
    // Destroyed after the grace period (nothing in flight).
    sim.advance(600);
    let a = sim.step();
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Remove { id, .. } if *id == old))
    );
    assert!(event(&a, "instance.destroy").is_some());
}

#[test]
fn a_privacy_relevant_baseline_change_turns_a_canary_into_blue_green() {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(dir.path(), OLD, "");
    let new = spec(dir.path(), NEW, "strategy = \"canary\"\ncanary = [10, 100]");
    let before = json!({"pii": false, "log_level": "info"});
    // The same baseline: a canary.
    let mut sim = Sim::new(serving(&old, 1, Some(before.clone())), new.clone());
    sim.verdict = Some(Verdict::Pass {
        baseline: Some(before.clone()),
    });
    sim.step();
    assert_eq!(
        sim.svc.rollout.as_ref().unwrap().canary,
        Some(vec![10, 100])
    );
    // A privacy-relevant change: blue-green, all-or-nothing, and said so.
    let mut sim = Sim::new(serving(&old, 1, Some(before)), new);
    sim.verdict = Some(Verdict::Pass {
        baseline: Some(json!({"pii": true, "log_level": "info"})),
    });
    let a = sim.step();
    let r = sim.svc.rollout.as_ref().unwrap();
    assert_eq!(r.canary, None);
    let note = r.note.clone().unwrap();
    assert!(note.contains("pii: false → true"), "{note}");
    assert!(
        note.contains("canary refused, rolling out blue-green"),
        "{note}"
    );
    assert_eq!(sim.svc.message, note);
    let ev = event(&a, "release.start").unwrap();
    assert_eq!(ev.details["strategy"], json!("blue-green"));
    assert_eq!(ev.details["guardrail"], json!(note));
}

// ---- the shell, with an in-memory host ----------------------------------

#[derive(Default)]
struct FakeHost {
    st: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    next_pid: u32,
    /// id → (pid, exit, health).
    running: HashMap<String, (u32, Option<String>, Arc<HealthCell>)>,
    launched: Vec<String>,
    destroyed: Vec<String>,
    deleted: Vec<String>,
    debug_ended: Vec<String>,
}

impl FakeHost {
    fn with_running(ids: &[(&str, u32)]) -> FakeHost {
        let h = FakeHost::default();
        for (id, pid) in ids {
            h.st.lock().unwrap().running.insert(
                id.to_string(),
                (*pid, None, Arc::new(HealthCell::default())),
            );
        }
        h
    }

    fn set_healthy(&self, id: &str) {
        let st = self.st.lock().unwrap();
        let h = &st.running[id].2;
        h.ok_streak.store(1, Ordering::Relaxed);
        h.ever_ok.store(true, Ordering::Relaxed);
    }
}

struct NoDial;

impl Dial for NoDial {
    fn dial(&self) -> std::io::Result<std::net::TcpStream> {
        Err(std::io::Error::other("fake instance"))
    }
}

impl Host for FakeHost {
    fn list(&self) -> Vec<(String, u32)> {
        let st = self.st.lock().unwrap();
        st.running.iter().map(|(id, r)| (id.clone(), r.0)).collect()
    }

    fn alive(&self, pid: u32) -> bool {
        let st = self.st.lock().unwrap();
        st.running.values().any(|r| r.0 == pid && r.1.is_none())
    }

    fn exited(&self, pid: u32, _child: bool) -> Option<String> {
        let st = self.st.lock().unwrap();
        match st.running.values().find(|r| r.0 == pid) {
            Some(r) => r.1.clone(),
            None => Some("exited".into()),
        }
    }

    fn launch(&self, _service: &str, id: &str, _rel: &Release) -> Result<Launched, HostError> {
        let mut st = self.st.lock().unwrap();
        st.next_pid += 1;
        let pid = 1000 + st.next_pid;
        st.running
            .insert(id.into(), (pid, None, Arc::new(HealthCell::default())));
        st.launched.push(id.into());
        Ok(Launched {
            pid,
            config_sha256: None,
            rootfs: None,
            drift: None,
        })
    }

    fn watch(&self, _service: &str, inst: &Instance, _spec: &ServiceSpec, _child: bool) -> Watch {
        let st = self.st.lock().unwrap();
        let mut w = Watch::idle();
        if let Some(r) = st.running.get(&inst.id) {
            w.health = r.2.clone();
        }
        w
    }

    fn dial(&self, _pid: u32, _port: u16, _watch: Option<&Watch>) -> Arc<dyn Dial> {
        Arc::new(NoDial)
    }

    fn kill(&self, id: &str) {
        if let Some(r) = self.st.lock().unwrap().running.get_mut(id) {
            r.1 = Some("was killed by SIGKILL".into());
        }
    }

    fn destroy(&self, id: &str, _pid: u32) {
        let mut st = self.st.lock().unwrap();
        st.running.remove(id);
        st.destroyed.push(id.into());
    }

    fn delete(&self, id: &str) {
        let mut st = self.st.lock().unwrap();
        st.running.remove(id);
        st.deleted.push(id.into());
    }

    fn prepare_debug(
        &self,
        id: &str,
        _rel: &Release,
        _tools: &Path,
        _terminal: bool,
    ) -> Result<Value, HostError> {
        Ok(json!({"id": id}))
    }

    fn end_debug(&self, id: &str) {
        self.st.lock().unwrap().debug_ended.push(id.into());
    }
}

/// A gate that passes every image, or refuses every one.
struct Gate {
    refuse: Option<String>,
}

impl ImageGate for Gate {
    fn check(&self, _image: &ImageRef, _policy: &Path) -> Result<String, GateError> {
        match &self.refuse {
            Some(why) => Err(GateError::Refused(why.clone())),
            None => Ok("ok".into()),
        }
    }
}

/// A gate that holds every check until released.
#[derive(Default)]
struct BlockingGate {
    /// (checks entered, checks released).
    state: Mutex<(u32, u32)>,
    cv: Condvar,
}

impl BlockingGate {
    /// Wait until `n` checks are in progress or done.
    fn wait_entered(&self, n: u32) {
        let mut g = self.state.lock().unwrap();
        while g.0 < n {
            g = self.cv.wait(g).unwrap();
        }
    }

    /// Let one more check finish.
    fn release_one(&self) {
        self.state.lock().unwrap().1 += 1;
        self.cv.notify_all();
    }
}

impl ImageGate for BlockingGate {
    fn check(&self, _image: &ImageRef, _policy: &Path) -> Result<String, GateError> {
        let mut g = self.state.lock().unwrap();
        g.0 += 1;
        let me = g.0;
        self.cv.notify_all();
        while g.1 < me {
            g = self.cv.wait(g).unwrap();
        }
        Ok("ok".into())
    }
}

/// `status`, from another thread; `None` if it does not answer.
fn status_from_elsewhere(sh: &Arc<Shared>) -> Option<Value> {
    let (tx, rx) = mpsc::channel();
    let sh = sh.clone();
    std::thread::spawn(move || {
        let _ = tx.send(sh.status());
    });
    rx.recv_timeout(Duration::from_secs(30)).ok()
}

struct Rig {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    host: Arc<FakeHost>,
    sh: Arc<Shared>,
}

impl Rig {
    /// A daemon on a tempdir state directory whose database holds `st`.
    fn new(
        st: Option<FleetState>,
        host: FakeHost,
        gate: Arc<dyn ImageGate>,
        debug_tools: bool,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        if let Some(st) = st {
            std::fs::create_dir_all(dir.path().join("fleet")).unwrap();
            let db = Db::open(&dir.path().join("fleet/fleet.redb")).unwrap();
            db.save(&st).unwrap();
        }
        let clock = Arc::new(ManualClock::new(T0));
        let host = Arc::new(host);
        let h: Arc<dyn Host> = host.clone();
        let sh = Shared::open(
            Options {
                state_dir: dir.path().to_path_buf(),
                debug_tools: debug_tools.then(|| dir.path().to_path_buf()),
            },
            gate,
            clock.clone(),
            Timing::default(),
            move |_, _| h,
        )
        .unwrap();
        Rig {
            dir,
            clock,
            host,
            sh,
        }
    }

    fn audit(&self) -> Vec<kiln_audit::Event> {
        let log = kiln_audit::AuditLog::open(self.dir.path()).unwrap();
        let mut out = Vec::new();
        log.events(0, |e| {
            out.push(e.event);
            true
        })
        .unwrap();
        out
    }

    fn web(&self) -> ServiceState {
        lock(&self.sh.world).st.services["web"].clone()
    }
}

fn desired(s: &ServiceSpec) -> Deployment {
    let mut d = Deployment::default();
    d.services.insert("web".into(), s.clone());
    d
}

#[test]
fn running_instances_are_adopted_after_a_restart_and_the_rest_forgotten() {
    let specdir = tempfile::tempdir().unwrap();
    let s = spec(specdir.path(), OLD, "replicas = 2");
    let mut svc = serving(&s, 2, None);
    svc.instances.get_mut("web-0002").unwrap().pid = 555;
    let st = FleetState {
        desired: desired(&s),
        services: [("web".to_string(), svc)].into(),
        seq: 10,
    };
    // web-0001 still runs; web-0002 died with the host's old daemon; an
    // orphan nobody knows is in the runtime's root.
    let host = FakeHost::with_running(&[("web-0001", 100), ("orphan", 300)]);
    let rig = Rig::new(Some(st), host, Arc::new(Gate { refuse: None }), false);
    {
        let w = lock(&rig.sh.world);
        let live = w.live.get("web-0001").expect("adopted");
        assert!(!live.child);
        assert!(live.watch.health.ever_ok.load(Ordering::Relaxed));
        assert!(!w.live.contains_key("web-0002"));
        let web = &w.st.services["web"];
        assert!(web.instances.contains_key("web-0001"));
        assert!(!web.instances.contains_key("web-0002"));
    }
    let host = rig.host.st.lock().unwrap().deleted.clone();
    assert!(host.contains(&"web-0002".to_string()));
    assert!(host.contains(&"orphan".to_string()));
    assert!(!host.contains(&"web-0001".to_string()));
    let ev = rig
        .audit()
        .into_iter()
        .find(|e| e.action == "instance.replace")
        .expect("recorded");
    assert_eq!(
        ev.reason.as_deref(),
        Some("not running when kiln serve restarted")
    );
    // The reconciler keeps the adopted one serving and replaces the lost one.
    rig.sh.tick();
    let web = rig.web();
    assert!(web.instances["web-0001"].in_rotation);
    assert_eq!(web.instances.len(), 2);
    assert_eq!(rig.host.st.lock().unwrap().launched.len(), 1);
    assert_eq!(web.active.as_deref(), Some("r0001"));
}

#[test]
fn debug_sessions_end_when_their_ttl_expires() {
    let specdir = tempfile::tempdir().unwrap();
    let s = spec(specdir.path(), OLD, "");
    let st = FleetState {
        desired: desired(&s),
        services: [("web".to_string(), serving(&s, 1, None))].into(),
        seq: 10,
    };
    let host = FakeHost::with_running(&[("web-0001", 100)]);
    let rig = Rig::new(Some(st), host, Arc::new(Gate { refuse: None }), true);
    let actor = kiln_audit::Actor::current();
    let resp = rig.sh.debug_start("web", 5_000, false, &actor);
    assert!(resp.ok, "{resp:?}");
    let id = resp.result["id"].as_str().unwrap().to_string();
    rig.sh.tick();
    rig.clock.advance(Duration::from_millis(4_999));
    rig.sh.tick();
    assert!(lock(&rig.sh.world).debug.contains_key(&id));
    assert!(rig.host.st.lock().unwrap().debug_ended.is_empty());
    rig.clock.advance(Duration::from_millis(1));
    rig.sh.tick();
    assert!(!lock(&rig.sh.world).debug.contains_key(&id));
    assert_eq!(rig.host.st.lock().unwrap().debug_ended, vec![id]);
    let stop = rig
        .audit()
        .into_iter()
        .find(|e| e.action == "debug.stop")
        .expect("recorded");
    assert_eq!(stop.reason.as_deref(), Some("TTL expired"));
}

#[test]
fn status_answers_while_an_image_is_being_verified() {
    let specdir = tempfile::tempdir().unwrap();
    let s = spec(specdir.path(), OLD, "");
    let st = FleetState {
        desired: desired(&s),
        ..FleetState::default()
    };
    let gate = Arc::new(BlockingGate::default());
    let rig = Rig::new(Some(st), FakeHost::default(), gate.clone(), false);
    let sh = rig.sh.clone();
    let ticking = std::thread::spawn(move || sh.tick());
    gate.wait_entered(1);
    // The tick is inside the gate: status must still answer.
    let status = status_from_elsewhere(&rig.sh).expect("status answered during verification");
    let services = status["services"].as_array().unwrap();
    assert!(services.iter().all(|s| s["active"].is_null()), "{status}");
    assert!(rig.host.st.lock().unwrap().launched.is_empty());
    // Released: the verdict is used and the release starts.
    gate.release_one();
    ticking.join().unwrap();
    rig.sh.tick();
    let web = rig.web();
    assert_eq!(
        web.rollout.as_ref().map(|r| r.release.as_str()),
        Some("r0001")
    );
    let launched = rig.host.st.lock().unwrap().launched.clone();
    assert_eq!(launched.len(), 1);
    // Healthy: it joins the rotation and the release is active.
    rig.host.set_healthy(&launched[0]);
    rig.sh.tick();
    let web = rig.web();
    assert_eq!(web.active.as_deref(), Some("r0001"));
    assert!(web.instances[&launched[0]].in_rotation);
    let actions: Vec<String> = rig.audit().into_iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        ["release.start", "instance.start", "release.switch"]
    );
    // What status shows is published once those events are in the log.
    let status = rig.sh.status();
    assert_eq!(status["services"][0]["active"]["id"], json!("r0001"));
    assert_eq!(status["services"][0]["converged"], json!(true));
    // A new image: while it is verified the old release keeps serving,
    // status answers and does not call the service converged.
    let new = spec(specdir.path(), NEW, "");
    rig.sh.change(|st| {
        st.desired.services.insert("web".into(), new.clone());
    });
    let sh = rig.sh.clone();
    let ticking = std::thread::spawn(move || sh.tick());
    gate.wait_entered(2);
    let status = status_from_elsewhere(&rig.sh).expect("status answered during verification");
    assert_eq!(status["services"][0]["active"]["id"], json!("r0001"));
    assert_eq!(status["services"][0]["converged"], json!(false));
    gate.release_one();
    ticking.join().unwrap();
    rig.sh.tick();
    assert_eq!(
        rig.web().rollout.map(|r| r.release),
        Some("r0003".to_string())
    );
}

#[test]
fn a_refused_image_never_starts() {
    let specdir = tempfile::tempdir().unwrap();
    let s = spec(specdir.path(), OLD, "");
    let st = FleetState {
        desired: desired(&s),
        ..FleetState::default()
    };
    let gate = Arc::new(Gate {
        refuse: Some("signature: no valid signature".into()),
    });
    let rig = Rig::new(Some(st), FakeHost::default(), gate, false);
    for _ in 0..3 {
        rig.sh.tick();
    }
    let web = rig.web();
    assert!(web.rollout.is_none() && web.releases.is_empty());
    assert!(web.failed.is_some());
    assert!(
        web.message.contains("signature: no valid signature"),
        "{}",
        web.message
    );
    assert!(rig.host.st.lock().unwrap().launched.is_empty());
    let refused: Vec<_> = rig
        .audit()
        .into_iter()
        .filter(|e| e.action == "release.refused")
        .collect();
    assert_eq!(refused.len(), 1, "refused once, not every tick");
}

#[test]
fn the_state_is_saved_after_a_tick_that_changed_it() {
    let specdir = tempfile::tempdir().unwrap();
    let s = spec(specdir.path(), OLD, "");
    let st = FleetState {
        desired: desired(&s),
        ..FleetState::default()
    };
    let rig = Rig::new(
        Some(st),
        FakeHost::default(),
        Arc::new(Gate { refuse: None }),
        false,
    );
    rig.sh.tick();
    rig.sh.tick();
    assert!(!lock(&rig.sh.world).dirty);
    let saved = rig.sh.db.load().unwrap();
    assert_eq!(saved.services["web"].releases.len(), 1);
    assert_eq!(saved.seq, lock(&rig.sh.world).st.seq);
}
