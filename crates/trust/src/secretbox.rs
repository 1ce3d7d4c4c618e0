//! NaCl `crypto_secretbox` (XSalsa20-Poly1305), as used by cosign's encrypted keys
//! (Go `golang.org/x/crypto/nacl/secretbox`). Output layout: 16-byte tag || ciphertext.

use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher};
use subtle::ConstantTimeEq;
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
    // Constant time: how many tag bytes match must not show in the timing.
    if !bool::from(expected.as_slice().ct_eq(tag)) {
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

    /// NaCl's `tests/secretbox.c` (also libsodium's `test/default/secretbox.c`): the
    /// 131-byte message under `firstkey` and its nonce. The expected box, tag included,
    /// is NaCl's published output (re-checked against libsodium's `crypto_secretbox_easy`).
    #[test]
    fn nacl_vector() {
        let key: [u8; 32] =
            hex::decode("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
                .unwrap()
                .try_into()
                .unwrap();
        let nonce: [u8; 24] = hex::decode("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
            .unwrap()
            .try_into()
            .unwrap();
        let msg = hex::decode(concat!(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffc",
            "e5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb31",
            "0e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde",
            "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f93776384864",
            "5e0705",
        ))
        .unwrap();
        assert_eq!(msg.len(), 131);
        let expected = concat!(
            // The Poly1305 tag.
            "f3ffc7703f9400e52a7dfb4b3d3305d9",
            // The ciphertext.
            "8e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186a",
            "c0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738",
            "b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da",
            "99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74",
            "e355a5",
        );
        let boxed = seal(&key, &nonce, &msg);
        assert_eq!(hex::encode(&boxed), expected);
        assert_eq!(&open(&key, &nonce, &boxed).unwrap()[..], &msg[..]);
        // Any flipped bit of the tag, or of the ciphertext, fails authentication.
        for i in [0, 15, 16, boxed.len() - 1] {
            let mut bad = boxed.clone();
            bad[i] ^= 0x80;
            assert!(open(&key, &nonce, &bad).is_none(), "byte {i}");
        }
    }
}
