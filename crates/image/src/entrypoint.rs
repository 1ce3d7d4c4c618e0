//! Can the image's entrypoint start? Checked at build time, inside the
//! image tree only (never the host), so that an image whose program cannot
//! be executed fails to build instead of failing at `exec`.
//!
//! - `argv[0]` is found as the runtime would: a path, or a name looked up
//!   in the image's `PATH` (from the config's `Env`, else the default).
//! - A `#!` script's interpreter must exist and is itself checked (and for
//!   `#!/usr/bin/env NAME`, NAME is looked up in `PATH` too).
//! - An ELF program must match the image's architecture (machine and
//!   class); its `PT_INTERP` must exist and be a matching ELF; its
//!   `DT_NEEDED` libraries must resolve, transitively, in the order the
//!   dynamic loader uses without an `ld.so.cache` (ldconfig never runs):
//!   `DT_RPATH` (when there is no `DT_RUNPATH`; with the executable's own
//!   `DT_RPATH` inherited), `LD_LIBRARY_PATH` from the config, `DT_RUNPATH`,
//!   the directories named by `/etc/ld.so.conf` and `/etc/ld.so.conf.d`,
//!   then the architecture's default directories. `$ORIGIN` expands to
//!   the directory of the object. A candidate of another machine or class
//!   is skipped, as the loader does.
//!
//! Every lookup follows symlinks within the image tree. Every read is
//! bounded: ELF parsing reads only the headers, program headers, dynamic
//! segment and dynamic string table (each capped), scripts their first line.
//!
//! File contents may be unavailable at first (files of the base image are
//! only in its compressed layers): a check then returns the paths it needs
//! as [`Outcome::Pending`], the caller fetches them in one pass, and runs
//! the check again. Errors that could depend on a pending file are not
//! reported until it is known.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

use object::elf;

use crate::tarw::EntryType;
use crate::tree::{self, Lookup, Node};

/// A seekable byte source.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Access to file contents and directory listings of the image.
pub trait Contents {
    /// The bytes of the regular file at `path` (its `node` given), or
    /// `Ok(None)` when they are not available yet.
    fn open(
        &self,
        path: &str,
        node: &Node,
    ) -> Result<Option<Box<dyn ReadSeek + '_>>, EntrypointError>;
    /// The names of the entries directly in directory `dir`.
    fn list(&self, dir: &str) -> Vec<String>;
}

/// What to check.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// The image's architecture (`amd64`, `arm64`, ...).
    pub arch: &'a str,
    /// The program: `entrypoint[0]`, or `cmd[0]` without an entrypoint.
    pub argv0: &'a str,
    /// `PATH` from the config's `Env`.
    pub path: Option<&'a str>,
    /// `LD_LIBRARY_PATH` from the config's `Env`.
    pub ld_library_path: Option<&'a str>,
    /// The config's working directory.
    pub workdir: Option<&'a str>,
}

/// The result of one check round.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The entrypoint can start.
    Ok,
    /// These files' contents are needed to decide.
    Pending(BTreeSet<String>),
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Largest dynamic segment or dynamic string table read.
const MAX_DYNAMIC: u64 = 16 << 20;
/// Nested `#!` interpreters the kernel follows.
const MAX_SCRIPT_DEPTH: usize = 4;
/// Most bytes read of one ld.so.conf file (the rest is ignored).
const MAX_CONF_FILE: u64 = 1 << 20;
/// Most bytes of ld.so.conf files read in all.
const MAX_CONF_BYTES: u64 = 4 << 20;
/// Most `include` lines followed in the ld.so.conf files.
const MAX_CONF_INCLUDES: usize = 1024;
/// Most files matched by the ld.so.conf includes (and ld.so.conf.d) in all.
const MAX_CONF_FILES: usize = 4096;
/// Most distinct library directories taken from ld.so.conf.
const MAX_CONF_DIRS: usize = 4096;
/// Most `DT_NEEDED` entries resolved in one check.
const MAX_NEEDED: usize = 65_536;
/// Most search-directory entries looked at while resolving libraries.
const MAX_PROBES: usize = 1 << 20;

