//! Push, pull and referrers.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Read, Write};

use kiln_oci::{
    Descriptor, Digest, ImageIndex, ImageManifest, Sha256Writer, Staging, Store, media,
};
use sha2::{Digest as _, Sha256};

use crate::client::{Method, header, resolve_location};
use crate::{Client, MAX_MANIFEST_SIZE, Reference, RegistryError};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn is_index(mt: &str) -> bool {
    media::is_index(mt) || mt == media::DOCKER_LIST
}

fn is_manifest(mt: &str) -> bool {
    media::is_manifest(mt) || mt == media::DOCKER_MANIFEST
}

/// The tag-schema fallback tag for a subject's referrers.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

struct Repo<'a> {
    base: String,
    r: &'a Reference,
    scope: String,
}

impl Repo<'_> {
    fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.r.repository)
    }
}

impl Client {
    fn repo<'a>(&self, r: &'a Reference, push: bool) -> Result<Repo<'a>, RegistryError> {
        Ok(Repo {
            base: self.base_url(r)?,
            r,
            scope: format!(
                "repository:{}:{}",
                r.repository,
                if push { "pull,push" } else { "pull" }
            ),
        })
    }

    /// Check that the registry speaks the v2 API (`GET /v2/`), authenticating
    /// if it asks to.
    pub fn ping(&self, r: &Reference) -> Result<(), RegistryError> {
        let base = self.base_url(r)?;
        let url = format!("{base}/v2/");
        let resp = self.request(Method::Get, &url, &[], None, &base, "")?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error(resp, Method::Get, &url));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- push

    /// Push the image (manifest or index) `manifest` from `store` to
    /// `target`: every blob the registry lacks, child manifests of an index
    /// by digest, then the manifest itself by `target`'s tag (or digest).
    /// Returns the manifest descriptor as pushed.
    pub fn push_image(
        &self,
        store: &Store,
        manifest: &Descriptor,
        target: &Reference,
    ) -> Result<Descriptor, RegistryError> {
        if let Some(d) = &target.digest
            && *d != manifest.digest
        {
            return Err(RegistryError::protocol(
                target.to_string(),
                format!(
                    "the target digest does not match the image {}",
                    manifest.digest
                ),
            ));
        }
        let repo = self.repo(target, true)?;
        let bytes = store.read_descriptor(manifest)?;
        self.push_tree(store, &repo, manifest, &bytes)?;
        let reference = match &target.tag {
            Some(t) => t.clone(),
            None => manifest.digest.to_string(),
        };
        self.put_manifest(
            &repo,
            &reference,
            &manifest.media_type,
            &bytes,
            &manifest.digest,
        )?;
        let mut d = manifest.clone();
        d.annotations.remove(kiln_oci::annotations::REF_NAME);
        Ok(d)
    }

    /// Push everything `desc` refers to (not `desc` itself).
    fn push_tree(
        &self,
        store: &Store,
        repo: &Repo,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        if is_index(&desc.media_type) {
            let idx: ImageIndex = serde_json::from_slice(bytes).map_err(|e| {
                RegistryError::protocol(format!("index {}", desc.digest), e.to_string())
            })?;
            for child in &idx.manifests {
                let cb = store.read_descriptor(child)?;
                self.push_tree(store, repo, child, &cb)?;
                self.put_manifest(
                    repo,
                    &child.digest.to_string(),
                    &child.media_type,
                    &cb,
                    &child.digest,
                )?;
            }
        } else {
            let m = ImageManifest::from_bytes(bytes, &desc.digest.to_string())?;
            let mut seen = BTreeSet::new();
            for b in std::iter::once(&m.config).chain(&m.layers) {
                if seen.insert(b.digest) {
                    self.push_blob(store, repo, b)?;
                }
            }
        }
        Ok(())
    }

    /// Upload one blob unless the registry has it: POST, chunked PATCHes
    /// following `Location`, PUT `?digest=`.
    fn push_blob(
        &self,
        store: &Store,
        repo: &Repo,
        desc: &Descriptor,
    ) -> Result<(), RegistryError> {
        let blob_url = repo.url(&format!("blobs/{}", desc.digest));
        let resp = self.request(Method::Head, &blob_url, &[], None, &repo.base, &repo.scope)?;
        match resp.status().as_u16() {
            200 => return Ok(()),
            404 => {}
            _ => return Err(self.status_error(resp, Method::Head, &blob_url)),
        }
        let path = store.blob_path(&desc.digest);
        // A regular file of exactly the descriptor's size, read no further.
        let mut file = store.open_blob(desc)?;

        let start_url = repo.url("blobs/uploads/");
        let resp = self.request(
            Method::Post,
            &start_url,
            &[],
            Some(&[]),
            &repo.base,
            &repo.scope,
        )?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error(resp, Method::Post, &start_url));
        }
        let mut location = next_location(&resp, &start_url)?;

        let chunk = self.chunk_size();
        let mut buf = vec![0u8; chunk];
        let mut hasher = Sha256::new();
        let mut offset: u64 = 0;
        loop {
            let n = read_full(&mut file, &mut buf).map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                    kiln_oci::OciError::SizeMismatch {
                        digest: desc.digest.to_string(),
                        expected: desc.size,
                        actual: file.seen(),
                    }
                    .into()
                }
                _ => RegistryError::Io {
                    path: path.clone(),
                    source: e,
                },
            })?;
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            hasher.update(data);
            let range = format!("{}-{}", offset, offset + n as u64 - 1);
            let headers = [
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", range.as_str()),
            ];
            let resp = self.request(
                Method::Patch,
                &location,
                &headers,
                Some(data),
                &repo.base,
                &repo.scope,
            )?;
            if resp.status().as_u16() != 202 {
                return Err(self.status_error(resp, Method::Patch, &location));
            }
            location = next_location(&resp, &location).unwrap_or(location);
            offset += n as u64;
        }
        // Never push bytes that are not what the descriptor says.
        let actual = Digest::from_bytes(hasher.finalize().into());
        if actual != desc.digest {
            return Err(kiln_oci::OciError::DigestMismatch {
                digest: desc.digest.to_string(),
                actual: actual.to_string(),
            }
            .into());
        }
        if offset != desc.size {
            return Err(kiln_oci::OciError::SizeMismatch {
                digest: desc.digest.to_string(),
                expected: desc.size,
                actual: offset,
            }
            .into());
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!(
            "{location}{sep}digest={}",
            crate::client::urlencode(&desc.digest.to_string())
        );
        let resp = self.request(
            Method::Put,
            &put_url,
            &[("Content-Type", "application/octet-stream")],
            Some(&[]),
            &repo.base,
            &repo.scope,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(resp, Method::Put, &put_url));
        }
        Ok(())
    }

    /// PUT a manifest; returns whether the registry answered with
    /// `OCI-Subject` (i.e. it indexes referrers itself).
    fn put_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = repo.url(&format!("manifests/{reference}"));
        let resp = self.request(
            Method::Put,
            &url,
            &[("Content-Type", media_type)],
            Some(bytes),
            &repo.base,
            &repo.scope,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(resp, Method::Put, &url));
        }
        if let Some(d) = header(&resp, "docker-content-digest")
            && d != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                what: "pushed manifest".into(),
                url,
                expected: digest.to_string(),
                actual: d,
            });
        }
        Ok(header(&resp, "oci-subject").is_some())
    }

    /// Push every referrer of `subject` recorded in `store` (manifests whose
    /// `subject` is it) to `target`'s repository, by digest, with their
    /// blobs. When the registry has no referrers API, also create or update
    /// the `sha256-<hex>` tag-schema index. Returns the referrer descriptors.
    pub fn push_referrers(
        &self,
        store: &Store,
        subject: &Digest,
        target: &Reference,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let repo = self.repo(target, true)?;
        let refs = store.referrers(subject)?;
        let mut out = Vec::new();
        let mut all_indexed = true;
        for (d, m) in &refs {
            let bytes = store.read_descriptor(d)?;
            self.push_tree(store, &repo, d, &bytes)?;
            all_indexed &= self.put_manifest(
                &repo,
                &d.digest.to_string(),
                &d.media_type,
                &bytes,
                &d.digest,
            )?;
            let mut rd = Descriptor::new(&d.media_type, d.digest, d.size);
            rd.artifact_type = Some(
                m.artifact_type
                    .clone()
                    .unwrap_or_else(|| m.config.media_type.clone()),
            );
            rd.annotations = m.annotations.clone();
            out.push(rd);
        }
        if out.is_empty() || all_indexed {
            return Ok(out);
        }
        if self.referrers_api(&repo, subject)?.is_some() {
            return Ok(out);
        }
        // Tag-schema fallback: merge into the existing index, if any.
        let tag = fallback_tag(subject);
        let mut index = match self.fetch_manifest(&repo, &tag, None)? {
            Some((desc, bytes)) if is_index(&desc.media_type) => {
                serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| {
                    RegistryError::protocol(format!("referrers index {tag}"), e.to_string())
                })?
            }
            Some((desc, _)) => {
                return Err(RegistryError::protocol(
                    format!("tag {tag}"),
                    format!("exists but is a {}, not a referrers index", desc.media_type),
                ));
            }
            None => ImageIndex::new(),
        };
        index.media_type = Some(media::INDEX.to_string());
        for rd in &out {
            index.manifests.retain(|m| m.digest != rd.digest);
            index.manifests.push(rd.clone());
        }
        let bytes = index.to_bytes();
        self.put_manifest(&repo, &tag, media::INDEX, &bytes, &Digest::of(&bytes))?;
        Ok(out)
    }

    // ---------------------------------------------------------------- pull

    /// `GET /v2/<name>/referrers/<digest>`: `None` when the registry lacks
    /// the API (404).
    fn referrers_api(
        &self,
        repo: &Repo,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let url = repo.url(&format!("referrers/{subject}"));
        let mut resp = self.request(
            Method::Get,
            &url,
            &[("Accept", media::INDEX)],
            None,
            &repo.base,
            &repo.scope,
        )?;
        match resp.status().as_u16() {
            200 => {
                let bytes = self.read_limited(&mut resp, MAX_MANIFEST_SIZE, "GET", &url)?;
                let idx: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::protocol(
                        format!("referrers of {subject} from {url}"),
                        e.to_string(),
                    )
                })?;
                Ok(Some(idx.manifests))
            }
            404 => Ok(None),
            _ => Err(self.status_error(resp, Method::Get, &url)),
        }
    }

    /// The referrers of `subject` in `target`'s repository: from the
    /// referrers API, or else from the `sha256-<hex>` fallback tag.
    pub fn list_referrers(
        &self,
        target: &Reference,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let repo = self.repo(target, false)?;
        self.list_referrers_in(&repo, subject)
    }

    fn list_referrers_in(
        &self,
        repo: &Repo,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        if let Some(v) = self.referrers_api(repo, subject)? {
            return Ok(v);
        }
        let tag = fallback_tag(subject);
        match self.fetch_manifest(repo, &tag, None)? {
            Some((desc, bytes)) if is_index(&desc.media_type) => {
                let idx: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::protocol(format!("referrers index {tag}"), e.to_string())
                })?;
                Ok(idx.manifests)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// GET a manifest; `None` on 404. Verifies `Docker-Content-Digest` when
    /// sent and `expect` when given. The descriptor's media type comes from
    /// the manifest's `mediaType`, else `Content-Type`.
    fn fetch_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        expect: Option<&Digest>,
    ) -> Result<Option<(Descriptor, Vec<u8>)>, RegistryError> {
        let url = repo.url(&format!("manifests/{reference}"));
        let mut resp = self.request(
            Method::Get,
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            None,
            &repo.base,
            &repo.scope,
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_error(resp, Method::Get, &url)),
        }
        let content_type = header(&resp, "content-type");
        let header_digest = header(&resp, "docker-content-digest");
        let bytes = self.read_limited(&mut resp, MAX_MANIFEST_SIZE, "GET", &url)?;
        let actual = Digest::of(&bytes);
        let mismatch = |expected: String| RegistryError::DigestMismatch {
            what: "manifest".into(),
            url: url.clone(),
            expected,
            actual: actual.to_string(),
        };
        if let Some(e) = expect
            && *e != actual
        {
            return Err(mismatch(e.to_string()));
        }
        if let Some(h) = header_digest
            && h != actual.to_string()
        {
            return Err(mismatch(h));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::protocol(format!("manifest from {url}"), format!("not JSON: {e}"))
        })?;
        let media_type = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
            .unwrap_or_default();
        if !is_index(&media_type) && !is_manifest(&media_type) {
            return Err(RegistryError::protocol(
                format!("manifest from {url}"),
                format!("unsupported media type {media_type:?}"),
            ));
        }
        let size = bytes.len() as u64;
        let mut d = Descriptor::new(&media_type, actual, size);
        d.artifact_type = v
            .get("artifactType")
            .and_then(|a| a.as_str())
            .map(str::to_string);
        Ok(Some((d, bytes)))
    }

    /// Fetch a manifest named by a descriptor, checking digest and size.
    fn fetch_child(
        &self,
        repo: &Repo,
        desc: &Descriptor,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let reference = desc.digest.to_string();
        let (d, bytes) = self
            .fetch_manifest(repo, &reference, Some(&desc.digest))?
            .ok_or_else(|| {
                RegistryError::protocol(
                    repo.url(&format!("manifests/{reference}")),
                    "manifest not found (HTTP 404)",
                )
            })?;
        if d.size != desc.size {
            return Err(RegistryError::SizeMismatch {
                what: format!("manifest {}", desc.digest),
                url: repo.url(&format!("manifests/{reference}")),
                expected: desc.size,
                actual: d.size.to_string(),
            });
        }
        Ok((d, bytes))
    }

    /// Pull `reference` (and its referrers) into `store`. Nothing becomes
    /// visible in the store unless every manifest and blob verified. A
    /// reference with a tag is tagged `host[:port]/repo:tag` in the store;
    /// one by digest only is recorded untagged. Returns the manifest
    /// descriptor.
    pub fn pull(&self, reference: &Reference, store: &Store) -> Result<Descriptor, RegistryError> {
        let (desc, pulled) = self.pull_staged(reference, store)?;
        pulled.apply(store)?;
        Ok(desc)
    }

    /// [`Client::pull`] without the last step: every blob is verified and
    /// committed (unreferenced), and the returned [`Pulled`] makes it
    /// visible in the index. Lets the caller record an audit event first.
    pub fn pull_staged(
        &self,
        reference: &Reference,
        store: &Store,
    ) -> Result<(Descriptor, Pulled), RegistryError> {
        let repo = self.repo(reference, false)?;
        let mut staging = store.staging()?;
        let manifest_ref = reference.manifest_ref();
        let (desc, bytes) = self
            .fetch_manifest(&repo, &manifest_ref, reference.digest.as_ref())?
            .ok_or_else(|| RegistryError::NotFound(reference.to_string()))?;
        staging.put(&desc.media_type, &bytes)?;
        self.pull_tree(&repo, &desc, &bytes, &mut staging)?;

        let mut referrers = Vec::new();
        for r in self.list_referrers_in(&repo, &desc.digest)? {
            if !is_manifest(&r.media_type)
                || referrers.iter().any(|x: &Descriptor| x.digest == r.digest)
            {
                continue;
            }
            let (rd, rbytes) = self.fetch_child(&repo, &r)?;
            let m = ImageManifest::from_bytes(&rbytes, &rd.digest.to_string())?;
            if m.subject.as_ref().map(|s| s.digest) != Some(desc.digest) {
                // A stale or forged entry in the fallback index: not ours.
                continue;
            }
            staging.put(&rd.media_type, &rbytes)?;
            self.pull_tree(&repo, &rd, &rbytes, &mut staging)?;
            let mut entry = Descriptor::new(&rd.media_type, rd.digest, rd.size);
            entry.artifact_type = m.artifact_type.clone().or(r.artifact_type.clone());
            entry.annotations = m.annotations.clone();
            referrers.push(entry);
        }
        staging.commit()?;
        let pulled = Pulled {
            tag: reference
                .tag
                .as_ref()
                .map(|t| (reference.name(), t.clone())),
            manifest: desc.clone(),
            referrers,
        };
        Ok((desc, pulled))
    }

    /// Stage everything `desc` refers to (child manifests, config, layers).
    fn pull_tree(
        &self,
        repo: &Repo,
        desc: &Descriptor,
        bytes: &[u8],
        staging: &mut Staging,
    ) -> Result<(), RegistryError> {
        if is_index(&desc.media_type) {
            let idx: ImageIndex = serde_json::from_slice(bytes).map_err(|e| {
                RegistryError::protocol(format!("index {}", desc.digest), e.to_string())
            })?;
            for child in &idx.manifests {
                if staging.has(&child.digest) {
                    continue;
                }
                let (cd, cb) = self.fetch_child(repo, child)?;
                staging.put(&cd.media_type, &cb)?;
                self.pull_tree(repo, &cd, &cb, staging)?;
            }
        } else {
            let m = ImageManifest::from_bytes(bytes, &desc.digest.to_string())?;
            for b in std::iter::once(&m.config).chain(&m.layers) {
                if !staging.has(&b.digest) {
                    self.pull_blob(repo, b, staging)?;
                }
            }
        }
        Ok(())
    }

    /// Stream one blob into a staging temp file, hashing and counting; only
    /// a blob with the right size and digest is adopted.
    fn pull_blob(
        &self,
        repo: &Repo,
        desc: &Descriptor,
        staging: &mut Staging,
    ) -> Result<(), RegistryError> {
        let url = repo.url(&format!("blobs/{}", desc.digest));
        let mut resp = self.request(Method::Get, &url, &[], None, &repo.base, &repo.scope)?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error(resp, Method::Get, &url));
        }
        let (file, path) = staging.temp_file()?;
        let result = (|| {
            let mut w = Sha256Writer::new(BufWriter::with_capacity(1 << 20, file));
            // Never more than one byte past the descriptor's size, and never
            // slower than the low-speed limit.
            let mut body = self.guard(
                resp.body_mut()
                    .as_reader()
                    .take(desc.size.saturating_add(1)),
            );
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.body_error("GET", &url, e)),
                };
                w.write_all(&buf[..n]).map_err(|e| RegistryError::Io {
                    path: path.clone(),
                    source: e,
                })?;
            }
            let (digest, n, inner) = w.finish();
            let f = inner.into_inner().map_err(|e| RegistryError::Io {
                path: path.clone(),
                source: e.into_error(),
            })?;
            drop(f);
            if n != desc.size {
                return Err(RegistryError::SizeMismatch {
                    what: format!("blob {}", desc.digest),
                    url: url.clone(),
                    expected: desc.size,
                    actual: if n > desc.size {
                        format!("more than {}", desc.size)
                    } else {
                        n.to_string()
                    },
                });
            }
            if digest != desc.digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("blob ({})", desc.media_type),
                    url: url.clone(),
                    expected: desc.digest.to_string(),
                    actual: digest.to_string(),
                });
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                staging.adopt(path, desc.digest)?;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

