#!/usr/bin/env python3
"""netfault_proxy.py - a TCP proxy that partitions one host on command.

A scripted stand-in for what a real network can do and a test cannot ask a
real server to do: black-hole a host's traffic without closing its sockets.
One proxy per dispatchd host, one route per server it talks to:

  netfault_proxy.py --route redis=127.0.0.1:6379 --route temporal=127.0.0.1:7243
                    --port-file FILE

Each route listens on a free loopback port; FILE gets one line per route,
"NAME PORT", and a last line "control PORT", written atomically once all
listen. The control port takes one line per connection and answers "ok":

  mode ROUTE|all pass   forward both ways (heal: held bytes go out in order)
  mode ROUTE|all hold   black hole: bytes held both ways, sockets left open,
                        new connections accepted but not connected upstream
  mode ROUTE|all asym   requests go through, replies are held (they arrive
                        late, at heal, as TCP would deliver them)
  mode ROUTE latch TEXT  pass, until a request carrying TEXT goes through on
                        a connection: from then on that connection is asym
                        (one request reaches the server, its reply waits for
                        the next "mode ROUTE pass"); others keep passing

Nothing is dropped from a stream (that would corrupt it, which no real
network does to TCP): held bytes are delivered when the route heals. A side
that closes while its bytes are held is closed on the other side only after
they were delivered. Exits on SIGTERM/SIGINT. Python stdlib only.
"""
import argparse
import os
import selectors
import signal
import socket
import sys

sel = selectors.DefaultSelector()
routes = {}  # name -> Route


class Route:
    def __init__(self, name, target):
        self.name = name
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.mode = "pass"
        self.latch = b""  # mode latch: the request text that makes a connection asym
        self.conns = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        sel.register(self.lsock, selectors.EVENT_READ, ("accept", self))


class Side:
    """One socket of a proxied connection and the bytes waiting to go to it."""

    def __init__(self, sock):
        self.sock = sock
        self.out = bytearray()  # bytes to write to this socket
        self.eof_in = False  # this socket said EOF (pending close of the peer)
        self.closed = False  # None: not connected (yet); closed: gone


class Conn:
    def __init__(self, route, client):
        self.route = route
        self.c = Side(client)
        self.s = Side(None)  # upstream, connected when the route passes
        self.held_up = bytearray()  # client->server, held
        self.held_down = bytearray()  # server->client, held
        self.latched = False  # mode latch: TEXT went through on this connection
        self.tail = b""  # the last request bytes (TEXT split across reads)
        client.setblocking(False)
        sel.register(client, selectors.EVENT_READ, ("c", self))
        route.conns.append(self)
        self.sync()

    def connect_upstream(self):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(self.route.target)
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            self.close()
            return
        self.s = Side(s)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, ("s", self))

    def sync(self):
        """Moves held bytes along as the route's mode allows; updates interest."""
        mode = self.route.mode
        if mode == "latch":
            mode = "asym" if self.latched else "pass"
        else:
            self.latched = False
        if mode == "pass" and self.s.sock is None and not self.s.closed:
            self.connect_upstream()
        if mode == "pass" and self.s.sock is not None:
            self.s.out += self.held_up
            self.held_up.clear()
        if mode == "asym" and self.s.sock is None and not self.s.closed:
            self.connect_upstream()
        if mode == "asym" and self.s.sock is not None:
            self.s.out += self.held_up
            self.held_up.clear()
        if mode == "pass":
            self.c.out += self.held_down
            self.held_down.clear()
        for side, tag in ((self.c, "c"), (self.s, "s")):
            if side.sock is None or side.closed:
                continue
            ev = selectors.EVENT_READ
            if side.out:
                ev |= selectors.EVENT_WRITE
            try:
                sel.modify(side.sock, ev, (tag, self))
            except (KeyError, ValueError):
                pass
        self.maybe_finish()

    def maybe_finish(self):
        # a side that said EOF: close the other once all its bytes are out
        if self.c.eof_in and not self.held_up and not self.s.out and self.s.sock is not None:
            self.close()
        elif self.s.eof_in and not self.held_down and not self.c.out:
            self.close()

    def close(self):
        for side in (self.c, self.s):
            if side.sock is not None and not side.closed:
                try:
                    sel.unregister(side.sock)
                except (KeyError, ValueError):
                    pass
                side.sock.close()
                side.closed = True
        if self in self.route.conns:
            self.route.conns.remove(self)

    def on_event(self, tag, mask):
        side = self.c if tag == "c" else self.s
        if side.closed:
            return
        if mask & selectors.EVENT_WRITE and side.out:
            try:
                n = side.sock.send(side.out)
                del side.out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
        if mask & selectors.EVENT_READ:
            try:
                data = side.sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                self.close()
                return
            if data == b"":
                side.eof_in = True
                try:
                    sel.unregister(side.sock)
                except (KeyError, ValueError):
                    pass
                # keep the socket open while the peer may still get bytes
                side.closed = True
                side.sock.close()
            elif data:
                if tag == "c":
                    r = self.route
                    if r.mode == "latch" and r.latch in self.tail + data:
                        self.latched = True
                    self.tail = (self.tail + data)[-len(r.latch):] if r.latch else b""
                    self.held_up += data
                else:
                    self.held_down += data
        self.sync()


def control(sock):
    sock.settimeout(2)
    try:
        line = sock.makefile("r").readline().split(" ", 3)
        line[-1] = line[-1].rstrip("\n")
        latch = len(line) == 4 and line[0] == "mode" and line[2] == "latch" and line[3] and line[1] in routes
        if latch or (len(line) == 3 and line[0] == "mode" and line[2] in ("pass", "hold", "asym")):
            names = list(routes) if line[1] == "all" else [line[1]]
            if all(n in routes for n in names):
                for n in names:
                    routes[n].mode = line[2]
                    routes[n].latch = line[3].encode() if latch else b""
                    for c in list(routes[n].conns):
                        c.sync()
                print(f"netfault_proxy: {' '.join(names)} -> {line[2]}", file=sys.stderr,
                      flush=True)
                sock.sendall(b"ok\n")
                return
        sock.sendall(b"error: mode ROUTE|all pass|hold|asym, or mode ROUTE latch TEXT\n")
    except OSError:
        pass
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--route", action="append", required=True, help="NAME=HOST:PORT")
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    for r in a.route:
        name, target = r.split("=", 1)
        routes[name] = Route(name, target)
    ctl = socket.socket()
    ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ctl.bind(("127.0.0.1", 0))
    ctl.listen(16)
    ctl.setblocking(False)
    sel.register(ctl, selectors.EVENT_READ, ("ctl", None))
    tmp = a.port_file + ".new"
    with open(tmp, "w") as f:
        for r in routes.values():
            f.write(f"{r.name} {r.port}\n")
        f.write(f"control {ctl.getsockname()[1]}\n")
    os.rename(tmp, a.port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:
        for key, mask in sel.select():
            tag, obj = key.data
            if tag == "accept":
                try:
                    client, _ = obj.lsock.accept()
                except BlockingIOError:
                    continue
                Conn(obj, client)
            elif tag == "ctl":
                try:
                    s, _ = ctl.accept()
                except BlockingIOError:
                    continue
                s.setblocking(True)
                control(s)
            else:
                obj.on_event(tag, mask)


if __name__ == "__main__":
    main()
