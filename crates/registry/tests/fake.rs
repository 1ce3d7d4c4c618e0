//! Against small fake registries (always run; no external tools).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use kiln_oci::{Descriptor, Digest, ImageManifest, Store, media};
use kiln_registry::{Client, Options, Reference, RegistryError};

fn insecure() -> Client {
    Client::new(Options {
        insecure: true,
        ..Options::default()
    })
    .unwrap()
}

/// A manifest with one config blob; the server serves `served` for it.
fn tamper_server(served: Vec<u8>) -> (u16, Descriptor, Descriptor) {
    let real = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}".to_vec();
    let config = Descriptor::new(media::CONFIG, Digest::of(&real), real.len() as u64);
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: vec![],
        subject: None,
        annotations: Default::default(),
    };
    let mb = m.to_bytes();
    let md = Descriptor::new(media::MANIFEST, Digest::of(&mb), mb.len() as u64);
    let cfg_path = format!("/v2/hello/blobs/{}", config.digest);
    let port = fake_server(move |req| {
        if req.path == "/v2/hello/manifests/1.0.0" {
            Resp::new(200, mb.clone()).with("Content-Type", media::MANIFEST)
        } else if req.path == cfg_path {
            Resp::new(200, served.clone())
        } else {
            Resp::new(404, "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}")
        }
    });
    (port, md, config)
}

#[test]
fn tampered_blob_is_rejected_and_nothing_lands() {
    let config_len = tamper_server(Vec::new()).2.size as usize;
    let mut wrong = b"{\"architecture\":\"arm64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}".to_vec();
    wrong.truncate(config_len);
    assert_eq!(wrong.len(), config_len);
    let (port, _md, config) = tamper_server(wrong.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let r = Reference::parse(&format!("127.0.0.1:{port}/hello:1.0.0")).unwrap();
    let err = insecure().pull(&r, &store).unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected,
            actual,
            url,
            ..
        } => {
            assert_eq!(*expected, config.digest.to_string());
            assert_eq!(*actual, Digest::of(&wrong).to_string());
            assert!(url.ends_with(&format!("/blobs/{}", config.digest)), "{url}");
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&config.digest.to_string()) && msg.contains("hashes to"),
        "{msg}"
    );
    assert_eq!(blob_count(&store), 0, "a tampered pull left blobs behind");
    assert!(store.index().unwrap().manifests.is_empty());
    // No staging leftovers either.
    let tmp = dir.path().join(".kiln/tmp");
    if tmp.exists() {
        assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
    }
}

#[test]
fn oversized_and_truncated_blobs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [(10usize, "more than"), (0, "got 5")] {
        let (port, _md, _config) = tamper_server(if extra > 0 {
            vec![b'x'; 200]
        } else {
            b"short".to_vec()
        });
        let store = Store::open_or_init(dir.path().join(format!("s{extra}"))).unwrap();
        let r = Reference::parse(&format!("127.0.0.1:{port}/hello:1.0.0")).unwrap();
        let err = insecure().pull(&r, &store).unwrap_err();
        assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(blob_count(&store), 0);
    }
}

#[test]
fn manifest_digest_is_verified() {
    let (port, md, _config) = tamper_server(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    // A server that answers every manifest request with the same manifest,
    // asked for a different digest.
    let other = Digest::of(b"not the manifest");
    let port2 = {
        let url = format!("http://127.0.0.1:{port}/v2/hello/manifests/1.0.0");
        let body = ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        assert_eq!(Digest::of(&body), md.digest);
        fake_server(move |_req| Resp::new(200, body.clone()).with("Content-Type", media::MANIFEST))
    };
    let r = Reference::parse(&format!("127.0.0.1:{port2}/hello@{other}")).unwrap();
    let err = insecure().pull(&r, &store).unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, other.to_string());
            assert_eq!(*actual, md.digest.to_string());
        }
        e => panic!("expected DigestMismatch, got {e}"),
    }
    assert_eq!(blob_count(&store), 0);
}

