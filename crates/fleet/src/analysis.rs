//! `[service.<name>.analysis]`: judging a release on the traffic it really serves, and the
//! pure verdict function the reconciler calls for each canary step and for the blue-green
//! window after a switch.
//!
//! ```toml
//! [service.web.analysis]          # optional; without it steps advance on step_pause alone
//! max_error_rate = 0.01           # of requests (or connections) to the new set in a step
//! min_requests = 50               # per step before a verdict
//! step_timeout = "5m"             # no verdict by then (too little traffic): the release pauses
//! http = true                     # parse HTTP/1.x responses passing the proxy: 5xx are errors
//! window = "30s"                  # blue-green: analysis window after the switch
//! ```
//!
//! Errors are 5xx responses plus failed dials with `http = true`; failed dials plus reset
//! connections without. The counts come from the front proxy's per-release counters
//! ([`crate::proxy::ReleaseStats`]), taken as differences from the start of the step.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;

/// The effective analysis settings of a service (defaults filled in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Highest error rate that passes, in parts per million (0.01 = 10 000).
    pub max_error_ppm: u32,
    /// Requests (or connections without `http`) a step needs before it can pass.
    pub min_requests: u64,
    /// A step without enough traffic by then pauses the rollout.
    pub step_timeout: Duration,
    /// Whether the proxy parses HTTP/1.x responses.
    pub http: bool,
    /// Blue-green: how long the new set is judged after the switch.
    pub window: Duration,
}

impl Default for Analysis {
    fn default() -> Analysis {
        Analysis {
            max_error_ppm: 10_000,
            min_requests: 50,
            step_timeout: Duration::from_secs(300),
            http: true,
            window: Duration::from_secs(30),
        }
    }
}

impl Analysis {
    /// The maximum error rate as a fraction.
    pub fn max_error_rate(&self) -> f64 {
        f64::from(self.max_error_ppm) / 1e6
    }
}

/// Requests and errors (cumulative counters of one release, or a difference of two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
}

impl Counts {
    /// `self - base`, never below zero (a restarted proxy starts its counters again).
    pub fn since(self, base: Counts) -> Counts {
        if self.requests < base.requests {
            return self;
        }
        Counts {
            requests: self.requests - base.requests,
            errors: self.errors.saturating_sub(base.errors),
        }
    }
}

/// What the numbers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Enough traffic at an acceptable error rate (and the minimum dwell passed).
    Pass,
    /// Too many errors: abort.
    Fail,
    /// Not decided yet.
    Wait,
    /// Too little traffic by the step timeout: pause.
    Timeout,
}

/// A verdict and the numbers behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    pub outcome: Outcome,
    pub counts: Counts,
    pub elapsed: Duration,
}

impl Judgement {
    pub fn error_rate(&self) -> f64 {
        if self.counts.requests == 0 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let r = self.counts.errors as f64 / self.counts.requests as f64;
            r
        }
    }

    /// `details.analysis` of the audit events.
    pub fn to_json(&self, a: &Analysis) -> Value {
        json!({
            "requests": self.counts.requests,
            "errors": self.counts.errors,
            "error_rate": (self.error_rate() * 1e6).round() / 1e6,
            "max_error_rate": a.max_error_rate(),
            "min_requests": a.min_requests,
            "verdict": self.outcome,
            "window_ms": u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            "unit": if a.http { "requests" } else { "connections" },
        })
    }

    /// One line for status messages and abort reasons.
    pub fn describe(&self, a: &Analysis) -> String {
        format!(
            "{} errors in {} {} ({:.2}% > {:.2}% allowed)",
            self.counts.errors,
            self.counts.requests,
            if a.http { "requests" } else { "connections" },
            self.error_rate() * 100.0,
            a.max_error_rate() * 100.0
        )
    }
}

/// The verdict on a step: `counts` since the step began, `elapsed` since it began,
/// `min_dwell` the step's minimum duration (`step_pause`).
///
/// - Fail as soon as the errors are more than the allowed share of `max(requests,
///   min_requests)`: no amount of further success could make the step pass.
/// - Pass once `min_requests` were seen at or below the rate and `min_dwell` passed.
/// - Timeout when `step_timeout` passed without enough requests; else wait.
pub fn judge(a: &Analysis, counts: Counts, elapsed: Duration, min_dwell: Duration) -> Judgement {
    let outcome = {
        let basis = u128::from(counts.requests.max(a.min_requests));
        // errors / basis > ppm / 1e6, in integers.
        let too_many = u128::from(counts.errors) * 1_000_000 > u128::from(a.max_error_ppm) * basis;
        if counts.errors > 0 && too_many {
            Outcome::Fail
        } else if counts.requests >= a.min_requests.max(1) {
            if elapsed >= min_dwell {
                Outcome::Pass
            } else {
                Outcome::Wait
            }
        } else if elapsed >= a.step_timeout {
            Outcome::Timeout
        } else {
            Outcome::Wait
        }
    };
    Judgement {
        outcome,
        counts,
        elapsed,
    }
}

/// Why a rollout stands still.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub why: String,
    /// Paused by the step timeout (too little traffic), not by an operator: resuming
    /// counts the step as passed.
    pub timeout: bool,
    /// ms since the epoch.
    pub since: u64,
}

