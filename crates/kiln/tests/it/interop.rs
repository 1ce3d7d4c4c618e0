//! Other implementations read what kiln writes: skopeo, umoci, runc, and
//! the SPDX and CycloneDX reference validators.

use std::fs;
use std::path::{Path, PathBuf};
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
#[ignore = "needs skopeo"]
fn skopeo_reads_the_store_and_the_export_and_copies_keep_the_digest() {
    require("skopeo");
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
#[ignore = "needs root, umoci, runc, nsenter and /bin/busybox"]
fn umoci_unpacks_and_runc_serves_the_page() {
    require_root();
    for tool in ["umoci", "runc", "nsenter"] {
        require(tool);
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox (busybox-static) is not installed"
    );
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

fn validate(kind: &str, file: &Path) {
    let script = repo().join("scripts/validate-sbom.py");
    let o = run(Command::new("python3").arg(&script).arg(kind).arg(file));
    assert_ne!(
        o.status.code(),
        Some(3),
        "validator packages missing (scripts/install-deps.sh): {}",
        stderr(&o)
    );
    assert!(
        o.status.success(),
        "{kind} validation failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
#[ignore = "needs python3 with spdx-tools (pyspdxtools) and cyclonedx-python-lib"]
fn sboms_pass_the_reference_validators() {
    require("python3");
    require("pyspdxtools");
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

// ---- in-toto provenance, Sigstore bundles and cosign (issue 11, items 11-12) ----

const PROVENANCE: &str = "https://slsa.dev/provenance/v1";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Where scripts/install-deps.sh caches the tools it builds.
fn ci_cache() -> PathBuf {
    std::env::var_os("KILN_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-ci"))
}

/// Fails the test for lack of `what`.
fn missing(what: &str) -> ! {
    panic!("{what} is not installed (scripts/install-deps.sh)")
}

pub(crate) fn build_signed(e: &Env, key: &Path) -> serde_json::Value {
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "build", "-f"])
        .arg(e.spec())
        .arg("--sign-key")
        .arg(key));
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    json(&o)
}

/// The layer bytes of every referrer of `digest` whose artifactType is `artifact_type`.
fn referrer_layers(e: &Env, digest: &str, artifact_type: &str) -> Vec<Vec<u8>> {
    let s = kiln_oci::Store::open(e.store()).unwrap();
    let d: kiln_oci::Digest = digest.parse().unwrap();
    s.referrers(&d)
        .unwrap()
        .into_iter()
        .filter(|(_, m)| m.artifact_type.as_deref() == Some(artifact_type))
        .map(|(_, m)| s.read_descriptor(&m.layers[0]).unwrap())
        .collect()
}

/// The provenance statement kiln attached to `digest` (the newest, if several).
pub(crate) fn provenance_statement(e: &Env, digest: &str) -> serde_json::Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let st = referrer_layers(e, digest, DSSE)
        .into_iter()
        .map(|env| {
            let env: serde_json::Value = serde_json::from_slice(&env).unwrap();
            let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap()
        })
        .filter(|st| st["predicateType"] == PROVENANCE)
        .collect::<Vec<_>>();
    assert_eq!(st.len(), 1, "expected one provenance statement");
    st.into_iter().next().unwrap()
}

