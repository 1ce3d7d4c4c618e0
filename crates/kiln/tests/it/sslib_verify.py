#!/usr/bin/env python3
"""securesystemslib side of kiln's attestation interop test.

  sslib_verify.py ENVELOPE_JSON THRESHOLD PUB_PEM...

Verifies a kiln DSSE envelope (SLSA provenance or approval) with
securesystemslib.dsse.Envelope.verify against the given public keys and threshold.
Key ids are computed here independently as hex(SHA-256(SPKI DER)).
Exit 0 printing the accepted key ids (JSON, first line) and the statement's predicateType
and subject digest; exit 3 on VerificationError.
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey


def load_key(path):
    pub = serialization.load_pem_public_key(open(path, "rb").read())
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


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    raw = json.load(open(argv[1]))
    env = Envelope.from_dict(raw)
    keys = [load_key(p) for p in argv[3:]]
    try:
        accepted = env.verify(keys, int(argv[2]))
    except VerificationError as e:
        print(f"VerificationError: {e}")
        return 3
    if env.payload_type != "application/vnd.in-toto+json":
        print(f"VerificationError: payloadType {env.payload_type!r}")
        return 3
    st = json.loads(env.payload)
    print(json.dumps(sorted(accepted.keys())))
    print(st["predicateType"])
    print(st["subject"][0]["digest"]["sha256"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
