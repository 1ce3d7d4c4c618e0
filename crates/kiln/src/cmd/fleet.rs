//! The fleet: `kiln serve` (the daemon) and the commands that talk to it —
//! `apply`, `status`, `rollback`, `logs`, `debug`, `chaos`, `destroy`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln_fleet::api::{self, Request, service};
use kiln_fleet::daemon::{Daemon, Options};
use kiln_fleet::{Deployment, parse_duration};
use serde_json::{Value, json};

use super::{Ctx, print_json};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory mounted read-only at /run/kiln-debug in debug instances
    /// (default: a copy of the host's static /bin/busybox).
    #[arg(long)]
    debug_tools: Option<PathBuf>,
    /// Serve Prometheus metrics (/metrics) and a read-only dashboard (/) on
    /// this address, e.g. 127.0.0.1:9464. Anything but loopback requires
    /// --metrics-token-file.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// A file (mode 0600) whose first line is the bearer token every
    /// metrics and dashboard request must send (`Authorization: Bearer …`).
    #[arg(long, value_name = "FILE", requires = "metrics")]
    metrics_token_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The desired state (deploy.toml).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Return after the daemon accepted the plan, without waiting for it to converge.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for convergence.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only this service (and the exit code for it alone).
    service: Option<String>,
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    service: String,
    /// Return without waiting for the change to converge.
    #[arg(long)]
    no_wait: bool,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    service: String,
    /// Keep streaming new output.
    #[arg(short, long)]
    follow: bool,
    /// Only output received since then: a duration back from now (`10m`, `2h`)
    /// or an RFC 3339 UTC time (`2026-01-02T03:04:05Z`).
    #[arg(long, value_parser = parse_since)]
    since: Option<Since>,
    /// Only the last N lines kept (then new ones with -f).
    #[arg(long)]
    tail: Option<u64>,
    /// Prefix each line with the time kiln received it (RFC 3339, ms, UTC).
    #[arg(long)]
    timestamps: bool,
    /// Only this instance's output (a destroyed one's too, while kept).
    #[arg(long)]
    instance: Option<String>,
}

/// `--since`: a duration back from now, or a point in time.
#[derive(Clone, Debug, PartialEq)]
pub enum Since {
    Ago(Duration),
    /// ms since the epoch.
    At(u64),
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Some(secs) = kiln_oci::time::parse_utc(s) {
        let ms = s
            .rsplit_once('.')
            .and_then(|(_, f)| f.strip_suffix('Z'))
            .filter(|f| !f.is_empty() && f.len() <= 3)
            .and_then(|f| format!("{f:0<3}").parse::<u64>().ok())
            .unwrap_or(0);
        return Ok(Since::At(secs * 1000 + ms));
    }
    parse_duration(s)
        .map(Since::Ago)
        .map_err(|e| format!("{e} (or give an RFC 3339 UTC time such as 2026-01-02T03:04:05Z)"))
}

impl Since {
    /// ms since the epoch, `now_ms` being now.
    fn epoch_ms(&self, now_ms: u64) -> u64 {
        match self {
            Since::Ago(d) => now_ms.saturating_sub(d.as_millis() as u64),
            Since::At(ms) => *ms,
        }
    }
}

#[derive(clap::Args)]
pub struct DebugArgs {
    service: String,
    /// The debug instance is destroyed after this long at the latest.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    ttl: Duration,
}

#[derive(clap::Args)]
pub struct ChaosArgs {
    service: String,
    /// SIGKILL a random serving instance this often.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    kill_every: Duration,
    /// For this long.
    #[arg(long = "for", default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Pause between probe requests through the front proxy.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    probe_every: Duration,
}

