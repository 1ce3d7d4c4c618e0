//! The spec's package tables: `[[repositories]]`, `[packages]`,
//! `[[accounts]]` and `[[ca_certificates]]` (the last two become
//! [`crate::system::System`]). Every error names the line and column of the
//! offending value, like the rest of [`crate::spec`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::spec::{Cx, PackageRequest, SpecError, normalize_dst, resolve_src};
use crate::system::Account;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    #[serde(default)]
    pub(crate) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) suites: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) components: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) keyring: Option<Spanned<String>>,
    /// An apt deb822 `.sources` file instead: its `Types: deb` entries with
    /// a `Signed-By` path (this machine's mirror, without naming a host).
    #[serde(default)]
    pub(crate) apt_sources: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackages {
    #[serde(default)]
    pub(crate) include: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) recommends: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    pub(crate) name: Spanned<String>,
    pub(crate) uid: Spanned<u32>,
    pub(crate) gid: Spanned<u32>,
    #[serde(default)]
    pub(crate) home: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) shell: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCa {
    pub(crate) src: Spanned<String>,
}

/// Is `s` a Debian package name (`[a-z0-9][a-z0-9+.-]+`, Policy 5.6.1)?
pub fn is_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')
        })
}

pub(crate) fn parse_repositories(
    cx: &Cx<'_>,
    dir: &Path,
    raw: &[Spanned<RawRepository>],
) -> Result<Vec<kiln_repo::RepositoryConfig>, SpecError> {
    let mut out = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let r = spanned.get_ref();
        if let Some(src) = &r.apt_sources {
            if r.url.is_some()
                || r.suites.is_some()
                || r.components.is_some()
                || r.keyring.is_some()
            {
                return Err(cx.err(
                    src.span(),
                    format!("repositories[{i}]: apt_sources stands alone (no url, suites, components or keyring beside it)"),
                ));
            }
            let at = |m: String| cx.err(src.span(), format!("repositories[{i}].apt_sources: {m}"));
            let path = if Path::new(src.get_ref()).is_absolute() {
                PathBuf::from(src.get_ref())
            } else {
                resolve_src(dir, src.get_ref()).map_err(|m| at(m.to_string()))?
            };
            let bytes = crate::hostfs::read_named(&path, crate::hostfs::MAX_TEXT)
                .map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| at(format!("{} is not UTF-8", path.display())))?;
            let found = kiln_repo::repositories_from_sources(&text)
                .map_err(|e| at(format!("{}: {e}", path.display())))?;
            if found.is_empty() {
                return Err(at(format!(
                    "{} has no enabled `Types: deb` entry with a Signed-By keyring path",
                    path.display()
                )));
            }
            for mut c in found {
                c.url = c.url.trim_end_matches('/').to_string();
                c.validate().map_err(|e| at(e.to_string()))?;
                out.push(c);
            }
            continue;
        }
        let (Some(url), Some(suites), Some(components), Some(keyring)) =
            (&r.url, &r.suites, &r.components, &r.keyring)
        else {
            return Err(cx.err(
                spanned.span(),
                format!(
                    "repositories[{i}]: needs url, suites, components and keyring (or apt_sources)"
                ),
            ));
        };
        let k = keyring.get_ref();
        // A system keyring by absolute path, or one beside the spec.
        let keyring_path = if Path::new(k).is_absolute() {
            PathBuf::from(k)
        } else {
            resolve_src(dir, k)
                .map_err(|m| cx.err(keyring.span(), format!("repositories[{i}].keyring: {m}")))?
        };
        let config = kiln_repo::RepositoryConfig {
            url: url.get_ref().trim_end_matches('/').to_string(),
            suites: suites.clone(),
            components: components.clone(),
            keyring: keyring_path,
        };
        config
            .validate()
            .map_err(|e| cx.err(url.span(), format!("repositories[{i}]: {e}")))?;
        out.push(config);
    }
    Ok(out)
}

