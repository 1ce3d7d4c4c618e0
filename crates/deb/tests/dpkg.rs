//! Packages built by the real `dpkg-deb`, checked against `dpkg-deb`'s own view
//! of them and against what a real `dpkg --root=... -i` writes to its database.
//!
//! They need `dpkg` and `dpkg-deb`, so they are `#[ignore]`d; `scripts/test.sh`
//! runs them (`--include-ignored`), and a missing tool fails them.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_deb::{Deb, EntryKind, parse_stanzas, render_status};

const FOO_CONTROL: &str = "\
Package: foo
Version: 1.2-3
Architecture: amd64
Maintainer: Me <me@example.com>
Multi-Arch: same
Source: foosrc (1.2-1)
Section: utils
Priority: optional
Homepage: https://example.com
Depends: libc6 (>= 2.36), libfoo1
Description: a test package
 Long description line.
 .
 More.
";

/// Exercises dpkg's status rewriting: field order, case, relations, epochs.
const BAR_CONTROL: &str = concat!(
    "package: bar\n",
    "version: 0:2.0-1\n",
    "architecture: all\n",
    "X-Custom: first\n",
    "essential: yes\n",
    "multi-arch: Foreign\n",
    "Maintainer: Me <me@example.com>\n",
    "Installed-Size: 12\n",
    "Pre-Depends:   a:native ( >= 0:1.2 ) | b:any,c\n",
    "Recommends: d\n",
    "  , e\n",
    "Breaks: f (< 2), g (> 3)\n",
    "Provides: virt (= 1.0)\n",
    "Description: weird  spacing  \n",
    " body  \n",
    " last\n",
    "Homepage: https://example.com/bar\n",
);

const LONG_DIR: &str = "a-directory-name-that-is-long-enough-to-need-gnu-long-names-in-tar-because-it-exceeds-one-hundred-bytes";

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(path: &Path, contents: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Lays out a package tree: a dir, a file, an executable, a symlink, a hard
/// link, conffiles, a postinst, an empty dir and a long path.
fn package_tree(root: &Path, control: &str, conffiles: &str) {
    mkdir(root);
    mkdir(&root.join("DEBIAN"));
    write(&root.join("DEBIAN/control"), control, 0o644);
    write(&root.join("DEBIAN/conffiles"), conffiles, 0o644);
    write(
        &root.join("DEBIAN/postinst"),
        "#!/bin/sh\necho postinst ran\n",
        0o755,
    );
    for d in [
        "etc",
        "etc/foo",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/lib/foo",
        "usr/lib/foo/empty",
        "usr/share",
        "usr/share/doc",
        "usr/share/doc/foo",
    ] {
        mkdir(&root.join(d));
    }
    write(&root.join("etc/foo/foo.conf"), "conf=1\n", 0o644);
    symlink("foo.conf", root.join("etc/foo/link.conf")).unwrap();
    write(&root.join("usr/bin/foo"), "#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("usr/bin/aaa"), "zzz\n", 0o644);
    symlink("foo", root.join("usr/bin/foo-link")).unwrap();
    write(&root.join("usr/share/doc/foo/README"), "doc\n", 0o644);
    fs::hard_link(
        root.join("usr/share/doc/foo/README"),
        root.join("usr/share/doc/foo/README.hard"),
    )
    .unwrap();
    let long = root.join("usr/share/foo").join(LONG_DIR);
    mkdir(&root.join("usr/share/foo"));
    mkdir(&long);
    write(&long.join("file"), "long\n", 0o644);
}

fn build(dir: &Path, name: &str, control: &str, conffiles: &str, compression: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    if !tree.exists() {
        package_tree(&tree, control, conffiles);
    }
    let deb = dir.join(format!("{name}-{compression}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(format!("-Z{compression}"))
        .arg(&tree)
        .arg(&deb));
    deb
}

/// Paths from `dpkg-deb -c`, normalized the way `DataEntry::path` is.
fn dpkg_deb_paths(deb: &Path) -> Vec<String> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let mut paths = Vec::new();
    for line in listing.lines() {
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(' ').unwrap()..];
        }
        let mut path = rest.trim_start();
        if line.starts_with('l') {
            path = path.split(" -> ").next().unwrap();
        }
        if line.starts_with('h') {
            path = path.split(" link to ").next().unwrap();
        }
        let path = path.trim_start_matches('.').trim_end_matches('/');
        if !path.is_empty() {
            paths.push(path.to_string());
        }
    }
    paths
}

