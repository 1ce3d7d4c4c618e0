//! The Prometheus text exposition format (version 0.0.4): a writer that
//! puts `# HELP` and `# TYPE` before every family, escapes label values and
//! help texts, and writes histograms as cumulative `_bucket{le=..}` series
//! with `_sum` and `_count`.

use std::fmt::Write as _;

/// The content type of [`Expo`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Upper bounds (seconds) of latency histograms: those of the proxy's
/// per-release statistics.
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of release durations.
pub const RELEASE_BOUNDS: [f64; 9] = [5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// Upper bounds (seconds) of audit appends (an fsync each).
pub const APPEND_BOUNDS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram: a count per bucket (not cumulative; the last bucket is
/// `+Inf`), the sum and the count of observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// Escape a label value: backslash, double quote and line feed.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escape a help text: backslash and line feed.
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as the format spells it.
pub fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The exposition being written.
#[derive(Default)]
pub struct Expo {
    out: String,
}

impl Expo {
    pub fn new() -> Expo {
        Expo::default()
    }

    /// Start a family: `# HELP` and `# TYPE`. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    fn labels(labels: &[(&str, &str)], extra: Option<(&str, &str)>) -> String {
        let all: Vec<String> = labels
            .iter()
            .copied()
            .chain(extra)
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", all.join(","))
        }
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) -> &mut Self {
        let _ = writeln!(
            self.out,
            "{name}{} {}",
            Self::labels(labels, None),
            value(v)
        );
        self
    }

    /// The series of one histogram.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let mut cum = 0u64;
        for (i, c) in h.counts.iter().enumerate() {
            cum += c;
            let le = h
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| value(*b));
            let _ = writeln!(
                self.out,
                "{name}_bucket{} {cum}",
                Self::labels(labels, Some(("le", &le)))
            );
        }
        let l = Self::labels(labels, None);
        let _ = writeln!(self.out, "{name}_sum{l} {}", value(h.sum));
        let _ = writeln!(self.out, "{name}_count{l} {}", h.count);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_escaped_labels() {
        let mut e = Expo::new();
        e.family("kiln_x_total", Kind::Counter, "A \\ help\nline")
            .sample("kiln_x_total", &[("service", "a\"b\\c\nd")], 3.0);
        let out = e.finish();
        assert_eq!(
            out,
            "# HELP kiln_x_total A \\\\ help\\nline\n# TYPE kiln_x_total counter\n\
             kiln_x_total{service=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut e = Expo::new();
        e.family("kiln_d_seconds", Kind::Histogram, "d").histogram(
            "kiln_d_seconds",
            &[("s", "web")],
            &h,
        );
        let out = e.finish();
        let lines: Vec<&str> = out.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "kiln_d_seconds_bucket{s=\"web\",le=\"0.1\"} 1",
                "kiln_d_seconds_bucket{s=\"web\",le=\"1\"} 3",
                "kiln_d_seconds_bucket{s=\"web\",le=\"+Inf\"} 4",
                "kiln_d_seconds_sum{s=\"web\"} 4.25",
                "kiln_d_seconds_count{s=\"web\"} 4",
            ]
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(1.5e9), "1500000000");
        assert_eq!(value(0.25), "0.25");
    }
}
