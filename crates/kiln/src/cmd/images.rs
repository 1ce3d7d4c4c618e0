//! `kiln images [--all]`: the tagged images of the store. cosign's `.sig`/`.att` tags,
//! referrers (SBOMs, bundles, attestations) and untagged images (a tag moved away
//! from them; still addressable by digest until `kiln gc`) only with `--all`.

use anyhow::Result;
use kiln_oci::{ImageManifest, annotations, media};
use serde::Serialize;

use super::{Ctx, human, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Also list `.sig`/`.att` tags, referrers and untagged images.
    #[arg(long)]
    all: bool,
}

#[derive(Serialize)]
struct Row {
    name: String,
    tag: String,
    digest: String,
    size: u64,
    created: Option<String>,
    /// `image`, `signature` (a cosign `.sig`/`.att` tag), `referrer` or `untagged`.
    kind: &'static str,
    /// When it entered the store.
    stored: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let mut rows = Vec::new();
    // No store yet simply means no images.
    if let Ok(store) = ctx.store() {
        let index = store.index()?;
        let tagged: std::collections::BTreeSet<_> = index
            .manifests
            .iter()
            .filter(|d| d.annotations.contains_key(annotations::REF_NAME))
            .map(|d| d.digest)
            .collect();
        for d in index.manifests {
            if !media::is_manifest(&d.media_type) {
                // An image index (a multi-platform pull): listed by its tag.
                if let Some(r) = d.annotations.get(annotations::REF_NAME) {
                    let (n, t) = split_ref(r);
                    rows.push(Row {
                        name: n.to_string(),
                        tag: t.to_string(),
                        digest: d.digest.to_string(),
                        size: d.size,
                        created: None,
                        kind: "image",
                        stored: d.annotations.get(annotations::STORED).cloned(),
                    });
                }
                continue;
            }
            let m = ImageManifest::from_bytes(&store.read_descriptor(&d)?, &d.digest.to_string())?;
            let (name, tag, kind) = match d.annotations.get(annotations::REF_NAME) {
                Some(r) => {
                    let (n, t) = split_ref(r);
                    let kind = if kiln_oci::gc::legacy_subject(t).is_some() {
                        "signature"
                    } else {
                        "image"
                    };
                    (n.to_string(), t.to_string(), kind)
                }
                None if m.subject.is_some() => (
                    "<referrer>".to_string(),
                    m.artifact_type.clone().unwrap_or_else(|| "<none>".into()),
                    "referrer",
                ),
                // Tagged too (under another name): listed there.
                None if tagged.contains(&d.digest) => continue,
                None => {
                    // The name whose tag moved away from it, if kiln knows.
                    let name = d
                        .annotations
                        .get(annotations::UNTAGGED_FROM)
                        .map(|r| split_ref(r).0.to_string())
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| "<none>".to_string());
                    (name, "<none>".to_string(), "untagged")
                }
            };
            if kind != "image" && !a.all {
                continue;
            }
            let size = d.size + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
            rows.push(Row {
                name,
                tag,
                digest: d.digest.to_string(),
                size,
                created: m.annotations.get(annotations::CREATED).cloned(),
                kind,
                stored: d.annotations.get(annotations::STORED).cloned(),
            });
        }
    }
    let order = |k: &str| match k {
        "image" => 0,
        "signature" => 1,
        "untagged" => 2,
        _ => 3,
    };
    rows.sort_by(|x, y| {
        (order(x.kind), &x.name, &x.tag, &x.digest).cmp(&(
            order(y.kind),
            &y.name,
            &y.tag,
            &y.digest,
        ))
    });
    if ctx.json {
        return print_json(&rows);
    }
    let table: Vec<[String; 5]> = rows
        .into_iter()
        .map(|r| {
            [
                r.name,
                r.tag,
                r.digest,
                human(r.size),
                r.created.unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(&["NAME", "TAG", "DIGEST", "SIZE", "CREATED"], &table)
    );
    Ok(())
}

/// `name:tag` → (name, tag); a ref without a name part is all tag.
fn split_ref(r: &str) -> (&str, &str) {
    match r.rfind(':') {
        Some(i) if !r[i + 1..].contains('/') => (&r[..i], &r[i + 1..]),
        _ => ("", r),
    }
}

/// Columns as wide as their widest cell; SIZE right-aligned.
fn render(header: &[&str; 5], rows: &[[String; 5]]) -> String {
    let mut w = header.map(|h| h.chars().count());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    let mut out = line(*header);
    for r in rows {
        out += &line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_stay_aligned() {
        let rows = vec![
            [
                "registry.example.com:5000/platform/team/a-very-long-service-name".to_string(),
                "2026.12.06-build.1234".to_string(),
                format!("sha256:{}", "a".repeat(64)),
                "1.5 MiB".to_string(),
                "2026-12-06T00:00:00Z".to_string(),
            ],
            [
                "x".to_string(),
                "1".to_string(),
                format!("sha256:{}", "b".repeat(64)),
                "10 B".to_string(),
                String::new(),
            ],
        ];
        let out = render(&["NAME", "TAG", "DIGEST", "SIZE", "CREATED"], &rows);
        let lines: Vec<&str> = out.lines().collect();
        let col = |l: &str| l.find("sha256:").or_else(|| l.find("DIGEST")).unwrap();
        assert!(lines.iter().all(|l| col(l) == col(lines[0])), "{out}");
    }
}
