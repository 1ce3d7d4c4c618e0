//! The `.deb` package model and what dpkg would record for it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use md5::{Digest, Md5};

use crate::compress::{Budget, Compression, decoder};
use crate::stanza::Stanza;
use crate::{DebError, ar};
use kiln_oci::targuard::TarGuard;

/// Names of the maintainer scripts dpkg knows, in the order they run.
const MAINTAINER_SCRIPTS: [&str; 5] = ["preinst", "postinst", "prerm", "postrm", "config"];

/// Bounds on the work done while reading one `.deb`.
///
/// A member may decompress to `floor_bytes + ratio × its compressed size`
/// (and control.tar, which is held in memory, to at most
/// `max_control_bytes`); the whole package to `max_package_bytes`. Reading
/// stops the moment a bound is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes every member may produce whatever its size.
    pub floor_bytes: u64,
    /// Decompressed bytes allowed per compressed byte beyond the floor.
    pub ratio: u64,
    /// The most bytes all members together may decompress to.
    pub max_package_bytes: u64,
    /// The most bytes control.tar may decompress to (it is kept in memory).
    pub max_control_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            floor_bytes: Self::FLOOR,
            ratio: Self::RATIO,
            max_package_bytes: Self::MAX_PACKAGE,
            max_control_bytes: Self::MAX_CONTROL,
        }
    }
}

impl Limits {
    /// Ratio of decompressed to compressed size allowed beyond the floor.
    pub const RATIO: u64 = 100;
    /// Decompressed size every member may have.
    pub const FLOOR: u64 = 16 << 20;
    /// Decompressed size of a whole package.
    pub const MAX_PACKAGE: u64 = 2 << 30;
    /// Decompressed size of control.tar.
    pub const MAX_CONTROL: u64 = 64 << 20;

    /// The bound for one member of `compressed` bytes.
    pub fn member_limit(&self, compressed: u64) -> u64 {
        compressed
            .saturating_mul(self.ratio)
            .saturating_add(self.floor_bytes)
    }
}

/// Receives the contents of each regular file of data.tar as it is
/// decompressed, so that a package never has to be held in memory.
pub trait ContentSink {
    /// Store the `size` bytes of `path` read from `contents` (read it to the
    /// end); return a handle the caller can later find the bytes by.
    fn store(&mut self, path: &str, size: u64, contents: &mut dyn Read) -> std::io::Result<u64>;
}

/// A [`ContentSink`] that keeps every file in memory (handle = index).
#[derive(Debug, Default)]
pub struct MemorySink(pub Vec<Vec<u8>>);

impl ContentSink for MemorySink {
    fn store(&mut self, _path: &str, size: u64, contents: &mut dyn Read) -> std::io::Result<u64> {
        let mut buf = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
        contents.read_to_end(&mut buf)?;
        self.0.push(buf);
        Ok(self.0.len() as u64 - 1)
    }
}

/// A [`ContentSink`] that reads and discards file contents (for callers that
/// only need the control data, sizes and MD5s).
#[derive(Debug, Default)]
pub struct NullSink;

impl ContentSink for NullSink {
    fn store(&mut self, _path: &str, _size: u64, contents: &mut dyn Read) -> std::io::Result<u64> {
        std::io::copy(contents, &mut std::io::sink())?;
        Ok(0)
    }
}

/// A regular file of data.tar: its size, MD5 and where its bytes went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the contents (for `md5sums` and `Conffiles`).
    pub md5: [u8; 16],
    /// The [`ContentSink`]'s handle for the contents.
    pub handle: u64,
    /// The contents, when parsed with [`Deb::parse`] (in memory).
    pub contents: Option<Vec<u8>>,
}

/// A parsed Debian binary package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    /// The `control` stanza, fields in their original order.
    pub control: Stanza,
    /// Every other regular file of control.tar, by name: `md5sums`, `conffiles`,
    /// `preinst`, `postinst`, `prerm`, `postrm`, `config`, `triggers`, `shlibs`, ...
    pub control_files: BTreeMap<String, Vec<u8>>,
    /// The data.tar entries in archive order (the root `./` entry is left out).
    pub data: Vec<DataEntry>,
    /// Compression of the data.tar member: `"xz"`, `"gzip"`, `"zstd"` or `"none"`.
    pub data_compression: &'static str,
}

