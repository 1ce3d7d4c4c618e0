use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch workspace: a copy of examples/hello and a private state dir.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        copy_dir(&repo().join("examples/hello"), &tmp.path().join("hello"));
        let bb = tmp.path().join("hello/bin/busybox");
        fs::create_dir_all(bb.parent().unwrap()).unwrap();
        if !bb.exists() {
            if Path::new("/bin/busybox").exists() {
                fs::copy("/bin/busybox", &bb).unwrap();
            } else {
                // A stand-in that cannot start: the entrypoint check is off.
                fs::write(&bb, b"#!/bin/sh\necho not-really-busybox\n").unwrap();
                let spec = tmp.path().join("hello/kiln.toml");
                let text = fs::read_to_string(&spec).unwrap();
                let text = text.replacen("[image]\n", "[image]\ncheck_entrypoint = false\n", 1);
                fs::write(&spec, text).unwrap();
            }
        }
        set_mode(&bb, 0o755);
        Env { tmp }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn spec_dir(&self) -> PathBuf {
        self.path().join("hello")
    }

    pub fn spec(&self) -> PathBuf {
        self.spec_dir().join("kiln.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn store(&self) -> PathBuf {
        self.state().join("store")
    }

    /// `kiln` with this env's state dir and no SOURCE_DATE_EPOCH.
    pub fn kiln(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.env("KILN_STATE_DIR", self.state())
            .env_remove("SOURCE_DATE_EPOCH");
        c
    }

    /// Build the spec; panics on failure; returns the printed digest.
    pub fn build(&self, extra: &[&str]) -> String {
        let mut c = self.kiln();
        c.arg("build").arg("-f").arg(self.spec()).args(extra);
        let o = run(&mut c);
        assert!(
            o.status.success(),
            "build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        last_line(&o)
    }

    /// Replace the spec text.
    pub fn write_spec(&self, text: &str) {
        fs::write(self.spec(), text).unwrap();
    }

    pub fn spec_text(&self) -> String {
        fs::read_to_string(self.spec()).unwrap()
    }

    /// Every blob file and the index, to prove a failed command changed nothing.
    pub fn store_snapshot(&self) -> Vec<String> {
        let mut v = Vec::new();
        let blobs = self.store().join("blobs/sha256");
        if let Ok(rd) = fs::read_dir(&blobs) {
            for e in rd {
                v.push(e.unwrap().file_name().to_string_lossy().to_string());
            }
        }
        v.sort();
        if let Ok(idx) = fs::read_to_string(self.store().join("index.json")) {
            v.push(idx);
        }
        let tmp = self.store().join(".kiln/tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd {
                v.push(format!("leftover staging: {:?}", e.unwrap().file_name()));
            }
        }
        v
    }

    /// The audit events whose action starts with `prefix` (`kiln log show --action`),
    /// oldest first: each entry's `event` object.
    pub fn events(&self, prefix: &str) -> Vec<serde_json::Value> {
        let o = run(self
            .kiln()
            .args(["--json", "log", "show", "--action", prefix]));
        json(&o)
            .as_array()
            .expect("kiln log show --json prints an array")
            .iter()
            .map(|v| v["event"].clone())
            .collect()
    }

    /// The container ids under this state directory's runc root.
    pub fn containers(&self) -> Vec<String> {
        Command::new("runc")
            .arg("--root")
            .arg(self.state().join("fleet/runc"))
            .args(["list", "-q"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Force-delete every container under this state directory's runc root, so that no
    /// container outlives a test.
    pub fn delete_containers(&self) {
        for id in self.containers() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.state().join("fleet/runc"))
                .args(["delete", "-f", &id])
                .output();
        }
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

pub fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        let to = dst.join(e.file_name());
        if t.is_dir() {
            copy_dir(&e.path(), &to);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Is `tool` on PATH?
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Panics unless `tool` is on PATH. Tests that need a tool are `#[ignore]`d;
/// `scripts/test.sh` runs them, where a missing tool is a failure.
pub fn require(tool: &str) {
    assert!(
        on_path(tool),
        "{tool} is not installed (scripts/install-deps.sh)"
    );
}

/// Panics unless this runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Read a blob of a layout.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The manifest JSON of `digest` in `layout`.
pub fn manifest(layout: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap()
}

/// The password of keys made by [`keygen`] (as `KILN_KEY_PASSWORD`).
pub const PASSWORD: &str = "s3cret";

/// `kiln key generate` NAME in the env's directory; returns NAME.key.
pub fn keygen(e: &Env, name: &str) -> PathBuf {
    let base = e.path().join(name);
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["key", "generate"])
        .arg(&base));
    assert!(o.status.success(), "{}", stderr(&o));
    base.with_extension("key")
}
