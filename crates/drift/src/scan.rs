//! The parallel scanner.
//!
//! Work is a shared LIFO stack of jobs (a directory to list or a regular file
//! to hash) drained by `threads` std threads; whichever thread is idle takes
//! the next job, so listing and hashing overlap on every core and a huge
//! directory or a big file never serialises the rest. LIFO order keeps the
//! walk depth-first, which bounds the number of open descriptors: a pending
//! job holds its parent directory's descriptor (shared through an `Arc`), so
//! a 2,000-deep chain holds only a couple at a time and nothing recurses.
//!
//! Every name is resolved one component at a time against its parent's
//! descriptor (`fstatat(AT_SYMLINK_NOFOLLOW)`, `openat(O_NOFOLLOW)`), so
//! symlinks are never followed and path length never matters. Only regular
//! files are opened (with `O_NONBLOCK` too, so a file swapped for a FIFO
//! after the `lstat` cannot block) and the opened inode must be the one that
//! was `lstat`ed. A file is hashed between two `fstat`s; if size, mtime or
//! ctime moved, it is retried once and then reported [`Status::Unstable`].

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use kiln_oci::sync::{lock, wait};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::error::DriftError;
use crate::sys::{self, Stat};
use crate::tree::{Entry, Kind, Meta, Stats, Status, Tree};

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Do not descend into directories on another device than the root
    /// (the mount point itself is still reported). Default true.
    pub same_device: bool,
    /// Worker threads; 0 = one per available core. Default 0.
    pub threads: usize,
    /// Tree paths (e.g. `/proc`) skipped entirely, with everything below.
    pub exclude: Vec<Vec<u8>>,
    /// Read and hash regular files. Default true; false is a metadata
    /// sweep (`lstat` and `readlink` only, no file is opened): files get no
    /// hash, so compare such a tree with
    /// [`crate::CompareOptions::metadata_only`].
    pub hash: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            same_device: true,
            threads: 0,
            exclude: Vec::new(),
            hash: true,
        }
    }
}

/// Walks `root` and hashes every regular file (see the module docs).
pub fn scan(root: &Path, opts: &ScanOptions) -> Result<Tree, DriftError> {
    scan_cached(root, opts, None)
}

/// [`scan`], taking the hash of a file from `cache` instead of reading it
/// when its device, inode, size, mtime and ctime match a cache record.
pub fn scan_cached(
    root: &Path,
    opts: &ScanOptions,
    cache: Option<&Cache>,
) -> Result<Tree, DriftError> {
    let started = Instant::now();
    let started_ns = sys::now_ns();
    let croot = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| DriftError::io(root, io::Error::other("path contains a NUL byte")))?;
    let fd = sys::open_dir_path(&croot).map_err(|e| DriftError::io(root, e))?;
    let st = sys::fstat(fd.as_fd()).map_err(|e| DriftError::io(root, e))?;
    let cache = cache.filter(|c| c.root_id == (st.dev, st.ino));
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let shared = Shared {
        queue: Mutex::new(Queue {
            jobs: vec![Job::Dir {
                open: DirOpen::Ready(fd),
                path: b"/".to_vec(),
                st,
            }],
            active: 0,
        }),
        cv: Condvar::new(),
        opts,
        cache,
        root_dev: st.dev,
    };
    let results: Vec<(Vec<Entry>, Stats)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(|| worker(&shared)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| DriftError::Internal("a scan thread panicked".into()))
            })
            .collect::<Result<_, _>>()
    })?;
    let mut stats = Stats {
        full: cache.is_none() && opts.hash,
        ..Stats::default()
    };
    let mut entries = Vec::with_capacity(results.iter().map(|r| r.0.len()).sum());
    for (e, s) in results {
        entries.extend(e);
        stats.files += s.files;
        stats.dirs += s.dirs;
        stats.bytes_hashed += s.bytes_hashed;
        stats.files_hashed += s.files_hashed;
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    stats.elapsed = started.elapsed();
    Ok(Tree {
        root: root.to_path_buf(),
        root_id: (st.dev, st.ino),
        entries,
        stats,
        started_ns,
    })
}

enum DirOpen {
    Ready(OwnedFd),
    At(Arc<OwnedFd>, CString),
}

enum Job {
    Dir {
        open: DirOpen,
        path: Vec<u8>,
        st: Stat,
    },
    File {
        parent: Arc<OwnedFd>,
        name: CString,
        path: Vec<u8>,
        st: Stat,
    },
}

