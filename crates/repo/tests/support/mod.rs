//! Test support: a local HTTP server with scripted answers, OpenPGP keys
//! made with rPGP, and a fixture repository that the test signs itself.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, DetachedSignature, EncryptionCaps, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{Password, Timestamp};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

/// How the server answers one path.
#[derive(Clone)]
pub enum Answer {
    Body(Vec<u8>),
    /// Announce the full length, send `sent` bytes, then close.
    CutShort {
        body: Vec<u8>,
        sent: usize,
    },
    /// Announce the full length, send `sent` bytes, then go silent.
    Stall {
        body: Vec<u8>,
        sent: usize,
    },
    /// `503 Service Unavailable` the next `times` requests, then `then`.
    Busy {
        times: usize,
        then: Box<Answer>,
    },
}

#[derive(Clone, Default)]
pub struct Server {
    pub routes: Arc<Mutex<HashMap<String, Answer>>>,
    pub hits: Arc<Mutex<Vec<String>>>,
    pub base: String,
}

impl Server {
    pub fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/debian", l.local_addr().unwrap());
        let s = Server {
            base,
            ..Server::default()
        };
        let s2 = s.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let s3 = s2.clone();
                std::thread::spawn(move || s3.serve(conn));
            }
        });
        s
    }

    pub fn set(&self, path: &str, a: Answer) {
        self.routes
            .lock()
            .unwrap()
            .insert(format!("/debian/{path}"), a);
    }

    pub fn remove(&self, path: &str) {
        self.routes
            .lock()
            .unwrap()
            .remove(&format!("/debian/{path}"));
    }

    pub fn clear(&self) {
        self.routes.lock().unwrap().clear();
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    fn serve(&self, mut conn: TcpStream) {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut first = String::new();
        if r.read_line(&mut first).is_err() {
            return;
        }
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                break;
            }
        }
        let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
        self.hits.lock().unwrap().push(path.clone());
        let answer = {
            let mut routes = self.routes.lock().unwrap();
            match routes.get(&path).cloned() {
                Some(Answer::Busy { times: 0, then }) => {
                    routes.insert(path.clone(), (*then).clone());
                    Some(*then)
                }
                Some(Answer::Busy { times, then }) => {
                    let left = Answer::Busy {
                        times: times - 1,
                        then,
                    };
                    routes.insert(path.clone(), left.clone());
                    Some(left)
                }
                other => other,
            }
        };
        let head = |len: usize| {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
        };
        match answer {
            Some(Answer::Busy { .. }) => {
                let _ = conn.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            None => {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            Some(Answer::Body(b)) => {
                let _ = conn.write_all(head(b.len()).as_bytes());
                let _ = conn.write_all(&b);
            }
            Some(Answer::CutShort { body, sent }) => {
                let _ = conn.write_all(head(body.len()).as_bytes());
                let _ = conn.write_all(&body[..sent]);
            }
            Some(Answer::Stall { body, sent }) => {
                let _ = conn.write_all(head(body.len()).as_bytes());
                let _ = conn.write_all(&body[..sent]);
                let _ = conn.flush();
                std::thread::sleep(Duration::from_secs(20));
            }
        }
        let _ = conn.flush();
    }
}

/// A signing identity: a certify-only primary key with a signing subkey
/// (as Debian's archive keys are used), or a primary key that signs.
pub struct Signer {
    pub secret: SignedSecretKey,
    pub public: SignedPublicKey,
    pub subkey: bool,
}

impl Signer {
    pub fn new(seed: u64, subkey: bool) -> Signer {
        let mut rng = StdRng::seed_from_u64(seed);
        // A fixed creation time: the fingerprint hashes it, so a key made
        // from the same seed a second later would otherwise be another key.
        let created = Timestamp::from_secs(KEY_CREATED);
        let mut p = SecretKeyParamsBuilder::default();
        p.key_type(KeyType::Ed25519Legacy)
            .created_at(created)
            .can_certify(true)
            .can_sign(!subkey)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(format!("Test Archive Key {seed} <archive@test.invalid>"));
        if subkey {
            let mut s = SubkeyParamsBuilder::default();
            s.key_type(KeyType::Ed25519Legacy)
                .created_at(created)
                .can_sign(true)
                .can_encrypt(EncryptionCaps::None)
                .can_authenticate(false);
            p.subkeys(vec![s.build().unwrap()]);
        }
        let secret = p.build().unwrap().generate(&mut rng).unwrap();
        let public = secret.to_public_key();
        Signer {
            secret,
            public,
            subkey,
        }
    }

    pub fn keyring_binary(&self) -> Vec<u8> {
        self.public.to_bytes().unwrap()
    }

    pub fn keyring_armored(&self) -> Vec<u8> {
        self.public
            .to_armored_bytes(ArmorOptions::default())
            .unwrap()
    }

