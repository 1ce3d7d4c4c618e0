//! `kiln.toml`: the image spec. Unknown keys are errors; every semantic
//! error names the file, line and column of the offending value.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::spec_repos::{
    RawAccount, RawCa, RawPackages, RawRepository, parse_accounts, parse_packages,
    parse_repositories,
};

/// A spec error located in its file.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending line with a caret under the column (empty if unknown).
    pub snippet: String,
}

use kiln_oci::textpos::snippet;

impl std::fmt::Display for SpecError {
    /// `file:line:col: message` with a caret snippet; a position of 0:0
    /// (the file could not be read at all) is left out rather than printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "{}: {}{}",
                self.file.display(),
                self.message,
                self.snippet
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}{}",
                self.file.display(),
                self.line,
                self.column,
                self.message,
                self.snippet
            )
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    image: RawImage,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    debs: Vec<RawDeb>,
    #[serde(default)]
    baseline: Option<Baseline>,
    #[serde(default)]
    repositories: Vec<Spanned<RawRepository>>,
    #[serde(default)]
    packages: Option<Spanned<RawPackages>>,
    #[serde(default)]
    accounts: Vec<Spanned<RawAccount>>,
    #[serde(default)]
    ca_certificates: Vec<RawCa>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Spanned<String>,
    tag: Spanned<String>,
    #[serde(default)]
    entrypoint: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<u32>>,
    #[serde(default)]
    base: Option<Spanned<String>>,
    #[serde(default)]
    arch: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    check_entrypoint: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    src: Spanned<String>,
    dst: Spanned<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    dir_mode: Option<Spanned<String>>,
    #[serde(default)]
    owner: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeb {
    path: Spanned<String>,
    sha256: Spanned<String>,
}

/// Security/privacy settings carried in the image config (label
/// `dev.kiln.baseline`), compared between releases by the deploy stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_min_version: Option<TlsVersion>,
    #[serde(default)]
    pub ingress: Vec<u16>,
    #[serde(default)]
    pub egress: Vec<Egress>,
    /// Whether data at rest written by the service is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_at_rest: Option<bool>,
    /// Whether the service processes personal data (GDPR scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.0")]
    V1_0,
    #[serde(rename = "1.1")]
    V1_1,
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// An allowed outbound destination: `"host:port"`, or a table with a reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Egress {
    Plain(String),
    Rule {
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// The base of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An OCI layout on disk, pinned by manifest (or index) digest.
    Layout {
        path: PathBuf,
        digest: kiln_oci::Digest,
        spec: String,
    },
}

/// One `[[files]]` entry, validated.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub index: usize,
    /// Absolute host path of the source (inside the spec directory), as
    /// written (symlinks unresolved: the build resolves `src_text` again,
    /// without leaving the spec directory).
    pub src: PathBuf,
    /// The source as written in the spec.
    pub(crate) src_text: String,
    /// Normalised absolute image path, e.g. `/bin/busybox`.
    pub dst: String,
    /// For a file: its mode. For a directory: the mode of the regular files under it.
    pub mode: Option<u32>,
    /// For a directory: the mode of directories under it (default 0755).
    pub dir_mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    /// Where `dst` is in the spec, for errors found later.
    pub(crate) dst_loc: Loc,
    pub(crate) src_loc: Loc,
}

/// One `[[debs]]` entry, validated; or a repository package of the lock,
/// fetched into the cache (then `from` says which, for errors and the SBOM).
#[derive(Clone, Debug)]
pub struct DebSpec {
    pub index: usize,
    pub path: PathBuf,
    pub sha256: String,
    pub(crate) loc: Loc,
    /// For a repository package: `name version (url)`; `None` for `[[debs]]`.
    pub from: Option<String>,
    /// For a repository package: its suite's codename (the purl `distro`).
    pub distro: Option<String>,
}

