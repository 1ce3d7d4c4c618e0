//! HTTP plumbing: the agent, TLS options, authentication challenges.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use kiln_oci::sync::lock;
use ureq::Body;
use ureq::http::Response;

use crate::reference::host_is_loopback;
use crate::speed::{LowSpeedReader, Timeouts, TooSlow};
use crate::{Reference, RegistryError};

/// Default upload chunk size (16 MiB).
pub const DEFAULT_CHUNK_SIZE: usize = 16 << 20;
/// Largest manifest or index accepted (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = kiln_oci::MAX_MANIFEST_SIZE;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Use plain HTTP. Only allowed for loopback registries; any other host
    /// is refused with [`RegistryError::InsecureNotLoopback`].
    pub insecure: bool,
    /// PEM file with the CA certificates to trust instead of the built-in
    /// Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates at all (for throwaway test setups).
    pub skip_tls_verify: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Upload chunk size; `None` means [`DEFAULT_CHUNK_SIZE`].
    pub chunk_size: Option<usize>,
    /// Connect, response-header and low-speed limits.
    pub timeouts: Timeouts,
}

/// A synchronous OCI distribution-spec v2 client.
pub struct Client {
    pub(crate) agent: ureq::Agent,
    pub(crate) options: Options,
    /// Per registry origin, the `Authorization` value that last worked.
    auth: Mutex<HashMap<String, String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

impl Client {
    pub fn new(options: Options) -> Result<Client, RegistryError> {
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(options.skip_tls_verify);
        if let Some(path) = &options.ca_file {
            let bad = |reason: String| RegistryError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = kiln_oci::untrusted::read_small(path).map_err(|e| bad(e.to_string()))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item.map_err(|e| bad(e.to_string()))? {
                    ureq::tls::PemItem::Certificate(c) => certs.push(c),
                    _ => continue,
                }
            }
            if certs.is_empty() {
                return Err(bad("no PEM certificates in it".into()));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        // Bounded in time everywhere: connecting, waiting for headers, and
        // every socket read or write; a body that flows too slowly is cut
        // off by the low-speed guard on its reader ([`Client::guard`]).
        let t = options.timeouts;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.response))
            .timeout_per_read(Some(t.per_read()))
            .timeout_per_write(Some(t.per_write()))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            options,
            auth: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.options
            .chunk_size
            .filter(|&c| c > 0)
            .unwrap_or(DEFAULT_CHUNK_SIZE)
    }

    /// `http[s]://host[:port]` for a reference, refusing plain HTTP to
    /// anything but loopback.
    pub(crate) fn base_url(&self, r: &Reference) -> Result<String, RegistryError> {
        if self.options.insecure {
            if !r.is_loopback() {
                return Err(RegistryError::InsecureNotLoopback {
                    host: r.registry.clone(),
                });
            }
            Ok(format!("http://{}", r.registry))
        } else {
            Ok(format!("https://{}", r.registry))
        }
    }

    fn send_once(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        auth: Option<&str>,
    ) -> Result<Response<Body>, RegistryError> {
        let res = match method {
            // Reads are safe to repeat: tried again when they fail
            // transiently (see `retry`). Uploads are not repeated.
            Method::Get | Method::Head => crate::retry::call_with_retries(|| {
                let mut rb = if method == Method::Get {
                    self.agent.get(url)
                } else {
                    self.agent.head(url)
                };
                for (k, v) in headers {
                    rb = rb.header(*k, *v);
                }
                if let Some(a) = auth {
                    rb = rb.header("Authorization", a);
                }
                rb.call()
            }),
            Method::Post | Method::Put | Method::Patch => {
                let mut rb = match method {
                    Method::Post => self.agent.post(url),
                    Method::Put => self.agent.put(url),
                    _ => self.agent.patch(url),
                };
                for (k, v) in headers {
                    rb = rb.header(*k, *v);
                }
                if let Some(a) = auth {
                    rb = rb.header("Authorization", a);
                }
                rb.send(body.unwrap_or(&[]))
            }
        };
        res.map_err(|e| self.http_error(method.as_str(), url, e))
    }

