//! Keys and registry distribution: `kiln key generate`, `kiln push`,
//! `kiln pull` against Debian's real docker-registry, checked with skopeo.
//! Tests that need the registry or a tool are `#[ignore]`d.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn key_generate_writes_a_cosign_format_key_and_a_pem_public_key() {
    let e = Env::new();
    let base = e.path().join("ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "s3cret")
        .args(["--json", "key", "generate"])
        .arg(&base));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["algorithm"], "ecdsa-sha2-nistp256");
    assert_eq!(r["key_id"].as_str().unwrap().len(), 64);
    let key = fs::read_to_string(base.with_extension("key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{key}"
    );
    assert!(!key.contains("s3cret"));
    let mode = fs::metadata(base.with_extension("key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // No password and no --unencrypted: refused, nothing written.
    let other = e.path().join("other");
    let o = run(e
        .kiln()
        .env_remove("KILN_KEY_PASSWORD")
        .args(["key", "generate"])
        .arg(&other));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("KILN_KEY_PASSWORD"), "{}", stderr(&o));
    assert!(!other.with_extension("key").exists());
    // An existing key is never overwritten silently.
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "x")
        .args(["key", "generate"])
        .arg(&base));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fs::read_to_string(base.with_extension("key")).unwrap(), key);
    // Ed25519, unencrypted.
    let ed = e.path().join("ed");
    let o = run(e
        .kiln()
        .args(["key", "generate", "--algorithm", "ed25519", "--unencrypted"])
        .arg(&ed));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        fs::read_to_string(ed.with_extension("key"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

/// Debian's docker-registry on 127.0.0.1, stopped on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one; fails the test if docker-registry is not installed.
    pub(crate) fn start() -> Registry {
        Registry::start_with("")
    }

    /// `http_extra` is appended under `http:` (e.g. a `tls:` section).
    fn start_with(http_extra: &str) -> Registry {
        assert!(
            std::path::Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed (scripts/install-deps.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(&mut s).read_line(&mut line).is_ok() && line.starts_with("HTTP/")
                {
                    return reg;
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// openssl reads the PEM public key `kiln key generate` writes.
#[test]
#[ignore = "needs openssl"]
fn openssl_reads_the_generated_public_key() {
    require("openssl");
    let e = Env::new();
    let base = e.path().join("ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "s3cret")
        .args(["key", "generate"])
        .arg(&base));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-in"])
        .arg(base.with_extension("pub")));
    assert!(
        o.status.success(),
        "openssl rejects the public key: {}",
        stderr(&o)
    );
}

#[test]
#[ignore = "needs docker-registry and skopeo"]
fn push_then_pull_round_trips_the_image_and_its_sboms() {
    require("skopeo");
    let reg = Registry::start();
    let e = Env::new();
    let d = e.build(&[]);
    let target = format!("127.0.0.1:{}/hello:1.0.0", reg.port);
    let o = run(e
        .kiln()
        .args(["--json", "push", "hello:1.0.0", &target, "--insecure"]));
    assert!(o.status.success(), "push: {}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["digest"], d.as_str());
    assert_eq!(r["referrers"].as_array().unwrap().len(), 3);
    {
        let o = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(json(&o)["Digest"], d.as_str());
    }
    // Pull into a fresh state dir: same digest, SBOMs attached again.
    let other = e.path().join("state-b");
    let o =
        run(e
            .kiln()
            .env("KILN_STATE_DIR", &other)
            .args(["--json", "pull", &target, "--insecure"]));
    assert!(o.status.success(), "pull: {}", stderr(&o));
    assert_eq!(json(&o)["digest"], d.as_str());
    assert_eq!(json(&o)["referrers"].as_array().unwrap().len(), 3);
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["sbom", &target, "--format", "spdx"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["spdxVersion"], "SPDX-2.3");
    // By digest too.
    let by_digest = format!("127.0.0.1:{}/hello@{d}", reg.port);
    let third = e.path().join("state-c");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &third)
        .args(["pull", &by_digest, "--insecure"]));
    assert!(o.status.success(), "pull by digest: {}", stderr(&o));
    assert_eq!(last_line(&o), d);
}

#[test]
fn insecure_is_only_for_loopback_and_unknown_images_fail_cleanly() {
    let e = Env::new();
    e.build(&[]);
    let o = run(e.kiln().args([
        "push",
        "hello:1.0.0",
        "registry.example.com/hello:1",
        "--insecure",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).to_lowercase().contains("loopback"),
        "{}",
        stderr(&o)
    );
    let o = run(e
        .kiln()
        .args(["push", "hello:9.9.9", "127.0.0.1:1/hello:1", "--insecure"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no image hello:9.9.9"),
        "{}",
        stderr(&o)
    );
}

#[test]
#[ignore = "needs docker-registry and skopeo"]
fn a_signed_image_still_verifies_after_push_and_pull() {
    require("skopeo");
    let reg = Registry::start();
    let e = Env::new();
    let d = e.build(&[]);
    let key = e.path().join("ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "pw")
        .args(["key", "generate"])
        .arg(&key));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "pw")
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(key.with_extension("key")));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n",
    )
    .unwrap();
    let target = format!("127.0.0.1:{}/hello:1.0.0", reg.port);
    let o = run(e
        .kiln()
        .args(["--json", "push", "hello:1.0.0", &target, "--insecure"]));
    assert!(o.status.success(), "push: {}", stderr(&o));
    let sig_tag = format!("sha256-{}.sig", &d[7..]);
    assert_eq!(json(&o)["signatures"]["tag"], sig_tag.as_str());
    {
        let o = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://127.0.0.1:{}/hello:{sig_tag}", reg.port),
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout)
                .contains("application/vnd.dev.cosign.simplesigning.v1+json")
        );
    }
    // Pulled elsewhere, the image verifies against the same policy (via
    // the Sigstore bundle that travelled as a referrer).
    let other = e.path().join("state-b");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["pull", &target, "--insecure"]));
    assert!(o.status.success(), "pull: {}", stderr(&o));
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["verify", &target, "--policy"])
        .arg(&policy));
    assert!(
        o.status.success(),
        "verify after pull: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// The artifactType of each referrer of `digest` in the store at `state`, sorted.
fn referrer_types(state: &Path, digest: &str) -> Vec<String> {
    let s = kiln_oci::Store::open(state.join("store")).unwrap();
    let mut t: Vec<String> = s
        .referrers(&digest.parse().unwrap())
        .unwrap()
        .into_iter()
        .map(|(_, m)| m.artifact_type.unwrap_or_default())
        .collect();
    t.sort();
    t
}

/// Provenance, an approval and a signature, each attestation also as a Sigstore bundle:
/// push/pull and export/import carry every referrer, and the copy verifies with each
/// attestation counted once.
#[test]
#[ignore = "needs docker-registry"]
fn attestation_bundles_travel_with_the_image() {
    let reg = Registry::start();
    let e = Env::new();
    let ci = keygen(&e, "ci");
    let alice = keygen(&e, "alice");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["build", "-f"])
        .arg(e.spec())
        .arg("--sign-key")
        .arg(&ci));
    assert!(o.status.success(), "build: {}", stderr(&o));
    let d = last_line(&o);
    for (cmd, key) in [
        (["approve", "--reason"].as_slice(), &alice),
        (&["sign"], &ci),
    ] {
        let mut c = e.kiln();
        c.env("KILN_KEY_PASSWORD", PASSWORD)
            .arg(cmd[0])
            .arg("hello:1.0.0");
        if cmd.len() > 1 {
            c.args([cmd[1], "CHG-7 reviewed"]);
        }
        let o = run(c.arg("--key").arg(key));
        assert!(o.status.success(), "{}: {}", cmd[0], stderr(&o));
    }
    let bundle = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let dsse = "application/vnd.dsse.envelope.v1+json";
    let local = referrer_types(&e.path().join("state"), &d);
    // Provenance and approval: a DSSE referrer and a bundle each; the signature: a bundle.
    assert_eq!(
        local.iter().filter(|t| *t == bundle).count(),
        3,
        "{local:?}"
    );
    assert_eq!(local.iter().filter(|t| *t == dsse).count(), 2, "{local:?}");
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\nalice = \"alice.pub\"\n\n\
         [roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n\
         [roles.reviewers]\nkeys = [\"alice\"]\nthreshold = 1\n\n\
         [require]\nsignature = \"builder\"\nprovenance = \"builder\"\napprovals = \"reviewers\"\n",
    )
    .unwrap();
    let verify_in = |state: &Path, image: &str| {
        let o = run(e
            .kiln()
            .env("KILN_STATE_DIR", state)
            .args(["verify", image, "--policy"])
            .arg(&policy));
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(o.status.success(), "verify: {out}");
        for t in ["slsa.dev/provenance/v1", "kiln.dev/approval/v1"] {
            assert!(out.contains(&format!("1 https://{t} envelope(s)")), "{out}");
        }
        // (The signature rule lists the .sig and the bundle: two signatures, one key.)
        assert!(!out.contains("counted twice"), "{out}");
    };
    verify_in(&e.path().join("state"), "hello:1.0.0");

    let target = format!("127.0.0.1:{}/hello:1.0.0", reg.port);
    let o = run(e
        .kiln()
        .args(["--json", "push", "hello:1.0.0", &target, "--insecure"]));
    assert!(o.status.success(), "push: {}", stderr(&o));
    let pushed: Vec<String> = json(&o)["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["artifactType"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(pushed.len(), local.len(), "{pushed:?}");
    let pulled = e.path().join("state-pulled");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &pulled)
        .args(["pull", &target, "--insecure"]));
    assert!(o.status.success(), "pull: {}", stderr(&o));
    assert_eq!(referrer_types(&pulled, &d), local);
    verify_in(&pulled, &target);

    let layout = e.path().join("export");
    let o = run(e
        .kiln()
        .args(["export", "hello:1.0.0", "--out"])
        .arg(&layout));
    assert!(o.status.success(), "export: {}", stderr(&o));
    let imported = e.path().join("state-imported");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &imported)
        .arg("import")
        .arg(&layout));
    assert!(o.status.success(), "import: {}", stderr(&o));
    assert_eq!(referrer_types(&imported, &d), local);
    verify_in(&imported, "hello:1.0.0");
}

