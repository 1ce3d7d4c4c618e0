//! Parsing `deploy.toml`: the raw TOML shapes (`RawFile`, `RawService`, `RawHealth`) and
//! their strict checks into [`Deployment`] / [`ServiceSpec`], with `file:line:col` errors.

use std::ops::Range;

use toml::Spanned;

use super::*;
// Raw file
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    service: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawService>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: Spanned<String>,
    #[serde(default)]
    replicas: Option<Spanned<i64>>,
    listen: Spanned<String>,
    port: Spanned<i64>,
    #[serde(default)]
    strategy: Option<Spanned<String>>,
    #[serde(default)]
    canary: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    step_pause: Option<Spanned<String>>,
    #[serde(default)]
    max_lifetime: Option<Spanned<String>>,
    #[serde(default)]
    health: Option<Spanned<RawHealth>>,
    policy: Spanned<String>,
    #[serde(default)]
    tmpfs_mb: Option<Spanned<i64>>,
    #[serde(default)]
    env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    #[serde(default)]
    reason: Option<Spanned<String>>,
    #[serde(default)]
    limits: Option<crate::limits::RawLimits>,
    secrets: Option<BTreeMap<Spanned<String>, Spanned<crate::secrets::RawSecret>>>,
    egress: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    #[serde(default)]
    analysis: Option<crate::analysis::RawAnalysis>,
    #[serde(default)]
    proxy_protocol: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default)]
    http_get: Option<Spanned<String>>,
    #[serde(default)]
    tcp: Option<Spanned<bool>>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    healthy_after: Option<Spanned<i64>>,
    #[serde(default)]
    unhealthy_after: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

use kiln_oci::textpos::{line_col, snippet};

pub(super) fn error_at(file: &Path, text: &str, offset: usize, message: String) -> DeployError {
    let (line, column) = line_col(text, offset);
    DeployError {
        file: file.to_path_buf(),
        line,
        column,
        message,
        snippet: snippet(text, line, column),
    }
}

pub(super) fn error_unlocated(file: &Path, message: String) -> DeployError {
    DeployError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        message,
        snippet: String::new(),
    }
}

struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, message: String) -> DeployError {
        error_at(self.file, self.text, span.start, message)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

fn valid_service_name(n: &str) -> bool {
    (1..=63).contains(&n.len())
        && n.bytes()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// Whether two listen addresses would fight over the same port.
fn listen_clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl Deployment {
    /// Reads and validates the deploy file at `path`.
    pub fn load(path: &Path) -> Result<Deployment, DeployError> {
        let bytes = kiln_oci::untrusted::read_small(path)
            .map_err(|e| error_unlocated(path, format!("cannot read the deploy file: {e}")))?;
        let text = kiln_oci::textpos::decode(bytes).map_err(|e| DeployError {
            file: path.to_path_buf(),
            line: e.line,
            column: e.column,
            message: e.message("the deploy file"),
            snippet: e.snippet.clone(),
        })?;
        Deployment::parse(path, &text)
    }

    /// Parses deploy-file text; `policy` paths resolve against `path`'s directory, which must
    /// exist. Does not check that the `listen` ports are free (see [`check_listen_free`]).
    pub fn parse(path: &Path, text: &str) -> Result<Deployment, DeployError> {
        let cx = Cx { file: path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, e.message().trim().to_string())
        })?;
        let Some(services) = raw.service else {
            return Err(cx.err(
                0..0,
                "the deploy file declares no services (expected [service.<name>] tables)".into(),
            ));
        };
        let services_span = services.span();
        let services = services.into_inner();
        if services.is_empty() {
            return Err(cx.err(
                services_span,
                "the deploy file declares no services (expected [service.<name>] tables)".into(),
            ));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = std::fs::canonicalize(&dir).map_err(|e| {
            error_unlocated(
                path,
                format!(
                    "cannot resolve the deploy file's directory {}: {e}",
                    dir.display()
                ),
            )
        })?;

        let mut out = BTreeMap::new();
        let mut listen_at = BTreeMap::new();
        let mut limits_at = BTreeMap::new();
        let mut secret_at = BTreeMap::new();
        let mut egress_at = BTreeMap::new();
        let mut listens: Vec<(String, SocketAddr)> = Vec::new();
        for (name, svc) in services {
            let name_span = name.span();
            let name = name.into_inner();
            if !valid_service_name(&name) {
                return Err(cx.err(
                    name_span,
                    format!("service name {name:?} must be 1 to 63 characters of a-z, 0-9 and '-'"),
                ));
            }
            let mut svc = svc.into_inner();
            let listen_span = svc.listen.span();
            let raw_limits = svc.limits.take();
            let raw_analysis = svc.analysis.take();
            let mut spans = crate::egress::Spans {
                image: svc.image.span().start,
                ..Default::default()
            };
            let mut spec = parse_service(&cx, &dir, &name, svc, &mut secret_at, &mut spans)?;
            egress_at.insert(name.clone(), spans);
            if let Some(raw) = raw_limits {
                let (limits, at) = crate::limits::from_raw(&format!("service.{name}.limits"), raw)
                    .map_err(|e| cx.err(e.span, e.message))?;
                spec.limits = Some(limits);
                limits_at.insert(name.clone(), at);
            }
            if let Some(raw) = raw_analysis {
                let a = crate::analysis::from_raw(&format!("service.{name}.analysis"), raw)
                    .map_err(|e| cx.err(e.span, e.message))?;
                spec.analysis = Some(a);
            }
            if let Some((other, addr)) = listens.iter().find(|(_, a)| listen_clash(a, &spec.listen))
            {
                let (line, _) = listen_at.get(other).map_or((0, 0), |&o| line_col(text, o));
                return Err(cx.err(
                    listen_span,
                    format!(
                        "service.{name}.listen: {} clashes with service.{other}.listen = {addr:?} (line {line}); each service needs its own port",
                        spec.listen
                    ),
                ));
            }
            listens.push((name.clone(), spec.listen));
            listen_at.insert(name.clone(), listen_span.start);
            out.insert(name, spec);
        }
        Ok(Deployment {
            services: out,
            origin: Some(Arc::new(Origin {
                file: path.to_path_buf(),
                text: text.to_string(),
                listen_at,
                limits_at,
                secret_at,
                egress_at,
            })),
        })
    }
}

fn duration_field(
    cx: &Cx<'_>,
    key: &str,
    v: &Spanned<String>,
    min: Duration,
) -> Result<Duration, DeployError> {
    let d = parse_duration(v.get_ref()).map_err(|m| cx.err(v.span(), format!("{key}: {m}")))?;
    if d < min {
        return Err(cx.err(
            v.span(),
            format!("{key}: must be at least {}", format_duration(min)),
        ));
    }
    Ok(d)
}

fn int_field(
    cx: &Cx<'_>,
    key: &str,
    v: &Spanned<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<u32, DeployError> {
    let n = *v.get_ref();
    if !range.contains(&n) {
        return Err(cx.err(
            v.span(),
            format!(
                "{key}: {n} is out of range ({}..={})",
                range.start(),
                range.end()
            ),
        ));
    }
    u32::try_from(n).map_err(|_| cx.err(v.span(), format!("{key}: {n} is out of range")))
}

fn parse_service(
    cx: &Cx<'_>,
    dir: &Path,
    name: &str,
    raw: RawService,
    secret_at: &mut BTreeMap<(String, String), usize>,
    egress_spans: &mut crate::egress::Spans,
) -> Result<ServiceSpec, DeployError> {
    let k = |f: &str| format!("service.{name}.{f}");

    let image = raw
        .image
        .get_ref()
        .parse::<ImageRef>()
        .map_err(|m| cx.err(raw.image.span(), format!("{}: {m}", k("image"))))?;

    let replicas = match &raw.replicas {
        Some(r) => int_field(cx, &k("replicas"), r, 1..=i64::from(MAX_REPLICAS))?,
        None => 1,
    };

    let listen: SocketAddr = raw.listen.get_ref().parse().map_err(|_| {
        cx.err(
            raw.listen.span(),
            format!(
                "{}: {:?} is not an IP:port address (e.g. \"127.0.0.1:18080\" or \"[::1]:18080\")",
                k("listen"),
                raw.listen.get_ref()
            ),
        )
    })?;
    if listen.port() == 0 {
        return Err(cx.err(
            raw.listen.span(),
            format!("{}: port 0 is not allowed", k("listen")),
        ));
    }

    let port = int_field(cx, &k("port"), &raw.port, 1..=65535)?;
    let port = u16::try_from(port)
        .map_err(|_| cx.err(raw.port.span(), format!("{}: out of range", k("port"))))?;

    let strategy_is_canary = match &raw.strategy {
        None => false,
        Some(s) => match s.get_ref().as_str() {
            "blue-green" => false,
            "canary" => true,
            other => {
                return Err(cx.err(
                    s.span(),
                    format!(
                        "{}: {other:?} is not a strategy (expected \"blue-green\" or \"canary\")",
                        k("strategy")
                    ),
                ));
            }
        },
    };
    let strategy = match (&raw.canary, strategy_is_canary) {
        (None, false) => Strategy::BlueGreen,
        (Some(c), false) => {
            return Err(cx.err(
                c.span(),
                format!(
                    "{}: canary steps need strategy = \"canary\" (the strategy is blue-green)",
                    k("canary")
                ),
            ));
        }
        (None, true) => {
            let at = raw.strategy.as_ref().map_or(0..0, Spanned::span);
            return Err(cx.err(
                at,
                format!(
                    "{}: strategy = \"canary\" needs canary = [..] steps, e.g. canary = [10, 50, 100]",
                    k("strategy")
                ),
            ));
        }
        (Some(c), true) => {
            let mut steps: Vec<u8> = Vec::new();
            for p in c.get_ref() {
                let v = *p.get_ref();
                let pct = u8::try_from(v)
                    .ok()
                    .filter(|v| (1..=100).contains(v))
                    .ok_or_else(|| {
                        cx.err(
                            p.span(),
                            format!("{}: {v} is not a percent (1..=100)", k("canary")),
                        )
                    })?;
                if let Some(&prev) = steps.last()
                    && pct <= prev
                {
                    return Err(cx.err(
                        p.span(),
                        format!(
                            "{}: steps must increase ({pct} follows {prev})",
                            k("canary")
                        ),
                    ));
                }
                steps.push(pct);
            }
            if steps.last() != Some(&100) {
                return Err(cx.err(
                    c.span(),
                    format!("{}: the last step must be 100", k("canary")),
                ));
            }
            Strategy::Canary { steps }
        }
    };

    let step_pause = match &raw.step_pause {
        Some(v) => duration_field(cx, &k("step_pause"), v, Duration::ZERO)?,
        None => Duration::from_secs(5),
    };
    let max_lifetime = raw
        .max_lifetime
        .as_ref()
        .map(|v| duration_field(cx, &k("max_lifetime"), v, Duration::from_secs(1)))
        .transpose()?;

    let health = match raw.health {
        None => Health::default(),
        Some(h) => parse_health(cx, &k("health"), h)?,
    };

    let policy_rel = raw.policy.get_ref();
    if policy_rel.is_empty() || policy_rel.contains('\0') {
        return Err(cx.err(
            raw.policy.span(),
            format!("{}: expected the path of a trust.toml", k("policy")),
        ));
    }
    let policy = dir.join(policy_rel);
    if !policy.is_file() {
        return Err(cx.err(
            raw.policy.span(),
            format!(
                "{}: the trust policy {} does not exist (paths are relative to the deploy file)",
                k("policy"),
                policy.display()
            ),
        ));
    }

    let tmpfs_mb = raw
        .tmpfs_mb
        .as_ref()
        .map(|v| int_field(cx, &k("tmpfs_mb"), v, 1..=i64::from(MAX_TMPFS_MB)))
        .transpose()?;

    let mut env = BTreeMap::new();
    for (key, value) in raw.env.unwrap_or_default() {
        let valid_key = !key.get_ref().is_empty()
            && key
                .get_ref()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_')
            && !key.get_ref().as_bytes()[0].is_ascii_digit();
        if !valid_key {
            return Err(cx.err(
                key.span(),
                format!(
                    "{}: {:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    k("env"),
                    key.get_ref()
                ),
            ));
        }
        if value.get_ref().contains('\0') {
            return Err(cx.err(
                value.span(),
                format!("{}.{}: must not contain NUL", k("env"), key.get_ref()),
            ));
        }
        env.insert(key.into_inner(), value.into_inner());
    }

    let (secrets, at) = crate::secrets::parse_table(
        name,
        dir,
        raw.secrets.unwrap_or_default(),
        &env,
        |span, m| cx.err(span, m),
    )?;
    secret_at.extend(at.into_iter().map(|(k, v)| ((name.to_string(), k), v)));

    Ok(ServiceSpec {
        image,
        replicas,
        listen,
        port,
        strategy,
        step_pause,
        max_lifetime,
        health,
        policy,
        tmpfs_mb,
        env,
        reason: raw.reason.map(Spanned::into_inner),
        limits: Some(Limits::default()),
        secrets,
        egress: match raw.egress {
            Some(t) => parse_egress(cx, &k("egress"), t, egress_spans)?,
            None => BTreeMap::new(),
        },
        analysis: None,
        proxy_protocol: raw.proxy_protocol.is_some_and(|p| *p.get_ref()),
    })
}

fn parse_health(cx: &Cx<'_>, key: &str, h: Spanned<RawHealth>) -> Result<Health, DeployError> {
    let span = h.span();
    let h = h.into_inner();
    let check = match (&h.http_get, &h.tcp) {
        (Some(p), None) => {
            let path = p.get_ref();
            if !path.starts_with('/') || path.bytes().any(|c| c <= b' ' || c == 0x7f) {
                return Err(cx.err(
                    p.span(),
                    format!(
                        "{key}.http_get: {path:?} must be an absolute request path without spaces, e.g. \"/healthz\""
                    ),
                ));
            }
            HealthCheck::HttpGet { path: path.clone() }
        }
        (None, Some(t)) if *t.get_ref() => HealthCheck::Tcp,
        (None, Some(t)) => {
            return Err(cx.err(
                t.span(),
                format!("{key}.tcp: must be true (or use http_get = \"/path\")"),
            ));
        }
        (Some(_), Some(t)) => {
            return Err(cx.err(
                t.span(),
                format!("{key}: give either http_get or tcp, not both"),
            ));
        }
        (None, None) => {
            return Err(cx.err(
                span,
                format!("{key}: needs http_get = \"/path\" or tcp = true"),
            ));
        }
    };
    let d = Health::default();
    let interval = match &h.interval {
        Some(v) => duration_field(cx, &format!("{key}.interval"), v, Duration::from_millis(10))?,
        None => d.interval,
    };
    let timeout = match &h.timeout {
        Some(v) => {
            let t = duration_field(cx, &format!("{key}.timeout"), v, Duration::from_millis(1))?;
            if t > interval {
                return Err(cx.err(
                    v.span(),
                    format!(
                        "{key}.timeout: {} is longer than the interval ({})",
                        format_duration(t),
                        format_duration(interval)
                    ),
                ));
            }
            t
        }
        None => d.timeout.min(interval),
    };
    let healthy_after = match &h.healthy_after {
        Some(v) => int_field(cx, &format!("{key}.healthy_after"), v, 1..=100)?,
        None => d.healthy_after,
    };
    let unhealthy_after = match &h.unhealthy_after {
        Some(v) => int_field(cx, &format!("{key}.unhealthy_after"), v, 1..=100)?,
        None => d.unhealthy_after,
    };
    Ok(Health {
        check,
        interval,
        timeout,
        healthy_after,
        unhealthy_after,
    })
}

/// `[service.X.egress]`: declared `host:port` (a host name) → destination `host:port`.
fn parse_egress(
    cx: &Cx<'_>,
    key: &str,
    t: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
    spans: &mut crate::egress::Spans,
) -> Result<crate::egress::EgressMap, DeployError> {
    use crate::egress::{Host, parse_host_port};
    spans.table = Some(t.span().start);
    let t = t.into_inner();
    if t.len() > crate::egress::MAX_ROUTES {
        return Err(cx.err(
            spans.table.unwrap_or(0)..0,
            format!(
                "{key}: more than {} destinations",
                crate::egress::MAX_ROUTES
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (to, dest) in t {
        match parse_host_port(to.get_ref()) {
            Ok(hp) if matches!(hp.host, Host::Name(_)) => {
                // The canonical (lowercased) form is what the image declares.
                if hp.to_string() != *to.get_ref() {
                    return Err(cx.err(
                        to.span(),
                        format!("{key}: write {:?} as {:?}", to.get_ref(), hp.to_string()),
                    ));
                }
            }
            Ok(_) => {
                return Err(cx.err(
                    to.span(),
                    format!(
                        "{key}: {:?} must be a declared host name and port, not an IP address",
                        to.get_ref()
                    ),
                ));
            }
            Err(e) => return Err(cx.err(to.span(), format!("{key}: {e}"))),
        }
        if let Err(e) = parse_host_port(dest.get_ref()) {
            return Err(cx.err(dest.span(), format!("{key}.\"{}\": {e}", to.get_ref())));
        }
        spans.keys.insert(to.get_ref().clone(), to.span().start);
        spans.values.insert(to.get_ref().clone(), dest.span().start);
        out.insert(to.into_inner(), dest.into_inner());
    }
    Ok(out)
}
