//! Generate bundles from a real audit log and store, verify them, and
//! tamper with each kind of file.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_audit::{AuditLog, Event, Resource};
use kiln_evidence::{
    EvidenceError, KeySource, Options, Status, VerifyFailure, framework, generate, manifest, verify,
};
use kiln_oci::{Descriptor, ImageManifest, Store, media};
use kiln_tlog::{Signer, sign_note};
use sha2::{Digest as _, Sha256};

struct Fixture {
    tmp: tempfile::TempDir,
    image: String,
}

impl Fixture {
    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
    fn out(&self) -> PathBuf {
        self.tmp.path().join("evidence")
    }
    fn log(&self) -> AuditLog {
        AuditLog::open(&self.state()).unwrap()
    }
    fn signer(&self) -> Signer {
        AuditLog::signer(&self.state()).unwrap()
    }
    fn generate(&self, fw: &str) -> Result<kiln_evidence::Generated, EvidenceError> {
        let store = Store::open(self.state().join("store")).unwrap();
        generate(
            &self.log(),
            &self.signer(),
            Some(&store),
            &Options {
                framework: framework(fw).unwrap(),
                out: self.out(),
                since: None,
                until: None,
                now: None,
            },
        )
    }
}

fn manifest_with(
    st: &mut kiln_oci::Staging,
    artifact_type: Option<&str>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: &[(&str, &str)],
) -> Descriptor {
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.to_string()),
        artifact_type: artifact_type.map(str::to_string),
        config,
        layers,
        subject,
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut d = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
    d.artifact_type = artifact_type.map(str::to_string);
    d
}

/// A store with one image (config carrying a baseline), an SPDX referrer,
/// a provenance DSSE referrer and a cosign .sig tag; and a log of the
/// events kiln records for it.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let store = Store::open_or_init(state.join("store")).unwrap();
    let mut st = store.staging().unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"dev.kiln.baseline":"{\"ingress\":[8080],\"egress\":[]}"}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cfg = st.put(media::CONFIG, config).unwrap();
    let layer = st.put(media::LAYER_TAR, b"not really a tar").unwrap();
    let image = manifest_with(&mut st, None, cfg, vec![layer], None, &[]);
    let spdx = st
        .put("application/spdx+json", br#"{"spdxVersion":"SPDX-2.3"}"#)
        .unwrap();
    let sbom = manifest_with(
        &mut st,
        Some("application/spdx+json"),
        Descriptor::empty(),
        vec![spdx],
        Some(image.clone()),
        &[],
    );
    st.put(media::EMPTY, media::EMPTY_CONTENT).unwrap();
    let env = st
        .put(
            "application/vnd.dsse.envelope.v1+json",
            br#"{"payloadType":"x"}"#,
        )
        .unwrap();
    let prov = manifest_with(
        &mut st,
        Some("application/vnd.dsse.envelope.v1+json"),
        Descriptor::empty(),
        vec![env],
        Some(image.clone()),
        &[(
            "in-toto.io/predicate-type",
            "https://slsa.dev/provenance/v1",
        )],
    );
    let payload = st
        .put("application/vnd.dev.cosign.simplesigning.v1+json", b"{}x")
        .unwrap();
    let sig = manifest_with(&mut st, None, Descriptor::empty(), vec![payload], None, &[]);
    st.commit().unwrap();
    store.tag("hello", "1.0.0", &image).unwrap();
    store
        .tag("hello", &format!("sha256-{}.sig", image.digest.hex()), &sig)
        .unwrap();
    store.add_untagged(&[sbom, prov]).unwrap();

    let log = AuditLog::open(&state).unwrap();
    let img = || Resource::named("image", image.digest.to_string(), "hello:1.0.0");
    log.record(
        &Event::new("key.generate", "kiln key generate").resource(Resource::new("key", "sha256:k")),
    )
    .unwrap();
    log.record(&Event::new("image.build", "kiln build").resource(img()))
        .unwrap();
    log.record(
        &Event::new("image.sign", "kiln sign")
            .resource(img())
            .key("sha256:k"),
    )
    .unwrap();
    log.record(
        &Event::new("image.approve", "kiln approve")
            .resource(img())
            .key("sha256:k")
            .reason(Some("CHG-1 <script>alert('x')</script>")),
    )
    .unwrap();
    log.record(
        &Event::new("image.verify", "kiln verify")
            .resource(img())
            .failed("signature rule: 0 of 1"),
    )
    .unwrap();
    log.record(&Event::new("image.verify", "kiln verify").resource(img()))
        .unwrap();
    Fixture {
        tmp,
        image: image.digest.to_string(),
    }
}

