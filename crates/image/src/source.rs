//! `[[files]]` sources: walking the build context, normalising metadata,
//! and hashing in parallel with a stat-keyed cache (like git's index), so
//! an unchanged tree is recognised without reading a byte.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use kiln_oci::sync::lock;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use rustix::fs::FileType;

use crate::BuildError;
use crate::hostfs::{self, Meta, Root};
use crate::spec::{FileSpec, Spec};
use crate::tarw::EntryType;
use crate::tree::{self, Content, Node, Origin, Tree};

/// SHA-256 and SHA-1 of a file's content.
type Hashes = ([u8; 32], [u8; 20]);

/// The stat fields that, unchanged, mean the content is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl StatKey {
    pub fn of(m: &fs::Metadata) -> StatKey {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cached {
    key: StatKey,
    sha256: String,
    sha1: String,
}

/// Content hashes of host files keyed by path and stat.
pub struct HashCache {
    path: PathBuf,
    old: HashMap<String, Cached>,
    /// Some lookup missed: the cache needs rewriting.
    dirty: std::sync::atomic::AtomicBool,
}

/// The largest build cache file read back (hash cache, layer and referrer
/// caches): 256 MiB; a larger one is a cache miss.
pub(crate) const CACHE_FILE_LIMIT: u64 = 256 << 20;

impl HashCache {
    /// Load the cache file (a missing or unreadable cache is simply empty).
    pub fn load(path: PathBuf) -> HashCache {
        // kiln's own cache, but read as any file in a directory others may
        // touch: regular, not a link, without blocking, bounded (a miss
        // only costs speed).
        let old = kiln_oci::untrusted::read_capped(
            &path,
            CACHE_FILE_LIMIT,
            kiln_oci::untrusted::Follow::No,
        )
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
        HashCache {
            path,
            old,
            dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Rewrite the cache (atomically) from the hashed files layer, unless
    /// every lookup hit and nothing was added or removed.
    pub fn save(&self, layer: &Tree) -> Result<(), BuildError> {
        let files = layer
            .values()
            .filter(|n| matches!(n.content, Content::Host(..)) && n.kind == EntryType::File);
        if !self.dirty.load(Ordering::Relaxed) && files.clone().count() == self.old.len() {
            return Ok(());
        }
        // Racy-git rule: a file modified in the last two seconds may change
        // again within the same timestamp; do not trust its stat next time.
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let mut map = HashMap::new();
        for n in files {
            if let (Content::Host(h, key), Some(a), Some(b)) = (&n.content, n.sha256, n.sha1)
                && now_ns - key.mtime_ns.max(key.ctime_ns) >= 2_000_000_000
            {
                let c = Cached {
                    key: *key,
                    sha256: hex::encode(a),
                    sha1: hex::encode(b),
                };
                map.insert(h.to_string_lossy().to_string(), c);
            }
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
        }
        let bytes = serde_json::to_vec(&map).map_err(|e| BuildError::Internal(e.to_string()))?;
        kiln_oci::layout::write_atomic(&self.path, &bytes)?;
        Ok(())
    }

    fn lookup(&self, p: &str, key: &StatKey) -> Option<Hashes> {
        let hit = self.old.get(p).filter(|c| c.key == *key).and_then(|c| {
            let mut a = [0u8; 32];
            let mut b = [0u8; 20];
            hex::decode_to_slice(&c.sha256, &mut a).ok()?;
            hex::decode_to_slice(&c.sha1, &mut b).ok()?;
            Some((a, b))
        });
        if hit.is_none() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        hit
    }
}

/// Collect the files layer from the spec's `[[files]]` (metadata only; see
/// [`hash_files`]). `lower` is the filesystem beneath (for symlinked parents).
///
/// Sources are read through [`hostfs`]: the spec directory is opened once,
/// each source is resolved inside it (a symlink leaving it is refused),
/// and every directory below is opened relative to its parent's handle
/// without following symlinks, so nothing outside the spec directory is
/// ever listed or read, even if the tree changes during the build.
pub fn collect(spec: &Spec, lower: &dyn tree::Lookup, threads: usize) -> Result<Tree, BuildError> {
    let root = Root::open(&spec.dir).map_err(|e| BuildError::io(&spec.dir, e))?;
    let mut layer = Tree::new();
    let mut links = Links::new();
    for f in &spec.files {
        let src_err = |m: String| {
            BuildError::Spec(spec.error_at(&f.src_loc, format!("files[{}].src: {m}", f.index)))
        };
        let r = root.resolve(&f.src_text).map_err(|e| match &e {
            hostfs::ResolveError::Io { source, .. } => {
                src_err(format!("{}: {source}", f.src.display()))
            }
            _ => src_err(format!("{:?} {e}", f.src_text)),
        })?;
        let (meta, dir_fd) = root
            .stat(&r)
            .map_err(|e| src_err(format!("{}: {e}", f.src.display())))?;
        let host = root.host(&r.comps);
        let dst = if f.dst.ends_with('/') {
            let base = f
                .src
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            format!("{}{base}", f.dst)
        } else {
            f.dst.clone()
        };
        let is_dir = meta.kind == FileType::Directory;
        if dst == "/" && !is_dir {
            return Err(BuildError::Spec(spec.error_at(
                &f.dst_loc,
                format!(
                    "files[{}].dst: only a directory can be copied to /",
                    f.index
                ),
            )));
        }
        let dst = tree::resolve_parents(lower, &dst).map_err(|m| {
            BuildError::Spec(spec.error_at(&f.dst_loc, format!("files[{}].dst: {m}", f.index)))
        })?;
        let read_link = || root.read_link(&r.comps);
        add_entry(
            spec, f, &host, &dst, &meta, read_link, &mut layer, &mut links,
        )?;
        if let (true, Some(fd)) = (is_dir, dir_fd) {
            walk_parallel(
                spec, f, &root, &r.comps, fd, &dst, &mut layer, &mut links, threads,
            )?;
        }
    }
    // Hard links among copied files stay hard links: the first path (in
    // layer order) carries the content, the others point at it.
    for paths in links.values_mut() {
        if paths.len() < 2 {
            continue;
        }
        paths.sort();
        let first = paths[0].clone();
        for p in &paths[1..] {
            if let Some(n) = layer.get_mut(p) {
                n.kind = EntryType::Hardlink;
                n.link = Some(first.clone());
                n.content = Content::None;
            }
        }
    }
    layer.remove("/");
    tree::add_parents(&mut layer, lower);
    Ok(layer)
}

const MAX_DEPTH: usize = 256;

type Links = HashMap<(u64, u64), Vec<String>>;

/// A directory still to list: its components from the spec directory, its
/// image path and its depth below the source.
type Pending = (Vec<OsString>, String, usize);

/// Walk the directory source of `f` (open as `fd`, at `comps` below the
/// root): its top level here, its subdirectories on `threads` cores,
/// merged into `layer` (conflicts with other `[[files]]` entries are
/// detected at the merge).
#[allow(clippy::too_many_arguments)]
fn walk_parallel(
    spec: &Spec,
    f: &FileSpec,
    root: &Root,
    comps: &[OsString],
    fd: OwnedFd,
    dst: &str,
    layer: &mut Tree,
    links: &mut Links,
    threads: usize,
) -> Result<(), BuildError> {
    let mut top = Tree::new();
    let mut top_links = Links::new();
    let subdirs = walk_level(
        spec,
        f,
        root,
        comps,
        Some(fd),
        dst,
        &mut top,
        &mut top_links,
        0,
    )?;
    // A shared queue of directories: each worker lists one, queues its
    // subdirectories, and keeps its entries in its own tree (merged below),
    // so one huge subtree (usr/share/doc) is spread over every core.
    let queue: Mutex<Vec<Pending>> =
        Mutex::new(subdirs.into_iter().map(|(h, c)| (h, c, 1)).collect());
    let busy = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Mutex<Vec<Result<(Tree, Links), BuildError>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut t = Tree::new();
                let mut l = Links::new();
                let r = loop {
                    if failed.load(Ordering::Relaxed) {
                        break Ok(());
                    }
                    let item = {
                        let mut q = lock(&queue);
                        let it = q.pop();
                        if it.is_some() {
                            busy.fetch_add(1, Ordering::SeqCst);
                        }
                        it
                    };
                    let Some((rel, child, depth)) = item else {
                        if busy.load(Ordering::SeqCst) == 0 {
                            break Ok(());
                        }
                        std::thread::yield_now();
                        continue;
                    };
                    let res = walk_level(spec, f, root, &rel, None, &child, &mut t, &mut l, depth);
                    let res = res.map(|subs| {
                        lock(&queue).extend(subs.into_iter().map(|(h, c)| (h, c, depth + 1)));
                    });
                    busy.fetch_sub(1, Ordering::SeqCst);
                    if let Err(e) = res {
                        failed.store(true, Ordering::Relaxed);
                        break Err(e);
                    }
                };
                lock(&results).push(r.map(|()| (t, l)));
            });
        }
    });
    let mut parts = vec![(top, top_links)];
    for r in results.into_inner().unwrap_or_else(PoisonError::into_inner) {
        parts.push(r?);
    }
    // Nothing else under `dst` yet (the usual case): a linear merge.
    let prefix = format!("{}/", dst.trim_end_matches('/'));
    let clear = layer
        .range(prefix.clone()..)
        .next()
        .is_none_or(|(k, _)| !k.starts_with(&prefix));
    for (mut t, l) in parts {
        if clear {
            layer.append(&mut t);
        } else {
            for (path, node) in t {
                if let Some(old) = layer.get(&path)
                    && !(old.kind == EntryType::Dir && node.kind == EntryType::Dir)
                {
                    return Err(BuildError::Spec(spec.error_at(
                        &f.dst_loc,
                        format!(
                            "files[{}].dst: {path} is written twice by [[files]]",
                            f.index
                        ),
                    )));
                }
                layer.insert(path, node);
            }
        }
        for (k, v) in l {
            links.entry(k).or_default().extend(v);
        }
    }
    Ok(())
}

