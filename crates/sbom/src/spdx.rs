//! SPDX 2.3 JSON.

use sha1::{Digest as _, Sha1};

use crate::json::JsonWriter;
use crate::owners::{Model, OwnedFile};
use crate::util::{
    UniqueNames, created_utc, is_lower_hex, is_plain_web_url, push_spdx_id_fragment, sha1_hex,
    spdx_id_fragment, touch_ahead,
};
use crate::{FileKind, FileRecord, Inventory, Package, PackageOrigin, purl};

const NOASSERTION: &str = "NOASSERTION";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const IMAGE_ID: &str = "SPDXRef-Image";
/// Longest readable part of a generated SPDXID.
const ID_FRAGMENT_MAX: usize = 96;

/// An SPDX package, written with the keys in this order; `None` and empty
/// fields are left out.
struct SpdxPackage<'a> {
    spdx_id: &'a str,
    name: &'a str,
    version_info: Option<&'a str>,
    supplier: Option<String>,
    files_analyzed: bool,
    package_verification_code: Option<String>,
    /// SHA-256 checksum (the only one packages carry).
    sha256: Option<&'a str>,
    homepage: Option<&'a str>,
    source_info: Option<String>,
    summary: Option<&'a str>,
    comment: Option<String>,
    purl: String,
    primary_package_purpose: Option<&'static str>,
    built_date: Option<&'a str>,
}

impl SpdxPackage<'_> {
    fn write(&self, w: &mut JsonWriter) {
        w.element();
        w.begin_object();
        w.field_str("SPDXID", self.spdx_id);
        w.field_str("name", self.name);
        w.field_opt_str("versionInfo", self.version_info);
        w.field_opt_str("supplier", self.supplier.as_deref());
        w.field_str("downloadLocation", NOASSERTION);
        w.key("filesAnalyzed");
        w.bool(self.files_analyzed);
        if let Some(code) = &self.package_verification_code {
            w.key("packageVerificationCode");
            w.begin_object();
            w.field_str("packageVerificationCodeValue", code);
            w.end_object();
        }
        if let Some(h) = self.sha256 {
            w.key("checksums");
            w.begin_array();
            write_checksum(w, "SHA256", h);
            w.end_array();
        }
        w.field_opt_str("homepage", self.homepage);
        w.field_opt_str("sourceInfo", self.source_info.as_deref());
        w.field_str("licenseConcluded", NOASSERTION);
        w.field_str("licenseDeclared", NOASSERTION);
        w.field_str("copyrightText", NOASSERTION);
        w.field_opt_str("summary", self.summary);
        w.field_opt_str("comment", self.comment.as_deref());
        w.key("externalRefs");
        w.begin_array();
        w.element();
        w.begin_object();
        w.field_str("referenceCategory", "PACKAGE-MANAGER");
        w.field_str("referenceType", "purl");
        w.field_str("referenceLocator", &self.purl);
        w.end_object();
        w.end_array();
        w.field_opt_str("primaryPackagePurpose", self.primary_package_purpose);
        w.field_opt_str("builtDate", self.built_date);
        w.end_object();
    }
}

fn write_checksum(w: &mut JsonWriter, algorithm: &'static str, value: &str) {
    w.element();
    w.begin_object();
    w.field_str("algorithm", algorithm);
    w.field_str("checksumValue", value);
    w.end_object();
}

/// One element of the top-level `files` array, laid out as serde_json's
/// pretty printer does at that depth (element at 4 spaces, fields at 6,
/// checksums at 8 and 10); written as whole chunks because there are ~10^5.
fn write_file(w: &mut JsonWriter, ids: &FileIds, i: usize, r: &FileRecord) {
    debug_assert_eq!(w.depth(), 2);
    w.element();
    w.raw(b"{\n      \"SPDXID\": ");
    ids.write(w, i);
    w.raw(b",\n      \"fileName\": \".");
    w.string_part(&r.path);
    w.raw(b"\",\n      \"checksums\": ");
    if r.sha1.is_none() && r.sha256.is_none() {
        w.raw(b"[]");
    } else {
        let mut open: &[u8] = b"[\n        {\n          \"algorithm\": \"";
        for (algorithm, value) in [(&b"SHA1"[..], &r.sha1), (&b"SHA256"[..], &r.sha256)] {
            if let Some(h) = value {
                w.raw(open);
                w.raw(algorithm);
                w.raw(b"\",\n          \"checksumValue\": \"");
                w.string_part(h);
                w.raw(b"\"\n        }");
                open = b",\n        {\n          \"algorithm\": \"";
            }
        }
        w.raw(b"\n      ]");
    }
    w.raw(
        b",\n      \"licenseConcluded\": \"NOASSERTION\",\n      \"copyrightText\": \"NOASSERTION\"",
    );
    if let (FileKind::Hardlink, Some(target)) = (r.kind, &r.link) {
        w.raw(b",\n      \"comment\": \"Hard link to ");
        w.string_part(target);
        w.raw(b".\"");
    }
    w.raw(b"\n    }");
}

