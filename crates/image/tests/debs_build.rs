//! Builds with `.deb` packages: merged-/usr bases, the entrypoint check,
//! and peak memory with a large package.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use kiln_image::build::Quiet;
use kiln_image::{BuildOptions, Compression, Spec};
use kiln_oci::{Descriptor, ImageConfig, ImageManifest, RootFs, Store, media};
use sha2::Digest as _;

/// A tar (our own writer's format, via the `tar` crate) of entries
/// `(path, kind, link target or contents, mode)`.
fn tar_of(entries: &[(&str, char, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            'l' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, std::str::from_utf8(data).unwrap())
                    .unwrap();
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Writes an OCI layout at `dir` holding one image of one uncompressed
/// layer; returns its manifest digest.
fn write_base(dir: &Path, layer: &[u8]) -> String {
    let store = Store::open_or_init(dir).unwrap();
    let mut st = store.staging().unwrap();
    let l = st.put(media::LAYER_TAR, layer).unwrap();
    let cfg = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![l.digest],
        },
        ..Default::default()
    };
    let c = st.put(media::CONFIG, &cfg.to_bytes()).unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: c,
        layers: vec![l],
        subject: None,
        annotations: Default::default(),
    };
    let md: Descriptor = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
    st.commit().unwrap();
    store.tag("base", "1", &md).unwrap();
    md.digest.to_string()
}

/// A `.deb` with a data.tar (given, uncompressed) compressed with zstd.
fn deb_of(name: &str, data_tar: &[u8]) -> Vec<u8> {
    let control = format!(
        "Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: x <x@y>\nDescription: d\n"
    );
    let ctl = tar_of(&[
        ("./", 'd', b"", 0o755),
        ("./control", 'f', control.as_bytes(), 0o644),
    ]);
    let ctl = zstd::encode_all(&ctl[..], 3).unwrap();
    let data = zstd::encode_all(data_tar, 3).unwrap();
    ar(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.zst", &ctl),
        ("data.tar.zst", &data),
    ])
}

fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            "100644",
            data.len()
        );
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