#[cfg(test)]
type LevelHook = Box<dyn Fn(&Path) + Send + Sync>;

/// Tests: run before each directory is opened (to change the tree mid-walk).
#[cfg(test)]
static BEFORE_LEVEL: Mutex<Option<LevelHook>> = Mutex::new(None);

/// Add the entries of the directory at `comps` (open as `fd` when given,
/// else opened here one component at a time without following symlinks);
/// return its subdirectories.
#[allow(clippy::too_many_arguments)]
fn walk_level(
    spec: &Spec,
    f: &FileSpec,
    root: &Root,
    comps: &[OsString],
    fd: Option<OwnedFd>,
    dst: &str,
    layer: &mut Tree,
    links: &mut Links,
    depth: usize,
) -> Result<Vec<(Vec<OsString>, String)>, BuildError> {
    let dir = root.host(comps);
    if depth > MAX_DEPTH {
        return Err(BuildError::Source {
            path: dir,
            message: format!("directory nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    #[cfg(test)]
    if let Some(h) = lock(&BEFORE_LEVEL).as_ref() {
        h(&dir);
    }
    let fd = match fd {
        Some(fd) => fd,
        None => root.open_dir(comps).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => BuildError::Source {
                path: dir.clone(),
                message: "is no longer a directory (replaced by a symlink or a file during the \
                          build); refusing to follow it"
                    .into(),
            },
            _ => BuildError::io(&dir, e),
        })?,
    };
    let entries = hostfs::list(&fd).map_err(|e| BuildError::io(&dir, e))?;
    let mut subdirs = Vec::new();
    for (name, meta) in entries {
        let host = dir.join(&name);
        let Some(n) = name.to_str() else {
            return Err(BuildError::Source {
                path: host,
                message: "the file name is not UTF-8; image paths must be UTF-8".into(),
            });
        };
        let child = if dst == "/" {
            format!("/{n}")
        } else {
            format!("{dst}/{n}")
        };
        let read_link = || hostfs::read_link(&fd, &name);
        add_entry(spec, f, &host, &child, &meta, read_link, layer, links)?;
        if meta.kind == FileType::Directory {
            let mut sub = comps.to_vec();
            sub.push(name);
            subdirs.push((sub, child));
        }
    }
    Ok(subdirs)
}

#[allow(clippy::too_many_arguments)]
fn add_entry(
    spec: &Spec,
    f: &FileSpec,
    host: &Path,
    dst: &str,
    meta: &Meta,
    read_link: impl FnOnce() -> std::io::Result<OsString>,
    layer: &mut Tree,
    links: &mut Links,
) -> Result<(), BuildError> {
    let (uid, gid) = f.owner.unwrap_or((0, 0));
    let node = match meta.kind {
        FileType::Directory => Node::dir(f.dir_mode.unwrap_or(0o755), uid, gid, Origin::Spec),
        FileType::Symlink => {
            let target = read_link().map_err(|e| BuildError::io(host, e))?;
            let target = target.to_str().ok_or_else(|| BuildError::Source {
                path: host.to_path_buf(),
                message: "the symlink target is not UTF-8".into(),
            })?;
            Node {
                kind: EntryType::Symlink,
                mode: 0o777,
                uid,
                gid,
                size: 0,
                sha256: None,
                sha1: None,
                link: Some(target.to_string()),
                origin: Origin::Spec,
                content: Content::None,
            }
        }
        FileType::RegularFile => {
            // Normalise: the spec's mode, else 0755 if the source is executable
            // by anyone, else 0644 — so the umask cannot change the digest.
            let mode = f
                .mode
                .unwrap_or(if meta.mode & 0o111 != 0 { 0o755 } else { 0o644 });
            if meta.nlink > 1 {
                links
                    .entry((meta.key.dev, meta.key.ino))
                    .or_default()
                    .push(dst.to_string());
            }
            Node {
                kind: EntryType::File,
                mode,
                uid,
                gid,
                size: meta.key.size,
                sha256: None,
                sha1: None,
                link: None,
                origin: Origin::Spec,
                content: Content::Host(host.to_path_buf(), meta.key),
            }
        }
        kind => {
            let what = match kind {
                FileType::Fifo => "a fifo",
                FileType::Socket => "a socket",
                FileType::BlockDevice | FileType::CharacterDevice => "a device node",
                _ => "of an unknown type",
            };
            return Err(BuildError::Spec(spec.error_at(
                &f.src_loc,
                format!(
                    "files[{}].src: {} is {what}; only regular files, directories and symlinks can be copied",
                    f.index,
                    host.display()
                ),
            )));
        }
    };
    // One traversal: insert, or find what is already there.
    match layer.entry(dst.to_string()) {
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(node);
        }
        std::collections::btree_map::Entry::Occupied(mut o) => {
            if !(o.get().kind == EntryType::Dir && node.kind == EntryType::Dir) {
                return Err(BuildError::Spec(spec.error_at(
                    &f.dst_loc,
                    format!(
                        "files[{}].dst: {dst} is written twice by [[files]]",
                        f.index
                    ),
                )));
            }
            o.insert(node);
        }
    }
    Ok(())
}

/// Fill in SHA-256 and SHA-1 of every host file of `layer`: from the
/// stat-keyed cache, else by reading them on `threads` cores. (Hashing
/// inside the layer write instead, to read each file once, measured slower
/// on /usr/share: the separate pass uses both cores fully.)
pub fn hash_files(
    layer: &mut Tree,
    cache: &HashCache,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), BuildError> {
    let mut work: Vec<(String, PathBuf, StatKey)> = Vec::new();
    for (p, n) in layer.iter_mut() {
        if let (EntryType::File, Content::Host(h, k)) = (&n.kind, &n.content) {
            let key_str = h.to_string_lossy();
            match cache.lookup(&key_str, k) {
                Some((a, b)) => {
                    n.sha256 = Some(a);
                    n.sha1 = Some(b);
                    progress(k.size);
                }
                None => work.push((p.clone(), h.clone(), *k)),
            }
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Hashes)>> = Mutex::new(Vec::with_capacity(work.len()));
    let first_err: Mutex<Option<BuildError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, host, key)) = work.get(i) else {
                        break;
                    };
                    match hash_host(host, key, &mut buf) {
                        Ok(h) => {
                            progress(key.size);
                            lock(&results).push((i, h));
                        }
                        Err(e) => {
                            lock(&first_err).get_or_insert(e);
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_err
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        return Err(e);
    }
    for (i, (a, b)) in results.into_inner().unwrap_or_else(PoisonError::into_inner) {
        if let Some(n) = layer.get_mut(&work[i].0) {
            n.sha256 = Some(a);
            n.sha1 = Some(b);
        }
    }
    propagate_hardlinks(layer);
    Ok(())
}

/// Hard links carry their target's hashes and size (for the manifest and SBOM).
fn propagate_hardlinks(layer: &mut Tree) {
    let hl: Vec<(String, String)> = layer
        .iter()
        .filter(|(_, n)| n.kind == EntryType::Hardlink && n.content.is_none())
        .filter_map(|(p, n)| n.link.clone().map(|l| (p.clone(), l)))
        .collect();
    for (p, target) in hl {
        let (a, b, size) = match layer.get(&target) {
            Some(t) => (t.sha256, t.sha1, t.size),
            None => continue,
        };
        if let Some(n) = layer.get_mut(&p) {
            n.sha256 = a;
            n.sha1 = b;
            n.size = size;
        }
    }
}

fn hash_host(host: &Path, key: &StatKey, buf: &mut [u8]) -> Result<Hashes, BuildError> {
    let mut f = open_host(host, key)?;
    let mut a = sha2::Sha256::new();
    let mut b = sha1::Sha1::new();
    let mut n = 0u64;
    loop {
        let k = f.read(buf).map_err(|e| BuildError::io(host, e))?;
        if k == 0 {
            break;
        }
        a.update(&buf[..k]);
        b.update(&buf[..k]);
        n += k as u64;
    }
    let after = f.metadata().map_err(|e| BuildError::io(host, e))?;
    if n != key.size || StatKey::of(&after) != *key {
        return Err(BuildError::Source {
            path: host.to_path_buf(),
            message: "the file changed while it was being read; build again".into(),
        });
    }
    Ok((a.finalize().into(), b.finalize().into()))
}

/// Open a host file recorded by [`collect`] for reading: by its
/// symlink-free path without following any symlink, without blocking on a
/// FIFO swapped in, and only if it is still the inode the walk recorded.
pub fn open_host(host: &Path, key: &StatKey) -> Result<File, BuildError> {
    hostfs::open_host(host, key).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => BuildError::Source {
            path: host.to_path_buf(),
            message: e.to_string(),
        },
        _ if e.raw_os_error() == Some(libc::ELOOP) => BuildError::Source {
            path: host.to_path_buf(),
            message: "a symlink appeared in its path during the build; refusing to follow it"
                .into(),
        },
        _ => BuildError::io(host, e),
    })
}

