//! Layer compression: deterministic and parallel.
//!
//! * gzip: the tar stream is cut into fixed 1 MiB blocks; each becomes one
//!   complete gzip member (RFC 1952 §2.2: a gzip file is a series of
//!   members), compressed on its own core by libdeflate at level
//!   [`GZIP_LEVEL`], with no name and mtime 0. eStargz layers use the same
//!   multi-member form; every conforming decoder (Go's compress/gzip in
//!   containerd, skopeo and umoci, GNU gzip, pigz, Python) reads it as one
//!   stream. The bytes depend only on the input and the pinned library,
//!   never on the number of threads.
//! * zstd: libzstd's multi-threaded mode at level [`ZSTD_LEVEL`]; its output
//!   does not depend on the number of workers (≥ 1).
//!
//! The sink also computes the layer's `diff_id` (SHA-256 of the uncompressed
//! tar) and the blob digest (SHA-256 of the compressed bytes).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kiln_oci::sync::lock;
use kiln_oci::{Digest, Sha256Writer, WritebackFile, media};
use sha2::{Digest as _, Sha256};

/// Pinned gzip level.
pub const GZIP_LEVEL: u32 = 6;
/// Pinned zstd level.
pub const ZSTD_LEVEL: i32 = 3;
/// Independent gzip block size (part of the output format: never change
/// it without changing kiln's major version).
pub const GZIP_BLOCK: usize = 1 << 20;

/// How layers are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media::LAYER_GZIP,
            Compression::Zstd => media::LAYER_ZSTD,
            Compression::None => media::LAYER_TAR,
        }
    }

    /// Everything that determines the compressed bytes: part of the layer
    /// cache key and of the build record.
    pub fn describe(self) -> String {
        match self {
            Compression::Gzip => format!(
                "gzip level {GZIP_LEVEL}, one member per {} KiB block, libdeflate {}",
                GZIP_BLOCK / 1024,
                env!("KILN_LIBDEFLATE_VERSION")
            ),
            Compression::Zstd => format!(
                "zstd level {ZSTD_LEVEL}, multi-threaded, libzstd {} (zstd-sys {})",
                zstd::zstd_safe::version_string(),
                env!("KILN_ZSTD_SYS_VERSION")
            ),
            Compression::None => "uncompressed tar".to_string(),
        }
    }
}

/// A compression name other than `gzip`, `zstd` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (gzip, zstd or none)")]
pub struct UnknownCompression(pub String);

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, UnknownCompression> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            _ => Err(UnknownCompression(s.into())),
        }
    }
}

/// What a finished layer blob is.
#[derive(Clone, Copy, Debug)]
pub struct LayerDigests {
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
    pub uncompressed_size: u64,
}

type Out = Sha256Writer<BufWriter<WritebackFile>>;
type Chunk = Arc<Vec<u8>>;

/// Where uncompressed chunks go.
enum Backend {
    /// pigz-style parallel deflate.
    Gzip(GzipPar),
    /// One thread drives a streaming encoder (libzstd's own workers do the
    /// compressing) or writes the tar as is.
    Stream {
        tx: Option<SyncSender<Chunk>>,
        thread: Option<JoinHandle<io::Result<Out>>>,
    },
}

