//! Signing keys: ECDSA P-256 with SHA-256 (cosign's default) and Ed25519.
//!
//! Formats:
//! - public keys: PEM `PUBLIC KEY` (PKIX / SubjectPublicKeyInfo DER);
//! - private keys: PEM `PRIVATE KEY` (unencrypted PKCS#8) or cosign's
//!   `ENCRYPTED SIGSTORE PRIVATE KEY` (also read: `ENCRYPTED COSIGN PRIVATE KEY`), whose body is
//!   JSON holding scrypt parameters, a `nacl/secretbox` nonce and the sealed PKCS#8 DER.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::TrustError;
use crate::secretbox;

/// PEM label of cosign (v2+) encrypted private keys.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label of older cosign encrypted private keys (read only).
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// DER prefix of an RFC 8410 Ed25519 PKCS#8 v1 key; the 32-byte seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_LABEL: &str = "PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// Largest scrypt `N` accepted when reading an encrypted key (bounds memory and time).
pub const MAX_SCRYPT_LOG_N: u8 = 20;
const MAX_SCRYPT_R: u32 = 32;
const MAX_SCRYPT_P: u32 = 16;
/// Upper bound on scrypt memory (128 * N * r bytes) when reading a key: 1 GiB.
const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

/// Signature algorithm of a key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    #[default]
    EcdsaP256Sha256,
    /// Ed25519 (RFC 8032), raw 64-byte signatures.
    Ed25519,
}

