//! Declared egress: `[service.X.egress]` in `deploy.toml` maps each destination the image
//! declares (`[baseline] egress`, config label `dev.kiln.baseline`) to where it is on this
//! host:
//!
//! ```toml
//! [service.web.egress]
//! "db.internal:5432" = "127.0.0.1:15432"     # declared `to` = host:port as the host sees it
//! "cache.internal:6379" = "cache.example:6379" # a DNS name is resolved at each connection
//! ```
//!
//! This module holds the pure parts: `host:port` syntax, the table's parse, the check of a
//! mapping against the image's declaration and the proxy's own addresses, the loopback
//! address of each declared name and the per-instance `/etc/hosts`. [`forward`] holds the
//! listeners inside an instance's network namespace, the forwarding and the counters.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, ToSocketAddrs};

use serde_json::Value;

pub mod forward;

/// A service's egress mapping: declared `to` → destination `host:port` on this host.
pub type EgressMap = BTreeMap<String, String>;

/// Most declared destinations one service may map.
pub const MAX_ROUTES: usize = 1024;

/// Why a `host:port` is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0:?} is not host:port (e.g. \"db.internal:5432\" or \"[::1]:5432\")")]
    Shape(String),
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    Port(String),
    #[error(
        "{0:?}: the host must be an IP address or a DNS name (labels of a-z, 0-9 and '-', at most 63 characters each, 253 in all)"
    )]
    Host(String),
}

