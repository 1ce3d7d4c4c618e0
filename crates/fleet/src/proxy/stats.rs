//! Per-release traffic counters of the front proxy: connections, failed dials, aborted
//! connections and (when the proxy parses HTTP) responses by status class and request
//! latency. The daemon's canary analysis and the metrics endpoint read them as
//! [`ReleaseStats`] snapshots; the counters only ever grow (a new proxy starts at zero).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_oci::sync::lock;
use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the latency histogram buckets; a final `+Inf` bucket is implied.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Responses by status class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClasses {
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

/// A latency histogram (Prometheus style: cumulative bucket counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `(upper bound in seconds, observations ≤ bound)` for each of [`LATENCY_BUCKETS`];
    /// the `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, seconds.
    pub sum: f64,
    pub count: u64,
}

/// A snapshot of one release's traffic through one service's proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseStats {
    /// Release id (the backends' group).
    pub release: String,
    /// Upstream connections established to the release's instances.
    pub connections: u64,
    /// Dials to the release's instances that failed (the client was retried elsewhere).
    pub connect_failures: u64,
    /// Connections that ended with a socket error (reset) instead of a clean close.
    pub resets: u64,
    /// HTTP responses seen (only with HTTP parsing on; 1xx not counted).
    pub requests: u64,
    pub responses: StatusClasses,
    /// Request first byte to response status line, per response whose request was seen.
    pub latency: Histogram,
}

impl ReleaseStats {
    /// Requests and errors as canary analysis counts them: with `http`, responses plus
    /// failed dials, of which 5xx and failed dials are errors; without, connections plus
    /// failed dials, of which failed dials and resets are errors.
    pub fn analysis_counts(&self, http: bool) -> (u64, u64) {
        if http {
            (
                self.requests + self.connect_failures,
                self.responses.s5xx + self.connect_failures,
            )
        } else {
            (
                self.connections + self.connect_failures,
                self.connect_failures + self.resets,
            )
        }
    }
}

/// The live counters of one release (shared by the connections to its backends).
#[derive(Debug, Default)]
pub(crate) struct ReleaseCounters {
    pub connections: AtomicU64,
    pub connect_failures: AtomicU64,
    pub resets: AtomicU64,
    pub requests: AtomicU64,
    classes: [AtomicU64; 4],
    /// Per bucket (not cumulative), then +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl ReleaseCounters {
    /// One response with status `code`; `latency` if its request's first byte was seen.
    pub fn response(&self, code: u16, latency: Option<Duration>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = match code {
            200..=299 => Some(0),
            300..=399 => Some(1),
            400..=499 => Some(2),
            500..=599 => Some(3),
            _ => None,
        };
        if let Some(c) = class {
            self.classes[c].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l) = latency {
            let s = l.as_secs_f64();
            let i = LATENCY_BUCKETS
                .iter()
                .position(|b| s <= *b)
                .unwrap_or(LATENCY_BUCKETS.len());
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
            let us = u64::try_from(l.as_micros()).unwrap_or(u64::MAX);
            self.sum_us.fetch_add(us, Ordering::Relaxed);
        }
    }

    fn snapshot(&self, release: &str) -> ReleaseStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut cum = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += get(&self.buckets[i]);
            buckets.push((*b, cum));
        }
        let count = cum + get(&self.buckets[LATENCY_BUCKETS.len()]);
        ReleaseStats {
            release: release.to_string(),
            connections: get(&self.connections),
            connect_failures: get(&self.connect_failures),
            resets: get(&self.resets),
            requests: get(&self.requests),
            responses: StatusClasses {
                s2xx: get(&self.classes[0]),
                s3xx: get(&self.classes[1]),
                s4xx: get(&self.classes[2]),
                s5xx: get(&self.classes[3]),
            },
            latency: Histogram {
                buckets,
                #[allow(clippy::cast_precision_loss)]
                sum: get(&self.sum_us) as f64 / 1e6,
                count,
            },
        }
    }
}

/// Counters of every release a proxy has carried traffic for, by release id.
#[derive(Debug, Default)]
pub(crate) struct Releases {
    map: Mutex<HashMap<String, std::sync::Arc<ReleaseCounters>>>,
}

/// Most releases a proxy keeps counters for; beyond, the releases no longer in the
/// rotation are forgotten (oldest counters first is not tracked: any idle one goes).
const MAX_RELEASES: usize = 32;

impl Releases {
    /// The counters of `release`, created at zero on first use.
    pub fn get(&self, release: &str) -> std::sync::Arc<ReleaseCounters> {
        let mut m = lock(&self.map);
        if let Some(c) = m.get(release) {
            return std::sync::Arc::clone(c);
        }
        let c = std::sync::Arc::new(ReleaseCounters::default());
        m.insert(release.to_string(), std::sync::Arc::clone(&c));
        c
    }

    /// Forgets releases not in `keep` while more than [`MAX_RELEASES`] are known.
    pub fn prune(&self, keep: &[&str]) {
        let mut m = lock(&self.map);
        if m.len() <= MAX_RELEASES {
            return;
        }
        m.retain(|k, c| keep.contains(&k.as_str()) || std::sync::Arc::strong_count(c) > 1);
    }

    /// Snapshots, sorted by release id.
    pub fn snapshot(&self) -> Vec<ReleaseStats> {
        let m = lock(&self.map);
        let mut v: Vec<ReleaseStats> = m.iter().map(|(k, c)| c.snapshot(k)).collect();
        v.sort_by(|a, b| a.release.cmp(&b.release));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_classes_count() {
        let r = Releases::default();
        let c = r.get("r1");
        c.response(200, Some(Duration::from_millis(3)));
        c.response(503, Some(Duration::from_millis(30)));
        c.response(404, Some(Duration::from_secs(20)));
        c.response(301, None);
        let s = &r.snapshot()[0];
        assert_eq!(s.requests, 4);
        assert_eq!(
            s.responses,
            StatusClasses {
                s2xx: 1,
                s3xx: 1,
                s4xx: 1,
                s5xx: 1
            }
        );
        assert_eq!(s.latency.count, 3);
        assert_eq!(s.latency.buckets[0], (0.005, 1));
        assert_eq!(s.latency.buckets[3], (0.05, 2));
        assert_eq!(s.latency.buckets[10], (10.0, 2));
        assert_eq!(s.analysis_counts(true), (4, 1));
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["responses"]["5xx"], 1);
    }
}
