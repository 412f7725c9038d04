#!/usr/bin/env python3
"""A ptpchat client for a kith node's chat port: the standard library, plus the PyPI package
`cryptography` for Ed25519 (without it, or with --plain, the client is a plain seed client).

    python3 scripts/ptpchat_client.py 127.0.0.1:7422 --channel lobby [--say TEXT]
        [--expect TEXT] [--timeout SECONDS] [--name NAME] [--tls] [--plain]

With a key, it says HELLO with the GUID derived from a fresh Ed25519 key and answers the
node's challenge with a signature (the node routes nothing to it before), signs its JOIN and
its MESSAGE, answers GETCERTIFICATE, and signs a receipt for each direct message it gets.
With --plain (or without `cryptography`) it uses a random uuid4, proves nothing, and what it
says goes out marked unsigned: the seed's plain client. Either way it joins CHANNEL when the
node announces it, optionally says TEXT there, prints every MESSAGE it receives as one JSON
line, and with --expect exits 0 once a message with that text arrives (1 on timeout). The
protocol is written down in crates/kith-chat/src/lib.rs.
"""
import argparse, base64, hashlib, json, socket, ssl, struct, sys, time, uuid

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
except ImportError:  # a plain client needs no signatures
    Ed25519PrivateKey = None


def guid_from_key(public: bytes) -> str:
    b = bytearray(hashlib.sha256(b"kith node id v1" + public).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80  # UUID version 8
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(b)))


def guid_of(node_id: str) -> str:
    return node_id.split("@")[-1].lower()


def lines(*parts) -> bytes:
    return ("".join(p + "\n" for p in parts)).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def send(sock, msg_type, data, ttl=1, flood=False, target=None):
    msg = {"msg_type": msg_type, "msg_data": data, "ttl": ttl, "flood": flood}
    if target:
        msg["target_id"] = target
    body = json.dumps(msg).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)


def frames(sock):
    buf = b""
    while True:
        while len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                break
            frame, buf = buf[4 : 4 + n], buf[4 + n :]
            if frame:
                yield json.loads(frame)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            yield None
            continue
        if not chunk:
            return
        buf += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--channel", required=True)
    ap.add_argument("--say")
    ap.add_argument("--expect")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--name", default="py")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--plain", action="store_true", help="prove no key, send unsigned")
    args = ap.parse_args()
    key = Ed25519PrivateKey.generate() if Ed25519PrivateKey and not args.plain else None
    if key:
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        guid = guid_from_key(public)
        auth = lambda signed: {"public_key": b64(public), "signature": b64(key.sign(signed))}
    else:
        public, guid = None, str(uuid.uuid4())
        auth = lambda signed: {}
    host, port = args.target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    if args.tls:  # the node's certificate is self-signed: its key is what identifies it
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    sock.settimeout(1.0)
    me = f"{args.name}@{guid}"
    hello = {"node_id": me, "version": "ptpchat-py/2", "attributes": {"node_type": "client"}}
    send(sock, "HELLO", hello)
    deadline, channel_id, said, last_ping = time.time() + args.timeout, None, False, time.time()
    for msg in frames(sock):
        if time.time() > deadline:
            print("timed out", file=sys.stderr)
            return 1
        if time.time() - last_ping > 5:
            sock.sendall(struct.pack(">I", 0))  # keep-alive
            last_ping = time.time()
        if msg is None:
            continue
        kind, data = msg["msg_type"], msg["msg_data"]
        if kind == "HELLO" and key and data.get("challenge"):
            # Prove the key our id is derived from; the node routes nothing to us before.
            signed = lines("kith-chat-hello-v1", data["challenge"], guid_of(data["node_id"]), guid)
            send(sock, "HELLO", dict(hello, **auth(signed)))
        if kind == "CHANNEL" and data.get("channel") == args.channel and channel_id is None:
            channel_id, msg_id = data["channel_id"], str(uuid.uuid4())
            signed = lines("kith-chat-state-v1", "JOIN", msg_id, guid, args.channel, channel_id)
            send(sock, "JOIN", dict({"msg_id": msg_id, "node_id": me, "channel": args.channel,
                                     "channel_id": channel_id}, **auth(signed)), ttl=32, flood=True)
        if kind == "GETCERTIFICATE" and public and guid_of(data.get("recipient_id", guid)) == guid:
            send(sock, "CERTIFICATE", {"msg_id": data["msg_id"], "node_id": me,
                                       "recipient_id": data["node_id"],
                                       "certificate": b64(public)}, ttl=32, target=guid_of(data["node_id"]))
        if kind == "MESSAGE":
            raw = base64.b64decode(data["message"])
            text = raw[64:].decode("utf-8", "replace")
            print(json.dumps({"from": data["node_id"], "channel": data.get("channel"), "text": text,
                              "unsigned": bool(data.get("unsigned"))}), flush=True)
            author = guid_of(data["node_id"])
            if key and not data.get("channel_id") and author != guid:
                # A signed receipt tells the author its direct message arrived end to end.
                signed = lines("kith-chat-receipt-v1", data["msg_id"], guid, author)
                send(sock, "ACK", dict({"node_id": me, "msg_id": data["msg_id"], "recipient_id": author},
                                       **auth(signed)), ttl=32, target=author)
            if args.expect and text == args.expect:
                return 0
        if args.say and channel_id and not said:
            said = True
            msg_id, ts, body = str(uuid.uuid4()), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), args.say.encode()
            if key:
                signed = lines("kith-chat-message-v1", msg_id, guid, ts, args.channel, channel_id, "",
                               hashlib.sha256(body).hexdigest())
                head, extra = key.sign(signed), {"public_key": b64(public)}
            else:
                head, extra = bytes(64), {}  # the signature slot, empty: sent unsigned
            send(sock, "MESSAGE", dict({"msg_id": msg_id, "node_id": me, "recipient": [], "timestamp": ts,
                                        "channel": args.channel, "channel_id": channel_id,
                                        "message": b64(head + body)}, **extra), ttl=32, flood=True)
            if not args.expect:
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