/// A `CONTAINS` relationship from `from` to file `i`, an element of the
/// top-level `relationships` array (see `write_file` for the layout).
fn write_contains_file(w: &mut JsonWriter, from: &str, ids: &FileIds, i: usize) {
    debug_assert_eq!(w.depth(), 2);
    w.element();
    w.raw(b"{\n      \"spdxElementId\": \"");
    w.string_part(from);
    w.raw(b"\",\n      \"relationshipType\": \"CONTAINS\",\n      \"relatedSpdxElement\": ");
    ids.write(w, i);
    w.raw(b"\n    }");
}

fn write_relationship(w: &mut JsonWriter, from: &str, kind: &'static str, to: &str) {
    w.element();
    w.begin_object();
    w.field_str("spdxElementId", from);
    w.field_str("relationshipType", kind);
    w.field_str("relatedSpdxElement", to);
    w.end_object();
}

/// The SPDXIDs of the described files: `SPDXRef-File-<readable fragment>`,
/// with `-2`, `-3`, ... appended on the (rare) collision of fragments,
/// assigned in path order. The fragments (ASCII) live in one buffer.
struct FileIds {
    fragments: Vec<u8>,
    /// Per file: where its fragment is in `fragments`, and its suffix (0 for none).
    ids: Vec<(usize, usize, u64)>,
}

impl FileIds {
    fn new(files: &[OwnedFile<'_>]) -> FileIds {
        let count = files.len();
        let mut fragments = Vec::new();
        let mut spans = Vec::with_capacity(count);
        for (i, f) in files.iter().enumerate() {
            touch_ahead(files, i, |f| [Some(f.record.path.as_str())]);
            let path = f.record.path.as_str();
            if fragments.capacity() == 0 {
                fragments.reserve(count * (path.len() + 8));
            }
            spans.push(push_spdx_id_fragment(&mut fragments, path, ID_FRAGMENT_MAX));
        }
        // SPDXIDs of other elements never start with `SPDXRef-File-`, so
        // only file IDs can collide with file IDs.
        let mut names = UniqueNames::with_capacity(count, b'-');
        let ids = spans
            .into_iter()
            .map(|span| {
                let n = names.allocate(fragments.get(span.clone()).unwrap_or_default());
                (span.start, span.end, n)
            })
            .collect();
        FileIds { fragments, ids }
    }

    /// Writes the SPDXID of file `i` as a JSON string.
    fn write(&self, w: &mut JsonWriter, i: usize) {
        let Some(&(start, end, n)) = self.ids.get(i) else {
            w.string("");
            return;
        };
        w.open_string();
        w.raw_part("SPDXRef-File-");
        // Fragments are `[A-Za-z0-9.-]+`: nothing to escape.
        w.raw_bytes_part(self.fragments.get(start..end).unwrap_or_default());
        if n > 0 {
            w.raw_part("-");
            w.uint(n);
        }
        w.close_string();
    }
}

/// SPDX 2.3 package verification code (§7.9): SHA-1 over the concatenation
/// of the package's files' lowercase hex SHA-1s, sorted ascending.
fn verification_code<'a>(sha1s: impl Iterator<Item = &'a str>) -> String {
    let sha1s: Vec<&str> = sha1s.collect();
    // Usually every value is 40 lowercase hex digits: sort copies of them
    // (compact, no pointer chasing) by their first eight bytes, then the rest.
    let mut fixed: Vec<[u8; 40]> = Vec::with_capacity(sha1s.len());
    for (i, h) in sha1s.iter().enumerate() {
        touch_ahead(&sha1s, i, |h| [Some(*h)]);
        match <[u8; 40]>::try_from(h.as_bytes()) {
            Ok(b) if !b.iter().any(u8::is_ascii_uppercase) => fixed.push(b),
            _ => break,
        }
    }
    if fixed.len() == sha1s.len() {
        // Sort (first eight bytes as a big-endian number, index): compact
        // keys, and the order of the strings except among equal prefixes.
        let mut keys: Vec<(u64, u32)> = fixed
            .iter()
            .zip(0u32..)
            .map(|(b, i)| {
                let mut k = [0u8; 8];
                k.copy_from_slice(&b[..8]);
                (u64::from_be_bytes(k), i)
            })
            .collect();
        let full = |i: u32| fixed.get(i as usize);
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| full(a.1).cmp(&full(b.1))));
        let mut sorted = Vec::with_capacity(fixed.len() * 40);
        for (_, i) in keys {
            if let Some(b) = full(i) {
                sorted.extend_from_slice(b);
            }
        }
        let mut hasher = Sha1::new();
        hasher.update(&sorted);
        return hex::encode(hasher.finalize());
    }
    let mut lower: Vec<String> = sha1s.iter().map(|h| h.to_ascii_lowercase()).collect();
    lower.sort_unstable();
    sha1_hex(lower.concat().as_bytes())
}

