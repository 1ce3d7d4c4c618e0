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

use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::{Endianness, ReadCache, ReadRef, elf};

use crate::tarw::EntryType;
use crate::tree::{self, Lookup, Node};

/// A seekable byte source.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Access to file contents and directory listings of the image.
pub trait Contents {
    /// The bytes of the regular file at `path` (its `node` given), or
    /// `Ok(None)` when they are not available yet.
    fn open(&self, path: &str, node: &Node) -> Result<Option<Box<dyn ReadSeek + '_>>, String>;
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

/// What the image's architecture expects of an ELF file.
#[derive(Clone, Copy, Debug)]
struct Machine {
    machine: u16,
    class64: bool,
    triplet: &'static str,
}

fn machine_of(arch: &str) -> Option<Machine> {
    let (machine, class64, triplet) = match arch {
        "amd64" => (elf::EM_X86_64, true, "x86_64-linux-gnu"),
        "arm64" => (elf::EM_AARCH64, true, "aarch64-linux-gnu"),
        "arm" => (elf::EM_ARM, false, "arm-linux-gnueabihf"),
        "386" => (elf::EM_386, false, "i386-linux-gnu"),
        "ppc64le" => (elf::EM_PPC64, true, "powerpc64le-linux-gnu"),
        "s390x" => (elf::EM_S390, true, "s390x-linux-gnu"),
        "riscv64" => (elf::EM_RISCV, true, "riscv64-linux-gnu"),
        _ => return None,
    };
    Some(Machine {
        machine,
        class64,
        triplet,
    })
}

fn machine_name(m: u16) -> String {
    match m {
        elf::EM_X86_64 => "x86-64".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_386 => "i386".into(),
        elf::EM_PPC64 => "ppc64".into(),
        elf::EM_S390 => "s390".into(),
        elf::EM_RISCV => "riscv".into(),
        other => format!("machine {other}"),
    }
}

/// The architecture's default library directories, in search order.
fn default_dirs(m: &Machine) -> Vec<String> {
    let mut d = vec![
        format!("/lib/{}", m.triplet),
        format!("/usr/lib/{}", m.triplet),
    ];
    if m.class64 {
        d.extend(["/lib64".to_string(), "/usr/lib64".to_string()]);
    }
    d.extend(["/lib".to_string(), "/usr/lib".to_string()]);
    d
}

/// What the dynamic loader needs from one ELF object.
#[derive(Debug, Default)]
struct ElfInfo {
    machine: u16,
    class64: bool,
    e_type: u16,
    interp: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

/// Parses the loader-relevant parts of an ELF file, reading only what it needs.
fn parse_elf(r: Box<dyn ReadSeek + '_>) -> Result<ElfInfo, String> {
    let cache = ReadCache::new(r);
    let data = &cache;
    let ident = data
        .read_bytes_at(0, 16)
        .map_err(|_| "too short for an ELF header".to_string())?;
    match ident[4] {
        elf::ELFCLASS64 => parse_elf_as::<elf::FileHeader64<Endianness>, _>(data),
        elf::ELFCLASS32 => parse_elf_as::<elf::FileHeader32<Endianness>, _>(data),
        c => Err(format!("unknown ELF class {c}")),
    }
}

fn parse_elf_as<'d, H: FileHeader<Endian = Endianness>, R: ReadRef<'d>>(
    data: R,
) -> Result<ElfInfo, String> {
    let bad = |e: object::read::Error| format!("malformed ELF: {e}");
    let h = H::parse(data).map_err(bad)?;
    let e = h.endian().map_err(bad)?;
    let mut info = ElfInfo {
        machine: h.e_machine(e),
        class64: h.is_class_64(),
        e_type: h.e_type(e),
        ..ElfInfo::default()
    };
    let phdrs = h.program_headers(e, data).map_err(bad)?;
    let mut dynamic = None;
    for ph in phdrs {
        match ph.p_type(e) {
            elf::PT_INTERP => {
                let (_, size) = ph.file_range(e);
                if size > 4096 {
                    return Err("PT_INTERP is implausibly long".into());
                }
                let i = ph.interpreter(e, data).map_err(bad)?.unwrap_or_default();
                info.interp = Some(String::from_utf8_lossy(i).into_owned());
            }
            elf::PT_DYNAMIC => {
                let (_, size) = ph.file_range(e);
                if size > MAX_DYNAMIC {
                    return Err("the dynamic segment is implausibly large".into());
                }
                dynamic = ph.dynamic(e, data).map_err(bad)?;
            }
            _ => {}
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(info);
    };
    let (mut strtab, mut strsz) = (None, 0u64);
    for d in dynamic {
        let tag: u64 = d.d_tag(e).into();
        let val: u64 = d.d_val(e).into();
        match tag as u32 {
            elf::DT_STRTAB if tag <= u64::from(u32::MAX) => strtab = Some(val),
            elf::DT_STRSZ if tag <= u64::from(u32::MAX) => strsz = val,
            _ => {}
        }
    }
    let Some(addr) = strtab else {
        return Ok(info);
    };
    if strsz > MAX_DYNAMIC {
        return Err("the dynamic string table is implausibly large".into());
    }
    // The table's file offset, from the PT_LOAD that maps it: only the
    // table is read, never the whole segment.
    let mut strings: Option<&[u8]> = None;
    for ph in phdrs {
        let vaddr: u64 = ph.p_vaddr(e).into();
        let filesz: u64 = ph.p_filesz(e).into();
        if ph.p_type(e) == elf::PT_LOAD
            && addr >= vaddr
            && addr.saturating_add(strsz) <= vaddr.saturating_add(filesz)
        {
            let offset: u64 = ph.p_offset(e).into();
            strings = data.read_bytes_at(offset + (addr - vaddr), strsz).ok();
            break;
        }
    }
    let strings = strings.ok_or("the dynamic string table is outside the file")?;
    let get = |off: u64| -> Result<String, String> {
        let tail = usize::try_from(off)
            .ok()
            .and_then(|o| strings.get(o..))
            .ok_or("a dynamic string is outside its table")?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
    };
    for d in dynamic {
        let tag: u64 = d.d_tag(e).into();
        if tag > u64::from(u32::MAX) {
            continue;
        }
        let val: u64 = d.d_val(e).into();
        match tag as u32 {
            elf::DT_NEEDED => info.needed.push(get(val)?),
            elf::DT_RPATH => info.rpath.extend(get(val)?.split(':').map(str::to_string)),
            elf::DT_RUNPATH => info
                .runpath
                .extend(get(val)?.split(':').map(str::to_string)),
            _ => {}
        }
    }
    Ok(info)
}

/// A regular file found in the image: its real path and node.
struct Found<'a> {
    real: String,
    node: &'a Node,
}

/// Resolves `path` within the image, following symlinks (also in its
/// parents) and hard links; `None` when nothing is there.
fn follow<'a>(fs: &'a dyn Lookup, path: &str) -> Result<Option<Found<'a>>, String> {
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
    Err(format!(
        "too many levels of symbolic links resolving {path}"
    ))
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
pub fn check(fs: &dyn Lookup, contents: &dyn Contents, target: &Target) -> Result<Outcome, String> {
    let m = machine_of(target.arch)
        .ok_or_else(|| format!("architecture {} is not known to the check", target.arch))?;
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

    fn open(&self, f: &Found<'_>) -> Result<Option<Box<dyn ReadSeek + 'a>>, String> {
        let r = self.contents.open(&f.real, f.node)?;
        if r.is_none() {
            self.pending.borrow_mut().insert(f.real.clone());
        }
        Ok(r)
    }

    /// `argv[0]` as `execvp` finds it.
    fn find_program(&self, argv0: &str) -> Result<Option<Found<'a>>, String> {
        if argv0.contains('/') {
            let abs = if argv0.starts_with('/') {
                argv0.to_string()
            } else {
                tree::lexical_join(self.target.workdir.unwrap_or("/"), argv0)
            };
            return match follow(self.fs, &abs)? {
                Some(f) => Ok(Some(f)),
                None => Err(format!("{argv0} is not in the image")),
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
        Err(format!("{argv0} is not found in the image's PATH ({path})"))
    }

    /// Checks that the file `f` (reached as `shown`) can be executed.
    fn exec(&self, shown: &str, f: &Found<'_>, depth: usize) -> Result<(), String> {
        if f.node.kind != EntryType::File {
            return Err(format!("{shown} is not a regular file"));
        }
        if f.node.mode & 0o111 == 0 {
            return Err(format!(
                "{shown} is not executable (mode {:o})",
                f.node.mode
            ));
        }
        let Some(mut r) = self.open(f)? else {
            return Ok(());
        };
        let mut head = [0u8; 256];
        let n = read_up_to(&mut r, &mut head).map_err(|e| format!("{shown}: {e}"))?;
        let head = &head[..n];
        if head.starts_with(b"#!") {
            return self.script(shown, head, depth);
        }
        if !head.starts_with(b"\x7fELF") {
            return Err(format!(
                "{shown} is neither an ELF executable nor a #! script"
            ));
        }
        r.seek(SeekFrom::Start(0))
            .map_err(|e| format!("{shown}: {e}"))?;
        let info = parse_elf(r).map_err(|e| format!("{shown}: {e}"))?;
        self.compatible(shown, &info)?;
        if !matches!(info.e_type, elf::ET_EXEC | elf::ET_DYN) {
            return Err(format!("{shown} is an ELF file but not an executable"));
        }
        if let Some(interp) = &info.interp {
            match follow(self.fs, interp)? {
                None => {
                    return Err(format!(
                        "{shown} needs the program interpreter {interp} (PT_INTERP), which is not in the image"
                    ));
                }
                Some(loader) => {
                    if let Some(r) = self.open(&loader)? {
                        let li = parse_elf(r).map_err(|e| format!("{interp}: {e}"))?;
                        self.compatible(interp, &li)?;
                    }
                }
            }
        }
        self.libraries(shown, &f.real, Rc::new(info))
    }

    fn script(&self, shown: &str, head: &[u8], depth: usize) -> Result<(), String> {
        if depth >= MAX_SCRIPT_DEPTH {
            return Err(format!("{shown}: too many levels of #! interpreters"));
        }
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        if line.len() == head.len() - 2 && head.len() == 256 {
            return Err(format!("{shown}: the #! line is too long"));
        }
        let line = String::from_utf8_lossy(line);
        let mut words = line.trim().splitn(2, [' ', '\t']);
        let interp = words.next().unwrap_or("").to_string();
        let arg = words.next().map(str::trim).unwrap_or("");
        if interp.is_empty() {
            return Err(format!("{shown}: empty #! line"));
        }
        let abs = tree::lexical_join(self.target.workdir.unwrap_or("/"), &interp);
        let Some(f) = follow(self.fs, &abs)? else {
            return Err(format!(
                "{shown} is a script for {interp}, which is not in the image"
            ));
        };
        self.exec(&interp, &f, depth + 1)?;
        // `#!/usr/bin/env NAME`: NAME is looked up in PATH at run time.
        if interp.rsplit('/').next() == Some("env")
            && !arg.is_empty()
            && !arg.starts_with('-')
            && !arg.contains('=')
        {
            let name = arg.split_whitespace().next().unwrap_or(arg);
            if let Some(p) = self
                .find_program(name)
                .map_err(|e| format!("{shown} runs {name} through env: {e}"))?
            {
                self.exec(name, &p, depth + 1)?;
            }
        }
        Ok(())
    }

    fn compatible(&self, shown: &str, info: &ElfInfo) -> Result<(), String> {
        if info.machine != self.m.machine || info.class64 != self.m.class64 {
            return Err(format!(
                "{shown} is a {}-bit {} ELF, but the image is {} ({}-bit {})",
                if info.class64 { 64 } else { 32 },
                machine_name(info.machine),
                self.target.arch,
                if self.m.class64 { 64 } else { 32 },
                machine_name(self.m.machine)
            ));
        }
        Ok(())
    }

    /// Resolves every `DT_NEEDED` of the executable `exe` (at `exe_real`),
    /// transitively, depth first as the loader would. An explicit stack, not
    /// recursion: a dependency chain as long as an image can hold must not
    /// overflow the stack.
    fn libraries(&self, shown: &str, exe_real: &str, exe: Rc<ElfInfo>) -> Result<(), String> {
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
                return Err(format!(
                    "{} needs more than {MAX_NEEDED} libraries (DT_NEEDED) in all",
                    self.target.argv0
                ));
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
                    return Err(format!(
                        "{} needs {name} (DT_NEEDED), which is not in the image for {} (searched {})",
                        top.shown,
                        self.target.arch,
                        dirs.join(", ")
                    ));
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
    ) -> Result<Vec<String>, String> {
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
            return Err(format!(
                "resolving the libraries of {} looks in more than {MAX_PROBES} directories in all",
                self.target.argv0
            ));
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
    fn elf_info(&self, f: &Found<'_>) -> Result<Probe, String> {
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
    fn conf_dirs(&self) -> Result<Rc<[String]>, String> {
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
    fn conf_file(&self, path: &str, conf: &mut Conf, depth: usize) -> Result<(), String> {
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
            .map_err(|e| format!("{path}: {e}"))?;
        conf.bytes += text.len() as u64;
        if conf.bytes > MAX_CONF_BYTES {
            return Err(format!(
                "{path}: the ld.so.conf files are larger than {MAX_CONF_BYTES} bytes in all"
            ));
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
                    return Err(format!(
                        "{path}: more than {MAX_CONF_INCLUDES} include lines in the ld.so.conf files"
                    ));
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
                        return Err(format!(
                            "{path}: the ld.so.conf files name more than {MAX_CONF_DIRS} library directories"
                        ));
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
    fn glob(&self, pattern: &str, conf: &mut Conf) -> Result<Vec<String>, String> {
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
            return Err(format!(
                "{pattern}: the ld.so.conf includes match more than {MAX_CONF_FILES} files in all"
            ));
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
    fn open(&self, path: &str, node: &Node) -> Result<Option<Box<dyn ReadSeek + '_>>, String> {
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
                    .map_err(|e| format!("{}: {e}", host.display()))?;
                let meta = f
                    .metadata()
                    .map_err(|e| format!("{}: {e}", host.display()))?;
                if !meta.is_file() || crate::source::StatKey::of(&meta) != *key {
                    return Err(format!(
                        "{}: the file changed during the build; build again",
                        host.display()
                    ));
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
) -> Result<(), String> {
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
            return Err(format!(
                "cannot read {} from the image",
                wanted.into_iter().collect::<Vec<_>>().join(", ")
            ));
        };
        if contents.base_spool.is_none() {
            contents.base_spool = Some(
                crate::spool::Spool::new(spool_dir)
                    .map_err(|e| format!("{}: {e}", spool_dir.display()))?,
            );
        }
        let spool = contents.base_spool.as_ref().ok_or("no spool")?;
        let got = crate::base::extract_files(base, &new, spool)
            .map_err(|e| format!("reading the base: {e}"))?;
        contents.base_files.extend(got);
        asked.extend(new);
    }
    Err("the entrypoint's dependencies are nested too deeply".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Content, Origin, Tree};

    /// Contents of an in-memory tree; `Content::None` files are "pending".
    struct Mem<'a>(&'a Tree);

    impl Contents for Mem<'_> {
        fn open(&self, _: &str, node: &Node) -> Result<Option<Box<dyn ReadSeek + '_>>, String> {
            Ok(match &node.content {
                Content::Bytes(b) => Some(Box::new(io::Cursor::new(ArcBytes(b.clone())))),
                _ => None,
            })
        }
        fn list(&self, dir: &str) -> Vec<String> {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            self.0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|r| !r.contains('/'))
                .map(str::to_string)
                .collect()
        }
    }

    fn put(t: &mut Tree, path: &str, data: Vec<u8>, mode: u32) {
        t.insert(path.into(), Node::bytes(data, mode, 0, 0, Origin::Spec));
        let layer = t.clone();
        let mut l2 = layer.clone();
        tree::add_parents(&mut l2, &layer);
        for (k, v) in l2 {
            t.entry(k).or_insert(v);
        }
    }

    fn link(t: &mut Tree, path: &str, target: &str) {
        t.insert(
            path.into(),
            Node {
                kind: EntryType::Symlink,
                mode: 0o777,
                uid: 0,
                gid: 0,
                size: 0,
                sha256: None,
                sha1: None,
                link: Some(target.into()),
                origin: Origin::Base,
                content: Content::None,
            },
        );
    }

    fn run(t: &Tree, arch: &str, argv0: &str) -> Result<Outcome, String> {
        check(
            t,
            &Mem(t),
            &Target {
                arch,
                argv0,
                path: None,
                ld_library_path: None,
                workdir: None,
            },
        )
    }

    fn host_arch() -> Option<&'static str> {
        match std::env::consts::ARCH {
            "x86_64" => Some("amd64"),
            "aarch64" => Some("arm64"),
            _ => None,
        }
    }

    fn em() -> u16 {
        match host_arch() {
            Some("arm64") => elf::EM_AARCH64,
            _ => elf::EM_X86_64,
        }
    }

    /// A minimal 64-bit little-endian ELF (`ET_DYN`): optional PT_INTERP,
    /// and a dynamic section with these DT_NEEDED, DT_RPATH, DT_RUNPATH.
    fn mini_elf(
        machine: u16,
        interp: Option<&str>,
        needed: &[&str],
        rpath: Option<&str>,
        runpath: Option<&str>,
    ) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut add = |s: &str| {
            let off = strtab.len() as u64;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            off
        };
        let mut dyns: Vec<(u64, u64)> = needed
            .iter()
            .map(|n| (u64::from(elf::DT_NEEDED), add(n)))
            .collect();
        if let Some(r) = rpath {
            dyns.push((u64::from(elf::DT_RPATH), add(r)));
        }
        if let Some(r) = runpath {
            dyns.push((u64::from(elf::DT_RUNPATH), add(r)));
        }
        let interp_bytes = interp.map(|i| {
            let mut b = i.as_bytes().to_vec();
            b.push(0);
            b
        });
        let nph = 2 + u64::from(interp.is_some());
        let strtab_off = 64 + 56 * nph;
        let interp_off = strtab_off + strtab.len() as u64;
        let dyn_off = (interp_off + interp_bytes.as_ref().map_or(0, |b| b.len() as u64) + 7) & !7;
        dyns.push((u64::from(elf::DT_STRTAB), strtab_off));
        dyns.push((u64::from(elf::DT_STRSZ), strtab.len() as u64));
        dyns.push((0, 0));
        let total = dyn_off + 16 * dyns.len() as u64;
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend_from_slice(&elf::ET_DYN.to_le_bytes());
        f.extend_from_slice(&machine.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // entry
        f.extend_from_slice(&64u64.to_le_bytes()); // phoff
        f.extend_from_slice(&0u64.to_le_bytes()); // shoff
        f.extend_from_slice(&0u32.to_le_bytes()); // flags
        f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
        f.extend_from_slice(&56u16.to_le_bytes()); // phentsize
        f.extend_from_slice(&(nph as u16).to_le_bytes());
        f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
        f.extend_from_slice(&0u16.to_le_bytes()); // shnum
        f.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
        let ph = |f: &mut Vec<u8>, ty: u32, off: u64, size: u64| {
            f.extend_from_slice(&ty.to_le_bytes());
            f.extend_from_slice(&4u32.to_le_bytes());
            for v in [off, off, off, size, size, 8] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        };
        if let Some(b) = &interp_bytes {
            ph(&mut f, elf::PT_INTERP, interp_off, b.len() as u64);
        }
        ph(&mut f, elf::PT_LOAD, 0, total);
        ph(&mut f, elf::PT_DYNAMIC, dyn_off, 16 * dyns.len() as u64);
        f.extend_from_slice(&strtab);
        if let Some(b) = &interp_bytes {
            f.extend_from_slice(b);
        }
        f.resize(dyn_off as usize, 0);
        for (tag, val) in dyns {
            f.extend_from_slice(&tag.to_le_bytes());
            f.extend_from_slice(&val.to_le_bytes());
        }
        f
    }

    fn ok(r: Result<Outcome, String>) {
        assert_eq!(r, Ok(Outcome::Ok));
    }

    #[track_caller]
    fn err(r: Result<Outcome, String>, needle: &str) {
        match r {
            Err(e) => assert!(e.contains(needle), "{e:?} lacks {needle:?}"),
            other => panic!("expected an error with {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn static_busybox_from_the_host() {
        let (Some(arch), Ok(bb)) = (host_arch(), std::fs::read("/bin/busybox")) else {
            assert!(
                std::env::var_os("KILN_REQUIRE_INTEROP").is_none(),
                "/bin/busybox (busybox-static) is required"
            );
            return;
        };
        let mut t = Tree::new();
        put(&mut t, "/bin/busybox", bb, 0o755);
        link(&mut t, "/bin/sh", "busybox");
        ok(run(&t, arch, "/bin/busybox"));
        ok(run(&t, arch, "busybox"));
        ok(run(&t, arch, "sh"));
        err(run(&t, arch, "/bin/nope"), "/bin/nope is not in the image");
        err(
            run(&t, arch, "nope"),
            "nope is not found in the image's PATH",
        );
        let other = if arch == "amd64" { "arm64" } else { "amd64" };
        err(
            run(&t, other, "/bin/busybox"),
            &format!("but the image is {other}"),
        );
        // Not executable, and not a program at all.
        put(&mut t, "/bin/data", b"hello".to_vec(), 0o644);
        err(run(&t, arch, "/bin/data"), "is not executable");
        put(&mut t, "/bin/text", b"hello".to_vec(), 0o755);
        err(
            run(&t, arch, "/bin/text"),
            "neither an ELF executable nor a #! script",
        );
    }

    /// /bin/ls of the host with its libraries copied into a merged-/usr
    /// image, then with its loader or a library missing.
    #[test]
    fn dynamic_ls_from_the_host() {
        let (Some(arch), Ok(ls)) = (host_arch(), std::fs::read("/bin/ls")) else {
            return;
        };
        let info = parse_elf(Box::new(io::Cursor::new(ls.clone()))).unwrap();
        let interp = info.interp.clone().unwrap();
        let triplet = machine_of(arch).unwrap().triplet;
        let mut t = Tree::new();
        for d in ["/usr/bin", "/usr/lib", "/usr/lib64"] {
            t.insert(d.into(), Node::dir(0o755, 0, 0, Origin::Base));
        }
        link(&mut t, "/bin", "usr/bin");
        link(&mut t, "/lib", "usr/lib");
        link(&mut t, "/lib64", "usr/lib64");
        put(&mut t, "/usr/bin/ls", ls, 0o755);
        // Copy the closure of libraries from the host.
        let mut todo = info.needed.clone();
        let mut done = HashSet::new();
        while let Some(name) = todo.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            let host = [
                format!("/lib/{triplet}/{name}"),
                format!("/usr/lib/{triplet}/{name}"),
            ]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap();
            let bytes = std::fs::read(&host).unwrap();
            let li = parse_elf(Box::new(io::Cursor::new(bytes.clone()))).unwrap();
            todo.extend(li.needed);
            put(&mut t, &format!("/usr/lib/{triplet}/{name}"), bytes, 0o755);
        }
        let loader = std::fs::read(&interp).unwrap();
        let full = t.clone();
        put(
            &mut t,
            &format!("/usr/lib/{triplet}/loader.so"),
            loader,
            0o755,
        );
        // The loader is reached through /lib64 -> usr/lib64 -> a link.
        let interp_in_usr = format!("/usr{interp}");
        link(&mut t, &interp_in_usr, &format!("/lib/{triplet}/loader.so"));
        ok(run(&t, arch, "ls"));
        ok(run(&t, arch, "/bin/ls"));
        // Without the loader.
        err(
            run(&full, arch, "ls"),
            &format!("program interpreter {interp} (PT_INTERP)"),
        );
        // Without libc.
        let mut no_libc = t.clone();
        no_libc.remove(&format!("/usr/lib/{triplet}/libc.so.6"));
        err(run(&no_libc, arch, "ls"), "needs libc.so.6 (DT_NEEDED)");
    }

    #[test]
    fn origin_rpath_runpath_and_transitive_needs() {
        let m = em();
        let arch = if m == elf::EM_AARCH64 {
            "arm64"
        } else {
            "amd64"
        };
        let triplet = machine_of(arch).unwrap().triplet;
        let mut t = Tree::new();
        put(
            &mut t,
            "/app/bin/app",
            mini_elf(m, None, &["libapp.so"], None, Some("$ORIGIN/../lib")),
            0o755,
        );
        put(
            &mut t,
            "/app/lib/libapp.so",
            mini_elf(m, None, &["libc.so.6"], None, None),
            0o644,
        );
        put(
            &mut t,
            &format!("/lib/{triplet}/libc.so.6"),
            mini_elf(m, None, &[], None, None),
            0o644,
        );
        ok(run(&t, arch, "/app/bin/app"));
        // $ORIGIN is the directory of the object; the wrong directory fails.
        put(
            &mut t,
            "/app/bin/bad",
            mini_elf(m, None, &["libapp.so"], None, Some("$ORIGIN/lib")),
            0o755,
        );
        err(run(&t, arch, "/app/bin/bad"), "needs libapp.so (DT_NEEDED)");
        // The executable's DT_RPATH is inherited by its libraries (no RUNPATH).
        let mut t2 = t.clone();
        put(
            &mut t2,
            "/app/bin/rp",
            mini_elf(
                m,
                None,
                &["libapp.so"],
                Some("${ORIGIN}/../lib:/opt/x"),
                None,
            ),
            0o755,
        );
        put(
            &mut t2,
            "/app/lib/libapp.so",
            mini_elf(m, None, &["libdep.so"], None, None),
            0o644,
        );
        put(
            &mut t2,
            "/opt/x/libdep.so",
            mini_elf(m, None, &[], None, None),
            0o644,
        );
        ok(run(&t2, arch, "/app/bin/rp"));
        // A transitive need that is missing is named.
        put(
            &mut t2,
            "/app/bin/rp2",
            mini_elf(m, None, &["libapp.so"], None, Some("$ORIGIN/../lib")),
            0o755,
        );
        err(
            run(&t2, arch, "/app/bin/rp2"),
            "libapp.so needs libdep.so (DT_NEEDED)",
        );
        // A library of another machine is skipped, as the loader does.
        let mut t3 = Tree::new();
        put(
            &mut t3,
            "/bin/x",
            mini_elf(m, None, &["libq.so"], None, None),
            0o755,
        );
        put(
            &mut t3,
            &format!("/lib/{triplet}/libq.so"),
            mini_elf(elf::EM_S390, None, &[], None, None),
            0o644,
        );
        err(run(&t3, arch, "/bin/x"), "needs libq.so");
        put(
            &mut t3,
            "/usr/lib/libq.so",
            mini_elf(m, None, &[], None, None),
            0o644,
        );
        ok(run(&t3, arch, "/bin/x"));
    }

    #[test]
    fn ld_so_conf_directories() {
        let m = em();
        let arch = if m == elf::EM_AARCH64 {
            "arm64"
        } else {
            "amd64"
        };
        let mut t = Tree::new();
        put(
            &mut t,
            "/bin/x",
            mini_elf(m, None, &["libo.so"], None, None),
            0o755,
        );
        put(
            &mut t,
            "/opt/o/lib/libo.so",
            mini_elf(m, None, &[], None, None),
            0o644,
        );
        err(run(&t, arch, "/bin/x"), "needs libo.so");
        put(
            &mut t,
            "/etc/ld.so.conf",
            b"include /etc/ld.so.conf.d/*.conf\n".to_vec(),
            0o644,
        );
        put(
            &mut t,
            "/etc/ld.so.conf.d/o.conf",
            b"# opt\n/opt/o/lib/\n".to_vec(),
            0o644,
        );
        put(
            &mut t,
            "/etc/ld.so.conf.d/o.txt",
            b"/nowhere\n".to_vec(),
            0o644,
        );
        ok(run(&t, arch, "/bin/x"));
    }

    #[test]
    fn scripts() {
        let m = em();
        let arch = if m == elf::EM_AARCH64 {
            "arm64"
        } else {
            "amd64"
        };
        let mut t = Tree::new();
        put(
            &mut t,
            "/app/run",
            b"#!/usr/bin/python3 -u\nprint(1)\n".to_vec(),
            0o755,
        );
        err(
            run(&t, arch, "/app/run"),
            "is a script for /usr/bin/python3, which is not in the image",
        );
        put(
            &mut t,
            "/usr/bin/python3",
            mini_elf(m, None, &[], None, None),
            0o755,
        );
        ok(run(&t, arch, "/app/run"));
        // Through env: the named program is looked up in PATH.
        put(
            &mut t,
            "/app/envrun",
            b"#!/usr/bin/env node\n".to_vec(),
            0o755,
        );
        err(
            run(&t, arch, "/app/envrun"),
            "/usr/bin/env, which is not in the image",
        );
        put(
            &mut t,
            "/usr/bin/env",
            mini_elf(m, None, &[], None, None),
            0o755,
        );
        err(
            run(&t, arch, "/app/envrun"),
            "runs node through env: node is not found",
        );
        put(
            &mut t,
            "/usr/local/bin/node",
            mini_elf(m, None, &[], None, None),
            0o755,
        );
        ok(run(&t, arch, "/app/envrun"));
        // A script whose interpreter is a script with a missing interpreter.
        put(&mut t, "/app/a", b"#!/app/b\n".to_vec(), 0o755);
        put(&mut t, "/app/b", b"#!/bin/missing\n".to_vec(), 0o755);
        err(
            run(&t, arch, "/app/a"),
            "/app/b is a script for /bin/missing",
        );
        // Interpreter loops are bounded.
        put(&mut t, "/app/loop", b"#!/app/loop\n".to_vec(), 0o755);
        err(
            run(&t, arch, "/app/loop"),
            "too many levels of #! interpreters",
        );
    }

    #[test]
    fn unknown_contents_are_asked_for_not_judged() {
        let mut t = Tree::new();
        put(&mut t, "/bin/x", vec![], 0o755);
        if let Some(n) = t.get_mut("/bin/x") {
            n.content = Content::None;
        }
        assert_eq!(
            run(&t, "amd64", "/bin/x"),
            Ok(Outcome::Pending(BTreeSet::from(["/bin/x".to_string()])))
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"a.conf"));
        assert!(wildcard(b"*.conf", b".conf"));
        assert!(!wildcard(b"*.conf", b"a.conf~"));
        assert!(wildcard(b"l?b*", b"lib64"));
        assert!(!wildcard(b"", b"x"));
        assert_eq!(
            expand("$ORIGIN/../lib", "/app/bin").as_deref(),
            Some("/app/lib")
        );
        assert_eq!(expand("$LIB/x", "/"), None);
        assert_eq!(expand("rel", "/"), None);
    }

    /// Runs `f` in a thread and fails, instead of hanging, when it does not
    /// finish in a generous time.
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(v) => v,
            Err(e) => panic!("{what} did not finish: {e}"),
        }
    }

    /// Adds many files at once (`put` copies the tree for each).
    fn put_all(t: &mut Tree, files: Vec<(String, Vec<u8>)>) {
        let mut layer = Tree::new();
        for (path, data) in files {
            layer.insert(path, Node::bytes(data, 0o644, 0, 0, Origin::Spec));
        }
        tree::add_parents(&mut layer, &*t);
        t.extend(layer);
    }

    fn host_or_amd64() -> (u16, &'static str) {
        let m = em();
        (
            m,
            if m == elf::EM_AARCH64 {
                "arm64"
            } else {
                "amd64"
            },
        )
    }

    /// The recursive matcher `wildcard` replaced: the reference semantics.
    fn wildcard_reference(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                wildcard_reference(&p[1..], s) || (!s.is_empty() && wildcard_reference(p, &s[1..]))
            }
            (Some(b'?'), Some(_)) => wildcard_reference(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => wildcard_reference(&p[1..], &s[1..]),
            _ => false,
        }
    }

