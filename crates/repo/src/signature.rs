//! OpenPGP: the keyring a repository is trusted through, and verification
//! of `InRelease` (cleartext-signed) and `Release` + `Release.gpg`
//! (detached), with rPGP (pure Rust).
//!
//! As apt (through gpgv) decides: a signature by a key in the keyring that
//! does not verify fails the whole file; signatures by keys not in the
//! keyring are ignored; at least one good signature by a usable keyring key
//! is required. A key is usable when it has a valid self-signature (a
//! subkey: a valid binding signature that allows signing), is not revoked,
//! and has not expired at the injected time. Signatures over MD5, SHA-1 or
//! RIPEMD-160 never count. The text that is parsed afterwards is exactly the
//! signed text (rPGP refuses data before or after the signed block).

use std::io::Cursor;
use std::path::Path;

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{self, Signature, SignatureType};
use pgp::types::{Fingerprint, KeyDetails, KeyId, Tag};

use crate::error::RepoError;

/// The largest keyring file read.
pub const MAX_KEYRING: u64 = 16 << 20;

/// Which key made the accepted signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// Uppercase hex fingerprint of the key (or subkey) that signed.
    pub key: String,
    /// Uppercase hex fingerprint of its certificate's primary key.
    pub primary: String,
}

#[derive(Debug, Clone)]
enum Material {
    Primary(packet::PublicKey),
    Sub(packet::PublicSubkey),
}

#[derive(Debug, Clone)]
struct UsableKey {
    material: Material,
    fingerprint: Fingerprint,
    key_id: KeyId,
    primary: String,
    /// Unix seconds after which the key is expired.
    expires: Option<u64>,
}

/// The keys a repository's indexes must be signed with.
#[derive(Debug, Clone)]
pub struct Keyring {
    source: String,
    keys: Vec<UsableKey>,
    certificates: Vec<String>,
}

fn hex(f: &Fingerprint) -> String {
    format!("{f:X}")
}

fn expiry(created: u32, sig: &Signature) -> Option<u64> {
    match sig.key_expiration_time().map(|d| d.as_secs()) {
        None | Some(0) => None,
        Some(d) => Some(u64::from(created) + u64::from(d)),
    }
}

