#!/usr/bin/env python3
"""Independent check of kith's encrypted-custody formats (kith_crypto::custody), written from
the documented format alone, with coincurve (libsecp256k1) and cryptography (ECDH, HKDF,
ChaCha20-Poly1305, Argon2id). XChaCha20-Poly1305 is HChaCha20 (pure Python below, checked
against a second derivation from cryptography's raw ChaCha20) then ChaCha20-Poly1305.

Usage: custody_interop.py IN OUT

IN holds lines `name hex` written by tests/custody_interop.rs:
  owner_secret, original_hash, copy, plaintext   a KC1 copy kith encrypted for owner_secret
  push, push_hash, pull                          request blobs for test.jpg with password dummy
  test_jpg_hash, argon_password, argon_secret    kith's Argon2id owner key (m=8 KiB, t=1, p=1)
  kith_owner_pub, py_plaintext, py_original_hash what Python must encrypt for kith
OUT gets lines `name hex`: py_copy.
Exit status 0 when every check passed; otherwise a message on stderr and status 1.
"""

import base64
import hashlib
import os
import struct
import sys

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
try:  # cryptography >= 44 built with OpenSSL >= 3.2
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
except ImportError:
    Argon2id = None
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"KC1"
HEADER_LEN = 60
MAX_CHUNK = 1 << 20
INFO_PREFIX = b"kith custody v1"
M32 = 0xFFFFFFFF


class CheckError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckError(what)


def rotl(v, n):
    return ((v << n) & M32) | (v >> (32 - n))


def hchacha20_rounds(key, nonce16):
    """The 16-word ChaCha20 state after 20 rounds (no feed-forward)."""
    s = list(struct.unpack("<4I", b"expand 32-byte k"))
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    init = list(s)

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & M32; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & M32; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & M32; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & M32; s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return s, init


def hchacha20(key, nonce16):
    s, init = hchacha20_rounds(key, nonce16)
    sub = struct.pack("<8I", *(s[0:4] + s[12:16]))
    # Second derivation: cryptography's ChaCha20 keystream block for (counter||nonce) =
    # nonce16 is rounds(state) + state; subtracting the initial state leaves the rounds.
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(bytes(64))
    words = struct.unpack("<16I", block)
    rounds = [(w - i) & M32 for w, i in zip(words, init)]
    check(struct.pack("<8I", *(rounds[0:4] + rounds[12:16])) == sub, "HChaCha20 mismatch")
    return sub


def xchacha_open(key, nonce24, aad, ct):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\0\0\0\0" + nonce24[16:], ct, aad)


def xchacha_seal(key, nonce24, aad, pt):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce24[16:], pt, aad)


def shared_x(secret, peer_pub):
    """x(secret * peer_pub), computed with coincurve and with cryptography; they must agree."""
    x = PublicKey(peer_pub).multiply(secret).format(compressed=False)[1:33]
    priv = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256K1())
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), peer_pub)
    check(priv.exchange(ec.ECDH(), peer) == x, "coincurve and cryptography ECDH disagree")
    return x


def chunk_key(x, custodian_pub, owner_pub, original_hash):
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=custodian_pub + owner_pub,
        info=INFO_PREFIX + original_hash,
    ).derive(x)


def chunk_nonce(base, i):
    return base[:16] + bytes(a ^ b for a, b in zip(base[16:], struct.pack(">Q", i)))


def decrypt_copy(owner_secret, original_hash, copy):
    check(len(copy) >= HEADER_LEN and copy[:3] == MAGIC, "bad KC1 header")
    header = copy[:HEADER_LEN]
    custodian, base = header[3:36], header[36:60]
    owner_pub = PrivateKey(owner_secret).public_key.format(compressed=True)
    key = chunk_key(shared_x(owner_secret, custodian), custodian, owner_pub, original_hash)
    out, pos, i, last = b"", HEADER_LEN, 0, False
    while pos < len(copy):
        check(not last, "bytes after the last frame")
        check(pos + 5 <= len(copy), "truncated frame header")
        flag = copy[pos]
        (n,) = struct.unpack(">I", copy[pos + 1:pos + 5])
        check(flag in (0, 1), "bad frame flag")
        check(16 <= n <= MAX_CHUNK + 16 and pos + 5 + n <= len(copy), "bad frame length")
        aad = header + struct.pack(">Q", i) + bytes([flag])
        try:
            out += xchacha_open(key, chunk_nonce(base, i), aad, copy[pos + 5:pos + 5 + n])
        except InvalidTag:
            raise CheckError("chunk %d fails authentication" % i)
        pos += 5 + n
        i += 1
        last = flag == 1
    check(last, "copy has no last frame")
    return out, i


