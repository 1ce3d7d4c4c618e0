//! What `kiln serve --metrics ADDR` serves: Prometheus metrics on
//! `/metrics` and a read-only dashboard on `/` (and a few pages), both
//! from the daemon's status, its audit log and the counters it keeps.
//!
//! - `http.rs`: the bounded GET/HEAD-only HTTP server and bearer tokens;
//! - `expo.rs`: the Prometheus text format; `metrics.rs`: what is counted;
//! - `dashboard.rs`: the server-rendered HTML pages (every string escaped),
//!   `svg.rs`: their inline SVG charts;
//! - the inclusion proof of an audit event as JSON on `/proof/<index>`.
//!
//! Listening anywhere but loopback requires a bearer token (a file of mode
//! 0600 or stricter); nothing served changes state.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_audit::AuditLog;
use serde_json::{Value, json};

mod dashboard;
pub mod expo;
pub mod http;
pub mod metrics;
mod svg;

pub use metrics::Metrics;

/// How often the traffic counters are sampled for the charts.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the pages are made from: the daemon, or a test's stand-in.
pub trait Source: Send + Sync {
    /// The status as `kiln status --json` shows it.
    fn status(&self) -> Value;
    fn audit(&self) -> &AuditLog;
    fn metrics(&self) -> &Metrics;
    /// The state directory (for the evidence status).
    fn state_dir(&self) -> &Path;
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(
        "--metrics {0} is not a loopback address: anything else needs --metrics-token-file (a bearer token)"
    )]
    NeedsToken(SocketAddr),
    #[error("metrics token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "metrics token file {path} has mode {mode:o}: it must not be readable by group or others (chmod 600)"
    )]
    TokenMode { path: PathBuf, mode: u32 },
    #[error("metrics token file {0} is empty")]
    TokenEmpty(PathBuf),
    #[error("metrics listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Read a bearer token: the file's first line, which must not be empty; the
/// file must be mode 0600 or stricter.
pub fn read_token(path: &Path) -> Result<Vec<u8>, ObserveError> {
    let io = |source| ObserveError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ObserveError::TokenMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(ObserveError::TokenEmpty(path.to_path_buf()));
    }
    Ok(token.as_bytes().to_vec())
}

/// Refuse a non-loopback address without a token.
pub fn check_bind(addr: SocketAddr, token: Option<&[u8]>) -> Result<(), ObserveError> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ObserveError::NeedsToken(addr));
    }
    Ok(())
}

/// The running endpoint: the server and the sampler; both stop when dropped.
pub struct Endpoint {
    server: http::Server,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            let _ = t.join();
        }
    }
}

/// Listen on `addr` and serve `source`.
pub fn start(
    addr: SocketAddr,
    token: Option<Vec<u8>>,
    source: Arc<dyn Source>,
) -> Result<Endpoint, ObserveError> {
    check_bind(addr, token.as_deref())?;
    let listener = TcpListener::bind(addr).map_err(|source| ObserveError::Bind { addr, source })?;
    let src = source.clone();
    let handler: Arc<http::Handler> = Arc::new(move |r: &http::Request| route(&*src, r));
    let server = http::Server::start(listener, token, handler)
        .map_err(|source| ObserveError::Bind { addr, source })?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut waited = SAMPLE_EVERY;
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            if waited >= SAMPLE_EVERY {
                source.metrics().fold(&source.status());
                waited = Duration::ZERO;
            }
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
        }
    });
    Ok(Endpoint {
        server,
        stop,
        sampler: Some(sampler),
    })
}

/// Bytes the files under `dir` take.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The Prometheus text of `source` now.
pub fn scrape(source: &dyn Source) -> String {
    let status = source.status();
    let m = source.metrics();
    m.fold(&status);
    let log = source.audit().log();
    let size = (log.size(), dir_bytes(log.dir()));
    m.render(&status, size)
}

/// The inclusion proof of event `index` in the latest checkpoint, as
/// `kiln log prove` prints it.
pub fn proof(audit: &AuditLog, index: u64) -> Result<Value, String> {
    let l = audit.log();
    let (cp, note) = l.checkpoint().ok_or("the log has no checkpoint yet")?;
    if index >= cp.size {
        return Err(format!(
            "event {index} is not covered by the latest checkpoint (tree size {})",
            cp.size
        ));
    }
    let (le, leaf) = audit.event(index).map_err(|e| e.to_string())?;
    let hashes = l
        .inclusion_proof(index, cp.size)
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "origin": l.verifier().name(),
        "index": index,
        "tree_size": cp.size,
        "leaf_hash": hex::encode(leaf),
        "hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "root_hash": hex::encode(cp.root),
        "checkpoint": note,
        "entry": String::from_utf8_lossy(&le.raw),
    }))
}

fn route(src: &dyn Source, r: &http::Request) -> http::Response {
    use http::Response;
    let path = r.path.as_str();
    match path {
        "/metrics" => Response::new(200, expo::CONTENT_TYPE, scrape(src)),
        _ if path.starts_with("/proof/") => {
            let Ok(i) = path["/proof/".len()..].parse::<u64>() else {
                return Response::text(404, "no such event\n");
            };
            match proof(src.audit(), i) {
                Ok(v) => Response::new(
                    200,
                    "application/json",
                    serde_json::to_vec_pretty(&v).unwrap_or_default(),
                ),
                Err(e) => Response::text(404, format!("{e}\n")),
            }
        }
        _ => match dashboard::page(src, path, &r.query) {
            Some(html) => Response::new(200, "text/html; charset=utf-8", html),
            None => Response::text(404, "not found\n"),
        },
    }
}