/// One entry of data.tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// Normalized absolute path, e.g. `/usr/bin/x` for `./usr/bin/x`; no trailing `/`.
    pub path: String,
    /// What the entry is, with its contents.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

/// The kind of a [`DataEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File(FileData),
    /// A symbolic link and its target, verbatim.
    Symlink(String),
    /// A hard link to the normalized absolute path of an earlier regular-file entry
    /// (a link to another hard link is resolved to that link's file).
    Hardlink(String),
}

impl EntryKind {
    fn describe(&self) -> &'static str {
        match self {
            EntryKind::Dir => "directory",
            EntryKind::File(_) => "regular file",
            EntryKind::Symlink(_) => "symlink",
            EntryKind::Hardlink(_) => "hard link",
        }
    }
}

impl Deb {
    /// Parses a `.deb` held in memory with the default [`Limits`], keeping
    /// file contents in memory ([`FileData::contents`]). For large inputs
    /// use [`Deb::read`], which streams.
    pub fn parse(bytes: &[u8]) -> Result<Deb, DebError> {
        Deb::parse_with_limits(bytes, Limits::default())
    }

    /// [`Deb::parse`] with explicit limits.
    pub fn parse_with_limits(bytes: &[u8], limits: Limits) -> Result<Deb, DebError> {
        // The whole archive structure is checked first, for precise errors.
        ar::parse(bytes)?;
        let mut sink = MemorySink::default();
        let mut deb = Deb::read(bytes, Some(bytes.len() as u64), limits, &mut sink)?;
        let mut contents: Vec<Option<Vec<u8>>> = sink.0.into_iter().map(Some).collect();
        for e in &mut deb.data {
            if let EntryKind::File(f) = &mut e.kind {
                f.contents = usize::try_from(f.handle)
                    .ok()
                    .and_then(|i| contents.get_mut(i))
                    .and_then(Option::take);
            }
        }
        Ok(deb)
    }

    /// Reads the `.deb` file at `path` with the default [`Limits`], streaming
    /// and discarding file contents ([`NullSink`]): memory does not grow with
    /// the package. The path must be a regular file.
    pub fn read_path(path: &std::path::Path) -> Result<Deb, DebError> {
        let read = |source| DebError::Read { source };
        // Opened without blocking (a FIFO neither hangs nor is read) and
        // refused unless a regular file; read no further than its size then.
        let (file, len) = kiln_oci::untrusted::open_regular(path, kiln_oci::untrusted::Follow::Yes)
            .map_err(read)?;
        let r = std::io::BufReader::with_capacity(256 << 10, file.take(len));
        Deb::read(r, Some(len), Limits::default(), &mut NullSink)
    }

