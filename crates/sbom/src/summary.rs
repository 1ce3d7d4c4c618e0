//! Recognising an SBOM and counting what it describes (for `kiln inspect`).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::{FileManifest, FileOrigin, SbomError};

/// Which kind of document [`summarize`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX JSON.
    Spdx,
    /// CycloneDX JSON.
    CycloneDx,
    /// A kiln file manifest.
    FileManifest,
}

impl fmt::Display for SbomFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SbomFormat::Spdx => "SPDX",
            SbomFormat::CycloneDx => "CycloneDX",
            SbomFormat::FileManifest => "kiln file manifest",
        })
    }
}

/// What an SBOM is and how much it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The format.
    pub format: SbomFormat,
    /// Format version: `2.3` for SPDX-2.3, `1.5` for CycloneDX 1.5, `1` for
    /// a v1 file manifest.
    pub version: String,
    /// What the document describes: the SPDX document name, the CycloneDX
    /// `metadata.component` name, the file manifest subject name.
    pub subject: Option<String>,
    /// Packages, not counting the described image itself: SPDX packages other
    /// than the ones the document DESCRIBES; CycloneDX components (nested
    /// ones included) whose type is not `file`; for a file manifest, the
    /// distinct packages named in entry origins.
    pub packages: usize,
    /// Files: SPDX `files`; CycloneDX components of type `file`; file
    /// manifest entries.
    pub files: usize,
}

/// Recognises SPDX JSON, CycloneDX JSON or a kiln file manifest and
/// summarises it.
pub fn summarize(bytes: &[u8]) -> Result<Summary, SbomError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let object = value.as_object().ok_or_else(|| {
        SbomError::UnrecognizedFormat("the top-level JSON value is not an object".into())
    })?;
    if object.contains_key("spdxVersion") {
        spdx(object)
    } else if object.contains_key("bomFormat") {
        cyclonedx(object)
    } else if object.get("schema").and_then(Value::as_str) == Some(crate::FILE_MANIFEST_SCHEMA) {
        let manifest = FileManifest::parse(bytes)?;
        let packages: BTreeSet<&str> = manifest
            .entries
            .iter()
            .filter_map(|e| match &e.origin {
                FileOrigin::Package(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        Ok(Summary {
            format: SbomFormat::FileManifest,
            version: "1".into(),
            subject: Some(manifest.subject.name.clone()),
            packages: packages.len(),
            files: manifest.entries.len(),
        })
    } else {
        Err(SbomError::UnrecognizedFormat(
            "no spdxVersion, bomFormat or kiln file-manifest schema field".into(),
        ))
    }
}

fn invalid(format: &'static str, reason: impl Into<String>) -> SbomError {
    SbomError::InvalidDocument {
        format,
        reason: reason.into(),
    }
}

/// An optional array field: absent means empty, anything but an array is an error.
fn array<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    format: &'static str,
) -> Result<&'a [Value], SbomError> {
    match object.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(format, format!("`{key}` is not an array"))),
    }
}

fn spdx(object: &Map<String, Value>) -> Result<Summary, SbomError> {
    const F: &str = "SPDX";
    let version = object
        .get("spdxVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(F, "`spdxVersion` is not a string"))?;
    let version = version.strip_prefix("SPDX-").ok_or_else(|| {
        invalid(
            F,
            format!("`spdxVersion` {version:?} does not start with SPDX-"),
        )
    })?;
    let document_id = object
        .get("SPDXID")
        .and_then(Value::as_str)
        .unwrap_or("SPDXRef-DOCUMENT");

    let mut described: BTreeSet<&str> = array(object, "documentDescribes", F)?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for r in array(object, "relationships", F)? {
        let field = |k: &str| r.get(k).and_then(Value::as_str);
        match (
            field("spdxElementId"),
            field("relationshipType"),
            field("relatedSpdxElement"),
        ) {
            (Some(from), Some("DESCRIBES"), Some(to)) if from == document_id => {
                described.insert(to);
            }
            (Some(to), Some("DESCRIBED_BY"), Some(from)) if from == document_id => {
                described.insert(to);
            }
            _ => {}
        }
    }
    let packages = array(object, "packages", F)?;
    let mut count = 0;
    for (i, p) in packages.iter().enumerate() {
        let id = p
            .get("SPDXID")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(F, format!("package {i} has no SPDXID")))?;
        if !described.contains(id) {
            count += 1;
        }
    }
    Ok(Summary {
        format: SbomFormat::Spdx,
        version: version.to_string(),
        subject: object
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        packages: count,
        files: array(object, "files", F)?.len(),
    })
}

fn cyclonedx(object: &Map<String, Value>) -> Result<Summary, SbomError> {
    const F: &str = "CycloneDX";
    if object.get("bomFormat").and_then(Value::as_str) != Some("CycloneDX") {
        return Err(invalid(F, "`bomFormat` is not \"CycloneDX\""));
    }
    let version = object
        .get("specVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(F, "`specVersion` is missing or not a string"))?;
    let mut packages = 0;
    let mut files = 0;
    // Iterative walk over nested `components` (no recursion on input depth).
    let mut stack: Vec<&Value> = array(object, "components", F)?.iter().collect();
    while let Some(component) = stack.pop() {
        let c = component
            .as_object()
            .ok_or_else(|| invalid(F, "a component is not an object"))?;
        match c.get("type").and_then(Value::as_str) {
            Some("file") => files += 1,
            Some(_) => packages += 1,
            None => return Err(invalid(F, "a component has no type")),
        }
        stack.extend(array(c, "components", F)?.iter());
    }
    let subject = object
        .get("metadata")
        .and_then(|m| m.get("component"))
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Summary {
        format: SbomFormat::CycloneDx,
        version: version.to_string(),
        subject,
        packages,
        files,
    })
}
