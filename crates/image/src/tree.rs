//! The in-memory model of a layer and of the merged root filesystem.
//!
//! Keys are absolute image paths (`/bin/busybox`, never `/`). A `BTreeMap`
//! gives lexicographic order, in which a parent always precedes its
//! children, which is the order entries are written to layer tars.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::tarw::EntryType;

/// Where an entry of the final filesystem came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Base,
    Package(String),
    Spec,
}

/// Where a file's bytes are read from when the layer is written.
#[derive(Clone, Debug)]
pub enum Content {
    None,
    Bytes(Arc<Vec<u8>>),
    /// A host file, with the stat it was hashed under (checked again when read).
    Host(PathBuf, crate::source::StatKey),
    /// A range of a spool file (a `.deb`'s file, unpacked to disk, not memory).
    Spool(Arc<crate::spool::Spool>, u64),
}

/// One filesystem entry.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    pub sha1: Option<[u8; 20]>,
    /// Symlink target (verbatim) or hard-link target (absolute image path).
    pub link: Option<String>,
    pub origin: Origin,
    pub content: Content,
}

impl Node {
    pub fn dir(mode: u32, uid: u32, gid: u32, origin: Origin) -> Node {
        Node {
            kind: EntryType::Dir,
            mode,
            uid,
            gid,
            size: 0,
            sha256: None,
            sha1: None,
            link: None,
            origin,
            content: Content::None,
        }
    }

    /// A symbolic link (owned by root, mode 0777 as on Linux).
    pub fn symlink(target: &str, origin: Origin) -> Node {
        Node {
            kind: EntryType::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            sha1: None,
            link: Some(target.to_string()),
            origin,
            content: Content::None,
        }
    }

    /// A regular file held in memory, hashed here.
    pub fn bytes(data: Vec<u8>, mode: u32, uid: u32, gid: u32, origin: Origin) -> Node {
        use sha1::Digest as _;
        Node {
            kind: EntryType::File,
            mode,
            uid,
            gid,
            size: data.len() as u64,
            sha256: Some(sha2::Sha256::digest(&data).into()),
            sha1: Some(sha1::Sha1::digest(&data).into()),
            link: None,
            origin,
            content: Content::Bytes(Arc::new(data)),
        }
    }
}

pub type Tree = BTreeMap<String, Node>;

/// Read access to a filesystem: one tree, or layers seen from the top.
pub trait Lookup {
    fn node(&self, path: &str) -> Option<&Node>;
}

impl Lookup for Tree {
    fn node(&self, path: &str) -> Option<&Node> {
        self.get(path)
    }
}

/// Layers from the top down, looked up as the applied filesystem would
/// answer, without materialising it: the topmost layer holding `path`
/// wins, and a non-directory in a higher layer hides everything beneath
/// it in the layers below.
pub struct Stack<'a>(pub Vec<&'a Tree>);

impl Lookup for Stack<'_> {
    fn node(&self, path: &str) -> Option<&Node> {
        for layer in &self.0 {
            if let Some(n) = layer.get(path) {
                return Some(n);
            }
            let mut cur = parent(path);
            while let Some(a) = cur {
                if layer.get(a).is_some_and(|n| n.kind != EntryType::Dir) {
                    return None;
                }
                cur = parent(a);
            }
        }
        None
    }
}

/// The parent of an absolute image path (`None` for top-level entries).
pub fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

/// A chain of more than 40 symbolic links (or a loop) while resolving a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many levels of symbolic links resolving {0}")]
pub struct SymlinkLoop(pub String);

/// Resolve symlinks among the *ancestors* of `path` using `lower`, so that
/// writing `/bin/x` over a base whose `/bin` is a symlink to `usr/bin`
/// lands in `/usr/bin/x` (as dpkg and BuildKit do) instead of replacing the
/// symlink with a directory. Resolution never leaves the root.
pub fn resolve_parents(lower: &dyn Lookup, path: &str) -> Result<String, SymlinkLoop> {
    let mut hops = 0;
    let mut cur = path.to_string();
    'again: loop {
        let comps: Vec<&str> = cur.split('/').filter(|c| !c.is_empty()).collect();
        let mut prefix = String::new();
        for (i, c) in comps.iter().enumerate() {
            prefix.push('/');
            prefix.push_str(c);
            if i + 1 == comps.len() {
                break;
            }
            if let Some(n) = lower.node(&prefix)
                && n.kind == EntryType::Symlink
            {
                hops += 1;
                if hops > 40 {
                    return Err(SymlinkLoop(path.into()));
                }
                let target = n.link.clone().unwrap_or_default();
                let base = if target.starts_with('/') {
                    String::new()
                } else {
                    parent(&prefix).unwrap_or("").to_string()
                };
                let rest = comps[i + 1..].join("/");
                cur = lexical_join(&format!("{base}/{target}"), &rest);
                continue 'again;
            }
        }
        return Ok(cur);
    }
}

