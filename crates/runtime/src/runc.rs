//! The runtime seam: a trait the supervisor depends on, and its runc driver.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::RuntimeError;

/// A container's lifecycle status as runc reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
    Unknown(String),
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "creating" => Status::Creating,
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            o => Status::Unknown(o.to_string()),
        }
    }
}

/// One container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub id: String,
    /// Host pid of the container's init (0 once runc no longer knows it).
    pub pid: u32,
    pub status: Status,
    pub bundle: PathBuf,
}

/// What the supervisor needs from a container runtime. Implemented by
/// [`Runc`]; tests of higher layers implement it with a fake.
pub trait Runtime: Send + Sync {
    /// Create and start container `id` from `bundle` (which holds
    /// `config.json`), detached, with `stdout`/`stderr` as the container's
    /// and stdin `/dev/null`. Returns the host pid of its init process.
    fn start(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<u32, RuntimeError>;
    /// [`Runtime::start`] with `prepare` run on the new container's init pid once its
    /// namespaces exist and before its process runs (e.g. to listen inside its network
    /// namespace, so the process finds the listeners from its first instruction). A
    /// `prepare` error deletes the container and is returned. This default starts first
    /// and prepares right after; [`Runc`] creates, prepares, then starts.
    fn start_prepared(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
        prepare: &mut dyn FnMut(u32) -> std::io::Result<()>,
    ) -> Result<u32, RuntimeError> {
        let pid = self.start(id, bundle, stdout, stderr)?;
        if let Err(source) = prepare(pid) {
            let _ = self.delete(id, true);
            return Err(RuntimeError::Prepare {
                id: id.to_string(),
                source,
            });
        }
        Ok(pid)
    }
    /// Send `signal` to the container's init process.
    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError>;
    /// Remove the container (`force`: kill it first if running). Deleting
    /// an unknown container succeeds.
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// `None` if there is no such container.
    fn state(&self, id: &str) -> Result<Option<State>, RuntimeError>;
    fn list(&self) -> Result<Vec<State>, RuntimeError>;
}

/// The runc CLI. `root` is runc's state directory (`runc --root`), e.g.
/// `<kiln state>/runc`, private to kiln.
#[derive(Clone, Debug)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

#[derive(Deserialize)]
struct RawState {
    id: String,
    #[serde(default)]
    pid: u32,
    status: String,
    #[serde(default)]
    bundle: PathBuf,
}

impl From<RawState> for State {
    fn from(r: RawState) -> State {
        State {
            id: r.id,
            pid: r.pid,
            status: Status::parse(&r.status),
            bundle: r.bundle,
        }
    }
}

const PID_FILE: &str = "runc.pid";
const LOG_FILE: &str = "runc.log";

impl Runc {
    /// `runc` from `PATH`, state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Runc {
        Runc {
            binary: PathBuf::from("runc"),
            root: root.into(),
        }
    }

    /// Whether the binary runs (`runc --version`).
    pub fn available(&self) -> bool {
        Command::new(&self.binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root).stdin(Stdio::null());
        c
    }

    /// Run a short runc command, returning stdout; stderr becomes the error.
    fn run(&self, op: &'static str, id: &str, args: &[&str]) -> Result<Vec<u8>, RuntimeError> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .map_err(|e| RuntimeError::io(&self.binary, e))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if msg.contains("does not exist") || msg.contains("not exist") {
            return Err(RuntimeError::NoSuchInstance(id.to_string()));
        }
        Err(RuntimeError::Runc {
            op,
            id: id.to_string(),
            message: if msg.is_empty() {
                format!("exited with {}", out.status)
            } else {
                msg
            },
        })
    }
}

/// The last error message in a runc JSON log.
fn log_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

impl Runc {
    /// `runc run --detach` (`op` "run") or `runc create` ("create") of `id`, with
    /// pass-through stdio; the init pid.
    fn begin(
        &self,
        op: &'static str,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<u32, RuntimeError> {
        let pid_file = bundle.join(PID_FILE);
        let log = bundle.join(LOG_FILE);
        let _ = fs::remove_file(&pid_file);
        let _ = fs::remove_file(&log);
        // Detached pass-through: runc's stdio becomes the container's, so
        // runc's own diagnostics go to the JSON log instead.
        let status = self
            .cmd()
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(if op == "run" {
                &["run", "--detach", "--bundle"][..]
            } else {
                &["create", "--bundle"][..]
            })
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .status()
            .map_err(|e| RuntimeError::io(&self.binary, e))?;
        if !status.success() {
            // runc normally cleans up after a failed run; make sure.
            let _ = self.delete(id, true);
            return Err(RuntimeError::Runc {
                op,
                id: id.to_string(),
                message: log_error(&log).unwrap_or_else(|| format!("exited with {status}")),
            });
        }
        let text = fs::read_to_string(&pid_file).map_err(|e| RuntimeError::io(&pid_file, e))?;
        text.trim().parse::<u32>().map_err(|_| RuntimeError::Runc {
            op,
            id: id.to_string(),
            message: format!("bad pid file {}: {text:?}", pid_file.display()),
        })
    }
}

impl Runtime for Runc {
    fn start(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<u32, RuntimeError> {
        self.begin("run", id, bundle, stdout, stderr)
    }

    fn start_prepared(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
        prepare: &mut dyn FnMut(u32) -> std::io::Result<()>,
    ) -> Result<u32, RuntimeError> {
        let pid = self.begin("create", id, bundle, stdout, stderr)?;
        if let Err(source) = prepare(pid) {
            let _ = self.delete(id, true);
            return Err(RuntimeError::Prepare {
                id: id.to_string(),
                source,
            });
        }
        if let Err(e) = self.run("start", id, &["start", id]) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        Ok(pid)
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        self.run("kill", id, &["kill", id, &signal.to_string()])
            .map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.run("delete", id, &args) {
            Ok(_) | Err(RuntimeError::NoSuchInstance(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn state(&self, id: &str) -> Result<Option<State>, RuntimeError> {
        match self.run("state", id, &["state", id]) {
            Ok(out) => {
                let raw: RawState =
                    serde_json::from_slice(&out).map_err(|e| RuntimeError::Runc {
                        op: "state",
                        id: id.to_string(),
                        message: format!("unparsable output: {e}"),
                    })?;
                Ok(Some(raw.into()))
            }
            Err(RuntimeError::NoSuchInstance(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> Result<Vec<State>, RuntimeError> {
        let out = self.run("list", "", &["list", "--format", "json"])?;
        let raw: Option<Vec<RawState>> =
            serde_json::from_slice(&out).map_err(|e| RuntimeError::Runc {
                op: "list",
                id: String::new(),
                message: format!("unparsable output: {e}"),
            })?;
        Ok(raw
            .unwrap_or_default()
            .into_iter()
            .map(State::from)
            .collect())
    }
}