impl KeyAlgorithm {
    /// The securesystemslib / TUF scheme name.
    pub fn scheme(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => "ecdsa-sha2-nistp256",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// scrypt parameters for encrypting a private key; the default is cosign's (N = 2^16, r = 8, p = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScryptParams {
    /// log2(N).
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl Default for ScryptParams {
    fn default() -> Self {
        ScryptParams {
            log_n: 16,
            r: 8,
            p: 1,
        }
    }
}

impl ScryptParams {
    fn to_scrypt(self) -> Result<scrypt::Params, TrustError> {
        scrypt::Params::new(self.log_n, self.r, self.p)
            .map_err(|e| TrustError::EncryptedKey(format!("invalid scrypt parameters: {e}")))
    }
}

enum SecretInner {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A private signing key. Its `Debug` output never includes secret material.
pub struct PrivateKey {
    inner: SecretInner,
}

#[derive(Clone)]
enum PublicInner {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public verification key, identified by its canonical PKIX (SPKI) DER encoding.
#[derive(Clone)]
pub struct PublicKey {
    inner: PublicInner,
    spki_der: Vec<u8>,
}

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, TrustError> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut buf[..]).map_err(|e| TrustError::Rng(e.to_string()))?;
    Ok(buf)
}

fn pem_decode(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), TrustError> {
    let trimmed = text.trim();
    if !trimmed.starts_with("-----BEGIN ") {
        return Err(TrustError::NotPem {
            found: not_pem(trimmed),
        });
    }
    let (label, der) =
        pem_rfc7468::decode_vec(trimmed.as_bytes()).map_err(|e| TrustError::Pem(e.to_string()))?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}

/// What a file that should hold a PEM key holds instead (never its content:
/// a wrong path could name a secret).
fn not_pem(trimmed: &str) -> String {
    if trimmed.is_empty() {
        "an empty file".into()
    } else if trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        format!(
            "binary data ({} bytes; a DER key must be converted to PEM)",
            trimmed.len()
        )
    } else if trimmed.contains("-----BEGIN ") {
        "text before the \"-----BEGIN\" line".into()
    } else {
        format!(
            "text without a \"-----BEGIN\" line ({} lines)",
            trimmed.lines().count()
        )
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    // Encoding only fails for an invalid label or a length overflow, neither possible here.
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .unwrap_or_else(|e| unreachable!("PEM encoding of a fixed label failed: {e}"))
}

fn b64_field(field: &str, value: &str) -> Result<Vec<u8>, TrustError> {
    crate::dsse::decode_b64(value).map_err(|source| TrustError::Base64 {
        field: field.to_owned(),
        source,
    })
}

#[derive(Serialize, Deserialize)]
struct EncryptedKeyJson {
    kdf: KdfJson,
    cipher: CipherJson,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct KdfJson {
    name: String,
    params: ScryptJson,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptJson {
    #[serde(rename = "N", alias = "n")]
    n: u64,
    #[serde(alias = "R")]
    r: u64,
    #[serde(alias = "P")]
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct CipherJson {
    name: String,
    nonce: String,
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    params: ScryptParams,
) -> Result<Zeroizing<[u8; 32]>, TrustError> {
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params.to_scrypt()?, &mut key[..])
        .map_err(|e| TrustError::EncryptedKey(format!("scrypt failed: {e}")))?;
    Ok(key)
}

/// Validates scrypt parameters read from a file against the memory/time caps.
fn checked_params(p: &ScryptJson) -> Result<ScryptParams, TrustError> {
    let err = |m: String| Err(TrustError::EncryptedKey(m));
    if p.n < 2 || !p.n.is_power_of_two() {
        return err(format!("scrypt N = {} is not a power of two >= 2", p.n));
    }
    let log_n = p.n.trailing_zeros();
    if log_n > u32::from(MAX_SCRYPT_LOG_N) {
        return err(format!(
            "scrypt N = {} exceeds the limit 2^{MAX_SCRYPT_LOG_N}",
            p.n
        ));
    }
    if p.r == 0 || p.r > u64::from(MAX_SCRYPT_R) {
        return err(format!("scrypt r = {} outside 1..={MAX_SCRYPT_R}", p.r));
    }
    if p.p == 0 || p.p > u64::from(MAX_SCRYPT_P) {
        return err(format!("scrypt p = {} outside 1..={MAX_SCRYPT_P}", p.p));
    }
    if 128 * p.n * p.r > MAX_SCRYPT_MEMORY {
        return err(format!(
            "scrypt N = {}, r = {} would need more than {MAX_SCRYPT_MEMORY} bytes",
            p.n, p.r
        ));
    }
    // Bounds checked above: log_n <= 20, r <= 32, p <= 16.
    Ok(ScryptParams {
        log_n: log_n as u8,
        r: p.r as u32,
        p: p.p as u32,
    })
}

impl PrivateKey {
    /// Generates a new key from the operating system's random number generator.
    pub fn generate(alg: KeyAlgorithm) -> Result<PrivateKey, TrustError> {
        let inner = match alg {
            KeyAlgorithm::Ed25519 => {
                let seed = random_bytes::<32>()?;
                SecretInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            KeyAlgorithm::EcdsaP256Sha256 => {
                // Rejection sampling: retry in the (negligible) case of 0 or >= the group order.
                let mut attempts = 0;
                loop {
                    let bytes = random_bytes::<32>()?;
                    if let Ok(sk) = p256::ecdsa::SigningKey::from_slice(&bytes[..]) {
                        break SecretInner::P256(sk);
                    }
                    attempts += 1;
                    if attempts > 64 {
                        return Err(TrustError::Rng(
                            "could not sample a valid P-256 scalar".into(),
                        ));
                    }
                }
            }
        };
        Ok(PrivateKey { inner })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            SecretInner::P256(_) => KeyAlgorithm::EcdsaP256Sha256,
            SecretInner::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match &self.inner {
            SecretInner::P256(sk) => PublicKey::from_inner(PublicInner::P256(*sk.verifying_key())),
            SecretInner::Ed25519(sk) => {
                PublicKey::from_inner(PublicInner::Ed25519(sk.verifying_key()))
            }
        }
    }

    /// Signs `msg`. ECDSA: SHA-256 digest, ASN.1 DER signature (RFC 6979 nonces).
    /// Ed25519: the raw 64-byte signature.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match &self.inner {
            SecretInner::P256(sk) => {
                let sig: p256::ecdsa::Signature = sk.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
            SecretInner::Ed25519(sk) => {
                let sig: ed25519_dalek::Signature = sk.sign(msg);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// Unencrypted PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        match &self.inner {
            SecretInner::P256(sk) => {
                // Encoding an in-memory valid key cannot fail.
                let doc = sk
                    .to_pkcs8_der()
                    .unwrap_or_else(|e| unreachable!("PKCS#8 encoding failed: {e}"));
                Zeroizing::new(doc.as_bytes().to_vec())
            }
            SecretInner::Ed25519(sk) => {
                // RFC 8410 PKCS#8 v1 (no public key), as written by Go (cosign) and OpenSSL;
                // some readers reject the v2 form.
                let mut der = Zeroizing::new(Vec::with_capacity(48));
                der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
                der.extend_from_slice(&sk.to_bytes()[..]);
                der
            }
        }
    }

    /// Parses PKCS#8 DER holding a P-256 or Ed25519 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, TrustError> {
        if let Ok(sk) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(PrivateKey {
                inner: SecretInner::P256(sk),
            });
        }
        match ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            Ok(sk) => Ok(PrivateKey {
                inner: SecretInner::Ed25519(sk),
            }),
            Err(e) => Err(TrustError::Key(format!(
                "PKCS#8 private key is neither ECDSA P-256 nor Ed25519 ({e})"
            ))),
        }
    }

    /// Unencrypted PKCS#8 PEM (`PRIVATE KEY`). Prefer [`PrivateKey::to_encrypted_pem`].
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_encode(PKCS8_LABEL, &self.to_pkcs8_der()))
    }

