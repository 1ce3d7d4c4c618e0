//! Hand-built OCI images for the tests: raw tar headers (so hostile names
//! survive), gzip/zstd/plain layers, a config and a manifest in a `Store`.
#![allow(dead_code)]

use std::io::Write;

use kiln_oci::{
    Descriptor, Digest, ImageConfig, ImageManifest, RootFs, RuntimeConfig, Store, media,
};

pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str),
    Fifo(&'a str),
}

fn header(name: &str, link: Option<&str>, t: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().expect("gnu header");
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(t);
    h.set_mode(mode);
    h.set_uid(1234);
    h.set_gid(2345);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h.set_cksum();
    h
}

pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (h, data): (tar::Header, &[u8]) = match e {
            E::Dir(n, m) => (header(n, None, tar::EntryType::Directory, *m, 0), b""),
            E::File(n, m, d) => (
                header(n, None, tar::EntryType::Regular, *m, d.len() as u64),
                d,
            ),
            E::Sym(n, t) => (header(n, Some(t), tar::EntryType::Symlink, 0o777, 0), b""),
            E::Hard(n, t) => (header(n, Some(t), tar::EntryType::Link, 0o644, 0), b""),
            E::Char(n) => (header(n, None, tar::EntryType::Char, 0o666, 0), b""),
            E::Fifo(n) => (header(n, None, tar::EntryType::Fifo, 0o600, 0), b""),
        };
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

pub fn compress(media_type: &str, tar: &[u8]) -> Vec<u8> {
    match media_type {
        media::LAYER_GZIP => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(tar).unwrap();
            w.finish().unwrap()
        }
        media::LAYER_ZSTD => zstd::encode_all(tar, 1).unwrap(),
        _ => tar.to_vec(),
    }
}

pub struct ImageOpts {
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    /// Replace the real diff_ids (to test a mismatch).
    pub diff_ids: Option<Vec<Digest>>,
}

impl Default for ImageOpts {
    fn default() -> Self {
        ImageOpts {
            user: None,
            entrypoint: vec!["/bin/busybox".into(), "true".into()],
            diff_ids: None,
        }
    }
}

/// Store an image made of `layers` (media type, uncompressed tar).
pub fn put_image(
    store: &Store,
    layers: &[(&str, Vec<u8>)],
    opts: ImageOpts,
) -> (Digest, ImageManifest) {
    let mut st = store.staging().unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (mt, tar) in layers {
        diff_ids.push(Digest::of(tar));
        descs.push(st.put(mt, &compress(mt, tar)).unwrap());
    }
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: RuntimeConfig {
            user: opts.user,
            entrypoint: Some(opts.entrypoint),
            env: vec!["LOG_LEVEL=info".into()],
            working_dir: Some("/".into()),
            ..Default::default()
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: opts.diff_ids.unwrap_or(diff_ids),
        },
        ..Default::default()
    };
    let cdesc = st.put(media::CONFIG, &config.to_bytes()).unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: cdesc,
        layers: descs,
        subject: None,
        annotations: Default::default(),
    };
    let mdesc: Descriptor = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
    st.commit().unwrap();
    (mdesc.digest, m)
}

/// The busybox httpd test image: a gzip layer with busybox, /www and an
/// /etc/passwd naming user `app` (65532), and a zstd layer on top.
pub fn busybox_image(store: &Store) -> Digest {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is needed");
    let l1 = tar_of(&[
        E::Dir("./", 0o755),
        E::Dir("bin/", 0o755),
        E::File("bin/busybox", 0o755, &bb),
        E::Dir("etc/", 0o755),
        E::File(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/false\napp:x:65532:65532::/:/bin/false\n",
        ),
        E::File("etc/group", 0o644, b"root:x:0:\napp:x:65532:\n"),
        E::Dir("www/", 0o755),
        E::File("www/index.html", 0o644, b"<h1>hello from kiln</h1>\n"),
        E::File("www/old.html", 0o644, b"gone\n"),
    ]);
    let l2 = tar_of(&[
        E::File("www/.wh.old.html", 0o644, b""),
        E::File("www/health", 0o644, b"ok\n"),
    ]);
    put_image(
        store,
        &[(media::LAYER_GZIP, l1), (media::LAYER_ZSTD, l2)],
        ImageOpts {
            user: Some("app".into()),
            entrypoint: vec![
                "/bin/busybox".into(),
                "httpd".into(),
                "-f".into(),
                "-p".into(),
                "8080".into(),
                "-h".into(),
                "/www".into(),
            ],
            diff_ids: None,
        },
    )
    .0
}