/// The host part of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lowercased.
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A parsed `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Whether `h` is a DNS host name: dot-separated labels of `a-z0-9-` (any case), 1 to 63
/// characters, not starting or ending with `-`; 253 characters at most; not all digits
/// and dots (that would be a malformed IPv4 address).
pub fn valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && !h.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && h.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// Parses `host:port` (`[v6]:port` for IPv6), port 1..=65535.
pub fn parse_host_port(s: &str) -> Result<HostPort, AddrError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| AddrError::Shape(s.into()))?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| AddrError::Host(s.into()))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| AddrError::Shape(s.into()))?;
        if host.contains(':') {
            return Err(AddrError::Shape(s.into()));
        }
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) if valid_hostname(host) => Host::Name(host.to_ascii_lowercase()),
            Err(_) => return Err(AddrError::Host(s.into())),
        };
        (host, port)
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && !port.starts_with('+'))
        .ok_or_else(|| AddrError::Port(s.into()))?;
    Ok(HostPort { host, port })
}

/// Byte offsets in the deploy file of one service's egress settings, for errors raised
/// after parsing (at `kiln apply`, once the image's declaration is known).
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    /// The service's `image` value (a declared destination with no mapping points here
    /// when the service has no egress table).
    pub image: usize,
    /// The `[service.X.egress]` table, if present.
    pub table: Option<usize>,
    pub keys: BTreeMap<String, usize>,
    pub values: BTreeMap<String, usize>,
}

/// A checked mapping entry failed: where (`key` or value of `to`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum At {
    Key(String),
    Value(String),
    Table,
}

/// Why a service's egress mapping does not fit its image or this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "service.{service}.egress: {to:?} is not declared by the image (it declares {declared}); an image may only reach what its [baseline] egress lists"
    )]
    Undeclared {
        service: String,
        to: String,
        declared: String,
    },
    #[error(
        "service.{service}.egress: the image declares egress to {to:?} but this deploy file does not map it; add \"{to}\" = \"host:port\" to [service.{service}.egress]"
    )]
    Unmapped { service: String, to: String },
    #[error(
        "service.{service}.egress.\"{to}\": {dest} is an address kiln's own front proxy listens on ({listen}); egress cannot point back at kiln"
    )]
    ProxyClash {
        service: String,
        to: String,
        dest: String,
        listen: SocketAddr,
    },
    #[error(
        "service.{service}: the image declares egress to {to:?}, which kiln cannot serve inside the instance: {why}"
    )]
    BadDeclared {
        service: String,
        to: String,
        why: String,
    },
}

impl MappingError {
    pub(crate) fn at(&self) -> At {
        match self {
            MappingError::Undeclared { to, .. } => At::Key(to.clone()),
            MappingError::ProxyClash { to, .. } => At::Value(to.clone()),
            MappingError::Unmapped { .. } | MappingError::BadDeclared { .. } => At::Table,
        }
    }
}

/// The `to` of every egress the image's `[baseline]` declares (plain `"host:port"` strings
/// or `{ to = "host:port", reason = ".." }` tables), lowercased (the form a deploy file must
/// map, as host names are case-insensitive), sorted and deduplicated.
pub fn declared(baseline: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = baseline
        .and_then(|b| b.get("egress"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            Value::String(s) => Some(s.to_ascii_lowercase()),
            Value::Object(o) => o
                .get("to")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `ip` is an address of this host (loopback, unspecified, or one a socket can be
/// bound to).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || TcpListener::bind((ip, 0)).is_ok()
}

/// Whether a connection to `dest` would reach the front proxy listening on `listen`. Both
/// addresses are compared in canonical form: `[::ffff:127.0.0.1]` is 127.0.0.1.
pub fn reaches(dest: SocketAddr, listen: SocketAddr) -> bool {
    if dest.port() != listen.port() {
        return false;
    }
    let (d, l) = (dest.ip().to_canonical(), listen.ip().to_canonical());
    if l.is_unspecified() {
        return is_local(d);
    }
    d == l || (d.is_unspecified() && is_local(l))
}

/// The addresses every front proxy of this process listens on now (kept by
/// [`crate::proxy::Proxy`]): what an egress destination must never reach, checked at apply
/// and again at each connection, after the name is resolved.
static KILN_LISTENS: std::sync::Mutex<Vec<SocketAddr>> = std::sync::Mutex::new(Vec::new());

/// Note that a front proxy of this process listens on `addr` (until [`forget_listen`]).
pub(crate) fn note_listen(addr: SocketAddr) {
    kiln_oci::sync::lock(&KILN_LISTENS).push(addr);
}

/// A front proxy of this process no longer listens on `addr`.
pub(crate) fn forget_listen(addr: SocketAddr) {
    let mut l = kiln_oci::sync::lock(&KILN_LISTENS);
    if let Some(i) = l.iter().position(|a| *a == addr) {
        l.swap_remove(i);
    }
}

/// See [`note_listen`].
pub(crate) fn kiln_listens() -> Vec<SocketAddr> {
    kiln_oci::sync::lock(&KILN_LISTENS).clone()
}

/// Checks service `service`'s `map` against what its image declares (`declared`, from
/// [`declared`]) and the front proxies' addresses (`listens`): every declared destination
/// is mapped, nothing else is, each declared one can be named in `/etc/hosts`, and no
/// destination is one of kiln's own listen addresses (a DNS name is resolved for this
/// check; one that does not resolve now is left to fail, visibly, at connection time).
pub fn check_mapping(
    service: &str,
    map: &EgressMap,
    declared: &[String],
    listens: &[SocketAddr],
) -> Result<(), MappingError> {
    for to in map.keys() {
        if !declared.contains(to) {
            return Err(MappingError::Undeclared {
                service: service.into(),
                to: to.clone(),
                declared: if declared.is_empty() {
                    "no egress".into()
                } else {
                    declared.join(", ")
                },
            });
        }
    }
    for to in declared {
        let bad = |why: String| MappingError::BadDeclared {
            service: service.into(),
            to: to.clone(),
            why,
        };
        match parse_host_port(to) {
            Ok(HostPort {
                host: Host::Name(_),
                ..
            }) => {}
            Ok(_) => {
                return Err(bad(
                    "an IP address cannot be given a name in /etc/hosts; declare a host name"
                        .into(),
                ));
            }
            Err(e) => return Err(bad(e.to_string())),
        }
        if !map.contains_key(to) {
            return Err(MappingError::Unmapped {
                service: service.into(),
                to: to.clone(),
            });
        }
    }
    check_destinations(service, map, listens)
}

/// Checks that no destination of service `service`'s `map` is one of the front proxies'
/// addresses `listens` (a DNS name is resolved for this check; one that does not resolve
/// now is left to the check at each connection). Part of [`check_mapping`]; a rollback
/// runs it again on the release it returns to.
pub fn check_destinations(
    service: &str,
    map: &EgressMap,
    listens: &[SocketAddr],
) -> Result<(), MappingError> {
    for (to, dest) in map {
        let Ok(hp) = parse_host_port(dest) else {
            continue; // refused by the parser already
        };
        let addrs: Vec<SocketAddr> = match &hp.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, hp.port)],
            Host::Name(n) => (n.as_str(), hp.port)
                .to_socket_addrs()
                .map(Iterator::collect)
                .unwrap_or_default(),
        };
        for a in addrs {
            if let Some(listen) = listens.iter().find(|l| reaches(a, **l)) {
                return Err(MappingError::ProxyClash {
                    service: service.into(),
                    to: to.clone(),
                    dest: dest.clone(),
                    listen: *listen,
                });
            }
        }
    }
    Ok(())
}

/// One declared destination as an instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The declared `host:port` (the image's name for it).
    pub to: String,
    /// The declared host name.
    pub name: String,
    /// Where kiln listens inside the instance's network namespace.
    pub via: SocketAddrV4,
    /// The mapped destination, `host:port` as this host sees it.
    pub dest: String,
}

/// Why routes could not be made from a mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("egress {to:?}: {source}")]
    Addr {
        to: String,
        #[source]
        source: AddrError,
    },
    #[error("egress {0:?}: only host names can be given an address in /etc/hosts")]
    NotAName(String),
    #[error("more than {MAX_ROUTES} egress destinations")]
    TooMany,
}

/// The loopback address of the `n`th declared host name (0-based): 127.0.1.1,
/// 127.0.1.2, … 127.0.1.254, 127.0.2.1, … (never .0 or .255, never 127.0.0.x).
pub fn loopback_for(n: usize) -> Option<Ipv4Addr> {
    let hi = 1 + n / 254;
    let lo = 1 + n % 254;
    let hi = u8::try_from(hi).ok()?;
    Some(Ipv4Addr::new(127, 0, hi, u8::try_from(lo).ok()?))
}

/// The instance's view of `map`: each distinct declared host name, in sorted order, gets its
/// own loopback address ([`loopback_for`]); kiln listens on that address at each declared
/// port. Sorted by `to`; the same mapping always gives the same addresses.
pub fn routes(map: &EgressMap) -> Result<Vec<Route>, RouteError> {
    if map.len() > MAX_ROUTES {
        return Err(RouteError::TooMany);
    }
    let mut parsed = Vec::new();
    for (to, dest) in map {
        let hp = parse_host_port(to).map_err(|source| RouteError::Addr {
            to: to.clone(),
            source,
        })?;
        let Host::Name(name) = hp.host else {
            return Err(RouteError::NotAName(to.clone()));
        };
        parsed.push((to.clone(), name, hp.port, dest.clone()));
    }
    let mut names: Vec<&str> = parsed.iter().map(|p| p.1.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for (to, name, port, dest) in &parsed {
        let n = names.binary_search(&name.as_str()).unwrap_or(0);
        let ip = loopback_for(n).ok_or(RouteError::TooMany)?;
        out.push(Route {
            to: to.clone(),
            name: name.clone(),
            via: SocketAddrV4::new(ip, *port),
            dest: dest.clone(),
        });
    }
    Ok(out)
}

/// The per-instance `/etc/hosts`: localhost lines, then one line per declared host name.
pub fn hosts_file(routes: &[Route]) -> String {
    let mut s = String::from(
        "# written by kiln serve: the instance's declared egress (read-only)\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let mut seen: Vec<&str> = Vec::new();
    for r in routes {
        if seen.contains(&r.name.as_str()) {
            continue;
        }
        seen.push(&r.name);
        s.push_str(&format!("{}\t{}\n", r.via.ip(), r.name));
    }
    s
}

#[cfg(test)]
mod tests;