    /// Reads a `.deb` from a stream (of `total` bytes, when known), handing
    /// each data.tar file's contents to `sink` as it is decompressed: memory
    /// use does not grow with the package. Decompression is bounded by
    /// `limits` and refused the moment a bound is passed.
    ///
    /// The `ar` archive must hold `debian-binary` (format `2.x`), then
    /// `control.tar[.gz|.xz|.zst]`, then `data.tar[.gz|.xz|.zst]`; members whose
    /// name starts with `_` (such as signatures) are skipped, as dpkg does.
    /// The input is read to its end.
    pub fn read<R: Read>(
        input: R,
        total: Option<u64>,
        limits: Limits,
        sink: &mut dyn ContentSink,
    ) -> Result<Deb, DebError> {
        let mut ar = ar::ArReader::new(input, total);
        let (first, size) = ar.next_member()?.ok_or(DebError::MissingMember {
            member: "debian-binary",
        })?;
        if first != "debian-binary" {
            return Err(DebError::UnexpectedMember {
                member: first,
                reason: "the first member of a .deb must be debian-binary",
            });
        }
        let mut debian_binary = Vec::new();
        ar.member()
            .take(size.min(4096))
            .read_to_end(&mut debian_binary)
            .map_err(|source| DebError::Read { source })?;
        check_debian_binary(&debian_binary)?;

        let budget = std::rc::Rc::new(Budget::default());
        let mut control: Option<(String, BTreeMap<String, Vec<u8>>, Stanza)> = None;
        let mut data: Option<(Vec<DataEntry>, Compression)> = None;
        while let Some((name, size)) = ar.next_member()? {
            if name.starts_with('_') {
                continue;
            }
            if let Some(compression) = Compression::from_member(&name, "control.tar")? {
                if control.is_some() {
                    return Err(DebError::UnexpectedMember {
                        member: name,
                        reason: "a second control.tar member",
                    });
                }
                if data.is_some() {
                    return Err(DebError::UnexpectedMember {
                        member: name,
                        reason: "control.tar must come before data.tar",
                    });
                }
                let input = std::io::BufReader::with_capacity(64 << 10, ar.member());
                let decoder = decoder(
                    compression,
                    input,
                    size,
                    &limits,
                    Some(limits.max_control_bytes),
                    budget.clone(),
                )
                .map_err(|source| decompress_error(&name, &budget, source))?;
                let mut files = read_control_tar(&name, decoder, &budget)?;
                let text = files
                    .remove("control")
                    .ok_or_else(|| DebError::MissingControlFile {
                        member: name.clone(),
                    })?;
                let stanza = parse_control(&name, &text)?;
                if let Some(conffiles) = files.get("conffiles") {
                    let text = std::str::from_utf8(conffiles).map_err(|_| DebError::NotUtf8 {
                        member: name.clone(),
                        file: "conffiles",
                    })?;
                    parse_conffiles(text)?;
                }
                control = Some((name, files, stanza));
            } else if let Some(compression) = Compression::from_member(&name, "data.tar")? {
                if data.is_some() {
                    return Err(DebError::UnexpectedMember {
                        member: name,
                        reason: "a second data.tar member",
                    });
                }
                if control.is_none() {
                    return Err(DebError::UnexpectedMember {
                        member: name,
                        reason: "data.tar must come after control.tar",
                    });
                }
                let input = std::io::BufReader::with_capacity(64 << 10, ar.member());
                let decoder = decoder(compression, input, size, &limits, None, budget.clone())
                    .map_err(|source| decompress_error(&name, &budget, source))?;
                let entries = read_data_tar(&name, decoder, &budget, sink)?;
                data = Some((entries, compression));
            } else {
                return Err(DebError::UnexpectedMember {
                    member: name,
                    reason: "not debian-binary, control.tar[.gz|.xz|.zst] or data.tar[.gz|.xz|.zst]",
                });
            }
        }
        let (_, control_files, control) = control.ok_or(DebError::MissingMember {
            member: "control.tar",
        })?;
        let (data, data_compression) =
            data.ok_or(DebError::MissingMember { member: "data.tar" })?;
        Ok(Deb {
            control,
            control_files,
            data,
            data_compression: data_compression.name(),
        })
    }

    /// The `Package` field.
    pub fn name(&self) -> &str {
        self.control.get("Package").unwrap_or_default()
    }

    /// The `Version` field.
    pub fn version(&self) -> &str {
        self.control.get("Version").unwrap_or_default()
    }

    /// The `Architecture` field.
    pub fn architecture(&self) -> &str {
        self.control.get("Architecture").unwrap_or_default()
    }

    /// The `Multi-Arch` field, if present.
    pub fn multi_arch(&self) -> Option<&str> {
        self.control.get("Multi-Arch")
    }

    /// The source package name and version: from `Source: name` or
    /// `Source: name (version)`, defaulting to the binary package's name and
    /// `Version`.
    pub fn source(&self) -> (String, String) {
        let source = self.control.get("Source").map(str::trim).unwrap_or("");
        let (name, version) = match source.split_once(char::is_whitespace) {
            Some((name, rest)) => {
                let version = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .map(str::trim)
                    .filter(|v| !v.is_empty());
                (name, version)
            }
            None => (source, None),
        };
        let name = if name.is_empty() { self.name() } else { name };
        (
            name.to_string(),
            version.unwrap_or(self.version()).to_string(),
        )
    }

