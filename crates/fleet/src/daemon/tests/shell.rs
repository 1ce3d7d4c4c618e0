//! The daemon's shell with the fakes: adoption, debug TTL, locking, saving.

use super::fakes::*;
use super::*;

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
        ..FleetState::default()
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
        ..FleetState::default()
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
    rig.sh.wait_verified();
    rig.sh.tick();
    let web = rig.web();
    assert_eq!(web.rollout.as_ref().map(|r| r.release.as_str()), Some("r1"));
    let launched = rig.host.st.lock().unwrap().launched.clone();
    assert_eq!(launched.len(), 1);
    // Healthy: it joins the rotation and the release is active.
    rig.host.set_healthy(&launched[0]);
    rig.sh.tick();
    let web = rig.web();
    assert_eq!(web.active.as_deref(), Some("r1"));
    assert!(web.instances[&launched[0]].in_rotation);
    let actions: Vec<String> = rig.audit().into_iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        ["release.start", "instance.start", "release.switch"]
    );
    // What status shows is published once those events are in the log.
    let status = rig.sh.status();
    assert_eq!(status["services"][0]["active"]["id"], json!("r1"));
    assert_eq!(status["services"][0]["converged"], json!(true));
    // A new image: while it is verified the old release keeps serving,
    // status answers and does not call the service converged.
    let new = spec(specdir.path(), NEW, "");
    rig.sh.change(|st| {
        st.desired.services.insert("web".into(), new.clone());
    });
    rig.sh.tick();
    gate.wait_entered(2);
    let status = status_from_elsewhere(&rig.sh).expect("status answered during verification");
    assert_eq!(status["services"][0]["active"]["id"], json!("r1"));
    assert_eq!(status["services"][0]["converged"], json!(false));
    // Health-driven replacement carries on while the image is verified.
    rig.host.kill(&launched[0]);
    rig.sh.tick();
    let web = rig.web();
    assert!(!web.instances.contains_key(&launched[0]));
    assert_eq!(rig.host.st.lock().unwrap().launched.len(), 2);
    assert!(
        web.rollout.is_none(),
        "the new release waits for its verdict"
    );
    gate.release_one();
    rig.sh.wait_verified();
    rig.sh.tick();
    let web = rig.web();
    let r = web.rollout.expect("rollout of the verified image");
    assert_eq!(r.from.as_deref(), Some("r1"));
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
        rig.sh.wait_verified();
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
    rig.sh.wait_verified();
    rig.sh.tick();
    assert!(!lock(&rig.sh.world).dirty);
    let saved = rig.sh.db.load().unwrap();
    assert_eq!(saved.services["web"].releases.len(), 1);
    assert_eq!(saved.seq, lock(&rig.sh.world).st.seq);
}

