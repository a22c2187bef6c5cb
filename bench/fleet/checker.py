#!/usr/bin/env python3
"""checker.py - an independent checker for the fleet chaos bench (stdlib only).

It trusts nothing dispatchd says about itself: it never reads dispatchd's
logs, metrics or `status`. Its sources are
  * Temporal, through the HTTP API: visibility (running dispatcher
    executions per workflow ID and per project/queue, sampled while the
    bench runs, and every run with its start/close time at the end) and
    workflow histories (termination before the next start);
  * Redis, over its wire protocol (the dd:hb:{wid} records, the index and the
    workers zsets), sampled while the bench runs;
  * the children's own start/tick/stop lines (bench/fleet/child.py);
  * the harness's event log (what was done to which process, and when).

  checker.py watch --dir DIR --redis-port P --temporal-url URL [--interval-ms 100]
                   [--workflow-type T] [--tls-ca-file CA]
      samples Redis and Temporal into DIR/watch.jsonl until SIGTERM (the
      running executions of type T, default dispatchd.dispatcher; with
      --redis-port 0 Temporal only: MODE=workflow, see wfchecker.py;
      --tls-ca-file: Redis over TLS, run.sh TLS=1).
  checker.py check --dir DIR --temporal-url URL --redis-port P [--window-ms W]
      analyses DIR and prints a report (DIR/report.json too); exits 1 when
      an invariant breaks, 0 otherwise.

Invariants (any breach -> exit 1):
  I1 never two running executions of one workflow ID, nor of one
     (project, queue) - in any sample, and in Temporal's own start/close
     times of every run;
  I2 never two children acting at once for one dispatcher for longer than
     the allowed overlap window (--window-ms);
  I3 histories: a run that was replaced ends (TERMINATED) no later than its
     successor's WorkflowExecutionStarted;
  I4 at the end (settled): every dispatcher has exactly one running
     execution, its Redis record names that run, and exactly one child acts,
     for that run;
  I5 every failover after a crash happened (no dispatcher left ownerless
     past the harness's bounded wait);
  I6 no ownership moves during a skew hold (skew_hold_start .. skew_hold_end:
     hosts on clocks +-8 s off, no fault): no child starts in that span.
Latency targets are reported, and also enforced when --enforce-targets is
given (the smoke test does). --latency-factor F (default 1) stretches their
slack - 1000 ms handovers, the 2 s over the threshold - by F: run.sh passes
1 / (1 - CPU pressure), at most 10, with LATENCY_FACTOR=auto (the smoke test), so a run
on a machine whose CPUs other work keeps busy is held to what that machine
can give; the report shows the factor and the stretched limits.
"""
import argparse
import bisect
import json
import os
import signal
import socket
import ssl
import statistics
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime

WF_TYPE = "dispatchd.dispatcher"


# ---------------------------------------------------------------- Redis (RESP)
class Redis:
    def __init__(self, port, host="127.0.0.1", timeout=1.0, sentinel=None, tls_ca=None):
        self.addr = (host, port)
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        # (sentinel port, master name): the primary is asked for at every
        # (re)connect, so the watch follows failovers (run.sh SENTINEL=1)
        self.sentinel = sentinel
        # a CA file: TLS (run.sh TLS=1), Python's own ssl, verifying the
        # server's certificate and its name (an IP SAN), not dispatchd's code
        self.tls = ssl.create_default_context(cafile=tls_ca) if tls_ca else None

    def _connect(self):
        if self.sentinel:
            s = Redis(self.sentinel[0], timeout=self.timeout)
            try:
                host, port = s.call("SENTINEL", "get-master-addr-by-name", self.sentinel[1])
            finally:
                s.close()
            self.addr = (host, int(port))
        self.sock = socket.create_connection(self.addr, timeout=self.timeout)
        if self.tls:
            try:
                self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.addr[0])
            except OSError:
                self.close()
                raise
        self.buf = b""

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("redis closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("redis closed")
            self.buf += d
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)

    def call(self, *args):
        if self.sock is None:
            self._connect()
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        try:
            self.sock.sendall(out)
            return self._reply()
        except (OSError, ConnectionError):
            self.close()
            raise


SNAPSHOT_LUA = """
local out = {}
for _, k in ipairs(redis.call('KEYS', 'dd:hb:{*')) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('HGETALL', k)
end
local idx = redis.call('ZRANGE', 'dd:hb:index', 0, -1, 'WITHSCORES')
local w = {}
for _, k in ipairs(redis.call('KEYS', 'dd:workers:{*')) do
  w[#w + 1] = k
  w[#w + 1] = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
end
return {out, idx, w}
"""


