//! `host[:port]/repository[:tag][@sha256:<hex>]` references to a registry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use kiln_oci::Digest;
use kiln_oci::layout::{validate_name, validate_tag};

use crate::RegistryError;

/// A manifest in a remote registry. At least one of `tag` and `digest` is
/// set; when both are, the digest is what is fetched and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host` or `host:port` (IPv6 literals in brackets).
    pub registry: String,
    /// The repository path inside the registry, e.g. `team/hello`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse `host[:port]/repo[:tag|@sha256:<hex>]`. The registry host is
    /// required (it must contain a `.` or a `:`, or be `localhost`), and so is
    /// a tag or a digest: a missing tag never silently means `latest`.
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidReference {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (registry, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("expected host[:port]/repository[:tag|@sha256:<hex>]"))?;
        validate_host(registry).map_err(|r| bad(&r.to_string()))?;
        let (name_tag, digest) = match rest.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| bad(&format!("bad digest: {e}")))?,
                ),
            ),
            None => (rest, None),
        };
        let (repository, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => {
                (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
            }
            _ => (name_tag, None),
        };
        validate_name(repository).map_err(|r| bad(&r.to_string()))?;
        if let Some(t) = &tag {
            validate_tag(t).map_err(|r| bad(&r.to_string()))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("a tag (:tag) or a digest (@sha256:<hex>) is required"));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `host[:port]/repository`, the name an image pulled from here gets in
    /// a local store.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with a different tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at a digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What goes after `/manifests/`: the digest if known, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => String::new(),
        }
    }

    /// Whether the registry host is a loopback address (`localhost`,
    /// `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }
}

/// Whether `host[:port]` names a loopback address.
pub(crate) fn host_is_loopback(hostport: &str) -> bool {
    let host = if let Some(rest) = hostport.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a registry host is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    #[error("empty registry host")]
    Empty,
    #[error("unterminated IPv6 literal in the registry host")]
    UnterminatedIpv6,
    #[error("bad IPv6 address {0:?}")]
    Ipv6(String),
    #[error("junk after the IPv6 literal in the registry host")]
    JunkAfterIpv6,
    #[error("bad registry host {0:?}")]
    Host(String),
    #[error(
        "{0:?} does not look like a registry host (expected e.g. localhost:5000 or registry.example.com)"
    )]
    NotAHost(String),
    #[error("bad port {0:?}")]
    Port(String),
}

fn validate_host(h: &str) -> Result<(), HostError> {
    if h.is_empty() {
        return Err(HostError::Empty);
    }
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or(HostError::UnterminatedIpv6)?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Ipv6(ip.into()));
        }
        match after {
            "" => (ip, None),
            p => (
                ip,
                Some(p.strip_prefix(':').ok_or(HostError::JunkAfterIpv6)?),
            ),
        }
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if !h.starts_with('[') {
        if host.is_empty()
            || !host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        {
            return Err(HostError::Host(host.into()));
        }
        if port.is_none() && !host.contains('.') && host != "localhost" {
            return Err(HostError::NotAHost(host.into()));
        }
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(HostError::Port(p.into()));
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let r = Reference::parse("localhost:5000/hello:1.0.0").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "hello");
        assert_eq!(r.tag.as_deref(), Some("1.0.0"));
        assert_eq!(r.digest, None);
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "localhost:5000/hello:1.0.0");
        assert_eq!(r.name(), "localhost:5000/hello");

        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("registry.example.com/team/app@{d}")).unwrap();
        assert_eq!(r.registry, "registry.example.com");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest, Some(d));
        assert!(!r.is_loopback());
        assert_eq!(r.manifest_ref(), d.to_string());

        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:v1@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), d.to_string());
        assert!(r.is_loopback());

        let r = Reference::parse("[::1]:5000/x:1").unwrap();
        assert!(r.is_loopback());
        assert!(Reference::parse("localhost/x:1").unwrap().is_loopback());
    }

    #[test]
    fn rejects_bad() {
        for bad in [
            "hello:1.0.0",
            "hello/world:1",
            "localhost:5000/hello",
            "localhost:0/hello:1",
            "localhost:99999/hello:1",
            "localhost:5000/Hello:1",
            "localhost:5000/hello:",
            "localhost:5000/hello@sha256:abc",
            "localhost:5000/../x:1",
            "/x:1",
            "[::1/x:1",
            "ho st:5000/x:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn loopback() {
        assert!(host_is_loopback("127.0.0.1:5000"));
        assert!(host_is_loopback("127.1.2.3"));
        assert!(host_is_loopback("[::1]:80"));
        assert!(host_is_loopback("LOCALHOST:1"));
        assert!(!host_is_loopback("10.0.0.1:5000"));
        assert!(!host_is_loopback("localhost.evil.com:5000"));
        assert!(!host_is_loopback("example.com"));
    }
}
