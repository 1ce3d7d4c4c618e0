//! A local signed Debian repository for the CLI tests (kiln-repo's test
//! support: a tiny HTTP server and an rPGP key) serving real `.deb`s made
//! with dpkg-deb; and readers of the `kiln.lock` it is locked into.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo_support::{Answer, Server, Signer, sha256_hex, xz};
use crate::support::*;

/// A package: name, version, Depends, extra files `(path, contents)`.
pub struct Pkg<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub depends: &'a str,
    pub files: &'a [(&'a str, &'a str)],
}

pub fn dpkg_deb(dir: &Path, p: &Pkg<'_>) -> Vec<u8> {
    let root = dir.join(format!("src-{}-{}", p.name, p.version));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: Test <t@test.invalid>\nDescription: test package {}\n",
        p.name, p.version, p.name
    );
    if !p.depends.is_empty() {
        control.push_str(&format!("Depends: {}\n", p.depends));
    }
    fs::write(root.join("DEBIAN/control"), control).unwrap();
    let doc = format!("usr/share/doc/{}/v", p.name);
    for (path, text) in p.files.iter().copied().chain([(doc.as_str(), p.version)]) {
        let f = root.join(path);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, text).unwrap();
    }
    let out = dir.join(format!("{}_{}_all.deb", p.name, p.version));
    let o = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    fs::read(out).unwrap()
}

/// The repository: suite `bookworm`, component `main`, signed by `signer`,
/// serving `pkgs` (replacing what was served before).
pub struct Repo {
    pub server: Server,
    pub signer: Signer,
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// A repository whose key is made from `seed`.
    pub fn new(seed: u64) -> Repo {
        Repo {
            server: Server::start(),
            signer: Signer::new(seed, true),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn publish(&self, pkgs: &[Pkg<'_>]) {
        self.server.clear();
        let mut index = String::new();
        for p in pkgs {
            let deb = dpkg_deb(self.dir.path(), p);
            let filename = format!("pool/main/{}_{}_all.deb", p.name, p.version);
            index.push_str(&format!(
                "Package: {}\nVersion: {}\nArchitecture: all\n{}Priority: optional\nFilename: {filename}\nSize: {}\nSHA256: {}\n\n",
                p.name,
                p.version,
                if p.depends.is_empty() { String::new() } else { format!("Depends: {}\n", p.depends) },
                deb.len(),
                sha256_hex(&deb)
            ));
            self.server.set(&filename, Answer::Body(deb));
        }
        let packages_xz = xz(index.as_bytes());
        let release = format!(
            "Origin: Test\nSuite: bookworm\nCodename: bookworm\nDate: Sat, 01 Mar 2025 00:00:00 UTC\n\
             Acquire-By-Hash: yes\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.xz\n",
            sha256_hex(&packages_xz),
            packages_xz.len()
        );
        self.server.set(
            "dists/bookworm/InRelease",
            Answer::Body(self.signer.clearsign(&release)),
        );
        self.server.set(
            &format!(
                "dists/bookworm/main/binary-amd64/by-hash/SHA256/{}",
                sha256_hex(&packages_xz)
            ),
            Answer::Body(packages_xz),
        );
    }

    pub fn keyring(&self) -> PathBuf {
        let k = self.dir.path().join("keyring.gpg");
        fs::write(&k, self.signer.keyring_binary()).unwrap();
        k
    }
}

pub const PASSWD: &str = "root:*:0:0:root:/root:/bin/sh\n";
pub const GROUP: &str = "root:*:0:\n";

/// base-files and base-passwd, which every resolution adds.
pub fn base<'a>() -> [Pkg<'a>; 2] {
    [
        Pkg {
            name: "base-files",
            version: "12.4",
            depends: "",
            files: &[("etc/os-release", "ID=debian\n")],
        },
        Pkg {
            name: "base-passwd",
            version: "3.6.1",
            depends: "",
            files: &[
                ("usr/share/base-passwd/passwd.master", PASSWD),
                ("usr/share/base-passwd/group.master", GROUP),
            ],
        },
    ]
}

pub fn lock_toml(e: &Env) -> toml::Table {
    toml::from_str(&fs::read_to_string(e.spec_dir().join("kiln.lock")).unwrap()).unwrap()
}

/// `name -> version` of the lock's packages.
pub fn locked(e: &Env) -> Vec<(String, String)> {
    let t = lock_toml(e);
    t["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
