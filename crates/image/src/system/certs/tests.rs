use std::collections::{BTreeMap, BTreeSet};

use super::*;

const CA: &str = include_str!("../../../tests/fixtures/ca.pem");

fn layer() -> Tree {
    let mut t = Tree::new();
    for (name, body) in [("B.crt", "B"), ("A_x.crt", "A_x"), ("AC.crt", "AC\n")] {
        t.insert(
            format!("{MOZILLA}{name}"),
            Node::bytes(
                body.into(),
                0o644,
                0,
                0,
                Origin::Package("ca-certificates".into()),
            ),
        );
    }
    t.insert(
        format!("{MOZILLA}README"),
        Node::bytes(vec![1], 0o644, 0, 0, Origin::Spec),
    );
    t
}

fn run(extra: &[ExtraCa], names: &[&str]) -> Result<(Tree, Notes), SystemError> {
    let mut t = layer();
    let names: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    let post = BTreeMap::new();
    let inst = Installed {
        names: &names,
        postinsts: &post,
    };
    let mut notes = Notes::new();
    apply(extra, &mut t, &Tree::new(), &inst, &mut notes)?;
    Ok((t, notes))
}

fn extra(dir: &std::path::Path, name: &str, data: &[u8]) -> ExtraCa {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    ExtraCa {
        src: p,
        src_text: name.into(),
    }
}

fn body(t: &Tree, p: &str) -> String {
    String::from_utf8(read_node(p, &t[p], 1 << 22).unwrap()).unwrap()
}

#[test]
fn bundle_is_mozilla_in_byte_order_then_added() {
    let d = tempfile::tempdir().unwrap();
    let two = format!("\n{CA}\n{}", CA.replace('\n', "\r\n"));
    let (t, notes) = run(
        &[extra(d.path(), "a.crt", two.as_bytes())],
        &["ca-certificates"],
    )
    .unwrap();
    let b = body(&t, BUNDLE);
    assert!(
        b.starts_with("AC\nA_x\nB\n-----BEGIN CERTIFICATE-----\n"),
        "{b}"
    );
    assert_eq!(b.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(!b.contains('\r'));
    let conf = body(&t, CONF);
    assert!(
        conf.ends_with("#\nmozilla/AC.crt\nmozilla/A_x.crt\nmozilla/B.crt\n"),
        "{conf}"
    );
    assert!(notes["ca-certificates"][0].contains("3 mozilla certificates, 2 from"));
}

#[test]
fn hostile_added_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let e = |ca: ExtraCa| run(&[ca], &["ca-certificates"]).unwrap_err().to_string();
    assert!(e(extra(d.path(), "t", b"hello\n")).contains("only PEM CERTIFICATE"));
    assert!(
        e(extra(
            d.path(),
            "k",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        ))
        .contains("only PEM CERTIFICATE")
    );
    let junk = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
    assert!(e(extra(d.path(), "j", junk.as_bytes())).contains("not an X.509"));
    let cut = &CA[..CA.len() - 30];
    assert!(e(extra(d.path(), "c", cut.as_bytes())).contains("no END"));
    assert!(e(extra(d.path(), "x", format!("{CA}trailing\n").as_bytes())).contains("only PEM"));
    assert!(e(extra(d.path(), "e", b"\n")).contains("no certificate"));
    let huge = CA.repeat((MAX_CA_FILE as usize / CA.len()) + 1);
    assert!(e(extra(d.path(), "h", huge.as_bytes())).contains("more than"));
    // A symlink (here to a valid file) is not followed.
    let good = extra(d.path(), "good.crt", CA.as_bytes());
    std::os::unix::fs::symlink(&good.src, d.path().join("l.crt")).unwrap();
    let l = ExtraCa {
        src: d.path().join("l.crt"),
        src_text: "l.crt".into(),
    };
    assert!(matches!(
        run(&[l], &["ca-certificates"]),
        Err(SystemError::CaIo { .. })
    ));
    // A FIFO fails at once instead of blocking.
    let fifo = d.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let f = ExtraCa {
        src: fifo,
        src_text: "fifo".into(),
    };
    assert!(run(&[f], &["ca-certificates"]).is_err());
}

#[test]
fn added_cas_need_ca_certificates() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        run(&[extra(d.path(), "a.crt", CA.as_bytes())], &[]),
        Err(SystemError::NoCaCertificates)
    ));
    let (t, notes) = run(&[], &[]).unwrap();
    assert!(!t.contains_key(BUNDLE) && notes.is_empty());
}
