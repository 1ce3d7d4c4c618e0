//! CycloneDX 1.5 JSON.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::owners::Model;
use crate::util::{created_utc, is_lower_hex, is_plain_web_url, sha256_bytes, to_json_bytes};
use crate::{FileKind, FileOrigin, Inventory, PackageOrigin, purl};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata,
    components: Vec<Component>,
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
struct Metadata {
    timestamp: String,
    tools: Tools,
    component: Component,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Component>,
}

#[derive(Serialize)]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publisher: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(rename = "externalReferences", skip_serializing_if = "Vec::is_empty")]
    external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

impl Component {
    fn new(kind: &'static str, name: &str) -> Component {
        Component {
            kind,
            bom_ref: None,
            publisher: None,
            name: name.to_string(),
            version: None,
            description: None,
            hashes: Vec::new(),
            purl: None,
            external_references: Vec::new(),
            properties: Vec::new(),
        }
    }
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
struct ExternalReference {
    url: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Property {
    name: &'static str,
    value: String,
}

fn prop(name: &'static str, value: impl Into<String>) -> Property {
    Property {
        name,
        value: value.into(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
}

/// `urn:uuid:` + a UUID made from the first 16 bytes of SHA-256(image
/// digest), with the RFC 4122 variant bits and version 4 bits set: the
/// CycloneDX serial number is then the same for every build of the same image
/// and different for different images. (Version 4 rather than RFC 9562's
/// version 8, because consumers that pattern-match `[1-5]` are common.)
pub(crate) fn serial_number(image_digest: &str) -> String {
    let h = sha256_bytes(image_digest.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Makes bom-refs unique: the first use of a value keeps it, later ones get
/// `#2`, `#3`, ... (only a malformed inventory with duplicate packages needs
/// this; bom-refs must be unique within a BOM).
#[derive(Default)]
struct Refs {
    taken: BTreeSet<String>,
}

impl Refs {
    fn unique(&mut self, wanted: String) -> String {
        let mut candidate = wanted.clone();
        let mut n = 2u64;
        while self.taken.contains(&candidate) {
            candidate = format!("{wanted}#{n}");
            n += 1;
        }
        self.taken.insert(candidate.clone());
        candidate
    }
}

/// The inventory as a CycloneDX 1.5 JSON BOM.
///
/// `metadata.component` is the image (type `container`); `components` holds
/// one `library` per Debian package (bom-ref = purl) followed by one `file`
/// per regular file or hard link that a package owns or the spec declares
/// (the same files the SPDX document describes), with SHA-1 and SHA-256.
/// `dependencies` records that the image depends on every package; the
/// packages' own dependencies are not known, so they are not listed.
pub fn cyclonedx_json(inv: &Inventory) -> Vec<u8> {
    let model = Model::new(inv);
    let image = &inv.image;
    let mut refs = Refs::default();

    let image_purl = purl::oci(&image.name, &image.digest);
    let image_ref = refs.unique(image_purl.clone());
    let mut image_component = Component::new("container", &image.name);
    image_component.bom_ref = Some(image_ref.clone());
    image_component.version = (!image.tag.is_empty()).then(|| image.tag.clone());
    image_component.purl = Some(image_purl);
    image_component.properties = vec![
        prop("kiln:image:digest", image.digest.clone()),
        prop("kiln:image:os", image.os.clone()),
        prop("kiln:image:architecture", image.architecture.clone()),
    ];

    let mut tool = Component::new("application", &inv.tool.name);
    tool.version = (!inv.tool.version.is_empty()).then(|| inv.tool.version.clone());

    let mut components = Vec::with_capacity(model.packages.len() + model.files.len());
    let mut package_refs = Vec::with_capacity(model.packages.len());
    for p in &model.packages {
        let package_purl = purl::deb(&p.name, &p.version, &p.architecture, p.distro.as_deref());
        let bom_ref = refs.unique(package_purl.clone());
        let mut c = Component::new("library", &p.name);
        c.bom_ref = Some(bom_ref.clone());
        c.publisher = p
            .maintainer
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        c.version = (!p.version.is_empty()).then(|| p.version.clone());
        c.description = p
            .summary
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let origin = match &p.origin {
            PackageOrigin::Deb { sha256 } => {
                if is_lower_hex(sha256, 64) {
                    c.hashes.push(Hash {
                        alg: "SHA-256",
                        content: sha256.clone(),
                    });
                }
                "deb"
            }
            PackageOrigin::Base => "base-image",
        };
        c.purl = Some(package_purl);
        if let Some(h) = p.homepage.as_deref().map(str::trim)
            && is_plain_web_url(h)
        {
            c.external_references.push(ExternalReference {
                url: h.to_string(),
                kind: "website",
            });
        }
        let (source_name, source_version) = p.source();
        let scripts = if p.maintainer_scripts_not_run.is_empty() {
            "none".to_string()
        } else {
            p.maintainer_scripts_not_run.join(",")
        };
        c.properties = vec![
            prop("kiln:package:origin", origin),
            prop("kiln:package:source-name", source_name),
            prop("kiln:package:source-version", source_version),
            prop("kiln:package:maintainer-scripts-not-run", scripts),
        ];
        components.push(c);
        package_refs.push(bom_ref);
    }

    for f in &model.files {
        let r = f.record;
        let mut c = Component::new("file", &r.path);
        c.bom_ref = Some(refs.unique(format!("file:{}", r.path)));
        if let Some(h) = &r.sha1 {
            c.hashes.push(Hash {
                alg: "SHA-1",
                content: h.clone(),
            });
        }
        if let Some(h) = &r.sha256 {
            c.hashes.push(Hash {
                alg: "SHA-256",
                content: h.clone(),
            });
        }
        let origin = match &r.origin {
            FileOrigin::Base => "base-image",
            FileOrigin::Package(_) => "package",
            FileOrigin::Spec => "spec",
        };
        c.properties.push(prop("kiln:file:origin", origin));
        for &o in &f.owners {
            if let Some(p) = model.packages.get(o) {
                c.properties
                    .push(prop("kiln:file:package", p.name.as_str()));
            }
        }
        if let (FileKind::Hardlink, Some(target)) = (r.kind, &r.link) {
            c.properties
                .push(prop("kiln:file:hardlink-target", target.as_str()));
        }
        components.push(c);
    }

    let bom = Bom {
        schema: "http://cyclonedx.org/schema/bom-1.5.schema.json",
        bom_format: "CycloneDX",
        spec_version: "1.5",
        serial_number: serial_number(&image.digest),
        version: 1,
        metadata: Metadata {
            timestamp: created_utc(&image.created),
            tools: Tools {
                components: vec![tool],
            },
            component: image_component,
        },
        components,
        dependencies: vec![Dependency {
            reference: image_ref,
            depends_on: package_refs,
        }],
    };
    to_json_bytes(&bom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_number_shape() {
        let s = serial_number("sha256:0000");
        let uuid = s.strip_prefix("urn:uuid:").unwrap_or_default();
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(uuid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert!(!uuid.bytes().any(|b| b.is_ascii_uppercase()));
        assert_eq!(s, serial_number("sha256:0000"));
        assert_ne!(s, serial_number("sha256:0001"));
    }
}
