//! CLI habits users expect (issue 11): shell completions and man pages, help that says
//! what applies where, hints that match what kiln really prints, error chains that say
//! each cause once.

use std::fs;

use crate::support::*;

#[test]
fn completions_for_each_shell() {
    let e = Env::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kiln"),
        ("fish", "complete -c kiln"),
    ] {
        let o = run(e.kiln().args(["completions", shell]));
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        // Subcommands and their flags are in there.
        assert!(text.contains("keep-untagged"), "{shell}");
    }
    let o = run(e.kiln().args(["completions", "powershell-7"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_pages_for_kiln_and_every_subcommand() {
    let e = Env::new();
    let dir = e.path().join("man1");
    let o = run(e.kiln().args(["man", "--out"]).arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    for page in ["kiln.1", "kiln-build.1", "kiln-gc.1", "kiln-log-verify.1"] {
        let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let build = fs::read_to_string(dir.join("kiln-build.1")).unwrap();
    assert!(build.contains("kiln\\-build"), "{build}");
    let o = run(e.kiln().arg("man"));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(".TH kiln 1"));
}

#[test]
fn reason_help_says_required_on_approve_only() {
    let e = Env::new();
    let help = |args: &[&str]| {
        let o = run(e.kiln().args(args));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    for cmd in ["build", "sign", "gc", "apply"] {
        let h = help(&[cmd, "--help"]);
        assert!(h.contains("--reason"), "{cmd}: {h}");
        assert!(!h.contains("required by"), "{cmd}: {h}");
        assert!(!h.contains("required here"), "{cmd}: {h}");
    }
    assert!(help(&["approve", "--help"]).contains("--reason is required here"));
}

#[test]
fn the_tag_refusal_hint_matches_what_build_prints() {
    let e = Env::new();
    let digest = e.build(&[]);
    // What build prints last: a bare digest.
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let deploy = e.path().join("deploy.toml");
    fs::write(
        &deploy,
        "[service.web]\nimage = \"hello:1.0.0\"\nreplicas = 1\nlisten = \"127.0.0.1:18081\"\nport = 8080\nhealth = { http_get = \"/\" }\npolicy = \"trust.toml\"\n",
    )
    .unwrap();
    let o = run(e.kiln().args(["apply", "--file"]).arg(&deploy));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("is a tag, not a digest"), "{err}");
    // The hint names the form to write and where its digest part comes from.
    assert!(
        err.contains(
            "`name@sha256:<hex>`, with the `sha256:<hex>` that `kiln build` prints as its last line"
        ),
        "{err}"
    );
    // And that form, built from build's output, is accepted.
    fs::write(
        &deploy,
        fs::read_to_string(&deploy)
            .unwrap()
            .replace("hello:1.0.0", &format!("hello@{digest}")),
    )
    .unwrap();
    let o = run(e.kiln().args(["apply", "--file"]).arg(&deploy));
    assert!(!stderr(&o).contains("not a digest"), "{}", stderr(&o));
}

#[test]
fn an_error_chain_says_each_cause_once() {
    let e = Env::new();
    // A layout whose index.json cannot be read: the store's io error embeds its
    // source's text ("{path}: {source}") and keeps it as #[source].
    let layout = e.path().join("layout");
    fs::create_dir_all(layout.join("index.json")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let o = run(e.kiln().arg("import").arg(&layout));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(
        err.to_lowercase().matches("is a directory").count(),
        1,
        "{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let msg = l
            .trim_start_matches("kiln: error: ")
            .trim_start_matches("  caused by: ");
        for prev in &lines[..i] {
            assert!(!prev.contains(msg), "cause repeated:\n{err}");
        }
    }
    // The audit event of the failure says it once too.
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "image.import"]));
    let v = json(&o);
    let why = v[0]["event"].to_string();
    assert_eq!(
        why.to_lowercase().matches("is a directory").count(),
        1,
        "{why}"
    );
}