#[test]
#[ignore = "needs dpkg-deb"]
fn parse_matches_dpkg_deb_for_every_compression() {
    assert!(
        have("dpkg-deb"),
        "dpkg-deb is required (scripts/install-deps.sh installs dpkg)"
    );
    let dir = tempfile::tempdir().unwrap();
    for (compression, expected) in [
        ("xz", "xz"),
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        ("none", "none"),
    ] {
        let path = build(
            dir.path(),
            "foo",
            FOO_CONTROL,
            "/etc/foo/foo.conf\n",
            compression,
        );
        let deb = Deb::parse(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(deb.data_compression, expected);

        let ours: Vec<_> = deb.data.iter().map(|e| e.path.clone()).collect();
        assert_eq!(ours, dpkg_deb_paths(&path), "{compression}");

        let fields = run(Command::new("dpkg-deb").arg("-f").arg(&path));
        assert_eq!(deb.control.render(), fields);
        for field in ["Package", "Version", "Architecture", "Multi-Arch", "Source"] {
            let value = run(Command::new("dpkg-deb").arg("-f").arg(&path).arg(field));
            assert_eq!(deb.control.get(field).unwrap(), value.trim_end());
        }

        assert_eq!(deb.name(), "foo");
        assert_eq!(deb.version(), "1.2-3");
        assert_eq!(deb.architecture(), "amd64");
        assert_eq!(deb.multi_arch(), Some("same"));
        assert_eq!(deb.source(), ("foosrc".into(), "1.2-1".into()));
        assert_eq!(deb.info_name(), "foo:amd64");
        assert_eq!(deb.maintainer_scripts(), ["postinst"]);
        assert_eq!(deb.conffiles(), ["/etc/foo/foo.conf"]);
        assert_eq!(
            deb.control_files.keys().collect::<Vec<_>>(),
            ["conffiles", "postinst"]
        );

        let get = |p: &str| deb.data.iter().find(|e| e.path == p).unwrap();
        assert_eq!(get("/usr/bin/foo").mode, 0o755);
        assert_eq!(
            contents(get("/usr/bin/foo")),
            Some(&b"#!/bin/sh\necho hi\n"[..])
        );
        assert_eq!(get("/usr/bin/aaa").mode, 0o644);
        assert_eq!(
            get("/usr/bin/foo-link").kind,
            EntryKind::Symlink("foo".into())
        );
        assert_eq!(
            get("/usr/share/doc/foo/README.hard").kind,
            EntryKind::Hardlink("/usr/share/doc/foo/README".into())
        );
        assert_eq!(get("/usr/lib/foo/empty").kind, EntryKind::Dir);
        let long = format!("/usr/share/foo/{LONG_DIR}/file");
        assert_eq!(contents(get(&long)), Some(&b"long\n"[..]));
        assert!(deb.data.iter().all(|e| e.uid == 0 && e.gid == 0));
    }
}

/// Installs with the real dpkg into a scratch root (maintainer scripts run
/// chrootless; ours only echo) and returns the root.
fn dpkg_install(dir: &Path, deb: &Path) -> PathBuf {
    let root = dir.join(format!(
        "root-{}",
        deb.file_stem().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
            "--force-breaks",
            "-i",
        ])
        .arg(deb)
        .output()
        .expect("running dpkg -i");
    assert!(
        out.status.success(),
        "dpkg -i failed, so there is nothing to compare with: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

fn check_against_dpkg(name: &str, control: &str, conffiles: &str) {
    assert!(
        have("dpkg-deb") && have("dpkg"),
        "dpkg and dpkg-deb are required (scripts/install-deps.sh installs dpkg)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), name, control, conffiles, "xz");
    let deb = Deb::parse(&fs::read(&path).unwrap()).unwrap();
    let root = dpkg_install(dir.path(), &path);
    let db = root.join("var/lib/dpkg");

    let status = fs::read_to_string(db.join("status")).unwrap();
    assert_eq!(render_status(&[deb.status_stanza()]), status);
    assert_eq!(parse_stanzas(&status).unwrap(), [deb.status_stanza()]);

    let info = db.join("info");
    let info_name = deb.info_name();
    assert_eq!(
        fs::read_to_string(info.join(format!("{info_name}.list"))).unwrap(),
        deb.list_file()
    );
    assert_eq!(
        fs::read_to_string(info.join(format!("{info_name}.md5sums"))).unwrap(),
        deb.md5sums_file()
    );

    let mut on_disk: Vec<(String, Vec<u8>, u32)> = fs::read_dir(&info)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "format")
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
                meta.permissions().mode() & 0o7777,
            )
        })
        .collect();
    on_disk.sort();
    assert_eq!(deb.info_files(), on_disk);
}

