//! CycloneDX 1.5 JSON.

use crate::json::JsonWriter;
use crate::owners::Model;
use crate::util::{
    UniqueNames, created_utc, is_lower_hex, is_plain_web_url, sha256_bytes, touch_ahead,
};
use crate::{FileKind, FileOrigin, FileRecord, Inventory, PackageOrigin, purl};

/// A non-file component, written with the keys in this order; `None` and
/// empty fields are left out.
struct Component<'a> {
    kind: &'static str,
    bom_ref: Option<&'a str>,
    publisher: Option<&'a str>,
    name: &'a str,
    version: Option<&'a str>,
    description: Option<&'a str>,
    /// SHA-256 hash (the only one non-file components carry).
    sha256: Option<&'a str>,
    purl: Option<&'a str>,
    website: Option<&'a str>,
    properties: &'a [(&'static str, &'a str)],
}

impl<'a> Component<'a> {
    fn new(kind: &'static str, name: &'a str) -> Component<'a> {
        Component {
            kind,
            bom_ref: None,
            publisher: None,
            name,
            version: None,
            description: None,
            sha256: None,
            purl: None,
            website: None,
            properties: &[],
        }
    }

    /// Writes the component as the value of the key or element just started.
    fn write(&self, w: &mut JsonWriter) {
        w.begin_object();
        w.field_str("type", self.kind);
        w.field_opt_str("bom-ref", self.bom_ref);
        w.field_opt_str("publisher", self.publisher);
        w.field_str("name", self.name);
        w.field_opt_str("version", self.version);
        w.field_opt_str("description", self.description);
        if let Some(h) = self.sha256 {
            w.key("hashes");
            w.begin_array();
            write_hash(w, "SHA-256", h);
            w.end_array();
        }
        w.field_opt_str("purl", self.purl);
        if let Some(url) = self.website {
            w.key("externalReferences");
            w.begin_array();
            w.element();
            w.begin_object();
            w.field_str("url", url);
            w.field_str("type", "website");
            w.end_object();
            w.end_array();
        }
        if !self.properties.is_empty() {
            w.key("properties");
            w.begin_array();
            for (name, value) in self.properties {
                write_property(w, name, value);
            }
            w.end_array();
        }
        w.end_object();
    }
}

fn write_hash(w: &mut JsonWriter, alg: &'static str, content: &str) {
    w.element();
    w.begin_object();
    w.field_str("alg", alg);
    w.field_str("content", content);
    w.end_object();
}

fn write_property(w: &mut JsonWriter, name: &'static str, value: &str) {
    w.element();
    w.begin_object();
    w.field_str("name", name);
    w.field_str("value", value);
    w.end_object();
}

/// One file component, an element of the top-level `components` array,
/// laid out as serde_json's pretty printer does at that depth (element at 4
/// spaces, fields at 6, hashes and properties at 8 and 10); written as whole
/// chunks because there are ~10^5.
fn write_file<'p>(
    w: &mut JsonWriter,
    r: &FileRecord,
    ref_suffix: Option<u64>,
    packages: impl Iterator<Item = &'p str>,
) {
    debug_assert_eq!(w.depth(), 2);
    w.element();
    w.raw(b"{\n      \"type\": \"file\",\n      \"bom-ref\": \"file:");
    w.string_part(&r.path);
    if let Some(n) = ref_suffix
        && n > 0
    {
        w.raw(b"#");
        w.uint(n);
    }
    w.raw(b"\",\n      \"name\": \"");
    w.string_part(&r.path);
    w.raw(b"\"");
    if r.sha1.is_some() || r.sha256.is_some() {
        let mut open: &[u8] = b",\n      \"hashes\": [\n        {\n          \"alg\": \"";
        for (alg, value) in [(&b"SHA-1"[..], &r.sha1), (&b"SHA-256"[..], &r.sha256)] {
            if let Some(h) = value {
                w.raw(open);
                w.raw(alg);
                w.raw(b"\",\n          \"content\": \"");
                w.string_part(h);
                w.raw(b"\"\n        }");
                open = b",\n        {\n          \"alg\": \"";
            }
        }
        w.raw(b"\n      ]");
    }
    w.raw(b",\n      \"properties\": [\n        {\n          \"name\": \"kiln:file:origin\",\n          \"value\": \"");
    w.raw(match &r.origin {
        FileOrigin::Base => b"base-image",
        FileOrigin::Package(_) => b"package",
        FileOrigin::Spec => b"spec",
    });
    w.raw(b"\"\n        }");
    for name in packages {
        w.raw(b",\n        {\n          \"name\": \"kiln:file:package\",\n          \"value\": \"");
        w.string_part(name);
        w.raw(b"\"\n        }");
    }
    if let (FileKind::Hardlink, Some(target)) = (r.kind, &r.link) {
        w.raw(b",\n        {\n          \"name\": \"kiln:file:hardlink-target\",\n          \"value\": \"");
        w.string_part(target);
        w.raw(b"\"\n        }");
    }
    w.raw(b"\n      ]\n    }");
}

