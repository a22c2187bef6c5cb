#!/usr/bin/env python3
"""Percentiles of bench/cleanup/run.sh output (CSV on stdin or a file)."""
import csv, sys

def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]

rows = list(csv.DictReader(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin))
print("| kind | n | p50 ms | p95 ms | max ms |")
print("|---|---:|---:|---:|---:|")
for kind in ("cleanup", "failover"):
    xs = [int(r["ms"]) for r in rows if r["kind"] == kind]
    if xs:
        print(f"| {kind} | {len(xs)} | {pct(xs, 50)} | {pct(xs, 95)} | {max(xs)} |")
