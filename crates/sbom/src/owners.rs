//! Which package (or the image itself) each described file belongs to; shared
//! by the SPDX and CycloneDX writers so both describe the same files.

use std::collections::BTreeMap;

use crate::{FileOrigin, FileRecord, Inventory, Package};

/// The inventory in the canonical order the SBOM writers use.
pub(crate) struct Model<'a> {
    /// Packages sorted by name, version, architecture (then the remaining
    /// fields), so input order does not change the output.
    pub packages: Vec<&'a Package>,
    /// Regular files and hard links that are described: those from a package
    /// or from the spec, in path order.
    pub files: Vec<OwnedFile<'a>>,
}

pub(crate) struct OwnedFile<'a> {
    pub record: &'a FileRecord,
    /// Indexes into `Model::packages`; empty means the image itself contains
    /// the file directly (spec files, or files of an unknown package).
    pub owners: Vec<usize>,
}

impl<'a> Model<'a> {
    pub fn new(inv: &'a Inventory) -> Model<'a> {
        let mut packages: Vec<&Package> = inv.packages.iter().collect();
        packages.sort_by(|a, b| {
            (
                &a.name,
                &a.version,
                &a.architecture,
                &a.distro,
                &a.source_name,
                &a.source_version,
            )
                .cmp(&(
                    &b.name,
                    &b.version,
                    &b.architecture,
                    &b.distro,
                    &b.source_name,
                    &b.source_version,
                ))
        });

        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut by_path: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in packages.iter().enumerate() {
            by_name.entry(p.name.as_str()).or_default().push(i);
            for f in &p.files {
                let owners = by_path.entry(f.as_str()).or_default();
                if owners.last() != Some(&i) {
                    owners.push(i);
                }
            }
        }

        let mut records: Vec<&FileRecord> =
            inv.files.iter().filter(|f| f.kind.has_content()).collect();
        records.sort_by(|a, b| a.path.cmp(&b.path));

        let mut files = Vec::with_capacity(records.len());
        for record in records {
            let listed = by_path.get(record.path.as_str());
            let owners = match &record.origin {
                FileOrigin::Spec => Vec::new(),
                FileOrigin::Package(name) => match by_name.get(name.as_str()) {
                    None => Vec::new(),
                    Some(candidates) => {
                        let listing: Vec<usize> = candidates
                            .iter()
                            .copied()
                            .filter(|c| listed.is_some_and(|l| l.contains(c)))
                            .collect();
                        if listing.is_empty() {
                            candidates.iter().take(1).copied().collect()
                        } else {
                            listing
                        }
                    }
                },
                FileOrigin::Base => match listed {
                    Some(l) => l.clone(),
                    // A base-image file no package claims is not described.
                    None => continue,
                },
            };
            files.push(OwnedFile { record, owners });
        }
        Model { packages, files }
    }
}
