//! The compact, pre-parsed form of a verified `Packages` index, cached so
//! that a warm resolve neither decompresses nor re-parses ~65,000 stanzas,
//! and [`select`], which decodes only the packages a request can reach.
//!
//! # Trust
//! An entry is stored under the SHA256 of the compressed index it was made
//! from — the digest the verified Release lists — in the cache's `parsed`
//! part, and only after that index passed the chain ([`crate::client`]). It
//! is trusted for that reason alone, so it must be exactly what kiln wrote:
//! the header repeats the source digest and the trailer is the SHA256 of
//! everything before it. A file that is cut short, altered, or made from
//! another index fails [`PackageIndex::from_bytes`] and is rebuilt from the
//! index (refetched when that is gone too).
//!
//! # Format (all integers little-endian)
//! A hand-rolled layout rather than a serde encoding: there is no compact
//! binary serde crate in the tree, and what makes the warm path fast is the
//! layout itself — records found by offset, names found by binary search,
//! nothing decoded up front — which a generic encoding would not give.
//! ```text
//! magic "KILNPIX1" | source sha256 [32] | count u32
//! offsets  [u32; count]        record start, relative to the records area
//! by_name  [u32; count]        record numbers sorted by (name, number)
//! nprov u32 | provides [(u32 record, u32 name offset, u32 name len); nprov]
//!                              sorted by (virtual name, record)
//! names_len u32 | names        the virtual names the provides entries point into
//! records_len u32 | records    the records
//! trailer sha256 [32]          of every byte before it
//! ```
//! A record is its fields in order, each string a `u32` length and UTF-8
//! bytes (`u32::MAX` for an absent optional one): name, version,
//! architecture, `u8` Multi-Arch, `u8` flags (1 essential, 2 important),
//! priority?, section?, source name, source version, the relation fields
//! as their canonical text (pre-depends, depends, recommends, provides,
//! conflicts, breaks, replaces), filename, `u64` size, sha256 `[32]`.
//! Decoding parses versions and relations again with the crate's own
//! parsers, so a decoded [`Package`] equals the one that was encoded.

use std::collections::{BTreeSet, VecDeque};

use kiln_debversion::DebVersion;
use kiln_oci::Digest;
use kiln_solve::MultiArch;
use kiln_solve::relation::{self, Relation, format_field};
use sha2::{Digest as _, Sha256};

use crate::packages::{Package, SourceRef};

const MAGIC: &[u8; 8] = b"KILNPIX1";
const NONE: u32 = u32::MAX;

/// Why bytes are not a valid compact index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compact index: {0}")]
pub struct FormatError(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(why.into()))
}