/// The spec's hello example, plus what a directory input can hold: a subdirectory, a hard
/// link, a symlink, an empty directory; a single file and a symlink copied into a
/// directory; another
/// `[[files]]` entry nested inside the first one's destination; a directory whose file
/// names the in-toto dirHash cannot encode.
fn rich_spec(e: &Env) {
    let sd = e.spec_dir();
    let www = sd.join("www");
    fs::create_dir_all(www.join("sub")).unwrap();
    fs::create_dir_all(www.join("empty")).unwrap();
    fs::write(www.join("sub/page.txt"), "sub page\n").unwrap();
    fs::hard_link(www.join("index.html"), www.join("index-link.html")).unwrap();
    std::os::unix::fs::symlink("index.html", www.join("alias.html")).unwrap();
    fs::create_dir_all(sd.join("extra")).unwrap();
    fs::write(sd.join("extra/nested.txt"), "nested entry\n").unwrap();
    fs::create_dir_all(sd.join("odd")).unwrap();
    fs::write(sd.join("odd/back\\slash"), "x\n").unwrap();
    let mut spec = e.spec_text();
    spec = spec.replace(
        "[[debs]]",
        "[[files]]\nsrc = \"www/index.html\"\ndst = \"/srv/\"\n\n\
         [[files]]\nsrc = \"www/home.html\"\ndst = \"/opt/\"\n\n\
         [[files]]\nsrc = \"extra/\"\ndst = \"/www/extra\"\n\n\
         [[files]]\nsrc = \"odd/\"\ndst = \"/odd\"\n\n[[debs]]",
    );
    e.write_spec(&spec);
}

const DIGEST_ALGORITHMS: &[&str] = &[
    "sha256",
    "sha224",
    "sha384",
    "sha512",
    "sha512_224",
    "sha512_256",
    "sha3_224",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "shake128",
    "shake256",
    "blake2b",
    "blake2s",
    "ripemd160",
    "sm3",
    "gost",
    "sha1",
    "md5",
    "dirHash",
    "gitCommit",
    "gitTree",
    "gitBlob",
    "gitTag",
];

fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut c = scheme.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || "+-.".contains(x))
        && !rest.is_empty()
}

/// Checks one in-toto v1 ResourceDescriptor to the letter of the spec.
fn check_descriptor(d: &serde_json::Value, at: &str) {
    use base64::Engine;
    let o = d
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object"));
    for k in o.keys() {
        assert!(
            [
                "uri",
                "digest",
                "name",
                "downloadLocation",
                "mediaType",
                "content",
                "annotations"
            ]
            .contains(&k.as_str()),
            "{at}: unknown field {k}"
        );
    }
    let digest = o.get("digest").and_then(|v| v.as_object());
    assert!(
        o.contains_key("uri") || digest.is_some_and(|m| !m.is_empty()) || o.contains_key("content"),
        "{at}: none of uri, digest, content: {d}"
    );
    for k in ["uri", "downloadLocation"] {
        if let Some(v) = o.get(k) {
            assert!(
                is_uri(v.as_str().unwrap_or("")),
                "{at}.{k} is not a URI: {v}"
            );
        }
    }
    for k in ["name", "mediaType"] {
        if let Some(v) = o.get(k) {
            assert!(v.as_str().is_some_and(|s| !s.is_empty()), "{at}.{k}: {v}");
        }
    }
    if let Some(v) = o.get("content") {
        let s = v.as_str().unwrap_or_else(|| panic!("{at}.content: {v}"));
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_else(|e| panic!("{at}.content is not base64: {e}"));
    }
    if let Some(v) = o.get("annotations") {
        assert!(v.is_object(), "{at}.annotations: {v}");
    }
    if let Some(v) = o.get("digest") {
        let m = v.as_object().unwrap_or_else(|| panic!("{at}.digest: {v}"));
        assert!(!m.is_empty(), "{at}.digest is empty");
        for (alg, val) in m {
            assert!(
                DIGEST_ALGORITHMS.contains(&alg.as_str()),
                "{at}.digest: {alg} is no in-toto algorithm"
            );
            let hex = val.as_str().unwrap_or_else(|| panic!("{at}.digest.{alg}"));
            let len = match alg.as_str() {
                "sha256" | "dirHash" | "sha3_256" | "sha512_256" => vec![64],
                "sha512" | "sha3_512" => vec![128],
                "sha1" => vec![40],
                a if a.starts_with("git") => vec![40, 64],
                _ => vec![hex.len()],
            };
            assert!(
                len.contains(&hex.len())
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{at}.digest.{alg} is not lowercase hex of the right length: {hex}"
            );
        }
    }
}

