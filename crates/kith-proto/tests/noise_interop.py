#!/usr/bin/env python3
"""The other end of kith's Noise interop test, built on the PyPI package `noiseprotocol`
(an independent, specification-following implementation).

Run by crates/kith-proto/tests/noise_interop.rs; it talks over stdin/stdout, one line per
message, `<tag> <hex>`: tags `I`, `N`, `K`, `A`, `T` carry a raw Noise message (the body of a
kith frame with that header byte); `info` lines report what this side learned.

Keys are derived here independently of kith-crypto: the X25519 static secret is the clamped
first half of sha512(Ed25519 seed) (libsodium's crypto_sign_ed25519_sk_to_curve25519), and the
peer's X25519 key is the birational map u = (1 + y) / (1 - y) of its Ed25519 key (libsodium's
crypto_sign_ed25519_pk_to_curve25519). So the test also checks kith's key conversion.

usage: noise_interop.py ROLE PATTERN SEED_HEX [PEER_AGENT_ID] [TOKEN_OR_PAYLOAD_HEX]
  ROLE     initiator | responder
  PATTERN  IK | KK
After the handshake the script is an echo server: each T it receives is answered with a T
carrying b"echo:" + the plaintext. It exits on end of input.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from noise.connection import Keypair, NoiseConnection

P = 2**255 - 19


def agent_id_of_seed(seed):
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(public).rstrip(b"=").decode()


def x25519_secret_of_seed(seed):
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def x25519_public_of_agent(agent_id):
    key = base64.urlsafe_b64decode(agent_id + "=")
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little")


def name(pattern):
    return ("Noise_%s_25519_ChaChaPoly_BLAKE2b" % pattern).encode()


def conn(pattern, initiator, secret=None, remote=None):
    c = NoiseConnection.from_name(name(pattern))
    if initiator:
        c.set_as_initiator()
    else:
        c.set_as_responder()
    if secret is not None:
        c.set_keypair_from_private_bytes(Keypair.STATIC, secret)
    if remote is not None:
        c.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
    c.start_handshake()
    return c


def send(tag, data):
    sys.stdout.write("%s %s\n" % (tag, bytes(data).hex()))
    sys.stdout.flush()


def receive(expected):
    line = sys.stdin.readline()
    if not line:
        return None
    tag, _, data = line.strip().partition(" ")
    if tag != expected:
        raise SystemExit("expected %s, got %r" % (expected, line[:40]))
    return bytes.fromhex(data)


def main():
    role, pattern, seed_hex = sys.argv[1], sys.argv[2], sys.argv[3]
    rest = sys.argv[4:]
    seed = bytes.fromhex(seed_hex)
    me = agent_id_of_seed(seed)
    secret = x25519_secret_of_seed(seed)
    send("info", me.encode())

    if role == "initiator":
        peer, extra = rest[0], rest[1]
        peer_key = x25519_public_of_agent(peer)
        if pattern == "IK":
            request = {"target": "tally", "action": "ticket",
                       "to": {"cuid": "b1", "agent": peer},
                       "from": {"cuid": "p1", "agent": me, "host": "127.0.0.1", "port": 1},
                       "ticket": {"token": extra}}
            c = conn("IK", True, secret, peer_key)
            send("I", c.write_message(json.dumps(request).encode()))
        else:
            n = conn("N", True, None, peer_key)
            send("N", n.write_message(json.dumps(me).encode()))
            c = conn("KK", True, secret, peer_key)
            send("K", c.write_message(bytes.fromhex(extra)))
        payload = c.read_message(receive("A"))
        send("info", payload)
    else:
        if pattern == "IK":
            c = conn("IK", False, secret)
            payload = c.read_message(receive("I"))
            send("info", payload)
            send("info", c.noise_protocol.handshake_state.rs.public_bytes)
        else:
            peer_key = x25519_public_of_agent(rest[0])
            n = conn("N", False, secret)
            send("info", n.read_message(receive("N")))
            c = conn("KK", False, secret, peer_key)
            send("info", c.read_message(receive("K")))
        send("A", c.write_message(b""))

    assert c.handshake_finished
    send("info", c.get_handshake_hash())
    while True:
        message = receive("T")
        if message is None:
            return
        send("T", c.encrypt(b"echo:" + c.decrypt(message)))


if __name__ == "__main__":
    main()
