#!/usr/bin/env python3
"""Writes the starting seeds of every fuzz target into tests/fuzz/corpus/<target>/
(named seed-<n>): inputs in each target's format that reach its interesting
paths at once. The checked-in corpora grew from these by fuzzing and were
minimized with -merge=1 (scripts/fuzz.sh); run this only to start over:

    tests/fuzz/seeds.py [CORPUS_DIR]
"""
import hashlib
import json
import os
import struct
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")


def write(target, items):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    for data in items:
        if isinstance(data, str):
            data = data.encode()
        name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


# ---- http_parse: [flags][ncuts][u16 cuts][reply]
H11 = "HTTP/1.1 200 OK\r\n"
replies = [
    H11 + "Content-Length: 5\r\n\r\nhello",
    H11 + "Content-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n",
    H11 + "Transfer-Encoding: chunked\r\n\r\n5;foo=bar\r\nhello\r\n7\r\n, world\r\n"
    "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n",
    H11 + "Transfer-Encoding: chunked\r\n\r\n2 ; a = \"x\\\"; y\" ;b;c=d\r\nhi\r\n000\r\n\r\n",
    H11 + "Connection: close\r\n\r\nthe body runs until EOF",
    "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
    "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    H11 + "X-A: one\r\n  two\r\nContent-Length: 2, 2\r\n\r\nok",
    H11 + "Content-Length: 2\r\nContent-Length: 4\r\n\r\nabcd",
    H11 + "Transfer-Encoding: notchunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    H11 + "Transfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n",
    "HTTP/1.1 \r\n \r\n\r\n200 OK",
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: 29\r\n\r\n{\"code\":14,\"message\":\"down\"}",
    "HELLO\r\n\r\n",
]
items = []
for r in replies:
    n = len(r)
    for flags in (0, 2, 4, 8):
        cuts = [n // 3, n // 2, n - 1]
        items.append(bytes([flags, len(cuts)]) + b"".join(struct.pack(">H", c) for c in cuts)
                     + r.encode())
write("http_parse", items)

# ---- temporal_reply: [op][reply]...; reply = [selector][u16 len][body]
SEL = {0: 0, 200: 1, 201: 4, 204: 5, 400: 6, 401: 7, 403: 8, 404: 9, 409: 10, 429: 11, 500: 12,
       501: 13, 503: 15, 302: 17}
OPS = ["start", "sws", "signal", "terminate", "describe", "history", "wait_close", "list"]


def reply(status, body):
    b = body if isinstance(body, bytes) else json.dumps(body).encode()
    return bytes([SEL[status]]) + struct.pack(">H", len(b)) + b


def payload(v):
    import base64
    return {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
            "data": base64.b64encode(json.dumps(v).encode()).decode()}


info = {"execution": {"workflowId": "dispatcher-p-q", "runId": "r1"},
        "type": {"name": "dispatchd.dispatcher"}, "taskQueue": "q",
        "status": "WORKFLOW_EXECUTION_STATUS_RUNNING",
        "startTime": "2026-11-23T12:33:05.835655703Z", "closeTime": "2026-11-23T13:00:00+01:00",
        "memo": {"fields": {"server_id": payload("host-1")}}}
event = {"eventId": "7", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED",
         "eventTime": "2026-11-23T12:33:05Z",
         "workflowExecutionTerminatedEventAttributes": {"reason": "takeover", "identity": "h2"}}
ok = {
    "start": {"runId": "r1", "started": True},
    "sws": {"runId": "r1"},
    "signal": {},
    "terminate": {},
    "describe": {"workflowExecutionInfo": info},
    "history": {"history": {"events": [event, {"eventId": 1, "eventType": "X"}]}},
    "wait_close": {"history": {"events": [event]}},
    "list": {"executions": [info, {"status": 5, "taskQueue": {"name": "q2"},
                                   "memo": {"fields": {"server_id": "\"plain\""}}}],
             "nextPageToken": "dG9r"},
}
errors = [(404, {"code": 5, "message": "workflow not found", "details": []}),
          (404, {"code": 5, "message": "Namespace fuzz-ns is not found.",
                 "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1."
                                       "NamespaceNotFoundFailure"}]}),
          (409, {"code": 6, "message": "already started",
                 "details": [{"@type": "WorkflowExecutionAlreadyStartedFailure", "runId": "r0"}]}),
          (400, {"code": 3, "message": "bad"}), (401, {"code": 16, "message": "no"}),
          (429, {"code": 8, "message": "slow down"}), (503, {"code": 14, "message": "down"}),
          (501, {"message": "nope"}), (302, b"<html>moved</html>"), (200, b"{not json")]
items = []
for i, op in enumerate(OPS):
    items.append(bytes([i]) + reply(200, ok[op]))
    items.append(bytes([i]) + reply(503, errors[6][1]) + reply(0, b"\x00") + reply(200, ok[op]))
    for st, body in errors:
        items.append(bytes([i]) + reply(st, body))