mod elfinfo;
mod error;
use elfinfo::{ElfInfo, Machine, default_dirs, machine_name, machine_of, parse_elf};
pub use error::{ElfError, EntrypointError};
use error::{elf_err, read_err, refused};

/// A regular file found in the image: its real path and node.
struct Found<'a> {
    real: String,
    node: &'a Node,
}

/// Resolves `path` within the image, following symlinks (also in its
/// parents) and hard links; `None` when nothing is there.
fn follow<'a>(fs: &'a dyn Lookup, path: &str) -> Result<Option<Found<'a>>, EntrypointError> {
    let mut cur = tree::lexical_join("/", path);
    for _ in 0..40 {
        cur = tree::resolve_parents(fs, &cur)?;
        let Some(n) = fs.node(&cur) else {
            return Ok(None);
        };
        match n.kind {
            EntryType::Symlink => {
                let t = n.link.as_deref().unwrap_or("");
                let base = if t.starts_with('/') {
                    "/"
                } else {
                    tree::parent(&cur).unwrap_or("/")
                };
                cur = tree::lexical_join(base, t);
            }
            EntryType::Hardlink => {
                let t = n.link.clone().unwrap_or_default();
                let target = fs.node(&t).filter(|t| t.kind == EntryType::File);
                return Ok(target.map(|node| Found { real: t, node }));
            }
            _ => return Ok(Some(Found { real: cur, node: n })),
        }
    }
    Err(crate::tree::SymlinkLoop(path.into()).into())
}

struct Run<'a> {
    fs: &'a dyn Lookup,
    contents: &'a dyn Contents,
    target: &'a Target<'a>,
    m: Machine,
    pending: RefCell<BTreeSet<String>>,
    loaded: RefCell<HashSet<String>>,
    conf_dirs: RefCell<Option<Rc<[String]>>>,
    /// Parsed library candidates by real path (`None`: not a usable ELF).
    elves: RefCell<HashMap<String, Option<Rc<ElfInfo>>>>,
    /// `DT_NEEDED` entries resolved so far.
    needed: Cell<usize>,
    /// Search-directory entries looked at so far.
    probes: Cell<usize>,
}

/// Checks that `target` can start in the image (`fs` and its `contents`).
pub fn check(
    fs: &dyn Lookup,
    contents: &dyn Contents,
    target: &Target,
) -> Result<Outcome, EntrypointError> {
    let m = machine_of(target.arch).ok_or_else(|| {
        refused(format!(
            "architecture {} is not known to the check",
            target.arch
        ))
    })?;
    let run = Run {
        fs,
        contents,
        target,
        m,
        pending: RefCell::new(BTreeSet::new()),
        loaded: RefCell::new(HashSet::new()),
        conf_dirs: RefCell::new(None),
        elves: RefCell::new(HashMap::new()),
        needed: Cell::new(0),
        probes: Cell::new(0),
    };
    let prog = run.find_program(target.argv0)?;
    if let Some(prog) = prog {
        run.exec(target.argv0, &prog, 0)?;
    }
    let pending = run.pending.into_inner();
    Ok(if pending.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Pending(pending)
    })
}

impl<'a> Run<'a> {
    fn pending(&self) -> bool {
        !self.pending.borrow().is_empty()
    }

    fn open(&self, f: &Found<'_>) -> Result<Option<Box<dyn ReadSeek + 'a>>, EntrypointError> {
        let r = self.contents.open(&f.real, f.node)?;
        if r.is_none() {
            self.pending.borrow_mut().insert(f.real.clone());
        }
        Ok(r)
    }

    /// `argv[0]` as `execvp` finds it.
    fn find_program(&self, argv0: &str) -> Result<Option<Found<'a>>, EntrypointError> {
        if argv0.contains('/') {
            let abs = if argv0.starts_with('/') {
                argv0.to_string()
            } else {
                tree::lexical_join(self.target.workdir.unwrap_or("/"), argv0)
            };
            return match follow(self.fs, &abs)? {
                Some(f) => Ok(Some(f)),
                None => Err(refused(format!("{argv0} is not in the image"))),
            };
        }
        let path = self.target.path.unwrap_or(DEFAULT_PATH);
        for dir in path.split(':').filter(|d| d.starts_with('/')) {
            if let Some(f) = follow(self.fs, &format!("{dir}/{argv0}"))?
                && f.node.kind == EntryType::File
                && f.node.mode & 0o111 != 0
            {
                return Ok(Some(f));
            }
        }
        Err(refused(format!(
            "{argv0} is not found in the image's PATH ({path})"
        )))
    }

