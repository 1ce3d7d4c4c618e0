use super::*;
use crate::tree::{Content, Origin, Tree};

/// Contents of an in-memory tree; `Content::None` files are "pending".
struct Mem<'a>(&'a Tree);

impl Contents for Mem<'_> {
    fn open(
        &self,
        _: &str,
        node: &Node,
    ) -> Result<Option<Box<dyn ReadSeek + '_>>, EntrypointError> {
        Ok(match &node.content {
            Content::Bytes(b) => Some(Box::new(io::Cursor::new(ArcBytes(b.clone())))),
            _ => None,
        })
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|r| !r.contains('/'))
            .map(str::to_string)
            .collect()
    }
}

fn put(t: &mut Tree, path: &str, data: Vec<u8>, mode: u32) {
    t.insert(path.into(), Node::bytes(data, mode, 0, 0, Origin::Spec));
    let layer = t.clone();
    let mut l2 = layer.clone();
    tree::add_parents(&mut l2, &layer);
    for (k, v) in l2 {
        t.entry(k).or_insert(v);
    }
}

fn link(t: &mut Tree, path: &str, target: &str) {
    t.insert(path.into(), Node::symlink(target, Origin::Base));
}

/// The check's outcome, its error as the message a build shows (which is
/// what these tests compare).
fn run(t: &Tree, arch: &str, argv0: &str) -> Result<Outcome, String> {
    check(
        t,
        &Mem(t),
        &Target {
            arch,
            argv0,
            path: None,
            ld_library_path: None,
            workdir: None,
        },
    )
    .map_err(|e| e.to_string())
}

fn host_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        _ => None,
    }
}

fn em() -> u16 {
    match host_arch() {
        Some("arm64") => elf::EM_AARCH64,
        _ => elf::EM_X86_64,
    }
}

/// A minimal 64-bit little-endian ELF (`ET_DYN`): optional PT_INTERP,
/// and a dynamic section with these DT_NEEDED, DT_RPATH, DT_RUNPATH.
fn mini_elf(
    machine: u16,
    interp: Option<&str>,
    needed: &[&str],
    rpath: Option<&str>,
    runpath: Option<&str>,
) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut add = |s: &str| {
        let off = strtab.len() as u64;
        strtab.extend_from_slice(s.as_bytes());
        strtab.push(0);
        off
    };
    let mut dyns: Vec<(u64, u64)> = needed
        .iter()
        .map(|n| (u64::from(elf::DT_NEEDED), add(n)))
        .collect();
    if let Some(r) = rpath {
        dyns.push((u64::from(elf::DT_RPATH), add(r)));
    }
    if let Some(r) = runpath {
        dyns.push((u64::from(elf::DT_RUNPATH), add(r)));
    }
    let interp_bytes = interp.map(|i| {
        let mut b = i.as_bytes().to_vec();
        b.push(0);
        b
    });
    let nph = 2 + u64::from(interp.is_some());
    let strtab_off = 64 + 56 * nph;
    let interp_off = strtab_off + strtab.len() as u64;
    let dyn_off = (interp_off + interp_bytes.as_ref().map_or(0, |b| b.len() as u64) + 7) & !7;
    dyns.push((u64::from(elf::DT_STRTAB), strtab_off));
    dyns.push((u64::from(elf::DT_STRSZ), strtab.len() as u64));
    dyns.push((0, 0));
    let total = dyn_off + 16 * dyns.len() as u64;
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    f.extend_from_slice(&elf::ET_DYN.to_le_bytes());
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    f.extend_from_slice(&(nph as u16).to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    let ph = |f: &mut Vec<u8>, ty: u32, off: u64, size: u64| {
        f.extend_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(&4u32.to_le_bytes());
        for v in [off, off, off, size, size, 8] {
            f.extend_from_slice(&v.to_le_bytes());
        }
    };
    if let Some(b) = &interp_bytes {
        ph(&mut f, elf::PT_INTERP, interp_off, b.len() as u64);
    }
    ph(&mut f, elf::PT_LOAD, 0, total);
    ph(&mut f, elf::PT_DYNAMIC, dyn_off, 16 * dyns.len() as u64);
    f.extend_from_slice(&strtab);
    if let Some(b) = &interp_bytes {
        f.extend_from_slice(b);
    }
    f.resize(dyn_off as usize, 0);
    for (tag, val) in dyns {
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&val.to_le_bytes());
    }
    f
}

