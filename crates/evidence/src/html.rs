//! `index.html`: the bundle for a human reader. Self-contained (inline CSS,
//! no scripts, no external references); every value is escaped.

use std::fmt::Write as _;

use crate::model::Evidence;

/// Escape text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code,.mono{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}\
.satisfied{background:#e3f6e3}.partial{background:#fff4d6}.missing{background:#fde2e2}\
.st{font-weight:bold;text-transform:uppercase;font-size:.85em}details{margin:.3em 0}";

/// Render the bundle's evidence as a standalone page.
pub fn render(e: &Evidence) -> String {
    let x = escape;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>{} evidence</title><style>{CSS}</style></head><body>\n",
        x(&e.framework.title)
    );
    let _ = write!(
        h,
        "<h1>{} — compliance evidence</h1>\n<table>\
<tr><th>framework</th><td>{} (<code>{}</code>)</td></tr>\
<tr><th>generated</th><td>{} by {}</td></tr>\
<tr><th>period</th><td>{} — {}</td></tr>\
<tr><th>log</th><td><code>{}</code>, checkpoint of {} events, root <code>{}</code></td></tr>\
<tr><th>verifier key</th><td><code>{}</code></td></tr>\
<tr><th>result</th><td>{} satisfied, {} partial, {} missing; {} events cited, {} artifacts</td></tr>\
</table>\n<p>Check this bundle offline with <code>kiln evidence verify DIR --key VERIFIER_KEY</code>, \
comparing the verifier key with one obtained out of band. <code>MANIFEST</code> is a signed note \
whose body is <code>sha256sum -c</code> input for every other file.</p>\n",
        x(&e.framework.title),
        x(&e.framework.title),
        x(&e.framework.id),
        x(&e.generated_at),
        x(&e.generator),
        x(e.period.since.as_deref().unwrap_or("the first event")),
        x(e.period.until.as_deref().unwrap_or("generation")),
        x(&e.log.origin),
        e.log.checkpoint.size,
        x(&e.log.checkpoint.root_hash),
        x(&e.log.verifier_key),
        e.summary.satisfied,
        e.summary.partial,
        e.summary.missing,
        e.summary.events_cited,
        e.summary.artifacts,
    );

    h.push_str("<h2>Requirements</h2>\n<table><tr><th>requirement</th><th>status</th><th>kiln evidence</th><th>events</th><th>artifacts</th></tr>\n");
    for r in &e.requirements {
        let st = r.status.as_str();
        let _ = writeln!(
            h,
            "<tr class=\"{st}\"><td><a href=\"#req-{}\">{}</a> {}</td><td class=\"st\">{st}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            x(&r.id),
            x(&r.id),
            x(&r.title),
            x(&r.kiln_evidence),
            r.events.len(),
            r.artifacts.len()
        );
    }
    h.push_str("</table>\n");

    for r in &e.requirements {
        let st = r.status.as_str();
        let _ = writeln!(
            h,
            "<h2 id=\"req-{}\">{} {} <span class=\"st {st}\">{st}</span></h2>",
            x(&r.id),
            x(&r.id),
            x(&r.title)
        );
        if !r.satisfied_by.is_empty() {
            h.push_str("<p>Satisfied by:</p><ul>");
            for s in &r.satisfied_by {
                let _ = write!(h, "<li>{}</li>", x(s));
            }
            h.push_str("</ul>\n");
        }
        if !r.missing.is_empty() {
            h.push_str("<p>Missing:</p><ul>");
            for m in &r.missing {
                let _ = write!(
                    h,
                    "<li class=\"missing\">{} — {}</li>",
                    x(&m.need),
                    x(&m.why)
                );
            }
            h.push_str("</ul>\n");
        }
        if !r.events.is_empty() {
            let _ = write!(
                h,
                "<details><summary>{} cited events</summary><table><tr><th>index</th><th>time</th><th>action</th><th>outcome</th><th>actor</th><th>resources</th><th>reason</th><th>leaf hash</th></tr>",
                r.events.len()
            );
            for ev in &r.events {
                let _ = write!(
                    h,
                    "<tr><td><a href=\"{}\">{}</a> (<a href=\"{}\">proof</a>)</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                    x(&ev.path),
                    ev.index,
                    x(&ev.proof),
                    x(&ev.time),
                    x(&ev.action),
                    x(&ev.outcome),
                    x(&ev.actor),
                    x(&ev.resources.join(" ")),
                    x(ev.reason.as_deref().unwrap_or("")),
                    x(&ev.leaf_hash)
                );
            }
            h.push_str("</table></details>\n");
        }
        if !r.artifacts.is_empty() {
            h.push_str("<details><summary>artifacts</summary><ul>");
            for a in &r.artifacts {
                let _ = write!(
                    h,
                    "<li>{} <a class=\"mono\" href=\"{}\">{}</a></li>",
                    x(&a.kind),
                    x(&a.path),
                    x(&a.digest)
                );
            }
            h.push_str("</ul></details>\n");
        }
        if !r.proofs.is_empty() {
            h.push_str("<p>Proofs: ");
            let links: Vec<String> = r
                .proofs
                .iter()
                .map(|p| format!("<a href=\"{}\">{}</a>", x(p), x(p)))
                .collect();
            h.push_str(&links.join(", "));
            h.push_str("</p>\n");
        }
    }

    h.push_str("<h2>Images</h2>\n<table><tr><th>digest</th><th>names</th><th>baseline</th><th>artifacts</th></tr>\n");
    for i in &e.images {
        let baseline = i
            .baseline
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}{}</td></tr>",
            x(&i.digest),
            x(&i.names.join(", ")),
            x(&baseline),
            i.artifacts,
            if i.in_store {
                ""
            } else {
                " (not in the store)"
            }
        );
    }
    h.push_str("</table>\n<h2>Artifacts</h2>\n<table><tr><th>kind</th><th>media type</th><th>digest</th><th>size</th></tr>\n");
    for a in &e.artifacts {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"{}\">{}</a></td><td>{}</td></tr>",
            x(&a.kind),
            x(&a.media_type),
            x(&a.path),
            x(&a.digest),
            a.size
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
