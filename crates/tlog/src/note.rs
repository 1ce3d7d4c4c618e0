//! C2SP signed notes (`signed-note`) with Ed25519 keys, compatible with
//! `golang.org/x/mod/sumdb/note`.
//!
//! A signed note is UTF-8 text ending in `\n`, a blank line, then one or
//! more lines `— <key name> <base64(4-byte key id || signature)>\n`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

/// Algorithm identifier byte for Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// Prefix of every signature line: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Upper bound on signature lines accepted by [`open_note`].
const MAX_SIGNATURES: usize = 100;

/// Why a key or note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("key id {got:08x} does not match the key (expected {want:08x})")]
    KeyIdMismatch { got: u32, want: u32 },
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("invalid base64 in signature line")]
    BadBase64,
    #[error("invalid signature by key {name}+{id:08x}")]
    InvalidSignature { name: String, id: u32 },
    #[error("note has no signature from a known key")]
    NoKnownSignature,
}

/// A signature found in a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Key name.
    pub name: String,
    /// 32-bit key id.
    pub key_id: u32,
    /// Raw signature bytes (without the key id).
    pub sig: Vec<u8>,
}

/// An opened note: text plus signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signatures verified by a known key.
    pub sigs: Vec<Signature>,
    /// Signatures by keys the caller did not supply (ignored).
    pub unverified: Vec<Signature>,
}

/// Whether `name` is a valid key name: non-empty, no Unicode white space,
/// no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Ed25519 key id: first 4 bytes of `SHA-256(name || 0x0A || 0x01 || pubkey)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public_key);
    let d: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn parse_id(s: &str) -> Result<u32, NoteError> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("key id must be 8 hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| NoteError::MalformedKey("key id must be 8 hex digits"))
}

fn parse_key_data(s: &str) -> Result<[u8; 32], NoteError> {
    let raw = B64
        .decode(s)
        .map_err(|_| NoteError::MalformedKey("bad base64 key data"))?;
    match raw.split_first() {
        Some((&ALG_ED25519, rest)) => rest
            .try_into()
            .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes")),
        Some(_) => Err(NoteError::MalformedKey("unsupported key algorithm")),
        None => Err(NoteError::MalformedKey("empty key data")),
    }
}

fn encode_key_data(key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key);
    B64.encode(raw)
}

