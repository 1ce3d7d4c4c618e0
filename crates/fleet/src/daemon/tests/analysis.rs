//! Canary analysis and operator commands in the pure reconciler, on a simulated clock and
//! simulated proxy counters.

use super::*;
use crate::analysis::{Command, CommandOp};
use crate::proxy::ReleaseStats;

const ANALYSIS: &str = "[service.web.analysis]\nmin_requests = 20\nmax_error_rate = 0.05\nstep_timeout = \"2s\"\nwindow = \"10s\"";

/// A service on r0001 (2 replicas) rolling out `new` until its instances are healthy and
/// the first canary step (or the blue-green switch) took effect; returns the new release id.
fn rolled_in(sim: &mut Sim) -> String {
    sim.step();
    sim.verdict = Some(Verdict::Pass { baseline: None });
    sim.step();
    let r = sim.svc.rollout.clone().expect("rollout");
    for id in sim.ids_of(&r.release) {
        *sim.seen.get_mut(&id).unwrap() = healthy();
    }
    sim.step();
    r.release
}

fn canary_sim(extra: &str) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(dir.path(), OLD, "replicas = 2");
    let new = spec(
        dir.path(),
        NEW,
        &format!(
            "replicas = 2\nstrategy = \"canary\"\ncanary = [10, 50, 100]\nstep_pause = \"1s\"\n{extra}"
        ),
    );
    Sim::new(serving(&old, 2, None), new)
}

/// The new release served `requests` responses, `errors` of them 5xx (cumulative).
fn traffic(sim: &mut Sim, release: &str, requests: u64, errors: u64) {
    let mut s = ReleaseStats {
        release: release.into(),
        connections: requests,
        requests,
        ..ReleaseStats::default()
    };
    s.responses.s5xx = errors;
    s.responses.s2xx = requests - errors;
    sim.traffic.insert(release.into(), s);
}

fn stable_only(a: &[Action]) -> bool {
    rotation(a).is_some_and(|rot| rot.iter().all(|s| s.release == "r0001" && s.weight == 1))
}

#[test]
fn a_canary_serving_errors_aborts_at_the_first_step_with_the_numbers() {
    let mut sim = canary_sim(ANALYSIS);
    let rel = rolled_in(&mut sim);
    assert_eq!(sim.svc.rollout.as_ref().unwrap().step, Some(0));
    traffic(&mut sim, &rel, 10, 0);
    sim.advance(100);
    sim.step();
    assert!(sim.svc.rollout.is_some(), "10 good requests: wait");
    // 2 errors: more than 5 % of the 20 needed, whatever follows.
    traffic(&mut sim, &rel, 14, 2);
    sim.advance(100);
    let a = sim.step();
    let abort = event(&a, "release.abort").expect("aborted");
    let an = &abort.details["analysis"];
    assert_eq!(an["requests"], 14);
    assert_eq!(an["errors"], 2);
    assert_eq!(an["verdict"], "fail");
    assert_eq!(an["min_requests"], 20);
    assert_eq!(an["max_error_rate"], 0.05);
    assert!(
        abort
            .reason
            .as_deref()
            .unwrap()
            .starts_with("canary step 1: 2 errors in 14 requests"),
        "{:?}",
        abort.reason
    );
    assert!(stable_only(&a), "all weight back to the stable set");
    assert!(sim.svc.rollout.is_none());
    assert_eq!(sim.svc.active.as_deref(), Some("r0001"));
    assert!(sim.ids_of(&rel).is_empty());
}

#[test]
fn a_healthy_canary_passes_each_step_on_traffic_and_dwell() {
    let mut sim = canary_sim(ANALYSIS);
    let rel = rolled_in(&mut sim);
    // Enough requests, but step_pause (1 s) not over: wait.
    traffic(&mut sim, &rel, 30, 1);
    sim.advance(500);
    assert!(event(&sim.step(), "release.step").is_none());
    sim.advance(600);
    let a = sim.step();
    let step = event(&a, "release.step").expect("step 2");
    assert_eq!(step.details["percent"], 50);
    assert_eq!(step.details["analysis"]["verdict"], "pass");
    assert_eq!(step.details["analysis"]["requests"], 30);
    // The next step counts from its own start: 30 → 45 is only 15 requests.
    traffic(&mut sim, &rel, 45, 1);
    sim.advance(1_500);
    assert!(event(&sim.step(), "release.step").is_none());
    traffic(&mut sim, &rel, 60, 1);
    sim.advance(100);
    let a = sim.step();
    assert_eq!(event(&a, "release.step").unwrap().details["percent"], 100);
    traffic(&mut sim, &rel, 90, 1);
    sim.advance(1_100);
    let a = sim.step();
    let sw = event(&a, "release.switch").expect("switch");
    assert_eq!(sw.details["analysis"]["requests"], 30);
    assert_eq!(sim.svc.active.as_deref(), Some(rel.as_str()));
}