/// Turns a Debian `Maintainer:` value into an SPDX actor when it fits the
/// `Person|Organization: name (email)` grammar unambiguously; `None`
/// otherwise (the field is optional, a malformed one is worse than none).
fn supplier(maintainer: &str) -> Option<String> {
    let m = maintainer.trim();
    let (name, email) = match m.split_once('<') {
        Some((name, rest)) => {
            let email = rest.strip_suffix('>')?;
            (name.trim(), Some(email.trim()))
        }
        None => (m, None),
    };
    let clean = |s: &str| !s.chars().any(|c| c.is_control() || "()<>".contains(c));
    if name.is_empty() || !clean(name) {
        return None;
    }
    if let Some(e) = email
        && (!clean(e) || e.chars().any(char::is_whitespace) || !e.contains('@'))
    {
        return None;
    }
    const TEAM_WORDS: [&str; 8] = [
        "team",
        "maintainers",
        "developers",
        "project",
        "group",
        "packagers",
        "community",
        "list",
    ];
    let is_team = name
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| TEAM_WORDS.iter().any(|t| w.eq_ignore_ascii_case(t)));
    let kind = if is_team { "Organization" } else { "Person" };
    Some(match email {
        Some(e) => format!("{kind}: {name} ({e})"),
        None => format!("{kind}: {name}"),
    })
}

fn non_empty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

fn package_comment(p: &Package) -> String {
    let origin = match &p.origin {
        PackageOrigin::Deb { .. } => {
            "Installed by kiln by unpacking the .deb; kiln never runs maintainer scripts."
        }
        PackageOrigin::Base => {
            "Inherited from the base image (recorded in its dpkg status); kiln ran none of its maintainer scripts."
        }
    };
    let scripts = if p.maintainer_scripts_not_run.is_empty() {
        "none".to_string()
    } else {
        p.maintainer_scripts_not_run.join(", ")
    };
    if p.done_by_kiln.is_empty() {
        format!("{origin} Maintainer scripts not run: {scripts}.")
    } else {
        format!(
            "{origin} Maintainer scripts not run: {scripts}. In their place: {}.",
            p.done_by_kiln.join("; ")
        )
    }
}

