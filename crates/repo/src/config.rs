//! The `[[repositories]]` table of a kiln spec, and the same information
//! read from an apt `.sources` file (deb822), so tests and tools can use the
//! machine's own mirror without naming a host.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Deb822Error, RepoError};
use kiln_solve::deb822;

/// One repository: a base URL, the suites and components to read from it,
/// and the OpenPGP keyring (binary or ASCII-armored) its `InRelease` files
/// must be signed with. Plain `http://` is fine: trust comes from the
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    pub url: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub keyring: PathBuf,
}

/// Is `s` a safe path below a repository root: relative, `/`-separated,
/// no empty, `.` or `..` segment, only `A-Za-z0-9._+~:-` in each segment
/// (nothing that a URL or a file system would interpret)?
pub fn check_relative_path(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > 1024 {
        return Err("it is longer than 1024 bytes");
    }
    if s.starts_with('/') {
        return Err("it is an absolute path");
    }
    for seg in s.split('/') {
        match seg {
            "" => return Err("it has an empty path segment"),
            "." | ".." => return Err("it has a `.` or `..` segment (leaves the repository root)"),
            _ => {}
        }
        if !seg.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b':' | b'-')
        }) {
            return Err("it has a character outside A-Za-z0-9._+~:-");
        }
    }
    Ok(())
}

impl RepositoryConfig {
    /// Check what a spec gave: an `http://` or `https://` URL without query
    /// or fragment, at least one suite and component, and safe names.
    pub fn validate(&self) -> Result<(), RepoError> {
        let bad = |m: String| Err(RepoError::Config(m));
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"));
        match rest {
            None => {
                return bad(format!(
                    "url {:?} must start with http:// or https://",
                    self.url
                ));
            }
            Some(r) if r.is_empty() || r.starts_with('/') => {
                return bad(format!("url {:?} has no host", self.url));
            }
            Some(r) if r.contains(['?', '#', ' ', '\\']) || r.chars().any(char::is_control) => {
                return bad(format!(
                    "url {:?} must not have a query, fragment or blanks",
                    self.url
                ));
            }
            Some(_) => {}
        }
        if self.suites.is_empty() {
            return bad(format!("repository {}: suites is empty", self.url));
        }
        if self.components.is_empty() {
            return bad(format!("repository {}: components is empty", self.url));
        }
        for (what, list) in [("suite", &self.suites), ("component", &self.components)] {
            for s in list {
                check_relative_path(s)
                    .or_else(|r| bad(format!("repository {}: {what} {s:?}: {r}", self.url)))?;
            }
        }
        Ok(())
    }

    /// The URL with no trailing slash.
    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

/// The `Types: deb` entries of an apt deb822 `.sources` file, one
/// repository per URI. Entries without `Signed-By` (a path) are skipped:
/// kiln needs an explicit keyring. `Enabled: no` entries are skipped.
pub fn repositories_from_sources(text: &str) -> Result<Vec<RepositoryConfig>, Deb822Error> {
    let mut out = Vec::new();
    for p in deb822::parse(text)? {
        let words = |n: &str| -> Vec<String> {
            p.get(n)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        if p.get("Enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let Some(keyring) = p
            .get("Signed-By")
            .filter(|k| k.starts_with('/') && !k.contains('\n'))
        else {
            continue;
        };
        for uri in words("URIs") {
            out.push(RepositoryConfig {
                url: uri,
                suites: words("Suites"),
                components: words("Components"),
                keyring: PathBuf::from(keyring.trim()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_strictness() {
        let t = r#"
url = "http://mirror.invalid/debian"
suites = ["bookworm", "bookworm-updates"]
components = ["main"]
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
"#;
        let c: RepositoryConfig = toml::from_str(t).unwrap();
        c.validate().unwrap();
        assert_eq!(c.suites.len(), 2);
        let back: RepositoryConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(toml::from_str::<RepositoryConfig>(&format!("{t}\nextra = 1\n")).is_err());
        for (field, val) in [
            ("url", "ftp://x/debian"),
            ("url", "http:///debian"),
            ("url", "http://x/debian?y"),
        ] {
            let mut c2 = c.clone();
            if field == "url" {
                c2.url = val.into();
            }
            assert!(c2.validate().is_err(), "{val}");
        }
        let mut c3 = c.clone();
        c3.suites = vec!["../etc".into()];
        assert!(c3.validate().is_err());
        c3.suites = vec![];
        assert!(c3.validate().is_err());
    }

    #[test]
    fn paths() {
        for ok in [
            "pool/main/b/base-files/base-files_12.4+deb12u11_amd64.deb",
            "a",
            "updates/main",
        ] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "pool/../../x",
            "pool//x",
            "./x",
            "a/..",
            "a b",
            "a?b",
            "a%2e",
            "a\\b",
            "a\0",
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sources_files() {
        let t = "Types: deb\nURIs: http://a.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\n\
                 Types: deb-src\nURIs: http://b.invalid/debian\nSuites: x\nComponents: main\nSigned-By: /k.gpg\n\n\
                 Types: deb\nURIs: http://c.invalid/debian\nSuites: x\nComponents: main\n";
        let r = repositories_from_sources(t).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(r[0].keyring, PathBuf::from("/k.gpg"));
    }
}
