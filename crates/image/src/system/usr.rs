//! The merged-/usr layout Debian 12 expects: `/bin`, `/sbin`, `/lib` (and
//! `/lib64` where the architecture's dynamic loader lives there) are
//! relative symlinks into `/usr`, made before any package is unpacked, as
//! debootstrap's `setup_merged_usr` does. Package paths are then resolved
//! through them ([`crate::debs::resolve_entry`]), so `/bin/sh` lands in
//! `/usr/bin/sh`.
//!
//! debootstrap also links `/lib32` and `/libx32` on amd64; they only hold
//! multilib (i386/x32) libraries that kiln does not install, so they are
//! left out, as in Debian's own cloud images.

use crate::tree::{self, Node, Origin, Tree};

/// The top-level links for an OCI architecture name, `(link, target)`.
pub fn links(arch: &str) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("/bin", "usr/bin"),
        ("/lib", "usr/lib"),
        ("/sbin", "usr/sbin"),
    ];
    // Where the ELF interpreter is /lib64/ld-*.so (x86-64, ppc64el).
    if matches!(arch, "amd64" | "ppc64le") {
        out.push(("/lib64", "usr/lib64"));
    }
    out
}

/// Add the links and their `/usr` directories to `layer`. A path the lower
/// layers already have (a base image, merged or not) is left as it is.
pub fn add_merged_usr(layer: &mut Tree, lower: &dyn tree::Lookup, arch: &str) {
    if lower.node("/usr").is_none() {
        layer.insert("/usr".into(), Node::dir(0o755, 0, 0, Origin::Spec));
    }
    for (link, target) in links(arch) {
        if lower.node(link).is_some() {
            continue;
        }
        let dir = format!("/{target}");
        if lower.node(&dir).is_none() {
            layer.insert(dir, Node::dir(0o755, 0, 0, Origin::Spec));
        }
        layer.insert(link.to_string(), super::symlink(target));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debs::resolve_entry;
    use crate::system::Over;
    use crate::tarw::EntryType;

    #[test]
    fn links_resolve_in_the_same_layer() {
        let mut layer = Tree::new();
        let lower = Tree::new();
        add_merged_usr(&mut layer, &lower, "amd64");
        assert_eq!(layer["/bin"].link.as_deref(), Some("usr/bin"));
        assert_eq!(layer["/lib64"].link.as_deref(), Some("usr/lib64"));
        assert_eq!(layer["/usr/lib64"].kind, EntryType::Dir);
        let fs = Over(&layer, &lower);
        let r = |p, d| resolve_entry(&fs, p, d).unwrap();
        assert_eq!(r("/bin/sh", false), "/usr/bin/sh");
        assert_eq!(r("/bin", true), "/usr/bin");
        assert_eq!(r("/sbin/ldconfig", false), "/usr/sbin/ldconfig");
        assert_eq!(
            r("/lib64/ld-linux-x86-64.so.2", false),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(
            r("/lib/x86_64-linux-gnu", true),
            "/usr/lib/x86_64-linux-gnu"
        );
    }

    #[test]
    fn arm64_has_no_lib64_and_a_base_keeps_its_own() {
        let mut layer = Tree::new();
        add_merged_usr(&mut layer, &Tree::new(), "arm64");
        assert!(!layer.contains_key("/lib64"));
        let mut lower = Tree::new();
        lower.insert("/bin".into(), Node::dir(0o755, 0, 0, Origin::Base));
        let mut layer = Tree::new();
        add_merged_usr(&mut layer, &lower, "amd64");
        assert!(!layer.contains_key("/bin"));
        assert!(layer.contains_key("/sbin"));
    }
}