def sentinel_of(a):
    return (a.sentinel_port, a.master_name) if getattr(a, "sentinel_port", 0) else None


def redis_snapshot(r):
    recs_raw, idx_raw, w_raw = r.call("EVAL", SNAPSHOT_LUA, 0)
    recs = {}
    for i in range(0, len(recs_raw), 2):
        key = recs_raw[i]
        kv = recs_raw[i + 1]
        recs[key[len("dd:hb:{"):-1]] = {kv[j]: kv[j + 1] for j in range(0, len(kv), 2)}
    idx = {idx_raw[i]: idx_raw[i + 1] for i in range(0, len(idx_raw), 2)}
    workers = {}
    for i in range(0, len(w_raw), 2):
        key = w_raw[i]
        kv = w_raw[i + 1]
        workers[key[len("dd:workers:{"):-1]] = {kv[j]: kv[j + 1] for j in range(0, len(kv), 2)}
    return {"hb": recs, "index": idx, "workers": workers}


# ---------------------------------------------------------------- Temporal HTTP
def http_json(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def list_executions(base, query, page_size=1000, max_pages=1000):
    out, token = [], ""
    for _ in range(max_pages):
        q = {"query": query, "pageSize": str(page_size)}
        if token:
            q["nextPageToken"] = token
        d = http_json(base + "/api/v1/namespaces/default/workflows?" + urllib.parse.urlencode(q))
        out.extend(d.get("executions", []))
        token = d.get("nextPageToken") or ""
        if not token:
            break
    return out


def parse_ts(s):
    """RFC3339 with up to nanoseconds -> epoch microseconds."""
    if not s:
        return None
    s = s.rstrip("Z")
    frac = "0"
    if "." in s:
        s, frac = s.split(".", 1)
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S")
    base = int((dt - datetime(1970, 1, 1)).total_seconds()) * 1000000
    return base + int((frac + "000000")[:6])


def exec_pq(e):
    f = (e.get("memo") or {}).get("fields") or {}
    p, q = f.get("project"), f.get("queue")
    if isinstance(p, dict) or isinstance(q, dict):  # undecoded payloads
        return None
    return (p, q) if p is not None and q is not None else None


# ---------------------------------------------------------------- watch
def now_us():
    return time.time_ns() // 1000


def cmd_watch(a):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    out = open(os.path.join(a.dir, "watch.jsonl"), "a", buffering=1)
    r = Redis(a.redis_port, timeout=0.5, sentinel=sentinel_of(a), tls_ca=a.tls_ca_file) if a.redis_port else None
    q = "WorkflowType='%s' AND ExecutionStatus='Running'" % a.workflow_type
    last_r = last_t = None
    last_r_err = last_t_err = None
    next_t = 0
    end = time.monotonic() + a.max_seconds
    while not stop and time.monotonic() < end:
        t0 = now_us()
        try:
            if r is None:
                raise LookupError("no redis")
            snap = redis_snapshot(r)
            if snap != last_r:
                out.write(json.dumps({"t": t0, "src": "redis", "snap": snap}) + "\n")
                last_r = snap
            last_r_err = None
        except LookupError:
            pass
        except Exception as e:  # noqa: BLE001 - any failure is an observation
            msg = type(e).__name__
            if msg != last_r_err:
                out.write(json.dumps({"t": t0, "src": "redis", "err": str(e)[:200]}) + "\n")
                last_r_err = msg
                last_r = None
        if time.monotonic() >= next_t:
            next_t = time.monotonic() + a.temporal_interval_ms / 1000.0
            t1 = now_us()
            try:
                ex = list_executions(a.temporal_url, q, page_size=1000, max_pages=20)
                running = sorted(
                    (e["execution"]["workflowId"], e["execution"]["runId"],
                     "%s/%s" % exec_pq(e) if exec_pq(e) else "")
                    for e in ex)
                if running != last_t:
                    out.write(json.dumps({"t": t1, "src": "temporal", "running": running}) + "\n")
                    last_t = running
                last_t_err = None
            except Exception as e:  # noqa: BLE001
                msg = type(e).__name__
                if msg != last_t_err:
                    out.write(json.dumps({"t": t1, "src": "temporal", "err": str(e)[:200]}) + "\n")
                    last_t_err = msg
                    last_t = None
        time.sleep(max(0.0, a.interval_ms / 1000.0 - (now_us() - t0) / 1e6))
    out.close()
    return 0


# ---------------------------------------------------------------- analysis helpers
def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def dist(xs_us):
    """Distribution in milliseconds."""
    xs = [x / 1000.0 for x in xs_us]
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "min": round(min(xs), 1), "p50": round(pct(xs, 50), 1),
            "p90": round(pct(xs, 90), 1), "p95": round(pct(xs, 95), 1),
            "p99": round(pct(xs, 99), 1), "max": round(max(xs), 1),
            "mean": round(statistics.mean(xs), 1)}