impl Keyring {
    /// Read a keyring file: binary OpenPGP certificates (as in
    /// `/usr/share/keyrings/*.gpg`) or ASCII-armored ones.
    pub fn load(path: &Path) -> Result<Keyring, RepoError> {
        let bytes =
            kiln_oci::untrusted::read_capped(path, MAX_KEYRING, kiln_oci::untrusted::Follow::Yes)
                .map_err(|e| RepoError::Keyring {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Keyring::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parse keyring bytes; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Keyring, RepoError> {
        let bad = |reason: String| RepoError::Keyring {
            path: source.into(),
            reason,
        };
        let armored = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN PGP"));
        let certs: Vec<SignedPublicKey> = if armored {
            let (it, _) = SignedPublicKey::from_armor_many(Cursor::new(bytes))
                .map_err(|e| bad(format!("not an OpenPGP keyring: {e}")))?;
            it.collect::<Result<_, _>>()
        } else {
            SignedPublicKey::from_bytes_many(Cursor::new(bytes))
                .map_err(|e| bad(format!("not an OpenPGP keyring: {e}")))?
                .collect::<Result<_, _>>()
        }
        .map_err(|e| bad(format!("not an OpenPGP keyring: {e}")))?;
        if certs.is_empty() {
            return Err(bad("holds no OpenPGP certificates".into()));
        }
        let mut keys = Vec::new();
        let mut certificates = Vec::new();
        for cert in &certs {
            let pk = &cert.primary_key;
            let primary = hex(&pk.fingerprint());
            certificates.push(primary.clone());
            let revoked = cert
                .details
                .revocation_signatures
                .iter()
                .any(|s| s.verify_key(pk).is_ok());
            if revoked {
                continue;
            }
            // The newest valid self-certification decides the expiry.
            let mut best: Option<&Signature> = None;
            for u in &cert.details.users {
                for s in &u.signatures {
                    if s.verify_certification(pk, Tag::UserId, &u.id).is_ok()
                        && best.is_none_or(|b| s.created() > b.created())
                    {
                        best = Some(s);
                    }
                }
            }
            for s in &cert.details.direct_signatures {
                if s.verify_key(pk).is_ok() && best.is_none_or(|b| s.created() > b.created()) {
                    best = Some(s);
                }
            }
            let Some(self_sig) = best else { continue };
            let primary_expires = expiry(pk.created_at().as_secs(), self_sig);
            keys.push(UsableKey {
                material: Material::Primary(pk.clone()),
                fingerprint: pk.fingerprint(),
                key_id: pk.legacy_key_id(),
                primary: primary.clone(),
                expires: primary_expires,
            });
            for sub in &cert.public_subkeys {
                let sk = &sub.key;
                let mut binding: Option<&Signature> = None;
                let mut sub_revoked = false;
                for s in &sub.signatures {
                    if s.verify_subkey_binding(pk, sk).is_err() {
                        continue;
                    }
                    match s.typ() {
                        Some(SignatureType::SubkeyRevocation) => sub_revoked = true,
                        Some(SignatureType::SubkeyBinding)
                            if binding.is_none_or(|b| s.created() > b.created()) =>
                        {
                            binding = Some(s);
                        }
                        _ => {}
                    }
                }
                let Some(b) = binding.filter(|b| b.key_flags().sign()) else {
                    continue;
                };
                if sub_revoked {
                    continue;
                }
                let own = expiry(sk.created_at().as_secs(), b);
                keys.push(UsableKey {
                    material: Material::Sub(sk.clone()),
                    fingerprint: sk.fingerprint(),
                    key_id: sk.legacy_key_id(),
                    primary: primary.clone(),
                    expires: match (own, primary_expires) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                });
            }
        }
        Ok(Keyring {
            source: source.to_string(),
            keys,
            certificates,
        })
    }

    /// Uppercase hex fingerprints of the certificates (primary keys) held.
    pub fn certificates(&self) -> &[String] {
        &self.certificates
    }

    /// Where the keyring came from (a path, or a test's label).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Check `sigs` over `data` as apt does (see the module docs).
    fn check(
        &self,
        url: &str,
        sigs: &[Signature],
        data: &[u8],
        now: u64,
    ) -> Result<SignedBy, RepoError> {
        let bad = |reason: String| RepoError::BadSignature {
            url: url.to_string(),
            reason,
        };
        if sigs.is_empty() {
            return Err(bad("no signatures".into()));
        }
        let mut good: Option<SignedBy> = None;
        let mut unknown = Vec::new();
        let mut weak = false;
        let mut expired = Vec::new();
        for sig in sigs {
            let fprs = sig.issuer_fingerprint();
            let ids = sig.issuer_key_id();
            let matching: Vec<&UsableKey> = self
                .keys
                .iter()
                .filter(|k| {
                    fprs.iter().any(|f| **f == k.fingerprint) || ids.iter().any(|i| **i == k.key_id)
                })
                .collect();
            if matching.is_empty() {
                let label = fprs
                    .first()
                    .map(|f| hex(f))
                    .or_else(|| ids.first().map(|i| hex::encode_upper(i.as_ref())))
                    .unwrap_or_else(|| "unnamed".into());
                unknown.push(label);
                continue;
            }
            let mut ok_key = None;
            for k in &matching {
                let r = match &k.material {
                    Material::Primary(p) => sig.verify(p, data),
                    Material::Sub(s) => sig.verify(s, data),
                };
                if r.is_ok() {
                    ok_key = Some(*k);
                    break;
                }
            }
            let Some(k) = ok_key else {
                return Err(bad(format!(
                    "the signature by {} does not verify",
                    hex(&matching[0].fingerprint)
                )));
            };
            if matches!(
                sig.hash_alg(),
                Some(HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160) | None
            ) {
                weak = true;
                continue;
            }
            if k.expires.is_some_and(|e| e <= now) {
                expired.push(hex(&k.fingerprint));
                continue;
            }
            if good.is_none() {
                good = Some(SignedBy {
                    key: hex(&k.fingerprint),
                    primary: k.primary.clone(),
                });
            }
        }
        if let Some(g) = good {
            return Ok(g);
        }
        if !expired.is_empty() {
            return Err(bad(format!(
                "signed only by expired keys ({})",
                expired.join(", ")
            )));
        }
        if weak {
            return Err(bad(
                "signed only with a weak digest (MD5, SHA-1 or RIPEMD-160)".into(),
            ));
        }
        Err(RepoError::UnknownKey {
            url: url.to_string(),
            issuers: unknown.join(", "),
        })
    }

    /// Verify an `InRelease` file fetched from `url`; returns the signed
    /// text (LF line ends) and the key that signed it.
    pub fn verify_inrelease(
        &self,
        url: &str,
        bytes: &[u8],
        now: u64,
    ) -> Result<(String, SignedBy), RepoError> {
        let bad = |reason: String| RepoError::BadSignature {
            url: url.to_string(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let (msg, _) = CleartextSignedMessage::from_string(text)
            .map_err(|e| bad(format!("not a cleartext-signed message: {e}")))?;
        let signed = msg.signed_text();
        let by = self.check(url, msg.signatures(), signed.as_bytes(), now)?;
        let mut plain = signed.replace("\r\n", "\n");
        if !plain.ends_with('\n') {
            plain.push('\n');
        }
        Ok((plain, by))
    }

    /// Verify a `Release` file against its detached `Release.gpg`.
    pub fn verify_detached(
        &self,
        url: &str,
        data: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<SignedBy, RepoError> {
        let sigs: Vec<Signature> = DetachedSignature::from_reader_many(Cursor::new(signature))
            .and_then(|(it, _)| it.map(|r| r.map(|d| d.signature)).collect())
            .map_err(|e| RepoError::BadSignature {
                url: format!("{url}.gpg"),
                reason: format!("not an OpenPGP signature: {e}"),
            })?;
        self.check(url, &sigs, data, now)
    }
}
