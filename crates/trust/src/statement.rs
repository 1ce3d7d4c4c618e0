//! in-toto Statement v1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TrustError;
use crate::dsse::Envelope;
use crate::keys::PrivateKey;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";
/// DSSE `payloadType` for in-toto statements.
pub const PAYLOAD_TYPE_INTOTO: &str = "application/vnd.in-toto+json";

/// A subject: an artifact name and its digests (`{"sha256": hex}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: impl Into<String>, hex_digest: impl Into<String>) -> Subject {
        Subject {
            name: name.into(),
            digest: BTreeMap::from([("sha256".to_owned(), hex_digest.into())]),
        }
    }
}

/// in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub predicate: serde_json::Value,
}

impl Statement {
    pub fn new(
        subject: Vec<Subject>,
        predicate_type: impl Into<String>,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            type_: STATEMENT_TYPE_V1.to_owned(),
            subject,
            predicate_type: predicate_type.into(),
            predicate,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| unreachable!("statement serialises: {e}"))
    }

    /// Parses and checks `_type` and a non-empty subject list.
    pub fn from_json(bytes: &[u8]) -> Result<Statement, TrustError> {
        let st: Statement = serde_json::from_slice(bytes)
            .map_err(|e| TrustError::Statement(format!("malformed JSON: {e}")))?;
        if st.type_ != STATEMENT_TYPE_V1 {
            return Err(TrustError::Statement(format!(
                "_type is {:?}, expected {STATEMENT_TYPE_V1:?}",
                st.type_
            )));
        }
        if st.subject.is_empty() {
            return Err(TrustError::Statement("subject list is empty".into()));
        }
        Ok(st)
    }

    /// Wraps the statement in a DSSE envelope signed by `keys`.
    pub fn sign(&self, keys: &[&PrivateKey]) -> Envelope {
        Envelope::sign(PAYLOAD_TYPE_INTOTO, &self.to_json(), keys)
    }

    /// Extracts the statement of an envelope (checks the payload type; does NOT verify
    /// signatures — call [`Envelope::verify`] first).
    pub fn from_envelope(env: &Envelope) -> Result<Statement, TrustError> {
        if env.payload_type != PAYLOAD_TYPE_INTOTO {
            return Err(TrustError::Statement(format!(
                "payloadType is {:?}, expected {PAYLOAD_TYPE_INTOTO:?}",
                env.payload_type
            )));
        }
        Statement::from_json(&env.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    #[test]
    fn round_trip_through_envelope() {
        let st = Statement::new(
            vec![Subject::sha256("img", "ab".repeat(32))],
            "https://slsa.dev/provenance/v1",
            serde_json::json!({"buildDefinition": {"buildType": "x"}}),
        );
        let json = String::from_utf8(st.to_json()).unwrap();
        assert!(json.starts_with(
            r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"img","digest":{"sha256":"abab"#
        ));
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let env = st.sign(&[&key]);
        assert_eq!(env.payload_type, PAYLOAD_TYPE_INTOTO);
        env.verify(&[key.public_key()], 1).unwrap();
        assert_eq!(Statement::from_envelope(&env).unwrap(), st);
    }

    #[test]
    fn rejects_wrong_type_and_empty_subject() {
        let bad = br#"{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"a","digest":{}}],"predicateType":"x"}"#;
        assert!(Statement::from_json(bad).is_err());
        let empty =
            br#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x"}"#;
        assert!(Statement::from_json(empty).is_err());
        let env = Envelope::sign("text/plain", b"{}", &[]);
        assert!(Statement::from_envelope(&env).is_err());
    }
}