def read_events(path):
    ev = []
    if not os.path.exists(path):
        return ev
    for line in open(path):
        f = line.split()
        if len(f) >= 2:
            ev.append({"t": int(f[0]), "kind": f[1], "args": f[2:]})
    ev.sort(key=lambda e: e["t"])
    return ev


class Instance:
    __slots__ = ("wid", "run", "server", "pid", "times", "start", "stopped", "segs")

    def __init__(self, wid, run, server, pid):
        self.wid, self.run, self.server, self.pid = wid, run, server, pid
        self.times, self.start, self.stopped, self.segs = [], None, None, []


def read_children(path, tick_us, split_us):
    """-> {wid: [Instance]} with acting segments [(start, end)].

    Acting = the child wrote start/tick lines. A gap longer than split_us
    (frozen, or dead) ends a segment; a segment that does not end with the
    child's own 'stop' line is extended by one tick (it may have acted until
    just before it died), which can only make overlaps larger."""
    inst = {}
    if not os.path.exists(path):
        return {}
    for line in open(path):
        f = line.split()
        if len(f) < 6 or f[0] not in ("start", "tick", "stop"):
            continue
        kind, t, wid, run, server, pid = f[0], int(f[1]), f[2], f[3], f[4], f[5]
        key = (wid, run, pid)
        i = inst.get(key)
        if i is None:
            i = inst[key] = Instance(wid, run, server, pid)
        i.times.append(t)
        if kind == "start":
            i.start = t
        elif kind == "stop":
            i.stopped = t
    by = {}
    for i in inst.values():
        ts = sorted(i.times)
        seg_s = prev = ts[0]
        for t in ts[1:]:
            if t - prev > split_us:
                i.segs.append((seg_s, prev + tick_us))
                seg_s = t
            prev = t
        end = prev if (i.stopped is not None and prev == i.stopped) else prev + tick_us
        i.segs.append((seg_s, end))
        by.setdefault(i.wid, []).append(i)
    for l in by.values():
        l.sort(key=lambda i: i.segs[0][0])
    return by


def overlaps(instances):
    """All pairwise overlaps between segments of different instances."""
    segs = sorted((s, e, n) for n, i in enumerate(instances) for (s, e) in i.segs)
    res, active = [], []
    for s, e, n in segs:
        active = [x for x in active if x[1] > s]
        for (s2, e2, n2) in active:
            if n2 != n:
                o = min(e, e2) - s
                if o > 0:
                    res.append((s, o, instances[n2], instances[n]))
        active.append((s, e, n))
    return res


def owner_at(instances, t):
    for i in instances:
        for s, e in i.segs:
            if s <= t < e:
                return i
    return None


def next_start_after(instances, t, exclude, server=None, limit_us=None):
    best = None
    for i in instances:
        if i is exclude:
            continue
        if server is not None and i.server != server:
            continue
        for s, _ in i.segs:
            if s >= t and (limit_us is None or s - t <= limit_us):
                if best is None or s < best[0]:
                    best = (s, i)
                break
    return best


def cause_of(events, t):
    """The last harness event at or before t."""
    ts = [e["t"] for e in events]
    k = bisect.bisect_right(ts, t) - 1
    return events[k] if k >= 0 else None