/// The `[packages]` table: what to resolve against `[[repositories]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRequest {
    /// `name` or `name=version`, as written (order kept).
    pub include: Vec<String>,
    /// Names never to install.
    pub exclude: Vec<String>,
    /// Install `Recommends` too (default false).
    pub recommends: bool,
}

/// A position in the spec file, for error messages raised after parsing.
#[derive(Clone, Debug, Default)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// A parsed and validated spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub name: String,
    pub tag: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub base: Base,
    pub arch: String,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// `[image] check_entrypoint` (default true): fail the build when the
    /// entrypoint cannot start in the image (see `entrypoint.rs`).
    pub check_entrypoint: bool,
    pub files: Vec<FileSpec>,
    pub debs: Vec<DebSpec>,
    /// `[[repositories]]`, validated (a relative keyring is made absolute,
    /// inside the spec directory).
    pub repositories: Vec<kiln_repo::RepositoryConfig>,
    /// `[packages]`, when the image installs packages from repositories.
    pub packages: Option<PackageRequest>,
    /// `kiln.lock` as read beside the spec (its `[[deb]]` pins are already
    /// applied to `debs`).
    pub lock: Option<crate::lock::Lock>,
    /// The SHA-256 of each `[[debs]]` entry as written (before `kiln patch`
    /// pins), a resolution input of the lock.
    pub local_debs_as_written: Vec<String>,
    /// Accounts, extra CAs and the merged-/usr layout (see [`crate::system`]).
    pub system: crate::system::System,
    pub baseline: Baseline,
    /// SHA-256 of the spec file's bytes.
    pub sha256: String,
    /// SHA-256 of `kiln.lock`, when one was applied.
    pub lock_sha256: Option<String>,
    pub(crate) entrypoint_loc: Loc,
    /// The spec's text, for error snippets.
    text: String,
}

