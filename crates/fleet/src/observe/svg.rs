//! Inline SVG charts drawn by kiln (no scripts): a line chart of rates over
//! time and a column chart of counts per bucket. Every label is escaped.

use std::fmt::Write as _;

use super::dashboard::esc;

const W: f64 = 640.0;
const H: f64 = 200.0;
const PAD: f64 = 36.0;
const COLORS: [&str; 6] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];

fn frame(title: &str, max: f64, body: &str, legend: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{W}\" height=\"{}\" \
         viewBox=\"0 0 {W} {}\"><title>{}</title>\
         <line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\
         <line x1=\"{PAD}\" y1=\"8\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#888\"/>\
         <text x=\"2\" y=\"16\" font-size=\"10\">{}</text>\
         <text x=\"2\" y=\"{}\" font-size=\"10\">0</text>{body}{legend}</svg>",
        H + 24.0,
        H + 24.0,
        esc(title),
        H - PAD / 2.0,
        W - 8.0,
        H - PAD / 2.0,
        H - PAD / 2.0,
        fmt_num(max),
        H - PAD / 2.0,
    )
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn legend(names: &[&str]) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().enumerate() {
        let x = PAD + i as f64 * 150.0;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            H + 6.0,
            COLORS[i % COLORS.len()],
            x + 14.0,
            H + 15.0,
            esc(n)
        );
    }
    out
}

/// Lines over time: each series is (name, points of (seconds, value)).
pub fn lines(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let t0 = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(f64::INFINITY, f64::min);
    let t1 = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0);
    let span = (t1 - t0).max(1.0);
    let (x0, y0, w, h) = (PAD, H - PAD / 2.0, W - PAD - 8.0, H - PAD / 2.0 - 8.0);
    let mut body = String::new();
    for (i, (_, pts)) in series.iter().enumerate() {
        let coords: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x0 + (t - t0) / span * w, y0 - v / max * h))
            .collect();
        let _ = write!(
            body,
            "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"{}\" points=\"{}\"/>",
            COLORS[i % COLORS.len()],
            coords.join(" ")
        );
    }
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    frame(title, max, &body, &legend(&names))
}

/// Columns, one per bucket: (label, count).
pub fn columns(title: &str, buckets: &[(String, u64)]) -> String {
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let n = buckets.len().max(1) as f64;
    let (x0, y0, w, h) = (PAD, H - PAD / 2.0, W - PAD - 8.0, H - PAD / 2.0 - 8.0);
    let bw = w / n;
    let mut body = String::new();
    for (i, (label, v)) in buckets.iter().enumerate() {
        let bh = *v as f64 / max * h;
        let x = x0 + i as f64 * bw;
        let _ = write!(
            body,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\">\
             <title>{}: {v}</title></rect>",
            y0 - bh,
            (bw - 2.0).max(1.0),
            COLORS[1],
            esc(label)
        );
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(
            body,
            "<text x=\"{x0}\" y=\"{}\" font-size=\"10\">{}</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            y0 + 12.0,
            esc(&first.0),
            W - 8.0,
            y0 + 12.0,
            esc(&last.0)
        );
    }
    frame(title, max, &body, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let s = lines(
            "rate <b>",
            &[("<script>x</script>".into(), vec![(0.0, 1.0), (5.0, 2.0)])],
        );
        assert!(!s.contains("<script>"));
        assert!(s.contains("&lt;script&gt;"));
        let c = columns("r", &[("a&b".into(), 3), ("c".into(), 0)]);
        assert!(c.contains("a&amp;b: 3"));
        assert!(c.starts_with("<svg"));
    }
}