/// What an operator asked of a rollout in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandOp {
    Resume,
    Abort,
}

/// An operator's command, carried out by the reconciler's next step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub op: CommandOp,
    pub actor: kiln_audit::Actor,
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The raw table
// ---------------------------------------------------------------------------------------------

/// `[service.<name>.analysis]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnalysis {
    #[serde(default)]
    max_error_rate: Option<Spanned<toml::Value>>,
    #[serde(default)]
    min_requests: Option<Spanned<i64>>,
    #[serde(default)]
    step_timeout: Option<Spanned<String>>,
    #[serde(default)]
    http: Option<Spanned<bool>>,
    #[serde(default)]
    window: Option<Spanned<String>>,
}

/// An analysis error at a byte range of the deploy file.
#[derive(Debug)]
pub(crate) struct Located {
    pub span: Range<usize>,
    pub message: String,
}

/// Most requests a step may ask for.
pub const MAX_MIN_REQUESTS: i64 = 1_000_000_000;

/// Checks the raw table of `key` (`service.web.analysis`).
pub(crate) fn from_raw(key: &str, raw: RawAnalysis) -> Result<Analysis, Located> {
    let mut out = Analysis::default();
    let err = |span: Range<usize>, message: String| Located { span, message };
    if let Some(m) = &raw.max_error_rate {
        let f = match m.get_ref() {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(n) => *n as f64,
            other => {
                return Err(err(
                    m.span(),
                    format!(
                        "{key}.max_error_rate: expected a number from 0 to 1 such as 0.01, found a {}",
                        other.type_str()
                    ),
                ));
            }
        };
        if !(0.0..=1.0).contains(&f) {
            return Err(err(
                m.span(),
                format!("{key}.max_error_rate: {f} is not between 0 and 1"),
            ));
        }
        // In range 0..=1e6 by the check above.
        out.max_error_ppm = (f * 1e6).round() as u32;
    }
    if let Some(n) = &raw.min_requests {
        let v = *n.get_ref();
        if !(1..=MAX_MIN_REQUESTS).contains(&v) {
            return Err(err(
                n.span(),
                format!("{key}.min_requests: {v} is out of range (1..={MAX_MIN_REQUESTS})"),
            ));
        }
        out.min_requests = u64::try_from(v).unwrap_or(1);
    }
    let duration = |v: &Spanned<String>, field: &str| -> Result<Duration, Located> {
        let d = crate::deploy::parse_duration(v.get_ref())
            .map_err(|e| err(v.span(), format!("{key}.{field}: {e}")))?;
        if d < Duration::from_millis(100) {
            return Err(err(
                v.span(),
                format!("{key}.{field}: must be at least 100ms"),
            ));
        }
        Ok(d)
    };
    if let Some(v) = &raw.step_timeout {
        out.step_timeout = duration(v, "step_timeout")?;
    }
    if let Some(v) = &raw.window {
        out.window = duration(v, "window")?;
    }
    if let Some(h) = &raw.http {
        out.http = *h.get_ref();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(requests: u64, errors: u64) -> Counts {
        Counts { requests, errors }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn verdicts() {
        let a = Analysis::default(); // 1 %, 50 requests, 5 min
        assert_eq!(judge(&a, c(0, 0), S, S).outcome, Outcome::Wait);
        assert_eq!(judge(&a, c(49, 0), S * 10, S).outcome, Outcome::Wait);
        assert_eq!(judge(&a, c(50, 0), S * 10, S).outcome, Outcome::Pass);
        assert_eq!(judge(&a, c(50, 0), S / 2, S).outcome, Outcome::Wait);
        // 0.5 errors allowed of 50: one error already fails.
        assert_eq!(judge(&a, c(3, 1), S, S).outcome, Outcome::Fail);
        // 1 of 100 is exactly 1 %: passes.
        assert_eq!(judge(&a, c(100, 1), S, S).outcome, Outcome::Pass);
        assert_eq!(judge(&a, c(100, 2), S, S).outcome, Outcome::Fail);
        assert_eq!(judge(&a, c(10, 0), S * 300, S).outcome, Outcome::Timeout);
        let lax = Analysis {
            max_error_ppm: 1_000_000,
            ..a
        };
        assert_eq!(judge(&lax, c(60, 60), S, S).outcome, Outcome::Pass);
    }

    #[test]
    fn since_survives_a_counter_reset() {
        assert_eq!(c(10, 2).since(c(4, 1)), c(6, 1));
        assert_eq!(c(3, 1).since(c(40, 9)), c(3, 1));
    }

    #[test]
    fn json_has_the_agreed_keys() {
        let a = Analysis::default();
        let j = judge(&a, c(100, 7), S, S).to_json(&a);
        for k in [
            "requests",
            "errors",
            "error_rate",
            "max_error_rate",
            "min_requests",
            "verdict",
            "window_ms",
        ] {
            assert!(j.get(k).is_some(), "{k}");
        }
        assert_eq!(j["verdict"], "fail");
        assert_eq!(j["error_rate"], 0.07);
    }
}