struct Queue {
    jobs: Vec<Job>,
    active: usize,
}

struct Shared<'a> {
    queue: Mutex<Queue>,
    cv: Condvar,
    opts: &'a ScanOptions,
    cache: Option<&'a Cache>,
    root_dev: u64,
}

const BUF_SIZE: usize = 256 * 1024;

fn worker(sh: &Shared<'_>) -> (Vec<Entry>, Stats) {
    let mut out = Vec::new();
    let mut stats = Stats::default();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut new_jobs = Vec::new();
    loop {
        let job = {
            let mut q = lock(&sh.queue);
            loop {
                if let Some(j) = q.jobs.pop() {
                    q.active += 1;
                    break j;
                }
                if q.active == 0 {
                    sh.cv.notify_all();
                    return (out, stats);
                }
                q = wait(&sh.cv, q);
            }
        };
        match job {
            Job::Dir { open, path, st } => {
                stats.dirs += 1;
                list_dir(sh, open, path, st, &mut out, &mut new_jobs, &mut stats);
            }
            Job::File {
                parent,
                name,
                path,
                st,
            } => {
                out.push(hash_file(&parent, &name, path, st, &mut buf, &mut stats));
            }
        }
        let mut q = lock(&sh.queue);
        let pushed = !new_jobs.is_empty();
        q.jobs.append(&mut new_jobs);
        q.active -= 1;
        let done = q.active == 0 && q.jobs.is_empty();
        drop(q);
        if pushed || done {
            sh.cv.notify_all();
        }
    }
}

fn entry(path: Vec<u8>, kind: Kind, st: &Stat, status: Status) -> Entry {
    Entry {
        path: path.into_boxed_slice(),
        kind,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        sha256: None,
        link: None,
        meta: Meta {
            dev: st.dev,
            ino: st.ino,
            nlink: st.nlink,
            rdev: st.rdev,
            mtime_ns: st.mtime_ns,
            ctime_ns: st.ctime_ns,
        },
        status,
    }
}

fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if dir != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn excluded(opts: &ScanOptions, path: &[u8]) -> bool {
    opts.exclude.iter().any(|x| crate::compare::under(path, x))
}

fn list_dir(
    sh: &Shared<'_>,
    open: DirOpen,
    path: Vec<u8>,
    st: Stat,
    out: &mut Vec<Entry>,
    jobs: &mut Vec<Job>,
    stats: &mut Stats,
) {
    let fd = match open {
        DirOpen::Ready(fd) => fd,
        DirOpen::At(parent, name) => {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
            match sys::open_at(parent.as_fd(), &name, flags) {
                Ok(fd) => fd,
                Err(e) => {
                    out.push(entry(
                        path,
                        Kind::Dir,
                        &st,
                        Status::Unreadable(e.to_string()),
                    ));
                    return;
                }
            }
        }
    };
    // The directory we opened must be the one the parent listed.
    match sys::fstat(fd.as_fd()) {
        Ok(now) if now.dev == st.dev && now.ino == st.ino => {}
        Ok(_) => {
            out.push(entry(path, Kind::Dir, &st, Status::Unstable));
            return;
        }
        Err(e) => {
            out.push(entry(
                path,
                Kind::Dir,
                &st,
                Status::Unreadable(e.to_string()),
            ));
            return;
        }
    }
    let names = match sys::read_dir_names(fd.as_fd()) {
        Ok(n) => n,
        Err(e) => {
            out.push(entry(
                path,
                Kind::Dir,
                &st,
                Status::Unreadable(e.to_string()),
            ));
            return;
        }
    };
    let fd = Arc::new(fd);
    for name in names {
        let cpath = child_path(&path, name.to_bytes());
        if excluded(sh.opts, &cpath) {
            continue;
        }
        let cst = match sys::lstat_at(fd.as_fd(), &name) {
            Ok(s) => s,
            // Removed since it was listed: it is simply not in the tree.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                let zero = Stat {
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    dev: 0,
                    ino: 0,
                    nlink: 0,
                    rdev: 0,
                    mtime_ns: 0,
                    ctime_ns: 0,
                };
                out.push(entry(
                    cpath,
                    Kind::File,
                    &zero,
                    Status::Unreadable(e.to_string()),
                ));
                continue;
            }
        };
        let Some(kind) = Kind::from_mode(cst.mode) else {
            out.push(entry(
                cpath,
                Kind::File,
                &cst,
                Status::Unreadable(format!("unknown file type {:o}", cst.file_type())),
            ));
            continue;
        };
        match kind {
            Kind::Dir => {
                if sh.opts.same_device && cst.dev != sh.root_dev {
                    // A mount point: reported, not entered.
                    stats.dirs += 1;
                    out.push(entry(cpath, Kind::Dir, &cst, Status::Ok));
                } else {
                    jobs.push(Job::Dir {
                        open: DirOpen::At(Arc::clone(&fd), name),
                        path: cpath,
                        st: cst,
                    });
                }
            }
            Kind::File => {
                stats.files += 1;
                if !sh.opts.hash {
                    out.push(entry(cpath, Kind::File, &cst, Status::Ok));
                } else if let Some(h) = sh.cache.and_then(|c| c.lookup(&cpath, &cst)) {
                    let mut e = entry(cpath, Kind::File, &cst, Status::Ok);
                    e.sha256 = Some(h);
                    out.push(e);
                } else {
                    jobs.push(Job::File {
                        parent: Arc::clone(&fd),
                        name,
                        path: cpath,
                        st: cst,
                    });
                }
            }
            Kind::Symlink => {
                let mut e = entry(cpath, Kind::Symlink, &cst, Status::Ok);
                match sys::read_link_at(fd.as_fd(), &name, cst.size) {
                    Ok(t) => e.link = Some(t.into_boxed_slice()),
                    Err(err) => e.status = Status::Unreadable(err.to_string()),
                }
                out.push(e);
            }
            // Special files are reported, never opened.
            _ => out.push(entry(cpath, kind, &cst, Status::Ok)),
        }
    }
    out.push(entry(path, Kind::Dir, &st, Status::Ok));
}