    /// Checks that the file `f` (reached as `shown`) can be executed.
    fn exec(&self, shown: &str, f: &Found<'_>, depth: usize) -> Result<(), EntrypointError> {
        if f.node.kind != EntryType::File {
            return Err(refused(format!("{shown} is not a regular file")));
        }
        if f.node.mode & 0o111 == 0 {
            return Err(refused(format!(
                "{shown} is not executable (mode {:o})",
                f.node.mode
            )));
        }
        let Some(mut r) = self.open(f)? else {
            return Ok(());
        };
        let mut head = [0u8; 256];
        let n = read_up_to(&mut r, &mut head).map_err(read_err(shown))?;
        let head = &head[..n];
        if head.starts_with(b"#!") {
            return self.script(shown, head, depth);
        }
        if !head.starts_with(b"\x7fELF") {
            return Err(refused(format!(
                "{shown} is neither an ELF executable nor a #! script"
            )));
        }
        r.seek(SeekFrom::Start(0)).map_err(read_err(shown))?;
        let info = parse_elf(r).map_err(elf_err(shown))?;
        self.compatible(shown, &info)?;
        if !matches!(info.e_type, elf::ET_EXEC | elf::ET_DYN) {
            return Err(refused(format!(
                "{shown} is an ELF file but not an executable"
            )));
        }
        if let Some(interp) = &info.interp {
            match follow(self.fs, interp)? {
                None => {
                    return Err(refused(format!(
                        "{shown} needs the program interpreter {interp} (PT_INTERP), which is not in the image"
                    )));
                }
                Some(loader) => {
                    if let Some(r) = self.open(&loader)? {
                        let li = parse_elf(r).map_err(elf_err(interp))?;
                        self.compatible(interp, &li)?;
                    }
                }
            }
        }
        self.libraries(shown, &f.real, Rc::new(info))
    }

    fn script(&self, shown: &str, head: &[u8], depth: usize) -> Result<(), EntrypointError> {
        if depth >= MAX_SCRIPT_DEPTH {
            return Err(refused(format!(
                "{shown}: too many levels of #! interpreters"
            )));
        }
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        if line.len() == head.len() - 2 && head.len() == 256 {
            return Err(refused(format!("{shown}: the #! line is too long")));
        }
        let line = String::from_utf8_lossy(line);
        let mut words = line.trim().splitn(2, [' ', '\t']);
        let interp = words.next().unwrap_or("").to_string();
        let arg = words.next().map(str::trim).unwrap_or("");
        if interp.is_empty() {
            return Err(refused(format!("{shown}: empty #! line")));
        }
        let abs = tree::lexical_join(self.target.workdir.unwrap_or("/"), &interp);
        let Some(f) = follow(self.fs, &abs)? else {
            return Err(refused(format!(
                "{shown} is a script for {interp}, which is not in the image"
            )));
        };
        self.exec(&interp, &f, depth + 1)?;
        // `#!/usr/bin/env NAME`: NAME is looked up in PATH at run time.
        if interp.rsplit('/').next() == Some("env")
            && !arg.is_empty()
            && !arg.starts_with('-')
            && !arg.contains('=')
        {
            let name = arg.split_whitespace().next().unwrap_or(arg);
            if let Some(p) = self.find_program(name).map_err(|e| EntrypointError::Via {
                what: format!("{shown} runs {name} through env"),
                source: Box::new(e),
            })? {
                self.exec(name, &p, depth + 1)?;
            }
        }
        Ok(())
    }

    fn compatible(&self, shown: &str, info: &ElfInfo) -> Result<(), EntrypointError> {
        if info.machine != self.m.machine || info.class64 != self.m.class64 {
            return Err(refused(format!(
                "{shown} is a {}-bit {} ELF, but the image is {} ({}-bit {})",
                if info.class64 { 64 } else { 32 },
                machine_name(info.machine),
                self.target.arch,
                if self.m.class64 { 64 } else { 32 },
                machine_name(self.m.machine)
            )));
        }
        Ok(())
    }