    /// cosign-format encrypted key (`ENCRYPTED SIGSTORE PRIVATE KEY`) with cosign's default
    /// scrypt parameters (N = 65536, r = 8, p = 1).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, TrustError> {
        self.to_encrypted_pem_with_params(password, ScryptParams::default())
    }

    /// Like [`PrivateKey::to_encrypted_pem`] with explicit scrypt parameters.
    pub fn to_encrypted_pem_with_params(
        &self,
        password: &[u8],
        params: ScryptParams,
    ) -> Result<String, TrustError> {
        let salt = random_bytes::<32>()?;
        let nonce = random_bytes::<{ secretbox::NONCE_LEN }>()?;
        let key = derive_key(password, &salt[..], params)?;
        let sealed = secretbox::seal(&key, &nonce, &self.to_pkcs8_der());
        let json = EncryptedKeyJson {
            kdf: KdfJson {
                name: "scrypt".into(),
                params: ScryptJson {
                    n: 1u64 << params.log_n,
                    r: params.r.into(),
                    p: params.p.into(),
                },
                salt: STANDARD.encode(&salt[..]),
            },
            cipher: CipherJson {
                name: "nacl/secretbox".into(),
                nonce: STANDARD.encode(&nonce[..]),
            },
            ciphertext: STANDARD.encode(&sealed),
        };
        let body = serde_json::to_vec(&json)
            .map_err(|e| TrustError::EncryptedKey(format!("JSON encoding failed: {e}")))?;
        Ok(pem_encode(SIGSTORE_PRIVATE_KEY_LABEL, &body))
    }

    /// Reads a private key from PEM: cosign's encrypted format (`ENCRYPTED SIGSTORE PRIVATE KEY`
    /// or `ENCRYPTED COSIGN PRIVATE KEY`, needs `password`; an empty password is `Some(b"")`)
    /// or unencrypted PKCS#8 (`PRIVATE KEY`, `password` ignored). The scrypt parameters stored
    /// in the file are honoured, up to N = 2^20.
    pub fn from_pem(text: &str, password: Option<&[u8]>) -> Result<PrivateKey, TrustError> {
        let (label, body) = pem_decode(text)?;
        match label.as_str() {
            PKCS8_LABEL => PrivateKey::from_pkcs8_der(&body),
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
                let password = password.ok_or(TrustError::PasswordRequired)?;
                Self::decrypt_cosign(&body, password)
            }
            _ => Err(TrustError::PemLabel {
                found: label,
                expected: "ENCRYPTED SIGSTORE PRIVATE KEY, ENCRYPTED COSIGN PRIVATE KEY or PRIVATE KEY",
            }),
        }
    }

    fn decrypt_cosign(body: &[u8], password: &[u8]) -> Result<PrivateKey, TrustError> {
        let json: EncryptedKeyJson = serde_json::from_slice(body)
            .map_err(|e| TrustError::EncryptedKey(format!("invalid JSON body: {e}")))?;
        if json.kdf.name != "scrypt" {
            return Err(TrustError::EncryptedKey(format!(
                "unsupported kdf {:?} (expected \"scrypt\")",
                json.kdf.name
            )));
        }
        if json.cipher.name != "nacl/secretbox" {
            return Err(TrustError::EncryptedKey(format!(
                "unsupported cipher {:?} (expected \"nacl/secretbox\")",
                json.cipher.name
            )));
        }
        let params = checked_params(&json.kdf.params)?;
        let salt = b64_field("kdf.salt", &json.kdf.salt)?;
        let nonce = b64_field("cipher.nonce", &json.cipher.nonce)?;
        let nonce: [u8; secretbox::NONCE_LEN] = nonce.as_slice().try_into().map_err(|_| {
            TrustError::EncryptedKey(format!(
                "cipher.nonce is {} bytes, expected {}",
                nonce.len(),
                secretbox::NONCE_LEN
            ))
        })?;
        let ciphertext = b64_field("ciphertext", &json.ciphertext)?;
        if ciphertext.len() < 16 {
            return Err(TrustError::EncryptedKey(format!(
                "ciphertext is {} bytes, shorter than the 16-byte authenticator",
                ciphertext.len()
            )));
        }
        let key = derive_key(password, &salt, params)?;
        let der = secretbox::open(&key, &nonce, &ciphertext).ok_or(TrustError::WrongPassword)?;
        PrivateKey::from_pkcs8_der(&der)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("public_key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    fn from_inner(inner: PublicInner) -> PublicKey {
        let doc = match &inner {
            PublicInner::P256(vk) => vk.to_public_key_der(),
            PublicInner::Ed25519(vk) => vk.to_public_key_der(),
        };
        let doc = doc.unwrap_or_else(|e| unreachable!("SPKI encoding failed: {e}"));
        PublicKey {
            inner,
            spki_der: doc.as_bytes().to_vec(),
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            PublicInner::P256(_) => KeyAlgorithm::EcdsaP256Sha256,
            PublicInner::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Parses PKIX / SubjectPublicKeyInfo DER (P-256 or Ed25519).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, TrustError> {
        if let Ok(vk) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(PublicKey::from_inner(PublicInner::P256(vk)));
        }
        match ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            Ok(vk) => Ok(PublicKey::from_inner(PublicInner::Ed25519(vk))),
            Err(e) => Err(TrustError::Key(format!(
                "public key is neither ECDSA P-256 nor Ed25519 SPKI ({e})"
            ))),
        }
    }

    /// Parses PEM `PUBLIC KEY` (PKIX, as written by cosign and OpenSSL).
    pub fn from_pem(text: &str) -> Result<PublicKey, TrustError> {
        let (label, der) = pem_decode(text)?;
        if label != PUBLIC_KEY_LABEL {
            return Err(TrustError::PemLabel {
                found: label,
                expected: "PUBLIC KEY",
            });
        }
        PublicKey::from_spki_der(&der)
    }

    /// PEM `PUBLIC KEY` (PKIX), LF line endings.
    pub fn to_pem(&self) -> String {
        pem_encode(PUBLIC_KEY_LABEL, &self.spki_der)
    }

    /// Canonical SPKI DER (P-256 points uncompressed).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Key id: lowercase hex SHA-256 of the canonical SPKI DER ([`PublicKey::spki_der`]).
    /// Used as the DSSE `keyid` kiln writes and as the identity counted toward thresholds.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// Sigstore bundle `verificationMaterial.publicKey.hint`: base64(SHA-256(SPKI DER)).
    pub fn hint(&self) -> String {
        STANDARD.encode(Sha256::digest(&self.spki_der))
    }

    /// Verifies `sig` over `msg` (ECDSA: DER signature over SHA-256; Ed25519: 64 raw bytes,
    /// strict verification).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), TrustError> {
        match &self.inner {
            PublicInner::P256(vk) => {
                use p256::ecdsa::signature::Verifier;
                let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| {
                    TrustError::MalformedSignature("not an ASN.1 DER ECDSA P-256 signature".into())
                })?;
                vk.verify(msg, &sig).map_err(|_| TrustError::BadSignature)
            }
            PublicInner::Ed25519(vk) => {
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| {
                    TrustError::MalformedSignature(format!(
                        "Ed25519 signature must be 64 bytes, got {}",
                        sig.len()
                    ))
                })?;
                vk.verify_strict(msg, &sig)
                    .map_err(|_| TrustError::BadSignature)
            }
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id())
            .finish()
    }
}

