//! Garbage collection of a store (`kiln gc`).
//!
//! What stays: every tagged image; every untagged image that entered the
//! store (`dev.kiln.stored`) less than the keep window ago or that the
//! caller pins (a fleet release references it); and, transitively, the
//! referrers (manifests whose `subject` is kept) and cosign's legacy
//! `sha256-<hex>.sig` / `.att` tags of everything kept. Everything else in
//! `index.json` goes, and so do the blobs nothing kept reaches. A blob younger
//! than the window stays even when unreferenced: a build may be about to
//! tag it.
//!
//! Planning and applying are separate steps under one [`IndexLock`], so the
//! caller can record the plan (an audit event) before anything is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    Descriptor, Digest, ImageIndex, ImageManifest, IndexLock, OciError, Store, annotations, media,
};

/// What a collection keeps besides tags.
#[derive(Clone, Debug, Default)]
pub struct GcPolicy {
    /// Untagged images (and unreferenced blobs) younger than this stay.
    pub keep_untagged_secs: u64,
    /// Unix seconds "now" is measured at.
    pub now: u64,
    /// Manifest digests that stay whatever their age (fleet releases).
    pub pinned: BTreeSet<Digest>,
}

/// Why an `index.json` entry is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// An untagged image older than the window.
    Untagged,
    /// A referrer whose subject is removed.
    Referrer { subject: Digest },
    /// A cosign legacy `.sig` / `.att` tag whose image is removed.
    LegacyTag { subject: Digest },
}

/// One `index.json` entry to remove.
#[derive(Clone, Debug)]
pub struct RemovedEntry {
    /// The entry as `index.json` holds it (a legacy tag keeps its `ref.name`).
    pub descriptor: Descriptor,
    pub why: Removal,
}

/// What [`Store::gc_apply`] will do.
#[derive(Clone, Debug)]
pub struct GcPlan {
    /// The `index.json` to write.
    pub index: ImageIndex,
    /// Entries removed from `index.json`.
    pub removed: Vec<RemovedEntry>,
    /// Unreferenced blobs to delete, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Entries kept.
    pub kept: usize,
    /// Unreferenced blobs kept because they are younger than the window.
    pub young_blobs: usize,
    /// Whether `index.json` changes (an entry removed, or an old entry
    /// stamped with when gc first saw it).
    pub index_changed: bool,
}

impl GcPlan {
    /// Bytes the deleted blobs free.
    pub fn freed(&self) -> u64 {
        self.blobs.iter().map(|(_, n)| n).sum()
    }
}

/// `sha256-<hex>.sig` / `.att`: the digest the legacy tag is about.
pub fn legacy_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = rest
        .strip_suffix(".sig")
        .or_else(|| rest.strip_suffix(".att"))?;
    Digest::from_hex(hex).ok()
}

fn tag_of(d: &Descriptor) -> Option<&str> {
    let r = d.annotations.get(annotations::REF_NAME)?;
    Some(match r.rfind(':') {
        Some(i) if !r[i + 1..].contains('/') => &r[i + 1..],
        _ => r,
    })
}

