//! The pure reconciler, stepped by hand.

use super::*;

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

#[test]
fn a_limits_change_is_an_ordinary_new_release_and_an_oom_exit_is_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(dir.path(), OLD, "");
    let new = spec(
        dir.path(),
        OLD,
        "strategy = \"canary\"\ncanary = [50, 100]\n[service.web.limits]\nmemory = \"256MiB\"",
    );
    assert_ne!(fingerprint(&old), fingerprint(&new));
    assert!(instance_fields_differ(&old, &new));
    let baseline = json!({"pii": false});
    let mut sim = Sim::new(serving(&old, 1, Some(baseline.clone())), new);
    sim.verdict = Some(Verdict::Pass {
        baseline: Some(baseline),
    });
    let a = sim.step();
    // Same image, new limits: a new release, and an ordinary one (the canary stays).
    let r = sim.svc.rollout.as_ref().expect("a rollout");
    assert_ne!(r.release, "r0001");
    assert_eq!(r.canary, Some(vec![50, 100]));
    assert_eq!(r.note, None);
    assert_eq!(starts(&a), 1);
    let rel = sim.svc.release(&r.release).unwrap();
    assert_eq!(rel.spec.limits.unwrap().memory_bytes, 256 << 20);

    // The host's OOM description is the replacement's reason.
    let s = spec(dir.path(), OLD, "[service.web.limits]\nmemory = \"32MiB\"");
    let mut sim = Sim::new(serving(&s, 1, None), s);
    let id = sim.ids_of("r0001").pop().unwrap();
    sim.seen.get_mut(&id).unwrap().exited =
        Some("was killed by the kernel: out of memory (limit 32 MiB)".into());
    let a = sim.step();
    let ev = event(&a, "instance.replace").unwrap();
    assert_eq!(
        ev.reason.as_deref(),
        Some("instance was killed by the kernel: out of memory (limit 32 MiB)")
    );
    assert!(sim.svc.message.contains("out of memory (limit 32 MiB)"));
}

#[test]
fn an_egress_mapping_change_alone_rolls_a_new_release_of_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let old = spec(
        dir.path(),
        OLD,
        "[service.web.egress]\n\"db.internal:5432\" = \"127.0.0.1:15432\"",
    );
    let new = spec(
        dir.path(),
        OLD,
        "[service.web.egress]\n\"db.internal:5432\" = \"db.example:5432\"",
    );
    assert!(instance_fields_differ(&old, &new));
    assert_ne!(fingerprint(&old), fingerprint(&new));
    let baseline = json!({"egress": [{"to": "db.internal:5432", "reason": "orders"}]});
    let mut sim = Sim::new(serving(&old, 1, Some(baseline.clone())), new.clone());
    sim.verdict = Some(Verdict::Pass {
        baseline: Some(baseline),
    });
    let a = sim.step();
    let r = sim.svc.rollout.clone().expect("a new release rolls out");
    assert_eq!(starts(&a), 1);
    let rel = sim.svc.release(&r.release).unwrap();
    assert_eq!(rel.image, old.image);
    assert_eq!(rel.spec.egress, new.egress);
    assert_eq!(
        r.note, None,
        "the image's egress did not change: no guardrail"
    );
}
