//! C2SP `tlog-checkpoint` bodies:
//! `<origin>\n<size decimal>\n<base64 root>\n` followed by optional
//! non-empty extension lines.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::Hash;
use crate::note::{Note, NoteError, Signer, Verifier, open_note, sign_note};

/// Why a checkpoint body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint must end in a newline")]
    MissingNewline,
    #[error("checkpoint has fewer than three lines")]
    TooShort,
    #[error("invalid origin line")]
    BadOrigin,
    #[error("invalid tree size")]
    BadSize,
    #[error("invalid root hash")]
    BadRoot,
    #[error("empty extension line")]
    EmptyExtension,
    #[error("control character in checkpoint")]
    ControlCharacter,
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A parsed checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log origin (first line).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines after the root (each non-empty, without newline).
    pub extensions: Vec<String>,
}

fn valid_line(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c < ' ')
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parse a checkpoint body strictly: decimal size without leading zeros
    /// that fits in `u64`, canonical base64 of exactly 32 bytes, body ending
    /// in a newline, non-empty extension lines.
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let body = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingNewline)?;
        if body.chars().any(|c| c < ' ' && c != '\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::TooShort);
        };
        if origin.is_empty() {
            return Err(CheckpointError::BadOrigin);
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(CheckpointError::BadSize);
        }
        let size: u64 = size.parse().map_err(|_| CheckpointError::BadSize)?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::BadRoot)?;
        let extensions = lines
            .map(|l| {
                if l.is_empty() {
                    Err(CheckpointError::EmptyExtension)
                } else {
                    Ok(l.to_owned())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Render the body. Fails if the origin or an extension line is empty
    /// or contains a control character (including newline).
    pub fn render(&self) -> Result<String, CheckpointError> {
        if !valid_line(&self.origin) {
            return Err(CheckpointError::BadOrigin);
        }
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            if !valid_line(e) {
                return Err(CheckpointError::EmptyExtension);
            }
            out.push_str(e);
            out.push('\n');
        }
        Ok(out)
    }

    /// Render and sign as a C2SP signed note.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        Ok(sign_note(&self.render()?, signer)?)
    }

    /// Open a signed checkpoint note and parse its body.
    pub fn open(msg: &[u8], verifiers: &[Verifier]) -> Result<(Self, Note), CheckpointError> {
        let note = open_note(msg, verifiers)?;
        Ok((Checkpoint::parse(&note.text)?, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root};
    use proptest::prelude::*;

    const ROOT_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn parse_and_render() {
        let body = format!("example.com/log\n0\n{ROOT_B64}\n");
        let c = Checkpoint::parse(&body).unwrap();
        assert_eq!(c, Checkpoint::new("example.com/log", 0, crate::EMPTY_ROOT));
        assert_eq!(c.render().unwrap(), body);

        let body = format!("o\n18446744073709551615\n{ROOT_B64}\next one\next two\n");
        let c = Checkpoint::parse(&body).unwrap();
        assert_eq!(c.size, u64::MAX);
        assert_eq!(c.extensions, vec!["ext one", "ext two"]);
        assert_eq!(c.render().unwrap(), body);
    }

    #[test]
    fn strict_parsing() {
        let bad = [
            format!("o\n1\n{ROOT_B64}"),
            "o\n1\n".to_string(),
            format!("\n1\n{ROOT_B64}\n"),
            format!("o\n01\n{ROOT_B64}\n"),
            format!("o\n00\n{ROOT_B64}\n"),
            format!("o\n+1\n{ROOT_B64}\n"),
            format!("o\n-1\n{ROOT_B64}\n"),
            format!("o\n 1\n{ROOT_B64}\n"),
            format!("o\n\n{ROOT_B64}\n"),
            format!("o\n18446744073709551616\n{ROOT_B64}\n"),
            "o\n1\nAAAA\n".to_string(),
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n".to_string(),
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n".to_string(),
            format!("o\n1\n{ROOT_B64}\n\n"),
            format!("o\n1\n{ROOT_B64}\na\n\nb\n"),
            format!("o\r\n1\n{ROOT_B64}\n"),
        ];
        for b in &bad {
            assert!(Checkpoint::parse(b).is_err(), "{b:?}");
        }
        assert_eq!(
            Checkpoint::new("", 1, [0; 32]).render(),
            Err(CheckpointError::BadOrigin)
        );
        assert!(Checkpoint::new("a\nb", 1, [0; 32]).render().is_err());
        let mut c = Checkpoint::new("o", 1, [0; 32]);
        c.extensions.push(String::new());
        assert!(c.render().is_err());
    }

    #[test]
    fn signed_checkpoint_round_trip() {
        let signer = Signer::from_seed("example.com/log", &[5; 32]).unwrap();
        let leaves: Vec<Hash> = (0u8..10).map(|i| leaf_hash(&[i])).collect();
        let c = Checkpoint::new("example.com/log", 10, root(&leaves));
        let msg = c.sign(&signer).unwrap();
        assert!(msg.starts_with(&c.render().unwrap()));
        let (got, note) = Checkpoint::open(msg.as_bytes(), &[signer.verifier()]).unwrap();
        assert_eq!(got, c);
        assert_eq!(note.sigs[0].name, "example.com/log");
        let forged = msg.replacen("\n10\n", "\n11\n", 1);
        assert!(Checkpoint::open(forged.as_bytes(), &[signer.verifier()]).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = Checkpoint::parse(&s);
        }

        #[test]
        fn parse_never_panics_structured(
            origin in "[a-z./\n]{0,12}",
            size in "[0-9+-]{0,22}",
            root in "[A-Za-z0-9+/=]{0,48}",
            ext in "[a-z \n]{0,20}",
        ) {
            let _ = Checkpoint::parse(&format!("{origin}\n{size}\n{root}\n{ext}"));
        }

        #[test]
        fn render_parse_round_trip(
            origin in "[!-~]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            exts in proptest::collection::vec("[ -~]{1,30}", 0..4),
        ) {
            let c = Checkpoint { origin, size, root, extensions: exts };
            let body = c.render().unwrap();
            prop_assert_eq!(Checkpoint::parse(&body).unwrap(), c);
        }
    }
}
