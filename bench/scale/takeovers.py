#!/usr/bin/env python3
"""Takeover latencies and failures of one bench/scale/run.sh run (issue 16).

    bench/scale/takeovers.py DIR [N]     (DIR: the run's $OUT, N: 1000)

From the hosts' logs: the start is host A's takeovers before host B
started, the handover host B's takeovers (B starts while A owns all N), the failover host A's after the kill -9 of B (A's lines later
than B's last). Per phase: the latency_ms of every takeover that ended
owning (nearest-rank percentiles), the failed ones by cause ("start,
deadline ran out": a start whose 30 s call deadline ran out in line, or
that was sent with so little of it left that the request timed out),
failover_failed and takeover_retry lines."""
import collections, datetime, math, re, sys


def ms(line):
    t = re.match(r"ts=(\S+)", line).group(1)
    return datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000


def pct(v, p):
    v = sorted(v)
    return v[max(1, math.ceil(p / 100 * len(v))) - 1] if v else float("nan")


def show(what, lines):
    tk = [l for l in lines if "event=takeover " in l]
    ok = [float(re.search(r"latency_ms=([\d.]+)", l).group(1))
          for l in tk if re.search(r"outcome=(took_over|started) ", l)]
    bad = collections.Counter()
    for l in tk:
        if "outcome=failed" not in l:
            continue
        e = re.search(r'error="(.*)"', l).group(1)
        if "cannot start" in e:
            out = "within" in e or "exceeded its deadline" in e
            bad["start, deadline ran out" if out else "start, other"] += 1
        else:
            bad[re.sub(r"[0-9a-f-]{36}|q\d+|\d+", "N", e)[:60]] += 1
    fl = sum("event=failover_failed" in l for l in lines)
    rt = sum("event=takeover_retry" in l for l in lines)
    p = ("p50 %.1f p90 %.1f p99 %.1f max %.1f s" % tuple(x / 1000 for x in
         (pct(ok, 50), pct(ok, 90), pct(ok, 99), max(ok)))) if ok else "-"
    print(f"{what}: {len(ok)} owned, latency {p}; failed {sum(bad.values())} {dict(bad)}; "
          f"failover_failed {fl}, takeover_retry {rt}")


d, n = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "1000"
A = [l for l in open(f"{d}/hostA-{n}.log", errors="replace") if l.startswith("ts=")]
B = [l for l in open(f"{d}/hostB-{n}.log", errors="replace") if l.startswith("ts=")]
kill, b0 = max(ms(l) for l in B), min(ms(l) for l in B)
show("start (host A)", [l for l in A if ms(l) < b0])
show("handover (host B)", B)
show("failover (host A after the kill)", [l for l in A if ms(l) > kill])
