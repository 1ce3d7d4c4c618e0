#!/usr/bin/env python3
"""Independent implementation of cosign's encrypted private key format, for kiln interop tests.

PEM "ENCRYPTED SIGSTORE PRIVATE KEY" around JSON
  {"kdf":{"name":"scrypt","params":{"N":..,"r":..,"p":..},"salt":b64},
   "cipher":{"name":"nacl/secretbox","nonce":b64},"ciphertext":b64}
where ciphertext = secretbox(PKCS#8 DER, key = scrypt(password, salt, N, r, p, 32)).

  cosign_key.py write PASSWORD OUT_KEY OUT_PUB_PEM [ecdsa|ed25519] [LOG_N]
      Generate a key with `cryptography` and write it in cosign's format (default N = 2^16).
  cosign_key.py read PASSWORD IN_KEY OUT_PUB_PEM MESSAGE_FILE OUT_SIG
      Decrypt a (kiln-written) key, write its public key PEM and a signature over MESSAGE_FILE
      (ECDSA: DER over SHA-256; Ed25519: raw). Exit 4 on a wrong password.
"""
import base64
import hashlib
import json
import os
import sys

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"


def kdf(password, salt, n, r, p):
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=2**30, dklen=32)


def pem_wrap(label, data):
    b = base64.b64encode(data).decode()
    lines = [b[i : i + 64] for i in range(0, len(b), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def pem_unwrap(text):
    lines = [l.strip() for l in text.strip().splitlines()]
    if not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise SystemExit("not PEM")
    label = lines[0][len("-----BEGIN ") : -5]
    return label, base64.b64decode("".join(lines[1:-1]))


def pub_pem(priv):
    return priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write(password, out_key, out_pub, alg="ecdsa", log_n="16"):
    priv = (
        ec.generate_private_key(ec.SECP256R1())
        if alg == "ecdsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    der = priv.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    n, r, p = 1 << int(log_n), 8, 1
    salt = os.urandom(32)
    nonce = os.urandom(24)
    box = nacl.secret.SecretBox(kdf(password.encode(), salt, n, r, p))
    ct = box.encrypt(der, nonce).ciphertext  # tag || ciphertext, like Go's secretbox.Seal
    body = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": r, "p": p},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ct).decode(),
    }
    with open(out_key, "w") as f:
        f.write(pem_wrap(LABEL, json.dumps(body).encode()))
    with open(out_pub, "wb") as f:
        f.write(pub_pem(priv))
    return 0


def read(password, in_key, out_pub, msg_file, out_sig):
    label, body = pem_unwrap(open(in_key).read())
    if label not in (LABEL, "ENCRYPTED COSIGN PRIVATE KEY"):
        raise SystemExit(f"unexpected label {label}")
    d = json.loads(body)
    assert d["kdf"]["name"] == "scrypt" and d["cipher"]["name"] == "nacl/secretbox"
    prm = d["kdf"]["params"]
    key = kdf(
        password.encode(),
        base64.b64decode(d["kdf"]["salt"]),
        prm["N"],
        prm["r"],
        prm["p"],
    )
    try:
        der = nacl.secret.SecretBox(key).decrypt(
            base64.b64decode(d["ciphertext"]), base64.b64decode(d["cipher"]["nonce"])
        )
    except nacl.exceptions.CryptoError:
        print("wrong password")
        return 4
    priv = serialization.load_der_private_key(der, password=None)
    msg = open(msg_file, "rb").read()
    if isinstance(priv, ec.EllipticCurvePrivateKey):
        sig = priv.sign(msg, ec.ECDSA(hashes.SHA256()))
    else:
        sig = priv.sign(msg)
    with open(out_pub, "wb") as f:
        f.write(pub_pem(priv))
    with open(out_sig, "wb") as f:
        f.write(sig)
    return 0


def main(argv):
    if len(argv) in (5, 6, 7) and argv[1] == "write":
        return write(*argv[2:])
    if len(argv) == 7 and argv[1] == "read":
        return read(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