#[test]
fn insecure_refused_for_non_loopback() {
    let client = insecure();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let r = Reference::parse("registry.example.com/hello:1").unwrap();
    let err = client.pull(&r, &store).unwrap_err();
    assert!(
        matches!(err, RegistryError::InsecureNotLoopback { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("loopback"), "{err}");
    let r = Reference::parse("10.1.2.3:5000/hello:1").unwrap();
    assert!(client.ping(&r).is_err());
}

#[derive(Default)]
struct Upload {
    data: Vec<u8>,
    ranges: Vec<String>,
    finished: Option<String>,
    manifest: Option<(String, Vec<u8>)>,
    token_requests: Vec<String>,
}

/// Bearer auth (token from the realm with basic creds) and chunked
/// uploads following relative `Location`s.
#[test]
fn bearer_auth_and_chunked_push() {
    let state = Arc::new(Mutex::new(Upload::default()));
    let s = state.clone();
    let port_cell = Arc::new(Mutex::new(0u16));
    let pc = port_cell.clone();
    let port = fake_server(move |req| {
        let port = *pc.lock().unwrap();
        let mut st = s.lock().unwrap();
        if req.path.starts_with("/token") {
            st.token_requests.push(req.path.clone());
            if req.header("authorization") != Some("Basic dXNlcjpwYXNz") {
                return Resp::new(401, "bad creds");
            }
            return Resp::new(200, "{\"token\":\"tok123\"}");
        }
        if req.header("authorization") != Some("Bearer tok123") {
            return Resp::new(401, "").with(
                "WWW-Authenticate",
                &format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:team/app:pull,push\""),
            );
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("HEAD", p) if p.contains("/blobs/sha256:") => Resp::new(404, ""),
            ("POST", "/v2/team/app/blobs/uploads/") => {
                Resp::new(202, "").with("Location", "/v2/team/app/blobs/uploads/u1?_state=0")
            }
            ("PATCH", p) if p.starts_with("/v2/team/app/blobs/uploads/u1") => {
                let range = req.header("content-range").unwrap_or("").to_string();
                let start: usize = range
                    .split('-')
                    .next()
                    .unwrap_or("x")
                    .parse()
                    .unwrap_or(usize::MAX);
                if start != st.data.len() {
                    return Resp::new(416, "bad range");
                }
                st.ranges.push(range);
                st.data.extend_from_slice(&req.body);
                let n = st.ranges.len();
                // Alternate absolute-path and fully qualified locations.
                let loc = if n % 2 == 0 {
                    format!("/v2/team/app/blobs/uploads/u1?_state={n}")
                } else {
                    format!("http://127.0.0.1:{port}/v2/team/app/blobs/uploads/u1?_state={n}")
                };
                Resp::new(202, "").with("Location", &loc)
            }
            ("PUT", p) if p.starts_with("/v2/team/app/blobs/uploads/u1") => {
                st.finished = Some(p.to_string());
                let d = Digest::of(&st.data).to_string();
                Resp::new(201, "").with("Docker-Content-Digest", &d)
            }
            ("PUT", p) if p.starts_with("/v2/team/app/manifests/") => {
                st.manifest = Some((p.to_string(), req.body.clone()));
                Resp::new(201, "").with("Docker-Content-Digest", &Digest::of(&req.body).to_string())
            }
            _ => Resp::new(404, ""),
        }
    });
    *port_cell.lock().unwrap() = port;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let blob = noise(250_000, 3);
    let mut st = store.staging().unwrap();
    let layer = st.put(media::LAYER_TAR, &blob).unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: Some("application/vnd.example".into()),
        config: layer.clone(),
        layers: vec![layer.clone()],
        subject: None,
        annotations: Default::default(),
    };
    let md = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
    st.commit().unwrap();

    let client = Client::new(Options {
        insecure: true,
        username: Some("user".into()),
        password: Some("pass".into()),
        chunk_size: Some(100_000),
        ..Options::default()
    })
    .unwrap();
    let target = Reference::parse(&format!("127.0.0.1:{port}/team/app:v1")).unwrap();
    client.push_image(&store, &md, &target).unwrap();

    let st = state.lock().unwrap();
    assert_eq!(st.ranges, ["0-99999", "100000-199999", "200000-249999"]);
    assert_eq!(st.data, blob);
    let fin = st.finished.as_deref().unwrap();
    assert!(fin.contains("_state=3"), "{fin}");
    assert!(
        fin.contains(&format!("&digest=sha256%3A{}", layer.digest.hex())),
        "{fin}"
    );
    let (path, body) = st.manifest.clone().unwrap();
    assert_eq!(path, "/v2/team/app/manifests/v1");
    assert_eq!(Digest::of(&body), md.digest);
    assert_eq!(st.token_requests.len(), 1, "{:?}", st.token_requests);
    assert!(
        st.token_requests[0].contains("service=fake&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
        "{:?}",
        st.token_requests
    );
}

/// Credentials are never sent to an upload `Location` on another host.
#[test]
fn credentials_stay_on_the_registry_origin() {
    let seen = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let s = seen.clone();
    let other = fake_server(move |req| {
        s.lock()
            .unwrap()
            .push(req.header("authorization").map(str::to_string));
        Resp::new(401, "").with("WWW-Authenticate", "Basic realm=\"steal\"")
    });
    let port = fake_server(move |req| {
        if req.header("authorization") != Some("Basic dXNlcjpwYXNz") {
            return Resp::new(401, "").with("WWW-Authenticate", "Basic realm=\"r\"");
        }
        match req.method.as_str() {
            "HEAD" => Resp::new(404, ""),
            "POST" => {
                Resp::new(202, "").with("Location", &format!("http://127.0.0.1:{other}/upload/1"))
            }
            _ => Resp::new(500, ""),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut st = store.staging().unwrap();
    let blob = st.put(media::LAYER_TAR, b"layer").unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: blob.clone(),
        layers: vec![blob],
        subject: None,
        annotations: Default::default(),
    };
    let md = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
    st.commit().unwrap();
    let client = Client::new(Options {
        insecure: true,
        username: Some("user".into()),
        password: Some("pass".into()),
        ..Options::default()
    })
    .unwrap();
    let target = Reference::parse(&format!("127.0.0.1:{port}/app:1")).unwrap();
    let err = client.push_image(&store, &md, &target).unwrap_err();
    assert!(err.to_string().contains("another host"), "{err}");
    assert_eq!(*seen.lock().unwrap(), vec![None]);
}
