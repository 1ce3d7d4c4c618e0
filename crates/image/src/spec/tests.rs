use super::*;
use proptest::prelude::*;

fn parse(text: &str) -> Result<Spec, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kiln.toml");
    Spec::parse(&p, text)
}

const MIN: &str = "[image]\nname = \"hello\"\ntag = \"1.0.0\"\n";

#[test]
fn minimal() {
    let s = parse(MIN).unwrap();
    assert_eq!((s.name.as_str(), s.tag.as_str()), ("hello", "1.0.0"));
    assert_eq!(s.base, Base::Scratch);
}

#[test]
fn unknown_key_has_location() {
    let e = parse(&format!("{MIN}colour = \"red\"\n")).unwrap_err();
    assert_eq!((e.line, e.column), (4, 1), "{e}");
    assert!(e.message.contains("colour"), "{e}");
}

#[test]
fn bad_values_point_at_value() {
    let cases = [
        (
            "[[files]]\nsrc = \"a\"\ndst = \"/../etc/x\"\n",
            "escape",
            6,
            7,
        ),
        ("[[files]]\nsrc = \"../a\"\ndst = \"/x\"\n", "leaves", 5, 7),
        (
            "[[files]]\nsrc = \"a\"\ndst = \"/x\"\nmode = \"0999\"\n",
            "octal",
            7,
            8,
        ),
        (
            "[[debs]]\npath = \"a.deb\"\nsha256 = \"xyz\"\n",
            "hex",
            6,
            10,
        ),
        (
            "[baseline]\ntls_min_version = \"0.9\"\n",
            "tls_min_version",
            5,
            19,
        ),
    ];
    for (extra, want, line, col) in cases {
        let e = parse(&format!("{MIN}{extra}")).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!((e.line, e.column), (line, col), "{e}");
    }
}

