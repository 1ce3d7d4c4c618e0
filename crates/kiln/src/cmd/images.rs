use anyhow::Result;
use kiln_oci::{ImageManifest, annotations};
use serde::Serialize;

use super::{Ctx, human, print_json};

#[derive(Serialize)]
struct Row {
    name: String,
    tag: String,
    digest: String,
    size: u64,
    created: Option<String>,
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let mut rows = Vec::new();
    // No store yet simply means no images.
    let images = match ctx.store() {
        Ok(store) => store
            .images()?
            .into_iter()
            .map(|i| (store.clone(), i))
            .collect(),
        Err(_) => Vec::new(),
    };
    for (store, img) in images {
        let m = ImageManifest::from_bytes(
            &store.read_descriptor(&img.descriptor)?,
            &img.descriptor.digest.to_string(),
        )?;
        let size =
            img.descriptor.size + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
        rows.push(Row {
            name: img.name,
            tag: img.tag,
            digest: img.descriptor.digest.to_string(),
            size,
            created: m.annotations.get(annotations::CREATED).cloned(),
        });
    }
    if ctx.json {
        return print_json(&rows);
    }
    println!(
        "{:<24} {:<16} {:<73} {:>10}  CREATED",
        "NAME", "TAG", "DIGEST", "SIZE"
    );
    for r in rows {
        println!(
            "{:<24} {:<16} {:<73} {:>10}  {}",
            r.name,
            r.tag,
            r.digest,
            human(r.size),
            r.created.unwrap_or_default()
        );
    }
    Ok(())
}