    /// The maintainer scripts present in control.tar (`preinst`, `postinst`,
    /// `prerm`, `postrm`, `config`), in that order. They are never run by this
    /// crate; callers record that they were skipped.
    pub fn maintainer_scripts(&self) -> Vec<&str> {
        MAINTAINER_SCRIPTS
            .into_iter()
            .filter(|s| self.control_files.contains_key(*s))
            .collect()
    }

    /// The conffiles this package ships, from control.tar `conffiles` (entries
    /// flagged `remove-on-upgrade` are left out).
    pub fn conffiles(&self) -> Vec<&str> {
        self.conffile_lines()
            .into_iter()
            .filter(|c| !c.remove_on_upgrade)
            .map(|c| c.path)
            .collect()
    }

    /// The name dpkg gives this package's files in `/var/lib/dpkg/info`:
    /// `pkg`, or `pkg:arch` when `Multi-Arch: same`.
    pub fn info_name(&self) -> String {
        match self.multi_arch() {
            Some(ma) if ma.trim().eq_ignore_ascii_case("same") => {
                format!("{}:{}", self.name(), self.architecture())
            }
            _ => self.name().to_string(),
        }
    }

    /// The stanza dpkg writes to `/var/lib/dpkg/status` once the package is
    /// installed and configured.
    ///
    /// Known fields come first in dpkg's order (`Package`, `Essential`,
    /// `Protected`, `Status`, `Priority`, `Section`, `Installed-Size`, `Origin`,
    /// `Maintainer`, `Bugs`, `Architecture`, `Multi-Arch`, `Source`, `Version`,
    /// the relationship fields, `Conffiles`, `Description`), then all other
    /// fields in their control order. As dpkg does, `Status` is
    /// `install ok installed`; `Essential`/`Protected` are kept only when `yes`
    /// and `Multi-Arch` only when not `no`; a zero epoch is dropped from
    /// versions; relationship fields are rewritten in canonical form
    /// (`a (>= 1), b | c`); `Conffiles` lists each conffile with the MD5 of its
    /// contents in data.tar (following links inside the package), or
    /// `newconffile` when they cannot be found there.
    pub fn status_stanza(&self) -> Stanza {
        let mut out = Stanza::new();
        for &field in STATUS_ORDER {
            let value = match field {
                "Status" => Some("install ok installed".to_string()),
                "Conffiles" => self.conffiles_value(),
                "Config-Version" | "Triggers-Pending" | "Triggers-Awaited" => None,
                "Essential" | "Protected" => self
                    .control
                    .get(field)
                    .filter(|v| v.eq_ignore_ascii_case("yes"))
                    .map(|_| "yes".to_string()),
                "Multi-Arch" => self
                    .control
                    .get(field)
                    .map(str::to_ascii_lowercase)
                    .filter(|v| v != "no"),
                "Version" => self.control.get(field).map(normalize_version),
                _ if RELATION_FIELDS.contains(&field) => {
                    self.control.get(field).map(normalize_relations)
                }
                _ => self.control.get(field).map(str::to_string),
            };
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                out.push_unchecked(field, &value);
            }
        }
        for (name, value) in self.control.fields() {
            let known = STATUS_ORDER
                .iter()
                .chain(DROPPED_FIELDS)
                .any(|k| k.eq_ignore_ascii_case(name));
            if !known {
                out.push_unchecked(name, value);
            }
        }
        out
    }

    /// The contents of `/var/lib/dpkg/info/<info_name>.list`: `/.` and then every
    /// data.tar path in archive order, one per line.
    pub fn list_file(&self) -> String {
        let mut out = String::from("/.\n");
        for entry in &self.data {
            out.push_str(&entry.path);
            out.push('\n');
        }
        out
    }

    /// The contents of `/var/lib/dpkg/info/<info_name>.md5sums`: control.tar's
    /// `md5sums` when present (decoded lossily), otherwise what dpkg generates:
    /// `<md5>  <path>` for every regular file and hard link, paths relative to
    /// the root, in archive order.
    pub fn md5sums_file(&self) -> String {
        if let Some(md5sums) = self.control_files.get("md5sums") {
            return String::from_utf8_lossy(md5sums).into_owned();
        }
        let index = self.index();
        let mut out = String::new();
        for entry in &self.data {
            let md5 = match &entry.kind {
                EntryKind::File(f) => Some(&f.md5),
                EntryKind::Hardlink(target) => resolve_md5(&index, target),
                EntryKind::Dir | EntryKind::Symlink(_) => None,
            };
            if let Some(md5) = md5 {
                out.push_str(&hex::encode(md5));
                out.push_str("  ");
                out.push_str(entry.path.trim_start_matches('/'));
                out.push('\n');
            }
        }
        out
    }

    /// Every file dpkg would create in `/var/lib/dpkg/info` for this package, as
    /// `(file name, contents, mode)`, sorted by name: each control.tar member
    /// except `control` as `<info_name>.<member>` (maintainer scripts with mode
    /// 0755, others 0644), plus the `.list` and `.md5sums` files.
    pub fn info_files(&self) -> Vec<(String, Vec<u8>, u32)> {
        let info_name = self.info_name();
        let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
        for (member, contents) in &self.control_files {
            let mode = if MAINTAINER_SCRIPTS.contains(&member.as_str()) {
                0o755
            } else {
                0o644
            };
            files.insert(format!("{info_name}.{member}"), (contents.clone(), mode));
        }
        files.insert(
            format!("{info_name}.list"),
            (self.list_file().into_bytes(), 0o644),
        );
        files.insert(
            format!("{info_name}.md5sums"),
            (self.md5sums_file().into_bytes(), 0o644),
        );
        files
            .into_iter()
            .map(|(name, (contents, mode))| (name, contents, mode))
            .collect()
    }

    fn index(&self) -> HashMap<&str, &DataEntry> {
        self.data.iter().map(|e| (e.path.as_str(), e)).collect()
    }

    fn conffile_lines(&self) -> Vec<Conffile<'_>> {
        self.control_files
            .get("conffiles")
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .map(|text| {
                text.lines()
                    .filter_map(|line| parse_conffile_line(line).ok().flatten())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn conffiles_value(&self) -> Option<String> {
        let lines = self.conffile_lines();
        if lines.is_empty() {
            return None;
        }
        let index = self.index();
        let mut value = String::new();
        for conffile in lines {
            let hash = if conffile.remove_on_upgrade {
                None
            } else {
                resolve_md5(&index, conffile.path).map(hex::encode)
            };
            value.push_str("\n ");
            value.push_str(conffile.path);
            value.push(' ');
            value.push_str(hash.as_deref().unwrap_or("newconffile"));
            if conffile.remove_on_upgrade {
                value.push_str(" remove-on-upgrade");
            }
        }
        Some(value)
    }
}

mod control;
mod status;
use control::*;
use status::*;

fn tar_error(member: &str) -> impl Fn(std::io::Error) -> DebError + '_ {
    move |source| DebError::Tar {
        member: member.to_string(),
        source,
    }
}

