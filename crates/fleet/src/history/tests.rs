//! History assembly from fixture events.

use kiln_audit::{Actor, Event, Resource};
use serde_json::json;

use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn at(e: Event, time: &str) -> Event {
    Event {
        time: time.into(),
        ..e
    }
}

fn by(mut e: Event, user: &str) -> Event {
    e.actor = Actor {
        user: user.into(),
        uid: 1000,
        sudo_user: None,
        key: None,
    };
    e
}

fn ev(action: &str, service: &str, release: Option<&str>) -> Event {
    let mut e = Event::new(action, "kiln serve").resource(Resource::new("service", service));
    if let Some(r) = release {
        e = e.resource(Resource::new("release", r));
    }
    by(e, "root")
}

fn apply(services: serde_json::Value, user: &str, reason: &str) -> Event {
    by(
        Event::new("fleet.apply", "kiln apply")
            .reason(Some(reason))
            .detail("plan", json!({"services": services})),
        user,
    )
}

fn start(id: &str, digest: &str, strategy: &str, from: Option<&str>) -> Event {
    ev("release.start", "web", Some(id))
        .resource(Resource::named(
            "image",
            digest,
            format!("localhost/web:{id}@{digest}"),
        ))
        .detail("strategy", strategy)
        .detail("from", from)
}

fn fixture() -> Vec<Event> {
    let analysis_fail = json!({"requests": 120, "errors": 80, "error_rate": 0.667,
        "max_error_rate": 0.01, "min_requests": 50, "verdict": "fail", "window_ms": 30000});
    vec![
        at(
            apply(json!({"web": {"action": "create"}}), "alice", "CHG-1"),
            "2024-01-01T10:00:00.000Z",
        ),
        at(
            start("r1", D1, "initial", None).reason(Some("CHG-1")),
            "2024-01-01T10:00:00.100Z",
        ),
        at(
            ev("release.switch", "web", Some("r1")),
            "2024-01-01T10:00:02.100Z",
        ),
        // Another service's events are not ours.
        at(
            apply(
                json!({"api": {"action": "create"}, "web": {"action": "unchanged"}}),
                "carol",
                "other",
            ),
            "2024-01-01T10:30:00.000Z",
        ),
        at(
            ev("release.start", "api", Some("r1")),
            "2024-01-01T10:30:00.100Z",
        ),
        at(
            apply(
                json!({"web": {"action": "update", "changes": []}}),
                "bob",
                "CHG-2",
            ),
            "2024-01-01T11:00:00.000Z",
        ),
        at(
            start("r2", D2, "canary [10, 50, 100]", Some("r1")).reason(Some("CHG-2")),
            "2024-01-01T11:00:00.000Z",
        ),
        at(
            ev("release.step", "web", Some("r2"))
                .detail("percent", 10)
                .detail("step", 1)
                .detail("analysis", json!({"requests": 0, "verdict": "wait"})),
            "2024-01-01T11:00:05.000Z",
        ),
        at(
            ev("release.abort", "web", Some("r2"))
                .reason(Some("error rate 0.667 above 0.01"))
                .detail("rolled_back_to", "r1")
                .detail("analysis", analysis_fail.clone()),
            "2024-01-01T11:00:35.000Z",
        ),
        at(
            apply(
                json!({"web": {"action": "update", "changes": []}}),
                "bob",
                "CHG-3",
            ),
            "2024-01-01T12:00:00.000Z",
        ),
        at(
            start("r3", D2, "blue-green", Some("r1"))
                .detail("guardrail", "privacy-relevant baseline change"),
            "2024-01-01T12:00:00.000Z",
        ),
        at(
            ev("release.abort", "web", Some("r3")).reason(Some("3 instance failures")),
            "2024-01-01T12:01:00.000Z",
        ),
        at(
            apply(
                json!({"web": {"action": "update", "changes": []}}),
                "bob",
                "CHG-4",
            ),
            "2024-01-01T13:00:00.000Z",
        ),
        at(
            start("r4", D2, "blue-green", Some("r1")),
            "2024-01-01T13:00:00.000Z",
        ),
        at(
            ev("release.switch", "web", Some("r4")).detail("strategy", "blue-green"),
            "2024-01-01T13:00:10.000Z",
        ),
        at(
            by(
                ev("release.rollback", "web", Some("r4"))
                    .detail("to_release", "r1")
                    .reason(Some("INC-9")),
                "dave",
            ),
            "2024-01-01T14:00:00.000Z",
        ),
        at(
            start("r5", D1, "blue-green", Some("r4")).reason(Some("INC-9")),
            "2024-01-01T14:00:00.500Z",
        ),
        at(
            ev("release.switch", "web", Some("r5")),
            "2024-01-01T14:00:03.500Z",
        ),
    ]
}

