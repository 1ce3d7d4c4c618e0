//! The daemon's metrics: counters fed by the audit events it records (as it
//! records them: replacements by reason class, drift detections, release
//! outcomes and durations, append latency), counters folded from the live
//! proxy and egress statistics (kept monotonic when instances go), and the
//! rendering of all of it, with the status' gauges, as Prometheus text.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_audit::Event;
use kiln_oci::sync::lock;
use serde_json::Value;

use super::expo::{APPEND_BOUNDS, Expo, Histogram, Kind, RELEASE_BOUNDS};

/// The bounded set of replacement reason classes.
pub const REPLACE_REASONS: [&str; 7] = [
    "exit", "oom", "health", "drift", "lifetime", "chaos", "other",
];

/// Release outcomes counted.
pub const OUTCOMES: [(&str, &str); 4] = [
    ("release.start", "started"),
    ("release.switch", "switched"),
    ("release.abort", "aborted"),
    ("release.rollback", "rolled_back"),
];

/// Releases whose start time is remembered (for their duration).
const STARTS_KEPT: usize = 1024;
/// Instances killed by chaos remembered (their replacement is `chaos`).
const CHAOS_KEPT: usize = 256;
/// Traffic samples kept for the dashboard's charts.
pub const SAMPLES_KEPT: usize = 120;

/// The class of an `instance.replace` reason.
pub fn reason_class(reason: &str, chaos: bool) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if chaos {
        "chaos"
    } else if r.contains("oom") || r.contains("out of memory") {
        "oom"
    } else if r.contains("drift") {
        "drift"
    } else if r.contains("lifetime") {
        "lifetime"
    } else if r.contains("health") {
        "health"
    } else if r.contains("exit") || r.contains("signal") || r.contains("not running") {
        "exit"
    } else {
        "other"
    }
}

/// A counter summed over members (backends, instances) that come and go:
/// a member's last values are kept once it goes, so the sum never falls.
#[derive(Debug, Default, Clone)]
struct Folded {
    live: BTreeMap<String, [u64; 2]>,
    retired: [u64; 2],
}

impl Folded {
    fn update(&mut self, seen: &BTreeMap<String, [u64; 2]>) {
        let gone: Vec<String> = self
            .live
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(v) = self.live.remove(&k) {
                self.retired[0] += v[0];
                self.retired[1] += v[1];
            }
        }
        for (k, v) in seen {
            let e = self.live.entry(k.clone()).or_default();
            // A member's counters only grow; a restart of its own counting
            // (e.g. re-added to a new proxy) keeps what was seen.
            if v[0] < e[0] || v[1] < e[1] {
                self.retired[0] += e[0];
                self.retired[1] += e[1];
            }
            *e = *v;
        }
    }

    fn total(&self) -> [u64; 2] {
        let mut t = self.retired;
        for v in self.live.values() {
            t[0] += v[0];
            t[1] += v[1];
        }
        t
    }
}

/// One sample of traffic per (service, release): connections and errors
/// so far, for rates.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: SystemTime,
    pub totals: BTreeMap<(String, String), [u64; 2]>,
}