fn ok(r: Result<Outcome, String>) {
    assert_eq!(r, Ok(Outcome::Ok));
}

#[track_caller]
fn err(r: Result<Outcome, String>, needle: &str) {
    match r {
        Err(e) => assert!(e.contains(needle), "{e:?} lacks {needle:?}"),
        other => panic!("expected an error with {needle:?}, got {other:?}"),
    }
}

#[test]
#[ignore = "needs /bin/busybox (busybox-static) on an amd64 or arm64 host"]
fn static_busybox_from_the_host() {
    let arch = host_arch().expect("an amd64 or arm64 host");
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut t = Tree::new();
    put(&mut t, "/bin/busybox", bb, 0o755);
    link(&mut t, "/bin/sh", "busybox");
    ok(run(&t, arch, "/bin/busybox"));
    ok(run(&t, arch, "busybox"));
    ok(run(&t, arch, "sh"));
    err(run(&t, arch, "/bin/nope"), "/bin/nope is not in the image");
    err(
        run(&t, arch, "nope"),
        "nope is not found in the image's PATH",
    );
    let other = if arch == "amd64" { "arm64" } else { "amd64" };
    err(
        run(&t, other, "/bin/busybox"),
        &format!("but the image is {other}"),
    );
    // Not executable, and not a program at all.
    put(&mut t, "/bin/data", b"hello".to_vec(), 0o644);
    err(run(&t, arch, "/bin/data"), "is not executable");
    put(&mut t, "/bin/text", b"hello".to_vec(), 0o755);
    err(
        run(&t, arch, "/bin/text"),
        "neither an ELF executable nor a #! script",
    );
}

/// /bin/ls of the host with its libraries copied into a merged-/usr
/// image, then with its loader or a library missing.
#[test]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    ignore = "needs an amd64 or arm64 host"
)]
fn dynamic_ls_from_the_host() {
    let arch = host_arch().expect("an amd64 or arm64 host");
    let ls = std::fs::read("/bin/ls").expect("the host's /bin/ls");
    let info = parse_elf(Box::new(io::Cursor::new(ls.clone()))).unwrap();
    let interp = info.interp.clone().unwrap();
    let triplet = machine_of(arch).unwrap().triplet;
    let mut t = Tree::new();
    for d in ["/usr/bin", "/usr/lib", "/usr/lib64"] {
        t.insert(d.into(), Node::dir(0o755, 0, 0, Origin::Base));
    }
    link(&mut t, "/bin", "usr/bin");
    link(&mut t, "/lib", "usr/lib");
    link(&mut t, "/lib64", "usr/lib64");
    put(&mut t, "/usr/bin/ls", ls, 0o755);
    // Copy the closure of libraries from the host.
    let mut todo = info.needed.clone();
    let mut done = HashSet::new();
    while let Some(name) = todo.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        let host = [
            format!("/lib/{triplet}/{name}"),
            format!("/usr/lib/{triplet}/{name}"),
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap();
        let bytes = std::fs::read(&host).unwrap();
        let li = parse_elf(Box::new(io::Cursor::new(bytes.clone()))).unwrap();
        todo.extend(li.needed);
        put(&mut t, &format!("/usr/lib/{triplet}/{name}"), bytes, 0o755);
    }
    let loader = std::fs::read(&interp).unwrap();
    let full = t.clone();
    put(
        &mut t,
        &format!("/usr/lib/{triplet}/loader.so"),
        loader,
        0o755,
    );
    // The loader is reached through /lib64 -> usr/lib64 -> a link.
    let interp_in_usr = format!("/usr{interp}");
    link(&mut t, &interp_in_usr, &format!("/lib/{triplet}/loader.so"));
    ok(run(&t, arch, "ls"));
    ok(run(&t, arch, "/bin/ls"));
    // Without the loader.
    err(
        run(&full, arch, "ls"),
        &format!("program interpreter {interp} (PT_INTERP)"),
    );
    // Without libc.
    let mut no_libc = t.clone();
    no_libc.remove(&format!("/usr/lib/{triplet}/libc.so.6"));
    err(run(&no_libc, arch, "ls"), "needs libc.so.6 (DT_NEEDED)");
}