impl Spec {
    /// Read and validate the spec at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text =
            crate::hostfs::read_named(path, crate::hostfs::MAX_TEXT).map_err(|e| SpecError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the spec: {e}"),
                snippet: String::new(),
            })?;
        let text = kiln_oci::textpos::decode(text).map_err(|e| SpecError {
            file: path.to_path_buf(),
            line: e.line,
            column: e.column,
            message: e.message("the spec"),
            snippet: e.snippet.clone(),
        })?;
        let mut spec = Spec::parse(path, &text)?;
        if let Some((lock, sha)) = crate::lock::Lock::load(&spec.dir)? {
            lock.apply(&mut spec)?;
            spec.lock_sha256 = Some(sha);
            spec.lock = Some(lock);
        }
        Ok(spec)
    }

    /// Parse and validate spec text; `path` locates it (relative sources resolve against its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecError> {
        let cx = Cx { file: path, text };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| cx.line_col(s.start)).unwrap_or((0, 0));
            SpecError {
                file: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
                snippet: snippet(text, line, column),
            }
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = std::fs::canonicalize(&dir)
            .map_err(|e| cx.err(0..0, format!("cannot resolve the spec directory: {e}")))?;

        let img = raw.image;
        kiln_oci::layout::validate_name(img.name.get_ref())
            .map_err(|m| cx.err(img.name.span(), format!("image.name: {m}")))?;
        kiln_oci::layout::validate_tag(img.tag.get_ref())
            .map_err(|m| cx.err(img.tag.span(), format!("image.tag: {m}")))?;
        if let Some(ep) = &img.entrypoint
            && ep.get_ref().is_empty()
        {
            return Err(cx.err(ep.span(), "image.entrypoint must not be empty".into()));
        }
        if let Some(u) = &img.user {
            validate_user(u.get_ref()).map_err(|m| cx.err(u.span(), format!("image.user: {m}")))?;
        }
        if let Some(w) = &img.workdir
            && !w.get_ref().starts_with('/')
        {
            return Err(cx.err(w.span(), "image.workdir must be an absolute path".into()));
        }
        for (k, v) in &img.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.get_ref().contains('\0') {
                return Err(cx.err(v.span(), format!("image.env: invalid variable {k:?}")));
            }
        }
        let mut ports = Vec::new();
        for p in &img.ports {
            match u16::try_from(*p.get_ref()) {
                Ok(v) if v > 0 => ports.push(v),
                _ => {
                    return Err(cx.err(
                        p.span(),
                        format!("image.ports: {} is not a port (1-65535)", p.get_ref()),
                    ));
                }
            }
        }
        let base = match &img.base {
            None => Base::Scratch,
            Some(b) => parse_base(b.get_ref(), &dir)
                .map_err(|m| cx.err(b.span(), format!("image.base: {m}")))?,
        };
        let arch = match &img.arch {
            None => "amd64".to_string(),
            Some(a) => {
                const ARCHES: &[&str] = &[
                    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64",
                ];
                if !ARCHES.contains(&a.get_ref().as_str()) {
                    return Err(cx.err(
                        a.span(),
                        format!(
                            "image.arch: {:?} is not one of {}",
                            a.get_ref(),
                            ARCHES.join(", ")
                        ),
                    ));
                }
                a.get_ref().clone()
            }
        };

        let mut files = Vec::new();
        for (i, f) in raw.files.into_iter().enumerate() {
            let src = resolve_src(&dir, f.src.get_ref())
                .map_err(|m| cx.err(f.src.span(), format!("files[{i}].src: {m}")))?;
            let dst = normalize_dst(f.dst.get_ref())
                .map_err(|m| cx.err(f.dst.span(), format!("files[{i}].dst: {m}")))?;
            let mode = f
                .mode
                .as_ref()
                .map(|m| {
                    parse_mode(m.get_ref())
                        .map_err(|e| cx.err(m.span(), format!("files[{i}].mode: {e}")))
                })
                .transpose()?;
            let dir_mode = f
                .dir_mode
                .as_ref()
                .map(|m| {
                    parse_mode(m.get_ref())
                        .map_err(|e| cx.err(m.span(), format!("files[{i}].dir_mode: {e}")))
                })
                .transpose()?;
            let owner = f
                .owner
                .as_ref()
                .map(|o| {
                    parse_owner(o.get_ref())
                        .map_err(|e| cx.err(o.span(), format!("files[{i}].owner: {e}")))
                })
                .transpose()?;
            files.push(FileSpec {
                index: i,
                src,
                src_text: f.src.get_ref().clone(),
                dst,
                mode,
                dir_mode,
                owner,
                dst_loc: cx.loc(f.dst.span()),
                src_loc: cx.loc(f.src.span()),
            });
        }
        let mut debs = Vec::new();
        for (i, d) in raw.debs.into_iter().enumerate() {
            let path = resolve_src(&dir, d.path.get_ref())
                .map_err(|m| cx.err(d.path.span(), format!("debs[{i}].path: {m}")))?;
            let sha = d.sha256.get_ref();
            if sha.len() != 64 || !sha.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(cx.err(
                    d.sha256.span(),
                    format!("debs[{i}].sha256: expected 64 lowercase hex characters"),
                ));
            }
            debs.push(DebSpec {
                index: i,
                path,
                sha256: sha.clone(),
                loc: cx.loc(d.path.span()),
                from: None,
                distro: None,
            });
        }
        let baseline = raw.baseline.unwrap_or_default();
        let repositories = parse_repositories(&cx, &dir, &raw.repositories)?;
        let packages = parse_packages(&cx, raw.packages.as_ref())?;
        match (&raw.packages, raw.repositories.first()) {
            (Some(p), None) => {
                return Err(cx.err(
                    p.span(),
                    "[packages] needs at least one [[repositories]] entry to resolve against"
                        .into(),
                ));
            }
            (None, Some(r)) => {
                return Err(cx.err(
                    r.span(),
                    "[[repositories]] without [packages]: say what to install from it".into(),
                ));
            }
            _ => {}
        }
        let local_debs_as_written = debs.iter().map(|d| d.sha256.clone()).collect();
        let system = crate::system::System {
            merged_usr: packages.is_some(),
            accounts: parse_accounts(&cx, &raw.accounts)?,
            ca_certificates: raw
                .ca_certificates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    resolve_src(&dir, c.src.get_ref())
                        .map(|src| crate::system::ExtraCa {
                            src,
                            src_text: c.src.get_ref().clone(),
                        })
                        .map_err(|m| cx.err(c.src.span(), format!("ca_certificates[{i}].src: {m}")))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Spec {
            path: dir.join(path.file_name().unwrap_or_default()),
            dir,
            name: img.name.into_inner(),
            tag: img.tag.into_inner(),
            entrypoint_loc: img
                .entrypoint
                .as_ref()
                .map(|e| cx.loc(e.span()))
                .unwrap_or_default(),
            check_entrypoint: img.check_entrypoint.unwrap_or(true),
            entrypoint: img.entrypoint.map(Spanned::into_inner),
            cmd: img.cmd,
            user: img.user.map(Spanned::into_inner),
            workdir: img.workdir.map(Spanned::into_inner),
            env: img
                .env
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            ports,
            base,
            arch,
            labels: img.labels,
            stop_signal: img.stop_signal,
            files,
            debs,
            local_debs_as_written,
            repositories,
            packages,
            lock: None,
            system,
            baseline,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
            text: text.to_string(),
            lock_sha256: None,
        })
    }

    /// An error at a location remembered from parsing.
    pub(crate) fn error_at(&self, loc: &Loc, message: String) -> SpecError {
        SpecError {
            file: self.path.clone(),
            line: loc.line,
            column: loc.column,
            message,
            snippet: snippet(&self.text, loc.line, loc.column),
        }
    }
}