# ---------------------------------------------------------------- check
def cmd_check(a):
    d = a.dir
    events = read_events(os.path.join(d, "events.log"))
    tick_us = int(a.tick_ms * 1000)
    split_us = int(a.split_ms * 1000)
    window_us = int(a.window_ms * 1000)
    children = read_children(os.path.join(d, "children.log"), tick_us, split_us)
    t_children_read = now_us()
    violations = []
    rep = {"window_ms": a.window_ms, "tick_ms": a.tick_ms, "split_ms": a.split_ms}

    # ---- counts of what the harness did
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    rep["harness_events"] = kinds
    rep["restarts_and_crashes"] = sum(kinds.get(k, 0) for k in (
        "host_term", "host_kill9", "host_stop", "host_partition", "redis_stop", "temporal_stop",
        "worker_kill9", "primary_failover", "primary_kill9"))

    # ---- I2: children acting at once
    all_ov = []
    for wid, insts in children.items():
        for (t, o, i1, i2) in overlaps(insts):
            c = cause_of(events, t)
            all_ov.append({"wid": wid, "t": t, "overlap_us": o,
                           "a": "%s/%s" % (i1.server, i1.run[:13]),
                           "b": "%s/%s" % (i2.server, i2.run[:13]),
                           "cause": c["kind"] + " " + " ".join(c["args"]) if c else "",
                           "cause_kind": c["kind"] if c else ""})
    by_cause = {}
    for o in all_ov:
        by_cause.setdefault(o["cause_kind"], []).append(o["overlap_us"])
    rep["overlaps"] = {"all": dist([o["overlap_us"] for o in all_ov]),
                       "by_cause": {k: dist(v) for k, v in sorted(by_cause.items())}}
    # The window allows for graceful handovers' milliseconds; a partition must
    # never let two children act at once beyond one tick (issue 18).
    dups = [o for o in all_ov if o["overlap_us"] > window_us or
            (o["cause_kind"] in ("host_partition", "host_heal") and o["overlap_us"] > tick_us)]
    rep["duplicate_children"] = len(dups)
    for o in dups[:50]:
        violations.append("I2 two children acted at once for %s for %.1f ms (> window %.0f ms): %s and %s, after '%s'"
                          % (o["wid"], o["overlap_us"] / 1000, a.window_ms, o["a"], o["b"], o["cause"]))
    if len(dups) > 50:
        violations.append("I2 ... and %d more" % (len(dups) - 50))

    # ---- I1 (samples): two running executions in one visibility sample
    watch = []
    wpath = os.path.join(d, "watch.jsonl")
    if os.path.exists(wpath):
        for line in open(wpath):
            try:
                watch.append(json.loads(line))
            except ValueError:
                pass
    tsamples = [w for w in watch if w["src"] == "temporal" and "running" in w]
    rsamples = [w for w in watch if w["src"] == "redis"]
    dup_samples = 0
    suspects = []  # (what, [(key, [run ids])]): confirmed or cleared by the histories below
    for w in tsamples:
        per_id, per_pq = {}, {}
        for wid, run, pq in w["running"]:
            per_id.setdefault(wid, set()).add(run)
            if pq:
                per_pq.setdefault(pq, set()).add(run)
        bad = [(k, sorted(v)) for k, v in per_id.items() if len(v) > 1] + \
              [(k, sorted(v)) for k, v in per_pq.items() if len(v) > 1]
        if bad:
            dup_samples += 1
            suspects.append(("visibility sample at %d" % w["t"], bad))
    rep["visibility_samples_changed"] = len(tsamples)
    rep["redis_samples_changed"] = len(rsamples)

    # ---- I1 (Temporal's own times) and I3 (histories)
    runs = []
    try:
        runs = list_executions(a.temporal_url, "WorkflowType='%s'" % WF_TYPE)
    except Exception as e:  # noqa: BLE001
        violations.append("cannot list executions from Temporal: %s" % e)
    run_info = {}
    per_pq = {}
    for e in runs:
        wid, rid = e["execution"]["workflowId"], e["execution"]["runId"]
        st, ct = parse_ts(e.get("startTime")), parse_ts(e.get("closeTime"))
        run_info[rid] = {"wid": wid, "start": st, "close": ct, "status": e.get("status")}
        pq = exec_pq(e)
        per_pq.setdefault(pq or wid, []).append((st, ct if ct else 1 << 62, wid, rid))
    overl_runs = 0
    successors = []
    for pq, l in per_pq.items():
        l.sort()
        for k in range(1, len(l)):
            prev, cur = l[k - 1], l[k]
            successors.append((prev, cur))
            if prev[1] > cur[0]:
                overl_runs += 1
                suspects.append(("visibility start/close times (%d us)" % (prev[1] - cur[0]),
                                 [(str(pq), [prev[3], cur[3]])]))
    # Visibility is an eventually consistent index; the histories are the
    # record. A suspect pair is a duplicate unless the older run's history
    # ends (closed) no later than the newer run's WorkflowExecutionStarted.
    hcache = {}

    def span_of(rid):
        if rid in hcache:
            return hcache[rid]
        wid = run_info.get(rid, {}).get("wid")
        res = None
        if wid:
            try:
                evs = http_json("%s/api/v1/namespaces/default/workflows/%s/history?execution.runId=%s"
                                % (a.temporal_url, urllib.parse.quote(wid), rid))["history"]["events"]
                st = parse_ts(evs[0]["eventTime"])
                last = evs[-1]
                closed = "COMPLETED" in last["eventType"] or "TERMINATED" in last["eventType"] or \
                    "FAILED" in last["eventType"] or "CANCELED" in last["eventType"] or \
                    "TIMED_OUT" in last["eventType"] or "CONTINUED_AS_NEW" in last["eventType"]
                reason = (last.get("workflowExecutionTerminatedEventAttributes") or {}).get("reason", "")
                res = (st, parse_ts(last["eventTime"]) if closed else None, reason)
            except Exception:  # noqa: BLE001
                res = None
        hcache[rid] = res
        return res

    # TERMINATE_EXISTING ends the old run and starts the new one in ONE
    # server step (the old run's reason is the server's "TerminateIfRunning
    # ..."); the two events' times are taken separately and, about 4 times
    # in 14 000 runs here, come out up to 65 us inverted. No two runs were
    # running at any moment a client could observe, so such an inversion -
    # only that reason, only within 1 ms - is reported, not failed. Every
    # other inversion still fails I1/I3.
    inversions = []

    def server_step(reason, inverted_us):
        return reason.startswith("TerminateIfRunning") and 0 < inverted_us <= 1000

    lag = []
    for what, items in suspects:
        for key, rids in items:
            spans = [(span_of(r), r) for r in rids]
            if any(sp is None for sp, _ in spans):
                violations.append("I1 %s: two running executions for %s (%s), histories unreadable"
                                  % (what, key, rids))
                continue
            spans.sort(key=lambda x: x[0][0])
            ok = all(spans[k - 1][0][1] is not None and spans[k - 1][0][1] <= spans[k][0][0]
                     for k in range(1, len(spans)))
            step = not ok and all(spans[k - 1][0][1] is not None and
                                  server_step(spans[k - 1][0][2], spans[k - 1][0][1] - spans[k][0][0])
                                  for k in range(1, len(spans)))
            if step:
                inversions.append("%s: %s %s" % (what, key, rids))
            elif ok:
                lag.append("%s: %s %s" % (what, key, rids))
            else:
                worst = max((spans[k - 1][0][1] or 1 << 62) - spans[k][0][0] for k in range(1, len(spans)))
                violations.append("I1 %s: two running executions for %s (%s), confirmed by the histories "
                                  "(older run closed %d us after the newer one started)"
                                  % (what, key, rids, worst))
    rep["i1_suspects_cleared_by_histories"] = {"n": len(lag), "examples": lag[:20]}
    rep["temporal_runs_total"] = len(runs)
    rep["temporal_run_overlaps"] = overl_runs
    # I3 on a bounded sample of successions (each is two history reads)
    hist_checked = 0
    step = max(1, len(successors) // max(1, a.history_sample))
    for prev, cur in successors[::step][: a.history_sample]:
        try:
            h1 = http_json("%s/api/v1/namespaces/default/workflows/%s/history?execution.runId=%s"
                           % (a.temporal_url, urllib.parse.quote(prev[2]), prev[3]))["history"]["events"]
            h2 = http_json("%s/api/v1/namespaces/default/workflows/%s/history?execution.runId=%s"
                           % (a.temporal_url, urllib.parse.quote(cur[2]), cur[3]))["history"]["events"]
        except Exception as e:  # noqa: BLE001
            violations.append("I3 cannot read histories of %s: %s" % (prev[2], e))
            continue
        hist_checked += 1
        last, first = h1[-1], h2[0]
        if last["eventType"] != "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED":
            violations.append("I3 run %s of %s ends with %s, not a termination" % (prev[3], prev[2], last["eventType"]))
        elif parse_ts(last["eventTime"]) > parse_ts(first["eventTime"]):
            reason = (last.get("workflowExecutionTerminatedEventAttributes") or {}).get("reason", "")
            if server_step(reason, parse_ts(last["eventTime"]) - parse_ts(first["eventTime"])):
                inversions.append("I3 %s: %s -> %s" % (prev[2], prev[3], cur[3]))
            else:
                violations.append("I3 run %s terminated after its successor %s started" % (prev[3], cur[3]))
    rep["histories_checked"] = hist_checked
    rep["terminate_existing_inversions"] = {"n": len(inversions), "examples": inversions[:20]}

    # ---- latencies from the harness's actions and the children's lines
    lim = int(a.failover_limit_s * 1e6)
    lat = {"graceful_handover": [], "failover_kill9": [], "failover_sigstop": [],
           "failover_partition": [],
           "takeover_at_start": [], "takeover_gap": [], "zombie_fenced_after_cont": [],
           "cleanup_kill9": [], "cleanup_kill9_temporal": [], "cleanup_kill9_redis": [],
           "eviction": [], "redis_restart_disruption": [], "temporal_restart_disruption": [],
           "primary_failover_disruption": [], "primary_kill9_disruption": [],
           "sentinel_switch_failover": [], "sentinel_switch_kill9": []}
    missing = []

    def rec_changed_after(wid, run, t):
        """First Redis sample at/after t whose record of wid no longer names run."""
        for w in rsamples:
            if w["t"] < t or "snap" not in w:
                continue
            r = w["snap"]["hb"].get(wid)
            if r is None or r.get("run_id") != run:
                return w["t"]
        return None

    for e in events:
        k, t = e["kind"], e["t"]
        if k == "host_partition" and e["args"][1:] == ["temporal"]:
            continue  # cut off from Temporal only: nobody may take over
        if k in ("host_term", "host_kill9", "host_stop", "host_partition"):
            host = e["args"][0]
            for wid, insts in children.items():
                cur = owner_at(insts, t)
                if cur is None or cur.server != host:
                    continue
                nxt = next_start_after(insts, t, cur, limit_us=lim)
                key = {"host_term": "graceful_handover", "host_kill9": "failover_kill9",
                       "host_stop": "failover_sigstop", "host_partition": "failover_partition"}[k]
                if nxt is None:
                    missing.append("%s %s at %d: no other child acted on %s within %.0f s"
                                   % (k, host, t, wid, a.failover_limit_s))
                    continue
                lat[key].append(nxt[0] - t)
                if k in ("host_kill9", "host_stop") and cur.run in run_info:
                    ct = run_info[cur.run]["close"]
                    rt = rec_changed_after(wid, cur.run, t)
                    pre = "cleanup_kill9" if k == "host_kill9" else "cleanup_sigstop"
                    if ct:
                        lat.setdefault(pre + "_temporal", []).append(ct - t)
                    if rt:
                        lat.setdefault(pre + "_redis", []).append(rt - t)
                    if ct and rt:
                        lat.setdefault(pre, []).append(max(ct, rt) - t)
                    elif k == "host_kill9":
                        missing.append("kill9 %s: run %s of %s not cleaned up (closed=%s, record moved=%s)"
                                       % (host, cur.run, wid, ct, rt))
        if k == "host_cont":
            host = e["args"][0]
            for wid, insts in children.items():
                for i in insts:
                    if i.server != host or i.start is None or i.start >= t:
                        continue
                    for s, en in i.segs:
                        # the zombie's child acting when it woke (it never
                        # stopped: daemon scope) or right after (frozen with it)
                        if en > t and s < t + 1000000:
                            lat["zombie_fenced_after_cont"].append(en - t)
        if k == "host_start":
            host = e["args"][0]
            for wid, insts in children.items():
                prev = owner_at(insts, t)
                nxt = next_start_after(insts, t, None, server=host, limit_us=lim)
                if nxt is None:
                    continue
                lat["takeover_at_start"].append(nxt[0] - t)
                if prev is not None and prev is not nxt[1]:
                    pend = max(en for s, en in prev.segs if s <= t)
                    lat["takeover_gap"].append(nxt[0] - pend)  # negative = overlap
        if k == "worker_kill9":
            wid, wsid = e["args"][0], e["args"][1]
            for w in rsamples:
                if w["t"] >= t and "snap" in w and wsid not in w["snap"]["workers"].get(wid, {}):
                    lat["eviction"].append(w["t"] - t)
                    break
            else:
                missing.append("worker %s of %s killed at %d was never evicted" % (wsid, wid, t))

    # disruption of Redis / Temporal restarts: stop -> every dispatcher acting again
    # a primary switch (run.sh SENTINEL=1): the sentinels' own switch time
    # (action -> a sentinel names another primary, polled every 20 ms)
    for i, e in enumerate(events):
        if e["kind"] in ("primary_failover", "primary_kill9"):
            for f in events[i + 1:]:
                if f["kind"] == "primary_switched":
                    lat["sentinel_switch_" + e["kind"][len("primary_"):]].append(f["t"] - e["t"])
                    break
    for e in events:
        if e["kind"] in ("redis_stop", "temporal_stop", "primary_failover", "primary_kill9"):
            t = e["t"]
            worst = 0
            # a primary switch: continuously for longer than any acting
            # deadline (threshold + 2 s), or an owner still writing to the
            # old node would count as acting until its deadline stops it
            need = 1000000
            if e["kind"].startswith("primary_"):
                need = int((a.stale_threshold_s + 2) * 1e6)
            for wid, insts in children.items():
                # first moment after t at which some child acts continuously on wid for >= need
                ok_at = None
                for i in insts:
                    for s, en in i.segs:
                        if en - max(s, t) >= need and en > t:
                            cand = max(s, t)
                            ok_at = cand if ok_at is None else min(ok_at, cand)
                if ok_at is not None:
                    worst = max(worst, ok_at - t)
            lat[{"redis_stop": "redis_restart_disruption",
                 "temporal_stop": "temporal_restart_disruption",
                 "primary_failover": "primary_failover_disruption",
                 "primary_kill9": "primary_kill9_disruption"}[e["kind"]]].append(worst)
    rep["latency_ms"] = {k: dist(v) for k, v in lat.items()}
    rep["gap_after_takeover_note"] = "takeover_gap = new child start - previous child end (negative = overlap)"
    for m in missing[:50]:
        violations.append("I5 " + m)

    # ---- I6: clock skew alone moves nothing
    holds, moved = 0, 0
    open_hold = None
    for e in events:
        if e["kind"] == "skew_hold_start":
            open_hold = e["t"]
        elif e["kind"] == "skew_hold_end" and open_hold is not None:
            holds += 1
            for wid, insts in children.items():
                for i in insts:
                    if i.start is not None and open_hold <= i.start <= e["t"]:
                        moved += 1
                        violations.append("I6 %s moved to %s during a skew hold (%s)"
                                          % (wid, i.server, " ".join(e["args"])))
            open_hold = None
    rep["skew_holds"] = {"holds": holds, "ownership_moves": moved}

    # ---- reconcile error rate (the harness runs the cycles, rc from the exit code)
    rc = [e for e in events if e["kind"] == "reconcile"]
    errs = [e for e in rc if e["args"] and e["args"][0] != "0"]
    rep["reconcile"] = {"cycles": len(rc), "errors": len(errs),
                        "error_rate": (len(errs) / len(rc)) if rc else None}

    # ---- resources (measured by the harness from /proc)
    res = [e for e in events if e["kind"] == "idle_sample"]
    if res:
        rep["idle"] = [dict(x.split("=", 1) for x in e["args"]) for e in res]

    # ---- I4: the settled end state, read live
    if a.final:
        try:
            r = Redis(a.redis_port, timeout=2, sentinel=sentinel_of(a), tls_ca=a.tls_ca_file)
            snap = redis_snapshot(r)
            running = list_executions(a.temporal_url, "WorkflowType='%s' AND ExecutionStatus='Running'" % WF_TYPE)
            run_by_wid = {}
            for e in running:
                run_by_wid.setdefault(e["execution"]["workflowId"], []).append(e["execution"]["runId"])
            tend = t_children_read
            live = {}
            for wid, insts in children.items():
                live[wid] = [i for i in insts if i.stopped is None and i.times[-1] > tend - 1500000]
            expected = [l for l in open(os.path.join(d, "dispatchers")).read().split()] \
                if os.path.exists(os.path.join(d, "dispatchers")) else sorted(children)
            for wid in expected:
                rr = run_by_wid.get(wid, [])
                rec = snap["hb"].get(wid, {})
                lv = live.get(wid, [])
                if len(rr) != 1:
                    violations.append("I4 %s has %d running executions at the end" % (wid, len(rr)))
                    continue
                if rec.get("run_id") != rr[0]:
                    violations.append("I4 %s: Redis record names run %s, Temporal runs %s" % (wid, rec.get("run_id"), rr[0]))
                if len(lv) != 1 or lv[0].run != rr[0]:
                    violations.append("I4 %s: %d children acting at the end (%s), running run %s"
                                      % (wid, len(lv), [i.run for i in lv], rr[0]))
            rep["final_dispatchers_checked"] = len(expected)
        except Exception as e:  # noqa: BLE001
            violations.append("I4 cannot read the final state: %s" % e)

    # ---- the etcd anchor (same child, same rules)
    etcd = read_children(os.path.join(d, "etcd_children.log"), tick_us, split_us)
    if etcd:
        ev_k = [e for e in events if e["kind"] == "etcd_kill9"]
        fo, ov = [], []
        for wid, insts in etcd.items():
            for (t, o, i1, i2) in overlaps(insts):
                ov.append(o)
            for e in ev_k:
                cur = owner_at(insts, e["t"])
                if cur is None:
                    continue
                nxt = next_start_after(insts, e["t"], cur, limit_us=lim)
                if nxt:
                    fo.append(nxt[0] - e["t"])
                else:
                    violations.append("etcd anchor: no failover after kill at %d" % e["t"])
        dk = [e for e in events if e["kind"] == "host_kill9"]
        rep["anchor"] = {"etcd_failover_kill9": dist(fo), "etcd_overlaps": dist(ov),
                         "etcd_kills": len(ev_k),
                         "etcd_overlaps_over_window": sum(1 for o in ov if o > window_us),
                         "dispatchd_failover_kill9": dist(lat["failover_kill9"]),
                         "dispatchd_kills": len(dk)}
        if any(o > window_us for o in ov):
            # reported, and it is an invariant of the anchor too
            violations.append("anchor: etcd lock let two children act at once beyond the window (%d times)"
                              % sum(1 for o in ov if o > window_us))

    # ---- targets
    thr = a.stale_threshold_s * 1000
    f = a.latency_factor
    rep["latency_factor"] = f
    tg = []

    def target(name, value, limit):
        ok = value is not None and value <= limit
        tg.append({"target": name, "value": value, "limit": limit, "met": ok})
        return ok

    L = rep["latency_ms"]
    target("graceful handover (SIGTERM of the owner -> successor acting) p95 < 1000 ms",
           L["graceful_handover"].get("p95"), 1000 * f)
    target("graceful handover (takeover at start: host start -> its child acting) p95 < 1000 ms",
           L["takeover_at_start"].get("p95"), 1000 * f)
    target("failover after kill -9 p95 <= threshold + 2 s", L["failover_kill9"].get("p95"), thr + 2000 * f)
    target("stale cleanup p95 <= threshold + 2 s", L["cleanup_kill9"].get("p95"), thr + 2000 * f)
    if rep["reconcile"]["cycles"]:
        target("reconcile errors < 1 % of cycles", rep["reconcile"]["error_rate"], 0.00999)
    if rep.get("idle"):
        target("dispatchd RSS < 10 MB per host (max VmRSS, kB)",
               max(int(x["rss_kb"]) for x in rep["idle"]), 10239)
        target("idle CPU < 0.5 % per host (max over hosts, %)",
               max(float(x["cpu_pct"]) for x in rep["idle"]), 0.4999)
    rep["targets"] = tg
    if a.enforce_targets:
        for x in tg:
            if not x["met"]:
                violations.append("target missed: %s (measured %s)" % (x["target"], x["value"]))

    rep["violations"] = violations
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    print(json.dumps({k: v for k, v in rep.items() if k != "violations"}, indent=1))
    if violations:
        print("\nINVARIANT VIOLATIONS (%d):" % len(violations))
        for v in violations[:100]:
            print("  " + v)
        return 1
    print("\nchecker: all invariants hold")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--dir", required=True)
    w.add_argument("--redis-port", type=int, required=True)
    w.add_argument("--temporal-url", required=True)
    w.add_argument("--interval-ms", type=float, default=100)
    w.add_argument("--temporal-interval-ms", type=float, default=250)
    w.add_argument("--max-seconds", type=float, default=7200)
    w.add_argument("--workflow-type", default=WF_TYPE)
    for x in (w,):
        x.add_argument("--sentinel-port", type=int, default=0,
                       help="read the primary a sentinel names for --master-name instead")
        x.add_argument("--master-name", default="")
        x.add_argument("--tls-ca-file", default=None, help="speak TLS to Redis, trusting this CA")
    c = sub.add_parser("check")
    c.add_argument("--dir", required=True)
    c.add_argument("--temporal-url", required=True)
    c.add_argument("--redis-port", type=int, required=True)
    c.add_argument("--window-ms", type=float, default=250)
    c.add_argument("--tick-ms", type=float, default=100)
    c.add_argument("--split-ms", type=float, default=1000)
    c.add_argument("--stale-threshold-s", type=float, default=2)
    c.add_argument("--failover-limit-s", type=float, default=30)
    c.add_argument("--history-sample", type=int, default=200)
    c.add_argument("--final", action="store_true", help="check the settled end state (I4) live")
    c.add_argument("--sentinel-port", type=int, default=0,
                   help="read the primary a sentinel names for --master-name instead")
    c.add_argument("--master-name", default="")
    c.add_argument("--tls-ca-file", default=None, help="speak TLS to Redis, trusting this CA")
    c.add_argument("--enforce-targets", action="store_true")
    c.add_argument("--latency-factor", type=float, default=1.0,
                   help="stretch the latency targets' slack by this factor (>= 1)")
    a = ap.parse_args()
    return cmd_watch(a) if a.cmd == "watch" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
