//! Reproducibility, caching, layering and the contents of the image.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::*;

#[test]
fn same_digest_in_any_directory_whatever_mtimes_owners_and_umask() {
    let a = Env::new();
    let b = Env::new();
    // Disturb everything a naive builder would capture in b's copy.
    let www = b.spec_dir().join("www");
    Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .arg(www.join("index.html"))
        .status()
        .unwrap();
    Command::new("touch")
        .args(["-d", "@1234567890"])
        .arg(&www)
        .status()
        .unwrap();
    Command::new("chown")
        .args(["-h", "12345:54321"])
        .arg(www.join("index.html"))
        .status()
        .unwrap();
    set_mode(&www.join("index.html"), 0o600); // a restrictive umask
    set_mode(&b.spec_dir().join("bin/busybox"), 0o700);
    let da = a.build(&[]);
    let db = b.build(&[]);
    assert!(da.starts_with("sha256:") && da.len() == 71, "{da}");
    assert_eq!(
        da, db,
        "digest depends on the build directory or host metadata"
    );
    // And with a different state dir / fresh cache in the same place.
    let o = run(b
        .kiln()
        .env("KILN_STATE_DIR", b.path().join("state2"))
        .arg("build")
        .arg("-f")
        .arg(b.spec()));
    assert_eq!(last_line(&o), da);
}

#[test]
fn source_date_epoch_sets_created_and_changes_digest() {
    let e = Env::new();
    let d0 = e.build(&[]);
    let o = run(e
        .kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["--json", "build", "-f"])
        .arg(e.spec()));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["created"], "2023-11-14T22:13:20Z");
    assert_eq!(r["epoch_source"], "SOURCE_DATE_EPOCH");
    let d1 = r["digest"].as_str().unwrap().to_string();
    assert_ne!(d0, d1);
    let m = manifest(&e.store(), &d1);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    let cfg = manifest(&e.store(), m["config"]["digest"].as_str().unwrap());
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn output_does_not_depend_on_thread_count_or_cache() {
    for c in ["gzip", "zstd"] {
        let e = Env::new();
        let d1 = e.build(&["--compression", c, "--threads", "1"]);
        let e2 = Env::new();
        let d3 = e2.build(&["--compression", c, "--threads", "3"]);
        assert_eq!(d1, d3, "{c}: thread count changed the digest");
        let m = manifest(&e.store(), &d1);
        let want = format!("application/vnd.oci.image.layer.v1.tar+{c}");
        assert!(
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["mediaType"] == want.as_str()),
            "{m}"
        );
    }
}

