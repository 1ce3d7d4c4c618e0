//! `kiln export` and `kiln import`: an image with everything attached to it (signatures,
//! bundles, SBOM referrers) moved through an OCI layout and verified on the other side;
//! skopeo reads the export; a tampered blob is refused before anything is imported.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn policy(e: &Env, key: &str) -> PathBuf {
    let t = format!(
        "[keys]\n{key} = \"{key}.pub\"\n\n[roles.builder]\nkeys = [\"{key}\"]\nthreshold = 1\n\n\
         [require]\nsignature = \"builder\"\n"
    );
    let p = e.path().join("trust.toml");
    fs::write(&p, t).unwrap();
    p
}

/// Build, sign and export `hello:1.0.0`; returns (digest, export dir, policy).
fn signed_export(e: &Env) -> (String, PathBuf, PathBuf) {
    let digest = e.build(&[]);
    let key = keygen(e, "ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let out = e.path().join("export");
    let o = run(e
        .kiln()
        .args(["--json", "export", "hello:1.0.0", "--out"])
        .arg(&out));
    assert!(o.status.success(), "export: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["digest"], digest.as_str());
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(
        v["tags"][0]["ref"],
        format!("hello:sha256-{hex}.sig").as_str()
    );
    let bundles = v["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["artifact_type"] == BUNDLE)
        .count();
    assert_eq!(bundles, 1, "{v}");
    (digest, out, policy(e, "ci"))
}

/// `kiln` on another state directory.
fn kiln_at(e: &Env, state: &Path) -> Command {
    let mut c = e.kiln();
    c.env("KILN_STATE_DIR", state);
    c
}

fn import(e: &Env, state: &Path, dir: &Path) -> Output {
    run(kiln_at(e, state).args(["--json", "import"]).arg(dir))
}

fn verify_at(e: &Env, state: &Path, policy: &Path) -> Output {
    run(kiln_at(e, state)
        .args(["--json", "verify", "hello:1.0.0", "--policy"])
        .arg(policy))
}

fn skopeo_digest(reference: &str) -> String {
    let o = run(Command::new("skopeo").args(["inspect", reference]));
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}",
        stderr(&o)
    );
    json(&o)["Digest"].as_str().unwrap().to_string()
}

/// Blob names, index.json and staging leftovers of the store in `state`.
fn snapshot(state: &Path) -> Vec<String> {
    let store = state.join("store");
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(store.join("blobs/sha256")) {
        for e in rd {
            v.push(e.unwrap().file_name().to_string_lossy().to_string());
        }
    }
    v.sort();
    if let Ok(idx) = fs::read_to_string(store.join("index.json")) {
        v.push(idx);
    }
    if let Ok(rd) = fs::read_dir(store.join(".kiln/tmp")) {
        for e in rd {
            v.push(format!("leftover staging: {:?}", e.unwrap().file_name()));
        }
    }
    v
}

#[test]
fn export_carries_signatures_and_import_then_verify_passes() {
    let e = Env::new();
    let (digest, out, policy) = signed_export(&e);
    let hex = digest.strip_prefix("sha256:").unwrap();

    // The layout holds the image, its .sig tag and the bundle referrer.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    let sig = format!("hello:sha256-{hex}.sig");
    assert!(refs.contains(&"hello:1.0.0"), "{refs:?}");
    assert!(refs.contains(&sig.as_str()), "{refs:?}");
    assert!(
        !out.join(".kiln").exists(),
        "private area leaked into the export"
    );

    // Fresh state dir: import, then the policy holds there.
    let other = e.path().join("airgap");
    let o = import(&e, &other, &out);
    assert!(o.status.success(), "import: {}", stderr(&o));
    let v = json(&o);
    assert!(!v["untagged"].as_array().unwrap().is_empty(), "{v}");
    let o = verify_at(&e, &other, &policy);
    assert!(
        o.status.success(),
        "verify after import: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let v = json(&o);
    assert_eq!(v["pass"], true);
    assert_eq!(v["digest"], digest.as_str());

    // Exporting again from the imported store gives the same layout index.
    let again = e.path().join("again");
    let o = run(kiln_at(&e, &other)
        .args(["export", &format!("hello@{digest}"), "--out"])
        .arg(&again));
    assert!(o.status.success(), "re-export: {}", stderr(&o));
    assert_eq!(
        fs::read(again.join("index.json")).unwrap(),
        fs::read(out.join("index.json")).unwrap()
    );
}

#[test]
#[ignore = "needs skopeo"]
fn skopeo_reads_the_export_and_its_copy_keeps_the_digest() {
    require("skopeo");
    let e = Env::new();
    let (digest, out, policy) = signed_export(&e);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", out.display())),
        digest
    );
    let copy = e.path().join("copy");
    let o = run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:hello:1.0.0", out.display()),
        &format!("oci:{}:hello:1.0.0", copy.display()),
    ]));
    assert!(o.status.success(), "skopeo copy: {}", stderr(&o));
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", copy.display())),
        digest
    );
    // skopeo copies the image, not its signatures: the import is intact, but the
    // signature rule fails there, while the full export passes.
    let other = e.path().join("from-copy");
    let o = import(&e, &other, &copy);
    assert!(o.status.success(), "import copy: {}", stderr(&o));
    let o = verify_at(&e, &other, &policy);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["verdicts"][0]["rule"], "integrity");
    assert_eq!(v["verdicts"][0]["pass"], true);
    assert_eq!(v["verdicts"][1]["pass"], false);

    let full = e.path().join("from-export");
    assert!(import(&e, &full, &out).status.success());
    assert!(verify_at(&e, &full, &policy).status.success());
}