pub(crate) struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        kiln_oci::textpos::line_col(self.text, offset)
    }
    pub(crate) fn loc(&self, span: Range<usize>) -> Loc {
        let (line, column) = self.line_col(span.start);
        Loc { line, column }
    }
    pub(crate) fn err(&self, span: Range<usize>, message: String) -> SpecError {
        let (line, column) = self.line_col(span.start);
        SpecError {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            snippet: snippet(self.text, line, column),
        }
    }
}

/// Why the value of a spec field is refused (the [`SpecError`] it becomes
/// adds the field and where it is).
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("{0:?} is not an octal mode like \"0644\"")]
    Mode(String),
    #[error("{0:?} has bits beyond 07777")]
    ModeBits(String),
    #[error("{0:?} must be numeric \"uid:gid\"")]
    Owner(String),
    #[error("uid {0:?} is not a number")]
    Uid(String),
    #[error("gid {0:?} is not a number")]
    Gid(String),
    #[error("{0:?} must be user, uid, user:group or uid:gid")]
    User(String),
    #[error("{0:?} must be an absolute path in the image")]
    NotAbsolute(String),
    #[error("contains a NUL byte")]
    Nul,
    #[error("{0:?} contains '..', which could escape the image root")]
    DotDot(String),
    #[error("empty path")]
    EmptyPath,
    #[error("{0:?} must be relative to the spec's directory")]
    NotRelative(String),
    #[error("{0:?} leaves the spec's directory")]
    LeavesDir(String),
    #[error("{path:?} {source}")]
    Resolve {
        path: String,
        #[source]
        source: crate::hostfs::ResolveError,
    },
    #[error("{0:?} must be \"scratch\" or \"oci:<layout path>@sha256:<hex>\"")]
    Base(String),
    #[error("{0:?} must be pinned by digest: \"oci:<layout path>@sha256:<hex>\"")]
    Unpinned(String),
    #[error("{0}")]
    Digest(#[source] kiln_oci::OciError),
    #[error("the layout path is empty")]
    EmptyLayoutPath,
}

