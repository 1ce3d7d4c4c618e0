//! FileManifest::parse strictness: every rule is enforced and errors name the
//! entry index and the reason.

mod common;

use kiln_sbom::{FILE_MANIFEST_SCHEMA, FileManifest, SbomError, file_manifest_json};
use serde_json::{Value, json};

fn valid() -> Value {
    serde_json::from_slice(&file_manifest_json(&common::realistic())).expect("json")
}

fn parse(v: &Value) -> Result<FileManifest, SbomError> {
    FileManifest::parse(&serde_json::to_vec(v).expect("serialise"))
}

fn index_of(v: &Value, path: &str) -> usize {
    v["entries"]
        .as_array()
        .and_then(|e| e.iter().position(|x| x["path"] == path))
        .expect("path present")
}

/// Applies `edit` to the entry at `path` and expects an entry error at that
/// index whose message contains `why`.
fn expect_entry_error(path: &str, why: &str, edit: impl FnOnce(&mut Value)) {
    let mut v = valid();
    let i = index_of(&v, path);
    edit(&mut v["entries"][i]);
    match parse(&v) {
        Err(SbomError::ManifestEntry { index, reason, .. }) => {
            assert_eq!(index, i, "wrong index for {why}: {reason}");
            assert!(reason.contains(why), "expected {why:?} in {reason:?}");
        }
        other => panic!("expected an entry error containing {why:?}, got {other:?}"),
    }
}

#[test]
fn valid_manifest_parses_and_reserialises_identically() {
    let bytes = file_manifest_json(&common::realistic());
    let m = FileManifest::parse(&bytes).expect("valid");
    assert_eq!(m.schema, FILE_MANIFEST_SCHEMA);
    assert_eq!(m.to_json(), bytes);
}

#[test]
fn entry_errors_name_index_and_reason() {
    expect_entry_error("/bin/busybox", "unknown field `sha1`", |e| {
        e["sha1"] = json!("00");
    });
    expect_entry_error("/bin/busybox", "missing field `uid`", |e| {
        e.as_object_mut().map(|o| o.remove("uid"));
    });
    expect_entry_error("/bin/busybox", "field `link` is null", |e| {
        e["link"] = Value::Null;
    });
    expect_entry_error("/bin/busybox", "mode must be 4 octal digits", |e| {
        e["mode"] = json!("755");
    });
    expect_entry_error("/bin/busybox", "mode must be 4 octal digits", |e| {
        e["mode"] = json!("0758");
    });
    expect_entry_error("/bin/busybox", "expected a string", |e| {
        e["mode"] = json!(493);
    });
    expect_entry_error("/bin/busybox", "64 lowercase hex", |e| {
        let upper = e["sha256"].as_str().unwrap_or_default().to_uppercase();
        e["sha256"] = json!(upper);
    });
    expect_entry_error("/bin/busybox", "needs a sha256", |e| {
        e.as_object_mut().map(|o| o.remove("sha256"));
    });
    expect_entry_error("/bin", "a dir has no sha256", |e| {
        e["sha256"] = json!("0".repeat(64));
    });
    expect_entry_error("/bin/sh", "a symlink needs a link", |e| {
        e.as_object_mut().map(|o| o.remove("link"));
    });
    expect_entry_error("/bin/busybox", "a file has no link", |e| {
        e["link"] = json!("/x");
    });
    expect_entry_error("/bin/sh", "symlink target is empty", |e| {
        e["link"] = json!("");
    });
    expect_entry_error("/bin/ls", "not a listed regular file", |e| {
        e["link"] = json!("/bin/nothing");
    });
    expect_entry_error("/bin/ls", "hard link target: path must be absolute", |e| {
        e["link"] = json!("busybox");
    });
    expect_entry_error("/bin/ls", "differs from its target", |e| {
        e["sha256"] = json!("0".repeat(64));
    });
    expect_entry_error("/bin/busybox", "type must be", |e| {
        e["type"] = json!("fifo");
    });
    expect_entry_error("/bin/busybox", "origin must be", |e| {
        e["origin"] = json!("package:");
    });
    expect_entry_error("/bin/busybox", "origin must be", |e| {
        e["origin"] = json!("Base");
    });
    expect_entry_error("/bin/busybox", "invalid value", |e| {
        e["uid"] = json!(-1);
    });
    expect_entry_error("/bin/busybox", "invalid type", |e| {
        e["size"] = json!(1.5);
    });
    expect_entry_error("/bin/busybox", "must not end with /", |e| {
        e["path"] = json!("/bin/busybox/");
    });
    expect_entry_error("/bin/busybox", "empty component", |e| {
        e["path"] = json!("/bin//busybox");
    });
    expect_entry_error("/bin/busybox", ". or .. component", |e| {
        e["path"] = json!("/bin/../busybox");
    });
    expect_entry_error("/bin/busybox", "must be absolute", |e| {
        e["path"] = json!("bin/busybox");
    });
    expect_entry_error("/bin/busybox", "sorted", |e| {
        e["path"] = json!("/a");
    });
    expect_entry_error("/bin/busybox", "duplicate path", |e| {
        e["path"] = json!("/bin");
    });
    expect_entry_error("/", "/ must be a dir", |e| {
        e["type"] = json!("symlink");
        e["link"] = json!("x");
    });
    expect_entry_error(
        "/etc/hello.conf",
        "entry is an array, not a JSON object",
        |e| {
            *e = json!(["/etc/hello.conf"]);
        },
    );
    expect_entry_error("/etc/hello.conf", "entry is null, not a JSON object", |e| {
        *e = Value::Null;
    });
}

