#!/usr/bin/env python3
"""tls_proxy.py - a TLS-terminating TCP proxy for tests (python3 stdlib only).

Accepts TLS on 127.0.0.1, forwards the decrypted bytes to a plain TCP
upstream and back. With --client-ca it requires a client certificate signed
by that CA (mTLS). Prints the listening port on stdout (one line, flushed)
and, with --port-file, writes it there too (atomically) once it accepts.
Exits on SIGTERM or SIGINT. Handshake failures are logged on stderr and do
not stop the proxy.

  tls_proxy.py --cert server.pem --key server.key [--client-ca ca.pem]
               --upstream 127.0.0.1:7243 [--listen PORT] [--port-file FILE]
"""
import argparse
import os
import signal
import socket
import ssl
import sys
import threading


def log(msg):
    print("tls_proxy: " + msg, file=sys.stderr, flush=True)


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        # pass the EOF on; the other pump closes what is left
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except (OSError, ssl.SSLError):
                pass


def close_after_alert(tls):
    """Closes a connection whose handshake failed so that the client reads
    the alert: closing it with the client's first request unread would send
    a reset, which can overtake the alert (seen on a loaded machine: the
    client saw "connection reset by peer" instead of "certificate
    required"). So: FIN, read what the client sends until it closes
    (bounded), then close."""
    try:
        raw = socket.socket(fileno=tls.detach())
    except (OSError, ValueError):
        return
    try:
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(5)
        while raw.recv(65536):
            pass
    except OSError:
        pass
    raw.close()


def serve(conn, ctx, upstream):
    tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
    try:
        tls.do_handshake()
    except (OSError, ssl.SSLError) as e:
        log("handshake failed: %s" % e)
        close_after_alert(tls)
        return
    try:
        up = socket.create_connection(upstream, timeout=10)
        up.settimeout(None)
    except OSError as e:
        log("upstream %s:%d: %s" % (upstream[0], upstream[1], e))
        tls.close()
        return
    t = threading.Thread(target=pump, args=(up, tls), daemon=True)
    t.start()
    pump(tls, up)
    t.join()
    for s in (tls, up):
        try:
            s.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", help="require client certificates signed by this CA")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the plain server")
    ap.add_argument("--listen", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    ap.add_argument("--port-file")
    a = ap.parse_args()

    host, _, port = a.upstream.rpartition(":")
    upstream = (host or "127.0.0.1", int(port))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(64)
    chosen = ls.getsockname()[1]

    def stop(signum, frame):
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if a.port_file:
        tmp = a.port_file + ".new"
        with open(tmp, "w") as f:
            f.write("%d\n" % chosen)
        os.rename(tmp, a.port_file)
    print(chosen, flush=True)
    log("listening on 127.0.0.1:%d -> %s:%d%s" % (chosen, upstream[0], upstream[1],
                                                  " (client certificates required)"
                                                  if a.client_ca else ""))
    while True:
        try:
            conn, _ = ls.accept()
        except InterruptedError:
            continue
        threading.Thread(target=serve, args=(conn, ctx, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