#[test]
#[ignore = "needs docker-registry and skopeo"]
fn skopeo_copy_back_to_a_layout_still_verifies() {
    require("skopeo");
    let reg = Registry::start();
    let e = Env::new();
    let key = e.path().join("ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "pw")
        .args(["key", "generate"])
        .arg(&key));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "pw")
        .arg("build")
        .arg("-f")
        .arg(e.spec())
        .arg("--sign-key")
        .arg(key.with_extension("key")));
    assert!(o.status.success(), "build: {}", stderr(&o));
    let d = last_line(&o);
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", "pw")
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(key.with_extension("key")));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\nprovenance = \"builder\"\n",
    )
    .unwrap();
    let repo = format!("127.0.0.1:{}/hello", reg.port);
    let o = run(e.kiln().args([
        "push",
        "hello:1.0.0",
        &format!("{repo}:1.0.0"),
        "--insecure",
    ]));
    assert!(o.status.success(), "push: {}", stderr(&o));
    // skopeo copies the image and cosign's .sig/.att tags into a plain
    // OCI layout; kiln imports that layout and the policy still holds.
    let layout = e.path().join("copied");
    for tag in [
        "1.0.0".to_string(),
        format!("sha256-{}.sig", &d[7..]),
        format!("sha256-{}.att", &d[7..]),
    ] {
        let o = run(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{repo}:{tag}"),
            &format!("oci:{}:hello:{tag}", layout.display()),
        ]));
        assert!(o.status.success(), "skopeo copy {tag}: {}", stderr(&o));
    }
    let other = e.path().join("state-copied");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .arg("import")
        .arg(&layout));
    assert!(o.status.success(), "import: {}", stderr(&o));
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    assert!(
        o.status.success(),
        "verify after skopeo copy: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
#[ignore = "needs docker-registry and openssl"]
fn tls_registry_with_a_ca_file() {
    require("openssl");
    let e = Env::new();
    let pki = e.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    let sh = |cmd: &str| {
        let o = run(Command::new("sh").arg("-c").arg(cmd).current_dir(&pki));
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
    };
    // A private CA and a server certificate for 127.0.0.1.
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kiln-test-ca",
    );
    sh(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1",
    );
    fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf",
    );
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        pki.join("srv.pem").display(),
        pki.join("srv.key").display()
    );
    let reg = Registry::start_with(&tls);
    let d = e.build(&[]);
    let target = format!("127.0.0.1:{}/hello:1.0.0", reg.port);
    // Without the CA the certificate is not trusted: a clear failure.
    let o = run(e.kiln().args(["push", "hello:1.0.0", &target]));
    assert_eq!(
        o.status.code(),
        Some(1),
        "pushed to an untrusted certificate"
    );
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "not a certificate error: {}",
        stderr(&o)
    );
    // With it, push and pull over TLS.
    let mut pushed = false;
    for _ in 0..50 {
        let o = run(e
            .kiln()
            .args(["push", "hello:1.0.0", &target, "--ca-file"])
            .arg(pki.join("ca.pem")));
        if o.status.success() {
            assert_eq!(last_line(&o), d);
            pushed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pushed, "push over TLS with --ca-file failed");
    let other = e.path().join("state-tls");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["pull", &target, "--ca-file"])
        .arg(pki.join("ca.pem")));
    assert!(o.status.success(), "pull over TLS: {}", stderr(&o));
    assert_eq!(last_line(&o), d);
}