/// A `Write` for the uncompressed tar stream of one layer.
///
/// The stream is cut into [`GZIP_BLOCK`] chunks shared (not copied) by a
/// thread computing the `diff_id` and the compressor, so hashing,
/// compressing and writing proceed in parallel with producing the tar.
pub struct LayerSink {
    cur: Vec<u8>,
    raw_len: u64,
    diff_tx: Option<SyncSender<Chunk>>,
    diff_thread: Option<JoinHandle<Digest>>,
    backend: Backend,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl LayerSink {
    /// `threads`: compression workers (≥ 1).
    pub fn new(c: Compression, out: File, threads: usize) -> io::Result<LayerSink> {
        let out: Out = Sha256Writer::new(BufWriter::with_capacity(
            1 << 20,
            WritebackFile::new(out, 16 << 20),
        ));
        let backend = match c {
            Compression::Gzip => Backend::Gzip(GzipPar::new(out, threads.max(1))),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                e.multithread(threads.max(1) as u32)?;
                e.include_checksum(false)?;
                stream_backend(move |rx: Receiver<Chunk>| {
                    for chunk in rx {
                        e.write_all(&chunk)?;
                    }
                    e.finish()
                })
            }
            Compression::None => stream_backend(move |rx: Receiver<Chunk>| {
                let mut out = out;
                for chunk in rx {
                    out.write_all(&chunk)?;
                }
                Ok(out)
            }),
        };
        let (diff_tx, diff_rx) = sync_channel::<Chunk>(8);
        let diff_thread = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for chunk in diff_rx {
                h.update(&chunk[..]);
            }
            Digest::from_bytes(h.finalize().into())
        });
        Ok(LayerSink {
            cur: Vec::with_capacity(GZIP_BLOCK),
            raw_len: 0,
            diff_tx: Some(diff_tx),
            diff_thread: Some(diff_thread),
            backend,
            progress: None,
        })
    }

    /// Report uncompressed bytes as they are consumed.
    pub fn on_progress(&mut self, f: Arc<dyn Fn(u64) + Send + Sync>) {
        self.progress = Some(f);
    }

    fn ship(&mut self, last: bool) -> io::Result<()> {
        let chunk: Chunk = Arc::new(std::mem::replace(
            &mut self.cur,
            Vec::with_capacity(GZIP_BLOCK),
        ));
        if let Some(tx) = &self.diff_tx {
            tx.send(Arc::clone(&chunk)).map_err(|_| broken())?;
        }
        match &mut self.backend {
            Backend::Gzip(g) => g.send(chunk, last),
            Backend::Stream { tx: Some(tx), .. } => tx.send(chunk).map_err(|_| broken()),
            Backend::Stream { tx: None, .. } => Err(broken()),
        }
    }

    /// Flush everything, fsync nothing (the store does), return digests.
    pub fn finish(mut self) -> io::Result<LayerDigests> {
        self.ship(true)?;
        self.diff_tx = None;
        let diff_id = match self.diff_thread.take() {
            Some(t) => t.join().map_err(|_| broken())?,
            None => return Err(broken()),
        };
        let w = match &mut self.backend {
            Backend::Gzip(g) => g.finish()?,
            Backend::Stream { tx, thread } => {
                *tx = None;
                match thread.take() {
                    Some(t) => t.join().map_err(|_| broken())??,
                    None => return Err(broken()),
                }
            }
        };
        let (digest, size, mut buf) = w.finish();
        buf.flush()?;
        Ok(LayerDigests {
            diff_id,
            digest,
            size,
            uncompressed_size: self.raw_len,
        })
    }
}

fn stream_backend(f: impl FnOnce(Receiver<Chunk>) -> io::Result<Out> + Send + 'static) -> Backend {
    let (tx, rx) = sync_channel::<Chunk>(4);
    Backend::Stream {
        tx: Some(tx),
        thread: Some(std::thread::spawn(move || f(rx))),
    }
}

impl Drop for LayerSink {
    fn drop(&mut self) {
        // On an error path: close the channels so the threads end.
        self.diff_tx = None;
        if let Backend::Stream { tx, thread } = &mut self.backend {
            *tx = None;
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
        if let Some(t) = self.diff_thread.take() {
            let _ = t.join();
        }
    }
}

impl Write for LayerSink {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let take = (GZIP_BLOCK - self.cur.len()).min(buf.len());
            self.cur.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.cur.len() == GZIP_BLOCK {
                self.ship(false)?;
            }
        }
        self.raw_len += n as u64;
        if let Some(p) = &self.progress {
            p(n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Job {
    seq: u64,
    data: Chunk,
}

struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
}

/// Parallel multi-member gzip over fixed-size chunks.
struct GzipPar {
    seq: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<Out>>>,
}

impl GzipPar {
    fn new(out: Out, threads: usize) -> GzipPar {
        let (jtx, jrx) = sync_channel::<Job>(threads * 2);
        let jrx = Arc::new(Mutex::new(jrx));
        let (dtx, drx) = sync_channel::<Done>(threads * 2);
        let workers = (0..threads)
            .map(|_| {
                let jrx = Arc::clone(&jrx);
                let dtx = dtx.clone();
                std::thread::spawn(move || worker(jrx, dtx))
            })
            .collect();
        drop(dtx);
        let writer = std::thread::spawn(move || gzip_writer(out, drx));
        GzipPar {
            seq: 0,
            jobs: Some(jtx),
            workers,
            writer: Some(writer),
        }
    }

    /// Queue one chunk. An empty last chunk (the stream ended on a block
    /// boundary) adds no member.
    fn send(&mut self, data: Chunk, last: bool) -> io::Result<()> {
        if last && data.is_empty() && self.seq > 0 {
            return Ok(());
        }
        let job = Job {
            seq: self.seq,
            data,
        };
        self.seq += 1;
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|_| broken()),
            None => Err(broken()),
        }
    }

