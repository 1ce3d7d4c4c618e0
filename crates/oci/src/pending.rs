//! Index changes staged by an operation and applied only after its audit event is
//! recorded: the blobs are already committed (unreferenced, so nothing a user sees
//! changed), and a tag or referrer never appears without the event that explains it.

use crate::{Descriptor, OciError, Store};

/// Changes to a store's `index.json` waiting for an audit event.
#[derive(Debug, Default)]
#[must_use = "staged index changes are invisible until applied"]
pub struct Pending {
    tags: Vec<(String, String, Descriptor)>,
    untagged: Vec<Descriptor>,
}

impl Pending {
    /// Tag `d` as `name:tag`.
    pub fn tag(&mut self, name: &str, tag: &str, d: &Descriptor) {
        self.tags.push((name.to_owned(), tag.to_owned(), d.clone()));
    }

    /// List `d` untagged (a referrer).
    pub fn untagged(&mut self, d: &Descriptor) {
        self.untagged.push(d.clone());
    }

    /// Take on another operation's changes.
    pub fn extend(&mut self, other: Pending) {
        self.tags.extend(other.tags);
        self.untagged.extend(other.untagged);
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.untagged.is_empty()
    }

    /// Apply the staged index changes (call after recording the event): untagged
    /// entries first, then the tags.
    pub fn apply(self, store: &Store) -> Result<(), OciError> {
        if !self.untagged.is_empty() {
            store.add_untagged(&self.untagged)?;
        }
        for (name, tag, d) in &self.tags {
            store.tag(name, tag, d)?;
        }
        Ok(())
    }
}