#[test]
fn import_refuses_a_tampered_export_and_changes_nothing() {
    let e = Env::new();
    let (digest, out, policy) = signed_export(&e);
    let target = e.path().join("target");
    assert!(import(&e, &target, &out).status.success());
    let before = snapshot(&target);

    // Corrupt the image's largest layer in the export (same length).
    let m = manifest(&out, &digest);
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = out
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    for state in [target.clone(), e.path().join("fresh")] {
        let o = import(&e, &state, &out);
        assert_eq!(o.status.code(), Some(1), "tampered import succeeded");
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "blob {layer} is corrupt: its content hashes to sha256:"
            )),
            "{err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(err.contains(&out.display().to_string()), "{err}");
    }
    assert_eq!(
        snapshot(&target),
        before,
        "a refused import changed the store"
    );
    assert!(!e.path().join("fresh/store").exists());
    // The earlier, intact import still verifies.
    assert!(verify_at(&e, &target, &policy).status.success());
}

// ---- untagged images, `kiln gc`, `kiln images --all` (issue 11 item 10) ----

/// Build `hello:1.0.0` twice with different content; returns (first, second) digests.
fn build_twice(e: &Env) -> (String, String) {
    let first = e.build(&[]);
    fs::write(e.spec_dir().join("www/index.html"), "<p>second build</p>\n").unwrap();
    let second = e.build(&[]);
    assert_ne!(first, second);
    (first, second)
}

fn manifest_digests(state: &Path) -> Vec<String> {
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("store/index.json")).unwrap()).unwrap();
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

