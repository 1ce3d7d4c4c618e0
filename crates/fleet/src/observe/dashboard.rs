//! The dashboard's server-rendered pages: fleet overview (`/`), release
//! timeline (`/releases`), drift (`/drift`), recent audit events (`/audit`)
//! and evidence status (`/evidence`). No scripts; every string from the
//! state or the log is escaped with [`esc`]; nothing changes state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use kiln_audit::{AuditLog, LoggedEvent};
use serde_json::Value;

use super::{Source, svg};

/// Events read back from the log's end for the pages.
const TAIL: u64 = 5000;
/// Audit events listed on `/audit`.
const AUDIT_ROWS: usize = 200;

/// Escape for HTML text and attribute values: the evidence bundle's escaping.
pub use kiln_evidence::html_escape as esc;

/// A JSON value as short text (strings without quotes), escaped.
fn ev(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => esc(s),
        v => esc(&v.to_string()),
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#111}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:left;vertical-align:top}th{background:#f3f4f6}nav a{margin-right:1em}\
.bad{color:#b91c1c;font-weight:600}.ok{color:#15803d}pre{background:#f8f8f8;padding:6px;\
max-width:60em;overflow:auto;white-space:pre-wrap}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>kiln · {}</title><style>{STYLE}</style></head><body>\
         <nav><a href=\"/\">Fleet</a><a href=\"/releases\">Releases</a><a href=\"/drift\">Drift</a>\
         <a href=\"/audit\">Audit log</a><a href=\"/evidence\">Evidence</a><a href=\"/metrics\">Metrics</a></nav>\
         <h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    )
}

/// The page at `path`, if there is one.
pub fn page(src: &dyn Source, path: &str, _query: &str) -> Option<String> {
    let (title, body) = match path {
        "/" => ("Fleet", overview(src)),
        "/releases" => ("Releases", releases(src)),
        "/drift" => ("Drift", drift(src)),
        "/audit" => ("Audit log", audit(src)),
        "/evidence" => ("Evidence", evidence(src)),
        _ => return None,
    };
    Some(layout(title, &body))
}

/// The last [`TAIL`] events of the log matching `keep`.
fn tail(src: &dyn Source, keep: impl Fn(&LoggedEvent) -> bool) -> Vec<LoggedEvent> {
    let size = src.audit().log().size();
    let mut out = Vec::new();
    let _ = src.audit().events(size.saturating_sub(TAIL), |le| {
        if keep(&le) {
            out.push(le);
        }
        true
    });
    out
}

fn proof_link(i: u64) -> String {
    format!("<a href=\"/proof/{i}\">#{i}</a>")
}

fn service_of(le: &LoggedEvent) -> String {
    le.event
        .resources
        .iter()
        .find(|r| r.kind == "service")
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

fn release_of(le: &LoggedEvent) -> String {
    le.event
        .resources
        .iter()
        .find(|r| r.kind == "release")
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn overview(src: &dyn Source) -> String {
    let status = src.status();
    let m = src.metrics();
    m.fold(&status);
    let mut b = String::new();
    let services = status["services"].as_array().cloned().unwrap_or_default();
    b.push_str(
        "<h2>Services</h2><table><tr><th>Service</th><th>Listen</th><th>Healthy / desired</th>\
         <th>Active release</th><th>Rollout</th><th>State</th><th>Limits</th><th>Message</th></tr>",
    );
    for s in &services {
        let healthy = s["healthy"].as_u64().unwrap_or(0);
        let want = s["replicas"].as_u64().unwrap_or(0);
        let state = if s["failed"].as_bool() == Some(true) {
            "<span class=\"bad\">failed</span>"
        } else if healthy < want {
            "<span class=\"bad\">degraded</span>"
        } else if s["converged"].as_bool() == Some(true) {
            "<span class=\"ok\">converged</span>"
        } else {
            "converging"
        };
        let rollout = if s["rollout"].is_null() {
            String::new()
        } else {
            format!(
                "{} step {} {}",
                ev(&s["rollout"]["release"]),
                ev(&s["rollout"]["step"]),
                ev(&s["rollout"]["note"])
            )
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{healthy} / {want}</td><td>{} <small>{}</small></td>\
             <td>{rollout}</td><td>{state}</td><td>{}</td><td>{}</td></tr>",
            ev(&s["name"]),
            ev(&s["listen"]),
            ev(&s["active"]["id"]),
            ev(&s["active"]["image"]),
            ev(&s["limits"]),
            ev(&s["message"]),
        );
    }
    b.push_str(
        "</table><h2>Instances</h2><table><tr><th>Service</th><th>Instance</th><th>Release</th>\
        <th>Phase</th><th>In rotation</th><th>Age</th><th>Egress (to: opened/refused)</th></tr>",
    );
    for s in &services {
        for i in s["instances"].as_array().into_iter().flatten() {
            let egress: Vec<String> = i["egress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{}: {}/{}",
                        ev(&r["to"]),
                        ev(&r["opened"]),
                        ev(&r["refused"])
                    )
                })
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ev(&s["name"]),
                ev(&i["id"]),
                ev(&i["release"]),
                ev(&i["phase"]),
                ev(&i["in_rotation"]),
                age(i["age_ms"].as_u64().unwrap_or(0)),
                egress.join("<br>")
            );
        }
    }
    b.push_str(
        "</table><h2>Traffic per release</h2><table><tr><th>Service</th><th>Release</th>\
        <th>Connections</th><th>Errors (failed dials)</th></tr>",
    );
    for ((svc, rel), t) in m.traffic() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&svc),
            esc(&rel),
            t[0],
            t[1]
        );
    }
    b.push_str("</table>");
    b.push_str(&rate_chart(m));
    b.push_str(&replacement_chart(src));
    b
}

