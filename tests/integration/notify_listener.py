#!/usr/bin/env python3
"""What systemd does with NOTIFY_SOCKET, for tests: bind a datagram socket
(a path, or @name for the abstract namespace) and append every message
received to OUT, one line each ("<monotonic seconds> <message>", newlines
inside a message shown as '|'). `send ADDR MSG` sends one datagram (a test's
marker: every datagram queued before it has been written once it appears).

  notify_listener.py listen ADDR OUT
  notify_listener.py send ADDR MSG
"""
import os
import socket
import sys
import time


def addr(a):
    return "\0" + a[1:] if a.startswith("@") else a


def main():
    cmd, a = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if cmd == "send":
        s.sendto(sys.argv[3].encode(), addr(a))
        return
    s.bind(addr(a))
    # ready: the socket exists (the test waits for this file)
    with open(sys.argv[3] + ".ready", "w"):
        pass
    with open(sys.argv[3], "a") as out:
        while True:
            msg = s.recv(65536).decode(errors="replace").replace("\n", "|")
            out.write("%.3f %s\n" % (time.monotonic(), msg))
            out.flush()


if __name__ == "__main__":
    main()
