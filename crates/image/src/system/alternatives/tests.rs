use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::system::read_node;

const MAWK: &str = r#"#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ]; then
        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \
            --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \
            --slave /usr/bin/nawk nawk /usr/bin/mawk \
            --slave /usr/share/man/man1/nawk.1.gz nawk.1.gz /usr/share/man/man1/mawk.1.gz
fi
"#;

const TAR: &str = "case \"$1\" in\n    configure)\n\tupdate-alternatives --install /usr/sbin/rmt rmt /usr/sbin/rmt-tar 50 \\\n\t\t--slave /usr/share/man/man8/rmt.8.gz rmt.8.gz \\\n\t\t\t/usr/share/man/man8/rmt-tar.8.gz \n    ;;\nesac\n";

#[test]
fn parses_real_postinsts() {
    let (found, skipped) = parse_postinst(MAWK);
    assert!(skipped.is_empty());
    assert_eq!(found.len(), 1);
    let i = &found[0];
    assert_eq!(
        (
            i.link.as_str(),
            i.name.as_str(),
            i.path.as_str(),
            i.priority
        ),
        ("/usr/bin/awk", "awk", "/usr/bin/mawk", 5)
    );
    assert_eq!(i.slaves.len(), 3);
    assert_eq!(
        i.slaves[1],
        (
            "/usr/bin/nawk".into(),
            "nawk".into(),
            "/usr/bin/mawk".into()
        )
    );
    let (found, _) = parse_postinst(TAR);
    assert_eq!(found[0].slaves[0].2, "/usr/share/man/man8/rmt-tar.8.gz");
    // --remove, comments and variables.
    let (found, skipped) = parse_postinst(
        "update-alternatives --remove rename /usr/bin/prename\n# update-alternatives --install /a a /b 1\n\
         update-alternatives --install /usr/bin/x x \"$DIR/x\" 10\nupdate-alternatives --install /usr/bin/y y /usr/bin/y1 abc\n",
    );
    assert!(found.is_empty());
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].contains("line 3") && skipped[0].contains("shell variables"));
    assert!(skipped[1].contains("malformed"));
}

fn file(t: &mut Tree, p: &str) {
    t.insert(
        p.into(),
        Node::bytes(vec![1], 0o755, 0, 0, Origin::Package("p".into())),
    );
}

fn run(scripts: &[(&str, &str)], t: &mut Tree) -> Notes {
    let names: BTreeSet<String> = scripts.iter().map(|(n, _)| n.to_string()).collect();
    let post: BTreeMap<String, Vec<u8>> = scripts
        .iter()
        .map(|(n, s)| (n.to_string(), s.as_bytes().to_vec()))
        .collect();
    let inst = Installed {
        names: &names,
        postinsts: &post,
    };
    let mut notes = Notes::new();
    apply(t, &Tree::new(), &inst, &mut notes).unwrap();
    notes
}

fn link(t: &Tree, p: &str) -> String {
    assert_eq!(t[p].kind, EntryType::Symlink, "{p}");
    t[p].link.clone().unwrap()
}

#[test]
fn highest_priority_existing_choice_wins() {
    let mut t = Tree::new();
    for p in [
        "/usr/bin/mawk",
        "/usr/share/man/man1/mawk.1.gz",
        "/usr/bin/gawk",
    ] {
        file(&mut t, p);
    }
    // gawk's priority is higher, busybox's higher still but not installed.
    let gawk = "update-alternatives --install /usr/bin/awk awk /usr/bin/gawk 10 --slave /usr/bin/nawk nawk /usr/bin/gawk\n\
                update-alternatives --install /usr/bin/awk awk /bin/busybox 100\n";
    let notes = run(&[("mawk", MAWK), ("gawk", gawk)], &mut t);
    assert_eq!(link(&t, "/usr/bin/awk"), "/etc/alternatives/awk");
    assert_eq!(link(&t, "/etc/alternatives/awk"), "/usr/bin/gawk");
    assert_eq!(link(&t, "/usr/bin/nawk"), "/etc/alternatives/nawk");
    assert_eq!(link(&t, "/etc/alternatives/nawk"), "/usr/bin/gawk");
    // gawk has no awk.1.gz slave: no link.
    assert!(!t.contains_key("/usr/share/man/man1/awk.1.gz"));
    let db = read_node("db", &t["/var/lib/dpkg/alternatives/awk"], 1 << 20).unwrap();
    assert_eq!(
        String::from_utf8(db).unwrap(),
        "auto\n/usr/bin/awk\nnawk\n/usr/bin/nawk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\nnawk.1.gz\n/usr/share/man/man1/nawk.1.gz\n\n\
         /usr/bin/gawk\n10\n/usr/bin/gawk\n\n\n\
         /usr/bin/mawk\n5\n/usr/bin/mawk\n/usr/share/man/man1/mawk.1.gz\n/usr/share/man/man1/mawk.1.gz\n\n"
    );
    assert!(
        notes["gawk"]
            .iter()
            .any(|n| n.starts_with("kiln: alternatives awk -> /usr/bin/gawk"))
    );
    assert!(
        notes["gawk"]
            .iter()
            .any(|n| n.contains("/bin/busybox is not in the image"))
    );
}

#[test]
fn same_layer_merged_usr_links_are_followed() {
    let mut t = Tree::new();
    crate::system::usr::add_merged_usr(&mut t, &Tree::new(), "amd64");
    file(&mut t, "/usr/sbin/rmt-tar");
    run(
        &[(
            "tar",
            "update-alternatives --install /sbin/rmt rmt /sbin/rmt-tar 50\n",
        )],
        &mut t,
    );
    assert_eq!(link(&t, "/usr/sbin/rmt"), "/etc/alternatives/rmt");
    assert_eq!(link(&t, "/etc/alternatives/rmt"), "/sbin/rmt-tar");
    assert_eq!(link(&t, "/sbin"), "usr/sbin");
}

#[test]
fn hostile_alternatives_make_nothing() {
    let mut t = Tree::new();
    file(&mut t, "/usr/bin/x");
    file(&mut t, "/etc/shadow");
    t.insert("/usr/evil".into(), symlink("/tmp"));
    let script = "update-alternatives --install /usr/bin/../../tmp/a a /usr/bin/x 1\n\
                  update-alternatives --install /tmp/b b /usr/bin/x 1\n\
                  update-alternatives --install /usr/bin/c ../c /usr/bin/x 1\n\
                  update-alternatives --install /etc/alternatives/d d /usr/bin/x 1\n\
                  update-alternatives --install /etc/shadow e /usr/bin/x 1\n\
                  update-alternatives --install /usr/evil/f f /usr/bin/x 1\n\
                  update-alternatives --install /usr/bin/g g /usr/bin/../x 1\n\
                  update-alternatives --install /usr/bin/h h /usr/bin/x 1 --slave /var/h hs /usr/bin/x\n";
    let before: Vec<String> = t.keys().cloned().collect();
    let notes = run(&[("p", script)], &mut t);
    let after: Vec<String> = t.keys().cloned().collect();
    assert_eq!(before, after, "{notes:?}");
    assert_eq!(t["/etc/shadow"].kind, EntryType::File);
    assert_eq!(notes["p"].len(), 8, "{notes:?}");
    assert!(notes["p"].iter().all(|n| n.starts_with("kiln: not done: ")));
}