#[test]
fn egress_counters_are_audited_when_changed_each_minute_and_when_the_instance_goes() {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    let specdir = tempfile::tempdir().unwrap();
    let s = spec(specdir.path(), OLD, "");
    let st = FleetState {
        desired: desired(&s),
        services: [("web".to_string(), serving(&s, 1, None))].into(),
        seq: 10,
        ..FleetState::default()
    };
    let host = FakeHost::with_running(&[("web-0001", 100)]);
    let rig = Rig::new(Some(st), host, Arc::new(Gate { refuse: None }), false);
    // The forwarder, on the host's own loopback here, to a server that says hi.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = server.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in server.incoming() {
            use std::io::Write;
            let _ = c.unwrap().write_all(b"hi");
        }
    });
    let port = TcpListener::bind("127.0.1.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = format!("db.internal:{port}");
    let routes = crate::egress::routes(&[(to.clone(), dest)].into_iter().collect()).unwrap();
    let via = std::net::SocketAddr::V4(routes[0].via);
    let eg = crate::egress::forward::Egress::start(routes, TcpListener::bind, Default::default())
        .unwrap();
    lock(&rig.sh.world)
        .live
        .get_mut("web-0001")
        .unwrap()
        .watch
        .egress = Some(Arc::new(eg));
    let events = |rig: &Rig| -> Vec<kiln_audit::Event> {
        rig.audit()
            .into_iter()
            .filter(|e| e.action == "fleet.egress")
            .collect()
    };
    let talk = || {
        let mut c = TcpStream::connect(via).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hi");
    };
    rig.sh.egress_audit();
    assert!(events(&rig).is_empty(), "nothing happened yet");
    talk();
    let st = status_from_elsewhere(&rig.sh).unwrap();
    let counted = || {
        let st = status_from_elsewhere(&rig.sh).unwrap();
        st["services"][0]["instances"][0]["egress"][0].clone()
    };
    assert_eq!(st["services"][0]["instances"][0]["egress"][0]["to"], to);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while counted()["active"] != 0 || counted()["bytes_in"] != 2 {
        assert!(std::time::Instant::now() < end, "{}", counted());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Within the minute: nothing; after it: one event with the counts.
    rig.sh.egress_audit();
    assert!(events(&rig).is_empty());
    rig.clock.advance(Duration::from_secs(60));
    rig.sh.egress_audit();
    let ev = events(&rig);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].details["final"], json!(false));
    assert_eq!(ev[0].details["egress"][0]["opened"], json!(1));
    assert_eq!(ev[0].details["egress"][0]["bytes_in"], json!(2));
    // Unchanged: no new event.
    rig.clock.advance(Duration::from_secs(60));
    rig.sh.egress_audit();
    assert_eq!(events(&rig).len(), 1);
    // The instance goes: a final event, and its listeners close.
    talk();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while counted()["active"] != 0 || counted()["opened"] != 2 {
        assert!(std::time::Instant::now() < end, "{}", counted());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Recorded at the minute; then the instance goes with nothing new: the final event is
    // recorded all the same.
    rig.clock.advance(Duration::from_secs(60));
    rig.sh.egress_audit();
    assert_eq!(events(&rig).len(), 2);
    lock(&rig.sh.world).live.remove("web-0001");
    rig.sh.egress_audit();
    let ev = events(&rig);
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[1].details["final"], json!(false));
    assert_eq!(ev[2].details["final"], json!(true));
    assert_eq!(ev[2].details["egress"][0]["opened"], json!(2));
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(via).is_ok() {
        assert!(std::time::Instant::now() < end, "still listening");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_rollback_to_a_release_whose_egress_now_points_at_a_proxy_is_refused() {
    let specdir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // r0001 mapped its database to 127.0.0.1:<port> (fine then); the service's front proxy
    // listens there now.
    let mut old = spec(specdir.path(), OLD, "");
    old.egress = [("db.internal:5432".to_string(), format!("127.0.0.1:{port}"))].into();
    let mut new = spec(specdir.path(), NEW, "");
    new.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let mut svc = serving(&new, 1, None);
    svc.releases = vec![release("r0001", &old, None), release("r0002", &new, None)];
    svc.active = Some("r0002".into());
    for i in svc.instances.values_mut() {
        i.release = "r0002".into();
    }
    let st = FleetState {
        desired: desired(&new),
        services: [("web".to_string(), svc)].into(),
        seq: 10,
        ..FleetState::default()
    };
    let host = FakeHost::with_running(&[("web-0001", 100)]);
    let rig = Rig::new(Some(st), host, Arc::new(Gate { refuse: None }), false);
    let resp = rig
        .sh
        .rollback("web", None, false, &kiln_audit::Actor::current());
    assert!(!resp.ok, "{resp:?}");
    let why = format!("{resp:?}");
    assert!(
        why.contains("r0001") && why.contains("front proxy listens on"),
        "{why}"
    );
    let w = lock(&rig.sh.world);
    assert_eq!(w.st.desired.services["web"].image, new.image);
    assert!(
        !rig.audit().iter().any(|e| e.action == "release.rollback"),
        "nothing recorded"
    );
}
