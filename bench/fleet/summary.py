#!/usr/bin/env python3
"""summary.py REPORT.json - the checker's (or wfchecker's) report as Markdown tables (for RESULTS.md)."""
import json
import sys

r = json.load(open(sys.argv[1]))


def wf_summary(r):
    """The report of wfchecker.py (MODE=workflow)."""
    print("| measure (ms): harness event -> next chain started (Temporal) | n | p50 | p95 | p99 | max | min |")
    print("|---|---|---|---|---|---|---|")
    for k, v in r["latency_ms"].items():
        print(row(k, v))
    print()
    print("harness events:", json.dumps(r["harness_events"]))
    print("restarts_and_crashes:", r["restarts_and_crashes"], " runs:", r["runs_total"], " chains:", r["chains_total"],
          " continued_as_new:", r["continued_as_new_total"], " duplicate_chains:", r["duplicate_chains"],
          " healthy_chains_terminated:", r["healthy_chains_terminated"])
    print("terminations:", json.dumps(r["terminations"]))
    print("visibility samples with two running runs of one ID (index lag unless W1 confirms):",
          r["visibility_samples_two_running_of_one_id"], "of", r["visibility_samples_changed"])
    print("terminate_existing_inversions:", r["terminate_existing_inversions"]["n"])
    for t in r["targets"]:
        print("target: %s -> %s (%s)" % (t["target"], t["value"], "met" if t["met"] else "MISSED"))
    print("violations: %d" % len(r["violations"]))
    kinds = {}
    for v in r["violations"]:
        k = " ".join(v.split(" ")[:4]) if v.startswith("W2 healthy") else v.split(" ")[0]
        kinds[k] = kinds.get(k, 0) + 1
    for k, n in sorted(kinds.items()):
        print("  %s: %d" % (k, n))


def row(name, d):
    if not d or d.get("n", 0) == 0:
        return "| %s | 0 | | | | | |" % name
    return "| %s | %d | %s | %s | %s | %s | %s |" % (
        name, d["n"], d["p50"], d["p95"], d["p99"], d["max"], d["min"])


if "chains_total" in r:
    wf_summary(r)
    sys.exit(0)
print("| measure (ms) | n | p50 | p95 | p99 | max | min |")
print("|---|---|---|---|---|---|---|")
for k, v in r["latency_ms"].items():
    print(row(k, v))
print()
print("| overlap of two acting children, by the harness event before it (ms) | n | p50 | p95 | p99 | max | min |")
print("|---|---|---|---|---|---|---|")
for k, v in r["overlaps"]["by_cause"].items():
    print(row(k, v))
print(row("all", r["overlaps"]["all"]))
print()
a = r.get("anchor")
if a:
    print("| kill -9 of the holder (ms) | n | p50 | p95 | p99 | max | min |")
    print("|---|---|---|---|---|---|---|")
    print(row("dispatchd failover (per dispatcher)", a["dispatchd_failover_kill9"]))
    print(row("etcdctl lock failover", a["etcd_failover_kill9"]))
    print(row("etcdctl lock overlaps", a["etcd_overlaps"]))
    print()
print("harness events:", json.dumps(r["harness_events"]))
print("restarts_and_crashes:", r["restarts_and_crashes"], " duplicate_children:", r["duplicate_children"],
      " temporal_run_overlaps:", r["temporal_run_overlaps"], " runs:", r["temporal_runs_total"],
      " histories_checked:", r["histories_checked"])
print("reconcile:", json.dumps(r["reconcile"]))
for x in r.get("idle", []):
    print("idle:", json.dumps(x))
for t in r["targets"]:
    print("target: %s -> %s (%s)" % (t["target"], t["value"], "met" if t["met"] else "MISSED"))
print("violations: %d" % len(r["violations"]))
kinds = {}
for v in r["violations"]:
    k = v.split(" ")[0]
    if v.startswith("I2"):
        k = "I2 after " + v.split("after '")[-1].split(" ")[0] + (" " + v.split("after '")[-1].split(" ")[2].rstrip("'") if "host_stop" in v else "")
    kinds[k] = kinds.get(k, 0) + 1
for k, n in sorted(kinds.items()):
    print("  %s: %d" % (k, n))
