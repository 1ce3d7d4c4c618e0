//! Which package (or the image itself) each described file belongs to; shared
//! by the SPDX and CycloneDX writers so both describe the same files.

use std::cmp::Ordering;
use std::ops::Range;

use crate::util::touch_ahead;
use crate::{FileOrigin, FileRecord, Inventory, Package};

/// The inventory in the canonical order the SBOM writers use.
pub(crate) struct Model<'a> {
    /// Packages sorted by name, version, architecture (then the remaining
    /// fields), so input order does not change the output.
    pub packages: Vec<&'a Package>,
    /// Regular files and hard links that are described: those from a package
    /// or from the spec, in path order.
    pub files: Vec<OwnedFile<'a>>,
    /// Backing store of every `OwnedFile::owners` range.
    owner_pool: Vec<u32>,
    /// When true, no two of `files` have the same path (false may also mean
    /// that only undescribed records repeat a path).
    pub paths_unique: bool,
}

pub(crate) struct OwnedFile<'a> {
    pub record: &'a FileRecord,
    /// Range of `Model::owner_pool` holding indexes into `Model::packages`;
    /// empty means the image itself contains the file directly (spec files,
    /// or files of an unknown package).
    owners: Range<u32>,
}

/// `items` in path order: as is when already sorted (the inventory
/// invariant), otherwise stably sorted.
pub(crate) fn sorted_by_path<T>(items: Vec<&T>, path: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut items = items;
    let mut sorted = true;
    for i in 1..items.len() {
        touch_ahead(&items, i, |x| [Some(path(x))]);
        if let (Some(a), Some(b)) = (items.get(i - 1), items.get(i))
            && path(a) > path(b)
        {
            sorted = false;
            break;
        }
    }
    if !sorted {
        items.sort_by(|a, b| path(a).cmp(path(b)));
    }
    items
}

fn index_u32(i: usize) -> u32 {
    // Package counts are far below 2^32; saturating keeps this total.
    u32::try_from(i).unwrap_or(u32::MAX)
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

        // (path, package index) for every listed path, sorted by path; for
        // one path the package indexes ascend (stable sort of a list built in
        // package order) and a package listing a path twice counts once.
        let listed_count: usize = packages.iter().map(|p| p.files.len()).sum();
        let mut listed: Vec<(&str, u32)> = Vec::with_capacity(listed_count);
        for (i, p) in packages.iter().enumerate() {
            let i = index_u32(i);
            listed.extend(p.files.iter().map(|f| (f.as_str(), i)));
        }
        let mut sorted = true;
        for i in 1..listed.len() {
            touch_ahead(&listed, i, |&(p, _)| [Some(p)]);
            if let (Some(a), Some(b)) = (listed.get(i - 1), listed.get(i))
                && a.0 > b.0
            {
                sorted = false;
                break;
            }
        }
        if !sorted {
            listed.sort_by(|a, b| a.0.cmp(b.0));
        }
        listed.dedup();

        // Regular files and hard links in path order: as given (the
        // inventory invariant), checked while joining, else stably sorted.
        let records: Vec<&FileRecord> = inv.files.iter().filter(|f| f.kind.has_content()).collect();
        let joined = match join(&records, &listed, &packages, true) {
            Some(joined) => joined,
            None => {
                let mut records = records;
                records.sort_by(|a, b| a.path.cmp(&b.path));
                join(&records, &listed, &packages, false).unwrap_or_default()
            }
        };
        Model {
            packages,
            files: joined.files,
            owner_pool: joined.owner_pool,
            paths_unique: joined.paths_unique,
        }
    }

    /// Indexes into `packages` of the packages that contain `file`.
    pub fn owners(&self, file: &OwnedFile<'_>) -> &[u32] {
        let range = file.owners.start as usize..file.owners.end as usize;
        self.owner_pool.get(range).unwrap_or_default()
    }
}

#[derive(Default)]
struct Joined<'a> {
    files: Vec<OwnedFile<'a>>,
    owner_pool: Vec<u32>,
    paths_unique: bool,
}

/// The described files of the path-sorted `records` with their owners, from
/// a merge join with the path-sorted `listed`. With `check_sorted`, `None`
/// as soon as `records` turns out not to be sorted.
fn join<'a>(
    records: &[&'a FileRecord],
    listed: &[(&str, u32)],
    packages: &[&Package],
    check_sorted: bool,
) -> Option<Joined<'a>> {
    let mut files = Vec::with_capacity(records.len());
    let mut owner_pool: Vec<u32> = Vec::with_capacity(records.len());
    let mut paths_unique = true;
    let mut cursor = 0;
    let mut previous: Option<&str> = None;
    // The last package-name lookup (files of one package are usually adjacent).
    let mut last_name: Option<(&str, Range<usize>)> = None;
    for (i, &record) in records.iter().enumerate() {
        touch_ahead(records, i, |r| [Some(r.path.as_str())]);
        let path = record.path.as_str();
        match previous.map(|p| p.cmp(path)) {
            Some(Ordering::Greater) if check_sorted => return None,
            Some(Ordering::Equal) => paths_unique = false,
            _ => {}
        }
        previous = Some(path);
        // Skip listed paths before this one; `here` is the run equal to it.
        let mut here: &[(&str, u32)] = &[];
        while let Some((p, _)) = listed.get(cursor) {
            match (*p).cmp(path) {
                Ordering::Less => cursor += 1,
                Ordering::Equal => {
                    let run = listed
                        .get(cursor..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|(p, _)| *p == path)
                        .count();
                    here = listed.get(cursor..cursor + run).unwrap_or_default();
                    break;
                }
                Ordering::Greater => break,
            }
        }
        let start = index_u32(owner_pool.len());
        match &record.origin {
            FileOrigin::Spec => {}
            FileOrigin::Package(name) => {
                let candidates = match &last_name {
                    Some((n, range)) if *n == name.as_str() => range.clone(),
                    _ => {
                        let range = name_range(packages, name);
                        last_name = Some((name.as_str(), range.clone()));
                        range
                    }
                };
                if !candidates.is_empty() {
                    let before = owner_pool.len();
                    owner_pool.extend(
                        here.iter()
                            .map(|&(_, i)| i)
                            .filter(|&i| usize::try_from(i).is_ok_and(|i| candidates.contains(&i))),
                    );
                    if owner_pool.len() == before {
                        owner_pool.push(index_u32(candidates.start));
                    }
                }
            }
            FileOrigin::Base => {
                if here.is_empty() {
                    // A base-image file no package claims is not described.
                    continue;
                }
                owner_pool.extend(here.iter().map(|&(_, i)| i));
            }
        }
        let owners = start..index_u32(owner_pool.len());
        files.push(OwnedFile { record, owners });
    }
    Some(Joined {
        files,
        owner_pool,
        paths_unique,
    })
}

/// The indexes of the packages called `name` (contiguous: sorted by name).
fn name_range(packages: &[&Package], name: &str) -> Range<usize> {
    let start = packages.partition_point(|p| p.name.as_str() < name);
    let end = packages.partition_point(|p| p.name.as_str() <= name);
    start..end
}