#[test]
fn origin_rpath_runpath_and_transitive_needs() {
    let m = em();
    let arch = if m == elf::EM_AARCH64 {
        "arm64"
    } else {
        "amd64"
    };
    let triplet = machine_of(arch).unwrap().triplet;
    let mut t = Tree::new();
    put(
        &mut t,
        "/app/bin/app",
        mini_elf(m, None, &["libapp.so"], None, Some("$ORIGIN/../lib")),
        0o755,
    );
    put(
        &mut t,
        "/app/lib/libapp.so",
        mini_elf(m, None, &["libc.so.6"], None, None),
        0o644,
    );
    put(
        &mut t,
        &format!("/lib/{triplet}/libc.so.6"),
        mini_elf(m, None, &[], None, None),
        0o644,
    );
    ok(run(&t, arch, "/app/bin/app"));
    // $ORIGIN is the directory of the object; the wrong directory fails.
    put(
        &mut t,
        "/app/bin/bad",
        mini_elf(m, None, &["libapp.so"], None, Some("$ORIGIN/lib")),
        0o755,
    );
    err(run(&t, arch, "/app/bin/bad"), "needs libapp.so (DT_NEEDED)");
    // The executable's DT_RPATH is inherited by its libraries (no RUNPATH).
    let mut t2 = t.clone();
    put(
        &mut t2,
        "/app/bin/rp",
        mini_elf(
            m,
            None,
            &["libapp.so"],
            Some("${ORIGIN}/../lib:/opt/x"),
            None,
        ),
        0o755,
    );
    put(
        &mut t2,
        "/app/lib/libapp.so",
        mini_elf(m, None, &["libdep.so"], None, None),
        0o644,
    );
    put(
        &mut t2,
        "/opt/x/libdep.so",
        mini_elf(m, None, &[], None, None),
        0o644,
    );
    ok(run(&t2, arch, "/app/bin/rp"));
    // A transitive need that is missing is named.
    put(
        &mut t2,
        "/app/bin/rp2",
        mini_elf(m, None, &["libapp.so"], None, Some("$ORIGIN/../lib")),
        0o755,
    );
    err(
        run(&t2, arch, "/app/bin/rp2"),
        "libapp.so needs libdep.so (DT_NEEDED)",
    );
    // A library of another machine is skipped, as the loader does.
    let mut t3 = Tree::new();
    put(
        &mut t3,
        "/bin/x",
        mini_elf(m, None, &["libq.so"], None, None),
        0o755,
    );
    put(
        &mut t3,
        &format!("/lib/{triplet}/libq.so"),
        mini_elf(elf::EM_S390, None, &[], None, None),
        0o644,
    );
    err(run(&t3, arch, "/bin/x"), "needs libq.so");
    put(
        &mut t3,
        "/usr/lib/libq.so",
        mini_elf(m, None, &[], None, None),
        0o644,
    );
    ok(run(&t3, arch, "/bin/x"));
}

