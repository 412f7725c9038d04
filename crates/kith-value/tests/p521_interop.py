"""P-521/SHA-384 ECDSA both ways between kith and Python `cryptography`.

Reads a JSON document on stdin: {"kith": [{"jwk", "message", "signature"}...]} with messages
and signatures kith made (base64url raw r||s), verifies each with `cryptography`, then signs
messages of its own and prints {"python": [{"jwk", "message", "signature"}...]} for kith to
verify. Exits non-zero on any failure.
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_from_jwk(jwk):
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-521"
    x = int.from_bytes(b64d(jwk["x"]), "big")
    y = int.from_bytes(b64d(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP521R1()).public_key()


def main():
    doc = json.load(sys.stdin)
    for case in doc["kith"]:
        key = public_from_jwk(case["jwk"])
        raw = b64d(case["signature"])
        assert len(raw) == 132, len(raw)
        der = encode_dss_signature(int.from_bytes(raw[:66], "big"), int.from_bytes(raw[66:], "big"))
        message = case["message"].encode("utf-8")
        key.verify(der, message, ec.ECDSA(hashes.SHA384()))
        # The same signature must not verify as SHA-512 (the usual P-521 default).
        try:
            key.verify(der, message, ec.ECDSA(hashes.SHA512()))
            raise SystemExit("a kith signature verified with SHA-512")
        except InvalidSignature:
            pass
        try:
            key.verify(der, message + b"x", ec.ECDSA(hashes.SHA384()))
            raise SystemExit("a changed message verified")
        except InvalidSignature:
            pass
    out = []
    for i, message in enumerate(["python says hi", json.dumps({"n": 1, "é": "ü"}, ensure_ascii=False)]):
        private = ec.generate_private_key(ec.SECP521R1())
        numbers = private.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-521", "x": b64e(numbers.x.to_bytes(66, "big")), "y": b64e(numbers.y.to_bytes(66, "big"))}
        r, s = decode_dss_signature(private.sign(message.encode("utf-8"), ec.ECDSA(hashes.SHA384())))
        out.append({"jwk": jwk, "message": message, "signature": b64e(r.to_bytes(66, "big") + s.to_bytes(66, "big"))})
    print(json.dumps({"python": out}))


if __name__ == "__main__":
    main()
