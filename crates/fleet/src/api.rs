//! The daemon's API: one JSON request per line over a unix socket that only
//! root (or the daemon's own user) may use. There is deliberately no
//! operation that runs a command in, or attaches to, a serving instance.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        /// All traffic at once to the previous release: blue-green, no canary steps and no
        /// analysis window.
        #[serde(default)]
        now: bool,
    },
    /// `kiln rollout pause|resume|abort SERVICE`: manual control of a rollout in progress.
    Rollout {
        service: String,
        action: RolloutAction,
        reason: Option<String>,
    },
    Destroy {
        service: String,
        reason: Option<String>,
    },
    /// Buffered output of the service's instances (destroyed ones' included,
    /// within the daemon's retention); `follow` keeps streaming. The filters
    /// apply on the daemon side.
    Logs {
        service: String,
        follow: bool,
        /// Only lines received at or after this time (ms since the epoch).
        #[serde(default)]
        since_ms: Option<u64>,
        /// Only the last N kept lines (then follow, if asked).
        #[serde(default)]
        tail: Option<u64>,
        /// Only this instance's lines.
        #[serde(default)]
        instance: Option<String>,
        /// Prefix each line with the time kiln received it (RFC 3339, ms).
        #[serde(default)]
        timestamps: bool,
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
    /// Read-only: the release history of `service` (see [`crate::history`]).
    History {
        service: String,
    },
    /// Read-only: the image digests the fleet references (every release of
    /// every service, and the desired deployment), for `kiln gc`.
    Images,
}

/// What `kiln rollout` asks of a rollout in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    /// Stand still at the current step (weights unchanged) until resumed or aborted.
    Pause,
    /// Continue: after a pause for too little traffic the step counts as passed; after a
    /// manual pause the step is judged again from now.
    Resume,
    /// Abort: all weight back to the stable set, the new instances go.
    Abort,
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

/// Why waiting for services to converge failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A release of `service` was aborted or refused.
    #[error("service {service}: {message}")]
    Failed { service: String, message: String },
    #[error("not converged after {} s: {last}", timeout.as_secs())]
    Timeout { timeout: Duration, last: String },
}

/// The status entry of service `name` in a `Status` reply.
pub fn service<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// Poll the daemon until every service in `names` converged; fail on an aborted or
/// refused release, or after `timeout`. `on_message(service, message)` sees each new
/// status message. Returns the last status.
pub fn wait_converged(
    state_dir: &Path,
    names: &[String],
    timeout: Duration,
    mut on_message: impl FnMut(&str, &str),
) -> Result<Value, WaitError> {
    let end = Instant::now() + timeout;
    let mut last: Vec<String> = vec![String::new(); names.len()];
    // Give the reconciler a tick to pick the change up.
    std::thread::sleep(Duration::from_millis(150));
    loop {
        let st = request(state_dir, &Request::Status)?;
        let mut done = true;
        for (i, n) in names.iter().enumerate() {
            let Some(s) = service(&st, n) else {
                done = false;
                continue;
            };
            let msg = s["message"].as_str().unwrap_or("").to_string();
            if msg != last[i] && !msg.is_empty() {
                on_message(n, &msg);
            }
            last[i] = msg.clone();
            if s["failed"] == true && s["rollout"].is_null() {
                return Err(WaitError::Failed {
                    service: n.clone(),
                    message: msg,
                });
            }
            if s["converged"] != true {
                done = false;
            }
        }
        if done {
            return Ok(st);
        }
        if Instant::now() > end {
            return Err(WaitError::Timeout {
                timeout,
                last: last.join("; "),
            });
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}