#[test]
fn ld_so_conf_directories() {
    let m = em();
    let arch = if m == elf::EM_AARCH64 {
        "arm64"
    } else {
        "amd64"
    };
    let mut t = Tree::new();
    put(
        &mut t,
        "/bin/x",
        mini_elf(m, None, &["libo.so"], None, None),
        0o755,
    );
    put(
        &mut t,
        "/opt/o/lib/libo.so",
        mini_elf(m, None, &[], None, None),
        0o644,
    );
    err(run(&t, arch, "/bin/x"), "needs libo.so");
    put(
        &mut t,
        "/etc/ld.so.conf",
        b"include /etc/ld.so.conf.d/*.conf\n".to_vec(),
        0o644,
    );
    put(
        &mut t,
        "/etc/ld.so.conf.d/o.conf",
        b"# opt\n/opt/o/lib/\n".to_vec(),
        0o644,
    );
    put(
        &mut t,
        "/etc/ld.so.conf.d/o.txt",
        b"/nowhere\n".to_vec(),
        0o644,
    );
    ok(run(&t, arch, "/bin/x"));
}

#[test]
fn scripts() {
    let m = em();
    let arch = if m == elf::EM_AARCH64 {
        "arm64"
    } else {
        "amd64"
    };
    let mut t = Tree::new();
    put(
        &mut t,
        "/app/run",
        b"#!/usr/bin/python3 -u\nprint(1)\n".to_vec(),
        0o755,
    );
    err(
        run(&t, arch, "/app/run"),
        "is a script for /usr/bin/python3, which is not in the image",
    );
    put(
        &mut t,
        "/usr/bin/python3",
        mini_elf(m, None, &[], None, None),
        0o755,
    );
    ok(run(&t, arch, "/app/run"));
    // Through env: the named program is looked up in PATH.
    put(
        &mut t,
        "/app/envrun",
        b"#!/usr/bin/env node\n".to_vec(),
        0o755,
    );
    err(
        run(&t, arch, "/app/envrun"),
        "/usr/bin/env, which is not in the image",
    );
    put(
        &mut t,
        "/usr/bin/env",
        mini_elf(m, None, &[], None, None),
        0o755,
    );
    err(
        run(&t, arch, "/app/envrun"),
        "runs node through env: node is not found",
    );
    put(
        &mut t,
        "/usr/local/bin/node",
        mini_elf(m, None, &[], None, None),
        0o755,
    );
    ok(run(&t, arch, "/app/envrun"));
    // A script whose interpreter is a script with a missing interpreter.
    put(&mut t, "/app/a", b"#!/app/b\n".to_vec(), 0o755);
    put(&mut t, "/app/b", b"#!/bin/missing\n".to_vec(), 0o755);
    err(
        run(&t, arch, "/app/a"),
        "/app/b is a script for /bin/missing",
    );
    // Interpreter loops are bounded.
    put(&mut t, "/app/loop", b"#!/app/loop\n".to_vec(), 0o755);
    err(
        run(&t, arch, "/app/loop"),
        "too many levels of #! interpreters",
    );
}

#[test]
fn unknown_contents_are_asked_for_not_judged() {
    let mut t = Tree::new();
    put(&mut t, "/bin/x", vec![], 0o755);
    if let Some(n) = t.get_mut("/bin/x") {
        n.content = Content::None;
    }
    assert_eq!(
        run(&t, "amd64", "/bin/x"),
        Ok(Outcome::Pending(BTreeSet::from(["/bin/x".to_string()])))
    );
}

#[test]
fn wildcards() {
    assert!(wildcard(b"*.conf", b"a.conf"));
    assert!(wildcard(b"*.conf", b".conf"));
    assert!(!wildcard(b"*.conf", b"a.conf~"));
    assert!(wildcard(b"l?b*", b"lib64"));
    assert!(!wildcard(b"", b"x"));
    assert_eq!(
        expand("$ORIGIN/../lib", "/app/bin").as_deref(),
        Some("/app/lib")
    );
    assert_eq!(expand("$LIB/x", "/"), None);
    assert_eq!(expand("rel", "/"), None);
}

/// Runs `f` in a thread and fails, instead of hanging, when it does not
/// finish in a generous time.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(v) => v,
        Err(e) => panic!("{what} did not finish: {e}"),
    }
}

/// Adds many files at once (`put` copies the tree for each).
fn put_all(t: &mut Tree, files: Vec<(String, Vec<u8>)>) {
    let mut layer = Tree::new();
    for (path, data) in files {
        layer.insert(path, Node::bytes(data, 0o644, 0, 0, Origin::Spec));
    }
    tree::add_parents(&mut layer, &*t);
    t.extend(layer);
}

