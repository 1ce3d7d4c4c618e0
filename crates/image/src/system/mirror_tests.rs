//! The packages layer of real Debian packages from the machine's mirror
//! (read from `/etc/apt/sources.list.d/*.sources`; no host name here),
//! resolved with kiln-repo, unpacked with the system made, extracted to a
//! directory and checked with Debian's own tools.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_repo::{Options, RepoClient, repositories_from_sources};

use super::*;
use crate::spec::{DebSpec, Loc, Spec};

const PACKAGES: &[&str] = &[
    "python3-flask",
    "ca-certificates",
    "nginx-light",
    "curl",
    "postgresql-client",
    "mawk",
];

fn mirrors() -> Vec<kiln_repo::RepositoryConfig> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/etc/apt/sources.list.d").expect("/etc/apt/sources.list.d") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sources") {
            let text = std::fs::read_to_string(&p).unwrap();
            found.extend(repositories_from_sources(&text).unwrap());
        }
    }
    assert!(
        found
            .iter()
            .any(|r| r.suites.iter().any(|s| s == "bookworm"))
    );
    found
}

/// Write the tree under `root` as an unpacker would (owners left as they are).
fn extract(t: &Tree, root: &Path) {
    for (p, n) in t {
        let dst = root.join(&p[1..]);
        match n.kind {
            EntryType::Dir => {
                std::fs::create_dir_all(&dst).unwrap();
            }
            EntryType::File => {
                std::fs::write(&dst, read_node(p, n, u64::MAX).unwrap()).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(n.mode & 0o7777))
                    .unwrap();
            }
            EntryType::Symlink => {
                std::os::unix::fs::symlink(n.link.as_ref().unwrap(), &dst).unwrap()
            }
            EntryType::Hardlink => {
                std::fs::hard_link(root.join(&n.link.as_ref().unwrap()[1..]), &dst).unwrap()
            }
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

#[test]
#[ignore = "needs the Debian mirror, openssl, and root (chroot)"]
fn a_debian_system_from_the_mirror() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dir = tempfile::tempdir().unwrap();
    let client = RepoClient::new(dir.path().join("cache"), Options::default());
    let repos = mirrors();
    let request = kiln_solve::Request {
        include: PACKAGES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let res = kiln_repo::resolve::resolve(&client, &repos, &request, "amd64", now).unwrap();
    println!("{} packages", res.packages.len());
    // The .debs, from the verified indexes.
    let mut debs = Vec::new();
    let mut indexes = Vec::new();
    for r in &repos {
        indexes.extend(client.fetch_repository(r, "amd64", now).unwrap());
    }
    for (i, lp) in res.packages.iter().enumerate() {
        let (suite, pkg) = indexes
            .iter()
            .find_map(|(s, pkgs)| {
                pkgs.iter()
                    .find(|p| {
                        p.name == lp.name
                            && p.version.as_str() == lp.version
                            && p.architecture == lp.architecture
                    })
                    .map(|p| (s, p))
            })
            .unwrap();
        let path = client.fetch_deb(&suite.base_url, pkg).unwrap();
        debs.push(DebSpec {
            index: i,
            path,
            sha256: lp.sha256.hex(),
            loc: Loc::default(),
            from: None,
            distro: None,
        });
    }
    // A CA and a server certificate it signed.
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(&pki));
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-subj",
        "/CN=kiln internal CA",
        "-days",
        "30",
        "-out",
        "ca.crt",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "srv.key",
        "-subj",
        "/CN=localhost",
        "-out",
        "srv.csr",
    ]);
    ossl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        "srv.crt",
    ]);

    let spec_dir = dir.path().join("spec");
    std::fs::create_dir(&spec_dir).unwrap();
    let spec_path = spec_dir.join("kiln.toml");
    let mut spec = Spec::parse(&spec_path, "[image]\nname = \"sys\"\ntag = \"1\"\n").unwrap();
    spec.debs = debs;
    spec.system = System {
        merged_usr: true,
        accounts: vec![Account {
            name: "app".into(),
            uid: 10001,
            gid: 10001,
            home: Some("/home/app".into()),
            shell: None,
        }],
        ca_certificates: vec![ExtraCa {
            src: pki.join("ca.crt"),
            src_text: "ca.crt".into(),
        }],
    };
    let layer = crate::debs::build(&spec, &Tree::new(), None, &dir.path().join("spool"))
        .unwrap()
        .unwrap();
    let t = &layer.tree;
    // Resolved in the tree (following links, which are absolute in places).
    let empty = Tree::new();
    let fs = Over(t, &empty);
    for p in [
        "/usr/lib/postgresql/15/bin/psql",
        "/usr/sbin/nginx",
        "/usr/bin/python3",
        "/bin/python3",
        "/usr/bin/awk",
        "/etc/os-release",
        "/lib64/ld-linux-x86-64.so.2",
    ] {
        assert!(alternatives::exists(&fs, p).unwrap(), "{p}");
    }
    assert_eq!(t["/bin"].link.as_deref(), Some("usr/bin"));
    assert_eq!(
        t["/usr/bin/awk"].link.as_deref(),
        Some("/etc/alternatives/awk")
    );
    assert_eq!(
        t["/etc/alternatives/awk"].link.as_deref(),
        Some("/usr/bin/mawk")
    );
    for p in &layer.installed {
        if !p.done_by_kiln.is_empty() {
            println!("{}: {:?}", p.name, p.done_by_kiln);
        }
    }
    let by = |n: &str| layer.installed.iter().find(|p| p.name == n).unwrap();
    assert!(
        by("mawk")
            .done_by_kiln
            .iter()
            .any(|n| n.starts_with("kiln: alternatives awk"))
    );
    assert!(by("base-passwd").done_by_kiln[0].contains("app"));
    assert!(by("ca-certificates").done_by_kiln[0].contains("1 from [[ca_certificates]]"));

    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    extract(t, &root);
    let admin = root.join("var/lib/dpkg");
    let audit = run(Command::new("dpkg")
        .arg(format!("--admindir={}", admin.display()))
        .arg("--audit"));
    assert_eq!(audit.trim(), "", "dpkg --audit: {audit}");
    let os = std::fs::read_to_string(root.join("usr/lib/os-release")).unwrap();
    assert!(os.contains("VERSION_CODENAME=bookworm"), "{os}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/bash\n"));
    assert!(passwd.contains("\nwww-data:x:33:33:"));
    assert!(passwd.ends_with("\napp:x:10001:10001::/home/app:/usr/sbin/nologin\n"));
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.ends_with("\napp:x:10001:\n") && group.contains("\nshadow:x:42:\n"));
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
    let pems = std::fs::read_to_string(&bundle)
        .unwrap()
        .matches("BEGIN CERTIFICATE")
        .count();
    assert!(pems > 100, "{pems}");
    // OpenSSL trusts the server certificate through the bundle alone.
    let ok = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&bundle)
        .arg(pki.join("srv.crt")));
    assert!(ok.contains(": OK"), "{ok}");
    // And the image's own programs work: psql, awk through its
    // alternative, and Python's ssl loading the bundle by default.
    let psql = run(Command::new("chroot")
        .arg(&root)
        .args(["/usr/lib/postgresql/15/bin/psql", "--version"]));
    assert!(psql.starts_with("psql (PostgreSQL) 15"), "{psql}");
    let awk = run(Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/awk", "BEGIN { print 6 * 7 }"]));
    assert_eq!(awk.trim(), "42");
    let py = run(Command::new("chroot").arg(&root).args([
        "/usr/bin/python3",
        "-c",
        "import ssl; c = ssl.create_default_context(); print(c.cert_store_stats()['x509_ca'])",
    ]));
    assert!(py.trim().parse::<usize>().unwrap() > 100, "{py}");
}