#[test]
fn no_traffic_pauses_at_step_timeout_and_resume_continues() {
    let mut sim = canary_sim(ANALYSIS);
    let rel = rolled_in(&mut sim);
    traffic(&mut sim, &rel, 3, 0);
    sim.advance(1_900);
    sim.step();
    assert!(sim.svc.rollout.as_ref().unwrap().paused.is_none());
    sim.advance(200);
    let a = sim.step();
    let pause = event(&a, "release.pause").expect("paused");
    assert_eq!(pause.details["analysis"]["verdict"], "timeout");
    assert_eq!(pause.details["analysis"]["requests"], 3);
    let r = sim.svc.rollout.clone().unwrap();
    assert!(r.paused.as_ref().is_some_and(|p| p.timeout));
    assert!(sim.svc.message.contains("paused"), "{}", sim.svc.message);
    // Paused: nothing moves, and the rollout timeout does not abort it.
    sim.advance(600_000);
    let a = sim.step();
    assert!(events(&a).is_empty(), "{:?}", events(&a));
    assert_eq!(sim.svc.rollout.as_ref().unwrap().step, Some(0));
    // Resume: the operator vouches for the step; the next one begins.
    sim.svc.rollout.as_mut().unwrap().command = Some(Command {
        op: CommandOp::Resume,
        actor: kiln_audit::Actor {
            user: "ops".into(),
            uid: 0,
            sudo_user: None,
            key: None,
        },
        reason: None,
    });
    let a = sim.step();
    let step = event(&a, "release.step").expect("next step");
    assert_eq!(step.details["percent"], 50);
    assert_eq!(step.details["resumed"], true);
    let r = sim.svc.rollout.clone().unwrap();
    assert!(r.paused.is_none() && r.command.is_none());
}

#[test]
fn an_operator_abort_returns_the_weight_and_names_the_operator() {
    let mut sim = canary_sim(ANALYSIS);
    let rel = rolled_in(&mut sim);
    let actor = kiln_audit::Actor {
        user: "alice".into(),
        uid: 1000,
        sudo_user: None,
        key: None,
    };
    sim.svc.rollout.as_mut().unwrap().command = Some(Command {
        op: CommandOp::Abort,
        actor: actor.clone(),
        reason: Some("looks wrong".into()),
    });
    let a = sim.step();
    let abort = event(&a, "release.abort").expect("aborted");
    assert_eq!(
        abort.reason.as_deref(),
        Some("aborted by alice: looks wrong")
    );
    assert_eq!(abort.actor, actor);
    assert!(stable_only(&a));
    assert!(sim.ids_of(&rel).is_empty());
}

#[test]
fn without_the_table_steps_advance_on_step_pause_alone() {
    let mut sim = canary_sim("");
    let rel = rolled_in(&mut sim);
    traffic(&mut sim, &rel, 100, 100);
    sim.advance(1_100);
    let a = sim.step();
    assert_eq!(event(&a, "release.step").unwrap().details["percent"], 50);
    assert!(
        event(&a, "release.step")
            .unwrap()
            .details
            .get("analysis")
            .is_none()
    );
}

fn blue_green_sim() -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(dir.path(), OLD, "replicas = 2");
    let new = spec(dir.path(), NEW, &format!("replicas = 2\n{ANALYSIS}"));
    Sim::new(serving(&old, 2, None), new)
}

#[test]
fn blue_green_switches_back_when_the_window_fails() {
    let mut sim = blue_green_sim();
    let rel = rolled_in(&mut sim);
    let sw = event(&sim.log, "release.switch").expect("switched");
    assert_eq!(sw.details["window_ms"], 10_000);
    assert_eq!(sim.svc.active.as_deref(), Some(rel.as_str()));
    // The old set stands by: out of rotation, not retiring.
    for id in sim.ids_of("r0001") {
        let i = &sim.svc.instances[&id];
        assert!(!i.in_rotation && i.phase == Phase::Healthy, "{i:?}");
    }
    traffic(&mut sim, &rel, 30, 9);
    sim.advance(2_000);
    let a = sim.step();
    let abort = event(&a, "release.abort").expect("switched back");
    assert_eq!(abort.details["analysis"]["errors"], 9);
    assert!(stable_only(&a), "the standing-by set serves again");
    assert_eq!(sim.svc.active.as_deref(), Some("r0001"));
    assert!(sim.ids_of(&rel).is_empty());
}

#[test]
fn blue_green_drains_the_old_set_after_a_good_window() {
    let mut sim = blue_green_sim();
    let rel = rolled_in(&mut sim);
    traffic(&mut sim, &rel, 30, 0);
    sim.advance(5_000);
    assert!(
        event(&sim.step(), "release.step").is_none(),
        "window not over"
    );
    sim.advance(5_000);
    let a = sim.step();
    let done = event(&a, "release.step").expect("window passed");
    assert_eq!(done.details["step"], "window");
    assert_eq!(done.details["analysis"]["verdict"], "pass");
    assert!(sim.svc.rollout.is_none());
    for id in sim.ids_of("r0001") {
        assert_eq!(sim.svc.instances[&id].phase, Phase::Retiring);
    }
}