fn files(root: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                go(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut v = Vec::new();
    go(root, root, &mut v);
    v.sort();
    v
}

/// Re-sign the MANIFEST over the bundle as it now is (what a forger with
/// the key could do), to reach the checks behind it.
fn resign(dir: &Path, signer: &Signer) {
    let entries: Vec<(String, [u8; 32])> = files(dir)
        .into_iter()
        .filter(|f| f != "MANIFEST")
        .map(|f| {
            let h: [u8; 32] = Sha256::digest(fs::read(dir.join(&f)).unwrap()).into();
            (f, h)
        })
        .collect();
    let note = sign_note(&manifest::render(&entries), signer).unwrap();
    fs::write(dir.join("MANIFEST"), note).unwrap();
}

fn flip(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

fn expect_fail(dir: &Path, key: Option<&kiln_tlog::Verifier>) -> VerifyFailure {
    match verify(dir, key) {
        Ok(r) => panic!("verification passed: {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn generates_a_bundle_that_verifies_offline() {
    let f = fixture();
    let g = f.generate("pci-dss-4.0").unwrap();
    let ev = &g.evidence;
    let status = |id: &str| {
        ev.requirements
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no requirement {id}"))
            .status
    };
    assert_eq!(status("10.2.1"), Status::Satisfied);
    assert_eq!(status("10.2.2"), Status::Satisfied);
    assert_eq!(status("10.3.2"), Status::Satisfied);
    assert_eq!(status("10.3.4"), Status::Partial); // consistency yes, no log.verify events
    assert_eq!(status("6.3.1"), Status::Partial); // SBOM yes, no scans
    assert_eq!(status("6.3.3"), Status::Missing);
    assert_eq!(status("11.5.2"), Status::Missing);
    assert_eq!(status("12.5.1"), Status::Partial);
    assert_eq!(status("1.2.1"), Status::Partial); // build + baseline, no fleet
    assert_eq!(status("10.7.3"), Status::Partial); // a failed verify, no response yet
    let r = ev.requirements.iter().find(|r| r.id == "6.3.3").unwrap();
    assert!(r.missing.iter().any(|m| m.why.contains("scan")));
    assert_eq!(ev.log.events_in_period, 6);
    assert_eq!(ev.summary.events_cited, 6);
    let kinds: Vec<&str> = ev.artifacts.iter().map(|a| a.kind.as_str()).collect();
    for k in [
        "image-manifest",
        "image-config",
        "sbom-spdx",
        "provenance",
        "cosign-signature",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    assert_eq!(ev.images[0].digest, f.image);
    assert_eq!(ev.images[0].baseline.as_ref().unwrap()["ingress"][0], 8080);
    let c = ev.log.consistency.as_ref().unwrap();
    assert!(c.old_size < c.new_size);

    // Layout.
    let all = files(&g.out);
    for want in [
        "MANIFEST",
        "evidence.json",
        "index.html",
        "log/checkpoint",
        "log/verifier.key",
        "log/events/0.json",
        "log/proofs/5.json",
        "log/consistency.json",
    ] {
        assert!(all.contains(&want.to_string()), "{want} not in {all:?}");
    }
    assert_eq!(g.files, all.len());
    let html = fs::read_to_string(g.out.join("index.html")).unwrap();
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("http://") && !html.contains("https://slsa"));

    // Offline: copy the bundle away from the state dir.
    let copy = f.tmp.path().join("copy");
    copy_dir(&g.out, &copy);
    fs::remove_dir_all(f.state()).unwrap();
    let r = verify(&copy, None).unwrap();
    assert_eq!(r.key_source, KeySource::Bundle);
    assert_eq!(r.events, 6);
    assert_eq!(r.framework, "pci-dss-4.0");
    let key = kiln_tlog::Verifier::from_key_str(&ev.log.verifier_key).unwrap();
    let r = verify(&copy, Some(&key)).unwrap();
    assert_eq!(r.key_source, KeySource::Given);
    assert_eq!(r.summary.satisfied, ev.summary.satisfied);
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn every_tampered_file_is_named() {
    let f = fixture();
    let g = f.generate("pci-dss-4.0").unwrap();
    let key = kiln_tlog::Verifier::from_key_str(&g.evidence.log.verifier_key).unwrap();
    for file in files(&g.out) {
        let copy = f.tmp.path().join("t");
        let _ = fs::remove_dir_all(&copy);
        copy_dir(&g.out, &copy);
        flip(&copy.join(&file));
        for k in [None, Some(&key)] {
            let e = expect_fail(&copy, k);
            let named = e.path.as_deref().unwrap_or("");
            // A changed key makes the MANIFEST signature (or the key match) fail.
            let ok = named == file || (file == "log/verifier.key" && named == "MANIFEST");
            assert!(ok, "tampering {file} (key {k:?}) reported as {e}");
        }
    }
}

#[test]
fn unlisted_and_missing_files_fail() {
    let f = fixture();
    let g = f.generate("soc2").unwrap();
    fs::write(g.out.join("artifacts/extra"), b"x").unwrap();
    let e = expect_fail(&g.out, None);
    assert_eq!(e.path.as_deref(), Some("artifacts/extra"));
    assert!(e.message.contains("not listed"), "{e}");
    fs::remove_file(g.out.join("artifacts/extra")).unwrap();
    verify(&g.out, None).unwrap();
    fs::remove_file(g.out.join("log/proofs/1.json")).unwrap();
    let e = expect_fail(&g.out, None);
    assert_eq!(e.path.as_deref(), Some("log/proofs/1.json"));
    assert!(e.message.contains("missing"), "{e}");
}

#[test]
fn forged_manifest_signatures_fail() {
    let f = fixture();
    let g = f.generate("pci-dss-4.0").unwrap();
    let real = kiln_tlog::Verifier::from_key_str(&g.evidence.log.verifier_key).unwrap();
    let origin = g.evidence.log.origin.clone();
    let forger = Signer::from_seed(&origin, &[7u8; 32]).unwrap();

    // Re-signed by another key: the trusted key refuses it outright.
    let copy = f.tmp.path().join("forged");
    copy_dir(&g.out, &copy);
    resign(&copy, &forger);
    let e = expect_fail(&copy, Some(&real));
    assert_eq!(e.path.as_deref(), Some("MANIFEST"), "{e}");
    // ... and swapping in the forger's key does not get past the checkpoint.
    fs::write(
        copy.join("log/verifier.key"),
        format!("{}\n", forger.verifier().to_key_str()),
    )
    .unwrap();
    resign(&copy, &forger);
    let e = expect_fail(&copy, None);
    assert_eq!(e.path.as_deref(), Some("log/checkpoint"), "{e}");
    let e = expect_fail(&copy, Some(&real));
    assert_eq!(e.path.as_deref(), Some("log/verifier.key"), "{e}");

    // A signature line with the right key name and id but garbage bytes.
    let copy = f.tmp.path().join("garbled");
    copy_dir(&g.out, &copy);
    let m = fs::read_to_string(copy.join("MANIFEST")).unwrap();
    let (body, sig) = m.rsplit_once(' ').unwrap();
    let mut sig: Vec<u8> = sig.trim_end().bytes().collect();
    let i = 10;
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    fs::write(
        copy.join("MANIFEST"),
        format!("{body} {}\n", String::from_utf8(sig).unwrap()),
    )
    .unwrap();
    let e = expect_fail(&copy, None);
    assert_eq!(e.path.as_deref(), Some("MANIFEST"), "{e}");
}

#[test]
fn checks_behind_the_manifest_name_the_event() {
    let f = fixture();
    let g = f.generate("pci-dss-4.0").unwrap();
    let signer = f.signer();

    // A rewritten event, re-hashed and re-signed: its inclusion proof fails.
    let copy = f.tmp.path().join("event");
    copy_dir(&g.out, &copy);
    let p = copy.join("log/events/3.json");
    let t = fs::read_to_string(&p).unwrap().replace("CHG-1", "CHG-2");
    fs::write(&p, t).unwrap();
    resign(&copy, &signer);
    let e = expect_fail(&copy, None);
    assert_eq!(e.index, Some(3), "{e}");

    // A changed proof hash.
    let copy = f.tmp.path().join("proof");
    copy_dir(&g.out, &copy);
    let p = copy.join("log/proofs/2.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    v["hashes"][0] = serde_json::Value::String("00".repeat(32));
    fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    resign(&copy, &signer);
    let e = expect_fail(&copy, None);
    assert_eq!(
        (e.path.as_deref(), e.index),
        (Some("log/events/2.json"), Some(2)),
        "{e}"
    );

    // evidence.json recording a different artifact digest.
    let copy = f.tmp.path().join("artifact");
    copy_dir(&g.out, &copy);
    let p = copy.join("evidence.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    let path = v["artifacts"][0]["path"].as_str().unwrap().to_string();
    v["artifacts"][0]["digest"] = serde_json::Value::String(format!("sha256:{}", "11".repeat(32)));
    fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    resign(&copy, &signer);
    let e = expect_fail(&copy, None);
    assert_eq!(e.path.as_deref(), Some(path.as_str()), "{e}");

    // evidence.json misdescribing a cited event.
    let copy = f.tmp.path().join("cited");
    copy_dir(&g.out, &copy);
    let p = copy.join("evidence.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    for r in v["requirements"].as_array_mut().unwrap() {
        for e in r["events"].as_array_mut().unwrap() {
            if e["index"] == 4 {
                e["outcome"] = "success".into();
            }
        }
    }
    fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    resign(&copy, &signer);
    let e = expect_fail(&copy, None);
    assert_eq!(
        (e.path.as_deref(), e.index),
        (Some("evidence.json"), Some(4)),
        "{e}"
    );

    // A consistency proof from a different old tree.
    let copy = f.tmp.path().join("consistency");
    copy_dir(&g.out, &copy);
    let p = copy.join("log/consistency.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    v["hashes"][0] = serde_json::Value::String("22".repeat(32));
    fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    resign(&copy, &signer);
    let e = expect_fail(&copy, None);
    assert_eq!(e.path.as_deref(), Some("log/consistency.json"), "{e}");
}

#[test]
fn out_directory_rules() {
    let f = fixture();
    // A non-empty directory that is not a bundle is refused and left alone.
    fs::create_dir_all(f.out()).unwrap();
    fs::write(f.out().join("notes.txt"), b"mine").unwrap();
    assert!(matches!(
        f.generate("soc2"),
        Err(EvidenceError::OutNotEmpty(_))
    ));
    assert_eq!(fs::read(f.out().join("notes.txt")).unwrap(), b"mine");
    fs::remove_file(f.out().join("notes.txt")).unwrap();
    // An empty one is fine; a previous bundle is replaced.
    let a = f.generate("soc2").unwrap();
    assert_eq!(a.evidence.framework.id, "soc2");
    let b = f.generate("nist-800-190").unwrap();
    assert_eq!(b.evidence.framework.id, "nist-800-190");
    verify(&f.out(), None).unwrap();
    let siblings: Vec<_> = fs::read_dir(f.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        siblings
            .iter()
            .all(|s| !s.contains("kiln-tmp") && !s.contains("kiln-old")),
        "{siblings:?}"
    );
}

#[test]
fn a_log_without_checkpoint_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(tmp.path()).unwrap();
    let signer = AuditLog::signer(tmp.path()).unwrap();
    let out = tmp.path().join("ev");
    let r = generate(
        &log,
        &signer,
        None,
        &Options {
            framework: framework("pci-dss-4.0").unwrap(),
            out: out.clone(),
            since: None,
            until: None,
            now: None,
        },
    );
    assert!(matches!(r, Err(EvidenceError::NoCheckpoint)), "{r:?}");
    assert!(!out.exists());
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only the log dir");
}

#[test]
fn the_period_selects_events() {
    let f = fixture();
    let store = Store::open(f.state().join("store")).unwrap();
    let future = kiln_evidence::parse_date("2999-01-01", false).unwrap();
    let g = generate(
        &f.log(),
        &f.signer(),
        Some(&store),
        &Options {
            framework: framework("pci-dss-4.0").unwrap(),
            out: f.out(),
            since: Some(future),
            until: None,
            now: None,
        },
    )
    .unwrap();
    assert_eq!(g.evidence.log.events_in_period, 0);
    let r10 = g
        .evidence
        .requirements
        .iter()
        .find(|r| r.id == "10.2.1")
        .unwrap();
    assert_eq!(r10.status, Status::Missing);
    // Retention still cites the log's first event.
    let r105 = g
        .evidence
        .requirements
        .iter()
        .find(|r| r.id == "10.5.1")
        .unwrap();
    assert_eq!(r105.events.len(), 1);
    assert_eq!(r105.events[0].index, 0);
    verify(&f.out(), None).unwrap();
    let bad = generate(
        &f.log(),
        &f.signer(),
        Some(&store),
        &Options {
            framework: framework("soc2").unwrap(),
            out: f.out(),
            since: Some(future),
            until: Some(0),
            now: None,
        },
    );
    assert!(matches!(bad, Err(EvidenceError::EmptyPeriod { .. })));
}

/// Runs `f` on a thread; a read that blocks (a FIFO opened for reading
/// waits for a writer forever) fails the test instead of hanging it.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("verify blocked: killed after 60 s")
}

/// A bundle is untrusted input: a FIFO, a link (to /dev/zero, or a whole
/// directory linked to a copy elsewhere) or an oversized file is refused at
/// once, naming the file and the cause.
#[test]
fn hostile_bundle_files_are_refused_without_blocking() {
    let f = fixture();
    let g = f.generate("pci-dss-4.0").unwrap();
    let artifact = files(&g.out)
        .into_iter()
        .find(|p| p.starts_with("artifacts/"))
        .expect("an artifact");
    type Spoil = Box<dyn Fn(&Path)>;
    let mkfifo: Spoil = Box::new(|p: &Path| {
        fs::remove_file(p).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    });
    let zero: Spoil = Box::new(|p: &Path| {
        fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    });
    let big_key: Spoil = Box::new(|p: &Path| fs::write(p, vec![b'k'; 2 << 20]).unwrap());
    let huge: Spoil = Box::new(|p: &Path| {
        fs::OpenOptions::new()
            .write(true)
            .open(p)
            .and_then(|f| f.set_len(kiln_evidence::MAX_BUNDLE_FILE + 1))
            .unwrap()
    });
    let cases: Vec<(&str, Spoil, &str)> = vec![
        ("MANIFEST", mkfifo, "FIFO"),
        ("log/verifier.key", zero, "symbolic link"),
        ("log/verifier.key", big_key, "larger than 1 MiB"),
        (artifact.as_str(), huge, "larger than 1024 MiB"),
    ];
    for (rel, spoil, want) in cases {
        let copy = f.tmp.path().join("h");
        let _ = fs::remove_dir_all(&copy);
        copy_dir(&g.out, &copy);
        spoil(&copy.join(rel));
        let c = copy.clone();
        let e = within_a_minute(move || verify(&c, None).map(|_| ())).expect_err(rel);
        assert_eq!(e.path.as_deref(), Some(rel), "{e}");
        assert!(e.message.contains(want), "{rel}: {e}");
    }
    // The log directory linked to an intact copy elsewhere.
    let copy = f.tmp.path().join("h");
    let _ = fs::remove_dir_all(&copy);
    copy_dir(&g.out, &copy);
    let moved = f.tmp.path().join("log-elsewhere");
    fs::rename(copy.join("log"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, copy.join("log")).unwrap();
    let e = verify(&copy, None).unwrap_err();
    assert!(e.message.contains("log is a symbolic link"), "{e}");
}
