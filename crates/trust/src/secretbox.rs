//! NaCl `crypto_secretbox` (XSalsa20-Poly1305), as used by cosign's encrypted keys
//! (Go `golang.org/x/crypto/nacl/secretbox`). Output layout: 16-byte tag || ciphertext.

use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher};
use zeroize::Zeroizing;

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

fn cipher_and_mac(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> (XSalsa20, Poly1305) {
    let mut cipher = XSalsa20::new(key.into(), nonce.into());
    let mut mac_key = Zeroizing::new([0u8; 32]);
    cipher.apply_keystream(&mut mac_key[..]);
    let mac = Poly1305::new((&*mac_key).into());
    (cipher, mac)
}

pub(crate) fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], msg: &[u8]) -> Vec<u8> {
    let (mut cipher, mac) = cipher_and_mac(key, nonce);
    let mut out = vec![0u8; TAG_LEN + msg.len()];
    out[TAG_LEN..].copy_from_slice(msg);
    cipher.apply_keystream(&mut out[TAG_LEN..]);
    let tag = mac.compute_unpadded(&out[TAG_LEN..]);
    out[..TAG_LEN].copy_from_slice(&tag);
    out
}

/// Returns `None` when the box is too short or authentication fails.
pub(crate) fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    boxed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if boxed.len() < TAG_LEN {
        return None;
    }
    let (tag, ct) = boxed.split_at(TAG_LEN);
    let (mut cipher, mac) = cipher_and_mac(key, nonce);
    let expected = mac.compute_unpadded(ct);
    let diff = expected
        .iter()
        .zip(tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return None;
    }
    let mut out = Zeroizing::new(ct.to_vec());
    cipher.apply_keystream(&mut out[..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = [7u8; 32];
        let nonce = [9u8; 24];
        let boxed = seal(&key, &nonce, b"hello secretbox");
        assert_eq!(boxed.len(), 16 + 15);
        assert_eq!(&open(&key, &nonce, &boxed).unwrap()[..], b"hello secretbox");
        let mut bad = boxed.clone();
        bad[20] ^= 1;
        assert!(open(&key, &nonce, &bad).is_none());
        assert!(open(&[8u8; 32], &nonce, &boxed).is_none());
        assert!(open(&key, &nonce, &boxed[..10]).is_none());
    }

    #[test]
    fn nacl_vector() {
        // From NaCl's tests/secretbox.c (also used by Go's secretbox tests): first bytes.
        let key: [u8; 32] = [
            0x1b, 0x27, 0x55, 0x64, 0x73, 0xe9, 0x85, 0xd4, 0x62, 0xcd, 0x51, 0x19, 0x7a, 0x9a,
            0x46, 0xc7, 0x60, 0x09, 0x54, 0x9e, 0xac, 0x64, 0x74, 0xf2, 0x06, 0xc4, 0xee, 0x08,
            0x44, 0xf6, 0x83, 0x89,
        ];
        let nonce: [u8; 24] = [
            0x69, 0x69, 0x6e, 0xe9, 0x55, 0xb6, 0x2b, 0x73, 0xcd, 0x62, 0xbd, 0xa8, 0x75, 0xfc,
            0x73, 0xd6, 0x82, 0x19, 0xe0, 0x03, 0x6b, 0x7a, 0x0b, 0x37,
        ];
        let msg: [u8; 16] = [
            0xbe, 0x07, 0x5f, 0xc5, 0x3c, 0x81, 0xf2, 0xd5, 0xcf, 0x14, 0x13, 0x16, 0xeb, 0xeb,
            0x0c, 0x7b,
        ];
        let boxed = seal(&key, &nonce, &msg);
        // The keystream part of the vector (the tag covers the full 131-byte message).
        assert_eq!(
            hex::encode(&boxed[16..32]),
            "8e993b9f48681273c29650ba32fc76ce"
        );
    }
}