impl Content {
    fn is_none(&self) -> bool {
        matches!(self, Content::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A spec directory copying `tree/`, and a secret outside it.
    fn fixture() -> (tempfile::TempDir, Spec, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let spec_dir = base.join("spec");
        fs::create_dir_all(spec_dir.join("tree/sub/deeper")).unwrap();
        fs::write(spec_dir.join("tree/a"), "a").unwrap();
        fs::write(spec_dir.join("tree/sub/b"), "b").unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret"), "host secret").unwrap();
        let text =
            "[image]\nname = \"t\"\ntag = \"1\"\n\n[[files]]\nsrc = \"tree/\"\ndst = \"/t\"\n";
        let path = spec_dir.join("kiln.toml");
        fs::write(&path, text).unwrap();
        let spec = Spec::parse(&path, text).unwrap();
        (t, spec, base.join("outside"))
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_mid_walk_is_not_followed() {
        let (_t, spec, outside) = fixture();
        let sub = spec.dir.join("tree/sub");
        let swapped = std::sync::atomic::AtomicBool::new(false);
        let target = sub.clone();
        let out = outside.clone();
        // Between listing `tree/` (which saw `sub` as a directory) and
        // opening `sub`, swap it for a symlink to a directory outside.
        *BEFORE_LEVEL.lock().unwrap() = Some(Box::new(move |dir: &Path| {
            if dir == target && !swapped.swap(true, Ordering::SeqCst) {
                fs::rename(&target, target.with_extension("orig")).unwrap();
                symlink(&out, &target).unwrap();
            }
        }));
        let r = collect(&spec, &Tree::new(), 1);
        *BEFORE_LEVEL.lock().unwrap() = None;
        match r {
            Ok(layer) => panic!(
                "the walk followed the swapped symlink: {:?}",
                layer.keys().collect::<Vec<_>>()
            ),
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("tree/sub"), "{m}");
                assert!(m.contains("no longer a directory"), "{m}");
            }
        }
    }

    #[test]
    fn a_file_replaced_by_a_fifo_or_a_link_after_the_walk_is_refused() {
        let (_t, spec, outside) = fixture();
        let mut layer = collect(&spec, &Tree::new(), 1).unwrap();
        assert!(layer.contains_key("/t/sub/b"));
        let cache = HashCache::load(spec.dir.join("no-cache.json"));
        // A FIFO in place of a file: refused, without blocking on the open.
        let a = spec.dir.join("tree/a");
        fs::remove_file(&a).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &a, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
        let e = hash_files(&mut layer, &cache, 1, &|_| {}).unwrap_err();
        assert!(e.to_string().contains("regular file"), "{e}");
        // A parent directory replaced by a symlink to outside holding a
        // file of the same name.
        fs::remove_file(&a).unwrap();
        fs::write(&a, "a").unwrap();
        let mut layer = collect(&spec, &Tree::new(), 1).unwrap();
        let sub = spec.dir.join("tree/sub");
        fs::rename(&sub, sub.with_extension("orig")).unwrap();
        fs::write(outside.join("b"), "b").unwrap();
        symlink(&outside, &sub).unwrap();
        let e = hash_files(&mut layer, &cache, 1, &|_| {}).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
    }
}
