#!/usr/bin/env python3
"""Independent checker for a kiln tlog-tiles export (https://c2sp.org/tlog-tiles).

Usage: check-tlog-tiles.py DIR VERIFIER_KEY

VERIFIER_KEY is a C2SP signed-note verifier key, `<name>+<hex id>+<base64(0x01 || pubkey)>`.
Opens DIR/checkpoint (a signed note), verifies the Ed25519 signature, reads every
entry bundle, recomputes the RFC 6962 root and compares it with the checkpoint,
and checks every hash tile (all levels) against the recomputed tree.
Prints one line of JSON and exits 0 if everything matches, 1 otherwise.
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TILE_WIDTH = 256
HASH_LEN = 32
EM_DASH = "\u2014"


class CheckError(Exception):
    pass


def parse_verifier(key):
    parts = key.split("+", 2)
    if len(parts) != 3:
        raise CheckError("verifier key: expected <name>+<hex id>+<base64 key>")
    name, hex_id, data = parts
    if not name or any(c.isspace() or c == "+" for c in name):
        raise CheckError("verifier key: invalid name")
    if len(hex_id) != 8:
        raise CheckError("verifier key: id must be 8 hex digits")
    try:
        key_id = bytes.fromhex(hex_id)
        raw = base64.b64decode(data, validate=True)
    except ValueError as e:
        raise CheckError(f"verifier key: {e}") from None
    if len(raw) != 33 or raw[0] != 0x01:
        raise CheckError("verifier key: not an Ed25519 key (0x01 || 32 bytes)")
    pub = raw[1:]
    want = hashlib.sha256(name.encode() + b"\n" + b"\x01" + pub).digest()[:4]
    if want != key_id:
        raise CheckError("verifier key: key id does not match name and key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(pub)


def open_checkpoint(path, verifier):
    name, key_id, pub = verifier
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CheckError(f"{path}: {e.strerror or e}") from None
    try:
        msg = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckError(f"{path}: not UTF-8") from None
    sep = msg.rfind("\n\n")
    if sep < 0 or not msg.endswith("\n"):
        raise CheckError(f"{path}: malformed signed note")
    text = msg[: sep + 1]
    sig_lines = msg[sep + 2 :].split("\n")[:-1]
    if not sig_lines:
        raise CheckError(f"{path}: signed note has no signatures")
    verified = False
    for line in sig_lines:
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise CheckError(f"{path}: malformed signature line")
        fields = line[len(prefix) :].split(" ")
        if len(fields) != 2:
            raise CheckError(f"{path}: malformed signature line")
        sig_name, b64 = fields
        try:
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            raise CheckError(f"{path}: bad signature base64") from None
        if len(blob) < 5:
            raise CheckError(f"{path}: signature too short")
        if sig_name != name or blob[:4] != key_id:
            continue  # someone else's signature
        try:
            pub.verify(blob[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise CheckError(f"{path}: invalid signature by {name}") from None
        verified = True
    if not verified:
        raise CheckError(f"{path}: no signature by {name}")
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckError(f"{path}: checkpoint body has fewer than three lines")
    origin, size_s, root_b64 = lines[0], lines[1], lines[2]
    if not size_s.isdigit() or (len(size_s) > 1 and size_s[0] == "0"):
        raise CheckError(f"{path}: bad tree size")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except ValueError:
        raise CheckError(f"{path}: bad root hash") from None
    if len(root) != HASH_LEN:
        raise CheckError(f"{path}: bad root hash length")
    return origin, int(size_s), root


def encode_index(n):
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def with_width(base, width):
    return base if width == TILE_WIDTH else f"{base}.p/{width}"


def tiles_at(count):
    """(index, width) of the tiles holding `count` hashes, partial last."""
    out = [(n, TILE_WIDTH) for n in range(count // TILE_WIDTH)]
    if count % TILE_WIDTH:
        out.append((count // TILE_WIDTH, count % TILE_WIDTH))
    return out


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckError(f"{path}: missing") from None
    except OSError as e:
        raise CheckError(f"{path}: {e.strerror or e}") from None


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(hashes):
    """RFC 6962 Merkle Tree Hash over leaf-level hashes, iteratively."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    # Stack of (height, hash) of complete subtrees, left to right.
    stack = []
    for h in hashes:
        height = 0
        while stack and stack[-1][0] == height:
            h = node_hash(stack.pop()[1], h)
            height += 1
        stack.append((height, h))
    h = stack.pop()[1]
    while stack:
        h = node_hash(stack.pop()[1], h)
    return h


def check(d, key):
    verifier = parse_verifier(key)
    cp_path = os.path.join(d, "checkpoint")
    origin, size, root = open_checkpoint(cp_path, verifier)

    leaves = []
    bundles = 0
    for n, width in tiles_at(size):
        path = os.path.join(d, with_width(f"tile/entries/{encode_index(n)}", width))
        data = read(path)
        pos = 0
        for k in range(width):
            if pos + 2 > len(data):
                raise CheckError(f"{path}: truncated before entry {k}")
            ln = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if pos + ln > len(data):
                raise CheckError(f"{path}: entry {k} runs past the end")
            leaves.append(leaf_hash(data[pos : pos + ln]))
            pos += ln
        if pos != len(data):
            raise CheckError(f"{path}: {len(data) - pos} trailing bytes")
        bundles += 1

    if mth(leaves) != root:
        raise CheckError(f"{cp_path}: entries do not hash to the checkpoint root")

    tiles = 0
    level = 0
    cur = leaves
    while cur:
        for n, width in tiles_at(len(cur)):
            path = os.path.join(d, with_width(f"tile/{level}/{encode_index(n)}", width))
            data = read(path)
            if len(data) != width * HASH_LEN:
                raise CheckError(f"{path}: {len(data)} bytes, expected {width * HASH_LEN}")
            want = b"".join(cur[n * TILE_WIDTH : n * TILE_WIDTH + width])
            if data != want:
                k = next(i for i in range(width) if data[i * 32 : i * 32 + 32] != want[i * 32 : i * 32 + 32])
                raise CheckError(f"{path}: hash {k} does not match the recomputed tree")
            tiles += 1
        cur = [mth(cur[i : i + TILE_WIDTH]) for i in range(0, len(cur) - TILE_WIDTH + 1, TILE_WIDTH)]
        level += 1

    return {
        "ok": True,
        "origin": origin,
        "size": size,
        "root": root.hex(),
        "entry_bundles": bundles,
        "hash_tiles": tiles,
    }


def main(argv):
    if len(argv) != 3:
        print(json.dumps({"ok": False, "error": "usage: check-tlog-tiles.py DIR VERIFIER_KEY"}))
        return 1
    try:
        summary = check(argv[1], argv[2])
    except CheckError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    except Exception as e:  # an unexpected failure is still a failed check
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