    fn finish(&mut self) -> io::Result<Out> {
        self.jobs = None;
        for w in self.workers.drain(..) {
            w.join().map_err(|_| broken())?;
        }
        match self.writer.take() {
            Some(w) => w.join().map_err(|_| broken())?,
            None => Err(broken()),
        }
    }
}

impl Drop for GzipPar {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn broken() -> io::Error {
    io::Error::other("a compression thread failed")
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>, done: SyncSender<Done>) {
    let level = libdeflater::CompressionLvl::new(GZIP_LEVEL as i32).unwrap_or_default();
    let mut c = libdeflater::Compressor::new(level);
    loop {
        let job = {
            match lock(&jobs).recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let mut out = vec![0u8; c.gzip_compress_bound(job.data.len())];
        let res = c
            .gzip_compress(&job.data, &mut out)
            .map(|n| {
                out.truncate(n);
                out
            })
            .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")));
        if done
            .send(Done {
                seq: job.seq,
                out: res,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Write members in order as they complete.
fn gzip_writer(mut out: Out, done: Receiver<Done>) -> io::Result<Out> {
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    for d in done {
        pending.insert(d.seq, d);
        while let Some(d) = pending.remove(&next) {
            out.write_all(&d.out?)?;
            next += 1;
        }
    }
    if !pending.is_empty() || next == 0 {
        return Err(broken());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(c: Compression, data: &[u8], threads: usize) -> (Vec<u8>, LayerDigests) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blob");
        let mut s = LayerSink::new(c, File::create(&p).unwrap(), threads).unwrap();
        for chunk in data.chunks(7777) {
            s.write_all(chunk).unwrap();
        }
        let d = s.finish().unwrap();
        (std::fs::read(&p).unwrap(), d)
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u32 = 1;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b"kiln "[i % 5]
                }
            })
            .collect()
    }

    #[test]
    fn gzip_is_valid_and_thread_independent() {
        let data = sample(3 * GZIP_BLOCK + 12345);
        let (a, da) = compress(Compression::Gzip, &data, 1);
        let (b, _) = compress(Compression::Gzip, &data, 4);
        assert_eq!(a, b, "output depends on thread count");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(da.diff_id, Digest::of(&data));
        assert_eq!(da.digest, Digest::of(&a));
        assert_eq!(da.size, a.len() as u64);
        // GNU gzip is the reference decoder.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gz");
        std::fs::write(&p, &a).unwrap();
        let o = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    #[test]
    fn gzip_of_tiny_input() {
        let (a, _) = compress(Compression::Gzip, b"x", 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"x");
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let data = sample(2 * GZIP_BLOCK + 999);
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let (a, _) = compress(c, &data, 2);
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("blob");
            let mut s = LayerSink::new(c, File::create(&p).unwrap(), 2).unwrap();
            s.write_all(&data).unwrap();
            s.finish().unwrap();
            assert_eq!(a, std::fs::read(&p).unwrap(), "{c:?}");
        }
    }

    #[test]
    fn exact_multiple_of_the_block_size() {
        let data = sample(2 * GZIP_BLOCK);
        let (a, d) = compress(Compression::Gzip, &data, 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(d.uncompressed_size, data.len() as u64);
    }

    #[test]
    fn zstd_is_valid_and_thread_independent() {
        let data = sample(9 * GZIP_BLOCK);
        let (a, _) = compress(Compression::Zstd, &data, 1);
        let (b, _) = compress(Compression::Zstd, &data, 3);
        assert_eq!(a, b, "zstd output depends on worker count");
        assert_eq!(zstd::decode_all(&a[..]).unwrap(), data);
    }
}
