//! Interop with independent implementations: OpenSSL, securesystemslib (Python) and a Python
//! implementation of cosign's encrypted key format.
//!
//! Every test needs a tool, so each is `#[ignore]`d; `scripts/test.sh` runs them
//! (`--include-ignored`), where a missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_trust::{Envelope, KeyAlgorithm, PAYLOAD_TYPE_INTOTO, PrivateKey, PublicKey, TrustError};

/// Panics unless `probe` runs and succeeds: the tool the test needs is there.
fn require(what: &str, probe: &mut Command) {
    let ok = probe.output().is_ok_and(|o| o.status.success());
    assert!(ok, "{what} is not available (scripts/install-deps.sh)");
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn require_python_modules(modules: &str) {
    require(
        &format!("python modules {modules}"),
        Command::new(python()).args(["-c", &format!("import {modules}")]),
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    eprintln!(
        "{:?}\n  status {}\n  stdout {}\n  stderr {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[ignore = "needs openssl"]
fn openssl_verifies_kiln_ecdsa() {
    require("openssl", Command::new("openssl").arg("version"));
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
    let pub_pem = dir.path().join("pub.pem");
    let sig_der = dir.path().join("sig.der");
    let payload = dir.path().join("payload");
    let msg = b"{\"critical\":{\"type\":\"cosign container image signature\"}}";
    std::fs::write(&pub_pem, key.public_key().to_pem()).unwrap();
    std::fs::write(&sig_der, key.sign(msg)).unwrap();
    std::fs::write(&payload, msg).unwrap();

    let out = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-in"])
        .arg(&pub_pem));
    assert!(
        out.status.success(),
        "openssl cannot parse kiln's public key"
    );

    let out = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pub_pem)
        .arg("-signature")
        .arg(&sig_der)
        .arg(&payload));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));

    // a tampered payload is rejected by openssl too
    std::fs::write(&payload, b"tampered").unwrap();
    let out = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pub_pem)
        .arg("-signature")
        .arg(&sig_der)
        .arg(&payload));
    assert!(!out.status.success());

    // and kiln reads an OpenSSL-generated key pair and verifies OpenSSL's signature
    let priv_pem = dir.path().join("ossl.key");
    let ossl_pub = dir.path().join("ossl.pub");
    assert!(
        run(Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out"
            ])
            .arg(&priv_pem))
        .status
        .success()
    );
    assert!(
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&priv_pem)
            .arg("-out")
            .arg(&ossl_pub))
        .status
        .success()
    );
    std::fs::write(&payload, msg).unwrap();
    assert!(
        run(Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&priv_pem)
            .arg("-out")
            .arg(&sig_der)
            .arg(&payload))
        .status
        .success()
    );
    let pubk = PublicKey::from_pem(&std::fs::read_to_string(&ossl_pub).unwrap()).unwrap();
    pubk.verify(msg, &std::fs::read(&sig_der).unwrap()).unwrap();
    let privk = PrivateKey::from_pem(&std::fs::read_to_string(&priv_pem).unwrap(), None).unwrap();
    assert_eq!(privk.public_key(), pubk);
}

fn sslib_verify(dir: &Path, env: &Envelope, threshold: usize, keys: &[&PublicKey]) -> Output {
    let env_path = dir.join(format!("env-{}.json", rand_name()));
    std::fs::write(&env_path, env.to_json()).unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(script("interop_sslib.py"))
        .arg("verify")
        .arg(&env_path)
        .arg(threshold.to_string());
    for (i, k) in keys.iter().enumerate() {
        let p = dir.join(format!("k{i}-{}.pem", rand_name()));
        std::fs::write(&p, k.to_pem()).unwrap();
        cmd.arg(p);
    }
    run(&mut cmd)
}

fn rand_name() -> String {
    PrivateKey::generate(KeyAlgorithm::Ed25519)
        .unwrap()
        .public_key()
        .key_id()[..12]
        .to_owned()
}