#[test]
fn rebuild_hits_the_layer_cache_and_app_change_keeps_packages_layer() {
    let e = Env::new();
    let o1 = json(&run(e.kiln().args(["--json", "build", "-f"]).arg(e.spec())));
    let o2 = json(&run(e.kiln().args(["--json", "build", "-f"]).arg(e.spec())));
    assert_eq!(o1["digest"], o2["digest"]);
    assert!(
        o1["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["cached"] == false)
    );
    assert!(
        o2["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["cached"] == true),
        "{o2}"
    );
    // An app change: only the files layer is rebuilt.
    fs::write(e.spec_dir().join("www/index.html"), "<h1>v2</h1>\n").unwrap();
    let o3 = json(&run(e.kiln().args(["--json", "build", "-f"]).arg(e.spec())));
    assert_ne!(o3["digest"], o1["digest"]);
    let l1 = o1["layers"].as_array().unwrap();
    let l3 = o3["layers"].as_array().unwrap();
    assert_eq!(l1[0]["role"], "packages");
    assert_eq!(
        l1[0]["digest"], l3[0]["digest"],
        "the OS layer changed with the app"
    );
    assert_eq!(l3[0]["cached"], true);
    assert_ne!(l1[1]["digest"], l3[1]["digest"]);
}

#[test]
fn layer_tars_are_normalised() {
    let e = Env::new();
    // A hard link and a long, non-ASCII name inside the copied tree.
    let www = e.spec_dir().join("www");
    fs::hard_link(www.join("index.html"), www.join("index-copy.html")).unwrap();
    let long = format!("{}-caf\u{e9}.txt", "n".repeat(120));
    fs::write(www.join(&long), "x").unwrap();
    let out = e.path().join("out");
    let d = e.build(&["--out", out.to_str().unwrap()]);
    let m = manifest(&out, &d);
    let files_layer = m["layers"][1]["digest"].as_str().unwrap();
    let tarball = e.path().join("files.tar.gz");
    fs::write(&tarball, blob(&out, files_layer)).unwrap();
    let o = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(&tarball));
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.trim_end_matches('/'));
    assert_eq!(names, sorted, "entries not in path order:\n{listing}");
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "owner not normalised: {line}");
        assert!(
            line.contains("1970-01-01 00:00:00"),
            "mtime not the epoch: {line}"
        );
    }
    assert!(
        listing.contains("www/index.html link to www/index-copy.html")
            || listing.contains("www/index-copy.html link to www/index.html"),
        "{listing}"
    );
    assert!(listing.contains(&long), "{listing}");
    assert!(listing.contains("-rwxr-xr-x 0/0") && listing.contains("bin/busybox"));
    assert!(
        listing.contains("lrwxrwxrwx 0/0") && listing.contains("www/home.html -> index.html"),
        "{listing}"
    );
    // No GNU long-name extension anywhere.
    let raw = run(Command::new("gzip").arg("-dc").arg(&tarball)).stdout;
    assert!(!raw.windows(13).any(|w| w == b"././@LongLink"));
}

#[test]
#[ignore = "needs dpkg-query"]
fn debs_are_registered_in_the_dpkg_database() {
    require("dpkg-query");
    let e = Env::new();
    let out = e.path().join("out");
    let d = e.build(&["--out", out.to_str().unwrap()]);
    let m = manifest(&out, &d);
    let root = e.path().join("rootfs");
    fs::create_dir_all(&root).unwrap();
    for l in m["layers"].as_array().unwrap() {
        let t = e.path().join("layer.tgz");
        fs::write(&t, blob(&out, l["digest"].as_str().unwrap())).unwrap();
        let o = run(Command::new("tar").arg("-xzf").arg(&t).arg("-C").arg(&root));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version} ${Status}\n"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello-config 1.0-1 install ok installed\n"
    );
    let o = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-L", "hello-config"]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("/etc/hello/hello.conf"));
    let md5 = fs::read_to_string(root.join("var/lib/dpkg/info/hello-config.md5sums")).unwrap();
    assert!(md5.contains("etc/hello/hello.conf"), "{md5}");
    // The maintainer script was not run, and that is said.
    assert!(!root.join("tmp/hello-config-postinst-ran").exists());
    let sbom =
        String::from_utf8(run(e.kiln().args(["sbom", "hello:1.0.0", "--format", "spdx"])).stdout)
            .unwrap();
    assert!(
        sbom.contains("postinst"),
        "SBOM does not record the unrun postinst"
    );
}