fn sha(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn build(dir: &Path, spec: &str) -> Result<kiln_image::BuildReport, kiln_image::BuildError> {
    let p = dir.join("kiln.toml");
    std::fs::write(&p, spec).unwrap();
    let spec = Spec::load(&p).unwrap();
    kiln_image::build(
        &spec,
        &BuildOptions {
            state_dir: dir.join("state"),
            compression: Compression::Zstd,
            tag: None,
            out: None,
            threads: 1,
            source_date_epoch: Some("0".into()),
            progress: Arc::new(Quiet),
            offline: false,
        },
    )
}

/// The paths of the packages layer, from the build's file manifest.
fn files_of(dir: &Path, r: &kiln_image::BuildReport) -> serde_json::Value {
    let store = Store::open(dir.join("state/store")).unwrap();
    let fm = r
        .referrers
        .iter()
        .find(|x| x.artifact_type == kiln_sbom::MEDIA_TYPE_FILE_MANIFEST)
        .unwrap();
    let m = ImageManifest::from_bytes(&store.read_blob(&fm.digest).unwrap(), "fm").unwrap();
    serde_json::from_slice(&store.read_blob(&m.layers[0].digest).unwrap()).unwrap()
}

fn usrmerge_base(dir: &Path, extra: &[(&str, char, &[u8], u32)]) -> String {
    let mut entries: Vec<(&str, char, &[u8], u32)> = vec![
        ("usr/", 'd', b"", 0o755),
        ("usr/bin/", 'd', b"", 0o755),
        ("usr/lib/", 'd', b"", 0o755),
        ("usr/lib/x86_64-linux-gnu/", 'd', b"", 0o755),
        ("usr/sbin/", 'd', b"", 0o755),
        ("bin", 'l', b"usr/bin", 0o777),
        ("lib", 'l', b"usr/lib", 0o777),
        ("sbin", 'l', b"usr/sbin", 0o777),
        ("lib64", 'l', b"usr/lib", 0o777),
    ];
    entries.extend_from_slice(extra);
    write_base(&dir.join("base"), &tar_of(&entries))
}

/// A .deb whose data.tar has `./lib/`, `./bin/` and files under them, as
/// packages built for non-merged systems do, over a merged-/usr base: the
/// base's links survive and the files land under /usr.
#[test]
fn usrmerge_base_keeps_its_links() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = usrmerge_base(d, &[]);
    let data = tar_of(&[
        ("./", 'd', b"", 0o755),
        ("./bin/", 'd', b"", 0o755),
        ("./bin/foo", 'f', b"#!/bin/sh\n", 0o755),
        ("./lib/", 'd', b"", 0o755),
        ("./lib/x86_64-linux-gnu/", 'd', b"", 0o755),
        (
            "./lib/x86_64-linux-gnu/libfoo.so",
            'f',
            b"not really",
            0o644,
        ),
        ("./lib64/", 'd', b"", 0o755),
        ("./sbin/", 'd', b"", 0o755),
    ]);
    let deb = deb_of("foo", &data);
    std::fs::write(d.join("foo.deb"), &deb).unwrap();
    let spec = format!(
        "[image]\nname = \"app\"\ntag = \"1\"\nbase = \"oci:base@{base}\"\nentrypoint = [\"/bin/foo\"]\ncheck_entrypoint = false\n\n[[debs]]\npath = \"foo.deb\"\nsha256 = \"{}\"\n",
        sha(&deb)
    );
    let r = build(d, &spec).unwrap();
    let fm = files_of(d, &r);
    let entries = fm["entries"].as_array().unwrap();
    let get = |p: &str| entries.iter().find(|e| e["path"] == p).cloned();
    for (link, target) in [
        ("/bin", "usr/bin"),
        ("/lib", "usr/lib"),
        ("/sbin", "usr/sbin"),
        ("/lib64", "usr/lib"),
    ] {
        let e = get(link).unwrap_or_else(|| panic!("{link} is gone"));
        assert_eq!(e["type"], "symlink", "{link}: {e}");
        assert_eq!(e["link"], target, "{link}: {e}");
    }
    assert_eq!(get("/usr/bin/foo").unwrap()["type"], "file");
    assert_eq!(
        get("/usr/lib/x86_64-linux-gnu/libfoo.so").unwrap()["type"],
        "file"
    );
    assert!(get("/bin/foo").is_none() && get("/lib/x86_64-linux-gnu").is_none());
    // check_entrypoint = false is said, and recorded in the manifest.
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("check_entrypoint = false")),
        "{:?}",
        r.warnings
    );
    let store = Store::open(d.join("state/store")).unwrap();
    let m = ImageManifest::from_bytes(&store.read_blob(&r.digest).unwrap(), "m").unwrap();
    assert_eq!(
        m.annotations
            .get(kiln_image::build::ENTRYPOINT_CHECK_ANNOTATION)
            .map(String::as_str),
        Some("off")
    );
    // With the check on, the script's /bin/sh is missing: the build fails.
    let e = build(d, &spec.replace("check_entrypoint = false\n", ""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/bin/foo is a script for /bin/sh, which is not in the image"),
        "{e}"
    );
}

/// The entrypoint check reads base files out of the base's layers: a
/// static busybox in the base, reached as `sh` through PATH and the
/// merged-/usr link, starts; a dynamic binary whose loader is not in the
/// base does not.
#[test]
#[ignore = "needs /bin/busybox (busybox-static) on an x86_64 host"]
fn entrypoint_check_reads_the_base() {
    assert_eq!(std::env::consts::ARCH, "x86_64", "the base is amd64");
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let ls = std::fs::read("/bin/ls").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = usrmerge_base(
        d,
        &[
            ("usr/bin/busybox", 'f', &bb, 0o755),
            ("usr/bin/sh", 'l', b"busybox", 0o777),
            ("usr/bin/ls", 'f', &ls, 0o755),
        ],
    );
    let spec = |ep: &str| {
        format!(
            "[image]\nname = \"app\"\ntag = \"1\"\nbase = \"oci:base@{base}\"\nentrypoint = [{ep}]\n"
        )
    };
    build(d, &spec("\"sh\", \"-c\", \"echo hi\"")).unwrap();
    build(d, &spec("\"/bin/busybox\"")).unwrap();
    let e = build(d, &spec("\"ls\"")).unwrap_err().to_string();
    assert!(e.contains("(PT_INTERP), which is not in the image"), "{e}");
    assert!(e.contains("check_entrypoint = false"), "{e}");
}