fn has_blob(state: &Path, digest: &str) -> bool {
    state
        .join("store/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
        .exists()
}

#[test]
fn a_moved_tag_leaves_the_old_image_addressable_until_gc() {
    let e = Env::new();
    let (first, second) = build_twice(&e);
    let first_m = manifest(&e.store(), &first);
    let first_layers: Vec<String> = first_m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();

    // Still inspectable and exportable by digest, with or without a name.
    for r in [format!("hello@{first}"), first.clone()] {
        let o = run(e.kiln().args(["--json", "inspect", &r]));
        assert!(o.status.success(), "inspect {r}: {}", stderr(&o));
    }
    let out = e.path().join("first");
    let o = run(e
        .kiln()
        .args(["--json", "export", &format!("hello@{first}"), "--out"])
        .arg(&out));
    assert!(o.status.success(), "export by digest: {}", stderr(&o));
    assert_eq!(json(&o)["digest"], first.as_str());
    // ...and that export imports elsewhere, addressable by digest there too.
    let other = e.path().join("other");
    assert!(import(&e, &other, &out).status.success());
    let o = run(kiln_at(&e, &other).args(["inspect", &first]));
    assert!(o.status.success(), "{}", stderr(&o));

    // Sign the tagged image: its .sig tag and bundle referrer must survive gc.
    let key = keygen(&e, "ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let before_gc = manifest_digests(&e.state());

    // Inside the default window nothing goes; a dry run changes nothing.
    let before = e.store_snapshot();
    let o = run(e.kiln().args(["--json", "gc"]));
    assert!(o.status.success(), "gc: {}", stderr(&o));
    assert!(json(&o)["removed"].as_array().unwrap().is_empty());
    let o = run(e
        .kiln()
        .args(["--json", "gc", "--keep-untagged", "0s", "--dry-run"]));
    assert!(o.status.success(), "gc --dry-run: {}", stderr(&o));
    assert!(!json(&o)["removed"].as_array().unwrap().is_empty());
    assert_eq!(e.store_snapshot(), before, "a dry run changed the store");

    let o = run(e.kiln().args(["--json", "gc", "--keep-untagged", "0s"]));
    assert!(o.status.success(), "gc: {}", stderr(&o));
    let v = json(&o);
    let removed: Vec<&str> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert!(removed.contains(&first.as_str()), "{v}");
    // Only the first image and what is attached to it (its SBOM referrers).
    for r in v["removed"].as_array().unwrap() {
        assert!(
            r["digest"] == first.as_str() || r["subject"] == first.as_str(),
            "{r}"
        );
    }
    let kept_before: Vec<String> = before_gc
        .into_iter()
        .filter(|d| !removed.contains(&d.as_str()))
        .collect();
    assert!(kept_before.len() >= 4, "{kept_before:?}");
    assert!(v["bytes_freed"].as_u64().unwrap() > 0, "{v}");
    // The first image and its now unreferenced blobs are gone...
    assert!(!has_blob(&e.state(), &first));
    let second_m = manifest(&e.store(), &second);
    let second_layers = second_m["layers"].to_string();
    for l in first_layers.iter().filter(|l| !second_layers.contains(*l)) {
        assert!(
            !has_blob(&e.state(), l),
            "layer {l} of the removed image stayed"
        );
    }
    let o = run(e.kiln().args(["inspect", &format!("hello@{first}")]));
    assert_eq!(o.status.code(), Some(1));
    // ...the tagged one, its .sig tag and every referrer stay, and it verifies.
    assert_eq!(
        manifest_digests(&e.state()),
        kept_before,
        "gc removed something that is kept"
    );
    let o = verify_at(&e, &e.state(), &policy(&e, "ci"));
    assert!(o.status.success(), "verify after gc: {}", stderr(&o));
    // gc is an audit event.
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "store.gc"]));
    let events = json(&o);
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    // Nothing left to do: a second run removes nothing.
    let o = run(e.kiln().args(["--json", "gc", "--keep-untagged", "0s"]));
    assert!(json(&o)["removed"].as_array().unwrap().is_empty());
    assert_eq!(json(&o)["blobs_removed"], 0);
}