    /// Many `*`s against a long name that almost matches: exponential for a
    /// backtracking matcher, linear-times-pattern for the iterative one.
    #[test]
    fn wildcard_with_many_stars_finishes() {
        let pattern = format!("{}*b", "*a".repeat(15));
        let name = "a".repeat(240);
        let (p2, n2) = (pattern.clone(), name.clone());
        assert!(!within("wildcard", move || wildcard(
            p2.as_bytes(),
            n2.as_bytes()
        )));
        assert!(wildcard(pattern.as_bytes(), format!("{name}b").as_bytes()));
        // The same through a hostile base image's ld.so.conf.
        let r = within("the check", move || {
            let (m, arch) = host_or_amd64();
            let mut t = Tree::new();
            put(&mut t, "/bin/x", mini_elf(m, None, &[], None, None), 0o755);
            put(
                &mut t,
                "/etc/ld.so.conf",
                format!("include /x/{pattern}\n").into_bytes(),
                0o644,
            );
            put(&mut t, &format!("/x/{name}"), b"/lib\n".to_vec(), 0o644);
            run(&t, arch, "/bin/x")
        });
        ok(r);
    }

    /// `include dI/*.conf` through K aliases of the same directory, nested:
    /// K^depth visits when files are told apart by the name used.
    #[test]
    fn ld_so_conf_includes_through_aliases_are_read_once() {
        let r = within("the check", || {
            let (m, arch) = host_or_amd64();
            let mut t = Tree::new();
            put(
                &mut t,
                "/bin/x",
                mini_elf(m, None, &["libo.so"], None, None),
                0o755,
            );
            put(
                &mut t,
                "/opt/o/lib/libo.so",
                mini_elf(m, None, &[], None, None),
                0o644,
            );
            let mut conf = String::new();
            for i in 0..16 {
                link(&mut t, &format!("/etc/d{i}"), ".");
                conf.push_str(&format!("include d{i}/*.conf\n"));
            }
            conf.push_str("/opt/o/lib\n");
            put(&mut t, "/etc/ld.so.conf", conf.into_bytes(), 0o644);
            run(&t, arch, "/bin/x")
        });
        ok(r);
    }