/// Peak memory of a build with a package whose one file is 192 MiB: the
/// package is streamed (to a spool on disk), never held. Measured as the
/// peak RSS (VmHWM) of a child process doing only the build.
#[test]
fn large_package_peak_memory() {
    const SIZE: u64 = 192 << 20;
    if std::env::var_os("KILN_PEAK_CHILD").is_some() {
        let d = Path::new(&std::env::var_os("KILN_PEAK_CHILD").unwrap()).to_path_buf();
        let spec = std::fs::read_to_string(d.join("spec.toml")).unwrap();
        build(&d, &spec).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        println!("PEAK {hwm}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Text that compresses ~10×: well within 16 MiB + 100 × compressed.
    let mut h = tar::Header::new_ustar();
    h.set_size(SIZE);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    // Generate the data.tar compressed while it is written.
    let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
    h.set_path("./big").unwrap();
    h.set_cksum();
    enc.write_all(h.as_bytes()).unwrap();
    let mut i = 0u64;
    let mut line = [0u8; 64];
    for _ in 0..SIZE / 64 {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let s = format!("{:063x}\n", i >> 40);
        line.copy_from_slice(s.as_bytes());
        enc.write_all(&line).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    let data_zst = enc.finish().unwrap();
    let ctl = tar_of(&[(
        "./control",
        'f',
        b"Package: big\nVersion: 1\nArchitecture: amd64\nMaintainer: x <x@y>\nDescription: d\n",
        0o644,
    )]);
    let ctl = zstd::encode_all(&ctl[..], 3).unwrap();
    let deb = ar(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.zst", &ctl),
        ("data.tar.zst", &data_zst),
    ]);
    std::fs::write(d.join("big.deb"), &deb).unwrap();
    std::fs::write(
        d.join("spec.toml"),
        format!("[image]\nname = \"big\"\ntag = \"1\"\n\n[[debs]]\npath = \"big.deb\"\nsha256 = \"{}\"\n", sha(&deb)),
    )
    .unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "large_package_peak_memory",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_PEAK_CHILD", d)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kb: u64 = stdout
        .lines()
        .find_map(|l| l.split_once("PEAK VmHWM:").map(|x| x.1))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {stdout}"));
    eprintln!(
        "peak RSS of a build with a {} MiB package: {} MiB",
        SIZE >> 20,
        kb >> 10
    );
    assert!(kb < 128 << 10, "peak RSS {} MiB", kb >> 10);
}

/// A package named in the spec that is a FIFO, a device or a link to one:
/// the build fails at once, naming the package, and never blocks.
#[test]
fn hostile_package_files_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_path_buf();
    let base = usrmerge_base(&d, &[]);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(d.join("fifo.deb"))
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.deb")).unwrap();
    for (name, want) in [("fifo.deb", "FIFO"), ("zero.deb", "character device")] {
        let spec = format!(
            "[image]\nname = \"app\"\ntag = \"1\"\nbase = \"oci:base@{base}\"\ncheck_entrypoint = false\n\n[[debs]]\npath = \"{name}\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        );
        let dir = d.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(build(&dir, &spec).map(|_| ()).map_err(|e| e.to_string()));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the build blocked on the package: killed after 120 s")
            .unwrap_err();
        assert!(e.contains(name) && e.contains(want), "{e}");
    }
}
