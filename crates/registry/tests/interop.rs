//! Against a real registry (Debian's `docker-registry`) and skopeo: every test
//! is `#[ignore]`d; `scripts/test.sh` runs them, and a missing tool fails them.

mod common;

use common::*;
use kiln_oci::{ImageRef, Store, media};
use kiln_registry::{Client, Options, Reference, RegistryError, fallback_tag};

fn insecure(chunk: Option<usize>) -> Client {
    Client::new(Options {
        insecure: true,
        chunk_size: chunk,
        ..Options::default()
    })
    .unwrap()
}

#[test]
#[ignore = "needs docker-registry and skopeo"]
fn push_pull_referrers_roundtrip() {
    require_tool(
        "/usr/bin/docker-registry",
        "apt-get install docker-registry",
    );
    require_tool("/usr/bin/skopeo", "apt-get install skopeo");
    let reg = Registry::start("");
    let work = tempfile::tempdir().unwrap();
    let img = build_image(&work.path().join("src"));
    // 1 MiB chunks: the ~3 MB layer goes up in 4 PATCHes.
    let client = insecure(Some(1 << 20));
    let target = Reference::parse(&format!("{}/hello:1.0.0", reg.host())).unwrap();
    client.ping(&target).unwrap();

    let pushed = client
        .push_image(&img.store, &img.manifest, &target)
        .unwrap();
    assert_eq!(pushed.digest, img.manifest.digest);
    let refs = client
        .push_referrers(&img.store, &img.manifest.digest, &target)
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, img.referrer.digest);
    assert_eq!(
        refs[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    // Pushing again is idempotent (blobs are found by HEAD and skipped).
    client
        .push_image(&img.store, &img.manifest, &target)
        .unwrap();

    // skopeo sees the same manifest digest.
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/hello:1.0.0", reg.host()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], img.manifest.digest.to_string());

    // docker-registry 2.8 has no referrers API: the fallback tag exists.
    let listed = client
        .list_referrers(&target, &img.manifest.digest)
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, img.referrer.digest);
    assert_eq!(listed[0].annotations["org.example.kind"], "signature");
    let fb_url = format!(
        "http://{}/v2/hello/manifests/{}",
        reg.host(),
        fallback_tag(&img.manifest.digest)
    );
    let fb: kiln_oci::ImageIndex = serde_json::from_slice(
        &ureq::get(&fb_url)
            .header("Accept", media::INDEX)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(fb.manifests.len(), 1);
    assert_eq!(fb.manifests[0].digest, img.referrer.digest);
    assert_eq!(
        fb.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );

    // Pull by tag into a fresh store: identical bytes, tagged, referrer back.
    let dst = Store::open_or_init(work.path().join("dst")).unwrap();
    let got = client.pull(&target, &dst).unwrap();
    assert_eq!(got.digest, img.manifest.digest);
    assert_eq!(got.media_type, media::MANIFEST);
    for d in img.blobs.iter().chain([&img.manifest, &img.referrer]) {
        assert_eq!(
            dst.read_descriptor(d).unwrap(),
            img.store.read_descriptor(d).unwrap(),
            "{}",
            d.digest
        );
    }
    let resolved = dst
        .resolve(&ImageRef::parse(&format!("{}/hello:1.0.0", reg.host())).unwrap())
        .unwrap();
    assert_eq!(resolved.digest, img.manifest.digest);
    let back = dst.referrers(&img.manifest.digest).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0.digest, img.referrer.digest);
    assert_eq!(
        back[0].1.artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );

    // Pull by digest into another fresh store.
    let dst2 = Store::open_or_init(work.path().join("dst2")).unwrap();
    let by_digest = target.with_digest(img.manifest.digest);
    let got = client.pull(&by_digest, &dst2).unwrap();
    assert_eq!(got.digest, img.manifest.digest);
    assert_eq!(dst2.images().unwrap().len(), 0);
    dst2.verify_blob(&img.blobs[1]).unwrap();
    let r = dst2
        .resolve(&ImageRef::Digest {
            name: None,
            digest: img.manifest.digest,
        })
        .unwrap();
    assert_eq!(r.digest, img.manifest.digest);
    assert_eq!(dst2.referrers(&img.manifest.digest).unwrap().len(), 1);

    // A second referrer is merged into the fallback index, not replacing it.
    let second = {
        let mut st = img.store.staging().unwrap();
        let sbom = st.put("application/spdx+json", b"{\"spdx\":1}").unwrap();
        let m = kiln_oci::ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            artifact_type: Some("application/spdx+json".into()),
            config: kiln_oci::Descriptor::empty(),
            layers: vec![sbom],
            subject: Some(img.manifest.clone()),
            annotations: Default::default(),
        };
        let d = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
        st.commit().unwrap();
        img.store.add_untagged(std::slice::from_ref(&d)).unwrap();
        d
    };
    // Push only the new one from a store that lacks the first: merge must keep both.
    let only_second = Store::open_or_init(work.path().join("only2")).unwrap();
    {
        let mut st = only_second.staging().unwrap();
        for d in [&second, &img.manifest] {
            st.put(&d.media_type, &img.store.read_descriptor(d).unwrap())
                .unwrap();
        }
        let m = kiln_oci::ImageManifest::from_bytes(
            &img.store.read_descriptor(&second).unwrap(),
            "second",
        )
        .unwrap();
        for b in m.layers.iter().chain([&m.config]) {
            st.put(&b.media_type, &img.store.read_descriptor(b).unwrap())
                .unwrap();
        }
        st.commit().unwrap();
        only_second
            .add_untagged(std::slice::from_ref(&second))
            .unwrap();
    }
    client
        .push_referrers(&only_second, &img.manifest.digest, &target)
        .unwrap();
    let listed = client
        .list_referrers(&target, &img.manifest.digest)
        .unwrap();
    let mut digests: Vec<_> = listed.iter().map(|d| d.digest).collect();
    digests.sort();
    let mut want = vec![img.referrer.digest, second.digest];
    want.sort();
    assert_eq!(digests, want);

    // An image index: children go up by digest, the index by tag, and a
    // pull brings the whole tree back.
    let index_desc = {
        let mut idx = kiln_oci::ImageIndex::new();
        let mut child = img.manifest.clone();
        child.platform = Some(kiln_oci::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        });
        idx.manifests.push(child);
        let mut st = img.store.staging().unwrap();
        let d = st.put(media::INDEX, &idx.to_bytes()).unwrap();
        st.commit().unwrap();
        d
    };
    let multi = target.with_tag("multi");
    client.push_image(&img.store, &index_desc, &multi).unwrap();
    let dst4 = Store::open_or_init(work.path().join("dst4")).unwrap();
    let got = client.pull(&multi, &dst4).unwrap();
    assert_eq!(got.digest, index_desc.digest);
    assert_eq!(got.media_type, media::INDEX);
    for d in &img.blobs[..2] {
        dst4.verify_blob(d).unwrap();
    }
    dst4.verify_blob(&img.manifest).unwrap();

    // Tampering in the registry's storage: a precise digest error, and the
    // target store stays empty.
    let layer = &img.blobs[1];
    let data = reg.blob_data(&layer.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let dst3 = Store::open_or_init(work.path().join("dst3")).unwrap();
    let err = client.pull(&target, &dst3).unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, layer.digest.to_string());
            assert_eq!(*actual, kiln_oci::Digest::of(&bytes).to_string());
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
    assert_eq!(blob_count(&dst3), 0);
    assert!(dst3.index().unwrap().manifests.is_empty());
}