#[test]
#[ignore = "needs docker-registry"]
fn a_pull_whose_event_cannot_be_recorded_leaves_no_image() {
    let reg = Registry::start();
    let e = Env::new();
    let d = e.build(&[]);
    let target = format!("127.0.0.1:{}/hello:1.0.0", reg.port);
    let o = run(e
        .kiln()
        .args(["push", "hello:1.0.0", &target, "--insecure"]));
    assert!(o.status.success(), "push: {}", stderr(&o));
    // Every audit append fails as on a full disk (a debug-build hook): the
    // pulled blobs may be in the store, but no tag and no index entry are.
    let other = e.path().join("state-b");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .env("KILN_TEST_AUDIT_FAIL", "1")
        .args(["pull", &target, "--insecure"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));
    let index = fs::read_to_string(other.join("store/index.json")).unwrap_or_default();
    assert!(!index.contains(d.trim_start_matches("sha256:")), "{index}");
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["inspect", &format!("hello@{d}")]));
    assert!(!o.status.success(), "the unrecorded pull is visible");
    // The retry is an ordinary pull.
    let o = run(e
        .kiln()
        .env("KILN_STATE_DIR", &other)
        .args(["pull", &target, "--insecure"]));
    assert!(o.status.success(), "retry: {}", stderr(&o));
    assert_eq!(last_line(&o), d);
}