/// Connections and errors per second per release, from the samples.
fn rate_chart(m: &super::Metrics) -> String {
    let samples = m.samples();
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for w in samples.windows(2) {
        let t = |s: &super::metrics::Sample| {
            s.at.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let dt = (t(&w[1]) - t(&w[0])).max(0.001);
        for (k, v) in &w[1].totals {
            let prev = w[0].totals.get(k).copied().unwrap_or([0, 0]);
            let name = format!("{}/{}", k.0, k.1);
            let rate = v[0].saturating_sub(prev[0]) as f64 / dt;
            let err = v[1].saturating_sub(prev[1]) as f64 / dt;
            series
                .entry(format!("{name} conn/s"))
                .or_default()
                .push((t(&w[1]), rate));
            series
                .entry(format!("{name} err/s"))
                .or_default()
                .push((t(&w[1]), err));
        }
    }
    if series.is_empty() {
        return "<p>No traffic samples yet.</p>".into();
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = series.into_iter().take(6).collect();
    format!(
        "<h2>Connection and error rate per release</h2>{}",
        svg::lines("connections and errors per second per release", &series)
    )
}

/// Replacements per 5-minute bucket over the last hour of the log's tail.
fn replacement_chart(src: &dyn Source) -> String {
    let events = tail(src, |le| le.event.action == "instance.replace");
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut buckets = [0u64; 12];
    for e in &events {
        if let Some(t) = e.event.unix_time() {
            let ago = now.saturating_sub(t);
            if ago < 3600 {
                let i = 11 - (ago / 300) as usize;
                buckets[i] += 1;
            }
        }
    }
    let labels: Vec<(String, u64)> = buckets
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("-{} min", (12 - i) * 5), *n))
        .collect();
    format!(
        "<h2>Replacements over the last hour</h2>{}",
        svg::columns("instance replacements per 5 minutes", &labels)
    )
}