/// Join and normalise lexically, clamping `..` at the root.
pub(crate) fn lexical_join(a: &str, b: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in a.split('/').chain(b.split('/')) {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Visit the applied filesystem of `layers` (top first) in path order,
/// without building it: the topmost entry of each path wins, and entries
/// beneath a non-directory of a higher layer are hidden.
pub fn for_each_merged<'a>(layers: &[&'a Tree], mut f: impl FnMut(&'a str, &'a Node)) {
    let mut iters: Vec<_> = layers.iter().map(|t| t.iter().peekable()).collect();
    // Non-directories seen so far, with their layer's rank. Descendants are
    // not contiguous in byte order ("/a-b" sorts between "/a" and "/a/x"),
    // so each path checks its ancestors.
    let mut hiders: std::collections::HashMap<&'a str, usize> = std::collections::HashMap::new();
    loop {
        let mut best: Option<(&'a str, usize)> = None;
        for (rank, it) in iters.iter_mut().enumerate() {
            if let Some((k, _)) = it.peek()
                && best.is_none_or(|(b, _)| k.as_str() < b)
            {
                best = Some((k.as_str(), rank));
            }
        }
        let Some((path, _)) = best else { break };
        let mut winner = None;
        // The highest layer holding a non-directory here: it replaced
        // whatever the layers below had under this path, even if a higher
        // layer puts a directory back.
        let mut replaced_at: Option<usize> = None;
        for (rank, it) in iters.iter_mut().enumerate() {
            if it.peek().is_some_and(|(k, _)| k.as_str() == path)
                && let Some((_, n)) = it.next()
            {
                winner.get_or_insert((rank, n));
                if n.kind != EntryType::Dir {
                    replaced_at.get_or_insert(rank);
                }
            }
        }
        let Some((rank, node)) = winner else { continue };
        // Hidden by a higher layer's non-directory at an ancestor?
        let mut anc = parent(path);
        let mut hidden = false;
        while let Some(a) = anc {
            if hiders.get(a).is_some_and(|r| *r < rank) {
                hidden = true;
                break;
            }
            anc = parent(a);
        }
        if hidden {
            continue;
        }
        if let Some(r) = replaced_at {
            hiders.insert(path, r);
        }
        f(path, node);
    }
}

/// Apply `upper` over `lower` as an OCI layer would: a non-directory
/// replacing a directory removes the directory's subtree.
pub fn overlay(lower: &mut Tree, upper: &Tree) {
    for (p, n) in upper {
        if n.kind != EntryType::Dir
            && let Some(old) = lower.get(p)
            && old.kind == EntryType::Dir
        {
            remove_subtree(lower, p);
        }
        lower.insert(p.clone(), n.clone());
    }
}

/// Remove `path` and everything under it.
pub fn remove_subtree(t: &mut Tree, path: &str) {
    t.remove(path);
    // Children sort after "<path>/" but not necessarily right after `path`
    // ("/a-b" sorts between "/a" and "/a/x"), so scan from the prefix.
    let prefix = format!("{path}/");
    let doomed: Vec<String> = t
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        t.remove(&k);
    }
}