    /// Resolves every `DT_NEEDED` of the executable `exe` (at `exe_real`),
    /// transitively, depth first as the loader would. An explicit stack, not
    /// recursion: a dependency chain as long as an image can hold must not
    /// overflow the stack.
    fn libraries(
        &self,
        shown: &str,
        exe_real: &str,
        exe: Rc<ElfInfo>,
    ) -> Result<(), EntrypointError> {
        let conf = self.conf_dirs()?;
        let defaults = default_dirs(&self.m);
        let mut stack = vec![Frame {
            shown: shown.to_string(),
            real: exe_real.to_string(),
            info: exe.clone(),
            next: 0,
        }];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.info.needed.get(top.next).cloned() else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let top = &*top;
            self.needed.set(self.needed.get() + 1);
            if self.needed.get() > MAX_NEEDED {
                return Err(refused(format!(
                    "{} needs more than {MAX_NEEDED} libraries (DT_NEEDED) in all",
                    self.target.argv0
                )));
            }
            let origin = tree::parent(&top.real).unwrap_or("/");
            let dirs = self.search_dirs(&top.real, &top.info, &exe, exe_real, &conf, &defaults)?;
            let candidates: Vec<String> = if name.contains('/') {
                vec![tree::lexical_join(origin, &name)]
            } else {
                dirs.iter().map(|d| format!("{d}/{name}")).collect()
            };
            let mut waiting = false;
            let mut found = None;
            for c in &candidates {
                let Some(f) = follow(self.fs, c)? else {
                    continue;
                };
                if f.node.kind != EntryType::File {
                    continue;
                }
                match self.elf_info(&f)? {
                    Probe::Pending => waiting = true,
                    Probe::Elf(info)
                        if info.machine == self.m.machine && info.class64 == self.m.class64 =>
                    {
                        found = Some((f.real, info));
                        break;
                    }
                    Probe::Elf(_) | Probe::Bad => {}
                }
            }
            match found {
                Some((lib_real, info)) => {
                    if self.loaded.borrow_mut().insert(lib_real.clone()) {
                        stack.push(Frame {
                            shown: name,
                            real: lib_real,
                            info,
                            next: 0,
                        });
                    }
                }
                None if waiting || self.pending() => {}
                None => {
                    return Err(refused(format!(
                        "{} needs {name} (DT_NEEDED), which is not in the image for {} (searched {})",
                        top.shown,
                        self.target.arch,
                        dirs.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// The directories searched for the libraries of `obj` (at `real`), in
    /// order and without repeats: its `DT_RPATH` (and the executable's),
    /// `LD_LIBRARY_PATH`, its `DT_RUNPATH`, ld.so.conf, the defaults. Each
    /// entry looked at counts against [`MAX_PROBES`].
    fn search_dirs(
        &self,
        real: &str,
        obj: &ElfInfo,
        exe: &ElfInfo,
        exe_real: &str,
        conf: &[String],
        defaults: &[String],
    ) -> Result<Vec<String>, EntrypointError> {
        let origin = tree::parent(real).unwrap_or("/");
        let exe_origin = tree::parent(exe_real).unwrap_or("/");
        let mut all: Vec<(&str, &str)> = Vec::new();
        if obj.runpath.is_empty() {
            all.extend(obj.rpath.iter().map(|d| (d.as_str(), origin)));
            if real != exe_real && exe.runpath.is_empty() {
                all.extend(exe.rpath.iter().map(|d| (d.as_str(), exe_origin)));
            }
        }
        if let Some(l) = self.target.ld_library_path {
            all.extend(l.split([':', ';']).map(|d| (d, origin)));
        }
        all.extend(obj.runpath.iter().map(|d| (d.as_str(), origin)));
        let fixed = conf.len() + defaults.len();
        self.probes
            .set(self.probes.get().saturating_add(all.len() + fixed));
        if self.probes.get() > MAX_PROBES {
            return Err(refused(format!(
                "resolving the libraries of {} looks in more than {MAX_PROBES} directories in all",
                self.target.argv0
            )));
        }
        let mut seen = HashSet::new();
        let mut dirs = Vec::new();
        let expanded = all.into_iter().filter_map(|(d, o)| expand(d, o));
        for d in expanded.chain(conf.iter().chain(defaults).cloned()) {
            if seen.insert(d.clone()) {
                dirs.push(d);
            }
        }
        Ok(dirs)
    }

    /// The ELF headers of the library candidate `f`, parsed once per run.
    fn elf_info(&self, f: &Found<'_>) -> Result<Probe, EntrypointError> {
        if let Some(cached) = self.elves.borrow().get(&f.real) {
            return Ok(cached.clone().map_or(Probe::Bad, Probe::Elf));
        }
        let Some(r) = self.open(f)? else {
            return Ok(Probe::Pending);
        };
        let info = parse_elf(r).ok().map(Rc::new);
        self.elves.borrow_mut().insert(f.real.clone(), info.clone());
        Ok(info.map_or(Probe::Bad, Probe::Elf))
    }

    /// Directories named by `/etc/ld.so.conf` (with its `include`s) and the
    /// `*.conf` files of `/etc/ld.so.conf.d`, without repeats.
    fn conf_dirs(&self) -> Result<Rc<[String]>, EntrypointError> {
        if let Some(d) = self.conf_dirs.borrow().as_ref() {
            return Ok(d.clone());
        }
        let mut conf = Conf::default();
        self.conf_file("/etc/ld.so.conf", &mut conf, 0)?;
        for f in self.glob("/etc/ld.so.conf.d/*.conf", &mut conf)? {
            self.conf_file(&f, &mut conf, 0)?;
        }
        let dirs: Rc<[String]> = conf.dirs.into();
        *self.conf_dirs.borrow_mut() = Some(dirs.clone());
        Ok(dirs)
    }

    /// Reads one ld.so.conf file (reached as `path`), following its
    /// `include`s. A file is read once for each directory its relative
    /// `include`s are resolved against, however many names (links,
    /// aliased directories) reach it; every kind of work is capped.
    fn conf_file(&self, path: &str, conf: &mut Conf, depth: usize) -> Result<(), EntrypointError> {
        if depth > 8 {
            return Ok(());
        }
        let Some(f) = follow(self.fs, path)? else {
            return Ok(());
        };
        if f.node.kind != EntryType::File {
            return Ok(());
        }
        let base = tree::parent(path).unwrap_or("/");
        let base_real = follow_dir(self.fs, base).unwrap_or_else(|| base.to_string());
        if !conf.files.insert((f.real.clone(), base_real)) {
            return Ok(());
        }
        let Some(r) = self.open(&f)? else {
            return Ok(());
        };
        let left = MAX_CONF_BYTES - conf.bytes;
        let mut text = String::new();
        r.take(MAX_CONF_FILE.min(left + 1))
            .read_to_string(&mut text)
            .map_err(read_err(path))?;
        conf.bytes += text.len() as u64;
        if conf.bytes > MAX_CONF_BYTES {
            return Err(refused(format!(
                "{path}: the ld.so.conf files are larger than {MAX_CONF_BYTES} bytes in all"
            )));
        }
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include") {
                let pattern = pattern.trim();
                if pattern.is_empty() {
                    continue;
                }
                conf.includes += 1;
                if conf.includes > MAX_CONF_INCLUDES {
                    return Err(refused(format!(
                        "{path}: more than {MAX_CONF_INCLUDES} include lines in the ld.so.conf files"
                    )));
                }
                let pattern = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("{}/{pattern}", tree::parent(path).unwrap_or(""))
                };
                for p in self.glob(&pattern, conf)? {
                    self.conf_file(&p, conf, depth + 1)?;
                }
            } else if line.starts_with('/') {
                // `dir=TYPE` (libc4/5 hints) is ignored, as by ldconfig.
                let dir = line.split('=').next().unwrap_or(line).trim_end_matches('/');
                if dir.is_empty() {
                    continue;
                }
                let dir = tree::lexical_join("/", dir);
                if conf.seen_dirs.insert(dir.clone()) {
                    if conf.dirs.len() >= MAX_CONF_DIRS {
                        return Err(refused(format!(
                            "{path}: the ld.so.conf files name more than {MAX_CONF_DIRS} library directories"
                        )));
                    }
                    conf.dirs.push(dir);
                }
            }
        }
        Ok(())
    }

    /// Matches a pattern whose last component may hold `*` and `?`, sorted.
    /// Directory listings are kept for the ld.so.conf pass; the files
    /// matched count against [`MAX_CONF_FILES`].
    fn glob(&self, pattern: &str, conf: &mut Conf) -> Result<Vec<String>, EntrypointError> {
        let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let dir = if dir.is_empty() { "/" } else { dir };
        let Some(resolved) = follow_dir(self.fs, dir) else {
            return Ok(Vec::new());
        };
        let names = conf
            .listings
            .entry(resolved)
            .or_insert_with_key(|d| self.contents.list(d).into())
            .clone();
        let mut out: Vec<String> = names
            .iter()
            .filter(|n| wildcard(name.as_bytes(), n.as_bytes()))
            .map(|n| format!("{}/{n}", dir.trim_end_matches('/')))
            .collect();
        conf.matched += out.len();
        if conf.matched > MAX_CONF_FILES {
            return Err(refused(format!(
                "{pattern}: the ld.so.conf includes match more than {MAX_CONF_FILES} files in all"
            )));
        }
        out.sort();
        Ok(out)
    }
}

/// One object whose `DT_NEEDED` entries are being resolved.
struct Frame {
    /// How it was reached (the program, or the library's needed name).
    shown: String,
    real: String,
    info: Rc<ElfInfo>,
    /// The index of its next `DT_NEEDED` entry.
    next: usize,
}

/// A library candidate.
enum Probe {
    /// Its contents are not available yet.
    Pending,
    /// Not an ELF file the loader could use.
    Bad,
    Elf(Rc<ElfInfo>),
}

/// The state of one pass over ld.so.conf.
#[derive(Default)]
struct Conf {
    /// The directories named, in order, and the same as a set.
    dirs: Vec<String>,
    seen_dirs: HashSet<String>,
    /// Files read: (real path, real directory of relative includes).
    files: HashSet<(String, String)>,
    /// Directory listings by real path.
    listings: HashMap<String, Rc<[String]>>,
    bytes: u64,
    includes: usize,
    matched: usize,
}

/// The real path of directory `dir`, following links.
fn follow_dir(fs: &dyn Lookup, dir: &str) -> Option<String> {
    if dir == "/" {
        return Some("/".into());
    }
    let f = follow(fs, dir).ok()??;
    (f.node.kind == EntryType::Dir).then_some(f.real)
}

/// `*` and `?` matching, as `glob(3)` for one component. Iterative: on a
/// mismatch, the last `*` takes one more byte and matching resumes after
/// it, so the time is O(pattern × name) for any input (a recursive matcher
/// is exponential in the number of `*`s).
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // The position after the last `*` seen, and where in `s` it resumes.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, si));
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((after, from)) => {
                    pi = after;
                    si = from + 1;
                    star = Some((after, from + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Expands `$ORIGIN` / `${ORIGIN}`; entries with other tokens or relative
/// paths are skipped (the loader would resolve them against the process's
/// working directory, which is not part of the image).
fn expand(dir: &str, origin: &str) -> Option<String> {
    let d = dir.replace("${ORIGIN}", origin).replace("$ORIGIN", origin);
    if d.contains('$') || !d.starts_with('/') {
        return None;
    }
    Some(tree::lexical_join("/", &d))
}

use kiln_oci::untrusted::read_full as read_up_to;

/// Positional reads.
trait At {
    fn at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl At for std::fs::File {
    fn at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl At for std::sync::Arc<crate::spool::Spool> {
    fn at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.pread(buf, offset)
    }
}

impl At for &crate::spool::Spool {
    fn at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.pread(buf, offset)
    }
}

/// `len` bytes of `f` from `start`, as a seekable reader.
struct Range<F> {
    f: F,
    start: u64,
    len: u64,
    pos: u64,
}

impl<F: At> Read for Range<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let k = self.f.at(&mut buf[..n], self.start + self.pos)?;
        self.pos += k as u64;
        Ok(k)
    }
}

impl<F> Seek for Range<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

struct ArcBytes(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The contents of a build's trees: in memory, host files, the package
/// spool, and base files extracted on demand.
struct BuildContents<'a> {
    fs: &'a dyn Lookup,
    layers: &'a [&'a crate::tree::Tree],
    base_files: std::collections::HashMap<String, (u64, u64)>,
    base_spool: Option<crate::spool::Spool>,
}

impl Contents for BuildContents<'_> {
    fn open(
        &self,
        path: &str,
        node: &Node,
    ) -> Result<Option<Box<dyn ReadSeek + '_>>, EntrypointError> {
        use crate::tree::Content;
        Ok(Some(match &node.content {
            Content::Bytes(b) => Box::new(io::Cursor::new(ArcBytes(b.clone()))),
            Content::Host(host, key) => {
                // The file hashed into the layer, and nothing else: no
                // FIFO, device or other file swapped in since (same inode).
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(host)
                    .map_err(read_err(host.display()))?;
                let meta = f.metadata().map_err(read_err(host.display()))?;
                if !meta.is_file() || crate::source::StatKey::of(&meta) != *key {
                    return Err(refused(format!(
                        "{}: the file changed during the build; build again",
                        host.display()
                    )));
                }
                Box::new(Range {
                    f,
                    start: 0,
                    len: node.size,
                    pos: 0,
                })
            }
            Content::Spool(spool, offset) => Box::new(Range {
                f: spool.clone(),
                start: *offset,
                len: node.size,
                pos: 0,
            }),
            Content::None => {
                let (Some(&(start, len)), Some(spool)) =
                    (self.base_files.get(path), self.base_spool.as_ref())
                else {
                    return Ok(None);
                };
                Box::new(Range {
                    f: spool,
                    start,
                    len,
                    pos: 0,
                })
            }
        }))
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names = BTreeSet::new();
        for t in self.layers {
            for (p, _) in t.range(prefix.clone()..) {
                let Some(rest) = p.strip_prefix(&prefix) else {
                    break;
                };
                if !rest.contains('/') && self.fs.node(p).is_some() {
                    names.insert(rest.to_string());
                }
            }
        }
        names.into_iter().collect()
    }
}

/// Checks a build's entrypoint: `layers` are its trees top first (files,
/// packages, base), `base` its base image (whose files are extracted into a
/// spool in `spool_dir` as needed, one pass over its layers per round).
pub(crate) fn check_build(
    target: &Target,
    layers: &[&crate::tree::Tree],
    base: Option<&crate::base::BaseImage>,
    spool_dir: &std::path::Path,
) -> Result<(), EntrypointError> {
    let stack = tree::Stack(layers.to_vec());
    let mut contents = BuildContents {
        fs: &stack,
        layers,
        base_files: std::collections::HashMap::new(),
        base_spool: None,
    };
    let mut asked: BTreeSet<String> = BTreeSet::new();
    for _ in 0..32 {
        let wanted = match check(&stack, &contents, target)? {
            Outcome::Ok => return Ok(()),
            Outcome::Pending(w) => w,
        };
        let new: BTreeSet<String> = wanted.difference(&asked).cloned().collect();
        let Some(base) = base.filter(|_| !new.is_empty()) else {
            return Err(refused(format!(
                "cannot read {} from the image",
                wanted.into_iter().collect::<Vec<_>>().join(", ")
            )));
        };
        if contents.base_spool.is_none() {
            contents.base_spool =
                Some(crate::spool::Spool::new(spool_dir).map_err(read_err(spool_dir.display()))?);
        }
        let spool = contents
            .base_spool
            .as_ref()
            .ok_or_else(|| refused("no spool".into()))?;
        let got = crate::base::extract_files(base, &new, spool).map_err(EntrypointError::Base)?;
        contents.base_files.extend(got);
        asked.extend(new);
    }
    Err(refused(
        "the entrypoint's dependencies are nested too deeply".into(),
    ))
}

#[cfg(test)]
mod tests;
