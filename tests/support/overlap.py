#!/usr/bin/env python3
"""overlap.py CHILDREN_LOG [--since WALL_US] - did two hosts act at once?

Reads the lines that bench/fleet/child.py appends (start|tick|stop WALL_US
WORKFLOW_ID RUN_ID SERVER_ID PID ...). Each child process (workflow ID, run,
pid: pids are reused over a long run) acted from its first line to its last; two processes of different hosts for the same
workflow ID overlap by the intersection of those spans. Ticks are the
resolution: a child may have acted up to one tick after its last line, so
an intersection of 0 (or less) means "no overlap beyond the tick".

Prints one JSON object: {"overlaps": N, "max_overlap_ms": X, "spans": N,
"pairs": [[wid, server_a, server_b, ms], ...]} and exits 1 when any two
spans of different servers intersect by more than 0 ms.
"""
import json
import sys


def main():
    path = sys.argv[1]
    since = 0
    if len(sys.argv) > 3 and sys.argv[2] == "--since":
        since = int(sys.argv[3])
    spans = {}  # (wid, run, pid) -> [wid, sid, first_us, last_us]: pids are reused
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 6 or p[0] not in ("start", "tick", "stop"):
                continue
            us, wid, run, sid, pid = int(p[1]), p[2], p[3], p[4], p[5]
            if us < since:
                continue
            s = spans.setdefault((wid, run, pid), [wid, sid, us, us])
            s[2] = min(s[2], us)
            s[3] = max(s[3], us)
    items = sorted(spans.values(), key=lambda s: s[2])
    pairs = []
    worst = 0.0
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if b[2] > a[3]:
                break
            if a[0] != b[0] or a[1] == b[1]:
                continue
            ms = (min(a[3], b[3]) - max(a[2], b[2])) / 1000.0
            if ms > 0:
                pairs.append([a[0], a[1], b[1], ms])
                worst = max(worst, ms)
    print(json.dumps({"overlaps": len(pairs), "max_overlap_ms": worst, "spans": len(items),
                      "pairs": pairs[:20]}))
    return 1 if pairs else 0


if __name__ == "__main__":
    sys.exit(main())
