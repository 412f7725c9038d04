#!/usr/bin/env python3
"""A ptpchat router (server node) written from the protocol description, shaped like the
reference server (MUzzell/ptpchat-server): the later revision of the protocol, a plain id
(`name@uuid4`), no keys, no signatures; the standard library only.

    python3 scripts/ptpchat_router.py [--listen 127.0.0.1:0] [--name router]

Prints `listening HOST:PORT` on its first line, then serves until killed. Like the reference
it says HELLO first on every connection (top-level msg_id, sender_id, target_id; msg_data
{version, attributes: {node_type: server}}), learns a neighbour from its HELLO (hop count 1),
sends ROUTING to every neighbour after each HELLO (and every few seconds), keeps a route from
ROUTING only when strictly shorter (hops + 1 through the sender), and forgets a neighbour
silent for 120 s. Unlike the reference at commit 8281072 it works: flooded messages go to
every other neighbour once (a seen set), a routed message (top-level target_id) goes to the
neighbour its route names, a message for itself is handled, and a bad one is ignored. It
speaks for nobody and checks nothing: the nodes it carries verify what needs verifying.
"""
import argparse, json, selectors, socket, struct, sys, time, uuid

IDLE = 120.0
ROUTING_EVERY = 5.0


def guid_of(node_id):
    return str(node_id).rsplit("@", 1)[-1].lower()


class Conn:
    def __init__(self, sock):
        self.sock, self.buf, self.out = sock, b"", b""
        self.node = None  # the neighbour's name@GUID once it said HELLO
        self.heard = time.time()


class Router:
    def __init__(self, listen, name):
        host, port = listen.rsplit(":", 1)
        self.me = f"{name}@{uuid.uuid4()}"
        self.sel = selectors.DefaultSelector()
        self.server = socket.create_server((host, int(port)))
        self.server.setblocking(False)
        self.sel.register(self.server, selectors.EVENT_READ)
        self.conns = {}
        self.routes = {}  # guid -> (hops, conn, name@GUID)
        self.seen = {}  # msg_id -> time
        self.last_routing = 0.0

    def address(self):
        host, port = self.server.getsockname()[:2]
        return f"{host}:{port}"

    def send(self, conn, msg):
        body = json.dumps(msg).encode()
        conn.out += struct.pack(">I", len(body)) + body
        self.flush(conn)

    def flush(self, conn):
        try:
            while conn.out:
                n = conn.sock.send(conn.out)
                conn.out = conn.out[n:]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(conn)

    def message(self, verb, data, ttl=1, flood=False, target=None):
        return {"msg_type": verb, "msg_id": str(uuid.uuid4()), "ttl": ttl, "flood": flood,
                "sender_id": self.me, "target_id": target, "msg_data": data}

    def hello(self, conn):
        self.send(conn, self.message("HELLO", {"version": "ptpchat-router-py; 1",
                                               "attributes": {"node_type": "server"}}))

    def routing(self):
        self.last_routing = time.time()
        for conn in list(self.conns.values()):
            if conn.node is None:
                continue
            them = guid_of(conn.node)
            nodes = [{"node_id": node, "ttl": hops} for guid, (hops, via, node) in self.routes.items()
                     if guid != them and via is not conn]
            self.send(conn, self.message("ROUTING", {"nodes": nodes}))

    def drop(self, conn):
        if conn.sock.fileno() in self.conns:
            del self.conns[conn.sock.fileno()]
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            self.routes = {g: r for g, r in self.routes.items() if r[1] is not conn}

    def handle(self, conn, msg):
        if not isinstance(msg, dict) or not isinstance(msg.get("msg_data"), dict):
            return
        verb, data, ttl = msg.get("msg_type"), msg["msg_data"], msg.get("ttl")
        if not isinstance(ttl, int) or ttl <= 0:
            return
        sender = msg.get("sender_id") or data.get("node_id")
        if verb == "HELLO" and sender:
            conn.node = sender
            self.routes[guid_of(sender)] = (1, conn, sender)
            self.routing()
            return
        if verb == "ROUTING" and conn.node:
            for entry in data.get("nodes", []):
                try:
                    node, hops = str(entry["node_id"]), int(entry["ttl"]) + 1
                except (KeyError, TypeError, ValueError):
                    continue
                guid = guid_of(node)
                if guid == guid_of(self.me) or hops >= 32:
                    continue
                if guid not in self.routes or hops < self.routes[guid][0]:
                    self.routes[guid] = (hops, conn, node if "@" in node else f"kith@{node}")
            return
        msg_id = msg.get("msg_id") or data.get("msg_id")
        target = msg.get("target_id")
        if msg.get("flood"):
            if not msg_id or msg_id in self.seen:
                return
            self.seen[msg_id] = time.time()
            if ttl - 1 <= 0:
                return
            onward = dict(msg, ttl=ttl - 1)
            for other in list(self.conns.values()):
                if other is not conn and other.node is not None:
                    self.send(other, onward)
            return
        if target and guid_of(target) != guid_of(self.me):
            route = self.routes.get(guid_of(target))
            if route and route[1] is not conn and ttl - 1 > 0:
                self.send(route[1], dict(msg, ttl=ttl - 1))
        # Anything for the router itself (ACKs, a GETCERTIFICATE) is ignored: it has no key.

    def serve(self):
        print(f"listening {self.address()}", flush=True)
        while True:
            for key, _ in self.sel.select(timeout=1.0):
                if key.fileobj is self.server:
                    sock, _ = self.server.accept()
                    sock.setblocking(False)
                    conn = Conn(sock)
                    self.conns[sock.fileno()] = conn
                    self.sel.register(sock, selectors.EVENT_READ, conn)
                    self.hello(conn)
                    continue
                conn = key.data
                try:
                    chunk = conn.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self.drop(conn)
                    continue
                conn.heard = time.time()
                conn.buf += chunk
                while len(conn.buf) >= 4:
                    (n,) = struct.unpack(">I", conn.buf[:4])
                    if n > 1 << 20:
                        self.drop(conn)
                        break
                    if len(conn.buf) < 4 + n:
                        break
                    frame, conn.buf = conn.buf[4:4 + n], conn.buf[4 + n:]
                    if frame:
                        try:
                            self.handle(conn, json.loads(frame))
                        except ValueError:
                            pass
            now = time.time()
            for conn in list(self.conns.values()):
                if now - conn.heard > IDLE:
                    self.drop(conn)
            self.seen = {m: t for m, t in self.seen.items() if now - t < 600}
            if now - self.last_routing > ROUTING_EVERY:
                self.routing()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--name", default="router")
    args = ap.parse_args()
    Router(args.listen, args.name).serve()


if __name__ == "__main__":
    sys.exit(main())