/// Parse an octal mode string such as `"0755"` or `"4755"`.
pub fn parse_mode(s: &str) -> Result<u32, FieldError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return Err(FieldError::Mode(s.into()));
    }
    let v = u32::from_str_radix(s, 8).map_err(|_| FieldError::Mode(s.into()))?;
    if v > 0o7777 {
        return Err(FieldError::ModeBits(s.into()));
    }
    Ok(v)
}

fn parse_owner(s: &str) -> Result<(u32, u32), FieldError> {
    let (u, g) = s
        .split_once(':')
        .ok_or_else(|| FieldError::Owner(s.into()))?;
    let u = u.parse().map_err(|_| FieldError::Uid(u.into()))?;
    let g = g.parse().map_err(|_| FieldError::Gid(g.into()))?;
    Ok((u, g))
}

fn validate_user(s: &str) -> Result<(), FieldError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    };
    let ok = match s.split_once(':') {
        Some((u, g)) => ok_part(u) && ok_part(g),
        None => ok_part(s),
    };
    if ok {
        Ok(())
    } else {
        Err(FieldError::User(s.into()))
    }
}

/// Normalise an image path: absolute, no `.`/`..`/empty components after
/// resolution, and never above `/`. A trailing `/` is kept as a marker for
/// "into this directory".
pub fn normalize_dst(s: &str) -> Result<String, FieldError> {
    if !s.starts_with('/') {
        return Err(FieldError::NotAbsolute(s.into()));
    }
    if s.contains('\0') {
        return Err(FieldError::Nul);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(FieldError::DotDot(s.into()));
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if s.ends_with('/') && out != "/" {
        out.push('/');
    }
    Ok(out)
}

/// Resolve a source path relative to the spec directory; it must stay inside
/// it (also after following symlinks in its parents).
/// A path relative to the spec's directory that stays inside it.
pub(crate) fn resolve_in(dir: &Path, s: &str) -> Result<PathBuf, FieldError> {
    resolve_src(dir, s)
}

pub(crate) fn resolve_src(dir: &Path, s: &str) -> Result<PathBuf, FieldError> {
    if s.is_empty() {
        return Err(FieldError::EmptyPath);
    }
    let p = Path::new(s);
    if p.is_absolute() {
        return Err(FieldError::NotRelative(s.into()));
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(FieldError::LeavesDir(s.into()));
        }
    }
    let joined = dir.join(p);
    // Symlinks on the way must stay inside the spec directory (the last
    // component is examined later with lstat, so a top-level symlink is
    // copied as a symlink, unless the path says "the directory": `d/`,
    // `d/.`). The build resolves it again, race-free, when it reads it; a
    // path that does not exist yet is reported there, with the file.
    let Ok(root) = crate::hostfs::Root::open(dir) else {
        return Ok(joined);
    };
    match root.resolve(s) {
        Err(
            e @ (crate::hostfs::ResolveError::Escapes { .. }
            | crate::hostfs::ResolveError::Leaves
            | crate::hostfs::ResolveError::Loop),
        ) => Err(FieldError::Resolve {
            path: s.into(),
            source: e,
        }),
        _ => Ok(joined),
    }
}

fn parse_base(s: &str, dir: &Path) -> Result<Base, FieldError> {
    if s == "scratch" {
        return Ok(Base::Scratch);
    }
    let rest = s
        .strip_prefix("oci:")
        .ok_or_else(|| FieldError::Base(s.into()))?;
    let (p, d) = rest
        .rsplit_once('@')
        .ok_or_else(|| FieldError::Unpinned(s.into()))?;
    let digest: kiln_oci::Digest = d.parse().map_err(FieldError::Digest)?;
    if p.is_empty() {
        return Err(FieldError::EmptyLayoutPath);
    }
    let path = if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        dir.join(p)
    };
    Ok(Base::Layout {
        path,
        digest,
        spec: s.to_string(),
    })
}

#[cfg(test)]
mod tests;