    /// A ureq error for `method url`; timeouts say which limit ran out.
    pub(crate) fn http_error(
        &self,
        method: &'static str,
        url: &str,
        e: ureq::Error,
    ) -> RegistryError {
        let t = &self.options.timeouts;
        let secs = |d: std::time::Duration| d.as_secs_f64();
        let reason = match &e {
            ureq::Error::Timeout(kind) => match kind {
                ureq::Timeout::Connect | ureq::Timeout::Resolve => {
                    format!("could not connect within {} s", secs(t.connect))
                }
                ureq::Timeout::RecvResponse => format!(
                    "no response within {} s (raise the limit with --timeout or KILN_REGISTRY_TIMEOUT)",
                    secs(t.response)
                ),
                ureq::Timeout::PerRead => {
                    format!("the registry sent nothing for {} s", secs(t.per_read()))
                }
                ureq::Timeout::PerWrite => format!(
                    "the registry accepted no data for {} s",
                    secs(t.per_write())
                ),
                other => format!("{other}"),
            },
            _ => {
                return RegistryError::Http {
                    method,
                    url: url.to_string(),
                    source: Box::new(e),
                };
            }
        };
        RegistryError::Timeout {
            method,
            url: url.to_string(),
            reason,
        }
    }

    /// An error reading a response body through [`Client::guard`].
    pub(crate) fn body_error(
        &self,
        method: &'static str,
        url: &str,
        e: io::Error,
    ) -> RegistryError {
        if let Some(slow) = e.get_ref().and_then(|i| i.downcast_ref::<TooSlow>()) {
            return RegistryError::Timeout {
                method,
                url: url.to_string(),
                reason: slow.to_string(),
            };
        }
        self.http_error(method, url, ureq::Error::from(e))
    }

    /// Wrap a body reader in the low-speed guard.
    pub(crate) fn guard<R: Read>(&self, r: R) -> LowSpeedReader<R, fn() -> Instant> {
        LowSpeedReader::new(r, self.options.timeouts.low_speed)
    }

    /// Read a whole (small) body, refusing more than `limit` bytes.
    pub(crate) fn read_limited(
        &self,
        resp: &mut Response<Body>,
        limit: u64,
        method: &'static str,
        url: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut r = self.guard(resp.body_mut().with_config().limit(limit).reader());
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| self.body_error(method, url, e))?;
        Ok(out)
    }

    /// Turn an unexpected status into an error carrying the registry's
    /// message (at most 4 KiB of it, read under the low-speed guard).
    pub(crate) fn status_error(
        &self,
        mut resp: Response<Body>,
        method: Method,
        url: &str,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let mut b = Vec::new();
        let _ = self
            .guard(resp.body_mut().with_config().limit(4096).reader())
            .read_to_end(&mut b);
        let body = String::from_utf8_lossy(&b).trim().to_string();
        RegistryError::Status {
            method: method.as_str(),
            url: url.to_string(),
            status,
            body: body.chars().take(1024).collect(),
        }
    }

    /// Send a request; on `401` answer the `WWW-Authenticate` challenge
    /// (Basic or Bearer) and retry once. `origin` is the registry's
    /// `scheme://host[:port]`: credentials and tokens are only ever sent
    /// there (an upload `Location` on another host gets none). `scope` is
    /// the token scope to ask for when the challenge names none.
    pub(crate) fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        origin: &str,
        scope: &str,
    ) -> Result<Response<Body>, RegistryError> {
        let same_origin = url
            .strip_prefix(origin)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        let current = if same_origin {
            lock(&self.auth).get(origin).cloned()
        } else {
            None
        };
        let resp = self.send_once(method, url, headers, body, current.as_deref())?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        if !same_origin {
            return Err(RegistryError::Unauthorized {
                url: url.to_string(),
                reason: format!("refusing to send the credentials for {origin} to another host"),
            });
        }
        let challenge =
            header(&resp, "www-authenticate").ok_or_else(|| RegistryError::Unauthorized {
                url: url.to_string(),
                reason: "HTTP 401 without a WWW-Authenticate challenge".into(),
            })?;
        let new = self.answer_challenge(url, &challenge, scope)?;
        lock(&self.auth).insert(origin.to_string(), new.clone());
        let resp = self.send_once(method, url, headers, body, Some(&new))?;
        if resp.status().as_u16() == 401 {
            return Err(RegistryError::Unauthorized {
                url: url.to_string(),
                reason: "the registry rejected the credentials".into(),
            });
        }
        Ok(resp)
    }

    fn basic(&self) -> Option<String> {
        match (&self.options.username, &self.options.password) {
            (Some(u), p) => Some(format!(
                "Basic {}",
                base64(format!("{u}:{}", p.as_deref().unwrap_or("")).as_bytes())
            )),
            _ => None,
        }
    }

    fn answer_challenge(
        &self,
        url: &str,
        challenge: &str,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let unauth = |reason: String| RegistryError::Unauthorized {
            url: url.to_string(),
            reason,
        };
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return self.basic().ok_or_else(|| {
                unauth("the registry requires credentials (basic auth); none were given".into())
            });
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauth(format!("unsupported auth scheme {scheme:?}")));
        }
        let get = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or_else(|| unauth("Bearer challenge without realm".into()))?;
        let plain = realm
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or(""));
        match plain {
            Some(host) if !host_is_loopback(host) => {
                return Err(unauth(format!(
                    "refusing to fetch a token over plain HTTP from {realm}"
                )));
            }
            None if !realm.starts_with("https://") => {
                return Err(unauth(format!("bad token realm {realm:?}")));
            }
            _ => {}
        }
        let mut token_url = realm.to_string();
        let mut sep = if token_url.contains('?') { '&' } else { '?' };
        if let Some(service) = get("service") {
            token_url.push_str(&format!("{sep}service={}", urlencode(service)));
            sep = '&';
        }
        let scope = get("scope").unwrap_or(scope);
        if !scope.is_empty() {
            token_url.push_str(&format!("{sep}scope={}", urlencode(scope)));
        }
        let basic = self.basic();
        let mut resp = self.send_once(Method::Get, &token_url, &[], None, basic.as_deref())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(unauth(format!(
                "token endpoint {token_url} answered HTTP {status}"
            )));
        }
        let bytes = self.read_limited(&mut resp, 1 << 20, "GET", &token_url)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| unauth(format!("token response is not JSON: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauth("token response has no token".into()))?;
        Ok(format!("Bearer {token}"))
    }
}