#[derive(Default)]
struct Inner {
    replacements: BTreeMap<(String, &'static str), u64>,
    chaos: VecDeque<String>,
    drift: BTreeMap<String, u64>,
    outcomes: BTreeMap<(String, &'static str), u64>,
    started: HashMap<(String, String), Instant>,
    durations: BTreeMap<(String, &'static str), Histogram>,
    append: Option<Histogram>,
    append_failures: u64,
    /// (service, release) → connections, connection failures.
    traffic: BTreeMap<(String, String), Folded>,
    /// (service, destination) → opened, refused.
    egress: BTreeMap<(String, String), Folded>,
    samples: VecDeque<Sample>,
}

/// The daemon's metrics.
pub struct Metrics {
    start: SystemTime,
    inner: std::sync::Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn service_of(e: &Event) -> String {
    e.resources
        .iter()
        .find(|r| r.kind == "service")
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

fn resource<'a>(e: &'a Event, kind: &str) -> Option<&'a str> {
    e.resources
        .iter()
        .find(|r| r.kind == kind)
        .map(|r| r.id.as_str())
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            start: SystemTime::now(),
            inner: std::sync::Mutex::new(Inner::default()),
        }
    }

    /// Count an event the daemon recorded (`ok`: the append succeeded) and
    /// the time its append took.
    pub fn on_record(&self, e: &Event, took: Duration, ok: bool) {
        let mut m = lock(&self.inner);
        m.append
            .get_or_insert_with(|| Histogram::new(&APPEND_BOUNDS))
            .observe(took.as_secs_f64());
        if !ok {
            m.append_failures += 1;
            return;
        }
        let service = service_of(e);
        match e.action.as_str() {
            "chaos.kill" => {
                if let Some(id) = resource(e, "instance") {
                    m.chaos.push_back(id.to_string());
                    while m.chaos.len() > CHAOS_KEPT {
                        m.chaos.pop_front();
                    }
                }
            }
            "instance.replace" => {
                let chaos =
                    resource(e, "instance").is_some_and(|id| m.chaos.iter().any(|c| c == id));
                let class = reason_class(e.reason.as_deref().unwrap_or(""), chaos);
                *m.replacements.entry((service, class)).or_default() += 1;
            }
            "drift.detected" => {
                let kind = e
                    .details
                    .get("kind")
                    .and_then(Value::as_str)
                    .filter(|k| matches!(*k, "filesystem" | "runtime"))
                    .unwrap_or("other");
                *m.drift.entry(kind.to_string()).or_default() += 1;
            }
            action => {
                let Some((_, outcome)) = OUTCOMES.iter().find(|(a, _)| *a == action) else {
                    return;
                };
                *m.outcomes.entry((service.clone(), outcome)).or_default() += 1;
                let release = resource(e, "release").unwrap_or_default().to_string();
                let key = (service.clone(), release);
                if *outcome == "started" {
                    if m.started.len() >= STARTS_KEPT {
                        m.started.clear();
                    }
                    m.started.insert(key, Instant::now());
                } else if let Some(t) = m.started.remove(&key) {
                    m.durations
                        .entry((service, outcome))
                        .or_insert_with(|| Histogram::new(&RELEASE_BOUNDS))
                        .observe(t.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// Fold the proxy and egress counters of a status snapshot (as
    /// `kiln status --json` shows it) into the monotonic counters, and keep
    /// a sample for the charts. Series of services and releases the status
    /// no longer names are dropped.
    pub fn fold(&self, status: &Value) {
        let mut m = lock(&self.inner);
        let services = status["services"].as_array().cloned().unwrap_or_default();
        let mut keep_traffic = Vec::new();
        let mut keep_egress = Vec::new();
        for s in &services {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            let mut per_release: BTreeMap<String, BTreeMap<String, [u64; 2]>> = BTreeMap::new();
            for r in releases_named(s) {
                per_release.entry(r).or_default();
            }
            for b in s["proxy"]["backends"].as_array().into_iter().flatten() {
                let rel = b["group"].as_str().unwrap_or_default().to_string();
                let id = b["id"].as_str().unwrap_or_default().to_string();
                let v = [
                    b["total"].as_u64().unwrap_or(0),
                    b["failed_dials"].as_u64().unwrap_or(0),
                ];
                per_release.entry(rel).or_default().insert(id, v);
            }
            for (rel, seen) in per_release {
                let key = (name.clone(), rel);
                m.traffic.entry(key.clone()).or_default().update(&seen);
                keep_traffic.push(key);
            }
            let mut per_dest: BTreeMap<String, BTreeMap<String, [u64; 2]>> = BTreeMap::new();
            for i in s["instances"].as_array().into_iter().flatten() {
                let id = i["id"].as_str().unwrap_or_default();
                for r in i["egress"].as_array().into_iter().flatten() {
                    let to = r["to"].as_str().unwrap_or_default().to_string();
                    let v = [
                        r["opened"].as_u64().unwrap_or(0),
                        r["refused"].as_u64().unwrap_or(0),
                    ];
                    per_dest.entry(to).or_default().insert(id.to_string(), v);
                }
            }
            for (k, v) in m.egress.iter_mut() {
                if k.0 == name && !per_dest.contains_key(&k.1) {
                    v.update(&BTreeMap::new());
                    keep_egress.push(k.clone());
                }
            }
            for (dest, seen) in per_dest {
                let key = (name.clone(), dest);
                m.egress.entry(key.clone()).or_default().update(&seen);
                keep_egress.push(key);
            }
        }
        m.traffic.retain(|k, _| keep_traffic.contains(k));
        m.egress.retain(|k, _| keep_egress.contains(k));
        let totals = m
            .traffic
            .iter()
            .map(|(k, v)| (k.clone(), v.total()))
            .collect();
        m.samples.push_back(Sample {
            at: SystemTime::now(),
            totals,
        });
        while m.samples.len() > SAMPLES_KEPT {
            m.samples.pop_front();
        }
    }

    /// The traffic samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.inner).samples.iter().cloned().collect()
    }

    /// Connections and connection failures so far per (service, release).
    pub fn traffic(&self) -> BTreeMap<(String, String), [u64; 2]> {
        lock(&self.inner)
            .traffic
            .iter()
            .map(|(k, v)| (k.clone(), v.total()))
            .collect()
    }

    /// Everything as Prometheus text, with the gauges of `status` and the
    /// audit log's size (entries, bytes). Call [`Metrics::fold`] first.
    pub fn render(&self, status: &Value, audit: (u64, u64)) -> String {
        let m = lock(&self.inner);
        let mut e = Expo::new();
        let start = self
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        e.family(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
        )
        .sample("process_start_time_seconds", &[], start.floor());

        let services = status["services"].as_array().cloned().unwrap_or_default();
        e.family(
            "kiln_service_desired_replicas",
            Kind::Gauge,
            "Replicas the deployment asks for.",
        );
        for s in &services {
            let name = s["name"].as_str().unwrap_or_default();
            e.sample(
                "kiln_service_desired_replicas",
                &[("service", name)],
                s["replicas"].as_f64().unwrap_or(0.0),
            );
        }
        e.family(
            "kiln_service_healthy_instances",
            Kind::Gauge,
            "Healthy instances of the active release in rotation.",
        );
        for s in &services {
            let name = s["name"].as_str().unwrap_or_default();
            e.sample(
                "kiln_service_healthy_instances",
                &[("service", name)],
                s["healthy"].as_f64().unwrap_or(0.0),
            );
        }
        e.family(
            "kiln_release_instances",
            Kind::Gauge,
            "Instances per release and phase.",
        );
        for s in &services {
            let name = s["name"].as_str().unwrap_or_default();
            let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
            for i in s["instances"].as_array().into_iter().flatten() {
                let rel = i["release"].as_str().unwrap_or_default().to_string();
                let phase = i["phase"].as_str().unwrap_or("unknown").to_string();
                *by.entry((rel, phase)).or_default() += 1;
            }
            for ((rel, phase), n) in by {
                e.sample(
                    "kiln_release_instances",
                    &[("service", name), ("release", &rel), ("phase", &phase)],
                    n as f64,
                );
            }
        }
        e.family(
            "kiln_release_active_connections",
            Kind::Gauge,
            "Client connections open now through the front proxy, per release.",
        );
        for s in &services {
            let name = s["name"].as_str().unwrap_or_default();
            let mut by: BTreeMap<String, u64> = BTreeMap::new();
            for b in s["proxy"]["backends"].as_array().into_iter().flatten() {
                let rel = b["group"].as_str().unwrap_or_default().to_string();
                *by.entry(rel).or_default() += b["active"].as_u64().unwrap_or(0);
            }
            for (rel, n) in by {
                e.sample(
                    "kiln_release_active_connections",
                    &[("service", name), ("release", &rel)],
                    n as f64,
                );
            }
        }
        e.family(
            "kiln_release_connections_total",
            Kind::Counter,
            "Client connections the front proxy passed to a release's instances.",
        );
        for ((svc, rel), f) in &m.traffic {
            e.sample(
                "kiln_release_connections_total",
                &[("service", svc), ("release", rel)],
                f.total()[0] as f64,
            );
        }
        e.family(
            "kiln_release_connect_failures_total",
            Kind::Counter,
            "Connections to a release's instances that could not be dialled (errors).",
        );
        for ((svc, rel), f) in &m.traffic {
            e.sample(
                "kiln_release_connect_failures_total",
                &[("service", svc), ("release", rel)],
                f.total()[1] as f64,
            );
        }
        release_http(&mut e, status);
        e.family(
            "kiln_service_rejected_connections_total",
            Kind::Counter,
            "Client connections closed because no instance could be dialled.",
        );
        for s in &services {
            let name = s["name"].as_str().unwrap_or_default();
            if let Some(r) = s["proxy"]["rejected"].as_f64() {
                e.sample(
                    "kiln_service_rejected_connections_total",
                    &[("service", name)],
                    r,
                );
            }
        }
        e.family(
            "kiln_instance_replacements_total",
            Kind::Counter,
            "Instances replaced, by reason class (exit, oom, health, drift, lifetime, chaos, other).",
        );
        for ((svc, class), n) in &m.replacements {
            e.sample(
                "kiln_instance_replacements_total",
                &[("service", svc), ("reason", class)],
                *n as f64,
            );
        }
        e.family(
            "kiln_egress_connections_total",
            Kind::Counter,
            "Egress connections forwarded per declared destination.",
        );
        for ((svc, dest), f) in &m.egress {
            e.sample(
                "kiln_egress_connections_total",
                &[("service", svc), ("destination", dest)],
                f.total()[0] as f64,
            );
        }
        e.family(
            "kiln_egress_refused_total",
            Kind::Counter,
            "Egress connections the destination refused or that failed.",
        );
        for ((svc, dest), f) in &m.egress {
            e.sample(
                "kiln_egress_refused_total",
                &[("service", svc), ("destination", dest)],
                f.total()[1] as f64,
            );
        }
        e.family(
            "kiln_drift_detections_total",
            Kind::Counter,
            "Drift detected (filesystem or runtime).",
        );
        for (kind, n) in &m.drift {
            e.sample("kiln_drift_detections_total", &[("kind", kind)], *n as f64);
        }
        e.family(
            "kiln_release_outcomes_total",
            Kind::Counter,
            "Releases started, switched, aborted and rolled back.",
        );
        for ((svc, outcome), n) in &m.outcomes {
            e.sample(
                "kiln_release_outcomes_total",
                &[("service", svc), ("outcome", outcome)],
                *n as f64,
            );
        }
        e.family(
            "kiln_release_duration_seconds",
            Kind::Histogram,
            "From a release's start to its switch or abort.",
        );
        for ((svc, outcome), h) in &m.durations {
            e.histogram(
                "kiln_release_duration_seconds",
                &[("service", svc), ("outcome", outcome)],
                h,
            );
        }
        e.family(
            "kiln_audit_log_entries",
            Kind::Gauge,
            "Events in the audit log.",
        )
        .sample("kiln_audit_log_entries", &[], audit.0 as f64);
        e.family(
            "kiln_audit_log_bytes",
            Kind::Gauge,
            "Bytes the audit log takes on disk.",
        )
        .sample("kiln_audit_log_bytes", &[], audit.1 as f64);
        e.family(
            "kiln_audit_append_duration_seconds",
            Kind::Histogram,
            "Time to append (and sync) one audit event.",
        );
        let empty = Histogram::new(&APPEND_BOUNDS);
        e.histogram(
            "kiln_audit_append_duration_seconds",
            &[],
            m.append.as_ref().unwrap_or(&empty),
        );
        e.family(
            "kiln_audit_append_failures_total",
            Kind::Counter,
            "Audit appends that failed.",
        )
        .sample(
            "kiln_audit_append_failures_total",
            &[],
            m.append_failures as f64,
        );
        e.finish()
    }
}

/// The releases a status service names (active, rolling out, of instances).
fn releases_named(s: &Value) -> Vec<String> {
    let mut v: Vec<String> = [
        s["active"]["id"].as_str(),
        s["rollout"]["release"].as_str(),
        s["rollout"]["from"].as_str(),
    ]
    .into_iter()
    .flatten()
    .map(str::to_string)
    .collect();
    for i in s["instances"].as_array().into_iter().flatten() {
        if let Some(r) = i["release"].as_str() {
            v.push(r.to_string());
        }
    }
    v
}

/// The front proxy's per-release HTTP counters (`services[].proxy.releases` of the status:
/// [`crate::proxy::ReleaseStats`]): responses by status class, resets and the latency
/// histogram. They are counters of this daemon's life; `process_start_time_seconds` marks
/// the reset when it restarts.
fn release_http(e: &mut Expo, status: &Value) {
    let mut rows = Vec::new();
    for s in status["services"].as_array().into_iter().flatten() {
        let svc = s["name"].as_str().unwrap_or_default().to_string();
        for r in s["proxy"]["releases"].as_array().into_iter().flatten() {
            if let Ok(r) = serde_json::from_value::<crate::proxy::ReleaseStats>(r.clone()) {
                rows.push((svc.clone(), r));
            }
        }
    }
    e.family(
        "kiln_release_http_responses_total",
        Kind::Counter,
        "HTTP responses from a release's instances by status class (with analysis http = true).",
    );
    for (svc, r) in &rows {
        let c = &r.responses;
        for (class, n) in [
            ("2xx", c.s2xx),
            ("3xx", c.s3xx),
            ("4xx", c.s4xx),
            ("5xx", c.s5xx),
        ] {
            e.sample(
                "kiln_release_http_responses_total",
                &[("service", svc), ("release", &r.release), ("class", class)],
                n as f64,
            );
        }
    }
    e.family(
        "kiln_release_resets_total",
        Kind::Counter,
        "Connections to a release's instances that ended with a reset.",
    );
    for (svc, r) in &rows {
        e.sample(
            "kiln_release_resets_total",
            &[("service", svc), ("release", &r.release)],
            r.resets as f64,
        );
    }
    e.family(
        "kiln_release_request_duration_seconds",
        Kind::Histogram,
        "From a request's first byte to its response's status line, per release.",
    );
    for (svc, r) in &rows {
        let mut h = Histogram::new(&crate::proxy::LATENCY_BUCKETS);
        let mut below = 0;
        for (i, slot) in h.counts.iter_mut().enumerate() {
            // The proxy's buckets are cumulative; the +Inf one is the count.
            let cum = r
                .latency
                .buckets
                .get(i)
                .map_or(r.latency.count, |b| b.1)
                .max(below);
            *slot = cum - below;
            below = cum;
        }
        h.sum = r.latency.sum;
        h.count = below.max(r.latency.count);
        e.histogram(
            "kiln_release_request_duration_seconds",
            &[("service", svc), ("release", &r.release)],
            &h,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_audit::Resource;
    use serde_json::json;

    fn status(total: u64, backends: Value) -> Value {
        json!({"services": [{
            "name": "web", "replicas": 2, "healthy": 1,
            "active": {"id": "web-r1"},
            "instances": [{"id": "i1", "release": "web-r1", "phase": "healthy",
                           "egress": [{"to": "redis", "opened": total, "refused": 0}]}],
            "proxy": {"accepted": total, "rejected": 0, "backends": backends},
        }]})
    }

    #[test]
    fn reason_classes_are_bounded() {
        assert_eq!(reason_class("instance exited with status 1", false), "exit");
        assert_eq!(
            reason_class("instance killed by signal 9 (OOM)", false),
            "oom"
        );
        assert_eq!(
            reason_class("unhealthy: 3 consecutive failed health checks", false),
            "health"
        );
        assert_eq!(
            reason_class("never became healthy in 30 s", false),
            "health"
        );
        assert_eq!(reason_class("max_lifetime reached", false), "lifetime");
        assert_eq!(reason_class("drift: /etc/passwd changed", false), "drift");
        assert_eq!(reason_class("instance exited", true), "chaos");
        assert_eq!(reason_class("something new", false), "other");
        for r in ["a", "exit", "oom x", "health"] {
            assert!(REPLACE_REASONS.contains(&reason_class(r, false)));
        }
    }

    #[test]
    fn release_http_counters_and_latency_histogram() {
        let m = Metrics::new();
        let st = json!({"services": [{"name": "web", "instances": [], "proxy": {"backends": [],
            "releases": [{"release": "r2", "connections": 9, "connect_failures": 1, "resets": 2,
                "requests": 7, "responses": {"2xx": 4, "3xx": 0, "4xx": 1, "5xx": 2},
                "latency": {"buckets": [[0.005, 1], [0.01, 3], [0.025, 3], [0.05, 3], [0.1, 5],
                    [0.25, 6], [0.5, 6], [1.0, 6], [2.5, 6], [5.0, 6], [10.0, 6]],
                    "sum": 0.75, "count": 7}}]}}]});
        m.fold(&st);
        let text = m.render(&st, (0, 0));
        for line in [
            "kiln_release_http_responses_total{service=\"web\",release=\"r2\",class=\"5xx\"} 2",
            "kiln_release_resets_total{service=\"web\",release=\"r2\"} 2",
            "kiln_release_request_duration_seconds_bucket{service=\"web\",release=\"r2\",le=\"0.01\"} 3",
            "kiln_release_request_duration_seconds_bucket{service=\"web\",release=\"r2\",le=\"10\"} 6",
            "kiln_release_request_duration_seconds_bucket{service=\"web\",release=\"r2\",le=\"+Inf\"} 7",
            "kiln_release_request_duration_seconds_count{service=\"web\",release=\"r2\"} 7",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn counters_stay_monotonic_when_backends_go() {
        let m = Metrics::new();
        m.fold(&status(
            5,
            json!([{"id": "i1", "group": "web-r1", "active": 1, "total": 5, "failed_dials": 1},
                   {"id": "i2", "group": "web-r1", "active": 0, "total": 3, "failed_dials": 0}]),
        ));
        assert_eq!(m.traffic()[&("web".into(), "web-r1".into())], [8, 1]);
        // i2 left the proxy: its connections still count.
        m.fold(&status(
            7,
            json!([{"id": "i1", "group": "web-r1", "active": 0, "total": 7, "failed_dials": 1}]),
        ));
        assert_eq!(m.traffic()[&("web".into(), "web-r1".into())], [10, 1]);
        let text = m.render(&status(7, json!([])), (3, 100));
        assert!(
            text.contains(
                "kiln_release_connections_total{service=\"web\",release=\"web-r1\"} 10\n"
            )
        );
        assert!(
            text.contains(
                "kiln_egress_connections_total{service=\"web\",destination=\"redis\"} 7\n"
            )
        );
        assert!(text.contains("kiln_audit_log_entries 3\n"));
        assert_eq!(m.samples().len(), 2);
    }

    #[test]
    fn events_feed_replacements_outcomes_and_durations() {
        let m = Metrics::new();
        let ev = |a: &str| {
            Event::new(a, "kiln serve")
                .resource(Resource::new("service", "web"))
                .resource(Resource::new("release", "web-r2"))
        };
        let t = Duration::from_millis(2);
        m.on_record(&ev("release.start"), t, true);
        m.on_record(&ev("release.abort"), t, true);
        m.on_record(
            &ev("chaos.kill").resource(Resource::new("instance", "i9")),
            t,
            true,
        );
        m.on_record(
            &ev("instance.replace")
                .resource(Resource::new("instance", "i9"))
                .reason(Some("instance exited")),
            t,
            true,
        );
        m.on_record(
            &ev("instance.replace")
                .resource(Resource::new("instance", "i3"))
                .reason(Some("unhealthy: 3 consecutive failed health checks")),
            t,
            true,
        );
        m.on_record(&ev("fleet.apply"), t, false);
        let text = m.render(&json!({"services": []}), (0, 0));
        for want in [
            "kiln_release_outcomes_total{service=\"web\",outcome=\"started\"} 1\n",
            "kiln_release_outcomes_total{service=\"web\",outcome=\"aborted\"} 1\n",
            "kiln_release_duration_seconds_count{service=\"web\",outcome=\"aborted\"} 1\n",
            "kiln_instance_replacements_total{service=\"web\",reason=\"chaos\"} 1\n",
            "kiln_instance_replacements_total{service=\"web\",reason=\"health\"} 1\n",
            "kiln_audit_append_duration_seconds_count 6\n",
            "kiln_audit_append_failures_total 1\n",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        // Every family has HELP and TYPE before its samples.
        let mut declared = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(r) = l.strip_prefix("# TYPE ") {
                declared.insert(r.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| declared.contains(*b)))
                    .unwrap_or(name);
                assert!(declared.contains(base), "{name} has no TYPE");
            }
        }
    }
}