/// Writes a private key PEM to `path` with mode 0600, atomically: a temporary file in the same
/// directory is created with mode 0600, written, fsynced, then moved into place (and the
/// directory fsynced). Refuses to replace an existing file unless `overwrite` is true.
pub fn write_private_key(path: &Path, pem: &str, overwrite: bool) -> Result<(), TrustError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source: std::io::Error| TrustError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("path has no file name")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !overwrite && path.symlink_metadata().is_ok() {
        return Err(TrustError::Exists {
            path: path.to_path_buf(),
        });
    }
    let suffix = hex::encode(&random_bytes::<8>()?[..]);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{suffix}"));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        drop(f);
        if overwrite {
            std::fs::rename(&tmp, path)
        } else {
            // hard_link fails if `path` exists, so a concurrent writer is never clobbered.
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)
        }
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(TrustError::Exists {
                path: path.to_path_buf(),
            });
        }
        return Err(io(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: ScryptParams = ScryptParams {
        log_n: 4,
        r: 8,
        p: 1,
    };

    fn both() -> [PrivateKey; 2] {
        [
            PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap(),
            PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap(),
        ]
    }

    #[test]
    fn sign_verify_and_public_pem() {
        for key in both() {
            let pubk = key.public_key();
            let sig = key.sign(b"msg");
            pubk.verify(b"msg", &sig).unwrap();
            assert!(matches!(
                pubk.verify(b"msg2", &sig),
                Err(TrustError::BadSignature)
            ));
            let pem = pubk.to_pem();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            let back = PublicKey::from_pem(&pem).unwrap();
            assert_eq!(back, pubk);
            assert_eq!(back.algorithm(), key.algorithm());
            assert_eq!(pubk.key_id(), hex::encode(Sha256::digest(pubk.spki_der())));
            assert_eq!(pubk.key_id().len(), 64);
            assert_eq!(STANDARD.decode(pubk.hint()).unwrap().len(), 32);
            assert!(pubk.verify(b"msg", &[1, 2, 3]).is_err());
        }
        let [ec, ed] = both();
        assert!(ec.sign(b"x").len() <= 72 && ec.sign(b"x")[0] == 0x30);
        assert_eq!(ed.sign(b"x").len(), 64);
        assert!(ed.public_key().verify(b"x", &ec.sign(b"x")).is_err());
    }

    #[test]
    fn pkcs8_and_encrypted_round_trip() {
        for key in both() {
            let plain = key.to_pkcs8_pem();
            let back = PrivateKey::from_pem(&plain, None).unwrap();
            assert_eq!(back.public_key(), key.public_key());

            let enc = key.to_encrypted_pem_with_params(b"pw", FAST).unwrap();
            assert!(enc.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
            let back = PrivateKey::from_pem(&enc, Some(b"pw")).unwrap();
            assert_eq!(back.public_key(), key.public_key());
            assert!(matches!(
                PrivateKey::from_pem(&enc, Some(b"nope")),
                Err(TrustError::WrongPassword)
            ));
            assert!(matches!(
                PrivateKey::from_pem(&enc, None),
                Err(TrustError::PasswordRequired)
            ));
            // older label
            let old = enc.replace("SIGSTORE", "COSIGN");
            PrivateKey::from_pem(&old, Some(b"pw")).unwrap();
        }
    }

    #[test]
    fn default_params_are_cosigns() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let pem = key.to_encrypted_pem(b"").unwrap();
        let (_, body) = pem_decode(&pem).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["kdf"]["params"],
            serde_json::json!({"N": 65536, "r": 8, "p": 1})
        );
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        assert_eq!(
            STANDARD
                .decode(v["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            STANDARD
                .decode(v["cipher"]["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            24
        );
        let back = PrivateKey::from_pem(&pem, Some(b"")).unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    fn with_body(f: impl Fn(&mut serde_json::Value)) -> String {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let pem = key.to_encrypted_pem_with_params(b"pw", FAST).unwrap();
        let (_, body) = pem_decode(&pem).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        f(&mut v);
        pem_encode(SIGSTORE_PRIVATE_KEY_LABEL, &serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn malformed_encrypted_keys() {
        type Mutator = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Mutator, &str)> = vec![
            (
                Box::new(|v| v["kdf"]["name"] = "pbkdf2".into()),
                "unsupported kdf",
            ),
            (
                Box::new(|v| v["cipher"]["name"] = "aes".into()),
                "unsupported cipher",
            ),
            (
                Box::new(|v| v["kdf"]["params"]["N"] = 1000.into()),
                "power of two",
            ),
            (
                Box::new(|v| v["kdf"]["params"]["N"] = (1u64 << 21).into()),
                "exceeds the limit",
            ),
            (Box::new(|v| v["kdf"]["params"]["r"] = 0.into()), "scrypt r"),
            (
                Box::new(|v| v["kdf"]["params"]["p"] = 99.into()),
                "scrypt p",
            ),
            (
                Box::new(|v| v["cipher"]["nonce"] = "AAAA".into()),
                "nonce is 3 bytes",
            ),
            (
                Box::new(|v| v["ciphertext"] = "AAAA".into()),
                "shorter than",
            ),
            (
                Box::new(|v| v["ciphertext"] = "%%%".into()),
                "base64 in ciphertext",
            ),
            (
                Box::new(|v| v["kdf"]["salt"] = 5.into()),
                "invalid JSON body",
            ),
        ];
        for (f, want) in cases {
            let pem = with_body(f);
            let err = PrivateKey::from_pem(&pem, Some(b"pw"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "want {want:?}, got {err}");
        }
        for (text, found) in [
            ("not pem", "text without"),
            ("", "an empty file"),
            ("  \n", "an empty file"),
            ("\0\x01\x02abc", "binary data"),
            (
                "Bag Attributes\n-----BEGIN PRIVATE KEY-----\n",
                "text before",
            ),
        ] {
            let e = PrivateKey::from_pem(text, None).unwrap_err();
            assert!(matches!(e, TrustError::NotPem { .. }), "{e}");
            let m = e.to_string();
            assert!(m.contains("not a recognised key"), "{m}");
            assert!(m.contains("PEM") && m.contains(found), "{m}");
            assert!(!m.contains("NUL"), "{m}");
            let e = PublicKey::from_pem(text).unwrap_err().to_string();
            assert!(
                e.contains("not a recognised key") && e.contains(found),
                "{e}"
            );
        }
        // A BEGIN line with a broken body is still reported as bad PEM.
        assert!(matches!(
            PrivateKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
                None
            ),
            Err(TrustError::Pem(_))
        ));
        let pubpem = both()[0].public_key().to_pem();
        assert!(matches!(
            PrivateKey::from_pem(&pubpem, None),
            Err(TrustError::PemLabel { .. })
        ));
        let junk = pem_encode("PRIVATE KEY", b"junk");
        assert!(matches!(
            PrivateKey::from_pem(&junk, None),
            Err(TrustError::Key(_))
        ));
        let junk = pem_encode("PUBLIC KEY", b"junk");
        assert!(matches!(
            PublicKey::from_pem(&junk),
            Err(TrustError::Key(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        for key in both() {
            let dbg = format!("{key:?}");
            assert!(dbg.contains("PrivateKey") && dbg.contains("public_key_id"));
            let der = key.to_pkcs8_der();
            let secret_hex = hex::encode(&der[der.len() - 32..]);
            assert!(!dbg.to_lowercase().contains(&secret_hex[..16]), "{dbg}");
        }
    }

    #[test]
    fn write_private_key_mode_and_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.key");
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let pem = key.to_encrypted_pem_with_params(b"pw", FAST).unwrap();
        write_private_key(&path, &pem, false).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        assert!(matches!(
            write_private_key(&path, "other", false),
            Err(TrustError::Exists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        write_private_key(&path, "other", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temp files left behind
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