#[test]
fn sources_and_debs_may_not_leave_through_symlinks() {
    let d = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(d.path()).unwrap();
    std::fs::create_dir(dir.join("www")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etclink")).unwrap();
    std::os::unix::fs::symlink("www", dir.join("alias")).unwrap();
    for ok in [
        ".",
        "./",
        "www/..",
        "www/",
        "alias/",
        "etclink",
        "missing/x",
    ] {
        resolve_src(&dir, ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "etclink/",
        "etclink/.",
        "etclink/passwd",
        "alias/../etclink/ssl/",
    ] {
        let e = resolve_src(&dir, bad).unwrap_err().to_string();
        assert!(e.contains("outside the spec's directory"), "{bad}: {e}");
        assert!(e.contains("etclink -> /etc"), "{bad}: {e}");
    }
    let p = dir.join("kiln.toml");
    let e = Spec::parse(
        &p,
        &format!(
            "{MIN}[[debs]]\npath = \"etclink/x.deb\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap_err();
    assert!(e.to_string().contains("debs[0].path"), "{e}");
    assert_eq!((e.line, e.column), (5, 8), "{e}");
}

const REPO: &str = "[[repositories]]\nurl = \"http://mirror.invalid/debian/\"\nsuites = [\"bookworm\"]\ncomponents = [\"main\"]\nkeyring = \"/usr/share/keyrings/debian-archive-keyring.gpg\"\n";

#[test]
fn packages_repositories_accounts_and_cas() {
    let d = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(d.path()).unwrap();
    let text = format!(
        "{MIN}{REPO}[packages]\ninclude = [\"python3-flask\", \"libexpat1=2.5.0-1+deb12u1\"]\nexclude = [\"perl\"]\n\
         [[accounts]]\nname = \"app\"\nuid = 10001\ngid = 10001\nhome = \"/home/app/\"\n\
         [[ca_certificates]]\nsrc = \"certs/ca.crt\"\n"
    );
    let s = Spec::parse(&dir.join("kiln.toml"), &text).unwrap();
    assert_eq!(s.repositories[0].url, "http://mirror.invalid/debian");
    let p = s.packages.as_ref().unwrap();
    assert_eq!(p.include.len(), 2);
    assert_eq!(p.exclude, ["perl"]);
    assert!(!p.recommends);
    assert!(s.system.merged_usr);
    assert_eq!(s.system.accounts[0].home.as_deref(), Some("/home/app"));
    assert_eq!(s.system.accounts[0].shell, None);
    assert_eq!(s.system.ca_certificates[0].src, dir.join("certs/ca.crt"));
    // Without [packages]: no merged /usr.
    assert!(!parse(MIN).unwrap().system.merged_usr);
}

#[test]
fn repositories_from_apt_sources() {
    let d = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(d.path()).unwrap();
    std::fs::write(
        dir.join("debian.sources"),
        "Types: deb\nURIs: http://a.invalid/debian/\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\n\
         Types: deb-src\nURIs: http://b.invalid/debian\nSuites: x\nComponents: main\nSigned-By: /k.gpg\n",
    )
    .unwrap();
    let pk = "[packages]\ninclude = [\"curl\"]\n";
    let text = format!("{MIN}[[repositories]]\napt_sources = \"debian.sources\"\n{pk}");
    let s = Spec::parse(&dir.join("kiln.toml"), &text).unwrap();
    assert_eq!(s.repositories.len(), 1);
    assert_eq!(s.repositories[0].url, "http://a.invalid/debian");
    assert_eq!(s.repositories[0].suites, ["bookworm", "bookworm-updates"]);
    for (extra, want) in [
        ("apt_sources = \"missing.sources\"\n", "cannot read"),
        (
            "apt_sources = \"debian.sources\"\nurl = \"http://x.invalid\"\n",
            "stands alone",
        ),
        (
            "url = \"http://x.invalid\"\n",
            "needs url, suites, components and keyring",
        ),
    ] {
        let text = format!("{MIN}[[repositories]]\n{extra}{pk}");
        let e = Spec::parse(&dir.join("kiln.toml"), &text).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

#[test]
fn package_table_errors_are_located() {
    let pk = "[packages]\ninclude = [\"curl\"]\n";
    let cases: Vec<(String, &str, usize, usize)> = vec![
        (pk.into(), "needs at least one [[repositories]]", 4, 1),
        (REPO.into(), "without [packages]", 4, 1),
        (
            format!("{REPO}[packages]\ninclude = [\"Bad_Name\"]\n"),
            "not a Debian package name",
            10,
            12,
        ),
        (
            format!("{REPO}[packages]\ninclude = [\"a1=\"]\n"),
            "not a Debian version",
            10,
            12,
        ),
        (
            format!("{REPO}[packages]\ninclude = [\"curl\", \"curl=1\"]\n"),
            "listed twice",
            10,
            20,
        ),
        (
            format!("{REPO}[packages]\ninclude = [\"curl\"]\nexclude = [\"curl\"]\n"),
            "also in include",
            11,
            12,
        ),
        (
            format!("{REPO}[packages]\nincluded = []\n"),
            "unknown field",
            10,
            1,
        ),
        (
            REPO.replace("http://mirror.invalid/debian/", "ftp://x") + pk,
            "http:// or https://",
            5,
            7,
        ),
        (
            REPO.replace("[\"main\"]", "[\"../x\"]") + pk,
            "component",
            5,
            7,
        ),
        (
            format!("{REPO}{pk}[[accounts]]\nname = \"Root!\"\nuid = 5\ngid = 5\n"),
            "accounts[0].name",
            12,
            8,
        ),
        (
            format!("{REPO}{pk}[[accounts]]\nname = \"a\"\nuid = 0\ngid = 0\n"),
            "root",
            13,
            7,
        ),
        (
            format!(
                "{REPO}{pk}[[accounts]]\nname = \"a\"\nuid = 5\ngid = 5\n[[accounts]]\nname = \"b\"\nuid = 5\ngid = 6\n"
            ),
            "is also a's",
            17,
            7,
        ),
        (
            format!("{REPO}{pk}[[accounts]]\nname = \"a\"\nuid = -1\ngid = 5\n"),
            "",
            13,
            7,
        ),
        (
            format!("{REPO}{pk}[[accounts]]\nname = \"a\"\nuid = 5\ngid = 5\nhome = \"rel\"\n"),
            "accounts[0].home",
            15,
            8,
        ),
        (
            format!("{REPO}{pk}[[ca_certificates]]\nsrc = \"../ca.crt\"\n"),
            "ca_certificates[0].src",
            12,
            7,
        ),
    ];
    for (extra, want, line, col) in cases {
        let e = parse(&format!("{MIN}{extra}")).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert_eq!((e.line, e.column), (line, col), "{want}: {e}");
    }
}

#[test]
fn dst_normalisation() {
    assert_eq!(normalize_dst("/a//b/./c").unwrap(), "/a/b/c");
    assert_eq!(normalize_dst("/www/").unwrap(), "/www/");
    assert!(normalize_dst("a").is_err());
    assert!(normalize_dst("/a/../../b").is_err());
}

proptest! {
    #[test]
    fn spec_parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn normalized_dst_never_escapes(s in "(/|\\.\\.|\\.|[a-z]{1,3}){0,12}") {
        if let Ok(n) = normalize_dst(&s) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.split('/').any(|c| c == ".." || c == "."));
        }
    }

    #[test]
    fn mode_roundtrip(m in 0u32..=0o7777) {
        prop_assert_eq!(parse_mode(&format!("{m:04o}")).unwrap(), m);
    }
}