    #[test]
    fn ld_so_conf_work_is_capped() {
        let (m, arch) = host_or_amd64();
        let mut base = Tree::new();
        put(
            &mut base,
            "/bin/x",
            mini_elf(m, None, &[], None, None),
            0o755,
        );
        // The same directory many times is one directory.
        let mut t = base.clone();
        put(
            &mut t,
            "/etc/ld.so.conf",
            "/opt/lib\n".repeat(10_000).into_bytes(),
            0o644,
        );
        ok(run(&t, arch, "/bin/x"));
        // Too many distinct directories.
        let mut t = base.clone();
        let many: String = (0..5000).map(|i| format!("/opt/l{i}\n")).collect();
        put(&mut t, "/etc/ld.so.conf", many.into_bytes(), 0o644);
        err(
            run(&t, arch, "/bin/x"),
            "more than 4096 library directories",
        );
        // Too many bytes in all (each file alone is within its own cap).
        let mut t = base.clone();
        let big = format!("# {}\n", "x".repeat(1 << 20));
        put_all(
            &mut t,
            (0..5)
                .map(|i| {
                    (
                        format!("/etc/ld.so.conf.d/{i}.conf"),
                        big.clone().into_bytes(),
                    )
                })
                .collect(),
        );
        err(run(&t, arch, "/bin/x"), "larger than 4194304 bytes in all");
        // Too many include lines.
        let mut t = base.clone();
        put(
            &mut t,
            "/etc/ld.so.conf",
            (0..1100)
                .map(|i| format!("include /none{i}/*.conf\n"))
                .collect::<String>()
                .into_bytes(),
            0o644,
        );
        err(run(&t, arch, "/bin/x"), "more than 1024 include lines");
        // Too many files matched.
        let mut t = base.clone();
        put_all(
            &mut t,
            (0..5000)
                .map(|i| (format!("/etc/ld.so.conf.d/{i}.conf"), Vec::new()))
                .collect(),
        );
        err(run(&t, arch, "/bin/x"), "match more than 4096 files");
    }

