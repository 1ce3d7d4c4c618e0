//! The daemon's API: one JSON request per line over a unix socket that only
//! root (or the daemon's own user) may use. There is deliberately no
//! operation that runs a command in, or attaches to, a serving instance.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request to `kiln serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Apply the deployment file at `path` (absolute).
    Apply {
        path: PathBuf,
        reason: Option<String>,
    },
    Rollback {
        service: String,
        reason: Option<String>,
    },
    Destroy {
        service: String,
        reason: Option<String>,
    },
    /// Buffered output of the service's instances; `follow` keeps streaming.
    Logs {
        service: String,
        follow: bool,
    },
    /// Prepare an isolated debug instance; the client runs it.
    DebugStart {
        service: String,
        ttl_ms: u64,
        terminal: bool,
    },
    DebugStop {
        id: String,
    },
    /// SIGKILL a random instance of `service` every `every_ms` for `for_ms`.
    Chaos {
        service: String,
        every_ms: u64,
        for_ms: u64,
    },
    /// Compare instances (of a service, one instance, or all) with their
    /// image now; drifted ones are replaced.
    DriftCheck {
        target: Option<String>,
    },
    /// Read-only: the image digests the fleet references (every release of
    /// every service, and the desired deployment), for `kiln gc`.
    Images,
}

/// A response line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub result: Value,
    /// More lines follow (log streaming).
    #[serde(default)]
    pub more: bool,
}

impl Response {
    pub fn ok(result: Value) -> Response {
        Response {
            ok: true,
            error: None,
            result,
            more: false,
        }
    }

    pub fn err(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(e.to_string()),
            result: Value::Null,
            more: false,
        }
    }
}

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot reach kiln serve at {path}: {source} (is `kiln serve` running with this state directory?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to kiln serve: {0}")]
    Io(#[from] std::io::Error),
    #[error("kiln serve sent an unreadable reply: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("kiln serve closed the connection without a reply")]
    Closed,
    #[error("{0}")]
    Refused(String),
}

/// The socket path for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet/kiln.sock")
}

/// Send one request; call `each` for every response line until the last.
pub fn call(
    state_dir: &Path,
    req: &Request,
    mut each: impl FnMut(&Response) -> bool,
) -> Result<Response, ApiError> {
    let path = socket_path(state_dir);
    let mut s = UnixStream::connect(&path).map_err(|source| ApiError::Connect {
        path: path.clone(),
        source,
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut r = BufReader::new(s);
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf)? == 0 {
            return Err(ApiError::Closed);
        }
        let resp: Response = serde_json::from_str(&buf)?;
        if !resp.ok {
            return Err(ApiError::Refused(
                resp.error.unwrap_or_else(|| "refused".into()),
            ));
        }
        if !resp.more || !each(&resp) {
            return Ok(resp);
        }
    }
}

/// One request, one reply.
pub fn request(state_dir: &Path, req: &Request) -> Result<Value, ApiError> {
    Ok(call(state_dir, req, |_| true)?.result)
}
