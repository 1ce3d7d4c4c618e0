//! The other commands: images, inspect, sbom; --json; quiet when piped.

use crate::support::*;

#[test]
fn images_inspect_and_sbom() {
    let e = Env::new();
    let d = e.build(&[]);
    let o = run(e.kiln().arg("images"));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("hello") && s.contains("1.0.0") && s.contains(&d),
        "{s}"
    );
    let rows = json(&run(e.kiln().args(["images", "--json"])));
    assert_eq!(rows[0]["digest"], d.as_str());
    assert_eq!(rows[0]["created"], "1970-01-01T00:00:00Z");
    assert!(rows[0]["size"].as_u64().unwrap() > 100_000);

    let i = json(&run(e.kiln().args(["inspect", "hello:1.0.0", "--json"])));
    assert_eq!(i["digest"], d.as_str());
    assert_eq!(i["config"]["config"]["User"], "65532:65532");
    let baseline: serde_json::Value = serde_json::from_str(
        i["config"]["config"]["Labels"]["dev.kiln.baseline"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(baseline["tls_min_version"], "1.2");
    assert_eq!(baseline["ingress"][0], 8080);
    let types: Vec<&str> = i["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["artifactType"].as_str().unwrap())
        .collect();
    for t in [
        "application/spdx+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.kiln.file-manifest.v1+json",
    ] {
        assert!(types.contains(&t), "{types:?}");
    }
    let spdx_sum = i["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["artifactType"] == "application/spdx+json")
        .unwrap();
    assert_eq!(
        spdx_sum["summary"]["packages"], 1,
        "hello-config: {spdx_sum}"
    );
    // busybox, index.html, status, hello.conf, copyright, and info/ format,
    // list, md5sums, conffiles, postinst.
    assert_eq!(spdx_sum["summary"]["files"], 10, "{spdx_sum}");
    // By digest too, and human output.
    let o = run(e.kiln().args(["inspect", &d]));
    assert!(o.status.success(), "{}", stderr(&o));
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(h.contains("Referrers") && h.contains("SPDX"), "{h}");

    let spdx = json(&run(e.kiln().args([
        "sbom",
        "hello:1.0.0",
        "--format",
        "spdx",
    ])));
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let cdx = json(&run(e.kiln().args([
        "sbom",
        &format!("hello@{d}"),
        "--format",
        "cyclonedx",
    ])));
    assert_eq!(cdx["specVersion"], "1.5");
}

#[test]
fn unknown_image_and_bad_reference() {
    let e = Env::new();
    e.build(&[]);
    let o = run(e.kiln().args(["inspect", "hello:2.0.0"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no image hello:2.0.0"),
        "{}",
        stderr(&o)
    );
    let o = run(e.kiln().args(["inspect", "Hello"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid image reference"),
        "{}",
        stderr(&o)
    );
    let o = run(e.kiln().args(["build", "--compression", "lz4"]));
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn quiet_when_piped_and_json_is_pure() {
    let e = Env::new();
    let o = run(e.kiln().args(["--json", "build", "-f"]).arg(e.spec()));
    assert!(o.status.success());
    assert!(o.stderr.is_empty(), "stderr not quiet: {}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["maintainer_scripts_not_run"]["hello-config"][0],
        "postinst"
    );
    let o = run(e.kiln().arg("build").arg("-f").arg(e.spec()));
    // Piped stderr: only the maintainer-script warning, no progress bars.
    assert!(
        !stderr(&o).contains('\u{1b}'),
        "escape codes when piped: {:?}",
        stderr(&o)
    );
}