fn bom_ref(wanted: &str, n: u64) -> String {
    if n == 0 {
        wanted.to_string()
    } else {
        format!("{wanted}#{n}")
    }
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

/// The inventory as a CycloneDX 1.5 JSON BOM.
///
/// `metadata.component` is the image (type `container`); `components` holds
/// one `library` per Debian package (bom-ref = purl) followed by one `file`
/// per regular file or hard link that a package owns or the spec declares
/// (the same files the SPDX document describes), with SHA-1 and SHA-256.
/// `dependencies` records that the image depends on every package; the
/// packages' own dependencies are not known, so they are not listed.
///
/// bom-refs are unique within the BOM: the first use of a value keeps it,
/// later ones get `#2`, `#3`, ... (only a malformed inventory with duplicate
/// packages or paths needs this). Image, package and file refs start with
/// `pkg:oci/`, `pkg:deb/` and `file:`, so they can only collide among
/// themselves.
pub fn cyclonedx_json(inv: &Inventory) -> Vec<u8> {
    let model = Model::new(inv);
    let image = &inv.image;

    let image_purl = purl::oci(&image.name, &image.digest);
    let package_purls: Vec<String> = model
        .packages
        .iter()
        .map(|p| purl::deb(&p.name, &p.version, &p.architecture, p.distro.as_deref()))
        .collect();
    let mut names = UniqueNames::with_capacity(package_purls.len(), b'#');
    let package_refs: Vec<String> = package_purls
        .iter()
        .map(|purl| bom_ref(purl, names.allocate(purl.as_bytes())))
        .collect();

    // File refs are `file:<path>`: unique unless a path repeats.
    let file_suffixes: Vec<u64> = if model.paths_unique {
        Vec::new()
    } else {
        let mut names = UniqueNames::with_capacity(model.files.len(), b'#');
        model
            .files
            .iter()
            .map(|f| names.allocate(f.record.path.as_bytes()))
            .collect()
    };

    let path_bytes: usize = model.files.iter().map(|f| f.record.path.len()).sum();
    // Roughly 500 bytes of JSON per file plus its path twice.
    let mut w = JsonWriter::with_capacity(8192 + model.files.len() * 560 + path_bytes * 2);
    w.begin_object();
    w.field_str("$schema", "http://cyclonedx.org/schema/bom-1.5.schema.json");
    w.field_str("bomFormat", "CycloneDX");
    w.field_str("specVersion", "1.5");
    w.field_str("serialNumber", &serial_number(&image.digest));
    w.key("version");
    w.uint(1);

    w.key("metadata");
    w.begin_object();
    w.field_str("timestamp", &created_utc(&image.created));
    w.key("tools");
    w.begin_object();
    w.key("components");
    w.begin_array();
    w.element();
    Component {
        version: (!inv.tool.version.is_empty()).then_some(inv.tool.version.as_str()),
        ..Component::new("application", &inv.tool.name)
    }
    .write(&mut w);
    w.end_array();
    w.end_object();
    w.key("component");
    Component {
        bom_ref: Some(&image_purl),
        version: (!image.tag.is_empty()).then_some(image.tag.as_str()),
        purl: Some(&image_purl),
        properties: &[
            ("kiln:image:digest", &image.digest),
            ("kiln:image:os", &image.os),
            ("kiln:image:architecture", &image.architecture),
        ],
        ..Component::new("container", &image.name)
    }
    .write(&mut w);
    w.end_object();

    w.key("components");
    w.begin_array();
    for ((p, package_purl), package_ref) in
        model.packages.iter().zip(&package_purls).zip(&package_refs)
    {
        let origin = match &p.origin {
            PackageOrigin::Deb { .. } => "deb",
            PackageOrigin::Base => "base-image",
        };
        let sha256 = match &p.origin {
            PackageOrigin::Deb { sha256 } if is_lower_hex(sha256, 64) => Some(sha256.as_str()),
            _ => None,
        };
        let (source_name, source_version) = p.source();
        let scripts = if p.maintainer_scripts_not_run.is_empty() {
            "none".to_string()
        } else {
            p.maintainer_scripts_not_run.join(",")
        };
        let mut properties = vec![
            ("kiln:package:origin", origin),
            ("kiln:package:source-name", source_name),
            ("kiln:package:source-version", source_version),
            ("kiln:package:maintainer-scripts-not-run", scripts.as_str()),
        ];
        for n in &p.done_by_kiln {
            properties.push(("kiln:package:done-by-kiln", n.as_str()));
        }
        w.element();
        Component {
            bom_ref: Some(package_ref),
            publisher: p
                .maintainer
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty()),
            version: (!p.version.is_empty()).then_some(p.version.as_str()),
            description: p
                .summary
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty()),
            sha256,
            purl: Some(package_purl),
            website: p
                .homepage
                .as_deref()
                .map(str::trim)
                .filter(|h| is_plain_web_url(h)),
            properties: &properties,
            ..Component::new("library", &p.name)
        }
        .write(&mut w);
    }

    for (i, f) in model.files.iter().enumerate() {
        touch_ahead(&model.files, i, |f| {
            [
                Some(f.record.path.as_str()),
                f.record.sha1.as_deref(),
                f.record.sha256.as_deref(),
            ]
        });
        let packages = model
            .owners(f)
            .iter()
            .filter_map(|&o| model.packages.get(o as usize))
            .map(|p| p.name.as_str());
        write_file(&mut w, f.record, file_suffixes.get(i).copied(), packages);
    }
    w.end_array();

    w.key("dependencies");
    w.begin_array();
    w.element();
    w.begin_object();
    w.field_str("ref", &image_purl);
    w.key("dependsOn");
    w.begin_array();
    for r in &package_refs {
        w.element();
        w.string(r);
    }
    w.end_array();
    w.end_object();
    w.end_array();
    w.end_object();
    w.finish()
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