fn analysis(v: &Value) -> String {
    let Some(a) = v.as_object() else {
        return String::new();
    };
    a.iter()
        .map(|(k, v)| format!("{}={}", esc(k), ev(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn releases(src: &dyn Source) -> String {
    let events = tail(src, |le| le.event.action.starts_with("release."));
    let mut by: BTreeMap<(String, String), Vec<&LoggedEvent>> = BTreeMap::new();
    for e in &events {
        by.entry((service_of(e), release_of(e)))
            .or_default()
            .push(e);
    }
    let mut b = String::new();
    if by.is_empty() {
        b.push_str("<p>No release events in the log.</p>");
    }
    let traffic = src.metrics().traffic();
    for ((svc, rel), evs) in by.iter().rev() {
        let outcome = evs
            .iter()
            .rev()
            .find_map(|e| match e.event.action.as_str() {
                "release.abort" => Some("<span class=\"bad\">aborted</span>"),
                "release.rollback" => Some("<span class=\"bad\">rolled back</span>"),
                "release.refused" => Some("<span class=\"bad\">refused</span>"),
                "release.switch" => Some("<span class=\"ok\">switched</span>"),
                _ => None,
            })
            .unwrap_or("in progress");
        let t = traffic.get(&(svc.clone(), rel.clone()));
        let _ = write!(
            b,
            "<h2 id=\"{}\">{} {} — {outcome}</h2>",
            esc(rel),
            esc(svc),
            esc(rel)
        );
        if let Some(t) = t {
            let _ = write!(b, "<p>connections {} · errors {}</p>", t[0], t[1]);
        }
        b.push_str(
            "<table><tr><th>Event</th><th>Time</th><th>Action</th><th>Step</th>\
            <th>Reason</th><th>Analysis</th><th>Details</th></tr>",
        );
        for e in evs {
            let d = &e.event.details;
            let step = match (d.get("step"), d.get("percent")) {
                (Some(s), Some(p)) => format!("{} ({}%)", ev(s), ev(p)),
                _ => String::new(),
            };
            let rest: Vec<String> = d
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "step" | "percent" | "analysis"))
                .map(|(k, v)| format!("{}={}", esc(k), ev(v)))
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{step}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                proof_link(e.index),
                esc(&e.event.time),
                esc(&e.event.action),
                esc(e.event.reason.as_deref().unwrap_or("")),
                d.get("analysis").map(analysis).unwrap_or_default(),
                rest.join(" ")
            );
        }
        b.push_str("</table>");
    }
    b
}

/// An event's resources as escaped `kind<sep>name` texts (the id when unnamed).
fn resources(ev: &kiln_audit::Event, sep: &str) -> Vec<String> {
    ev.resources
        .iter()
        .map(|r| {
            format!(
                "{}{sep}{}",
                esc(&r.kind),
                esc(r.name.as_deref().unwrap_or(&r.id))
            )
        })
        .collect()
}

fn drift(src: &dyn Source) -> String {
    let events = tail(src, |le| le.event.action == "drift.detected");
    let mut b = String::new();
    if events.is_empty() {
        b.push_str("<p>No drift detected.</p>");
    }
    for e in events.iter().rev() {
        let res = resources(&e.event, " ");
        let d = &e.event.details;
        let diff = d
            .get("diff")
            .or_else(|| d.get("findings"))
            .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
            .unwrap_or_default();
        let _ = write!(
            b,
            "<h2>{} {} ({})</h2><p>{} — {}</p><pre>{}</pre>",
            proof_link(e.index),
            esc(&e.event.time),
            ev(d.get("kind").unwrap_or(&Value::Null)),
            res.join(", "),
            esc(e.event.reason.as_deref().unwrap_or("")),
            esc(&diff)
        );
    }
    b
}

fn audit(src: &dyn Source) -> String {
    let size = src.audit().log().size();
    let mut events = tail(src, |_| true);
    let skip = events.len().saturating_sub(AUDIT_ROWS);
    events.drain(..skip);
    let mut b = format!(
        "<p>{size} events in the log; the latest {} shown, newest first. Each index links to its \
         inclusion proof in the latest checkpoint.</p><table><tr><th>Index</th><th>Time</th>\
         <th>Action</th><th>Outcome</th><th>User</th><th>Resources</th><th>Reason</th></tr>",
        events.len()
    );
    for e in events.iter().rev() {
        let res = resources(&e.event, ":");
        let outcome = match e.event.outcome {
            kiln_audit::Outcome::Success => "success",
            kiln_audit::Outcome::Failure => "<span class=\"bad\">failure</span>",
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            proof_link(e.index),
            esc(&e.event.time),
            esc(&e.event.action),
            esc(&e.event.actor.user),
            res.join("<br>"),
            esc(e.event.reason.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    b
}

/// What `kiln evidence` would report per framework (whole log, now),
/// assessed on each visit of the page; no bundle is written.
fn evidence(src: &dyn Source) -> String {
    let dir = src.state_dir();
    let signer = match AuditLog::signer(dir) {
        Ok(s) => s,
        Err(e) => return format!("<p class=\"bad\">{}</p>", esc(&e.to_string())),
    };
    let root = dir.join("store");
    let store = root
        .join("oci-layout")
        .exists()
        .then(|| kiln_oci::Store::open(root).ok())
        .flatten();
    let mut b = String::from(
        "<p>What <code>kiln evidence --framework ID</code> would report for the whole log now.</p>\
         <table><tr><th>Framework</th><th>Satisfied</th><th>Partial</th><th>Missing</th>\
         <th>Requirements not satisfied</th></tr>",
    );
    for fw in kiln_evidence::FRAMEWORKS {
        let opts = kiln_evidence::Options {
            framework: fw,
            out: dir.join("evidence-unused"),
            since: None,
            until: None,
            now: None,
        };
        match kiln_evidence::assess(src.audit(), &signer, store.as_ref(), &opts) {
            Ok(e) => {
                let open: Vec<String> = e
                    .requirements
                    .iter()
                    .filter(|r| r.status != kiln_evidence::Status::Satisfied)
                    .map(|r| format!("{} {}", esc(&r.id), esc(&r.title)))
                    .collect();
                let _ = write!(
                    b,
                    "<tr><td>{} — {}</td><td class=\"ok\">{}</td><td>{}</td><td class=\"bad\">{}</td>\
                     <td><small>{}</small></td></tr>",
                    esc(fw.id),
                    esc(fw.title),
                    e.summary.satisfied,
                    e.summary.partial,
                    e.summary.missing,
                    open.join("<br>")
                );
            }
            Err(err) => {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td colspan=\"4\" class=\"bad\">{}</td></tr>",
                    esc(fw.id),
                    esc(&err.to_string())
                );
            }
        }
    }
    b.push_str("</table>");
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Metrics;
    use kiln_audit::{AuditLog, Event, Resource};
    use serde_json::json;
    use std::path::Path;

    struct Fake {
        status: Value,
        audit: AuditLog,
        metrics: Metrics,
        dir: tempfile::TempDir,
    }

    impl Source for Fake {
        fn status(&self) -> Value {
            self.status.clone()
        }
        fn audit(&self) -> &AuditLog {
            &self.audit
        }
        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
        fn state_dir(&self) -> &Path {
            self.dir.path()
        }
    }

    const HOSTILE: &str = "<script>alert('x')</script>\"&";

    fn fake() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(dir.path()).unwrap();
        let ev = |a: &str| {
            Event::new(a, "kiln serve")
                .resource(Resource::new("service", HOSTILE))
                .resource(Resource::new("release", "web-r0002"))
        };
        audit.record(&ev("release.start")).unwrap();
        audit
            .record(
                &ev("release.abort")
                    .resource(Resource::named("image", "sha256:00", HOSTILE))
                    .reason(Some(HOSTILE))
                    .detail(
                        "analysis",
                        json!({"requests": 60, "errors": 41, "verdict": "fail"}),
                    ),
            )
            .unwrap();
        audit
            .record(
                &Event::new("drift.detected", "kiln serve")
                    .resource(Resource::new("image", "sha256:00"))
                    .detail("kind", "filesystem")
                    .detail("diff", json!({"modified": [HOSTILE]})),
            )
            .unwrap();
        let status = json!({"services": [{
            "name": HOSTILE, "listen": "127.0.0.1:8080", "replicas": 2, "healthy": 1,
            "active": {"id": "web-r0001", "image": HOSTILE}, "message": HOSTILE,
            "instances": [{"id": "i1", "release": "web-r0001", "phase": "healthy", "age_ms": 61000,
                           "in_rotation": true, "egress": [{"to": HOSTILE, "opened": 2, "refused": 0}]}],
            "proxy": {"accepted": 3, "rejected": 0, "backends": [
                {"id": "i1", "group": "web-r0001", "active": 0, "total": 3, "failed_dials": 0}]},
        }]});
        Fake {
            status,
            audit,
            metrics: Metrics::new(),
            dir,
        }
    }

    #[test]
    fn every_page_escapes_hostile_strings() {
        let f = fake();
        let ev = page(&f, "/evidence", "").unwrap();
        assert!(ev.contains("pci-dss") || ev.contains("PCI"), "{ev}");
        for p in ["/", "/releases", "/drift", "/audit", "/evidence"] {
            let html = page(&f, p, "").unwrap();
            assert!(!html.contains("<script>"), "{p}: {html}");
            assert!(!html.contains("alert('x')"), "{p}");
            assert!(html.starts_with("<!DOCTYPE html>"));
        }
        let rel = page(&f, "/releases", "").unwrap();
        assert!(rel.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        assert!(rel.contains("aborted"));
        assert!(rel.contains("errors=41"), "{rel}");
        assert!(rel.contains("<a href=\"/proof/1\">#1</a>"));
        assert!(page(&f, "/nope", "").is_none());
    }

    #[test]
    fn proofs_verify_against_the_checkpoint() {
        let f = fake();
        let p = crate::observe::proof(&f.audit, 1).unwrap();
        assert_eq!(p["index"], 1);
        let leaf: [u8; 32] = hex::decode(p["leaf_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let root: [u8; 32] = hex::decode(p["root_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let hashes: Vec<[u8; 32]> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        kiln_tlog::verify_inclusion(1, p["tree_size"].as_u64().unwrap(), &leaf, &hashes, &root)
            .unwrap();
        assert!(crate::observe::proof(&f.audit, 99).is_err());
        let text = crate::observe::scrape(&f);
        assert!(text.contains("kiln_audit_log_entries 3\n"), "{text}");
    }
}