/// Walks a whole SLSA v1 provenance statement: every field is one the specs define, and
/// every ResourceDescriptor (subject, resolvedDependencies, byproducts,
/// builderDependencies) passes [`check_descriptor`]. Returns how many it checked.
pub(crate) fn check_provenance(st: &serde_json::Value) -> usize {
    fn keys(v: &serde_json::Value, at: &str, allowed: &[&str], required: &[&str]) {
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("{at}: not an object"));
        for k in o.keys() {
            assert!(allowed.contains(&k.as_str()), "{at}: unknown field {k}");
        }
        for k in required {
            assert!(o.contains_key(*k), "{at}: missing {k}");
        }
    }
    keys(
        st,
        "statement",
        &["_type", "subject", "predicateType", "predicate"],
        &["_type", "subject", "predicateType"],
    );
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], PROVENANCE);
    let mut n = 0;
    let subjects = st["subject"].as_array().unwrap();
    assert!(!subjects.is_empty());
    for (i, s) in subjects.iter().enumerate() {
        check_descriptor(s, &format!("subject[{i}]"));
        assert!(s["digest"].is_object(), "subject[{i}] needs a digest");
        n += 1;
    }
    let p = &st["predicate"];
    keys(
        p,
        "predicate",
        &["buildDefinition", "runDetails"],
        &["buildDefinition", "runDetails"],
    );
    let bd = &p["buildDefinition"];
    keys(
        bd,
        "buildDefinition",
        &[
            "buildType",
            "externalParameters",
            "internalParameters",
            "resolvedDependencies",
        ],
        &["buildType", "externalParameters"],
    );
    assert!(is_uri(bd["buildType"].as_str().unwrap()));
    assert!(bd["externalParameters"].is_object());
    let rd = &p["runDetails"];
    keys(
        rd,
        "runDetails",
        &["builder", "metadata", "byproducts"],
        &["builder"],
    );
    keys(
        &rd["builder"],
        "builder",
        &["id", "version", "builderDependencies"],
        &["id"],
    );
    assert!(is_uri(rd["builder"]["id"].as_str().unwrap()));
    if let Some(md) = rd.get("metadata") {
        keys(
            md,
            "metadata",
            &["invocationId", "startedOn", "finishedOn"],
            &[],
        );
    }
    for (list, at) in [
        (&bd["resolvedDependencies"], "resolvedDependencies"),
        (&rd["byproducts"], "byproducts"),
        (&rd["builder"]["builderDependencies"], "builderDependencies"),
    ] {
        if list.is_null() {
            continue;
        }
        for (i, d) in list.as_array().unwrap().iter().enumerate() {
            check_descriptor(d, &format!("{at}[{i}]"));
            n += 1;
        }
    }
    n
}