#[test]
#[ignore = "needs dpkg and dpkg-deb"]
fn database_matches_real_dpkg_multi_arch_same() {
    check_against_dpkg("foo", FOO_CONTROL, "/etc/foo/foo.conf\n");
}

#[test]
#[ignore = "needs dpkg and dpkg-deb"]
fn database_matches_real_dpkg_rewritten_fields() {
    check_against_dpkg(
        "bar",
        BAR_CONTROL,
        "/etc/foo/foo.conf\nremove-on-upgrade /etc/foo/old.conf\n/etc/foo/link.conf\n",
    );
}

/// With `KILN_DEB_SAMPLES=<dir of .deb files>` (e.g. from `apt-get download`),
/// checks each package that is installed on this machine in the same version
/// against this machine's dpkg database.
#[test]
fn real_packages_match_this_machines_dpkg_database() {
    let Some(dir) = std::env::var_os("KILN_DEB_SAMPLES") else {
        return;
    };
    let status = fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let installed = parse_stanzas(&status).unwrap();
    let mut checked = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "deb") {
            continue;
        }
        let deb = Deb::parse(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(system) = installed.iter().find(|s| {
            s.get("Package") == Some(deb.name())
                && s.get("Architecture") == Some(deb.architecture())
                && s.get("Version") == deb.status_stanza().get("Version")
        }) else {
            eprintln!("{}: not installed here in this version", path.display());
            continue;
        };
        let ours = deb.status_stanza();
        // Priority and Section may come from the archive's overrides.
        let strip = |s: &kiln_deb::Stanza| {
            let mut s = s.clone();
            for field in ["Priority", "Section"] {
                s.remove(field);
            }
            s
        };
        assert_eq!(strip(&ours), strip(system), "{}", path.display());
        let info = Path::new("/var/lib/dpkg/info");
        let list = fs::read_to_string(info.join(format!("{}.list", deb.info_name()))).unwrap();
        assert_eq!(deb.list_file(), list, "{}", path.display());
        if let Ok(md5sums) = fs::read_to_string(info.join(format!("{}.md5sums", deb.info_name()))) {
            assert_eq!(deb.md5sums_file(), md5sums, "{}", path.display());
        }
        checked += 1;
    }
    eprintln!("checked {checked} real packages");
}

fn contents(e: &kiln_deb::DataEntry) -> Option<&[u8]> {
    match &e.kind {
        EntryKind::File(f) => f.contents.as_deref(),
        _ => None,
    }
}
