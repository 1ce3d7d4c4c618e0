//! The reconciler's decisions, without root or runc: the pure [`decide`]
//! driven step by step with a hand-set clock (`reconcile.rs`), and the shell
//! driven with an in-memory host, a tempdir state directory and fake image
//! gates (`fakes.rs`, `shell.rs`). Here: fixtures both use.

mod analysis;
mod fakes;
mod reconcile;
mod secrets;
mod shell;

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
    /// The proxy's per-release counters the reconciler sees.
    traffic: HashMap<String, crate::proxy::ReleaseStats>,
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
            traffic: HashMap::new(),
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
            &Input {
                name: "web",
                desired: Some(&self.desired),
                seen: &self.seen,
                verdict: self.verdict.as_ref(),
                proxy_error: None,
                now: self.now,
                timing: &self.timing,
                traffic: &self.traffic,
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