pub(crate) fn parse_packages(
    cx: &Cx<'_>,
    raw: Option<&Spanned<RawPackages>>,
) -> Result<Option<PackageRequest>, SpecError> {
    let Some(raw) = raw else { return Ok(None) };
    let p = raw.get_ref();
    let mut names = BTreeSet::new();
    let mut include = Vec::new();
    for (i, e) in p.include.iter().enumerate() {
        let s = e.get_ref();
        let (name, version) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s.as_str(), None),
        };
        if !is_package_name(name) {
            return Err(cx.err(
                e.span(),
                format!("packages.include[{i}]: {name:?} is not a Debian package name"),
            ));
        }
        if let Some(v) = version
            && kiln_repo::DebVersion::parse(v).is_err()
        {
            return Err(cx.err(
                e.span(),
                format!("packages.include[{i}]: {v:?} is not a Debian version"),
            ));
        }
        if !names.insert(name.to_string()) {
            return Err(cx.err(
                e.span(),
                format!("packages.include[{i}]: {name} is listed twice"),
            ));
        }
        include.push(s.clone());
    }
    let mut exclude = Vec::new();
    for (i, e) in p.exclude.iter().enumerate() {
        let s = e.get_ref();
        if !is_package_name(s) {
            return Err(cx.err(
                e.span(),
                format!("packages.exclude[{i}]: {s:?} is not a Debian package name"),
            ));
        }
        if names.contains(s.as_str()) {
            return Err(cx.err(
                e.span(),
                format!("packages.exclude[{i}]: {s} is also in include"),
            ));
        }
        if exclude.contains(s) {
            return Err(cx.err(
                e.span(),
                format!("packages.exclude[{i}]: {s} is listed twice"),
            ));
        }
        exclude.push(s.clone());
    }
    Ok(Some(PackageRequest {
        include,
        exclude,
        recommends: p.recommends,
    }))
}

/// A user or group name as `useradd` accepts it by default:
/// `[a-z_][a-z0-9_-]*`, at most 32 bytes.
fn is_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

pub(crate) fn parse_accounts(
    cx: &Cx<'_>,
    raw: &[Spanned<RawAccount>],
) -> Result<Vec<Account>, SpecError> {
    let mut out: Vec<Account> = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let a = a.get_ref();
        let name = a.name.get_ref();
        let at =
            |span: std::ops::Range<usize>, m: String| cx.err(span, format!("accounts[{i}].{m}"));
        if !is_account_name(name) {
            return Err(at(
                a.name.span(),
                format!("name: {name:?} must match [a-z_][a-z0-9_-]* (at most 32 bytes)"),
            ));
        }
        if name == "root" || *a.uid.get_ref() == 0 {
            return Err(at(
                a.uid.span(),
                "uid: root (uid 0) comes from base-passwd; [[accounts]] adds unprivileged ones"
                    .into(),
            ));
        }
        if *a.uid.get_ref() == u32::MAX || *a.gid.get_ref() == u32::MAX {
            return Err(at(
                a.uid.span(),
                "uid/gid 4294967295 is reserved (-1)".into(),
            ));
        }
        if out.iter().any(|o| o.name == *name) {
            return Err(at(a.name.span(), format!("name: {name} is listed twice")));
        }
        if let Some(o) = out.iter().find(|o| o.uid == *a.uid.get_ref()) {
            return Err(at(
                a.uid.span(),
                format!("uid: {} is also {}'s", a.uid.get_ref(), o.name),
            ));
        }
        let path =
            |field: &str, p: &Option<Spanned<String>>| -> Result<Option<String>, SpecError> {
                let Some(p) = p else { return Ok(None) };
                let n = normalize_dst(p.get_ref())
                    .map_err(|m| at(p.span(), format!("{field}: {m}")))?;
                if n.contains(':') || n.contains('\n') {
                    return Err(at(
                        p.span(),
                        format!("{field}: must not contain ':' or a newline"),
                    ));
                }
                Ok(Some(n.trim_end_matches('/').to_string())
                    .filter(|s| !s.is_empty())
                    .or(Some("/".into())))
            };
        out.push(Account {
            name: name.clone(),
            uid: *a.uid.get_ref(),
            gid: *a.gid.get_ref(),
            home: path("home", &a.home)?,
            shell: path("shell", &a.shell)?,
        });
    }
    Ok(out)
}
