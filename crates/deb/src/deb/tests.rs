use super::*;

#[test]
fn versions() {
    assert_eq!(normalize_version("0:1.0-1"), "1.0-1");
    assert_eq!(normalize_version("00:1.0"), "1.0");
    assert_eq!(normalize_version("0:1:2"), "0:1:2");
    assert_eq!(normalize_version("02:1.0"), "2:1.0");
    assert_eq!(normalize_version("1.0"), "1.0");
    assert!(check_version("1:2.3-4+b1").is_ok());
    assert!(check_version("2.3~rc1-0ubuntu1").is_ok());
    assert!(check_version("1.0-2-3").is_ok());
    assert!(check_version("").is_err());
    assert!(check_version("a:1").is_err());
    assert!(check_version("1:").is_err());
    assert!(check_version("1.0-").is_err());
    assert!(check_version("1 0").is_err());
    assert!(check_version("1.0-a:b").is_err());
}

#[test]
fn relations() {
    assert_eq!(
        normalize_relations("a(>=1),b |c (<<2) , d:any,\n e (= 3)"),
        "a (>= 1), b | c (<< 2), d:any, e (= 3)"
    );
    assert_eq!(
        normalize_relations("f (< 2), g (> 3), h ( >= 0:1.2 )"),
        "f (<= 2), g (>= 3), h (>= 1.2)"
    );
    // Unparsable values are kept verbatim.
    for v in ["a [amd64]", "a, , b", "a (>= 1 2)", "(>= 1)", "a (~ 1)"] {
        assert_eq!(normalize_relations(v), v);
    }
}

#[test]
fn names() {
    assert!(check_package_name("libc6").is_ok());
    assert!(check_package_name("g++-12").is_ok());
    assert!(check_package_name("-x").is_err());
    assert!(check_package_name("../../etc/passwd").is_err());
    assert!(check_architecture("amd64").is_ok());
    assert!(check_architecture("linux-any").is_ok());
    assert!(check_architecture("amd64/../x").is_err());
}

#[test]
fn paths() {
    assert_eq!(normalize_path("./usr/").unwrap().as_deref(), Some("/usr"));
    assert_eq!(
        normalize_path("/usr//bin/.").unwrap().as_deref(),
        Some("/usr/bin")
    );
    assert_eq!(normalize_path("./").unwrap(), None);
    assert_eq!(normalize_path("").unwrap(), None);
    assert!(normalize_path("../x").is_err());
    assert!(normalize_path("usr/../x").is_err());
    assert!(normalize_path("a\nb").is_err());
}

#[test]
fn symlink_resolution() {
    assert_eq!(resolve_symlink("/etc/a/link", "b"), "/etc/a/b");
    assert_eq!(resolve_symlink("/etc/a/link", "../b"), "/etc/b");
    assert_eq!(resolve_symlink("/etc/a/link", "/usr/x"), "/usr/x");
    assert_eq!(resolve_symlink("/link", "../../x"), "/x");
}

#[test]
fn conffile_lines() {
    let c = parse_conffiles("/etc/a\n\nremove-on-upgrade /etc/b\n").unwrap();
    assert_eq!(
        c,
        vec![
            Conffile {
                path: "/etc/a",
                remove_on_upgrade: false
            },
            Conffile {
                path: "/etc/b",
                remove_on_upgrade: true
            }
        ]
    );
    let e = parse_conffiles("/etc/a\netc/b\n").unwrap_err().to_string();
    assert!(e.contains("conffiles line 2") && e.contains("etc/b"), "{e}");
    let e = parse_conffiles("bogus-flag /etc/b")
        .unwrap_err()
        .to_string();
    assert!(e.contains("remove-on-upgrade"), "{e}");
}

#[test]
fn debian_binary() {
    assert!(check_debian_binary(b"2.0\n").is_ok());
    assert!(check_debian_binary(b"2.1\n").is_ok());
    for bad in [&b"2.0"[..], b"3.0\n", b"2.\n", b"2.x\n", b"", b"20\n"] {
        let e = check_debian_binary(bad).unwrap_err().to_string();
        assert!(e.contains("unsupported debian-binary"), "{e}");
    }
}