/// A validated compact index held in memory; records are decoded on demand.
#[derive(Debug, Clone)]
pub struct PackageIndex {
    bytes: Vec<u8>,
    source: Digest,
    count: usize,
    offsets_at: usize,
    by_name_at: usize,
    nprov: usize,
    provides_at: usize,
    names_at: usize,
    names_len: usize,
    records_at: usize,
    records_len: usize,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

fn flat(rs: &[Relation]) -> String {
    rs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn multi_arch_code(m: MultiArch) -> u8 {
    match m {
        MultiArch::No => 0,
        MultiArch::Same => 1,
        MultiArch::Foreign => 2,
        MultiArch::Allowed => 3,
    }
}

/// Encode `packages` (parsed from the index whose SHA256 is `source`).
/// Fails only when the index is too large for 32-bit offsets.
pub fn encode(source: &Digest, packages: &[Package]) -> Result<Vec<u8>, FormatError> {
    let too_big = || FormatError("the index is larger than 4 GiB".into());
    let mut records = Vec::with_capacity(packages.len() * 256);
    let mut offsets = Vec::with_capacity(packages.len());
    for p in packages {
        offsets.push(u32::try_from(records.len()).map_err(|_| too_big())?);
        put_str(&mut records, &p.name);
        put_str(&mut records, p.version.as_str());
        put_str(&mut records, &p.architecture);
        records.push(multi_arch_code(p.multi_arch));
        records.push(u8::from(p.essential) | (u8::from(p.important) << 1));
        put_opt(&mut records, p.priority.as_deref());
        put_opt(&mut records, p.section.as_deref());
        put_str(&mut records, &p.source.name);
        put_str(&mut records, p.source.version.as_str());
        for groups in [&p.pre_depends, &p.depends, &p.recommends] {
            put_str(&mut records, &format_field(groups));
        }
        for rels in [&p.provides, &p.conflicts, &p.breaks, &p.replaces] {
            put_str(&mut records, &flat(rels));
        }
        put_str(&mut records, &p.filename);
        records.extend_from_slice(&p.size.to_le_bytes());
        records.extend_from_slice(p.sha256.as_bytes());
    }
    let count = u32::try_from(packages.len()).map_err(|_| too_big())?;
    let mut by_name: Vec<u32> = (0..count).collect();
    by_name.sort_by(|&a, &b| {
        packages[a as usize]
            .name
            .cmp(&packages[b as usize].name)
            .then(a.cmp(&b))
    });
    let mut prov: Vec<(&str, u32)> = Vec::new();
    for (i, p) in packages.iter().enumerate() {
        for r in &p.provides {
            prov.push((&r.name, i as u32));
        }
    }
    prov.sort();
    prov.dedup();
    let mut names = Vec::new();
    let mut provides = Vec::with_capacity(prov.len() * 12);
    let mut last: Option<(&str, u32)> = None;
    for (name, rec) in &prov {
        let at = match last {
            Some((n, at)) if n == *name => at,
            _ => {
                let at = u32::try_from(names.len()).map_err(|_| too_big())?;
                names.extend_from_slice(name.as_bytes());
                last = Some((name, at));
                at
            }
        };
        provides.extend_from_slice(&rec.to_le_bytes());
        provides.extend_from_slice(&at.to_le_bytes());
        provides.extend_from_slice(&(name.len() as u32).to_le_bytes());
    }
    let mut out = Vec::with_capacity(records.len() + names.len() + provides.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for o in &offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for i in &by_name {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out.extend_from_slice(&(prov.len() as u32).to_le_bytes());
    out.extend_from_slice(&provides);
    out.extend_from_slice(
        &u32::try_from(names.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    out.extend_from_slice(&names);
    out.extend_from_slice(
        &u32::try_from(records.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    out.extend_from_slice(&records);
    let trailer: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&trailer);
    Ok(out)
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return bad("truncated");
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, FormatError> {
        let n = self.u32()?;
        if n == NONE {
            return Ok(None);
        }
        let s = self.take(n as usize)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(Some(s)),
            Err(_) => bad("a string is not UTF-8"),
        }
    }

    fn str(&mut self) -> Result<&'a str, FormatError> {
        self.opt_str()?
            .map_or_else(|| bad("a required string is absent"), Ok)
    }

    fn table(&mut self, entries: usize, width: usize) -> Result<usize, FormatError> {
        let at = self.at;
        let n = entries
            .checked_mul(width)
            .map_or_else(|| bad("table size overflows"), Ok)?;
        self.take(n)?;
        Ok(at)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl PackageIndex {
    /// Validate `bytes` as the compact form of the index whose SHA256 is
    /// `source`: magic, source digest, trailer digest, every table inside
    /// the file and every record offset inside the records area.
    pub fn from_bytes(bytes: Vec<u8>, source: &Digest) -> Result<PackageIndex, FormatError> {
        if bytes.len() < MAGIC.len() + 32 + 4 + 32 {
            return bad("truncated");
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != trailer {
            return bad("checksum mismatch (damaged or cut short)");
        }
        let mut c = Cursor { b: body, at: 0 };
        if c.take(8)? != MAGIC {
            return bad("not a kiln compact index (or another format version)");
        }
        if c.take(32)? != source.as_bytes() {
            return bad("made from another index");
        }
        let count = c.u32()? as usize;
        let offsets_at = c.table(count, 4)?;
        let by_name_at = c.table(count, 4)?;
        let nprov = c.u32()? as usize;
        let provides_at = c.table(nprov, 12)?;
        let names_len = c.u32()? as usize;
        let names_at = c.table(names_len, 1)?;
        let records_len = c.u32()? as usize;
        let records_at = c.table(records_len, 1)?;
        if c.at != body.len() {
            return bad("trailing bytes");
        }
        for i in 0..count {
            if le32(body, offsets_at + 4 * i) as usize >= records_len
                || le32(body, by_name_at + 4 * i) as usize >= count
            {
                return bad("an offset points outside the file");
            }
        }
        for i in 0..nprov {
            let e = provides_at + 12 * i;
            let (rec, at, len) = (le32(body, e), le32(body, e + 4), le32(body, e + 8));
            if rec as usize >= count || (at as usize).saturating_add(len as usize) > names_len {
                return bad("a provides entry points outside the file");
            }
        }
        Ok(PackageIndex {
            bytes,
            source: *source,
            count,
            offsets_at,
            by_name_at,
            nprov,
            provides_at,
            names_at,
            names_len,
            records_at,
            records_len,
        })
    }

    /// The digest of the index this was made from.
    pub fn source(&self) -> &Digest {
        &self.source
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn record(&self, i: usize) -> Cursor<'_> {
        let off = le32(&self.bytes, self.offsets_at + 4 * i) as usize;
        Cursor {
            b: &self.bytes[self.records_at..self.records_at + self.records_len],
            at: off,
        }
    }

    /// The name of record `i` (`i < len()`).
    fn name(&self, i: usize) -> Result<&str, FormatError> {
        self.record(i).str()
    }

    /// Decode record `i` (in index order).
    pub fn get(&self, i: usize) -> Result<Package, FormatError> {
        if i >= self.count {
            return bad(format!("no record {i}"));
        }
        let mut c = self.record(i);
        let name = c.str()?.to_string();
        let ctx = |field: &str, e: String| FormatError(format!("package {name}: {field}: {e}"));
        let version = DebVersion::parse(c.str()?).map_err(|e| ctx("Version", e.to_string()))?;
        let architecture = c.str()?.to_string();
        let multi_arch = match c.u8()? {
            0 => MultiArch::No,
            1 => MultiArch::Same,
            2 => MultiArch::Foreign,
            3 => MultiArch::Allowed,
            x => return Err(ctx("Multi-Arch", format!("code {x}"))),
        };
        let flags = c.u8()?;
        let priority = c.opt_str()?.map(str::to_string);
        let section = c.opt_str()?.map(str::to_string);
        let source_name = c.str()?.to_string();
        let source_version =
            DebVersion::parse(c.str()?).map_err(|e| ctx("Source", e.to_string()))?;
        let mut groups = [Vec::new(), Vec::new(), Vec::new()];
        for (g, field) in groups
            .iter_mut()
            .zip(["Pre-Depends", "Depends", "Recommends"])
        {
            let t = c.str()?;
            if !t.is_empty() {
                *g = relation::parse(t).map_err(|e| ctx(field, e.to_string()))?;
            }
        }
        let mut flats = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for (f, field) in flats
            .iter_mut()
            .zip(["Provides", "Conflicts", "Breaks", "Replaces"])
        {
            let t = c.str()?;
            if !t.is_empty() {
                *f = relation::parse_flat(t).map_err(|e| ctx(field, e.to_string()))?;
            }
        }
        let filename = c.str()?.to_string();
        let size = c.u64()?;
        let mut sha = [0u8; 32];
        sha.copy_from_slice(c.take(32)?);
        let [pre_depends, depends, recommends] = groups;
        let [provides, conflicts, breaks, replaces] = flats;
        Ok(Package {
            name,
            version,
            architecture,
            multi_arch,
            essential: flags & 1 != 0,
            priority,
            section,
            source: SourceRef {
                name: source_name,
                version: source_version,
            },
            depends,
            pre_depends,
            provides,
            conflicts,
            breaks,
            replaces,
            recommends,
            important: flags & 2 != 0,
            filename,
            size,
            sha256: Digest::from_bytes(sha),
        })
    }

    /// Every package, in index order.
    pub fn packages(&self) -> Result<Vec<Package>, FormatError> {
        (0..self.count).map(|i| self.get(i)).collect()
    }

    /// The records named `name`, in index order.
    pub fn by_name(&self, name: &str) -> Result<Vec<usize>, FormatError> {
        let at = |k: usize| le32(&self.bytes, self.by_name_at + 4 * k) as usize;
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.name(at(mid))? < name {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        while lo < self.count && self.name(at(lo))? == name {
            out.push(at(lo));
            lo += 1;
        }
        Ok(out)
    }

    /// The records that provide `name`.
    pub fn providers(&self, name: &str) -> Vec<usize> {
        let names = &self.bytes[self.names_at..self.names_at + self.names_len];
        let entry = |k: usize| {
            let e = self.provides_at + 12 * k;
            let (rec, at, len) = (
                le32(&self.bytes, e) as usize,
                le32(&self.bytes, e + 4) as usize,
                le32(&self.bytes, e + 8) as usize,
            );
            (rec, &names[at..at + len])
        };
        let (mut lo, mut hi) = (0usize, self.nprov);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if entry(mid).1 < name.as_bytes() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        while lo < self.nprov && entry(lo).1 == name.as_bytes() {
            out.push(entry(lo).0);
            lo += 1;
        }
        out
    }
}

/// The names a package leads the solver to: its own, and every name in
/// its `Pre-Depends`, `Depends` and (when asked) `Recommends`.
fn leads_to(p: &Package, recommends: bool, out: &mut Vec<String>) {
    out.push(p.name.clone());
    let mut groups: Vec<&kiln_solve::relation::OrGroup> =
        p.pre_depends.iter().chain(p.depends.iter()).collect();
    if recommends {
        groups.extend(p.recommends.iter());
    }
    for g in groups {
        for r in &g.alternatives {
            out.push(r.name.clone());
        }
    }
}

/// Of every index, only the packages the solver can reach from `roots`
/// (names, as a request's `include` lists them, without `=version`): all
/// versions of a reachable name and every package providing it are
/// reachable, and so are the names in their `Pre-Depends` and `Depends`
/// (and `Recommends` when `recommends`). The solver looks packages up by
/// name and by provided name only, and conflicts only matter between
/// selected packages, so it reaches the same closure from this subset as
/// from all packages, at a fraction of the cost. Each index's packages
/// keep their index order.
pub fn select(
    indexes: &[&PackageIndex],
    roots: &[String],
    recommends: bool,
) -> Result<Vec<Vec<Package>>, FormatError> {
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<String> = roots.iter().cloned().collect();
    let mut chosen: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); indexes.len()];
    let mut decoded: Vec<std::collections::BTreeMap<usize, Package>> =
        vec![Default::default(); indexes.len()];
    let mut next = Vec::new();
    while let Some(name) = queue.pop_front() {
        if !seen_names.insert(name.clone()) {
            continue;
        }
        for (k, idx) in indexes.iter().enumerate() {
            let mut recs = idx.by_name(&name)?;
            recs.extend(idx.providers(&name));
            for r in recs {
                if chosen[k].insert(r) {
                    let p = idx.get(r)?;
                    leads_to(&p, recommends, &mut next);
                    decoded[k].insert(r, p);
                }
            }
        }
        for n in next.drain(..) {
            if !seen_names.contains(&n) {
                queue.push_back(n);
            }
        }
    }
    Ok(decoded
        .into_iter()
        .map(|m| m.into_values().collect())
        .collect())
}

/// [`select`] for a resolve: `per_suite` holds each suite's component
/// indexes; the roots are the names `request` includes. One list of
/// packages per suite, in suite order.
pub fn select_for_request(
    per_suite: &[Vec<PackageIndex>],
    request: &kiln_solve::Request,
) -> Result<Vec<Vec<Package>>, FormatError> {
    let roots: Vec<String> = request
        .include
        .iter()
        .map(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n).to_string())
        .collect();
    let flat: Vec<&PackageIndex> = per_suite.iter().flatten().collect();
    let mut picked = select(&flat, &roots, request.recommends)?.into_iter();
    Ok(per_suite
        .iter()
        .map(|comps| comps.iter().flat_map(|_| picked.next()).flatten().collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::parse_packages;
    use proptest::prelude::*;

    fn sample() -> Vec<Package> {
        parse_packages(crate::packages::tests::SAMPLE).unwrap()
    }

    #[test]
    fn round_trip_and_lookups() {
        let src = Digest::of(b"index");
        let pkgs = sample();
        let bytes = encode(&src, &pkgs).unwrap();
        let idx = PackageIndex::from_bytes(bytes.clone(), &src).unwrap();
        assert_eq!(idx.packages().unwrap(), pkgs);
        assert_eq!(idx.by_name("libpython3.11-stdlib").unwrap(), [1]);
        assert_eq!(idx.by_name("base-files").unwrap(), [0]);
        assert!(idx.by_name("nope").unwrap().is_empty());
        assert_eq!(idx.providers("base"), [0]);
        assert!(idx.providers("basf").is_empty());
        // Another source digest is refused.
        assert!(PackageIndex::from_bytes(bytes, &Digest::of(b"other")).is_err());
    }

    #[test]
    fn select_follows_dependencies_and_provides() {
        let text = "Package: app\nVersion: 1\nArchitecture: all\nDepends: mta | x, lib\nFilename: a.deb\nSize: 1\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n\
Package: postfix\nVersion: 1\nArchitecture: all\nProvides: mta\nDepends: libpf\nFilename: p.deb\nSize: 1\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n\
Package: libpf\nVersion: 1\nArchitecture: all\nFilename: l.deb\nSize: 1\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n\
Package: unrelated\nVersion: 1\nArchitecture: all\nFilename: u.deb\nSize: 1\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n\
Package: lib\nVersion: 2\nArchitecture: all\nRecommends: unrelated\nFilename: l2.deb\nSize: 1\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
        let pkgs = parse_packages(text).unwrap();
        let src = Digest::of(text.as_bytes());
        let idx = PackageIndex::from_bytes(encode(&src, &pkgs).unwrap(), &src).unwrap();
        let names = |rec: bool| -> Vec<String> {
            select(&[&idx], &["app".into()], rec).unwrap()[0]
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(names(false), ["app", "postfix", "libpf", "lib"]);
        assert_eq!(names(true), ["app", "postfix", "libpf", "unrelated", "lib"]);
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let src = Digest::of(b"index");
        let bytes = encode(&src, &sample()).unwrap();
        for cut in [0, 1, 8, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                PackageIndex::from_bytes(bytes[..cut].to_vec(), &src).is_err(),
                "{cut}"
            );
        }
        for pos in [0, 9, 45, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[pos] ^= 0x20;
            assert!(PackageIndex::from_bytes(b, &src).is_err(), "{pos}");
        }
    }

    proptest! {
        /// Parse → encode → decode is the identity, for any mutation of the
        /// sample that still parses.
        #[test]
        fn encode_decode_identity(pos in 0usize..1500, junk in "[ -~\n]{0,8}") {
            let mut t = crate::packages::tests::SAMPLE.to_string();
            let p = pos.min(t.len());
            if t.is_char_boundary(p) {
                t.insert_str(p, &junk);
            }
            if let Ok(pkgs) = parse_packages(&t) {
                let src = Digest::of(t.as_bytes());
                let idx = PackageIndex::from_bytes(encode(&src, &pkgs).unwrap(), &src).unwrap();
                prop_assert_eq!(idx.packages().unwrap(), pkgs);
            }
        }

        /// Arbitrary bytes never panic and (without the right trailer) are
        /// refused; so is any single corrupted byte or any prefix.
        #[test]
        fn corrupt_bytes_rejected(junk in proptest::collection::vec(any::<u8>(), 0..200),
                                  pos in any::<usize>(), cut in any::<usize>()) {
            let src = Digest::of(b"index");
            prop_assert!(PackageIndex::from_bytes(junk, &src).is_err());
            let bytes = encode(&src, &sample()).unwrap();
            let mut b = bytes.clone();
            let i = pos % b.len();
            b[i] = b[i].wrapping_add(1);
            prop_assert!(PackageIndex::from_bytes(b, &src).is_err());
            let c = cut % bytes.len();
            prop_assert!(PackageIndex::from_bytes(bytes[..c].to_vec(), &src).is_err());
        }
    }
}