fn host_or_amd64() -> (u16, &'static str) {
    let m = em();
    (
        m,
        if m == elf::EM_AARCH64 {
            "arm64"
        } else {
            "amd64"
        },
    )
}

/// The recursive matcher `wildcard` replaced: the reference semantics.
fn wildcard_reference(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_reference(&p[1..], s) || (!s.is_empty() && wildcard_reference(p, &s[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_reference(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard_reference(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Many `*`s against a long name that almost matches: exponential for a
/// backtracking matcher, linear-times-pattern for the iterative one.
#[test]
fn wildcard_with_many_stars_finishes() {
    let pattern = format!("{}*b", "*a".repeat(15));
    let name = "a".repeat(240);
    let (p2, n2) = (pattern.clone(), name.clone());
    assert!(!within("wildcard", move || wildcard(
        p2.as_bytes(),
        n2.as_bytes()
    )));
    assert!(wildcard(pattern.as_bytes(), format!("{name}b").as_bytes()));
    // The same through a hostile base image's ld.so.conf.
    let r = within("the check", move || {
        let (m, arch) = host_or_amd64();
        let mut t = Tree::new();
        put(&mut t, "/bin/x", mini_elf(m, None, &[], None, None), 0o755);
        put(
            &mut t,
            "/etc/ld.so.conf",
            format!("include /x/{pattern}\n").into_bytes(),
            0o644,
        );
        put(&mut t, &format!("/x/{name}"), b"/lib\n".to_vec(), 0o644);
        run(&t, arch, "/bin/x")
    });
    ok(r);
}

/// `include dI/*.conf` through K aliases of the same directory, nested:
/// K^depth visits when files are told apart by the name used.
#[test]
fn ld_so_conf_includes_through_aliases_are_read_once() {
    let r = within("the check", || {
        let (m, arch) = host_or_amd64();
        let mut t = Tree::new();
        put(
            &mut t,
            "/bin/x",
            mini_elf(m, None, &["libo.so"], None, None),
            0o755,
        );
        put(
            &mut t,
            "/opt/o/lib/libo.so",
            mini_elf(m, None, &[], None, None),
            0o644,
        );
        let mut conf = String::new();
        for i in 0..16 {
            link(&mut t, &format!("/etc/d{i}"), ".");
            conf.push_str(&format!("include d{i}/*.conf\n"));
        }
        conf.push_str("/opt/o/lib\n");
        put(&mut t, "/etc/ld.so.conf", conf.into_bytes(), 0o644);
        run(&t, arch, "/bin/x")
    });
    ok(r);
}

#[test]
fn ld_so_conf_work_is_capped() {
    let (m, arch) = host_or_amd64();
    let mut base = Tree::new();
    put(
        &mut base,
        "/bin/x",
        mini_elf(m, None, &[], None, None),
        0o755,
    );
    // The same directory many times is one directory.
    let mut t = base.clone();
    put(
        &mut t,
        "/etc/ld.so.conf",
        "/opt/lib\n".repeat(10_000).into_bytes(),
        0o644,
    );
    ok(run(&t, arch, "/bin/x"));
    // Too many distinct directories.
    let mut t = base.clone();
    let many: String = (0..5000).map(|i| format!("/opt/l{i}\n")).collect();
    put(&mut t, "/etc/ld.so.conf", many.into_bytes(), 0o644);
    err(
        run(&t, arch, "/bin/x"),
        "more than 4096 library directories",
    );
    // Too many bytes in all (each file alone is within its own cap).
    let mut t = base.clone();
    let big = format!("# {}\n", "x".repeat(1 << 20));
    put_all(
        &mut t,
        (0..5)
            .map(|i| {
                (
                    format!("/etc/ld.so.conf.d/{i}.conf"),
                    big.clone().into_bytes(),
                )
            })
            .collect(),
    );
    err(run(&t, arch, "/bin/x"), "larger than 4194304 bytes in all");
    // Too many include lines.
    let mut t = base.clone();
    put(
        &mut t,
        "/etc/ld.so.conf",
        (0..1100)
            .map(|i| format!("include /none{i}/*.conf\n"))
            .collect::<String>()
            .into_bytes(),
        0o644,
    );
    err(run(&t, arch, "/bin/x"), "more than 1024 include lines");
    // Too many files matched.
    let mut t = base.clone();
    put_all(
        &mut t,
        (0..5000)
            .map(|i| (format!("/etc/ld.so.conf.d/{i}.conf"), Vec::new()))
            .collect(),
    );
    err(run(&t, arch, "/bin/x"), "match more than 4096 files");
}

/// A chain of tens of thousands of libraries, each needing the next:
/// resolved without one stack frame per link.
#[test]
fn long_dependency_chains_do_not_overflow_the_stack() {
    let r = within("the check", || {
        let (m, arch) = host_or_amd64();
        let triplet = machine_of(arch).unwrap().triplet;
        let n = 20_000;
        let mut t = Tree::new();
        put(
            &mut t,
            "/bin/x",
            mini_elf(m, None, &["lib0.so"], None, None),
            0o755,
        );
        put_all(
            &mut t,
            (0..n)
                .map(|i| {
                    let next = format!("lib{}.so", i + 1);
                    let needs: &[&str] = if i + 1 < n { &[&next] } else { &[] };
                    (
                        format!("/lib/{triplet}/lib{i}.so"),
                        mini_elf(m, None, needs, None, None),
                    )
                })
                .collect(),
        );
        let whole = run(&t, arch, "/bin/x");
        // The end of the chain missing is named with what needed it.
        t.remove(&format!("/lib/{triplet}/lib{}.so", n - 1));
        (whole, run(&t, arch, "/bin/x"))
    });
    ok(r.0);
    err(r.1, "lib19998.so needs lib19999.so (DT_NEEDED)");
}

#[test]
fn library_resolution_is_capped() {
    let (m, arch) = host_or_amd64();
    let triplet = machine_of(arch).unwrap().triplet;
    let mut t = Tree::new();
    put(
        &mut t,
        &format!("/lib/{triplet}/libc.so.6"),
        mini_elf(m, None, &[], None, None),
        0o644,
    );
    // More DT_NEEDED entries than the cap, all of one library.
    let many = vec!["libc.so.6"; 70_000];
    put(
        &mut t,
        "/bin/x",
        mini_elf(m, None, &many, None, None),
        0o755,
    );
    err(
        run(&t, arch, "/bin/x"),
        "more than 65536 libraries (DT_NEEDED)",
    );
    // Few entries, each searching thousands of ld.so.conf directories.
    let dirs: String = (0..4000).map(|i| format!("/opt/l{i}\n")).collect();
    put(&mut t, "/etc/ld.so.conf", dirs.into_bytes(), 0o644);
    put(
        &mut t,
        "/bin/y",
        mini_elf(m, None, &vec!["libc.so.6"; 300], None, None),
        0o755,
    );
    err(run(&t, arch, "/bin/y"), "more than 1048576 directories");
    put(
        &mut t,
        "/bin/z",
        mini_elf(m, None, &vec!["libc.so.6"; 20], None, None),
        0o755,
    );
    ok(run(&t, arch, "/bin/z"));
}

proptest::proptest! {
    /// The iterative matcher agrees with the recursive one.
    #[test]
    fn wildcard_matches_the_reference(
        p in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b'*', b'?']), 0..8),
        s in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b']), 0..10),
    ) {
        proptest::prop_assert_eq!(wildcard(&p, &s), wildcard_reference(&p, &s));
    }

    /// Arbitrary bytes never panic the ELF reader.
    #[test]
    fn parse_elf_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), class in 1u8..3) {
        if bytes.len() >= 16 {
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = class;
        }
        let _ = parse_elf(Box::new(io::Cursor::new(bytes)));
    }
}