// ---- kiln serve ---------------------------------------------------------

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("kiln serve must run as root (it runs containers with runc)");
    }
    let runc = kiln_runtime::Runc::new(ctx.state_dir.join("fleet/runc"));
    if !runc.available() {
        bail!("runc is not installed (apt-get install runc)");
    }
    let metrics_token = match &a.metrics_token_file {
        Some(f) => Some(kiln_fleet::observe::read_token(f)?),
        None => None,
    };
    if let Some(addr) = a.metrics {
        kiln_fleet::observe::check_bind(addr, metrics_token.as_deref())?;
    }
    let debug_tools = match a.debug_tools {
        Some(d) => Some(d),
        None => default_debug_tools(&ctx.state_dir)?,
    };
    // SAFETY: installing async-signal-safe handlers (an atomic store), and
    // ignoring SIGPIPE again: the proxy writes to sockets peers may close.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let daemon = Daemon::new(
        Options {
            state_dir: ctx.state_dir.clone(),
            debug_tools,
            metrics: a.metrics,
            metrics_token,
        },
        Arc::new(runc),
    )?;
    eprintln!(
        "kiln serve: API on {} (root only); instances keep running if kiln serve stops",
        api::socket_path(&ctx.state_dir).display()
    );
    daemon.run(&STOP)?;
    eprintln!("kiln serve: stopped");
    Ok(())
}

/// `<state>/fleet/debug-tools/busybox`, copied from the host's static busybox.
fn default_debug_tools(state_dir: &Path) -> Result<Option<PathBuf>> {
    let src = Path::new("/bin/busybox");
    if !src.exists() {
        return Ok(None);
    }
    let dir = state_dir.join("fleet/debug-tools");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dst = dir.join("busybox");
    if !dst.exists() {
        let tmp = dir.join(".busybox.tmp");
        std::fs::copy(src, &tmp).with_context(|| format!("copying {}", src.display()))?;
        std::fs::rename(&tmp, &dst)?;
    }
    Ok(Some(dir))
}

// ---- clients --------------------------------------------------------------

fn status_of(ctx: &Ctx) -> Result<Value> {
    Ok(api::request(&ctx.state_dir, &Request::Status)?)
}

/// Wait until every named service converged; fail on an aborted or refused
/// release. Prints each new status message.
fn wait_converged(ctx: &Ctx, names: &[String], timeout: Duration) -> Result<Value> {
    Ok(api::wait_converged(
        &ctx.state_dir,
        names,
        timeout,
        |n, msg| {
            if !ctx.json {
                eprintln!("{n}: {msg}");
            }
        },
    )?)
}