/// The error for a failed read of `member`'s tar stream: a passed bound, a
/// corrupt compressed stream, or malformed tar.
fn decompress_error(member: &str, budget: &Budget, source: std::io::Error) -> DebError {
    if let Some(e) = budget.error(member) {
        return e;
    }
    if budget.decode_failed.get() {
        return DebError::Decompress {
            member: member.to_string(),
            source,
        };
    }
    DebError::Tar {
        member: member.to_string(),
        source,
    }
}

fn entry_path(member: &str, bytes: &[u8]) -> Result<String, DebError> {
    match std::str::from_utf8(bytes) {
        Ok(path) => Ok(path.to_string()),
        Err(_) => Err(DebError::NonUtf8Path {
            member: member.to_string(),
            path: String::from_utf8_lossy(bytes).into_owned(),
        }),
    }
}

fn unsupported_kind(entry_type: tar::EntryType) -> Option<String> {
    use tar::EntryType as T;
    match entry_type {
        T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link => None,
        T::Char => Some("character device node".into()),
        T::Block => Some("block device node".into()),
        T::Fifo => Some("fifo".into()),
        T::GNUSparse => Some("sparse file".into()),
        other => Some(format!(
            "tar entry of type {:?}",
            char::from(other.as_byte())
        )),
    }
}

