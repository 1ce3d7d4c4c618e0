#![no_main]
//! The entrypoint check on hostile files: the input is the entrypoint (an
//! ELF or a script) and, split at the first 0xff 0xfe, a library it may load.
use std::io::Cursor;

use kiln_image::entrypoint::{Contents, EntrypointError, ReadSeek, Target, check};
use kiln_image::tree::{Content, Lookup, Node, Origin, Tree};
use libfuzzer_sys::fuzz_target;

struct Mem<'a>(&'a Tree);

impl Contents for Mem<'_> {
    fn open(
        &self,
        _: &str,
        node: &Node,
    ) -> Result<Option<Box<dyn ReadSeek + '_>>, EntrypointError> {
        Ok(match &node.content {
            Content::Bytes(b) => Some(Box::new(Cursor::new(b.as_slice().to_vec()))),
            _ => None,
        })
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|r| !r.contains('/'))
            .map(str::to_string)
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let (exe, lib) = match data.windows(2).position(|w| w == [0xff, 0xfe]) {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut t = Tree::new();
    for d in ["/bin", "/lib", "/lib/x86_64-linux-gnu"] {
        t.insert(d.into(), Node::dir(0o755, 0, 0, Origin::Base));
    }
    t.insert("/bin/x".into(), Node::bytes(exe.to_vec(), 0o755, 0, 0, Origin::Spec));
    for name in ["libc.so.6", "libx.so"] {
        t.insert(
            format!("/lib/x86_64-linux-gnu/{name}"),
            Node::bytes(lib.to_vec(), 0o755, 0, 0, Origin::Spec),
        );
    }
    let _ = t.node("/bin/x");
    let _ = check(
        &t,
        &Mem(&t),
        &Target {
            arch: "amd64",
            argv0: "/bin/x",
            path: None,
            ld_library_path: None,
            workdir: None,
        },
    );
});