#[test]
#[ignore = "needs docker-registry and htpasswd"]
fn basic_auth() {
    require_tool(
        "/usr/bin/docker-registry",
        "apt-get install docker-registry",
    );
    require_tool("/usr/bin/htpasswd", "apt-get install apache2-utils");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = std::process::Command::new("/usr/bin/htpasswd")
        .args(["-Bbc", htpasswd.to_str().unwrap(), "kiln", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let reg = Registry::start(&format!(
        "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
        htpasswd.display()
    ));
    let img = build_image(&dir.path().join("src"));
    let target = Reference::parse(&format!("{}/private/hello:1.0.0", reg.host())).unwrap();

    let anon = insecure(None);
    let err = anon
        .push_image(&img.store, &img.manifest, &target)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("requires credentials"), "{err}");

    let wrong = Client::new(Options {
        insecure: true,
        username: Some("kiln".into()),
        password: Some("nope".into()),
        ..Options::default()
    })
    .unwrap();
    let err = wrong.ping(&target).unwrap_err();
    assert!(err.to_string().contains("rejected"), "{err}");

    let good = Client::new(Options {
        insecure: true,
        username: Some("kiln".into()),
        password: Some("s3cret".into()),
        ..Options::default()
    })
    .unwrap();
    good.push_image(&img.store, &img.manifest, &target).unwrap();
    let dst = Store::open_or_init(dir.path().join("dst")).unwrap();
    let got = good.pull(&target, &dst).unwrap();
    assert_eq!(got.digest, img.manifest.digest);
}
