//! Registries that stall or drip: every pull and push fails with a timeout
//! that names the URL, instead of hanging. Limits are shrunk to 1 s so the
//! tests are quick; nothing here asserts on elapsed time.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use kiln_oci::{Descriptor, Digest, ImageManifest, Store, media};
use kiln_registry::{Client, LowSpeedLimit, Options, Reference, RegistryError, Timeouts};

fn client() -> Client {
    Client::new(Options {
        insecure: true,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(1),
            low_speed: LowSpeedLimit {
                bytes: 1024,
                window: Duration::from_secs(1),
            },
        },
        ..Options::default()
    })
    .unwrap()
}

/// What a hostile server does once it has read a request.
#[derive(Clone, Copy)]
enum Misbehave {
    /// Accept the connection and never answer.
    Silent,
    /// Send the status line, headers and 100 bytes of a longer body, then stall.
    HeadersThenStall,
    /// Send headers, then one byte every 200 ms, forever.
    Drip,
}

/// A server that answers `good` paths properly and misbehaves on `bad_path`
/// (or on every path when `bad_path` is empty).
fn hostile_server(good: Vec<(String, Vec<u8>)>, bad_path: String, how: Misbehave) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let good = good.clone();
            let bad_path = bad_path.clone();
            std::thread::spawn(move || serve(conn, &good, &bad_path, how));
        }
    });
    port
}

fn serve(mut conn: TcpStream, good: &[(String, Vec<u8>)], bad_path: &str, how: Misbehave) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim_end().is_empty() {
            break;
        }
    }
    if bad_path.is_empty() || path == bad_path {
        match how {
            Misbehave::Silent => {}
            Misbehave::HeadersThenStall => {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n",
                );
                let _ = conn.write_all(&[b'{'; 100]);
            }
            Misbehave::Drip => {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n",
                );
                loop {
                    if conn.write_all(b" ").and_then(|_| conn.flush()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        // Hold the connection open until the client gives up.
        let mut sink = [0u8; 1];
        let _ = std::io::Read::read(&mut conn, &mut sink);
        return;
    }
    let body = good
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b.clone());
    let head = match &body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
            b.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".into(),
    };
    let _ = conn.write_all(head.as_bytes());
    if let Some(b) = body {
        let _ = conn.write_all(&b);
    }
}

fn timed_out(e: &RegistryError, url_part: &str, reason: &str) {
    match e {
        RegistryError::Timeout { url, .. } => {
            assert!(url.contains(url_part), "{url} lacks {url_part}")
        }
        other => panic!("expected a timeout, got: {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("http://127.0.0.1:") && msg.contains(url_part),
        "{msg}"
    );
    assert!(msg.contains(reason), "{reason:?} not in {msg}");
}

fn pull(port: u16) -> RegistryError {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let r = Reference::parse(&format!("127.0.0.1:{port}/hello:1.0.0")).unwrap();
    let e = client().pull(&r, &store).unwrap_err();
    assert_eq!(blob_count(&store), 0, "a failed pull left blobs");
    e
}

#[test]
fn a_registry_that_never_answers() {
    let port = hostile_server(vec![], String::new(), Misbehave::Silent);
    let e = pull(port);
    timed_out(&e, "/v2/hello/manifests/1.0.0", "no response within 1 s");
}

#[test]
fn headers_then_a_stalled_body() {
    let port = hostile_server(vec![], String::new(), Misbehave::HeadersThenStall);
    let e = pull(port);
    timed_out(&e, "/v2/hello/manifests/1.0.0", "sent nothing for 1 s");
}

#[test]
fn a_dripping_manifest() {
    let port = hostile_server(vec![], String::new(), Misbehave::Drip);
    let e = pull(port);
    timed_out(&e, "/v2/hello/manifests/1.0.0", "too slow");
}

/// A good manifest whose config blob drips or stalls.
fn blob_server(how: Misbehave) -> (u16, Descriptor) {
    let cfg = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}".to_vec();
    let config = Descriptor::new(media::CONFIG, Digest::of(&cfg), 100_000);
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: vec![],
        subject: None,
        annotations: Default::default(),
    };
    let port = hostile_server(
        vec![("/v2/hello/manifests/1.0.0".into(), m.to_bytes())],
        format!("/v2/hello/blobs/{}", config.digest),
        how,
    );
    (port, config)
}

#[test]
fn a_dripping_blob() {
    let (port, config) = blob_server(Misbehave::Drip);
    let e = pull(port);
    timed_out(
        &e,
        &format!("/v2/hello/blobs/{}", config.digest),
        "too slow",
    );
}

#[test]
fn a_stalled_blob() {
    let (port, config) = blob_server(Misbehave::HeadersThenStall);
    let e = pull(port);
    timed_out(
        &e,
        &format!("/v2/hello/blobs/{}", config.digest),
        "sent nothing for 1 s",
    );
}

#[test]
fn push_to_a_registry_that_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_image(dir.path());
    let port = hostile_server(vec![], String::new(), Misbehave::Silent);
    let r = Reference::parse(&format!("127.0.0.1:{port}/hello:1.0.0")).unwrap();
    let e = client()
        .push_image(&img.store, &img.manifest, &r)
        .unwrap_err();
    timed_out(&e, "/v2/hello/blobs/sha256:", "no response within 1 s");
}