# pages and re-polls
items.append(bytes([5]) + reply(200, {"history": {"events": [event]}, "nextPageToken": "cA=="})
             + reply(200, ok["history"]))
items.append(bytes([6]) + reply(200, {"history": {"events": []}, "nextPageToken": "cA=="})
             + reply(200, ok["wait_close"]))
write("temporal_reply", items)

# ---- temporal_codec: [selector][payload]
write("temporal_codec", [
    b"\x00" + b"hello, world", b"\x00" + bytes(range(256)), b"\x00aGVsbG8=", b"\x00aGVsbG8",
    b"\x00-_-_", b"\x00a=b", b"\x01" + b"2026-11-23T12:33:05.835655703Z",
    b"\x01" + b"2026-11-23T12:33:05+05:30", b"\x01" + b"1969-12-31T23:59:59.1-00:30",
    b"\x01" + b"9999-12-31T23:59:59Z", b"\x01\x00\x01\x02\x03\x04\x05\x06\x07",
    b"\x02" + "a b/c?d=é%~".encode(), b"\x03terminate_existing",
    b"\x03WORKFLOW_ID_CONFLICT_POLICY_FAIL", b"\x03bad-name"])

# ---- options: [selector][payload]
write("options", [
    b"\x00" + b"1m30s", b"\x00250ms", b"\x005", b"\x001h", b"\x009223372036854775807ms",
    b"\x01--redis-url\x00redis://127.0.0.1:6379/0\x00--dispatcher\x00billing/emails\x00"
    b"--dispatcher=billing/invoices\x00--heartbeat-interval\x00300ms\x00--stale-threshold=1s\x00"
    b"--json\x00status\x00--\x00/bin/true\x00-x",
    b"\x01--terminate-rate\x001e3\x00--redis-port\x0065535\x00--log-level\x00debug",
    b"\x01-h\x00--help\x00--loop\x00--unknown", b"\x02project/queue/with/slashes",
    b"\x03\x0ca message that is longer than the buffer", b"\x04http://127.0.0.1:7243/api/x",
    b"\x04http://[::1]:7243", b"\x04http://user@h:1", b"\x04http://h:99999"])

# ---- store_url: [selector][payload]
write("store_url", [
    b"\x00redis://127.0.0.1:6379/0", b"\x00redis://:p%40ss@[::1]:6380/3",
    b"\x00redis://user:pa@ss@host/2", b"\x00unix:///run/redis.sock?db=4", b"\x00rediss://h",
    b"\x00redis://h:0", b"\x00ftp://x", b"\x00redis://h/abc", b"\x01dispatcher-p-q",
    b"\x07" + b"x" * 1000])

# ---- store_reply: [op][RESP]
rec = ("*16\r\n" + "".join("$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v) for k, v in [
    ("workflow_id", "dispatcher-p-q"), ("run_id", "r1"), ("server_id", "h1"), ("project", "p"),
    ("queue", "q"), ("hb_ms", "1700000000000"), ("ttl_ms", "15000"), ("epoch", "7")]))
write("store_reply", [
    b"\x00+PONG\r\n", b"\x01:5\r\n", b"\x02*1\r\n$2\r\nok\r\n",
    b"\x03*4\r\n$6\r\nfenced\r\n$2\r\nh2\r\n$2\r\nr2\r\n$1\r\n9\r\n", b"\x04:1\r\n", b"\x04:-1\r\n",
    b"\x05*2\r\n$1\r\na\r\n$1\r\nb\r\n:10\r\n:2\r\n" + rec.encode() + b"*2\r\n$5\r\nhb_ms\r\n$1\r\nx\r\n",
    b"\x06*0\r\n:0\r\n:0\r\n", b"\x07" + rec.encode(), b"\x07*0\r\n",
    b"\x08*2\r\n$1\r\nw\r\n$7\r\n1.7e+12\r\n", b"\x09+OK\r\n", b"\x09$-1\r\n", b"\x0a$2\r\nh1\r\n",
    b"\x0b:0\r\n", b"\x0c:1\r\n", b"\x0d-ERR wrong\r\n",
    b"\x0e*4\r\n$2\r\nw1\r\n$13\r\n1700000000000\r\n$2\r\nw2\r\n$3\r\n1e3\r\n",
    b"\x0f*2\r\n$2\r\nok\r\n*2\r\n$2\r\nw1\r\n$1\r\n5\r\n", b"\x0f*4\r\n+a\r\n+b\r\n+c\r\n+d\r\n"])

# ---- dispatcher_id: project NUL queue NUL project2 NUL queue2 NUL shift
write("dispatcher_id", [
    b"billing\x00emails\x00billing\x00invoices\x00\x03", b"a-b\x00c\x00a\x00b-c\x00\x01",
    "日本\x00队列~%/\x00x\x00y\x00\x05".encode(), b"p" * 300 + b"\x00q\x00" + b"p" * 300 + b"\x00r\x00\x07",
    b"dispatcher-a%2Db-c\x00x\x00\x00\x00", b"\xff\xfe\x00q\x00p\x00\x01\x00"])