pub fn apply(ctx: &Ctx, a: ApplyArgs) -> Result<()> {
    // Parse here first: errors point at file:line:col before anything is sent.
    let d = Deployment::load(&a.file)?;
    let path = std::fs::canonicalize(&a.file)
        .with_context(|| format!("resolving {}", a.file.display()))?;
    let res = api::request(
        &ctx.state_dir,
        &Request::Apply {
            path,
            reason: ctx.reason.clone(),
        },
    )?;
    if !ctx.json {
        print!("{}", res["text"].as_str().unwrap_or(""));
    }
    if a.no_wait {
        return if ctx.json { print_json(&res) } else { Ok(()) };
    }
    let names: Vec<String> = d.services.keys().cloned().collect();
    let st = wait_converged(ctx, &names, a.timeout)?;
    if ctx.json {
        return print_json(&json!({"plan": res["plan"], "status": st}));
    }
    for n in &names {
        if let Some(s) = service(&st, n) {
            println!(
                "{n}: {} healthy on {}, release {}",
                s["healthy"],
                s["listen"].as_str().unwrap_or("?"),
                s["active"]["id"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// The exit code of `kiln status` over the services shown (their `state`).
fn status_exit(services: &[Value]) -> i32 {
    kiln_fleet::health::exit_code(services.iter().map(|s| {
        serde_json::from_value(s["state"].clone())
            .unwrap_or(kiln_fleet::health::ServiceHealth::Degraded)
    }))
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<()> {
    let mut st = status_of(ctx)?;
    let mut services = st["services"].as_array().cloned().unwrap_or_default();
    if let Some(name) = &a.service {
        services.retain(|s| s["name"] == name.as_str());
        if services.is_empty() {
            bail!("unknown service {name:?}");
        }
    }
    let code = status_exit(&services);
    if ctx.json {
        st["services"] = Value::Array(services);
        st["exit"] = json!(code);
        print_json(&st)?;
    } else {
        print_status(&services);
    }
    if code != 0 {
        std::io::stdout().flush()?;
        std::process::exit(code);
    }
    Ok(())
}

fn print_status(services: &[Value]) {
    if services.is_empty() {
        println!("no services");
        return;
    }
    for s in services {
        println!(
            "{}  listen {}  {}/{} healthy  release {} {}  {}",
            s["name"].as_str().unwrap_or("?"),
            s["listen"].as_str().unwrap_or("-"),
            s["healthy"],
            s["replicas"],
            s["active"]["id"].as_str().unwrap_or("-"),
            s["active"]["image"].as_str().unwrap_or(""),
            s["state"].as_str().unwrap_or("?")
        );
        let why: Vec<&str> = s["state_why"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !why.is_empty() {
            println!(
                "  {}: {}",
                s["state"].as_str().unwrap_or("?"),
                why.join("; ")
            );
        }
        let message = s["message"].as_str().filter(|m| !m.is_empty());
        if let Some(m) = message {
            println!("  {m}");
        }
        let missing: Vec<&str> = s["secrets_missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !missing.is_empty() && !message.is_some_and(|m| m.starts_with("waiting for secrets")) {
            println!(
                "  secrets not held since kiln serve restarted ({}): an instance that must be replaced waits for them; run kiln apply",
                missing.join(", ")
            );
        }
        for i in s["instances"].as_array().into_iter().flatten() {
            let age = i["age_ms"].as_u64().unwrap_or(0) / 1000;
            println!(
                "  {:<14} {:<6} pid {:<8} {:<9} {:>6}s {}",
                i["id"].as_str().unwrap_or("?"),
                i["release"].as_str().unwrap_or("?"),
                i["pid"],
                i["phase"].as_str().unwrap_or("?"),
                age,
                if i["in_rotation"] == true {
                    "serving"
                } else {
                    ""
                }
            );
        }
    }
}

pub fn rollback(ctx: &Ctx, a: super::rollout::RollbackArgs) -> Result<()> {
    let res = api::request(
        &ctx.state_dir,
        &Request::Rollback {
            service: a.service.clone(),
            reason: ctx.reason.clone(),
            now: a.now,
        },
    )?;
    if !ctx.json {
        println!(
            "rolling {} back from {} to {} ({})",
            a.service,
            res["from"].as_str().unwrap_or("?"),
            res["to"].as_str().unwrap_or("?"),
            res["image"].as_str().unwrap_or("?")
        );
    }
    if !a.no_wait {
        wait_converged(
            ctx,
            std::slice::from_ref(&a.service),
            Duration::from_secs(180),
        )?;
    }
    if ctx.json {
        print_json(&res)?;
    }
    Ok(())
}

pub fn destroy(ctx: &Ctx, a: ServiceArgs) -> Result<()> {
    api::request(
        &ctx.state_dir,
        &Request::Destroy {
            service: a.service.clone(),
            reason: ctx.reason.clone(),
        },
    )?;
    if !a.no_wait {
        let end = Instant::now() + Duration::from_secs(60);
        while service(&status_of(ctx)?, &a.service).is_some() {
            if Instant::now() > end {
                bail!("{} still has instances after 60 s", a.service);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if ctx.json {
        return print_json(&json!({"destroyed": a.service}));
    }
    println!("destroyed {}", a.service);
    Ok(())
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut print = |r: &Value| {
        for l in r["lines"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{}", l.as_str().unwrap_or(""));
        }
        let _ = out.flush();
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = api::call(
        &ctx.state_dir,
        &Request::Logs {
            service: a.service,
            follow: a.follow,
            since_ms: a.since.map(|s| s.epoch_ms(now_ms)),
            tail: a.tail,
            instance: a.instance,
            timestamps: a.timestamps,
        },
        |r| {
            print(&r.result);
            true
        },
    )?;
    print(&last.result);
    Ok(())
}

pub fn debug(ctx: &Ctx, a: DebugArgs) -> Result<()> {
    // SAFETY: isatty has no preconditions.
    let terminal = unsafe { libc::isatty(0) } == 1;
    let res = api::request(
        &ctx.state_dir,
        &Request::DebugStart {
            service: a.service.clone(),
            ttl_ms: a.ttl.as_millis() as u64,
            terminal,
        },
    )?;
    let id = res["id"]
        .as_str()
        .context("daemon reply without id")?
        .to_string();
    let bundle = res["bundle"]
        .as_str()
        .context("daemon reply without bundle")?;
    let root = res["runc_root"]
        .as_str()
        .context("daemon reply without runc root")?;
    eprintln!(
        "debug instance {id} of {} (out of rotation, destroyed on exit or after {}); shell tools in /run/kiln-debug",
        res["image"].as_str().unwrap_or("?"),
        kiln_fleet::format_duration(a.ttl)
    );
    let status = std::process::Command::new("runc")
        .args(["--root", root, "run", "--bundle", bundle, &id])
        .status()
        .context("running runc")?;
    let _ = api::request(&ctx.state_dir, &Request::DebugStop { id: id.clone() });
    if ctx.json {
        return print_json(&json!({"id": id, "exit": status.code()}));
    }
    eprintln!("debug instance {id} destroyed");
    Ok(())
}

/// One probe: a TCP connection through the front proxy and an HTTP GET.
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got >= 12 && buf.starts_with(b"HTTP/1.") && (buf[9] == b'2' || buf[9] == b'3')
}

pub fn chaos(ctx: &Ctx, a: ChaosArgs) -> Result<()> {
    let st = status_of(ctx)?;
    let svc =
        service(&st, &a.service).with_context(|| format!("unknown service {:?}", a.service))?;
    let addr: SocketAddr = svc["listen"]
        .as_str()
        .context("service has no listen address")?
        .parse()?;
    api::request(
        &ctx.state_dir,
        &Request::Chaos {
            service: a.service.clone(),
            every_ms: a.kill_every.as_millis() as u64,
            for_ms: a.duration.as_millis() as u64,
        },
    )?;
    let end = Instant::now() + a.duration;
    let (mut ok, mut failed) = (0u64, 0u64);
    while Instant::now() < end {
        if probe(addr) {
            ok += 1;
        } else {
            failed += 1;
        }
        std::thread::sleep(a.probe_every);
    }
    let total = ok + failed;
    let availability = if total == 0 {
        0.0
    } else {
        ok as f64 * 100.0 / total as f64
    };
    if ctx.json {
        return print_json(&json!({
            "service": a.service,
            "requests": total,
            "failed": failed,
            "availability_percent": availability,
        }));
    }
    println!(
        "{}: {total} requests through {addr} while killing an instance every {}: {failed} failed, availability {availability:.3}%",
        a.service,
        kiln_fleet::format_duration(a.kill_every)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_back_or_a_utc_time() {
        assert_eq!(
            parse_since("10m").unwrap(),
            Since::Ago(Duration::from_secs(600))
        );
        assert_eq!(parse_since("10m").unwrap().epoch_ms(1_000_000), 400_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z").unwrap(),
            Since::At(1_700_000_000_000)
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20.5Z").unwrap(),
            Since::At(1_700_000_000_500)
        );
        assert_eq!(parse_since("10m").unwrap().epoch_ms(5), 0);
        assert!(parse_since("yesterday").is_err());
    }
}
