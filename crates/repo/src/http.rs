//! Bounded HTTP downloads (plain HTTP is fine: trust comes from signatures
//! and digests). Every request is bounded in time the way kiln's registry
//! client is (connect, headers, every socket read, and a low-speed guard on
//! bodies), and every body in size: small files up to a limit, indexes and
//! packages up to exactly the size the signed metadata promises, hashed as
//! they stream.

use std::io::{self, Read, Write};

use kiln_oci::Digest;
use kiln_registry::retry::call_with_retries;
use kiln_registry::{Timeouts, TooSlow};
use sha2::{Digest as _, Sha256};

use crate::error::RepoError;

pub(crate) struct Http {
    agent: ureq::Agent,
    timeouts: Timeouts,
}

impl Http {
    pub(crate) fn new(timeouts: Timeouts) -> Http {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_recv_response(Some(timeouts.response))
            .timeout_per_read(Some(timeouts.per_read()))
            .timeout_per_write(Some(timeouts.per_write()))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent: ureq::Agent::new_with_config(config),
            timeouts,
        }
    }

    fn http_error(&self, url: &str, e: ureq::Error) -> RepoError {
        let t = &self.timeouts;
        let reason = match &e {
            ureq::Error::Timeout(kind) => match kind {
                ureq::Timeout::Connect | ureq::Timeout::Resolve => {
                    format!("could not connect within {} s", t.connect.as_secs_f64())
                }
                ureq::Timeout::RecvResponse => {
                    format!("no response within {} s", t.response.as_secs_f64())
                }
                ureq::Timeout::PerRead => {
                    format!(
                        "the server sent nothing for {} s (stalled)",
                        t.per_read().as_secs_f64()
                    )
                }
                other => format!("{other}"),
            },
            _ => {
                return RepoError::Http {
                    url: url.to_string(),
                    source: Box::new(e),
                };
            }
        };
        RepoError::Timeout {
            url: url.to_string(),
            reason,
        }
    }

    /// An error while reading a body: a timeout or the low-speed guard
    /// is a [`RepoError::Timeout`]; anything else cut the body short.
    fn body_error(&self, url: &str, e: io::Error, expected: Option<u64>, got: u64) -> RepoError {
        if let Some(slow) = e.get_ref().and_then(|i| i.downcast_ref::<TooSlow>()) {
            return RepoError::Timeout {
                url: url.to_string(),
                reason: slow.to_string(),
            };
        }
        let ue = ureq::Error::from(e);
        if matches!(ue, ureq::Error::Timeout(_)) {
            return self.http_error(url, ue);
        }
        match expected {
            Some(expected) => RepoError::Truncated {
                url: url.to_string(),
                expected,
                got,
            },
            None => self.http_error(url, ue),
        }
    }

    /// GET `url`: the response when the server answers 200, `None` on 404 or 410
    /// (the file is not there), any other status an error.
    ///
    /// A request that fails before any answer in a way that is usually
    /// transient (the name did not resolve, the connection was refused or
    /// reset) or that gets 502, 503 or 504 is tried again
    /// ([`kiln_registry::retry`]).
    fn get(&self, url: &str) -> Result<Option<ureq::http::Response<ureq::Body>>, RepoError> {
        let resp = call_with_retries(|| self.agent.get(url).call())
            .map_err(|e| self.http_error(url, e))?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp)),
            404 | 410 => Ok(None),
            status => Err(RepoError::Status {
                url: url.to_string(),
                status,
            }),
        }
    }

    /// GET `url`: `Ok(None)` on 404 or 410, the whole body when it is at
    /// most `limit` bytes.
    pub(crate) fn get_small(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, RepoError> {
        let Some(mut resp) = self.get(url)? else {
            return Ok(None);
        };
        let mut r = kiln_registry::LowSpeedReader::new(
            resp.body_mut().as_reader().take(limit.saturating_add(1)),
            self.timeouts.low_speed,
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| self.body_error(url, e, None, 0))?;
        if out.len() as u64 > limit {
            return Err(RepoError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        Ok(Some(out))
    }

    /// GET `url` into `w`, which must receive exactly `size` bytes whose
    /// SHA256 is `sha256`: more is a size mismatch, less a truncated
    /// download, other bytes a hash mismatch. `Ok(false)` on 404 or 410
    /// (nothing written).
    pub(crate) fn get_exact(
        &self,
        url: &str,
        size: u64,
        sha256: &Digest,
        w: &mut dyn Write,
    ) -> Result<bool, RepoError> {
        let Some(mut resp) = self.get(url)? else {
            return Ok(false);
        };
        let mut r = kiln_registry::LowSpeedReader::new(
            resp.body_mut().as_reader().take(size.saturating_add(1)),
            self.timeouts.low_speed,
        );
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.body_error(url, e, Some(size), got)),
            };
            got += n as u64;
            if got > size {
                return Err(RepoError::SizeMismatch {
                    what: url.to_string(),
                    expected: size,
                    got,
                });
            }
            hasher.update(&buf[..n]);
            w.write_all(&buf[..n]).map_err(|e| RepoError::Io {
                path: "(cache temporary file)".into(),
                source: e,
            })?;
        }
        if got < size {
            return Err(RepoError::Truncated {
                url: url.to_string(),
                expected: size,
                got,
            });
        }
        let digest = Digest::from_bytes(hasher.finalize().into());
        if digest != *sha256 {
            return Err(RepoError::HashMismatch {
                what: url.to_string(),
                expected: *sha256,
                got: digest,
            });
        }
        Ok(true)
    }
}
