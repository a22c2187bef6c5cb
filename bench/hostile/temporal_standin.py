#!/usr/bin/env python3
"""A hostile stand-in for the Temporal HTTP API (bench/hostile/temporal_mem.sh).

  temporal_standin.py PORTFILE COUNTFILE MODE

MODE empty: every request is answered at once (keep-alive) with an empty
history page and a next-page token, as a real server answers an idle long
poll after ~20 s. MODE huge: every request gets 16 MiB (minus a little) of
empty JSON objects in the shape of the operation's reply (workflow
"strings": a 16 MiB history page of 16 events with ~1 MiB strings, the
largest kind that passes the parse-cost check). Writes its port to
PORTFILE once listening and the number of answers sent to COUNTFILE (after
each answer). Loopback only; stopped by SIGTERM.
"""
import http.server
import os
import sys

PORTFILE, COUNTFILE, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
EMPTY = (b'{"history":{"events":[]},"rawHistory":[],'
         b'"nextPageToken":"CiQ0ZjM4YjY1Zi1mMmQ4LTQ0YjYtOTUzNi0zNjQ1YzI4ZDY0YjYQAhgB",'
         b'"archived":false}')
SIZE = (16 << 20) - 256


def huge(prefix, suffix):
    n = (SIZE - len(prefix) - len(suffix) - 2) // 3
    return prefix + b"{}," * n + b"{}" + suffix


HUGE_HISTORY = huge(b'{"history":{"events":[', b']}}') if MODE == "huge" else b""
# The largest page that passes the parse-cost check: 16 events of ~1 MiB strings.
BIG_STRINGS = (b'{"history":{"events":[' + b",".join(
    b'{"eventId":"%d","eventType":"EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED","x":"%s"}'
    % (i, b"s" * ((SIZE - 4096) // 16)) for i in range(16)) + b']}}') if MODE == "huge" else b""
HUGE_DESCRIBE = huge(b'{"workflowExecutionInfo":{"execution":{"runId":"r"}},'
                     b'"pendingActivities":[', b']}') if MODE == "huge" else b""
count = 0


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global count
        if MODE == "empty":
            body = EMPTY
        elif "/workflows/strings/history" in self.path:
            body = BIG_STRINGS
        elif "/history" in self.path:
            body = HUGE_HISTORY
        else:
            body = HUGE_DESCRIBE
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        count += 1
        with open(COUNTFILE + ".new", "w") as f:
            f.write(str(count))
        os.replace(COUNTFILE + ".new", COUNTFILE)

    def log_message(self, *a):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(PORTFILE + ".new", "w") as f:
    f.write(str(srv.server_address[1]))
os.replace(PORTFILE + ".new", PORTFILE)
srv.serve_forever()