/// The in-toto dirHash of `dir`, by the shell pipeline the in-toto spec gives.
fn shell_dir_hash(dir: &Path) -> String {
    let o = run(Command::new("sh")
        .arg("-c")
        .arg("find . -type f | cut -c3- | LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -f1 -d' '")
        .current_dir(dir));
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn provenance_resource_descriptors_follow_the_in_toto_rules() {
    let e = Env::new();
    rich_spec(&e);
    let key = keygen(&e, "ci");
    let r = build_signed(&e, &key);
    let digest = r["digest"].as_str().unwrap();
    let st = provenance_statement(&e, digest);
    let n = check_provenance(&st);
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(n >= deps.len() + 2, "{n}");
    let dep = |uri: &str| -> &serde_json::Value {
        deps.iter()
            .find(|d| d["uri"] == uri)
            .unwrap_or_else(|| panic!("no dependency {uri} in {deps:#?}"))
    };
    // A directory: the in-toto dirHash, equal to the spec's own shell pipeline, and no
    // private sha256 formula. The nested [[files]] entry is not part of it.
    let www = dep("file:www");
    assert_eq!(www["annotations"]["kind"], "directory");
    assert_eq!(
        www["digest"],
        serde_json::json!({"dirHash": shell_dir_hash(&e.spec_dir().join("www"))}),
        "{www}"
    );
    assert_eq!(
        dep("file:extra")["digest"]["dirHash"],
        shell_dir_hash(&e.spec_dir().join("extra"))
    );
    // A single file copied into a directory destination: the sha256 of its bytes. (It is
    // the same inode as www/index.html, so in the layer those become hard links to it.)
    assert_eq!(
        dep("file:www/index.html")["digest"],
        serde_json::json!({"sha256": kiln_oci::Digest::of(&fs::read(e.spec_dir().join("www/index.html")).unwrap()).hex()})
    );
    // A symlink (www/home.html -> index.html in the example): its target, as content.
    let link = dep("file:www/home.html");
    assert_eq!(link["content"], "aW5kZXguaHRtbA==", "{link}");
    assert!(link.get("digest").is_none(), "{link}");
    // A name dirHash cannot encode: no made-up digest, the URI alone, and a note why.
    let odd = dep("file:odd");
    assert!(odd.get("digest").is_none(), "{odd}");
    assert!(
        odd["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("dirHash"),
        "{odd}"
    );
    // The compressor is a parameter, not an artifact.
    assert!(
        deps.iter().all(|d| d["annotations"]["kind"] != "compressor"
            && !d["uri"]
                .as_str()
                .unwrap_or("")
                .starts_with("kiln:compressor")),
        "{deps:#?}"
    );
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["externalParameters"]["compression"], "gzip");
    assert!(
        bd["internalParameters"]["compressor"]["description"]
            .as_str()
            .unwrap()
            .contains("libdeflate"),
        "{bd}"
    );
    assert_eq!(
        bd["internalParameters"]["compressor"]["layerMediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The byproduct carries its bytes.
    let bp = &st["predicate"]["runDetails"]["byproducts"][0];
    assert_eq!(bp["name"], "maintainer-scripts-not-run");
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD
        .decode(bp["content"].as_str().unwrap())
        .unwrap();
    let scripts: serde_json::Value = serde_json::from_slice(&content).unwrap();
    assert_eq!(scripts, bp["annotations"]["packages"]);
    assert_eq!(bp["digest"]["sha256"], kiln_oci::Digest::of(&content).hex());

    // The checker itself rejects what kiln used to write.
    for bad in [
        serde_json::json!({"name": "maintainer-scripts-not-run", "mediaType": "application/json"}),
        serde_json::json!({"uri": "file:www", "digest": {"sha256dir": "ab"}}),
        serde_json::json!({"uri": "file:www", "digest": {"sha256": "AB"}}),
        serde_json::json!({"uri": "not a uri"}),
        serde_json::json!({"uri": "file:x", "extra": 1}),
    ] {
        let r = std::panic::catch_unwind(|| check_descriptor(&bad, "bad"));
        assert!(r.is_err(), "accepted {bad}");
    }
}

/// Runs tests/it/intoto_validate.py; fails the test when its Python packages are missing.
fn intoto_validate(kind: &str, file: &Path) -> serde_json::Value {
    let script = repo().join("crates/kiln/tests/it/intoto_validate.py");
    let o = run(Command::new("python3").arg(&script).arg(kind).arg(file));
    if o.status.code() == Some(3) {
        missing(&stderr(&o));
    }
    assert!(
        o.status.success(),
        "{kind} {} does not validate: {}",
        file.display(),
        stderr(&o)
    );
    json(&o)
}

#[test]
#[ignore = "needs python3 with in-toto-attestation"]
fn provenance_parses_with_the_in_toto_attestation_library() {
    require("python3");
    let e = Env::new();
    rich_spec(&e);
    let key = keygen(&e, "ci");
    let r = build_signed(&e, &key);
    let st = provenance_statement(&e, r["digest"].as_str().unwrap());
    let f = e.path().join("provenance.json");
    fs::write(&f, serde_json::to_vec(&st).unwrap()).unwrap();
    let out = intoto_validate("provenance", &f);
    assert!(out["descriptors"].as_u64().unwrap() >= 8, "{out}");
    // The validator is not a rubber stamp: a byproduct with none of uri, digest, content
    // (what kiln wrote before) and an unknown field are refused.
    let mut bad = st.clone();
    bad["predicate"]["runDetails"]["byproducts"][0] =
        serde_json::json!({"name": "maintainer-scripts-not-run", "mediaType": "application/json"});
    fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
    let o = run(Command::new("python3")
        .arg(repo().join("crates/kiln/tests/it/intoto_validate.py"))
        .args(["provenance"])
        .arg(&f));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("byproducts[0]"), "{}", stderr(&o));
    let mut bad = st;
    bad["predicate"]["buildDefinition"]["surprise"] = serde_json::json!(1);
    fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
    let o = run(Command::new("python3")
        .arg(repo().join("crates/kiln/tests/it/intoto_validate.py"))
        .args(["provenance"])
        .arg(&f));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// The node_modules scripts/install-deps.sh made from tests/it/node/package-lock.json.
fn sigstore_js() -> PathBuf {
    let lock = fs::read(repo().join("crates/kiln/tests/it/node/package-lock.json")).unwrap();
    let dir = ci_cache()
        .join(format!("node-{}", &kiln_oci::Digest::of(&lock).hex()[..16]))
        .join("node_modules");
    if !(on_path("node") && dir.join("@sigstore/verify").is_dir()) {
        missing(&format!("node with @sigstore/verify in {}", dir.display()));
    }
    dir
}

fn node_verify(modules: &Path, bundle: &Path, key: &Path) -> std::process::Output {
    run(Command::new("node")
        .arg(repo().join("crates/kiln/tests/it/node/verify-bundle.js"))
        .arg(bundle)
        .arg(key)
        .env("NODE_PATH", modules))
}

/// The bundle referrers of `digest` whose manifest names `predicate_type`.
fn bundles_of(e: &Env, digest: &str, predicate_type: &str) -> Vec<Vec<u8>> {
    let s = kiln_oci::Store::open(e.store()).unwrap();
    let d: kiln_oci::Digest = digest.parse().unwrap();
    s.referrers(&d)
        .unwrap()
        .into_iter()
        .filter(|(_, m)| {
            m.artifact_type.as_deref() == Some(BUNDLE)
                && m.annotations
                    .get("dev.sigstore.bundle.predicateType")
                    .map(String::as_str)
                    == Some(predicate_type)
        })
        .map(|(_, m)| s.read_descriptor(&m.layers[0]).unwrap())
        .collect()
}

#[test]
#[ignore = "needs node with @sigstore/verify and python3 with sigstore-protobuf-specs"]
fn sigstore_bundle_parses_and_verifies_with_sigstore_clients() {
    require("python3");
    let modules = sigstore_js();
    let e = Env::new();
    let key = keygen(&e, "ci");
    let rogue = keygen(&e, "rogue");
    let d = build_signed(&e, &key)["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    // The signature's bundle and the provenance's.
    assert_eq!(referrer_layers(&e, &d, BUNDLE).len(), 2);
    let bundles = bundles_of(&e, &d, "https://sigstore.dev/cosign/sign/v1");
    assert_eq!(bundles.len(), 1);
    let provenance = bundles_of(&e, &d, PROVENANCE);
    assert_eq!(provenance.len(), 1);
    let raw: serde_json::Value = serde_json::from_slice(&bundles[0]).unwrap();
    assert_eq!(
        raw["verificationMaterial"]["tlogEntries"],
        serde_json::json!([])
    );
    let f = e.path().join("bundle.json");
    fs::write(&f, &bundles[0]).unwrap();
    let pf = e.path().join("provenance-bundle.json");
    fs::write(&pf, &provenance[0]).unwrap();

    for (file, predicate) in [
        (&f, "https://sigstore.dev/cosign/sign/v1"),
        (&pf, PROVENANCE),
    ] {
        let out = intoto_validate("bundle", file);
        assert_eq!(out["mediaType"], BUNDLE);
        assert_eq!(out["signatures"], 1);
        assert_eq!(out["predicateType"], predicate);
    }

    for (file, predicate) in [
        (&f, "https://sigstore.dev/cosign/sign/v1"),
        (&pf, PROVENANCE),
    ] {
        let o = node_verify(&modules, file, &key.with_extension("pub"));
        assert!(o.status.success(), "@sigstore/verify: {}", stderr(&o));
        let out = json(&o);
        assert_eq!(out["payloadType"], "application/vnd.in-toto+json");
        assert_eq!(out["statement"]["predicateType"], predicate);
        assert_eq!(
            out["statement"]["subject"][0]["digest"]["sha256"],
            d.strip_prefix("sha256:").unwrap()
        );
        // Another key: refused.
        let o = node_verify(&modules, file, &rogue.with_extension("pub"));
        assert!(!o.status.success(), "verified with the wrong key");
    }
    // A changed payload, a missing tlogEntries: refused.
    let mut tampered = raw.clone();
    let p = tampered["dsseEnvelope"]["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = b64.decode(p).unwrap();
    let i = body.len() - 3;
    body[i] ^= 1;
    tampered["dsseEnvelope"]["payload"] = b64.encode(&body).into();
    fs::write(&f, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let o = node_verify(&modules, &f, &key.with_extension("pub"));
    assert!(!o.status.success(), "verified a changed payload");
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    let mut no_tlog = raw;
    no_tlog["verificationMaterial"]
        .as_object_mut()
        .unwrap()
        .remove("tlogEntries");
    fs::write(&f, serde_json::to_vec(&no_tlog).unwrap()).unwrap();
    let o = node_verify(&modules, &f, &key.with_extension("pub"));
    assert!(!o.status.success());
}

/// The cosign that scripts/install-deps.sh built from the Go module proxy (its version is
/// the script's COSIGN_VERSION).
fn cosign() -> PathBuf {
    let script = fs::read_to_string(repo().join("scripts/install-deps.sh")).unwrap();
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("COSIGN_VERSION="))
        .expect("COSIGN_VERSION in scripts/install-deps.sh")
        .trim();
    let bin = ci_cache().join(format!("cosign-{version}/cosign"));
    if !bin.is_file() {
        missing(&format!("cosign {version} at {}", bin.display()));
    }
    bin
}

/// The in-toto statements in cosign's `verify-attestation --output json` (one DSSE envelope
/// per line).
fn cosign_statements(o: &std::process::Output) -> Vec<serde_json::Value> {
    use base64::Engine;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let env: serde_json::Value = serde_json::from_str(l).unwrap();
            let st = base64::engine::general_purpose::STANDARD
                .decode(env["payload"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice(&st).unwrap()
        })
        .collect()
}

/// What a user does: `kiln build --sign-key`, `kiln approve`, `kiln sign`, `kiln push`; then
/// `cosign verify` and `cosign verify-attestation` (for kiln's provenance and approval).
/// cosign 2.6 reads attestations only from Sigstore bundle referrers once an image has any
/// bundle, so kiln writes each attestation as a bundle too.
#[test]
#[ignore = "needs cosign (built by scripts/install-deps.sh) and docker-registry"]
fn real_cosign_verifies_kiln_signatures_and_provenance_in_a_registry() {
    let cosign = cosign();
    let reg = crate::distribute::Registry::start();
    let e = Env::new();
    let key = keygen(&e, "ci");
    let alice = keygen(&e, "alice");
    let rogue = keygen(&e, "rogue");
    let r = build_signed(&e, &key);
    let d = r["digest"].as_str().unwrap().to_owned();
    let hex = d.strip_prefix("sha256:").unwrap().to_owned();
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args([
            "approve",
            "hello:1.0.0",
            "--reason",
            "CHG-1 reviewed",
            "--key",
        ])
        .arg(&alice));
    assert!(o.status.success(), "approve: {}", stderr(&o));
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let target = format!("127.0.0.1:{}/hello:1.0.0", reg.port);
    let o = run(e
        .kiln()
        .args(["push", "hello:1.0.0", &target, "--insecure"]));
    assert!(o.status.success(), "push: {}", stderr(&o));
    let image = format!("127.0.0.1:{}/hello@{d}", reg.port);
    // cosign verifies a Sigstore bundle (kiln's OCI 1.1 referrer) against a trusted root:
    // an empty one (no CA, log or TSA), since the key is the only trust and cosign must
    // not fetch Sigstore's public root.
    let trusted_root = e.path().join("trusted_root.json");
    fs::write(
        &trusted_root,
        r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
    )
    .unwrap();
    let cosign_cmd = |args: &[&str], key: &Path| {
        let mut c = Command::new(&cosign);
        c.args(args)
            .arg("--key")
            .arg(key.with_extension("pub"))
            .arg("--trusted-root")
            .arg(&trusted_root)
            .args([
                "--insecure-ignore-tlog",
                "--allow-insecure-registry",
                "--output",
                "json",
            ])
            .arg(&image)
            // cosign looks for keys and caches here; keep it out of the user's home.
            .env("HOME", e.path())
            .env("DOCKER_CONFIG", e.path().join("docker"))
            .env("TUF_ROOT", e.path().join("tuf"));
        run(&mut c)
    };
    let out =
        |o: &std::process::Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));

    // The signature of `kiln sign`: cosign finds the Sigstore bundles and verifies them.
    // (cosign 2.6 reports every bundle the key verifies, attestations included, each with
    // its predicate type as `critical.type`; kiln's signature is the cosign/sign one.)
    let o = cosign_cmd(&["verify"], &key);
    assert!(o.status.success(), "cosign verify: {}", out(&o));
    let sigs = json(&o);
    let signed = sigs.as_array().unwrap().iter().any(|s| {
        s["critical"]["type"] == "https://sigstore.dev/cosign/sign/v1"
            && s["critical"]["image"]["docker-manifest-digest"] == d.as_str()
    });
    assert!(signed, "cosign's output has no signature of {d}: {sigs}");
    let o = cosign_cmd(&["verify"], &rogue);
    assert!(!o.status.success(), "cosign verified with the wrong key");

    // The provenance of `build --sign-key`, after `kiln sign`: found in its bundle.
    let o = cosign_cmd(&["verify-attestation", "--type", "slsaprovenance1"], &key);
    assert!(o.status.success(), "cosign verify-attestation: {}", out(&o));
    let found = cosign_statements(&o)
        .iter()
        .any(|st| st["predicateType"] == PROVENANCE && st["subject"][0]["digest"]["sha256"] == hex);
    assert!(found, "{}", out(&o));
    let o = cosign_cmd(&["verify-attestation", "--type", "slsaprovenance1"], &rogue);
    assert!(
        !o.status.success(),
        "cosign verified an attestation with the wrong key"
    );

    // kiln's approval, a custom predicate type: by alice's key, not by ci's or rogue's.
    const APPROVAL: &str = "https://kiln.dev/approval/v1";
    let o = cosign_cmd(&["verify-attestation", "--type", APPROVAL], &alice);
    assert!(o.status.success(), "cosign verify-attestation: {}", out(&o));
    let approvals: Vec<_> = cosign_statements(&o)
        .into_iter()
        .filter(|st| st["predicateType"] == APPROVAL)
        .collect();
    assert_eq!(approvals.len(), 1, "{}", out(&o));
    assert_eq!(approvals[0]["predicate"]["reason"], "CHG-1 reviewed");
    assert_eq!(approvals[0]["subject"][0]["digest"]["sha256"], hex);
    for wrong in [&key, &rogue] {
        let o = cosign_cmd(&["verify-attestation", "--type", APPROVAL], wrong);
        assert!(
            !o.status.success(),
            "cosign verified alice's approval with {}: {}",
            wrong.display(),
            out(&o)
        );
    }
}