    /// Uppercase hex fingerprint of the primary key.
    pub fn fingerprint(&self) -> String {
        use pgp::types::KeyDetails;
        format!("{:X}", self.public.primary_key.fingerprint())
    }

    pub fn clearsign(&self, text: &str) -> Vec<u8> {
        let rng = StdRng::seed_from_u64(7);
        let pw = Password::empty();
        let msg = if self.subkey {
            CleartextSignedMessage::sign(rng, text, &self.secret.secret_subkeys[0].key, &pw)
        } else {
            CleartextSignedMessage::sign(rng, text, &self.secret.primary_key, &pw)
        }
        .unwrap();
        msg.to_armored_bytes(ArmorOptions::default()).unwrap()
    }

    pub fn detach_sign(&self, data: &[u8]) -> Vec<u8> {
        let rng = StdRng::seed_from_u64(8);
        let pw = Password::empty();
        let sig = if self.subkey {
            DetachedSignature::sign_binary_data(
                rng,
                &self.secret.secret_subkeys[0].key,
                &pw,
                HashAlgorithm::Sha256,
                data,
            )
        } else {
            DetachedSignature::sign_binary_data(
                rng,
                &self.secret.primary_key,
                &pw,
                HashAlgorithm::Sha256,
                data,
            )
        }
        .unwrap();
        sig.to_armored_bytes(ArmorOptions::default()).unwrap()
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn xz(b: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// 2026-07-11 10:16:37 UTC, the fixture Release's Date.
/// When every test key was made (2025-01-01), before any date the tests use.
pub const KEY_CREATED: u32 = 1_735_689_600;
pub const DATE: u64 = 1_783_764_997;
pub const DATE_TEXT: &str = "Sat, 11 Jul 2026 10:16:37 UTC";
pub const VALID_UNTIL_TEXT: &str = "Sat, 18 Jul 2026 10:16:37 UTC";
/// An hour after DATE: inside the validity window.
pub const NOW: u64 = DATE + 3600;

/// The fixture repository: one suite `bookworm`, component `main`, two
/// packages (one with a hostile Filename), their `.deb` bodies.
pub struct Fixture {
    pub deb: Vec<u8>,
    pub packages: String,
    pub packages_xz: Vec<u8>,
}

impl Fixture {
    pub fn new(evil_filename: &str) -> Fixture {
        let deb = b"!<arch>\ndebian-binary   fixture bytes of a package".repeat(50);
        let packages = format!(
            "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nMulti-Arch: foreign\n\
             Depends: libc6 (>= 2.34), base-files | base-passwd\nPriority: optional\n\
             Filename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSize: {}\nSHA256: {}\n\n\
             Package: evil\nVersion: 1\nArchitecture: all\nFilename: {evil_filename}\nSize: {}\nSHA256: {}\n",
            deb.len(),
            sha256_hex(&deb),
            deb.len(),
            sha256_hex(&deb),
        );
        let packages_xz = xz(packages.as_bytes());
        Fixture {
            deb,
            packages,
            packages_xz,
        }
    }

    /// The Release text; `extra` lines go before the SHA256 list, and
    /// `xz_digest` overrides the listed digest of Packages.xz.
    pub fn release(
        &self,
        suite: &str,
        valid_until: Option<&str>,
        xz_digest: Option<&str>,
    ) -> String {
        let mut r = format!(
            "Origin: Test\nLabel: Test\nSuite: {suite}\nCodename: {suite}\nDate: {DATE_TEXT}\n"
        );
        if let Some(v) = valid_until {
            r.push_str(&format!("Valid-Until: {v}\n"));
        }
        r.push_str("Acquire-By-Hash: yes\nArchitectures: amd64\nComponents: main\nSHA256:\n");
        r.push_str(&format!(
            " {} {} main/binary-amd64/Packages.xz\n",
            xz_digest.map_or_else(|| sha256_hex(&self.packages_xz), str::to_string),
            self.packages_xz.len()
        ));
        r.push_str(&format!(
            " {} {} main/binary-amd64/Packages\n",
            sha256_hex(self.packages.as_bytes()),
            self.packages.len()
        ));
        r
    }

    /// Serve the repository for `suite`, signed by `signer`: InRelease,
    /// Packages.xz by hash only, and the hello package.
    pub fn serve(&self, server: &Server, suite: &str, release: &str, signer: &Signer) {
        server.set(
            &format!("dists/{suite}/InRelease"),
            Answer::Body(signer.clearsign(release)),
        );
        server.set(
            &format!(
                "dists/{suite}/main/binary-amd64/by-hash/SHA256/{}",
                sha256_hex(&self.packages_xz)
            ),
            Answer::Body(self.packages_xz.clone()),
        );
        server.set(
            "pool/main/h/hello/hello_2.10-3_amd64.deb",
            Answer::Body(self.deb.clone()),
        );
    }
}