#[test]
fn base_layout_pinned_by_digest_is_the_lower_layers() {
    let e = Env::new();
    let out = e.path().join("base-layout");
    let base = e.build(&["--out", out.to_str().unwrap()]);
    let app = e.path().join("app");
    fs::create_dir_all(app.join("conf")).unwrap();
    fs::write(app.join("conf/app.conf"), "port = 9090\n").unwrap();
    fs::write(
        app.join("kiln.toml"),
        format!(
            "[image]\nname = \"app\"\ntag = \"2\"\nbase = \"oci:../base-layout@{base}\"\nports = [9090]\n\n[[files]]\nsrc = \"conf/app.conf\"\ndst = \"/etc/app/app.conf\"\n"
        ),
    )
    .unwrap();
    let o = run(e
        .kiln()
        .args(["--json", "build", "-f"])
        .arg(app.join("kiln.toml")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    let d = r["digest"].as_str().unwrap();
    let m = manifest(&e.store(), d);
    let bm = manifest(&out, &base);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0], bm["layers"][0]);
    assert_eq!(layers[1], bm["layers"][1]);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        base.as_str()
    );
    let cfg = manifest(&e.store(), m["config"]["digest"].as_str().unwrap());
    // Inherits the base's entrypoint and user; merges ports.
    assert_eq!(cfg["config"]["Entrypoint"][0], "/bin/busybox");
    assert_eq!(cfg["config"]["User"], "65532:65532");
    assert!(cfg["config"]["ExposedPorts"]["8080/tcp"].is_object());
    assert!(cfg["config"]["ExposedPorts"]["9090/tcp"].is_object());
    // The file manifest covers base and new files; the SBOM keeps base packages.
    let fm: serde_json::Value =
        serde_json::from_slice(&run(e.kiln().args(["sbom", "app:2", "--format", "files"])).stdout)
            .unwrap();
    let paths: Vec<&str> = fm["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/bin/busybox") && paths.contains(&"/etc/app/app.conf"),
        "{paths:?}"
    );
    let cdx =
        String::from_utf8(run(e.kiln().args(["sbom", "app:2", "--format", "cyclonedx"])).stdout)
            .unwrap();
    assert!(cdx.contains("pkg:deb/debian/hello-config@1.0-1"), "{cdx}");
}

#[test]
fn file_manifest_records_every_path() {
    let e = Env::new();
    e.build(&[]);
    let o = run(e.kiln().args(["sbom", "hello:1.0.0", "--format", "files"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let fm = json(&o);
    let entries = fm["entries"].as_array().unwrap();
    let get = |p: &str| {
        entries
            .iter()
            .find(|x| x["path"] == p)
            .unwrap_or_else(|| panic!("{p} missing: {fm}"))
    };
    let bb = get("/bin/busybox");
    assert_eq!(bb["type"], "file");
    assert_eq!(bb["mode"], "0755");
    let want = {
        use sha2_hex::hex_sha256;
        hex_sha256(&fs::read(e.spec_dir().join("bin/busybox")).unwrap())
    };
    assert_eq!(bb["sha256"], want.as_str());
    assert_eq!(get("/www/home.html")["link"], "index.html");
    assert_eq!(get("/www")["type"], "dir");
    assert_eq!(get("/var/lib/dpkg/status")["type"], "file");
    assert_eq!(
        get("/etc/hello/hello.conf")["origin"],
        "package:hello-config"
    );
    let _ = fs::metadata(e.spec()).unwrap().permissions().mode();
}

mod sha2_hex {
    pub fn hex_sha256(b: &[u8]) -> String {
        let o = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

#[test]
fn concurrent_builds_do_not_corrupt_the_store() {
    let e = Env::new();
    let mut kids = Vec::new();
    for i in 0..4 {
        let mut c = e.kiln();
        c.arg("build")
            .arg("-f")
            .arg(e.spec())
            .args(["--tag", &format!("hello:c{i}")]);
        if i % 2 == 1 {
            c.args(["--compression", "zstd"]);
        }
        kids.push(
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = json(&run(e.kiln().args(["--json", "images"])));
    let tags: Vec<&str> = o
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["c0", "c1", "c2", "c3"]);
    // Every blob in the store matches its name.
    for entry in fs::read_dir(e.store().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let want = entry.file_name().to_string_lossy().to_string();
        let got = sha2_hex::hex_sha256(&fs::read(entry.path()).unwrap());
        assert_eq!(want, got, "corrupt blob");
    }
    let staging: Vec<_> = fs::read_dir(e.store().join(".kiln/tmp")).unwrap().collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
}