fn history(events: &[Event], state: Option<&ServiceState>) -> Vec<Release> {
    assemble(
        "web",
        events.iter().enumerate().map(|(i, e)| (i as u64, e)),
        state,
    )
}

#[test]
fn each_release_has_its_outcome_who_why_and_durations() {
    let events = fixture();
    let h = history(&events, None);
    let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3", "r4", "r5"]);
    let r1 = &h[0];
    assert_eq!(r1.outcome, Outcome::Superseded);
    assert_eq!(r1.who.as_deref(), Some("alice"));
    assert_eq!(r1.reason.as_deref(), Some("CHG-1"));
    assert_eq!(r1.duration_ms, Some(2000));
    assert_eq!(r1.digest.as_deref(), Some(D1));
    assert_eq!(r1.log_index, Some(1));

    let r2 = &h[1];
    assert_eq!(r2.outcome, Outcome::Aborted);
    assert_eq!(r2.who.as_deref(), Some("bob"));
    assert_eq!(r2.strategy.as_deref(), Some("canary [10, 50, 100]"));
    assert_eq!(
        r2.outcome_reason.as_deref(),
        Some("error rate 0.667 above 0.01")
    );
    assert_eq!(r2.analysis.as_ref().unwrap()["verdict"], "fail");
    assert_eq!(r2.analysis.as_ref().unwrap()["requests"], 120);
    assert_eq!(r2.steps.len(), 1);
    assert_eq!(r2.steps[0].percent, Some(10));
    assert_eq!(r2.steps[0].after_ms, Some(5000));
    assert_eq!(r2.steps[0].analysis.as_ref().unwrap()["verdict"], "wait");
    assert_eq!(r2.duration_ms, Some(35_000));

    let r3 = &h[2];
    assert_eq!(r3.outcome, Outcome::Failed);
    assert_eq!(
        r3.guardrail.as_deref(),
        Some("privacy-relevant baseline change")
    );
    assert_eq!(r3.reason.as_deref(), Some("CHG-3"), "the apply's reason");

    let r4 = &h[3];
    assert_eq!(r4.outcome, Outcome::RolledBack);
    assert_eq!(
        r4.outcome_reason.as_deref(),
        Some("dave rolled back to r1: INC-9")
    );

    let r5 = &h[4];
    assert_eq!(r5.outcome, Outcome::Serving);
    assert_eq!(r5.who.as_deref(), Some("dave"), "the rollback's user");
    assert_eq!(r5.reason.as_deref(), Some("INC-9"));
}

#[test]
fn the_state_says_what_serves_and_what_rolls_out() {
    let mut events = fixture();
    events.truncate(9); // up to r2's abort
    events.push(at(
        start("r3", D2, "canary [50, 100]", Some("r1")),
        "2024-01-01T12:00:00.000Z",
    ));
    let svc = ServiceState {
        active: Some("r1".into()),
        rollout: Some(crate::state::Rollout {
            release: "r3".into(),
            from: Some("r1".into()),
            canary: Some(vec![50, 100]),
            step: None,
            step_since: 0,
            started: 0,
            note: None,
            failures: 0,
            base: None,
            paused: None,
            command: None,
            switched: None,
        }),
        ..ServiceState::default()
    };
    let h = history(&events, Some(&svc));
    assert_eq!(h[0].outcome, Outcome::Serving);
    assert_eq!(h[1].outcome, Outcome::Aborted);
    assert_eq!(h[2].id, "r3");
    assert_eq!(h[2].outcome, Outcome::InProgress);
}

#[test]
fn an_id_used_again_starts_a_new_record_and_destroy_ends_the_serving_one() {
    let events = vec![
        at(start("r1", D1, "initial", None), "2024-01-01T10:00:00.000Z"),
        at(
            ev("release.switch", "web", Some("r1")),
            "2024-01-01T10:00:01.000Z",
        ),
        at(
            ev("fleet.destroy", "web", None).reason(Some("gone")),
            "2024-01-01T11:00:00.000Z",
        ),
        at(start("r1", D2, "initial", None), "2024-01-02T10:00:00.000Z"),
    ];
    let h = history(&events, None);
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].outcome, Outcome::Destroyed);
    assert_eq!(h[1].outcome, Outcome::InProgress);
    assert_eq!(h[1].digest.as_deref(), Some(D2));
}

#[test]
fn times_keep_their_milliseconds() {
    assert_eq!(time_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
    assert_eq!(time_ms("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
    assert_eq!(time_ms("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
    assert_eq!(time_ms("nonsense"), None);
}