def encrypt_copy(owner_pub, original_hash, plaintext, chunk_len):
    fresh = PrivateKey()
    custodian = fresh.public_key.format(compressed=True)
    base = os.urandom(24)
    header = MAGIC + custodian + base
    key = chunk_key(shared_x(fresh.secret, owner_pub), custodian, owner_pub, original_hash)
    chunks = [plaintext[i:i + chunk_len] for i in range(0, len(plaintext), chunk_len)] or [b""]
    out = header
    for i, pt in enumerate(chunks):
        flag = 1 if i == len(chunks) - 1 else 0
        aad = header + struct.pack(">Q", i) + bytes([flag])
        ct = xchacha_seal(key, chunk_nonce(base, i), aad, pt)
        out += bytes([flag]) + struct.pack(">I", len(ct)) + ct
    return out


def main(inp, out):
    v = {}
    with open(inp) as f:
        for line in f:
            if line.strip():
                name, _, value = line.strip().partition(" ")
                v[name] = bytes.fromhex(value)

    # (1) a kith custody copy, decrypted from the documented format
    plain, chunks = decrypt_copy(v["owner_secret"], v["original_hash"], v["copy"])
    check(plain == v["plaintext"], "decrypted content differs")
    check(chunks > 2, "expected a multi-chunk copy")
    check(hashlib.sha256(b"\x01" + plain).digest() == v["original_hash"], "original hash")
    bad = bytearray(v["copy"])
    bad[-1] ^= 1
    try:
        decrypt_copy(v["owner_secret"], v["original_hash"], bytes(bad))
        raise CheckError("tampered copy decrypted")
    except CheckError as e:
        check("authentication" in str(e), "tampered copy: %s" % e)

    # (2) request blobs and the reference key derivation (test mode and general)
    h = v["test_jpg_hash"]
    sk = hashlib.sha256(b"dummy").digest()
    pk = PrivateKey(sk).public_key.format(compressed=True)
    push = b"md:raw\npk:" + base64.b64encode(pk) + b"\nsh:" + base64.b64encode(h)
    check(push == v["push"], "push request bytes differ")
    check(hashlib.sha256(b"\x01" + push).digest() == v["push_hash"], "push request hash")
    general = bytes.fromhex("0" + hashlib.sha256((h.hex() + "dummy").encode()).hexdigest()[1:])
    gpk = PrivateKey(general).public_key.format(compressed=True)
    check(base64.b64encode(gpk).startswith(b"AoJATtJ4"), "general derivation")
    pull = push.replace(b"pk:" + base64.b64encode(pk), b"pk:" + base64.b64encode(gpk) + b"-" +
                        base64.b64encode(pk)) + b"\nth:" + base64.b64encode(h)
    pull = pull.replace(b"\nsh:" + base64.b64encode(h), b"\nsh:" + base64.b64encode(bytes(32)))
    check(pull == v["pull"], "pull request bytes differ")

    # (3) Argon2id owner key: salt = sha256("kith custody owner key v1" || content hash)
    salt = hashlib.sha256(b"kith custody owner key v1" + h).digest()
    argon_note = "Argon2id checked"
    try:
        secret = Argon2id(salt=salt, length=32, iterations=1, lanes=1, memory_cost=8).derive(
            v["argon_password"])
        check(secret == v["argon_secret"], "Argon2id owner key differs")
    except (TypeError, UnsupportedAlgorithm):
        argon_note = "Argon2id NOT checked: this cryptography lacks it"

    # Python's own copy for kith to decrypt
    py_copy = encrypt_copy(v["kith_owner_pub"], v["py_original_hash"], v["py_plaintext"], 1000)
    with open(out, "w") as f:
        f.write("py_copy %s\n" % py_copy.hex())
    print("custody_interop.py: all checks passed (%d chunks; %s)" % (chunks, argon_note))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: custody_interop.py IN OUT")
    try:
        main(sys.argv[1], sys.argv[2])
    except (CheckError, ValueError, KeyError) as e:
        print("custody_interop.py: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