/// A response header as a string.
pub(crate) fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Scheme k="v", k2=v2` → (scheme, [(k, v)]). Quoted values may contain commas.
pub(crate) fn parse_challenge(s: &str) -> (String, Vec<(String, String)>) {
    let s = s.trim();
    let (scheme, mut rest) = match s.split_once(char::is_whitespace) {
        Some((a, b)) => (a.to_string(), b),
        None => (s.to_string(), ""),
    };
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let mut value = String::new();
        if let Some(q) = rest.strip_prefix('"') {
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.push((key, value));
    }
    (scheme, params)
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Resolve a `Location` header (absolute URL, absolute path, or relative)
/// against the request URL it came from.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = request_url.find("://").map_or(0, |i| i + 3);
    let origin_end = request_url[scheme_end..]
        .find('/')
        .map_or(request_url.len(), |i| scheme_end + i);
    let origin = &request_url[..origin_end];
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = request_url[origin_end..]
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    format!("{origin}{dir}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example.com/token".into()),
                ("service".into(), "registry.example.com".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p, vec![("realm".into(), "basic-realm".into())]);
        let (s, p) = parse_challenge("Basic");
        assert_eq!((s.as_str(), p.len()), ("Basic", 0));
        // Garbage never panics.
        for g in ["", "Bearer realm=\"unterminated", "Bearer =,=,\"", "x y=\\"] {
            let _ = parse_challenge(g);
        }
    }

    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn locations() {
        let req = "http://127.0.0.1:5000/v2/hello/blobs/uploads/";
        assert_eq!(
            resolve_location(req, "/v2/hello/blobs/uploads/abc?_state=x"),
            "http://127.0.0.1:5000/v2/hello/blobs/uploads/abc?_state=x"
        );
        assert_eq!(
            resolve_location(req, "https://other/u/1"),
            "https://other/u/1"
        );
        assert_eq!(
            resolve_location(req, "abc"),
            "http://127.0.0.1:5000/v2/hello/blobs/uploads/abc"
        );
        assert_eq!(
            urlencode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