/// A public key that verifies note signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl Verifier {
    /// Build a verifier from a name and an Ed25519 public key.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::MalformedKey("invalid key name"));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::MalformedKey("invalid Ed25519 public key"))?;
        Ok(Verifier {
            name: name.to_owned(),
            id: key_id(name, public_key),
            key,
        })
    }

    /// Parse a verifier key `<name>+<hex id>+<base64(0x01 || pubkey)>`.
    pub fn from_key_str(s: &str) -> Result<Self, NoteError> {
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey("expected <name>+<id>+<key>"));
        };
        let got = parse_id(id)?;
        let v = Verifier::new(name, &parse_key_data(data)?)?;
        if got != v.id {
            return Err(NoteError::KeyIdMismatch { got, want: v.id });
        }
        Ok(v)
    }

    /// The verifier key string `<name>+<hex id>+<base64(0x01 || pubkey)>`.
    pub fn to_key_str(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            encode_key_data(self.key.as_bytes())
        )
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// 32-bit key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// A private key that signs notes.
pub struct Signer {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Build a signer from a name and a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::MalformedKey("invalid key name"));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Ok(Signer {
            name: name.to_owned(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parse a signer key `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_key_str(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey("missing PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey(
                "expected PRIVATE+KEY+<name>+<id>+<key>",
            ));
        };
        let got = parse_id(id)?;
        let signer = Signer::from_seed(name, &parse_key_data(data)?)?;
        if got != signer.id {
            return Err(NoteError::KeyIdMismatch {
                got,
                want: signer.id,
            });
        }
        Ok(signer)
    }

    /// The signer key string `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn to_key_str(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            encode_key_data(&self.key.to_bytes())
        )
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// 32-bit key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character in text"));
    }
    Ok(())
}

/// Sign `text` (which must end in `\n` and contain no control characters
/// other than newline) and return the signed note.
pub fn sign_note(text: &str, signer: &Signer) -> Result<String, NoteError> {
    check_text(text)?;
    let sig = signer.key.sign(text.as_bytes());
    let mut raw = Vec::with_capacity(68);
    raw.extend_from_slice(&signer.id.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    Ok(format!(
        "{text}\n{SIG_PREFIX}{} {}\n",
        signer.name,
        B64.encode(raw)
    ))
}

/// Parse a signed note and verify its signatures against `verifiers`.
///
/// Signatures by unknown keys are ignored (returned in
/// [`Note::unverified`]), but at least one signature by a known key must
/// be present and every signature by a known key must be valid.
pub fn open_note(msg: &[u8], verifiers: &[Verifier]) -> Result<Note, NoteError> {
    let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    if msg.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character in note"));
    }
    let split = msg
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let text = &msg[..split + 1];
    let block = &msg[split + 2..];
    let Some(block) = block.strip_suffix('\n') else {
        return Err(NoteError::Malformed(
            "signature block must be non-empty and end in a newline",
        ));
    };
    let mut sigs = Vec::new();
    let mut unverified = Vec::new();
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for (n, line) in block.split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line must start with an em dash",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line has no key name"))?;
        if !is_valid_name(name) || b64.is_empty() {
            return Err(NoteError::Malformed("bad signature line"));
        }
        let raw = B64.decode(b64).map_err(|_| NoteError::BadBase64)?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if seen.contains(&(name, id)) {
            return Err(NoteError::Malformed("duplicate signature"));
        }
        seen.push((name, id));
        let sig = Signature {
            name: name.to_owned(),
            key_id: id,
            sig: raw[4..].to_vec(),
        };
        match verifiers.iter().find(|v| v.name == name && v.id == id) {
            None => unverified.push(sig),
            Some(v) => {
                if !v.verify(text.as_bytes(), &sig.sig) {
                    return Err(NoteError::InvalidSignature { name: sig.name, id });
                }
                sigs.push(sig);
            }
        }
    }
    if sigs.is_empty() {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(Note {
        text: text.to_owned(),
        sigs,
        unverified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vector from the golang.org/x/mod/sumdb/note package examples
    // (ExampleSign / ExampleOpen).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_MSG: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\
        \n\
        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn test_signer(name: &str, seed: u8) -> Signer {
        Signer::from_seed(name, &[seed; 32]).unwrap()
    }

    #[test]
    fn go_vector_keys_round_trip() {
        let s = Signer::from_key_str(GO_SKEY).unwrap();
        assert_eq!(s.key_id(), 0xc74f20a3);
        assert_eq!(s.to_key_str(), GO_SKEY);
        assert_eq!(s.verifier().to_key_str(), GO_VKEY);
        let v = Verifier::from_key_str(GO_VKEY).unwrap();
        assert_eq!(v, s.verifier());
        assert_eq!(v.to_key_str(), GO_VKEY);
    }

    #[test]
    fn go_vector_sign_matches_exactly() {
        let s = Signer::from_key_str(GO_SKEY).unwrap();
        assert_eq!(sign_note(GO_TEXT, &s).unwrap(), GO_MSG);
    }

    #[test]
    fn go_vector_opens() {
        let v = Verifier::from_key_str(GO_VKEY).unwrap();
        let n = open_note(GO_MSG.as_bytes(), &[v]).unwrap();
        assert_eq!(n.text, GO_TEXT);
        assert_eq!(n.sigs.len(), 1);
        assert_eq!(n.sigs[0].name, "PeterNeumann");
        assert_eq!(n.sigs[0].key_id, 0xc74f20a3);
        assert!(n.unverified.is_empty());
    }

    #[test]
    fn key_parsing_rejects_bad_keys() {
        let bad = [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ApcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ];
        for k in bad {
            assert!(Verifier::from_key_str(k).is_err(), "{k}");
        }
        assert!(Signer::from_key_str(GO_VKEY).is_err());
        assert!(
            Signer::from_key_str(
                "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
            )
            .is_err()
        );
        assert!(Signer::from_seed("a+b", &[0; 32]).is_err());
    }

    #[test]
    fn sign_and_open_round_trip() {
        let s = test_signer("example.com/log", 7);
        let msg = sign_note("hello\nworld\n", &s).unwrap();
        let n = open_note(msg.as_bytes(), &[s.verifier()]).unwrap();
        assert_eq!(n.text, "hello\nworld\n");
        // Verifier key string round trip.
        let v = Verifier::from_key_str(&s.verifier().to_key_str()).unwrap();
        assert!(open_note(msg.as_bytes(), &[v]).is_ok());
        let s2 = Signer::from_key_str(&s.to_key_str()).unwrap();
        assert_eq!(
            sign_note("x\n", &s2).unwrap(),
            sign_note("x\n", &s).unwrap()
        );
    }

    #[test]
    fn unknown_keys_are_ignored_but_one_known_is_required() {
        let a = test_signer("a.example", 1);
        let b = test_signer("b.example", 2);
        let ma = sign_note("t\n", &a).unwrap();
        let mb = sign_note("t\n", &b).unwrap();
        let both = format!("{ma}{}", mb.strip_prefix("t\n\n").unwrap());
        let n = open_note(both.as_bytes(), &[a.verifier()]).unwrap();
        assert_eq!(n.sigs.len(), 1);
        assert_eq!(n.unverified.len(), 1);
        assert_eq!(n.unverified[0].name, "b.example");
        let n = open_note(both.as_bytes(), &[a.verifier(), b.verifier()]).unwrap();
        assert_eq!(n.sigs.len(), 2);
        assert_eq!(
            open_note(ma.as_bytes(), &[b.verifier()]),
            Err(NoteError::NoKnownSignature)
        );
        assert_eq!(
            open_note(ma.as_bytes(), &[]),
            Err(NoteError::NoKnownSignature)
        );
        // Same name, different key: the id differs, so it is unknown.
        let a2 = test_signer("a.example", 3);
        assert_eq!(
            open_note(ma.as_bytes(), &[a2.verifier()]),
            Err(NoteError::NoKnownSignature)
        );
        // Duplicate signature lines are malformed.
        let dup = format!("{ma}{}", ma.strip_prefix("t\n\n").unwrap());
        assert!(matches!(
            open_note(dup.as_bytes(), &[a.verifier()]),
            Err(NoteError::Malformed(_))
        ));
    }

    #[test]
    fn forged_and_malformed_notes_are_rejected() {
        let s = test_signer("log", 9);
        let v = [s.verifier()];
        let msg = sign_note("size 10\n", &s).unwrap();
        // Altered text.
        let forged = msg.replacen("size 10", "size 11", 1);
        assert!(matches!(
            open_note(forged.as_bytes(), &v),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Signature by a different key claiming this key's name and id.
        let other = test_signer("log", 10);
        let om = sign_note("size 10\n", &other).unwrap();
        let (_, oline) = om.split_once("\n\n").unwrap();
        let (_, line) = msg.split_once("\n\n").unwrap();
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let ob64 = oline.trim_end().rsplit(' ').next().unwrap();
        let mut raw = B64.decode(ob64).unwrap();
        raw[..4].copy_from_slice(&s.key_id().to_be_bytes());
        let swapped = msg.replace(b64, &B64.encode(raw));
        assert!(matches!(
            open_note(swapped.as_bytes(), &v),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Truncated signature by a known key.
        let mut raw = B64.decode(b64).unwrap();
        raw.truncate(40);
        let short = msg.replace(b64, &B64.encode(raw));
        assert!(matches!(
            open_note(short.as_bytes(), &v),
            Err(NoteError::InvalidSignature { .. })
        ));
        // No trailing newline.
        assert!(open_note(msg.trim_end_matches('\n').as_bytes(), &v).is_err());
        // Bad base64.
        let bad = msg.replace(b64, &format!("{}!", &b64[1..]));
        assert_eq!(open_note(bad.as_bytes(), &v), Err(NoteError::BadBase64));
        // Malformed lines.
        for m in [
            msg.replace('\u{2014}', "-"),
            msg.replace("\u{2014} log ", "\u{2014} log"),
            msg.replace("\u{2014} log ", "\u{2014}  log "),
            msg.replace("\n\n", "\n"),
            format!("{msg}\n"),
            format!("{msg}garbage\n"),
            msg.replace("size 10", "size\t10"),
            "size 10\n\n".to_string(),
            String::new(),
        ] {
            assert!(open_note(m.as_bytes(), &v).is_err(), "{m:?}");
        }
        assert!(open_note(b"\xff\n\n", &v).is_err());
        // Unsignable text.
        assert!(sign_note("no newline", &s).is_err());
        assert!(sign_note("tab\there\n", &s).is_err());
    }

    proptest! {
        #[test]
        fn open_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            let v = test_signer("log", 1).verifier();
            let _ = open_note(&msg, &[v]);
        }

        #[test]
        fn open_never_panics_on_noteish_text(
            text in "[a-z \n]{0,40}",
            name in "[a-z+ ]{0,8}",
            b64 in "[A-Za-z0-9+/=]{0,100}",
        ) {
            let v = test_signer("log", 1).verifier();
            let msg = format!("{text}\n\n\u{2014} {name} {b64}\n");
            let _ = open_note(msg.as_bytes(), &[v]);
        }

        #[test]
        fn key_parsers_never_panic(s in "\\PC{0,80}") {
            let _ = Verifier::from_key_str(&s);
            let _ = Signer::from_key_str(&s);
        }

        #[test]
        fn sign_open_round_trip(text in "[ -~\n]{0,200}") {
            let s = test_signer("log", 4);
            let text = format!("{text}\n");
            let msg = sign_note(&text, &s).unwrap();
            let n = open_note(msg.as_bytes(), &[s.verifier()]).unwrap();
            prop_assert_eq!(n.text, text);
        }
    }
}
