use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A deploy file in `dir` with `table` as `[service.web.secrets]`.
fn parse(dir: &Path, table: &str) -> Result<Deployment, DeployError> {
    std::fs::write(dir.join("trust.toml"), "").unwrap();
    let text = format!(
        "[service.web]\nimage = \"sha256:{}\"\nlisten = \"127.0.0.1:18080\"\nport = 8080\npolicy = \"trust.toml\"\nenv = {{ MODE = \"prod\" }}\n\n[service.web.secrets]\n{table}",
        "1".repeat(64)
    );
    Deployment::parse(&dir.join("deploy.toml"), &text)
}

#[test]
fn the_table_parses_strictly() {
    let t = tempfile::tempdir().unwrap();
    let d = parse(
        t.path(),
        "DB_PASSWORD = { file = \"/etc/kiln/db\" }\nTOKEN = { file = \"tok\", env = true }\n",
    )
    .unwrap();
    let s = &d.services["web"].secrets;
    assert_eq!(s["DB_PASSWORD"].path, Path::new("/etc/kiln/db"));
    assert!(!s["DB_PASSWORD"].env);
    assert_eq!(s["TOKEN"].path, t.path().join("tok"));
    assert!(s["TOKEN"].env);
    assert!(s["TOKEN"].hmac.is_empty());

    let err = |table: &str| parse(t.path(), table).unwrap_err().to_string();
    let e = err("1BAD = { file = \"x\" }\n");
    assert!(
        e.contains("deploy.toml:9:1") && e.contains("not a secret name"),
        "{e}"
    );
    let e = err(&format!("{} = {{ file = \"x\" }}\n", "A".repeat(65)));
    assert!(e.contains("not a secret name"), "{e}");
    let e = err("A = { file = \"x\", mode = 1 }\n");
    assert!(
        e.contains("deploy.toml:9") && e.contains("unknown field"),
        "{e}"
    );
    let e = err("A = { env = true }\n");
    assert!(e.contains("file"), "{e}");
    let e = err("A = { file = \"\" }\n");
    assert!(e.contains("service.web.secrets.A.file"), "{e}");
    let e = err("MODE = { file = \"x\", env = true }\n");
    assert!(e.contains("service.web.env sets too"), "{e}");
    // Without env = true the name may equal an env variable's.
    parse(t.path(), "MODE = { file = \"x\" }\n").unwrap();
}

#[test]
fn secret_files_are_checked_before_they_are_read() {
    let t = tempfile::tempdir().unwrap();
    let ok = t.path().join("ok");
    std::fs::write(&ok, "hunter22\n").unwrap();
    chmod(&ok, 0o600);
    assert_eq!(&read_secret_file(&ok).unwrap()[..], b"hunter22\n");
    chmod(&ok, 0o640);
    read_secret_file(&ok).unwrap();

    let e = |p: &Path| read_secret_file(p).unwrap_err();
    assert!(matches!(
        e(&t.path().join("nope")),
        SecretFileError::NotFound { .. }
    ));
    let msg = e(t.path()).to_string();
    assert!(msg.contains("a directory, not a regular file"), "{msg}");
    let fifo = t.path().join("fifo");
    crate::sys::mkfifo(&fifo, 0o600).unwrap();
    assert!(e(&fifo).to_string().contains("a FIFO"));
    assert!(e(Path::new("/dev/null")).to_string().contains("a device"));
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&ok, &link).unwrap();
    assert!(matches!(e(&link), SecretFileError::Symlink { .. }));
    chmod(&ok, 0o644);
    let msg = e(&ok).to_string();
    assert!(msg.contains("world-readable (mode 0644)"), "{msg}");
    chmod(&ok, 0o602);
    let msg = e(&ok).to_string();
    assert!(msg.contains("is world-writable (mode 0602)"), "{msg}");
    chmod(&ok, 0o666);
    assert!(
        e(&ok)
            .to_string()
            .contains("world-readable and world-writable")
    );
    // No message ever carries the value.
    assert!(!msg.contains("hunter22"));
    let big = t.path().join("big");
    std::fs::write(&big, vec![b'x'; MAX_SECRET_BYTES as usize + 1]).unwrap();
    chmod(&big, 0o600);
    assert!(matches!(e(&big), SecretFileError::TooLarge { .. }));
    std::fs::write(&big, vec![b'x'; MAX_SECRET_BYTES as usize]).unwrap();
    assert_eq!(
        read_secret_file(&big).unwrap().len(),
        MAX_SECRET_BYTES as usize
    );
}