#[test]
#[ignore = "needs python3 with securesystemslib and cryptography"]
fn securesystemslib_verifies_kiln_dsse() {
    require_python_modules("securesystemslib.dsse, securesystemslib.signer, cryptography");
    let dir = tempfile::tempdir().unwrap();
    let statement = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"00"}}],"predicateType":"https://example.com/p","predicate":{}}"#;
    let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
    let ed = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let ec2 = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
    let (p_ec, p_ed, p_ec2) = (ec.public_key(), ed.public_key(), ec2.public_key());

    for key in [&ec, &ed] {
        let env = Envelope::sign(PAYLOAD_TYPE_INTOTO, statement, &[key]);
        let out = sslib_verify(dir.path(), &env, 1, &[&key.public_key()]);
        assert!(
            out.status.success(),
            "sslib rejected a {} envelope",
            key.algorithm()
        );
        // sslib matched kiln's keyid against its own hex(SHA-256(SPKI DER))
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&key.public_key().key_id()), "{stdout}");
    }

    // 2-of-3: one signature is not enough, for sslib and for kiln
    let one = Envelope::sign(PAYLOAD_TYPE_INTOTO, statement, &[&ec]);
    let out = sslib_verify(dir.path(), &one, 2, &[&p_ec, &p_ed, &p_ec2]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "sslib accepted 1 signature for 2-of-3"
    );
    assert!(matches!(
        one.verify(&[p_ec.clone(), p_ed.clone(), p_ec2.clone()], 2),
        Err(TrustError::Threshold {
            valid: 1,
            required: 2,
            ..
        })
    ));
    // two distinct signers satisfy 2-of-3 for both
    let two = Envelope::sign(PAYLOAD_TYPE_INTOTO, statement, &[&ec, &ed]);
    let out = sslib_verify(dir.path(), &two, 2, &[&p_ec, &p_ed, &p_ec2]);
    assert!(out.status.success());
    two.verify(&[p_ec.clone(), p_ed.clone(), p_ec2.clone()], 2)
        .unwrap();
    // a flipped payload byte fails in sslib too
    let mut bad = two.clone();
    bad.payload[5] ^= 1;
    let out = sslib_verify(dir.path(), &bad, 1, &[&p_ec, &p_ed]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
#[ignore = "needs python3 with securesystemslib and cryptography"]
fn kiln_verifies_securesystemslib_dsse() {
    require_python_modules("securesystemslib.dsse, securesystemslib.signer, cryptography");
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload");
    std::fs::write(&payload, b"hello from python").unwrap();
    for alg in ["ecdsa", "ed25519"] {
        let env_path = dir.path().join(format!("{alg}.json"));
        let pub_path = dir.path().join(format!("{alg}.pem"));
        let out = run(Command::new(python())
            .arg(script("interop_sslib.py"))
            .args(["sign", alg])
            .arg(&payload)
            .arg("text/plain")
            .arg(&env_path)
            .arg(&pub_path));
        assert!(out.status.success());
        let env = Envelope::from_json(&std::fs::read(&env_path).unwrap()).unwrap();
        assert_eq!(env.payload, b"hello from python");
        let pubk = PublicKey::from_pem(&std::fs::read_to_string(&pub_path).unwrap()).unwrap();
        // sslib's keyid differs from kiln's; kiln still finds the key
        let v = env.verify(std::slice::from_ref(&pubk), 1).unwrap();
        assert_eq!(v.key_ids, vec![pubk.key_id()]);
    }
}

#[test]
#[ignore = "needs python3 with pynacl and cryptography"]
fn cosign_key_format_interop() {
    require_python_modules("nacl.secret, cryptography");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Python writes (cosign default N = 2^16 for ECDSA; a small N for Ed25519 to also check
    // that kiln honours the N stored in the file), kiln reads and signs.
    for (alg, log_n) in [("ecdsa", "16"), ("ed25519", "10")] {
        let key_path = d.join(format!("py-{alg}.key"));
        let pub_path = d.join(format!("py-{alg}.pub"));
        let out = run(Command::new(python())
            .arg(script("cosign_key.py"))
            .args(["write", "s3cret"])
            .arg(&key_path)
            .arg(&pub_path)
            .args([alg, log_n]));
        assert!(out.status.success());
        let pem = std::fs::read_to_string(&key_path).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        assert!(matches!(
            PrivateKey::from_pem(&pem, Some(b"wrong")),
            Err(TrustError::WrongPassword)
        ));
        let key = PrivateKey::from_pem(&pem, Some(b"s3cret")).unwrap();
        let pubk = PublicKey::from_pem(&std::fs::read_to_string(&pub_path).unwrap()).unwrap();
        assert_eq!(key.public_key(), pubk);
        pubk.verify(b"msg", &key.sign(b"msg")).unwrap();
    }

    // kiln writes (cosign defaults), Python decrypts and signs, kiln verifies.
    for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
        let key = PrivateKey::generate(alg).unwrap();
        let key_path = d.join(format!("kiln-{alg}.key"));
        kiln_trust::write_private_key(&key_path, &key.to_encrypted_pem(b"pw").unwrap(), false)
            .unwrap();
        let msg = d.join("msg");
        std::fs::write(&msg, b"signed by python with a kiln key").unwrap();
        let pub_out = d.join(format!("kiln-{alg}.pub"));
        let sig_out = d.join(format!("kiln-{alg}.sig"));
        let out = run(Command::new(python())
            .arg(script("cosign_key.py"))
            .args(["read", "pw"])
            .arg(&key_path)
            .arg(&pub_out)
            .arg(&msg)
            .arg(&sig_out));
        assert!(out.status.success());
        let pubk = PublicKey::from_pem(&std::fs::read_to_string(&pub_out).unwrap()).unwrap();
        assert_eq!(pubk, key.public_key());
        pubk.verify(
            b"signed by python with a kiln key",
            &std::fs::read(&sig_out).unwrap(),
        )
        .unwrap();
        // and a wrong password is detected by the Python side
        let out = run(Command::new(python())
            .arg(script("cosign_key.py"))
            .args(["read", "nope"])
            .arg(&key_path)
            .arg(&pub_out)
            .arg(&msg)
            .arg(&sig_out));
        assert_eq!(out.status.code(), Some(4));
    }
}
