//! Writing a [`Tree`] as one layer blob, with a cache keyed by the digest of
//! everything that determines the blob's bytes.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use kiln_oci::{Descriptor, Digest, Staging, Store};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::BuildError;
use crate::compress::{Compression, LayerSink};
use crate::source::StatKey;
use crate::tarw::{EntryType, Header, TarWriter};
use crate::tree::{Content, Tree};

/// Bump when the tar encoding changes: it invalidates every cached layer.
const LAYER_FORMAT: &str = "kiln-layer-v2";

/// A built (or cached) layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerOut {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    #[serde(skip)]
    pub cached: bool,
}

/// The cache key: a digest over every entry's metadata and content hash,
/// the epoch, and the exact compressor.
pub fn layer_key(tree: &Tree, epoch: u64, c: Compression) -> String {
    let mut h = sha2::Sha256::new();
    h.update(format!("{LAYER_FORMAT}\n{epoch}\n{}\n", c.describe()));
    for (p, n) in tree {
        // Length-prefixed fields: unambiguous without escaping.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
        h.update([n.kind as u8]);
        h.update(n.mode.to_le_bytes());
        h.update(n.uid.to_le_bytes());
        h.update(n.gid.to_le_bytes());
        h.update(n.size.to_le_bytes());
        h.update(n.sha256.unwrap_or([0; 32]));
        let link = n.link.as_deref().unwrap_or("");
        h.update((link.len() as u64).to_le_bytes());
        h.update(link.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Build the layer for `tree`, or reuse the cached blob.
#[allow(clippy::too_many_arguments)]
pub fn build_layer(
    tree: &Tree,
    epoch: u64,
    c: Compression,
    threads: usize,
    store: &Store,
    staging: &mut Staging,
    cache_dir: &Path,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<LayerOut, BuildError> {
    let key = layer_key(tree, epoch, c);
    let cache_file = cache_dir.join(format!("{key}.json"));
    // Regular, not a link, without blocking, bounded: a miss only costs speed.
    if let Some(hit) = kiln_oci::untrusted::read_capped(
        &cache_file,
        crate::source::CACHE_FILE_LIMIT,
        kiln_oci::untrusted::Follow::No,
    )
    .ok()
    .and_then(|b| serde_json::from_slice::<LayerOut>(&b).ok())
        && store
            .blob_path(&hit.descriptor.digest)
            .metadata()
            .is_ok_and(|m| m.len() == hit.descriptor.size)
    {
        return Ok(LayerOut {
            cached: true,
            ..hit
        });
    }
    let (file, tmp) = staging.temp_file()?;
    let mut sink = LayerSink::new(c, file, threads).map_err(|e| BuildError::io(&tmp, e))?;
    sink.on_progress(progress);
    let mut tw = TarWriter::new(sink);
    write_entries(&mut tw, tree, epoch).map_err(|e| match e {
        WriteErr::Io(e) => BuildError::io(&tmp, e),
        WriteErr::Build(b) => b,
    })?;
    let sink = tw.finish().map_err(|e| BuildError::io(&tmp, e))?;
    let d = sink.finish().map_err(|e| BuildError::io(&tmp, e))?;
    staging.adopt(tmp, d.digest)?;
    let out = LayerOut {
        descriptor: Descriptor::new(c.media_type(), d.digest, d.size),
        diff_id: d.diff_id,
        uncompressed_size: d.uncompressed_size,
        cached: false,
    };
    // The cache entry is only a hint (it is validated against the store on
    // use), so a failure to write it does not fail the build.
    if fs::create_dir_all(cache_dir).is_ok()
        && let Ok(bytes) = serde_json::to_vec(&out)
    {
        let _ = kiln_oci::layout::write_atomic(&cache_file, &bytes);
    }
    Ok(out)
}

enum WriteErr {
    Io(io::Error),
    Build(BuildError),
}

impl From<io::Error> for WriteErr {
    fn from(e: io::Error) -> Self {
        WriteErr::Io(e)
    }
}

fn write_entries<W: Write>(tw: &mut TarWriter<W>, tree: &Tree, epoch: u64) -> Result<(), WriteErr> {
    let mut buf = vec![0u8; 1 << 20];
    for (p, n) in tree {
        let rel = &p[1..];
        let link_rel;
        let link = match n.kind {
            EntryType::Hardlink => {
                link_rel = n
                    .link
                    .as_deref()
                    .map(|l| l.trim_start_matches('/').to_string());
                link_rel.as_deref()
            }
            _ => n.link.as_deref(),
        };
        tw.header(&Header {
            path: rel,
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            mtime: epoch,
            link,
            xattrs: &[],
        })?;
        if n.kind != EntryType::File {
            continue;
        }
        match &n.content {
            Content::Bytes(b) => {
                tw.content(b)?;
            }
            Content::Host(host, key) => copy_host(tw, host, key, n.size, &mut buf)?,
            Content::Spool(spool, offset) => spool
                .copy_to(*offset, n.size, &mut buf, &mut |b| tw.content(b))
                .map_err(|e| {
                    WriteErr::Build(BuildError::Internal(format!(
                        "{p}: cannot read the package spool: {e}"
                    )))
                })?,
            Content::None => {
                return Err(WriteErr::Build(BuildError::Internal(format!(
                    "{p} has no content"
                ))));
            }
        }
        tw.pad(n.size)?;
    }
    Ok(())
}

fn copy_host<W: Write>(
    tw: &mut TarWriter<W>,
    host: &Path,
    key: &StatKey,
    size: u64,
    buf: &mut [u8],
) -> Result<(), WriteErr> {
    let changed = || {
        WriteErr::Build(BuildError::Source {
            path: host.to_path_buf(),
            message: "the file changed during the build; build again".into(),
        })
    };
    let mut f = crate::source::open_host(host, key).map_err(WriteErr::Build)?;
    let before = f
        .metadata()
        .map_err(|e| WriteErr::Build(BuildError::io(host, e)))?;
    if StatKey::of(&before) != *key {
        return Err(changed());
    }
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let k = f
            .read(&mut buf[..want])
            .map_err(|e| WriteErr::Build(BuildError::io(host, e)))?;
        if k == 0 {
            return Err(changed());
        }
        tw.content(&buf[..k])?;
        left -= k as u64;
    }
    let after = f
        .metadata()
        .map_err(|e| WriteErr::Build(BuildError::io(host, e)))?;
    if StatKey::of(&after) != *key {
        return Err(changed());
    }
    Ok(())
}
