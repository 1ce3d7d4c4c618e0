//! Secrets in the daemon's shell, with the fakes: read at apply (HMAC in the audit event,
//! never the value), a rotation is a new release, a restarted daemon waits for the next apply.

use std::os::unix::fs::PermissionsExt;

use super::fakes::*;
use super::*;

const VALUE: &str = "s3cr3t-value-for-the-shell-test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A deploy file for `web` with secret DB_PASSWORD in `dir/db` holding `value`.
fn deploy_file(dir: &Path, value: &str, port: u16) -> std::path::PathBuf {
    std::fs::write(dir.join("trust.toml"), "").unwrap();
    let secret = dir.join("db");
    std::fs::write(&secret, value).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.join("deploy.toml");
    std::fs::write(
        &path,
        format!(
            "[service.web]\nimage = \"{OLD}\"\nlisten = \"127.0.0.1:{port}\"\nport = 8080\npolicy = \"trust.toml\"\n\n[service.web.secrets]\nDB_PASSWORD = {{ file = \"db\" }}\n"
        ),
    )
    .unwrap();
    path
}

fn gate() -> Arc<dyn ImageGate> {
    Arc::new(Gate { refuse: None })
}

/// Tick (letting verification finish) until `f` holds.
fn tick_until(rig: &Rig, mut f: impl FnMut(&Rig) -> bool) {
    for _ in 0..50 {
        rig.sh.tick();
        rig.sh.wait_verified();
        if f(rig) {
            return;
        }
    }
    panic!("never happened: {:?}", rig.web());
}

#[test]
fn secrets_are_read_at_apply_rotations_are_releases_and_a_restart_waits_for_apply() {
    let specdir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = deploy_file(specdir.path(), VALUE, port);
    let actor = kiln_audit::Actor::current();
    let rig = Rig::new(None, FakeHost::default(), gate(), false);
    let resp = rig.sh.apply(&file, None, &actor);
    assert!(resp.ok, "{resp:?}");
    tick_until(&rig, |r| r.host.st.lock().unwrap().launched.len() == 1);
    let key = rig.dir.path().join("fleet/secret.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The apply event carries the name and the HMAC; nothing carries the value.
    let ev = rig
        .audit()
        .into_iter()
        .find(|e| e.action == "fleet.apply")
        .unwrap();
    let s = &ev.details["secrets"]["web"][0];
    assert_eq!(s["name"], "DB_PASSWORD");
    let hmac1 = s["hmac"].as_str().unwrap().to_string();
    assert_eq!(hmac1.len(), 64);
    let status = rig.sh.status().to_string();
    assert!(
        status.contains("DB_PASSWORD") && !status.contains(VALUE),
        "{status}"
    );
    rig.sh.save();
    for f in walk(rig.dir.path()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
            "{} holds the value",
            f.display()
        );
    }
    let launched = rig.host.st.lock().unwrap().launched[0].clone();
    rig.host.set_healthy(&launched);
    tick_until(&rig, |r| r.web().active.as_deref() == Some("r1"));

    // Output lines of the service are redacted before they are kept.
    rig.sh
        .logs
        .push("web", &launched, format!("connecting with {VALUE}"));
    let kept = lock(&rig.sh.logs.rings)["web"].lines[0].text.clone();
    assert!(
        kept.ends_with("connecting with [redacted secret DB_PASSWORD]"),
        "{kept}"
    );

    // The same file again: nothing changes. A new value: a new release.
    let resp = rig.sh.apply(&file, None, &actor);
    assert_eq!(resp.result["text"], "= web: unchanged\n", "{resp:?}");
    deploy_file(specdir.path(), "another-value", port);
    let resp = rig.sh.apply(&file, None, &actor);
    assert!(
        resp.result["text"]
            .as_str()
            .unwrap()
            .contains("update (new release)\n    secrets ~DB_PASSWORD"),
        "{resp:?}"
    );
    tick_until(&rig, |r| r.web().releases.len() == 2);
    let ev = rig
        .audit()
        .into_iter()
        .rfind(|e| e.action == "fleet.apply")
        .unwrap();
    assert_ne!(ev.details["secrets"]["web"][0]["hmac"], hmac1.as_str());
    let starts: Vec<_> = rig
        .audit()
        .into_iter()
        .filter(|e| e.action == "release.start")
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0].details["secrets"][0]["hmac"], hmac1.as_str());
    assert_eq!(
        starts[1].details["secrets"][0]["hmac"],
        ev.details["secrets"]["web"][0]["hmac"]
    );

    // A restarted daemon (same key, same state) holds no secret: the instance that must be
    // replaced waits, and status says so, until the file is applied again.
    let st = lock(&rig.sh.world).st.clone();
    for (_, f) in lock(&rig.sh.world).proxies.drain() {
        f.proxy.stop();
    }
    let key_bytes = std::fs::read(&key).unwrap();
    let rig2 = Rig::new(Some(st), FakeHost::default(), gate(), false);
    std::fs::write(rig2.dir.path().join("fleet/secret.key"), key_bytes).unwrap();
    std::fs::set_permissions(
        rig2.dir.path().join("fleet/secret.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    for _ in 0..5 {
        rig2.sh.tick();
        rig2.sh.wait_verified();
    }
    assert!(rig2.host.st.lock().unwrap().launched.is_empty());
    let web = rig2.web();
    assert!(
        web.message
            .starts_with("waiting for secrets: run kiln apply"),
        "{}",
        web.message
    );
    let status = rig2.sh.status();
    assert_eq!(
        status["services"][0]["secrets_missing"],
        json!(["DB_PASSWORD"])
    );
    let resp = rig2.sh.apply(&file, None, &actor);
    assert!(resp.ok, "{resp:?}");
    tick_until(&rig2, |r| !r.host.st.lock().unwrap().launched.is_empty());
    assert_eq!(
        rig2.sh.status()["services"][0]["secrets_missing"],
        json!([])
    );
}

#[test]
fn an_unreadable_secret_refuses_the_apply_and_changes_nothing() {
    let specdir = tempfile::tempdir().unwrap();
    let file = deploy_file(specdir.path(), VALUE, free_port());
    std::fs::set_permissions(
        specdir.path().join("db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let rig = Rig::new(None, FakeHost::default(), gate(), false);
    let resp = rig.sh.apply(&file, None, &kiln_audit::Actor::current());
    assert!(!resp.ok);
    let err = resp.error.unwrap_or_default();
    assert!(err.contains("deploy.toml:8:"), "{err}");
    assert!(
        err.contains("DB_PASSWORD") && err.contains("world-readable"),
        "{err}"
    );
    assert!(!err.contains(VALUE));
    assert!(lock(&rig.sh.world).st.desired.services.is_empty());
    assert!(rig.audit().iter().all(|e| e.action != "fleet.apply"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