/// Reads an entry's data, which must be as long as its header says.
fn read_contents<R: Read>(
    member: &str,
    path: &str,
    entry: &mut tar::Entry<'_, R>,
    budget: &Budget,
) -> Result<Vec<u8>, DebError> {
    let expected = entry.size();
    let mut contents = Vec::new();
    entry
        .read_to_end(&mut contents)
        .map_err(|e| decompress_error(member, budget, e))?;
    check_length(member, path, contents.len() as u64, expected)?;
    Ok(contents)
}

fn check_length(member: &str, path: &str, got: u64, expected: u64) -> Result<(), DebError> {
    if got != expected {
        return Err(DebError::Tar {
            member: member.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{path} is cut short: {got} of {expected} bytes"),
            ),
        });
    }
    Ok(())
}

/// Reads the rest of a member's decompressed stream after the tar's end, so
/// that the compressed stream's own checks (CRCs, footers) are verified; the
/// bounds still apply.
fn drain<R: Read>(
    member: &str,
    archive: tar::Archive<TarGuard<R>>,
    budget: &Budget,
) -> Result<(), DebError> {
    // The guard stays out of the way: what follows the archive is not tar.
    std::io::copy(&mut archive.into_inner().into_inner(), &mut std::io::sink())
        .map(drop)
        .map_err(|e| decompress_error(member, budget, e))
}

/// Hashes (MD5) and counts what passes through.
struct Md5Reader<'a, R> {
    inner: &'a mut R,
    md5: Md5,
    n: u64,
}

impl<R: Read> Read for Md5Reader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

fn read_control_tar(
    member: &str,
    tar: impl Read,
    budget: &Budget,
) -> Result<BTreeMap<String, Vec<u8>>, DebError> {
    let err = |e| decompress_error(member, budget, e);
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(TarGuard::new(tar));
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let raw = entry_path(member, &entry.path_bytes())?;
        let unsafe_path = |reason| DebError::UnsafePath {
            member: member.to_string(),
            path: raw.clone(),
            reason,
        };
        let path = normalize_path(&raw).map_err(unsafe_path)?;
        if entry_type.is_dir() {
            continue;
        }
        let kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => None,
            tar::EntryType::Symlink => Some("symlink".to_string()),
            tar::EntryType::Link => Some("hard link".to_string()),
            other => unsupported_kind(other),
        };
        if let Some(kind) = kind {
            return Err(DebError::BadControlMember {
                member: member.to_string(),
                path: raw,
                kind,
            });
        }
        let Some(path) = path else {
            return Err(unsafe_path("a regular file entry for the archive root"));
        };
        let name = &path[1..];
        if name.contains('/') {
            return Err(unsafe_path("control.tar must not have subdirectories"));
        }
        if files.contains_key(name) {
            return Err(DebError::DuplicatePath {
                member: member.to_string(),
                path: name.to_string(),
                first: "regular file",
                second: "regular file",
            });
        }
        let contents = read_contents(member, &raw, &mut entry, budget)?;
        files.insert(name.to_string(), contents);
    }
    drain(member, archive, budget)?;
    Ok(files)
}