#[test]
fn the_key_is_created_once_0600_and_refused_with_other_modes() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join(KEY_FILE);
    let k1 = SecretKey::load_or_create(&p).unwrap();
    let md = std::fs::metadata(&p).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!(md.len(), 32);
    let k2 = SecretKey::load_or_create(&p).unwrap();
    assert_eq!(k1.hmac(b"v"), k2.hmac(b"v"));
    assert_ne!(k1.hmac(b"v"), k1.hmac(b"w"));
    assert_eq!(k1.hmac(b"v").len(), 64);
    let other = SecretKey::load_or_create(&t.path().join("other.key")).unwrap();
    assert_ne!(k1.hmac(b"v"), other.hmac(b"v"));

    chmod(&p, 0o644);
    let e = SecretKey::load_or_create(&p).unwrap_err().to_string();
    assert!(e.contains("mode is 0644, not 0600"), "{e}");
    chmod(&p, 0o600);
    std::fs::write(&p, b"short").unwrap();
    let e = SecretKey::load_or_create(&p).unwrap_err().to_string();
    assert!(e.contains("5 bytes"), "{e}");
    let link = t.path().join("link.key");
    std::os::unix::fs::symlink(&p, &link).unwrap();
    let e = SecretKey::load_or_create(&link).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
}

#[test]
fn read_secrets_fills_hmacs_and_locates_failures() {
    let t = tempfile::tempdir().unwrap();
    let key = SecretKey::fixed(7);
    let table = "A = { file = \"a\" }\nB = { file = \"b\", env = true }\n";
    for (n, v) in [("a", "value-a"), ("b", "value-b\n")] {
        std::fs::write(t.path().join(n), v).unwrap();
        chmod(&t.path().join(n), 0o600);
    }
    let mut d = parse(t.path(), table).unwrap();
    let values = d.read_secrets(&key).unwrap();
    let web = &values["web"];
    assert_eq!(web.len(), 2);
    assert_eq!(web[0].hmac, key.hmac(b"value-a"));
    assert_eq!(d.services["web"].secrets["A"].hmac, key.hmac(b"value-a"));
    assert!(!format!("{web:?}").contains("value-a"));
    assert_eq!(&*env_value(&web[1].value).unwrap(), "value-b");

    chmod(&t.path().join("b"), 0o604);
    let mut d = parse(t.path(), table).unwrap();
    let e = d.read_secrets(&key).unwrap_err();
    assert_eq!((e.line, e.column), (10, 14), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("service.web.secrets.B") && msg.contains("world-readable"),
        "{msg}"
    );
    assert!(!msg.contains("value-b"), "{msg}");

    // env = true needs text.
    std::fs::write(t.path().join("b"), b"bin\0ary").unwrap();
    chmod(&t.path().join("b"), 0o600);
    let mut d = parse(t.path(), table).unwrap();
    let msg = d.read_secrets(&key).unwrap_err().to_string();
    assert!(msg.contains("UTF-8 value without NUL"), "{msg}");
}

#[test]
fn a_new_value_or_env_flag_is_a_new_delivery_a_new_path_is_not() {
    let r = |path: &str, env: bool, hmac: &str| SecretRef {
        path: path.into(),
        env,
        hmac: hmac.into(),
    };
    let a = BTreeMap::from([("A".to_string(), r("/a", false, "h1"))]);
    let moved = BTreeMap::from([("A".to_string(), r("/b", false, "h1"))]);
    let rotated = BTreeMap::from([("A".to_string(), r("/a", false, "h2"))]);
    let env = BTreeMap::from([("A".to_string(), r("/a", true, "h1"))]);
    assert!(!deliveries_differ(&a, &moved));
    assert_eq!(fingerprint(&a), fingerprint(&moved));
    assert!(deliveries_differ(&a, &rotated));
    assert!(deliveries_differ(&a, &env));
    assert!(deliveries_differ(&a, &BTreeMap::new()));
    assert_ne!(fingerprint(&a), fingerprint(&rotated));
}