enum HashFail {
    Unstable,
    Io(io::Error),
}

fn hash_file(
    parent: &OwnedFd,
    name: &CString,
    path: Vec<u8>,
    st: Stat,
    buf: &mut [u8],
    stats: &mut Stats,
) -> Entry {
    let mut st = st;
    for attempt in 0..2 {
        if attempt > 0 {
            match sys::lstat_at(parent.as_fd(), name) {
                Ok(s) if s.file_type() == libc::S_IFREG => st = s,
                Ok(_) => break,
                Err(e) => {
                    return entry(path, Kind::File, &st, Status::Unreadable(e.to_string()));
                }
            }
        }
        match hash_once(parent, name, &st, buf, stats) {
            Ok((before, h)) => {
                let mut e = entry(path, Kind::File, &before, Status::Ok);
                e.sha256 = Some(h);
                return e;
            }
            Err(HashFail::Unstable) => continue,
            Err(HashFail::Io(e)) => {
                return entry(path, Kind::File, &st, Status::Unreadable(e.to_string()));
            }
        }
    }
    entry(path, Kind::File, &st, Status::Unstable)
}

fn hash_once(
    parent: &OwnedFd,
    name: &CString,
    st: &Stat,
    buf: &mut [u8],
    stats: &mut Stats,
) -> Result<(Stat, [u8; 32]), HashFail> {
    let base = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = match sys::open_at(parent.as_fd(), name, base | libc::O_NOATIME) {
        // O_NOATIME needs ownership or CAP_FOWNER.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => sys::open_at(parent.as_fd(), name, base),
        r => r,
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(HashFail::Unstable),
        Err(e) => return Err(HashFail::Io(e)),
    };
    let before = sys::fstat(fd.as_fd()).map_err(HashFail::Io)?;
    if before.file_type() != libc::S_IFREG || before.dev != st.dev || before.ino != st.ino {
        // Replaced between lstat and open.
        return Err(HashFail::Unstable);
    }
    if before.size > 128 * 1024 {
        sys::advise_sequential(fd.as_fd());
    }
    let mut file = std::fs::File::from(fd);
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(buf.get(..n).unwrap_or_default());
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HashFail::Io(e)),
        }
    }
    stats.bytes_hashed += total;
    stats.files_hashed += 1;
    let after = sys::fstat(file.as_fd()).map_err(HashFail::Io)?;
    if after.size != before.size
        || after.mtime_ns != before.mtime_ns
        || after.ctime_ns != before.ctime_ns
        || total != before.size
    {
        return Err(HashFail::Unstable);
    }
    Ok((before, hasher.finalize().into()))
}
