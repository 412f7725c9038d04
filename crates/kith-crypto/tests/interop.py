#!/usr/bin/env python3
"""Independent check of kith's Datt content formats (signed and sealed) with coincurve
(libsecp256k1) and cryptography (AES-CBC, HMAC, SHA, and a second ECDSA/ECDH).

Usage: interop.py IN OUT

IN holds lines `name hex` written by tests/python_interop.rs:
  signer_secret, signed_data, signed          content signed by kith
  receiver_secret, sender_pub, sealed, sealed_plaintext
                                              content sealed by kith to receiver_secret
  kith_receiver_pub, py_data, py_plaintext    what Python must sign and seal for kith
  cert_der, agent_pub, agent_id               the identity's self-signed certificate
OUT gets lines `name hex`: py_signer_pub, py_signed, py_sender_pub, py_sealed.
Exit status 0 when every check passed; otherwise a message on stderr and status 1.
"""

import hashlib
import hmac as py_hmac
import os
import struct
import sys

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAGIC = b"Bitcoin Signed Message:\n"


class CheckError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckError(what)


def varint(n):
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def bsm_digest(m):
    pre = varint(len(MAGIC)) + MAGIC + varint(len(m)) + m
    return hashlib.sha256(hashlib.sha256(pre).digest()).digest()


def compact_sign(secret, m):
    """64-byte r||s, RFC 6979, low-S (libsecp256k1 via coincurve)."""
    rec = PrivateKey(secret).sign_recoverable(bsm_digest(m), hasher=None)
    return rec[:64]


def compact_verify(pub, sig, m):
    """Verify with coincurve and, independently, with cryptography (OpenSSL)."""
    check(len(sig) == 64, "signature is not 64 bytes")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    check(0 < r < N and 0 < s < N, "r or s out of range")
    check(s <= N // 2, "signature is not low-S")
    digest = bsm_digest(m)
    der = cdata_to_der(deserialize_compact(sig))
    check(PublicKey(pub).verify(der, digest, hasher=None), "coincurve rejects the signature")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pub)
    try:
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise CheckError("cryptography rejects the signature")


def ecies_keys(secret, peer_pub):
    """kE || kM = sha512(x(secret * peer_pub)), x computed two independent ways."""
    point = PublicKey(peer_pub).multiply(secret).format(compressed=False)
    x = point[1:33]
    priv = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256K1())
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), peer_pub)
    check(priv.exchange(ec.ECDH(), peer) == x, "coincurve and cryptography ECDH disagree")
    h = hashlib.sha512(x).digest()
    return h[:32], h[32:]


def verify_signed(blob):
    check(len(blob) >= 101, "signed content too short")
    pub, sig = blob[:33], blob[33:97]
    (n,) = struct.unpack(">I", blob[97:101])
    data = blob[101:]
    check(len(data) == n, "signed datalen mismatch")
    compact_verify(pub, sig, data)
    return pub, data


def make_signed(secret, data):
    pub = PrivateKey(secret).public_key.format(compressed=True)
    return pub + compact_sign(secret, data) + struct.pack(">I", len(data)) + data


def open_sealed(receiver_secret, blob):
    check(len(blob) >= 166, "sealed content too short")
    mac, receiver, sender = blob[:32], blob[32:65], blob[65:98]
    sig, length = blob[98:162], blob[162:166]
    data = blob[166:]
    (n,) = struct.unpack(">I", length)
    check(len(data) == n, "sealed datalen mismatch")
    check(n >= 32 and n % 16 == 0, "sealed data is not iv + blocks")
    me = PrivateKey(receiver_secret).public_key.format(compressed=True)
    check(receiver == me, "sealed content is not for this key")
    compact_verify(sender, sig, receiver + length + data)
    k_e, k_m = ecies_keys(receiver_secret, sender)
    h = hmac.HMAC(k_m, hashes.SHA256())
    h.update(receiver + sender + sig + length + data)
    try:
        h.verify(mac)
    except InvalidSignature:
        raise CheckError("sealed MAC mismatch")
    iv, ct = data[:16], data[16:]
    dec = Cipher(algorithms.AES(k_e), modes.CBC(iv)).decryptor()
    padded = dec.update(ct) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return sender, unpad.update(padded) + unpad.finalize()


def make_sealed(sender_secret, receiver_pub, plaintext):
    sender = PrivateKey(sender_secret).public_key.format(compressed=True)
    k_e, k_m = ecies_keys(sender_secret, receiver_pub)
    iv = os.urandom(16)
    pad = padding.PKCS7(128).padder()
    padded = pad.update(plaintext) + pad.finalize()
    enc = Cipher(algorithms.AES(k_e), modes.CBC(iv)).encryptor()
    data = iv + enc.update(padded) + enc.finalize()
    length = struct.pack(">I", len(data))
    sig = compact_sign(sender_secret, receiver_pub + length + data)
    body = receiver_pub + sender + sig + length + data
    mac = py_hmac.new(k_m, body, hashlib.sha256).digest()
    return mac + body


def main(inp, out):
    v = {}
    with open(inp) as f:
        for line in f:
            if line.strip():
                name, _, value = line.strip().partition(" ")
                v[name] = bytes.fromhex(value)

    # (1) signed content from kith
    signer_pub = PrivateKey(v["signer_secret"]).public_key.format(compressed=True)
    pub, data = verify_signed(v["signed"])
    check(pub == signer_pub, "signed content carries the wrong public key")
    check(data == v["signed_data"], "signed content carries the wrong data")
    check(
        compact_sign(v["signer_secret"], data) == v["signed"][33:97],
        "kith's RFC 6979 signature differs from libsecp256k1's",
    )

    # (2) sealed content from kith
    sender, plaintext = open_sealed(v["receiver_secret"], v["sealed"])
    check(sender == v["sender_pub"], "sealed content names the wrong sender")
    check(plaintext == v["sealed_plaintext"], "sealed plaintext differs")

    # (3) the self-signed certificate on the Ed25519 agent key
    cert = x509.load_der_x509_certificate(v["cert_der"])
    key = cert.public_key()
    check(
        key.public_bytes(Encoding.Raw, PublicFormat.Raw) == v["agent_pub"],
        "certificate subject key is not the agent key",
    )
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    check([a.value for a in cn] == [v["agent_id"].decode()], "certificate CN is not the agent id")
    check(cert.issuer == cert.subject, "certificate is not self-issued")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        raise CheckError("certificate self-signature does not verify")

    # Python's own content for kith to check
    py_secret = PrivateKey().secret
    py_pub = PrivateKey(py_secret).public_key.format(compressed=True)
    py_signed = make_signed(py_secret, v["py_data"])
    verify_signed(py_signed)
    py_sealed = make_sealed(py_secret, v["kith_receiver_pub"], v["py_plaintext"])
    with open(out, "w") as f:
        f.write("py_signer_pub %s\n" % py_pub.hex())
        f.write("py_signed %s\n" % py_signed.hex())
        f.write("py_sender_pub %s\n" % py_pub.hex())
        f.write("py_sealed %s\n" % py_sealed.hex())
    print("interop.py: all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: interop.py IN OUT")
    try:
        main(sys.argv[1], sys.argv[2])
    except (CheckError, ValueError, KeyError) as e:
        print("interop.py: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
