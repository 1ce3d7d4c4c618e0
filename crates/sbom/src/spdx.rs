//! SPDX 2.3 JSON.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::owners::Model;
use crate::util::{
    created_utc, is_lower_hex, is_plain_web_url, sha1_hex, spdx_id_fragment, to_json_bytes,
};
use crate::{FileKind, Inventory, Package, PackageOrigin, purl};

const NOASSERTION: &str = "NOASSERTION";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const IMAGE_ID: &str = "SPDXRef-Image";
/// Longest readable part of a generated SPDXID.
const ID_FRAGMENT_MAX: usize = 96;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<SpdxPackage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<SpdxFile>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<String>,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_verification_code: Option<VerificationCode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    license_concluded: &'static str,
    license_declared: &'static str,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    built_date: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerificationCode {
    package_verification_code_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxFile {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    file_name: String,
    checksums: Vec<Checksum>,
    license_concluded: &'static str,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

fn relationship(from: &str, kind: &'static str, to: &str) -> Relationship {
    Relationship {
        spdx_element_id: from.to_string(),
        relationship_type: kind,
        related_spdx_element: to.to_string(),
    }
}

/// Hands out unique SPDXIDs: `SPDXRef-<prefix>-<readable fragment>`, with
/// `-2`, `-3`, ... appended on the (rare) collision of fragments. The
/// writers assign IDs in canonical order, so the result is deterministic.
#[derive(Default)]
struct IdAllocator {
    taken: BTreeSet<String>,
}

impl IdAllocator {
    fn allocate(&mut self, prefix: &str, readable: &str) -> String {
        let base = format!(
            "SPDXRef-{prefix}-{}",
            spdx_id_fragment(readable, ID_FRAGMENT_MAX)
        );
        let mut id = base.clone();
        let mut n = 2u64;
        while self.taken.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.taken.insert(id.clone());
        id
    }
}

/// SPDX 2.3 package verification code (§7.9): SHA-1 over the concatenation
/// of the package's files' lowercase hex SHA-1s, sorted ascending.
fn verification_code(sha1s: &mut [String]) -> VerificationCode {
    sha1s.sort_unstable();
    let value = sha1_hex(sha1s.concat().as_bytes());
    VerificationCode {
        package_verification_code_value: value,
    }
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
    format!("{origin} Maintainer scripts not run: {scripts}.")
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
    let mut ids = IdAllocator::default();
    ids.taken.insert(DOCUMENT_ID.to_string());
    ids.taken.insert(IMAGE_ID.to_string());

    let package_ids: Vec<String> = model
        .packages
        .iter()
        .map(|p| {
            ids.allocate(
                "Package-deb",
                &format!("{}-{}-{}", p.name, p.version, p.architecture),
            )
        })
        .collect();

    let mut files = Vec::with_capacity(model.files.len());
    let mut file_ids = Vec::with_capacity(model.files.len());
    for f in &model.files {
        let r = f.record;
        let id = ids.allocate("File", &r.path);
        let mut checksums = Vec::with_capacity(2);
        if let Some(h) = &r.sha1 {
            checksums.push(Checksum {
                algorithm: "SHA1",
                checksum_value: h.clone(),
            });
        }
        if let Some(h) = &r.sha256 {
            checksums.push(Checksum {
                algorithm: "SHA256",
                checksum_value: h.clone(),
            });
        }
        let comment = match (r.kind, &r.link) {
            (FileKind::Hardlink, Some(target)) => Some(format!("Hard link to {target}.")),
            _ => None,
        };
        files.push(SpdxFile {
            spdx_id: id.clone(),
            file_name: format!(".{}", r.path),
            checksums,
            license_concluded: NOASSERTION,
            copyright_text: NOASSERTION,
            comment,
        });
        file_ids.push(id);
    }

    // Which files each package (index) and the image (None) CONTAIN.
    let mut contained: Vec<Vec<usize>> = vec![Vec::new(); model.packages.len()];
    let mut image_files: Vec<usize> = Vec::new();
    for (fi, f) in model.files.iter().enumerate() {
        if f.owners.is_empty() {
            image_files.push(fi);
        }
        for &o in &f.owners {
            if let Some(list) = contained.get_mut(o) {
                list.push(fi);
            }
        }
    }
    let code_for = |file_indexes: &[usize]| -> Option<VerificationCode> {
        if file_indexes.is_empty() {
            return None;
        }
        let mut sha1s: Vec<String> = file_indexes
            .iter()
            .filter_map(|&i| model.files.get(i))
            .filter_map(|f| f.record.sha1.as_ref())
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Some(verification_code(&mut sha1s))
    };

    let image = &inv.image;
    let image_purl = purl::oci(&image.name, &image.digest);
    let mut packages = Vec::with_capacity(model.packages.len() + 1);
    packages.push(SpdxPackage {
        spdx_id: IMAGE_ID.to_string(),
        name: image.name.clone(),
        version_info: non_empty(&image.tag).map(str::to_string),
        supplier: None,
        download_location: NOASSERTION,
        files_analyzed: !image_files.is_empty(),
        package_verification_code: code_for(&image_files),
        checksums: Vec::new(),
        homepage: None,
        source_info: None,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION,
        copyright_text: NOASSERTION,
        summary: None,
        comment: Some(format!(
            "OCI image for {}/{}, manifest digest {}, built by {} {}.",
            image.os, image.architecture, image.digest, inv.tool.name, inv.tool.version
        )),
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: image_purl,
        }],
        primary_package_purpose: Some("CONTAINER"),
        built_date: Some(created.clone()),
    });

    for (i, p) in model.packages.iter().enumerate() {
        let own = contained.get(i).map(Vec::as_slice).unwrap_or_default();
        let checksums = match &p.origin {
            PackageOrigin::Deb { sha256 } if is_lower_hex(sha256, 64) => vec![Checksum {
                algorithm: "SHA256",
                checksum_value: sha256.clone(),
            }],
            _ => Vec::new(),
        };
        let (source_name, source_version) = p.source();
        packages.push(SpdxPackage {
            spdx_id: package_ids.get(i).cloned().unwrap_or_default(),
            name: p.name.clone(),
            version_info: non_empty(&p.version).map(str::to_string),
            supplier: p.maintainer.as_deref().and_then(supplier),
            download_location: NOASSERTION,
            files_analyzed: !own.is_empty(),
            package_verification_code: code_for(own),
            checksums,
            homepage: p
                .homepage
                .as_deref()
                .map(str::trim)
                .filter(|h| is_plain_web_url(h))
                .map(str::to_string),
            source_info: Some(format!(
                "built from Debian source package {source_name} {source_version}"
            )),
            license_concluded: NOASSERTION,
            license_declared: NOASSERTION,
            copyright_text: NOASSERTION,
            summary: p.summary.as_deref().and_then(non_empty).map(str::to_string),
            comment: Some(package_comment(p)),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: purl::deb(
                    &p.name,
                    &p.version,
                    &p.architecture,
                    p.distro.as_deref(),
                ),
            }],
            primary_package_purpose: None,
            built_date: None,
        });
    }

    let mut relationships = vec![relationship(DOCUMENT_ID, "DESCRIBES", IMAGE_ID)];
    for id in &package_ids {
        relationships.push(relationship(IMAGE_ID, "CONTAINS", id));
    }
    for (id, own) in package_ids.iter().zip(&contained) {
        for &fi in own {
            if let Some(fid) = file_ids.get(fi) {
                relationships.push(relationship(id, "CONTAINS", fid));
            }
        }
    }
    for &fi in &image_files {
        if let Some(fid) = file_ids.get(fi) {
            relationships.push(relationship(IMAGE_ID, "CONTAINS", fid));
        }
    }

    let name = if image.tag.is_empty() {
        image.name.clone()
    } else {
        format!("{}:{}", image.name, image.tag)
    };
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: DOCUMENT_ID,
        name,
        document_namespace: document_namespace(&image.name, &image.digest),
        creation_info: CreationInfo {
            created,
            creators: vec![format!("Tool: {}-{}", inv.tool.name, inv.tool.version)],
        },
        packages,
        files,
        relationships,
    };
    to_json_bytes(&doc)
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
        let code = verification_code(&mut [a.clone(), b.clone()]);
        assert_eq!(
            code.package_verification_code_value,
            sha1_hex(format!("{b}{a}").as_bytes())
        );
    }

    #[test]
    fn namespace_is_a_uri() {
        assert_eq!(
            document_namespace("ghcr.io:443/acme/héllo", "sha256:ab"),
            "https://kiln.dev/spdx/ghcr.io%3A443/acme/h%C3%A9llo/sha256-ab"
        );
    }
}