/// Seconds since the epoch of a file's modification time.
fn mtime_secs(m: &fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An entry that entered the store within the keep window.
fn young(d: &Descriptor, policy: &GcPolicy) -> bool {
    d.annotations
        .get(annotations::STORED)
        .and_then(|s| crate::time::parse_utc(s))
        .is_some_and(|t| policy.now.saturating_sub(t) < policy.keep_untagged_secs)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Decide what a collection removes. Nothing changes on disk.
    pub fn gc_plan(&self, _lock: &IndexLock, policy: &GcPolicy) -> Result<GcPlan, OciError> {
        let index = self.index()?;
        let stamp_now = crate::time::rfc3339(policy.now);
        let mut index_changed = false;
        // An entry is kept for itself, or because of the digest it depends on.
        enum Need {
            Root,
            Subject(Digest, Removal),
            Aged,
        }
        let mut entries = Vec::new();
        for d in index.manifests {
            let mut d = d;
            let need = if let Some(tag) = tag_of(&d) {
                match legacy_subject(tag) {
                    Some(s) => Need::Subject(s, Removal::LegacyTag { subject: s }),
                    None => Need::Root,
                }
            } else {
                let subject = if media::is_manifest(&d.media_type) {
                    let bytes = self.read_descriptor(&d)?;
                    ImageManifest::from_bytes(&bytes, &d.digest.to_string())?
                        .subject
                        .map(|s| s.digest)
                } else {
                    None
                };
                match subject {
                    // A referrer written moments ago may not have its
                    // subject tagged yet (a build adds its SBOMs first).
                    Some(_) if young(&d, policy) => Need::Root,
                    Some(s) => Need::Subject(s, Removal::Referrer { subject: s }),
                    None if policy.pinned.contains(&d.digest) => Need::Root,
                    None => {
                        // An entry from before kiln recorded entry times
                        // entered the store, as far as gc knows, now.
                        let stored = match d.annotations.get(annotations::STORED) {
                            Some(s) => crate::time::parse_utc(s).unwrap_or(policy.now),
                            None => {
                                d.annotations
                                    .insert(annotations::STORED.to_string(), stamp_now.clone());
                                index_changed = true;
                                policy.now
                            }
                        };
                        if policy.now.saturating_sub(stored) < policy.keep_untagged_secs {
                            Need::Root
                        } else {
                            Need::Aged
                        }
                    }
                }
            };
            entries.push((d, need));
        }
        let mut kept: BTreeSet<Digest> = entries
            .iter()
            .filter(|(_, n)| matches!(n, Need::Root))
            .map(|(d, _)| d.digest)
            .collect();
        // What the fleet pins is kept even when no index entry names it (a
        // store from before untagged images stayed in the index): its
        // referrers and blobs stay with it.
        kept.extend(policy.pinned.iter().copied());
        loop {
            let before = kept.len();
            for (d, n) in &entries {
                if let Need::Subject(s, _) = n
                    && kept.contains(s)
                {
                    kept.insert(d.digest);
                }
            }
            if kept.len() == before {
                break;
            }
        }
        let mut out = ImageIndex::new();
        out.annotations = index.annotations;
        let mut removed = Vec::new();
        for (d, n) in entries {
            if kept.contains(&d.digest) {
                out.manifests.push(d);
            } else {
                index_changed = true;
                let why = match n {
                    Need::Subject(_, why) => why,
                    _ => Removal::Untagged,
                };
                removed.push(RemovedEntry { descriptor: d, why });
            }
        }
        // Every blob a kept entry (or a pinned manifest) reaches.
        let mut reachable = BTreeSet::new();
        let mut stack: Vec<Descriptor> = out.manifests.clone();
        for p in &policy.pinned {
            if out.manifests.iter().any(|d| d.digest == *p) {
                continue;
            }
            let path = self.blob_path(p);
            let Ok(m) = fs::symlink_metadata(&path) else {
                continue; // not in this store: nothing to keep
            };
            if !m.is_file() || m.len() > crate::layout::MAX_MANIFEST_SIZE {
                continue;
            }
            let d = Descriptor::new(media::MANIFEST, *p, m.len());
            match self
                .read_descriptor(&d)
                .and_then(|b| ImageManifest::from_bytes(&b, &p.to_string()))
            {
                Ok(_) => stack.push(d),
                // Not an image manifest kiln can walk: keep the blob itself.
                Err(_) => {
                    reachable.insert(*p);
                }
            }
        }
        while let Some(d) = stack.pop() {
            if !reachable.insert(d.digest) {
                continue;
            }
            if media::is_manifest(&d.media_type) {
                let bytes = self.read_descriptor(&d)?;
                let m = ImageManifest::from_bytes(&bytes, &d.digest.to_string())?;
                reachable.insert(m.config.digest);
                reachable.extend(m.layers.iter().map(|l| l.digest));
            } else if media::is_index(&d.media_type) {
                let bytes = self.read_descriptor(&d)?;
                let idx: ImageIndex =
                    crate::types::from_json(&bytes, &format!("image index {}", d.digest))?;
                stack.extend(idx.manifests);
            }
        }
        let dir = self.root().join("blobs/sha256");
        let mut blobs = BTreeMap::new();
        let mut young_blobs = 0;
        for e in fs::read_dir(&dir).map_err(|e| OciError::io(&dir, e))? {
            let e = e.map_err(|e| OciError::io(&dir, e))?;
            let Some(digest) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue; // not a blob kiln wrote: not ours to delete
            };
            if reachable.contains(&digest) {
                continue;
            }
            let m = fs::symlink_metadata(e.path()).map_err(|err| OciError::io(e.path(), err))?;
            if !m.is_file() {
                continue;
            }
            if policy.now.saturating_sub(mtime_secs(&m)) < policy.keep_untagged_secs {
                young_blobs += 1;
                continue;
            }
            blobs.insert(digest, m.len());
        }
        Ok(GcPlan {
            kept: out.manifests.len(),
            index: out,
            removed,
            blobs: blobs.into_iter().collect(),
            young_blobs,
            index_changed,
        })
    }

    /// Carry out a plan made under the same lock: write the new `index.json`
    /// first (a crash then leaves unreferenced blobs, never a dangling tag),
    /// then delete the blobs.
    pub fn gc_apply(&self, lock: &IndexLock, plan: &GcPlan) -> Result<(), OciError> {
        if plan.index_changed {
            self.write_index(lock, &plan.index)?;
        }
        for (d, _) in &plan.blobs {
            let p = self.blob_path(d);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OciError::io(&p, e)),
            }
        }
        if !plan.blobs.is_empty() {
            let dir = self.root().join("blobs/sha256");
            crate::layout::sync_dir(&dir).map_err(|e| OciError::io(&dir, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Staging;

    fn manifest(st: &mut Staging, layer: &[u8], subject: Option<&Descriptor>) -> Descriptor {
        let config = st.put(media::CONFIG, b"{}").unwrap();
        let l = st.put(media::LAYER_TAR, layer).unwrap();
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            artifact_type: None,
            config,
            layers: vec![l],
            subject: subject.cloned(),
            annotations: Default::default(),
        };
        st.put(media::MANIFEST, &m.to_bytes()).unwrap()
    }

    fn policy(keep: u64) -> GcPolicy {
        GcPolicy {
            keep_untagged_secs: keep,
            now: now_secs(),
            pinned: BTreeSet::new(),
        }
    }

    #[test]
    fn moved_tag_keeps_the_old_image_by_digest_until_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut st = store.staging().unwrap();
        let one = manifest(&mut st, b"one", None);
        let two = manifest(&mut st, b"two", None);
        let sig = manifest(&mut st, b"sig", None);
        let sbom = manifest(&mut st, b"sbom", Some(&two));
        let old_sbom = manifest(&mut st, b"old sbom", Some(&one));
        st.commit().unwrap();
        store.tag("app", "1", &one).unwrap();
        store.add_untagged(std::slice::from_ref(&old_sbom)).unwrap();
        store.tag("app", "1", &two).unwrap();
        let sig_tag = format!("sha256-{}.sig", two.digest.hex());
        store.tag("app", &sig_tag, &sig).unwrap();
        store.add_untagged(std::slice::from_ref(&sbom)).unwrap();
        // The first image is still there by digest.
        let by_digest = crate::ImageRef::Digest {
            name: None,
            digest: one.digest,
        };
        assert_eq!(store.resolve(&by_digest).unwrap().digest, one.digest);

        // Inside the window nothing goes.
        let lock = store.lock_index().unwrap();
        let plan = store.gc_plan(&lock, &policy(7 * 86_400)).unwrap();
        assert!(plan.removed.is_empty() && plan.blobs.is_empty());
        // Pinned: stays even with a zero window.
        let mut p = policy(0);
        p.pinned.insert(one.digest);
        let plan = store.gc_plan(&lock, &p).unwrap();
        assert!(plan.removed.is_empty(), "{:?}", plan.removed);

        let plan = store.gc_plan(&lock, &policy(0)).unwrap();
        let gone: BTreeSet<Digest> = plan.removed.iter().map(|r| r.descriptor.digest).collect();
        assert_eq!(gone, BTreeSet::from([one.digest, old_sbom.digest]));
        let blobs: BTreeSet<Digest> = plan.blobs.iter().map(|b| b.0).collect();
        assert!(blobs.contains(&one.digest) && blobs.contains(&old_sbom.digest));
        assert!(blobs.contains(&Digest::of(b"one")));
        // Shared blobs (the `{}` config) stay.
        assert!(!blobs.contains(&Digest::of(b"{}")));
        store.gc_apply(&lock, &plan).unwrap();
        drop(lock);
        assert!(store.resolve(&by_digest).is_err());
        assert!(!store.has_blob(&Digest::of(b"one")));
        for d in [&two, &sig, &sbom] {
            assert!(store.has_blob(&d.digest));
        }
        assert_eq!(store.referrers(&two.digest).unwrap().len(), 1);
        assert_eq!(store.images().unwrap().len(), 2);
    }

    #[test]
    fn a_referrer_written_before_its_subject_is_tagged_is_kept() {
        // A build adds its SBOM referrers, then tags the image, under two
        // index locks: a gc in between must not drop the fresh referrers.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut st = store.staging().unwrap();
        let img = manifest(&mut st, b"img", None);
        let sbom = manifest(&mut st, b"sbom", Some(&img));
        st.commit().unwrap();
        store.add_untagged(std::slice::from_ref(&sbom)).unwrap();
        let lock = store.lock_index().unwrap();
        let plan = store.gc_plan(&lock, &policy(3600)).unwrap();
        assert!(plan.removed.is_empty(), "{:?}", plan.removed);
        assert!(!plan.blobs.iter().any(|b| b.0 == img.digest));
        // Past the window, an orphaned referrer goes.
        let plan = store.gc_plan(&lock, &policy(0)).unwrap();
        assert_eq!(plan.removed.len(), 1);
    }

    #[test]
    fn a_pinned_image_outside_the_index_keeps_its_blobs_and_referrers() {
        // A store from before untagged images stayed in the index: the
        // fleet pins a manifest no entry names.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut st = store.staging().unwrap();
        let old = manifest(&mut st, b"old layer", None);
        let sbom = manifest(&mut st, b"old sbom", Some(&old));
        st.commit().unwrap();
        store.add_untagged(std::slice::from_ref(&sbom)).unwrap();
        let mut p = policy(0);
        p.pinned.insert(old.digest);
        let lock = store.lock_index().unwrap();
        let plan = store.gc_plan(&lock, &p).unwrap();
        assert!(plan.removed.is_empty(), "{:?}", plan.removed);
        let blobs: BTreeSet<Digest> = plan.blobs.iter().map(|b| b.0).collect();
        for d in [old.digest, Digest::of(b"old layer"), sbom.digest] {
            assert!(!blobs.contains(&d), "{d} would be deleted");
        }
        // Unpinned, they go.
        let plan = store.gc_plan(&lock, &policy(0)).unwrap();
        let blobs: BTreeSet<Digest> = plan.blobs.iter().map(|b| b.0).collect();
        assert!(blobs.contains(&old.digest) && blobs.contains(&Digest::of(b"old layer")));
    }

    #[test]
    fn gc_waits_for_every_open_store() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Store::open_or_init(dir.path()).unwrap();
        let reader = Store::open(dir.path()).unwrap();
        let busy = Store::try_open_exclusive(dir.path()).unwrap_err();
        assert!(busy.to_string().contains("in use"), "{busy}");
        drop(writer);
        assert!(Store::try_open_exclusive(dir.path()).is_err());
        drop(reader);
        let gc = Store::try_open_exclusive(dir.path()).unwrap();
        // While gc has it, nobody else does.
        assert!(Store::try_open_exclusive(dir.path()).is_err());
        drop(gc);
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn legacy_tags_of_a_removed_image_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut st = store.staging().unwrap();
        let one = manifest(&mut st, b"one", None);
        let two = manifest(&mut st, b"two", None);
        let sig = manifest(&mut st, b"sig", None);
        st.commit().unwrap();
        store.tag("app", "1", &one).unwrap();
        store
            .tag("app", &format!("sha256-{}.att", one.digest.hex()), &sig)
            .unwrap();
        store.tag("app", "1", &two).unwrap();
        let lock = store.lock_index().unwrap();
        let plan = store.gc_plan(&lock, &policy(0)).unwrap();
        assert_eq!(plan.removed.len(), 2);
        assert!(plan.removed.iter().any(|r| r.why
            == Removal::LegacyTag {
                subject: one.digest
            }));
    }

    #[test]
    fn retagging_the_same_digest_keeps_one_entry_and_its_entry_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut st = store.staging().unwrap();
        let one = manifest(&mut st, b"one", None);
        let two = manifest(&mut st, b"two", None);
        st.commit().unwrap();
        store.tag("app", "1", &one).unwrap();
        store.tag("app", "1", &two).unwrap();
        store.tag("app", "1", &one).unwrap();
        // A referrer entry that happens to share the digest survives a retag.
        store.add_untagged(std::slice::from_ref(&two)).unwrap();
        store.tag("app", "1", &two).unwrap();
        store.tag("app", "1", &one).unwrap();
        let idx = store.index().unwrap();
        assert_eq!(idx.manifests.len(), 2, "{idx:?}");
        let untagged: Vec<_> = idx
            .manifests
            .iter()
            .filter(|d| !d.annotations.contains_key(annotations::REF_NAME))
            .collect();
        assert_eq!(untagged.len(), 1, "{idx:?}");
        assert_eq!(untagged[0].digest, two.digest);
        assert!(
            idx.manifests
                .iter()
                .all(|d| d.annotations.contains_key(annotations::STORED))
        );
        // Exports carry no entry times.
        let out = Store::open_or_init(dir.path().join("x"))
            .unwrap()
            .unstamped();
        out.tag("app", "1", &one).unwrap();
        assert!(
            !String::from_utf8(fs::read(dir.path().join("x/index.json")).unwrap())
                .unwrap()
                .contains(annotations::STORED)
        );
    }

    #[test]
    fn legacy_subjects() {
        let d = Digest::of(b"x");
        assert_eq!(legacy_subject(&format!("sha256-{}.sig", d.hex())), Some(d));
        assert_eq!(legacy_subject(&format!("sha256-{}.att", d.hex())), Some(d));
        assert_eq!(legacy_subject(&format!("sha256-{}.sbom", d.hex())), None);
        assert_eq!(legacy_subject("latest"), None);
    }
}
