//! Where the files of `.deb` packages wait between unpacking and the layer
//! writer: an unnamed temporary file on disk (removed by the kernel when the
//! last handle closes), so that peak memory does not grow with package size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha1::Digest as _;

/// One stored file: offset, size and hashes.
#[derive(Clone, Copy, Debug)]
pub struct Stored {
    pub offset: u64,
    pub size: u64,
    pub sha256: [u8; 32],
    pub sha1: [u8; 20],
}

/// An append-only spool file.
#[derive(Debug)]
pub struct Spool {
    file: File,
}

impl Spool {
    /// A new spool in `dir` (on the state directory's disk, not `/tmp`,
    /// which may be memory).
    pub fn new(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        Ok(Spool {
            file: tempfile::tempfile_in(dir)?,
        })
    }

    /// Reads `len` bytes at `offset` into `buf` (which must be that long).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Reads at most `buf.len()` bytes at `offset`.
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// Copies `size` bytes at `offset` to `out` through `buf`.
    pub fn copy_to(
        &self,
        offset: u64,
        size: u64,
        buf: &mut [u8],
        out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut done = 0u64;
        while done < size {
            let k = buf
                .len()
                .min(usize::try_from(size - done).unwrap_or(usize::MAX));
            self.read_at(offset + done, &mut buf[..k])?;
            out(&buf[..k])?;
            done += k as u64;
        }
        Ok(())
    }
}

/// A [`kiln_deb::ContentSink`] appending to a [`Spool`].
pub struct SpoolWriter<'a> {
    spool: &'a Spool,
    end: u64,
    pub stored: Vec<Stored>,
}

impl<'a> SpoolWriter<'a> {
    pub fn new(spool: &'a Spool) -> io::Result<SpoolWriter<'a>> {
        let end = spool.file.metadata()?.len();
        Ok(SpoolWriter {
            spool,
            end,
            stored: Vec::new(),
        })
    }
}

impl kiln_deb::ContentSink for SpoolWriter<'_> {
    fn store(&mut self, _path: &str, _size: u64, r: &mut dyn Read) -> io::Result<u64> {
        let mut a = sha2::Sha256::new();
        let mut b = sha1::Sha1::new();
        let offset = self.end;
        let mut w = io::BufWriter::with_capacity(1 << 20, &self.spool.file);
        // `&File` writes at the file position, which `end` mirrors.
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            a.update(&buf[..n]);
            b.update(&buf[..n]);
            w.write_all(&buf[..n])?;
            size += n as u64;
        }
        w.flush()?;
        self.end += size;
        self.stored.push(Stored {
            offset,
            size,
            sha256: a.finalize().into(),
            sha1: b.finalize().into(),
        });
        Ok(self.stored.len() as u64 - 1)
    }
}
