//! Package URLs (purl spec, github.com/package-url/purl-spec).
//!
//! Every component is percent-encoded (UTF-8, uppercase hex) except the
//! unreserved characters `A-Z a-z 0-9 . - _ ~`. Exceptions, as kiln's formats
//! reference fixes them: the epoch colon of a Debian version stays a literal
//! `:`, and the `/` separators inside an OCI `repository_url` qualifier stay
//! literal. So `+` is always `%2B`, and an OCI digest's colon is `%3A`.

/// `pkg:deb/debian/<name>@<version>?arch=<arch>&distro=<codename>`.
///
/// The name is lowercased (the purl `deb` type is case-insensitive); empty
/// `version`, `arch` or `distro` are left out. Qualifiers are in key order.
pub fn deb(name: &str, version: &str, arch: &str, distro: Option<&str>) -> String {
    let mut out = String::from("pkg:deb/debian/");
    encode_into(&mut out, &name.to_lowercase(), b"");
    if !version.is_empty() {
        out.push('@');
        encode_into(&mut out, version, b":");
    }
    let mut sep = '?';
    for (key, value) in [("arch", Some(arch)), ("distro", distro)] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push(sep);
            sep = '&';
            out.push_str(key);
            out.push('=');
            encode_into(&mut out, v, b"");
        }
    }
    out
}

/// `pkg:oci/<name>@sha256%3A<hex>`.
///
/// Per the purl `oci` type the name is the last segment of the repository,
/// lowercased; when the repository has more segments (a registry or a
/// namespace, `ghcr.io/acme/hello`) the full repository is kept in the
/// `repository_url` qualifier.
pub fn oci(name: &str, digest: &str) -> String {
    let (last, repository) = match name.rsplit_once('/') {
        Some((_, last)) => (last, Some(name)),
        None => (name, None),
    };
    let mut out = String::from("pkg:oci/");
    encode_into(&mut out, &last.to_lowercase(), b"");
    if !digest.is_empty() {
        out.push('@');
        encode_into(&mut out, digest, b"");
    }
    if let Some(repo) = repository {
        out.push_str("?repository_url=");
        encode_into(&mut out, repo, b"/");
    }
    out
}

/// Whether `b` is a purl unreserved character, never percent-encoded.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~')
}

fn encode_into(out: &mut String, s: &str, keep: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if is_unreserved(b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_examples() {
        assert_eq!(
            deb("busybox", "1:1.35.0-4+b3", "amd64", Some("bookworm")),
            "pkg:deb/debian/busybox@1:1.35.0-4%2Bb3?arch=amd64&distro=bookworm"
        );
        assert_eq!(
            deb("libstdc++6", "12.2.0-14", "amd64", None),
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64"
        );
        assert_eq!(
            deb("tzdata", "2024a-0+deb12u1", "all", Some("")),
            "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all"
        );
        assert_eq!(
            deb("foo", "1.0~rc1", "", Some("bookworm")),
            "pkg:deb/debian/foo@1.0~rc1?distro=bookworm"
        );
        assert_eq!(deb("Foo", "", "", None), "pkg:deb/debian/foo");
        assert_eq!(
            deb("a b", "1 2", "x&y", Some("p=q")),
            "pkg:deb/debian/a%20b@1%202?arch=x%26y&distro=p%3Dq"
        );
    }

    #[test]
    fn oci_examples() {
        let hex = "a".repeat(64);
        assert_eq!(
            oci("hello", &format!("sha256:{hex}")),
            format!("pkg:oci/hello@sha256%3A{hex}")
        );
        assert_eq!(
            oci("ghcr.io/Acme/Hello", &format!("sha256:{hex}")),
            format!("pkg:oci/hello@sha256%3A{hex}?repository_url=ghcr.io/Acme/Hello")
        );
        assert_eq!(
            oci("localhost:5000/hello", "sha256:00"),
            "pkg:oci/hello@sha256%3A00?repository_url=localhost%3A5000/hello"
        );
    }
}
