//! `kiln history SERVICE`: the releases of a service — image, strategy (and
//! why), canary steps with their analysis, outcome, who, why, durations —
//! from the audit log and the fleet state.
//!
//! While `kiln serve` runs it holds the state database, so the daemon
//! assembles the history (from its live state and its audit log); when it
//! does not run, kiln reads the audit log and opens the database read-only
//! (nothing is created or written; a daemon starting at that very moment
//! waits for nothing but may find the database busy for those milliseconds).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kiln_fleet::api::{self, ApiError, Request};
use kiln_fleet::history::{self, Release};
use kiln_fleet::state::Db;
use serde_json::{Value, json};

use super::{Ctx, print_json};

#[derive(clap::Args)]
pub struct HistoryArgs {
    service: String,
}

pub fn run(ctx: &Ctx, a: HistoryArgs) -> Result<()> {
    let releases = match api::request(
        &ctx.state_dir,
        &Request::History {
            service: a.service.clone(),
        },
    ) {
        Ok(v) => serde_json::from_value::<Vec<Release>>(v["releases"].clone())
            .context("kiln serve sent an unreadable history")?,
        Err(ApiError::Connect { .. }) => local(ctx, &a.service)?,
        Err(e) => return Err(e.into()),
    };
    if ctx.json {
        return print_json(&json!({"service": a.service, "releases": releases}));
    }
    print!("{}", render(&releases));
    Ok(())
}

/// The history without a daemon: the audit log and the database, read-only.
fn local(ctx: &Ctx, service: &str) -> Result<Vec<Release>> {
    let db = ctx.state_dir.join("fleet/fleet.redb");
    let st = Db::read_only(&db)?;
    let svc = st.as_ref().and_then(|s| s.services.get(service));
    let log = ctx.audit_log()?;
    let h = history::read(log, service, svc)?;
    if h.is_empty() && svc.is_none() {
        bail!("service {service:?} has no releases");
    }
    Ok(h)
}

fn ms(d: u64) -> String {
    kiln_fleet::format_duration(Duration::from_millis(d))
}

/// `requests 120, errors 80 (0.667 > max 0.01), verdict fail`.
fn analysis(a: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(n) = a["requests"].as_u64() {
        parts.push(format!("requests {n}"));
    }
    if let Some(n) = a["errors"].as_u64() {
        let rate = a["error_rate"].as_f64().map(|r| format!(" (rate {r:.3}"));
        let max = a["max_error_rate"].as_f64().map(|m| format!(", max {m}"));
        match (rate, max) {
            (Some(r), Some(m)) => parts.push(format!("errors {n}{r}{m})")),
            (Some(r), None) => parts.push(format!("errors {n}{r})")),
            _ => parts.push(format!("errors {n}")),
        }
    }
    if let Some(n) = a["min_requests"].as_u64() {
        parts.push(format!("min {n}"));
    }
    if let Some(w) = a["window_ms"].as_u64() {
        parts.push(format!("window {}", ms(w)));
    }
    if let Some(v) = a["verdict"].as_str() {
        parts.push(format!("verdict {v}"));
    }
    if parts.is_empty() {
        a.to_string()
    } else {
        parts.join(", ")
    }
}

/// One block per release, newest first.
pub fn render(releases: &[Release]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if releases.is_empty() {
        out.push_str("no releases\n");
    }
    for r in releases.iter().rev() {
        let _ = writeln!(
            out,
            "{}  {}  {}",
            r.id,
            r.outcome,
            r.image.as_deref().or(r.digest.as_deref()).unwrap_or("?")
        );
        if let Some(d) = &r.digest {
            let _ = writeln!(out, "  digest    {d}");
        }
        let strategy = r.strategy.as_deref().unwrap_or("?");
        match &r.from {
            Some(f) => {
                let _ = writeln!(out, "  strategy  {strategy} from {f}");
            }
            None => {
                let _ = writeln!(out, "  strategy  {strategy}");
            }
        }
        if let Some(g) = &r.guardrail {
            let _ = writeln!(out, "  guardrail {g}");
        }
        let _ = writeln!(
            out,
            "  who       {}{}",
            r.who.as_deref().unwrap_or("?"),
            r.reason
                .as_deref()
                .map(|w| format!("  reason: {w}"))
                .unwrap_or_default()
        );
        let started = r.started.as_deref().unwrap_or("?");
        match (&r.ended, r.duration_ms) {
            (Some(e), Some(d)) => {
                let _ = writeln!(out, "  time      {started} → {e} ({})", ms(d));
            }
            _ => {
                let _ = writeln!(out, "  time      {started}");
            }
        }
        for s in &r.steps {
            let what = match (s.kind.as_str(), s.step, s.percent) {
                ("step", Some(n), Some(p)) => format!("step {n}: {p}%"),
                (k, _, _) => k.to_string(),
            };
            let after = s
                .after_ms
                .map(|a| format!(" +{}", ms(a)))
                .unwrap_or_default();
            let an = s
                .analysis
                .as_ref()
                .map(|a| format!("  [{}]", analysis(a)))
                .unwrap_or_default();
            let why = s
                .reason
                .as_deref()
                .map(|w| format!("  {w}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {what:<14}{after}{an}{why}");
        }
        if let Some(why) = &r.outcome_reason {
            let _ = writeln!(out, "  {}: {why}", r.outcome);
        }
        if let Some(a) = &r.analysis {
            let _ = writeln!(out, "  analysis  {}", analysis(a));
        }
    }
    out
}