#[test]
fn redaction_replaces_values_within_a_line() {
    let s: &[(&str, &[u8])] = &[
        ("DB", b"hunter22\n"),
        ("PIN", b"123"),
        (
            "PEM",
            b"-----BEGIN KEY-----\nQUJDREVGR0g=\n-----END KEY-----\n",
        ),
        ("LONG", b"hunter22-and-more"),
    ];
    assert_eq!(redact_line("pw=hunter22!", s), "pw=[redacted secret DB]!");
    assert_eq!(
        redact_line("hunter22-and-more hunter22", s),
        "[redacted secret LONG] [redacted secret DB]"
    );
    // Too short to redact.
    assert_eq!(redact_line("pin 123", s), "pin 123");
    // A multi-line value: line by line.
    assert_eq!(
        redact_line("key QUJDREVGR0g= end", s),
        "key [redacted secret PEM] end"
    );
    assert!(matches!(
        redact_line("nothing here", s),
        std::borrow::Cow::Borrowed(_)
    ));

    let store = SecretStore::default();
    let mut values = SecretValues::new();
    values.insert(
        "web".into(),
        vec![SecretValue {
            name: "DB".into(),
            hmac: "h1".into(),
            env: false,
            value: Zeroizing::new(b"hunter22".to_vec()),
        }],
    );
    store.insert(&values);
    assert_eq!(store.redact("web", "x hunter22"), "x [redacted secret DB]");
    assert_eq!(store.redact("api", "x hunter22"), "x hunter22");
    let refs = BTreeMap::from([(
        "DB".to_string(),
        SecretRef {
            path: "/x".into(),
            env: false,
            hmac: "h1".into(),
        },
    )]);
    assert!(store.missing("web", &refs).is_empty());
    assert_eq!(store.missing("api", &refs), vec!["DB".to_string()]);
    let held = store.held("web", &refs).unwrap();
    assert_eq!((held[0].name.as_str(), held[0].env), ("DB", false));
    assert_eq!(&held[0].value[..], b"hunter22");
    let mut other = refs.clone();
    other.get_mut("DB").unwrap().hmac = "h2".into();
    assert_eq!(
        store.held("web", &other).err(),
        Some(vec!["DB".to_string()])
    );
    store.retain(|_, _, h| h != "h1");
    assert!(store.is_empty());
}

#[test]
fn instance_secret_files_are_0400_in_a_0500_dir_of_the_user() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("secrets/web-0001");
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    write_instance_secrets(&dir, &[("A", b"one"), ("B", b"two")], uid, gid).unwrap();
    let md = std::fs::metadata(&dir).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o500, uid, gid));
    let f = std::fs::metadata(dir.join("A")).unwrap();
    assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o400, uid, gid));
    assert_eq!(std::fs::read(dir.join("B")).unwrap(), b"two");
    remove_instance_dir(&dir).unwrap();
    assert!(!dir.exists());
    remove_instance_dir(&dir).unwrap();
}

#[test]
fn a_config_that_holds_a_secret_is_recorded_by_its_hmac() {
    let t = tempfile::tempdir().unwrap();
    assert!(SecretKey::load(&t.path().join(KEY_FILE)).is_err());
    let key = SecretKey::load_or_create(&t.path().join(KEY_FILE)).unwrap();
    let bundle = t.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), b"{\"env\":[\"A=pw\"]}").unwrap();
    let want = config_mac(&key, b"{\"env\":[\"A=pw\"]}");
    assert!(want.starts_with(CONFIG_HMAC_PREFIX));
    // The daemon's key as held (in memory), loaded from the file when nothing holds one yet.
    let store = SecretStore::default();
    let held = store.existing_key(t.path()).unwrap();
    assert!(config_drift_keyed(&bundle, &want, Ok(&held)).is_none());
    std::fs::write(bundle.join("config.json"), b"{\"env\":[\"A=pw2\"]}").unwrap();
    let f = config_drift_keyed(&bundle, &want, Ok(&key)).unwrap();
    assert_eq!(f.kind, "config");
    assert!(
        f.detail.contains("config.json has hmac-sha256:"),
        "{}",
        f.detail
    );
    // The key file replaced on disk: the key in memory still checks (the file is not read
    // again), and a key that cannot be had is a finding, not "no drift".
    std::fs::write(bundle.join("config.json"), b"{\"env\":[\"A=pw\"]}").unwrap();
    std::fs::remove_file(t.path().join(KEY_FILE)).unwrap();
    let held = store.existing_key(t.path()).unwrap();
    assert!(config_drift_keyed(&bundle, &want, Ok(&held)).is_none());
    let gone = SecretStore::default().existing_key(t.path()).unwrap_err();
    assert!(
        !t.path().join(KEY_FILE).exists(),
        "never created by a check"
    );
    let f = config_drift_keyed(&bundle, &want, Err(&gone)).unwrap();
    assert_eq!(f.kind, "config");
    assert!(
        f.detail.contains("cannot be checked: secret key"),
        "{}",
        f.detail
    );
}