#[test]
fn gc_keeps_an_image_a_fleet_release_references() {
    use kiln_fleet::state::{Db, FleetState, Release, ServiceState};
    let e = Env::new();
    let (first, _second) = build_twice(&e);
    // A stopped daemon's state: service web has a release of the first image.
    fs::write(e.path().join("trust.toml"), "").unwrap();
    let deploy = e.path().join("deploy.toml");
    let text = format!(
        "[service.web]\nimage = \"hello@{first}\"\nreplicas = 1\nlisten = \"127.0.0.1:18080\"\nport = 8080\nhealth = {{ http_get = \"/\" }}\npolicy = \"trust.toml\"\n"
    );
    fs::write(&deploy, &text).unwrap();
    let dep = kiln_fleet::Deployment::parse(&deploy, &text).unwrap();
    let spec = dep.services["web"].clone();
    let mut st = FleetState::default();
    st.services.insert(
        "web".into(),
        ServiceState {
            releases: vec![Release {
                id: "r1".into(),
                image: spec.image.clone(),
                spec,
                created: "2026-01-01T00:00:00Z".into(),
                baseline: None,
                reason: None,
            }],
            ..Default::default()
        },
    );
    fs::create_dir_all(e.state().join("fleet")).unwrap();
    let db = Db::open(&e.state().join("fleet/fleet.redb")).unwrap();
    db.save(&st).unwrap();
    drop(db);

    let o = run(e.kiln().args(["--json", "gc", "--keep-untagged", "0s"]));
    assert!(o.status.success(), "gc: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["pinned_by_fleet"][0], first.as_str(), "{v}");
    assert!(v["removed"].as_array().unwrap().is_empty(), "{v}");
    let o = run(e.kiln().args(["inspect", &format!("hello@{first}")]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn gc_asks_a_running_daemon_which_images_releases_use() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    let e = Env::new();
    let (first, _second) = build_twice(&e);
    // A stand-in for `kiln serve` on its API socket: answers the read-only
    // `images` request with the first image.
    let sock = e.state().join("fleet/kiln.sock");
    fs::create_dir_all(sock.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&sock).unwrap();
    let reply = first.clone();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let req: serde_json::Value = serde_json::from_str(&line).unwrap();
        let resp = serde_json::json!({"ok": true, "result": {"images": [reply]}});
        (&s).write_all(format!("{resp}\n").as_bytes()).unwrap();
        req
    });
    let o = run(e.kiln().args(["--json", "gc", "--keep-untagged", "0s"]));
    assert!(o.status.success(), "gc: {}", stderr(&o));
    assert_eq!(server.join().unwrap()["op"], "images");
    let v = json(&o);
    assert_eq!(v["pinned_by_fleet"][0], first.as_str(), "{v}");
    assert!(v["removed"].as_array().unwrap().is_empty(), "{v}");
    // A daemon that refuses the question: gc refuses too, deleting nothing.
    let before = e.store_snapshot();
    let listener = UnixListener::bind({
        fs::remove_file(&sock).unwrap();
        &sock
    })
    .unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        (&s).write_all(b"{\"ok\":false,\"error\":\"bad request\"}\n")
            .unwrap();
    });
    let o = run(e.kiln().args(["gc", "--keep-untagged", "0s"]));
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("asking kiln serve"), "{}", stderr(&o));
    assert_eq!(e.store_snapshot(), before);
}