fn next_location(
    resp: &ureq::http::Response<ureq::Body>,
    request_url: &str,
) -> Result<String, RegistryError> {
    header(resp, "location")
        .filter(|l| !l.is_empty())
        .map(|l| resolve_location(request_url, &l))
        .ok_or_else(|| {
            RegistryError::protocol(
                request_url.to_string(),
                "upload response without a Location header",
            )
        })
}

use kiln_oci::untrusted::read_full;

/// A pulled image whose blobs are in the store but not yet in its index.
#[must_use = "the pull is not visible until applied"]
pub struct Pulled {
    tag: Option<(String, String)>,
    manifest: Descriptor,
    referrers: Vec<Descriptor>,
}

impl Pulled {
    /// The referrers pulled with the image.
    pub fn referrers(&self) -> &[Descriptor] {
        &self.referrers
    }

    /// Tag the image (or list it untagged) and list its referrers.
    pub fn apply(self, store: &Store) -> Result<(), RegistryError> {
        match &self.tag {
            Some((name, tag)) => store.tag(name, tag, &self.manifest)?,
            None => store.add_untagged(std::slice::from_ref(&self.manifest))?,
        }
        if !self.referrers.is_empty() {
            store.add_untagged(&self.referrers)?;
        }
        Ok(())
    }
}
