//! Other implementations read what kiln writes: skopeo, umoci, runc, and
//! the SPDX and CycloneDX reference validators.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

fn skopeo_digest(reference: &str) -> String {
    let o = run(Command::new("skopeo").args(["inspect", reference]));
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}",
        stderr(&o)
    );
    json(&o)["Digest"].as_str().unwrap().to_string()
}

#[test]
fn skopeo_reads_the_store_and_the_export_and_copies_keep_the_digest() {
    if !have("skopeo") {
        return;
    }
    let e = Env::new();
    let out = e.path().join("out");
    let d = e.build(&["--out", out.to_str().unwrap(), "--tag", "hello:1.0.0"]);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", e.store().display())),
        d
    );
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", out.display())),
        d
    );
    let b = e.path().join("copy");
    let o = run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:hello:1.0.0", e.store().display()),
        &format!("oci:{}:hello:1.0.0", b.display()),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", b.display())),
        d
    );
    // zstd layers too.
    let dz = e.build(&["--compression", "zstd", "--tag", "hello:zstd"]);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:zstd", e.store().display())),
        dz
    );
}

struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["kill", &self.0, "KILL"])
            .output();
        std::thread::sleep(Duration::from_millis(100));
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.0])
            .output();
    }
}

#[test]
fn umoci_unpacks_and_runc_serves_the_page() {
    if !(have("umoci") && have("runc") && have("nsenter") && Path::new("/bin/busybox").exists()
        || require_runc())
    {
        return;
    }
    let e = Env::new();
    e.build(&[]);
    let bundle = e.path().join("bundle");
    let o = run(Command::new("umoci")
        .args([
            "unpack",
            "--image",
            &format!("{}:hello:1.0.0", e.store().display()),
        ])
        .arg(&bundle));
    assert!(o.status.success(), "umoci unpack: {}", stderr(&o));
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["process"]["user"]["uid"], 65532);
    cfg["process"]["terminal"] = serde_json::Value::Bool(false);
    fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let id = format!("kiln-it-{}", std::process::id());
    let pidfile = e.path().join("pid");
    // A detached container inherits runc's stdio: give it files, not pipes.
    let log = e.path().join("runc.log");
    let status = Command::new("runc")
        .args(["run", "-d", "--pid-file"])
        .arg(&pidfile)
        .arg(&id)
        .current_dir(&bundle)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(e.path().join("runc.err")).unwrap())
        .status()
        .unwrap();
    let _guard = Container(id.clone());
    assert!(
        status.success(),
        "runc run: {}",
        fs::read_to_string(e.path().join("runc.err")).unwrap_or_default()
    );
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_string();
    // The instance has its own network namespace: reach it from inside it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let o = run(Command::new("nsenter").args([
            "-t",
            &pid,
            "-n",
            "/bin/busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]));
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "httpd never answered: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("hello from kiln"), "{body}");
}

fn require_runc() -> bool {
    if std::env::var("KILN_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("runc, umoci, nsenter and busybox-static are required (KILN_REQUIRE_INTEROP=1)");
    }
    false
}

fn validate(kind: &str, file: &Path) {
    let script = repo().join("scripts/validate-sbom.py");
    let o = run(Command::new("python3").arg(&script).arg(kind).arg(file));
    if o.status.code() == Some(3) {
        if std::env::var("KILN_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("validator packages missing: {}", stderr(&o));
        }
        eprintln!("skipped: {}", stderr(&o));
        return;
    }
    assert!(
        o.status.success(),
        "{kind} validation failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn sboms_pass_the_reference_validators() {
    if !have("python3") {
        return;
    }
    let e = Env::new();
    e.build(&[]);
    for (fmt, kind, name) in [
        ("spdx", "spdx", "sbom.spdx.json"),
        ("cyclonedx", "cyclonedx", "sbom.cdx.json"),
    ] {
        let f = e.path().join(name);
        let o = run(e
            .kiln()
            .args(["sbom", "hello:1.0.0", "--format", fmt, "-o"])
            .arg(&f));
        assert!(o.status.success(), "{}", stderr(&o));
        validate(kind, &f);
    }
    if have("pyspdxtools") {
        let o = run(Command::new("pyspdxtools")
            .arg("-i")
            .arg(e.path().join("sbom.spdx.json")));
        assert!(
            o.status.success(),
            "pyspdxtools: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    }
}