/// The umask is the whole process's: this test runs itself again in a child process (the
/// test binary, filtered to this test), which sets each umask and makes a key under it.
#[test]
fn a_new_key_file_is_0600_whatever_the_umask() {
    use std::os::unix::fs::MetadataExt;
    const NAME: &str = "secrets::tests::a_new_key_file_is_0600_whatever_the_umask";
    if let Ok(dir) = std::env::var("KILN_TEST_UMASK_DIR") {
        for (i, mask) in [0o077, 0o000, 0o277, 0o377].into_iter().enumerate() {
            // SAFETY: umask only changes this (child) process's file-creation mask.
            unsafe { libc::umask(mask) };
            let path = Path::new(&dir).join(format!("{i}.key"));
            SecretKey::load_or_create(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o600, "umask {mask:04o}");
            SecretKey::load(&path).unwrap();
        }
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--test-threads", "1"])
        .env("KILN_TEST_UMASK_DIR", t.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("1 passed"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 4);
}

#[test]
fn only_a_tmpfs_mounted_exactly_there_counts() {
    use super::deliver::is_tmpfs_mount_point;
    let info = "22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755\n\
                30 22 0:40 / /run/kiln/abc rw,nosuid,nodev,noexec - tmpfs tmpfs rw,mode=700\n\
                31 22 0:41 / /run/with\\040space rw - tmpfs tmpfs rw\n\
                32 1 8:1 / /mnt/x rw - ext4 /dev/sda1 rw\n";
    assert!(is_tmpfs_mount_point(info, Path::new("/run/kiln/abc")));
    assert!(is_tmpfs_mount_point(info, Path::new("/run/with space")));
    // On the /run tmpfs, but not a mount point of its own.
    assert!(!is_tmpfs_mount_point(info, Path::new("/run/kiln/def")));
    assert!(!is_tmpfs_mount_point(info, Path::new("/run/kiln")));
    assert!(!is_tmpfs_mount_point(info, Path::new("/mnt/x")));
    // A later mount over the same point is the one in effect.
    let over = format!("{info}40 30 8:1 / /run/kiln/abc rw - ext4 /dev/sda1 rw\n");
    assert!(!is_tmpfs_mount_point(&over, Path::new("/run/kiln/abc")));
}

#[test]
fn the_memory_dir_refuses_symlinks_and_is_made_0700() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let e = ensure_tmpfs(&link.join("tag")).unwrap_err();
    assert!(
        e.to_string().contains("not a directory (a symlink?)"),
        "{e}"
    );
    assert!(!elsewhere.join("tag").exists());
    let e = ensure_tmpfs(&link).unwrap_err();
    assert!(
        e.to_string().contains("not a directory (a symlink?)"),
        "{e}"
    );
    // Not recursive: a missing grandparent is an error, not made.
    assert!(ensure_tmpfs(&t.path().join("a/b/c")).is_err());
    assert!(!t.path().join("a").exists());
    let lax = t.path().join("lax");
    std::fs::create_dir(&lax).unwrap();
    chmod(&lax, 0o755);
    super::deliver::private_dir(&lax).unwrap();
    assert_eq!(std::fs::metadata(&lax).unwrap().mode() & 0o7777, 0o700);
    let file = t.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(super::deliver::private_dir(&file).is_err());
}

/// `/dev/shm` is a tmpfs: a directory on it is no tmpfs mount point of its own, so kiln
/// mounts its own (`nosuid,nodev,noexec`).
#[test]
#[ignore = "needs root (mount)"]
fn a_tmpfs_is_mounted_even_when_the_parent_is_one() {
    let parent = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = parent.path().join("tag");
    assert!(ensure_tmpfs(&dir).unwrap(), "mounted now");
    let real = std::fs::canonicalize(&dir).unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .rfind(|l| l.split(' ').nth(4) == real.to_str())
        .unwrap()
        .to_string();
    assert!(!ensure_tmpfs(&dir).unwrap(), "kept, not mounted twice");
    let _ = std::process::Command::new("umount").arg(&dir).status();
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(line.contains(flag), "{line}");
    }
}