#[test]
fn images_hides_signatures_unless_all_and_keeps_columns_aligned() {
    let e = Env::new();
    let (first, second) = build_twice(&e);
    let long = "registry.example.com:5000/platform/payments/a-rather-long-service-name";
    let spec = e
        .spec_text()
        .replace("name = \"hello\"", &format!("name = \"{long}\""))
        .replace(
            "tag = \"1.0.0\"",
            "tag = \"2026.12.06-release-candidate-17\"",
        );
    e.write_spec(&spec);
    e.build(&[]);
    let key = keygen(&e, "ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign: {}", stderr(&o));

    let o = run(e.kiln().args(["images"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!out.contains(".sig"), "{out}");
    assert!(!out.contains(&first), "{out}");
    assert!(out.contains(&second), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let col = |l: &str| l.find("sha256:").or_else(|| l.find("DIGEST")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().all(|l| col(l) == col(lines[0])),
        "DIGEST column not aligned:\n{out}"
    );
    let json_rows = json(&run(e.kiln().args(["--json", "images"])));
    assert_eq!(json_rows.as_array().unwrap().len(), 2, "{json_rows}");

    let o = run(e.kiln().args(["images", "--all"]));
    let all = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(all.contains(".sig"), "{all}");
    assert!(all.contains(&first), "untagged image not listed:\n{all}");
    assert!(all.contains("<referrer>"), "{all}");
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines.iter().all(|l| col(l) == col(lines[0])),
        "DIGEST column not aligned:\n{all}"
    );
}

// ---- single-image archives for container engines (issue 11 item 14) ----

fn export_archive(e: &Env, format: &str) -> (PathBuf, serde_json::Value) {
    let file = e.path().join(format!("hello-{format}.tar"));
    let o = run(e
        .kiln()
        .args([
            "--json",
            "export",
            "hello:1.0.0",
            "--format",
            format,
            "--out",
        ])
        .arg(&file));
    assert!(o.status.success(), "export {format}: {}", stderr(&o));
    (file, json(&o))
}

#[test]
fn archives_import_back_verified() {
    let e = Env::new();
    let digest = e.build(&[]);
    let (oci, v) = export_archive(&e, "oci-archive");
    assert_eq!(v["digest"], digest.as_str());
    let config = v["config"].as_str().unwrap().to_string();
    let (docker, _) = export_archive(&e, "docker-archive");

    // oci-archive: the same manifest digest on the other side.
    let a = e.path().join("from-oci");
    let o = import(&e, &a, &oci);
    assert!(o.status.success(), "import oci-archive: {}", stderr(&o));
    let o = run(kiln_at(&e, &a).args(["--json", "inspect", "hello:1.0.0"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stdout
            .windows(digest.len())
            .any(|w| w == digest.as_bytes())
    );

    // docker-archive: uncompressed layers, so a new manifest, but kiln's config.
    let b = e.path().join("from-docker");
    let o = import(&e, &b, &docker);
    assert!(o.status.success(), "import docker-archive: {}", stderr(&o));
    let v = json(&o);
    let imported = v["tags"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(v["tags"][0]["ref"], "hello:1.0.0");
    let m = manifest(&b.join("store"), &imported);
    assert_eq!(m["config"]["digest"], config.as_str());
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    }
    assert!(
        !b.join("tmp")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );

    // A tampered layer inside a docker archive is refused, nothing imported.
    let mut bytes = fs::read(&docker).unwrap();
    let needle = b"served from an immutable";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the page is in an uncompressed layer");
    bytes[at] ^= 0x20;
    let bad = e.path().join("bad.tar");
    fs::write(&bad, &bytes).unwrap();
    let c = e.path().join("from-bad");
    let o = import(&e, &c, &bad);
    assert_eq!(o.status.code(), Some(1), "tampered archive imported");
    assert!(stderr(&o).contains("diff_id"), "{}", stderr(&o));
    assert!(!c.join("store").exists());
    assert!(!c.join("tmp").exists(), "the scratch directory stayed");
}

/// `podman` with a private store under `dir` (never the host's).
fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ]);
    c
}

#[test]
#[ignore = "needs podman"]
fn podman_loads_both_archives_with_kilns_digest_and_config() {
    require("podman");
    let e = Env::new();
    let digest = e.build(&[]);
    for format in ["oci-archive", "docker-archive"] {
        let (file, v) = export_archive(&e, format);
        let config = v["config"].as_str().unwrap().to_string();
        let dir = e.path().join(format!("podman-{format}"));
        let o = run(podman(&dir).args(["load", "-i"]).arg(&file));
        assert!(
            o.status.success(),
            "podman load {format}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        let o = run(podman(&dir).args(["image", "inspect", &config.replace("sha256:", "")]));
        assert!(o.status.success(), "podman image inspect: {}", stderr(&o));
        let v = &json(&o)[0];
        assert_eq!(v["Id"], config.strip_prefix("sha256:").unwrap(), "{v:#}");
        if format == "oci-archive" {
            assert_eq!(v["Digest"], digest.as_str(), "{v:#}");
        }
        assert_eq!(
            v["Config"]["Entrypoint"],
            serde_json::json!(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]),
            "{v:#}"
        );
        let env = v["Config"]["Env"].to_string();
        assert!(env.contains("LOG_LEVEL=info"), "{env}");
        let kiln_config: serde_json::Value =
            serde_json::from_slice(&blob(&e.store(), &config)).unwrap();
        assert!(kiln_config["config"]["Labels"].is_object());
        assert_eq!(
            v["Config"]["Labels"], kiln_config["config"]["Labels"],
            "{v:#}"
        );
        assert!(
            v["RepoTags"].to_string().contains("hello:1.0.0"),
            "{}",
            v["RepoTags"]
        );
        let _ = run(podman(&dir).args(["rmi", "-a", "-f"]));
    }
}