/// Add every missing ancestor directory of the entries in `layer`, copying
/// its metadata from `lower` when a directory exists there (so `/tmp` keeps
/// 1777), else 0755 root:root.
pub fn add_parents(layer: &mut Tree, lower: &dyn Lookup) {
    let mut missing: BTreeMap<String, Origin> = BTreeMap::new();
    for (p, n) in layer.iter() {
        let mut cur = parent(p);
        while let Some(d) = cur {
            if layer.contains_key(d) || missing.contains_key(d) {
                break;
            }
            missing.insert(d.to_string(), n.origin.clone());
            cur = parent(d);
        }
    }
    for (d, origin) in missing {
        let node = match lower.node(&d) {
            Some(l) if l.kind == EntryType::Dir => Node::dir(l.mode, l.uid, l.gid, origin),
            _ => Node::dir(0o755, 0, 0, origin),
        };
        layer.insert(d, node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(t: &str) -> Node {
        Node::symlink(t, Origin::Base)
    }

    #[test]
    fn resolves_usrmerge_and_clamps() {
        let mut t = Tree::new();
        t.insert("/bin".into(), link("usr/bin"));
        t.insert("/evil".into(), link("../../../../etc"));
        t.insert("/loop".into(), link("/loop"));
        assert_eq!(
            resolve_parents(&t, "/bin/busybox").unwrap(),
            "/usr/bin/busybox"
        );
        assert_eq!(resolve_parents(&t, "/evil/passwd").unwrap(), "/etc/passwd");
        assert_eq!(resolve_parents(&t, "/bin").unwrap(), "/bin");
        assert!(resolve_parents(&t, "/loop/x").is_err());
    }

    fn arb_tree() -> impl proptest::strategy::Strategy<Value = Tree> {
        use proptest::prelude::*;
        proptest::collection::btree_map(
            "(/[ab-]{1,2}){1,3}",
            prop_oneof![Just(EntryType::Dir), Just(EntryType::File)],
            0..12,
        )
        .prop_map(|m| {
            // Well-formed, as every real layer is: parents listed, nothing
            // under a file.
            let mut t: Tree = m
                .into_iter()
                .map(|(p, k)| {
                    let n = match k {
                        EntryType::Dir => Node::dir(0o755, 0, 0, Origin::Base),
                        _ => Node::bytes(vec![], 0o644, 0, 0, Origin::Spec),
                    };
                    (p, n)
                })
                .collect();
            let files: Vec<String> = t
                .iter()
                .filter(|(_, n)| n.kind == EntryType::File)
                .map(|(p, _)| p.clone())
                .collect();
            for f in files {
                let prefix = format!("{f}/");
                t.retain(|k, _| !k.starts_with(&prefix));
            }
            let mut layer = t.clone();
            add_parents(&mut layer, &t);
            let bad: Vec<String> = layer
                .keys()
                .filter(|k| {
                    let mut a = parent(k);
                    while let Some(x) = a {
                        if t.get(x).is_some_and(|n| n.kind == EntryType::File) {
                            return true;
                        }
                        a = parent(x);
                    }
                    false
                })
                .cloned()
                .collect();
            for b in bad {
                layer.remove(&b);
            }
            layer
        })
    }

    proptest::proptest! {
        #[test]
        fn merged_view_matches_overlay_on_any_trees(a in arb_tree(), b in arb_tree(), c in arb_tree()) {
            let mut want = c.clone();
            overlay(&mut want, &b);
            overlay(&mut want, &a);
            let mut got = Vec::new();
            for_each_merged(&[&a, &b, &c], |p, n| got.push((p.to_string(), n.kind)));
            let want: Vec<_> = want.iter().map(|(p, n)| (p.clone(), n.kind)).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn merged_view_equals_overlay() {
        let mut lower = Tree::new();
        for p in ["/a", "/a/x", "/a-b", "/c", "/c/d", "/e"] {
            lower.insert(p.into(), Node::dir(0o755, 0, 0, Origin::Base));
        }
        let mut mid = Tree::new();
        mid.insert("/c".into(), Node::bytes(vec![1], 0o644, 0, 0, Origin::Spec));
        mid.insert(
            "/e/f".into(),
            Node::bytes(vec![2], 0o644, 0, 0, Origin::Spec),
        );
        let mut up = Tree::new();
        up.insert("/a".into(), Node::bytes(vec![3], 0o600, 0, 0, Origin::Spec));
        up.insert("/c/new".into(), Node::dir(0o700, 0, 0, Origin::Spec));
        let mut want = lower.clone();
        overlay(&mut want, &mid);
        overlay(&mut want, &up);
        let mut got = Vec::new();
        for_each_merged(&[&up, &mid, &lower], |p, n| {
            got.push((p.to_string(), n.mode, n.kind))
        });
        let want: Vec<_> = want
            .iter()
            .map(|(p, n)| (p.clone(), n.mode, n.kind))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn stack_hides_what_an_upper_file_replaced() {
        let mut lower = Tree::new();
        lower.insert("/a".into(), Node::dir(0o755, 0, 0, Origin::Base));
        lower.insert("/a/x".into(), Node::dir(0o755, 0, 0, Origin::Base));
        lower.insert("/b".into(), Node::dir(0o700, 0, 0, Origin::Base));
        let mut up = Tree::new();
        up.insert("/a".into(), Node::bytes(vec![], 0o644, 0, 0, Origin::Spec));
        let s = Stack(vec![&up, &lower]);
        assert!(s.node("/a/x").is_none());
        assert_eq!(s.node("/a").unwrap().kind, EntryType::File);
        assert_eq!(s.node("/b").unwrap().mode, 0o700);
    }

    #[test]
    fn parents_copy_lower_metadata() {
        let mut lower = Tree::new();
        lower.insert("/tmp".into(), Node::dir(0o1777, 0, 0, Origin::Base));
        let mut layer = Tree::new();
        layer.insert(
            "/tmp/a/b".into(),
            Node::bytes(vec![1], 0o644, 0, 0, Origin::Spec),
        );
        add_parents(&mut layer, &lower);
        assert_eq!(layer["/tmp"].mode, 0o1777);
        assert_eq!(layer["/tmp/a"].mode, 0o755);
    }

    #[test]
    fn file_over_dir_removes_subtree() {
        let mut lower = Tree::new();
        lower.insert("/a".into(), Node::dir(0o755, 0, 0, Origin::Base));
        lower.insert("/a/x".into(), Node::dir(0o755, 0, 0, Origin::Base));
        lower.insert("/a-b".into(), Node::dir(0o755, 0, 0, Origin::Base));
        let mut up = Tree::new();
        up.insert("/a".into(), Node::bytes(vec![], 0o644, 0, 0, Origin::Spec));
        overlay(&mut lower, &up);
        assert!(!lower.contains_key("/a/x"));
        assert!(lower.contains_key("/a-b"));
        assert_eq!(lower["/a"].kind, EntryType::File);
    }
}