fn read_data_tar(
    member: &str,
    tar: impl Read,
    budget: &Budget,
    sink: &mut dyn ContentSink,
) -> Result<Vec<DataEntry>, DebError> {
    let err = |e| decompress_error(member, budget, e);
    let mut entries: Vec<DataEntry> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut archive = tar::Archive::new(TarGuard::new(tar));
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let raw = entry_path(member, &entry.path_bytes())?;
        let unsafe_path = |reason| DebError::UnsafePath {
            member: member.to_string(),
            path: raw.clone(),
            reason,
        };
        let normalized = normalize_path(&raw).map_err(unsafe_path)?;
        let Some(path) = normalized else {
            if entry_type.is_dir() {
                continue;
            }
            return Err(unsafe_path("a non-directory entry for the archive root"));
        };
        if let Some(kind) = unsupported_kind(entry_type) {
            return Err(DebError::UnsupportedEntry {
                member: member.to_string(),
                path,
                kind,
            });
        }
        if !entry_type.is_dir() && raw.ends_with('/') {
            return Err(unsafe_path("a trailing '/' on a non-directory entry"));
        }
        let header = entry.header();
        let mode = header.mode().map_err(tar_error(member))? & 0o7777;
        let id = |field: &'static str, value: std::io::Result<u64>| {
            let value = value.map_err(tar_error(member))?;
            u32::try_from(value).map_err(|_| DebError::BadNumber {
                member: member.to_string(),
                path: path.clone(),
                field,
                value,
            })
        };
        let uid = id("uid", header.uid())?;
        let gid = id("gid", header.gid())?;
        let link_target = entry
            .link_name_bytes()
            .map(|bytes| entry_path(member, &bytes))
            .transpose()?;

        let kind = match entry_type {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => match link_target {
                Some(target) if !target.is_empty() => EntryKind::Symlink(target),
                _ => {
                    return Err(DebError::BadSymlink {
                        member: member.to_string(),
                        path,
                        reason: "empty link target",
                    });
                }
            },
            tar::EntryType::Link => {
                let target = link_target.unwrap_or_default();
                let bad = |target: String| DebError::BadHardlink {
                    member: member.to_string(),
                    path: path.clone(),
                    target,
                };
                let normalized = match normalize_path(&target) {
                    Ok(Some(normalized)) => normalized,
                    _ => return Err(bad(target)),
                };
                let earlier = index.get(&normalized).map(|&i| &entries[i].kind);
                match earlier {
                    Some(EntryKind::File(_)) => EntryKind::Hardlink(normalized),
                    Some(EntryKind::Hardlink(file)) => EntryKind::Hardlink(file.clone()),
                    _ => return Err(bad(normalized)),
                }
            }
            _ => {
                let size = entry.size();
                let mut reader = Md5Reader {
                    inner: &mut entry,
                    md5: Md5::new(),
                    n: 0,
                };
                let handle = sink.store(&path, size, &mut reader);
                let (n, md5) = (reader.n, reader.md5.finalize());
                let handle = handle.map_err(err)?;
                check_length(member, &raw, n, size)?;
                EntryKind::File(FileData {
                    size,
                    md5: md5.into(),
                    handle,
                    contents: None,
                })
            }
        };

        for (slash, _) in path.match_indices('/').skip(1) {
            let parent = &path[..slash];
            if let Some(&i) = index.get(parent)
                && entries[i].kind != EntryKind::Dir
            {
                let parent = parent.to_string();
                return Err(DebError::BeneathNonDirectory {
                    member: member.to_string(),
                    path,
                    parent,
                    parent_kind: entries[i].kind.describe(),
                });
            }
        }
        if let Some(&i) = index.get(&path) {
            let first = &mut entries[i];
            if first.kind == EntryKind::Dir && kind == EntryKind::Dir {
                // A directory listed twice: like tar extraction, the last metadata wins.
                first.mode = mode;
                first.uid = uid;
                first.gid = gid;
                continue;
            }
            return Err(DebError::DuplicatePath {
                member: member.to_string(),
                path,
                first: first.kind.describe(),
                second: kind.describe(),
            });
        }
        index.insert(path.clone(), entries.len());
        entries.push(DataEntry {
            path,
            kind,
            mode,
            uid,
            gid,
        });
    }
    drain(member, archive, budget)?;
    Ok(entries)
}

#[cfg(test)]
mod tests;