#[test]
fn duplicate_keys_are_rejected_with_the_entry_index() {
    let text = String::from_utf8(file_manifest_json(&common::small())).expect("utf-8");
    // Give /etc/hello.conf (entry 6) a second, different mode.
    let text = text.replacen(
        "\"mode\": \"0640\",",
        "\"mode\": \"0640\", \"mode\": \"0777\",",
        1,
    );
    match FileManifest::parse(text.as_bytes()) {
        Err(SbomError::ManifestEntry {
            index,
            path,
            reason,
        }) => {
            assert_eq!(index, 6);
            assert_eq!(path.as_deref(), Some("/etc/hello.conf"));
            assert_eq!(reason, "duplicate field `mode`");
        }
        other => panic!("{other:?}"),
    }
    let text = String::from_utf8(file_manifest_json(&common::small())).expect("utf-8");
    let text = text.replacen("\"schema\":", "\"schema\": \"x\", \"schema\":", 1);
    assert!(matches!(
        FileManifest::parse(text.as_bytes()),
        Err(SbomError::Json(e)) if e.to_string().contains("duplicate field `schema`")
    ));
}

#[test]
fn missing_parent_directory_is_rejected() {
    let mut v = valid();
    let i = index_of(&v, "/usr/lib");
    v["entries"].as_array_mut().map(|e| e.remove(i));
    match parse(&v) {
        Err(SbomError::ManifestEntry {
            index,
            reason,
            path,
        }) => {
            assert_eq!(index, i, "the first child of /usr/lib moved into its slot");
            assert!(reason.contains("parent directory \"/usr/lib\""), "{reason}");
            assert!(path.is_some_and(|p| p.starts_with("/usr/lib/")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn top_level_errors() {
    let mut v = valid();
    v["extra"] = json!(1);
    assert!(
        matches!(parse(&v), Err(SbomError::Json(e)) if e.to_string().contains("unknown field `extra`"))
    );

    let mut v = valid();
    v["schema"] = json!("https://kiln.dev/file-manifest/v2");
    assert!(matches!(parse(&v), Err(SbomError::Manifest(m)) if m.contains("schema")));

    let mut v = valid();
    v["subject"]["digest"] = json!("sha512:00");
    assert!(matches!(parse(&v), Err(SbomError::Manifest(m)) if m.contains("digest")));

    let mut v = valid();
    v["subject"]["name"] = json!("");
    assert!(matches!(parse(&v), Err(SbomError::Manifest(_))));

    let mut v = valid();
    v["subject"]["tag"] = json!("1.0.0");
    assert!(parse(&v).is_err());

    assert!(FileManifest::parse(b"").is_err());
    let mut bytes = file_manifest_json(&common::small());
    bytes.extend_from_slice(b"{}");
    assert!(FileManifest::parse(&bytes).is_err(), "trailing data");
}

#[test]
fn errors_display_index_and_path() {
    let mut v = valid();
    let i = index_of(&v, "/bin/busybox");
    v["entries"][i]["mode"] = json!("9999");
    let message = parse(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with(&format!("file manifest entry {i} (\"/bin/busybox\"): mode")),
        "{message}"
    );
}

#[test]
fn empty_manifest_and_get() {
    let bytes = file_manifest_json(&common::empty());
    let m = FileManifest::parse(&bytes).expect("empty is valid");
    assert!(m.entries.is_empty());
    assert!(m.get("/").is_none());
    let m = FileManifest::parse(&file_manifest_json(&common::realistic())).expect("valid");
    assert_eq!(
        m.get("/bin/sh").and_then(|e| e.link.as_deref()),
        Some("busybox")
    );
    assert!(m.get("/bin/s").is_none());
}
