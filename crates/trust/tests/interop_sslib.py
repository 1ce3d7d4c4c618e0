#!/usr/bin/env python3
"""securesystemslib side of kiln-trust's DSSE interop test.

  interop_sslib.py verify ENVELOPE_JSON THRESHOLD PUB_PEM...
      Verify a kiln DSSE envelope with securesystemslib.dsse.Envelope. Each key's keyid is
      computed independently here as hex(SHA-256(SPKI DER)), which must equal kiln's keyid.
      Exit 0 and print the accepted keyids (JSON) on success, 3 on VerificationError.
  interop_sslib.py sign ALG PAYLOAD_FILE PAYLOAD_TYPE OUT_ENVELOPE OUT_PUB_PEM
      Sign with securesystemslib's CryptoSigner (ALG: ecdsa | ed25519) for kiln to verify.
"""
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey


def load_key(path):
    pem = open(path, "rb").read()
    pub = serialization.load_pem_public_key(pem)
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keyid = hashlib.sha256(der).hexdigest()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        scheme = "ecdsa-sha2-nistp256"
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        scheme = "ed25519"
    else:
        raise SystemExit(f"unexpected key type {type(pub)}")
    return SSlibKey.from_crypto(pub, keyid=keyid, scheme=scheme)


def verify(env_path, threshold, pub_paths):
    env = Envelope.from_dict(json.load(open(env_path)))
    keys = [load_key(p) for p in pub_paths]
    try:
        accepted = env.verify(keys, int(threshold))
    except VerificationError as e:
        print(f"VerificationError: {e}")
        return 3
    print(json.dumps(sorted(accepted.keys())))
    return 0


def sign(alg, payload_path, payload_type, out_env, out_pub):
    if alg == "ecdsa":
        priv = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ed25519":
        priv = ed25519.Ed25519PrivateKey.generate()
    else:
        raise SystemExit(f"unknown alg {alg}")
    signer = CryptoSigner(priv)
    env = Envelope(open(payload_path, "rb").read(), payload_type, {})
    env.sign(signer)
    with open(out_env, "w") as f:
        json.dump(env.to_dict(), f)
    with open(out_pub, "wb") as f:
        f.write(
            priv.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "verify":
        return verify(argv[2], argv[3], argv[4:])
    if len(argv) == 7 and argv[1] == "sign":
        return sign(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
