#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_oci::{Descriptor, Digest, ImageManifest, Store, media};

/// Panics unless the external tool at `path` is installed (`how`: how to
/// install it). Tests that need one are `#[ignore]`d.
pub fn require_tool(path: &str, how: &str) {
    assert!(Path::new(path).exists(), "{path} is not installed ({how})");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A docker-registry process on 127.0.0.1, killed on drop.
pub struct Registry {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Start one; `extra` is appended to the config (e.g. an `auth:` section).
    pub fn start(extra: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(&mut s).read_line(&mut line).is_ok() && line.starts_with("HTTP/")
                {
                    break;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(reg.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry did not come up on port {port}: {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Path of a blob's data file in the registry's filesystem storage.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir.path().join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub struct Image {
    pub store: Store,
    pub manifest: Descriptor,
    pub referrer: Descriptor,
    pub blobs: Vec<Descriptor>,
}

/// An image (config + a ~3 MB layer) tagged `hello:1.0.0`, and one
/// signature-like referrer artifact whose subject is it.
pub fn build_image(root: &Path) -> Image {
    let store = Store::open_or_init(root).unwrap();
    let mut st = store.staging().unwrap();
    let layer_bytes = noise(3 * 1024 * 1024 + 12345, 7);
    let layer = st.put(media::LAYER_TAR, &layer_bytes).unwrap();
    let config_bytes = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]},
    }))
    .unwrap();
    let config = st.put(media::CONFIG, &config_bytes).unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: vec![layer.clone()],
        subject: None,
        annotations: Default::default(),
    };
    let mb = m.to_bytes();
    let manifest = st.put(media::MANIFEST, &mb).unwrap();

    let empty = st.put(media::EMPTY, media::EMPTY_CONTENT).unwrap();
    let sig = st
        .put("application/vnd.example.sig", b"signature bytes")
        .unwrap();
    let mut r = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: Some("application/vnd.example.sig".into()),
        config: empty.clone(),
        layers: vec![sig.clone()],
        subject: Some(manifest.clone()),
        annotations: Default::default(),
    };
    r.annotations
        .insert("org.example.kind".into(), "signature".into());
    let referrer = st.put(media::MANIFEST, &r.to_bytes()).unwrap();
    st.commit().unwrap();
    store.tag("hello", "1.0.0", &manifest).unwrap();
    store.add_untagged(std::slice::from_ref(&referrer)).unwrap();
    Image {
        store,
        manifest,
        referrer,
        blobs: vec![config, layer, empty, sig],
    }
}

/// Number of blobs in a store.
pub fn blob_count(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

// ------------------------------------------------------------ fake server

pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn with(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering with `handler`; returns the port.
pub fn fake_server(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let handler = handler.clone();
            std::thread::spawn(move || serve(conn, &*handler));
        }
    });
    port
}

fn serve(conn: TcpStream, handler: &dyn Fn(&Req) -> Resp) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Req {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let _ = (&mut reader).take(n).read_to_end(&mut req.body);
    }
    let resp = handler(&req);
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
    let _ = out.write_all(head.as_bytes());
    if req.method != "HEAD" {
        let _ = out.write_all(&resp.body);
    }
    let _ = out.flush();
}