    /// A chain of tens of thousands of libraries, each needing the next:
    /// resolved without one stack frame per link.
    #[test]
    fn long_dependency_chains_do_not_overflow_the_stack() {
        let r = within("the check", || {
            let (m, arch) = host_or_amd64();
            let triplet = machine_of(arch).unwrap().triplet;
            let n = 20_000;
            let mut t = Tree::new();
            put(
                &mut t,
                "/bin/x",
                mini_elf(m, None, &["lib0.so"], None, None),
                0o755,
            );
            put_all(
                &mut t,
                (0..n)
                    .map(|i| {
                        let next = format!("lib{}.so", i + 1);
                        let needs: &[&str] = if i + 1 < n { &[&next] } else { &[] };
                        (
                            format!("/lib/{triplet}/lib{i}.so"),
                            mini_elf(m, None, needs, None, None),
                        )
                    })
                    .collect(),
            );
            let whole = run(&t, arch, "/bin/x");
            // The end of the chain missing is named with what needed it.
            t.remove(&format!("/lib/{triplet}/lib{}.so", n - 1));
            (whole, run(&t, arch, "/bin/x"))
        });
        ok(r.0);
        err(r.1, "lib19998.so needs lib19999.so (DT_NEEDED)");
    }

    #[test]
    fn library_resolution_is_capped() {
        let (m, arch) = host_or_amd64();
        let triplet = machine_of(arch).unwrap().triplet;
        let mut t = Tree::new();
        put(
            &mut t,
            &format!("/lib/{triplet}/libc.so.6"),
            mini_elf(m, None, &[], None, None),
            0o644,
        );
        // More DT_NEEDED entries than the cap, all of one library.
        let many = vec!["libc.so.6"; 70_000];
        put(
            &mut t,
            "/bin/x",
            mini_elf(m, None, &many, None, None),
            0o755,
        );
        err(
            run(&t, arch, "/bin/x"),
            "more than 65536 libraries (DT_NEEDED)",
        );
        // Few entries, each searching thousands of ld.so.conf directories.
        let dirs: String = (0..4000).map(|i| format!("/opt/l{i}\n")).collect();
        put(&mut t, "/etc/ld.so.conf", dirs.into_bytes(), 0o644);
        put(
            &mut t,
            "/bin/y",
            mini_elf(m, None, &vec!["libc.so.6"; 300], None, None),
            0o755,
        );
        err(run(&t, arch, "/bin/y"), "more than 1048576 directories");
        put(
            &mut t,
            "/bin/z",
            mini_elf(m, None, &vec!["libc.so.6"; 20], None, None),
            0o755,
        );
        ok(run(&t, arch, "/bin/z"));
    }

    proptest::proptest! {
        /// The iterative matcher agrees with the recursive one.
        #[test]
        fn wildcard_matches_the_reference(
            p in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b'*', b'?']), 0..8),
            s in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b']), 0..10),
        ) {
            proptest::prop_assert_eq!(wildcard(&p, &s), wildcard_reference(&p, &s));
        }

        /// Arbitrary bytes never panic the ELF reader.
        #[test]
        fn parse_elf_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), class in 1u8..3) {
            if bytes.len() >= 16 {
                bytes[..4].copy_from_slice(b"\x7fELF");
                bytes[4] = class;
            }
            let _ = parse_elf(Box::new(io::Cursor::new(bytes)));
        }
    }
}
