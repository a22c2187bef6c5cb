#!/usr/bin/env python3
"""Summarises bench/failover/run.sh samples: per kind n, p50, p95, p99, max
(ms) and the overlaps (old child's stop after the new child's start)."""
import csv
import sys


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main(path):
    kinds = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            k = kinds.setdefault(row["kind"], {"ms": [], "ov": [], "missing": 0})
            if not row["ms"]:
                k["missing"] += 1
                continue
            k["ms"].append(float(row["ms"]))
            if row["overlap_ms"]:
                k["ov"].append(float(row["overlap_ms"]))
    print("| kind | n | p50 ms | p95 ms | p99 ms | max ms | overlaps (> 0 ms) | largest overlap ms | never acted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, k in kinds.items():
        ms, ov = k["ms"], k["ov"]
        bad = sum(1 for o in ov if o > 0)
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %d | %s | %d |" % (
            name, len(ms), pct(ms, 50), pct(ms, 95), pct(ms, 99), max(ms) if ms else float("nan"),
            bad, "%.1f" % max(ov) if ov else "-", k["missing"]))


if __name__ == "__main__":
    main(sys.argv[1])