pub(crate) fn document_namespace(name: &str, digest: &str) -> String {
    let mut out = String::from("https://kiln.dev/spdx/");
    for &b in name.as_bytes() {
        if crate::purl::is_unreserved(b) || b == b'/' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('/');
    for &b in digest.replace(':', "-").as_bytes() {
        if crate::purl::is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inventory as an SPDX 2.3 JSON document.
///
/// One package for the image (`primaryPackagePurpose: CONTAINER`), one per
/// Debian package, one SPDX file per regular file or hard link that a package
/// owns or the spec declares (base-image files no package claims are not
/// described). Relationships: the document DESCRIBES the image, the image
/// CONTAINS every package and the files it holds directly (spec files), each
/// package CONTAINS its files. `filesAnalyzed` is true exactly for the
/// packages that CONTAIN files, and those carry the §7.9 verification code
/// computed over the files they CONTAIN.
pub fn spdx_json(inv: &Inventory) -> Vec<u8> {
    let model = Model::new(inv);
    let created = created_utc(&inv.image.created);

    let mut package_names = UniqueNames::with_capacity(model.packages.len(), b'-');
    let package_fragments: Vec<String> = model
        .packages
        .iter()
        .map(|p| {
            spdx_id_fragment(
                &format!("{}-{}-{}", p.name, p.version, p.architecture),
                ID_FRAGMENT_MAX,
            )
        })
        .collect();
    let package_ids: Vec<String> = package_fragments
        .iter()
        .map(
            |fragment| match package_names.allocate(fragment.as_bytes()) {
                0 => format!("SPDXRef-Package-deb-{fragment}"),
                n => format!("SPDXRef-Package-deb-{fragment}-{n}"),
            },
        )
        .collect();

    let file_ids = FileIds::new(&model.files);

    // Which files each package (index) and the image CONTAIN.
    let mut contained: Vec<Vec<u32>> = vec![Vec::new(); model.packages.len()];
    let mut image_files: Vec<u32> = Vec::new();
    let mut path_bytes = 0;
    for (fi, f) in model.files.iter().enumerate() {
        path_bytes += f.record.path.len();
        let fi = u32::try_from(fi).unwrap_or(u32::MAX);
        let owners = model.owners(f);
        if owners.is_empty() {
            image_files.push(fi);
        }
        for &o in owners {
            if let Some(list) = contained.get_mut(o as usize) {
                list.push(fi);
            }
        }
    }
    let code_for = |file_indexes: &[u32]| -> Option<String> {
        if file_indexes.is_empty() {
            return None;
        }
        Some(verification_code(
            file_indexes
                .iter()
                .filter_map(|&i| model.files.get(i as usize))
                .filter_map(|f| f.record.sha1.as_deref()),
        ))
    };

    let image = &inv.image;
    // Roughly 600 bytes of JSON per described file plus its path four times.
    let mut w = JsonWriter::with_capacity(8192 + model.files.len() * 640 + path_bytes * 4);
    w.begin_object();
    w.field_str("spdxVersion", "SPDX-2.3");
    w.field_str("dataLicense", "CC0-1.0");
    w.field_str("SPDXID", DOCUMENT_ID);
    w.key("name");
    w.open_string();
    w.string_part(&image.name);
    if !image.tag.is_empty() {
        w.raw_part(":");
        w.string_part(&image.tag);
    }
    w.close_string();
    w.field_str(
        "documentNamespace",
        &document_namespace(&image.name, &image.digest),
    );
    w.key("creationInfo");
    w.begin_object();
    w.field_str("created", &created);
    w.key("creators");
    w.begin_array();
    w.element();
    w.open_string();
    w.raw_part("Tool: ");
    w.string_part(&inv.tool.name);
    w.raw_part("-");
    w.string_part(&inv.tool.version);
    w.close_string();
    w.end_array();
    w.end_object();

    w.key("packages");
    w.begin_array();
    SpdxPackage {
        spdx_id: IMAGE_ID,
        name: &image.name,
        version_info: non_empty(&image.tag),
        supplier: None,
        files_analyzed: !image_files.is_empty(),
        package_verification_code: code_for(&image_files),
        sha256: None,
        homepage: None,
        source_info: None,
        summary: None,
        comment: Some(format!(
            "OCI image for {}/{}, manifest digest {}, built by {} {}.",
            image.os, image.architecture, image.digest, inv.tool.name, inv.tool.version
        )),
        purl: purl::oci(&image.name, &image.digest),
        primary_package_purpose: Some("CONTAINER"),
        built_date: Some(&created),
    }
    .write(&mut w);
    for (i, p) in model.packages.iter().enumerate() {
        let own = contained.get(i).map(Vec::as_slice).unwrap_or_default();
        let (source_name, source_version) = p.source();
        SpdxPackage {
            spdx_id: package_ids.get(i).map(String::as_str).unwrap_or_default(),
            name: &p.name,
            version_info: non_empty(&p.version),
            supplier: p.maintainer.as_deref().and_then(supplier),
            files_analyzed: !own.is_empty(),
            package_verification_code: code_for(own),
            sha256: match &p.origin {
                PackageOrigin::Deb { sha256 } if is_lower_hex(sha256, 64) => Some(sha256),
                _ => None,
            },
            homepage: p
                .homepage
                .as_deref()
                .map(str::trim)
                .filter(|h| is_plain_web_url(h)),
            source_info: Some(format!(
                "built from Debian source package {source_name} {source_version}"
            )),
            summary: p.summary.as_deref().and_then(non_empty),
            comment: Some(package_comment(p)),
            purl: purl::deb(&p.name, &p.version, &p.architecture, p.distro.as_deref()),
            primary_package_purpose: None,
            built_date: None,
        }
        .write(&mut w);
    }
    w.end_array();

    if !model.files.is_empty() {
        w.key("files");
        w.begin_array();
        for (i, f) in model.files.iter().enumerate() {
            touch_ahead(&model.files, i, |f| {
                [
                    Some(f.record.path.as_str()),
                    f.record.sha1.as_deref(),
                    f.record.sha256.as_deref(),
                ]
            });
            write_file(&mut w, &file_ids, i, f.record);
        }
        w.end_array();
    }

    w.key("relationships");
    w.begin_array();
    write_relationship(&mut w, DOCUMENT_ID, "DESCRIBES", IMAGE_ID);
    for id in &package_ids {
        write_relationship(&mut w, IMAGE_ID, "CONTAINS", id);
    }
    for (id, own) in package_ids.iter().zip(&contained) {
        for &fi in own {
            write_contains_file(&mut w, id, &file_ids, fi as usize);
        }
    }
    for &fi in &image_files {
        write_contains_file(&mut w, IMAGE_ID, &file_ids, fi as usize);
    }
    w.end_array();
    w.end_object();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppliers() {
        assert_eq!(
            supplier("Debian Busybox Team <busybox@packages.debian.org>").as_deref(),
            Some("Organization: Debian Busybox Team (busybox@packages.debian.org)")
        );
        assert_eq!(
            supplier("Jane Doe <jane@example.org>").as_deref(),
            Some("Person: Jane Doe (jane@example.org)")
        );
        assert_eq!(
            supplier("GNU Libc Maintainers <debian-glibc@lists.debian.org>").as_deref(),
            Some("Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)")
        );
        assert_eq!(supplier("Jane Doe").as_deref(), Some("Person: Jane Doe"));
        assert_eq!(supplier("Jane (JD) Doe <j@x.org>"), None);
        assert_eq!(supplier("<j@x.org>"), None);
        assert_eq!(supplier("Jane <not an email>"), None);
        assert_eq!(supplier("Jane <j@x.org"), None);
        assert_eq!(supplier(""), None);
    }

    #[test]
    fn verification_code_matches_spec_algorithm() {
        // Two files with known SHA-1s; the code is SHA-1 of their sorted concatenation.
        let a = "da39a3ee5e6b4b0d3255bfef95601890afd80709".to_string();
        let b = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33".to_string();
        let code = verification_code([a.as_str(), b.as_str()].into_iter());
        assert_eq!(code, sha1_hex(format!("{b}{a}").as_bytes()));
        let upper = verification_code([a.to_uppercase().as_str(), b.as_str()].into_iter());
        assert_eq!(upper, code);
        // Values sharing their first eight digits, and odd lengths.
        let c = "da39a3ee0e6b4b0d3255bfef95601890afd80709".to_string();
        let d = "da39a3ee".to_string();
        let code = verification_code([a.as_str(), c.as_str(), b.as_str()].into_iter());
        assert_eq!(code, sha1_hex(format!("{b}{c}{a}").as_bytes()));
        let code = verification_code([a.as_str(), d.as_str(), c.as_str()].into_iter());
        assert_eq!(code, sha1_hex(format!("{d}{c}{a}").as_bytes()));
    }

    #[test]
    fn namespace_is_a_uri() {
        assert_eq!(
            document_namespace("ghcr.io:443/acme/héllo", "sha256:ab"),
            "https://kiln.dev/spdx/ghcr.io%3A443/acme/h%C3%A9llo/sha256-ab"
        );
    }
}
