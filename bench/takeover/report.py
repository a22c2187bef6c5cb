#!/usr/bin/env python3
"""bench/takeover/report.py - python3 stdlib only.

  report.py extract WORKDIR OUTDIR --url URL --workflow-id WID --rounds N
      run.sh's logs -> OUTDIR/rounds.csv and OUTDIR/cli.csv. Needs the Temporal
      dev server still up: each replaced run's WorkflowExecutionTerminated
      eventTime comes from its history (HTTP API).
  report.py summary [OUTDIR...]
      rounds.csv + cli.csv -> a markdown table: p50/p95/p99/max and counts
      (several OUTDIRs: their rounds pooled).

Percentiles are nearest-rank (the ceil(p*n)-th smallest value), so every
number in the table is one measured round; no means are reported.
"""
import csv
import json
import math
import os
import re
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')

ROUND_COLS = [
    "round", "new_server_id", "old_server_id", "outcome", "attempts",
    "t_exec_us", "new_owning_us", "new_child_started_us", "new_child_start_us",
    "old_terminated_event_us", "old_lost_us", "old_detect_lag_ms",
    "old_child_stop_us", "old_child_exited_us", "old_close_event", "old_lost_by",
    "takeover_ms", "takeover_internal_ms", "loss_from_terminated_ms", "loss_from_owning_ms",
    "overlap_ms", "cpu_busy_pct", "steal_pct", "load1", "problems",
]
CLI_COLS = ["round", "outcome", "attempts", "latency_ms", "wall_ms", "run_id", "previous_run_id"]


def parse_log(path):
    """logfmt lines -> list of dicts (quotes stripped)."""
    events = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                d = {}
                for k, v in KV.findall(line):
                    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                        v = v[1:-1]
                    d[k] = v
                if "event" in d:
                    events.append(d)
    except FileNotFoundError:
        pass
    return events


def first(events, name):
    for e in events:
        if e["event"] == name:
            return e
    return None


def count(events, name):
    return sum(1 for e in events if e["event"] == name)


def rfc3339_us(s):
    """'2026-11-23T12:44:34.153014808Z' -> wall-clock microseconds (int)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", s)
    if not m:
        raise ValueError("bad time " + s)
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    tz = m.group(3)
    if tz == "Z":
        base = base.replace(tzinfo=timezone.utc)
    else:
        base = datetime.fromisoformat(m.group(1) + tz)
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return int(base.timestamp()) * 1_000_000 + int(frac)


def terminated_us(url, wid, run_id):
    q = urllib.parse.urlencode({"execution.runId": run_id})
    u = f"{url}/api/v1/namespaces/default/workflows/{urllib.parse.quote(wid)}/history?{q}"
    with urllib.request.urlopen(u, timeout=10) as r:
        h = json.load(r)
    for ev in reversed(h.get("history", {}).get("events", [])):
        if ev.get("eventType") == "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED":
            return rfc3339_us(ev["eventTime"])
    return None


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def ms(a, b):
    """(b - a) in ms, or '' if either is missing."""
    if a is None or b is None:
        return ""
    return f"{(b - a) / 1000.0:.3f}"


def extract(workdir, outdir, url, wid, nrounds):
    logs = {i: parse_log(os.path.join(workdir, f"r{i}.log")) for i in range(nrounds + 1)}
    child_start, child_stop = {}, {}
    with open(os.path.join(workdir, "child.log")) as f:
        for line in f:
            p = line.split()
            if len(p) != 4:
                continue
            target = {"start": child_start, "stop": child_stop}.get(p[0])
            if target is not None:  # run id -> its stamps (a restarted child adds more)
                target.setdefault(p[3], []).append(int(p[1]))

    def run_of(i):
        e = first(logs[i], "owning")
        return e["run_id"] if e else None

    # Machine-wide CPU use from each round's start to the next one's (ours included).
    samples = {}
    try:
        with open(os.path.join(workdir, "stat.txt")) as f:
            for line in f:
                p = line.split()
                samples[int(p[0])] = ([int(x) for x in p[2:10]], p[10])
    except FileNotFoundError:
        pass
    noise = {}
    for i, (j, l1) in samples.items():
        if i + 1 in samples:
            d = [b - a for a, b in zip(j, samples[i + 1][0])]
            tot = sum(d) or 1
            noise[i] = {"cpu_busy_pct": f"{100.0 * (tot - d[3] - d[4]) / tot:.0f}",
                        "steal_pct": f"{100.0 * d[7] / tot:.0f}", "load1": l1}

    rows = []
    hist_failures = 0
    for i in range(1, nrounds + 1):
        new, old = logs[i], logs[i - 1]
        problems = []
        new_run, old_run = run_of(i), run_of(i - 1)
        tk = first(new, "takeover")
        own = first(new, "owning")
        lost = first(old, "ownership_lost")
        cst = first(new, "child_started")
        cex = first(old, "child_exited")
        t_exec = read_int(os.path.join(workdir, f"r{i}.t0"))
        new_owning = int(own["wall_us"]) if own else None
        old_lost = int(lost["wall_us"]) if lost else None
        if not own:
            problems.append("new never owned")
        if not lost:
            problems.append("old never logged ownership_lost")
        if tk and tk.get("outcome") != "took_over":
            problems.append(f"outcome {tk.get('outcome')}")
        if tk and tk.get("previous_run_id") != old_run:
            problems.append("replaced a different run")
        if count(new, "takeover") > 1:
            problems.append(f"{count(new, 'takeover')} takeovers by new")
        if count(old, "takeover") > 1:
            problems.append(f"old fought back ({count(old, 'takeover')} takeovers)")
        if any(e["event"] == "terminate" and "released by" in e.get("reason", "") for e in old):
            problems.append("old released (terminated) a run after losing")
        if lost and lost.get("run_id") != old_run:
            problems.append("lost a different run")
        term = None
        if old_run and hist_failures >= 3:
            problems.append("history not fetched (server not answering)")
        elif old_run:
            try:
                term = terminated_us(url, wid, old_run)
            except Exception as ex:  # noqa: BLE001 - recorded, not fatal
                hist_failures += 1  # bounded: a dead server costs at most 3 timeouts
                problems.append(f"history: {ex}")
            if term is None and "history" not in " ".join(problems):
                problems.append("old run has no Terminated event")
        ns = child_start.get(new_run or "", [])
        os_ = child_stop.get(old_run or "", [])
        if len(ns) != 1:
            problems.append(f"{len(ns)} child starts for new run")
        if len(child_start.get(old_run or "", [])) != 1:
            problems.append("old child restarted")
        new_child_start = ns[0] if ns else None
        old_child_stop = os_[-1] if os_ else None
        rows.append({
            "round": i,
            "new_server_id": (tk or {}).get("requester", ""),
            "old_server_id": (tk or {}).get("previous_server_id", ""),
            "outcome": (tk or {}).get("outcome", ""),
            "attempts": (tk or {}).get("attempts", ""),
            "t_exec_us": t_exec or "",
            "new_owning_us": new_owning or "",
            "new_child_started_us": cst["wall_us"] if cst else "",
            "new_child_start_us": new_child_start or "",
            "old_terminated_event_us": term or "",
            "old_lost_us": old_lost or "",
            "old_detect_lag_ms": (lost or {}).get("detect_lag_ms", ""),
            "old_child_stop_us": old_child_stop or "",
            "old_child_exited_us": cex["wall_us"] if cex else "",
            "old_close_event": (lost or {}).get("close_event", ""),
            "old_lost_by": (lost or {}).get("by", ""),
            "takeover_ms": ms(t_exec, new_owning),
            "takeover_internal_ms": (tk or {}).get("latency_ms", ""),
            "loss_from_terminated_ms": ms(term, old_lost),
            "loss_from_owning_ms": ms(new_owning, old_lost),
            "overlap_ms": ms(new_child_start, old_child_stop),
            **noise.get(i, {"cpu_busy_pct": "", "steal_pct": "", "load1": ""}),
            "problems": "; ".join(problems),
        })
    # Every (level, event) dispatchd logged, over all owners: warnings and errors
    # other than the expected ownership_lost would be worth a look.
    tally = {}
    for evs in logs.values():
        for e in evs:
            k = (e.get("level", "?"), e["event"])
            tally[k] = tally.get(k, 0) + 1
    with open(os.path.join(outdir, "events.txt"), "w") as f:
        f.write(f"# (level, event) counts over the {len(logs)} dispatchd run logs\n")
        for (lvl, ev), n in sorted(tally.items()):
            f.write(f"{lvl} {ev} {n}\n")

    with open(os.path.join(outdir, "rounds.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROUND_COLS)
        w.writeheader()
        w.writerows(rows)

    cli_rows = []
    path = os.path.join(workdir, "cli.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                d = json.loads(line)
                o = d.get("out") or {}
                cli_rows.append({
                    "round": d["round"],
                    "outcome": o.get("outcome", "failed"),
                    "attempts": o.get("attempts", ""),
                    "latency_ms": o.get("latency_ms", ""),
                    "wall_ms": ms(d["t_exec_us"], d["t_done_us"]),
                    "run_id": o.get("run_id") or "",
                    "previous_run_id": o.get("previous_run_id") or "",
                })
    with open(os.path.join(outdir, "cli.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CLI_COLS)
        w.writeheader()
        w.writerows(cli_rows)


def pct(sorted_vals, p):
    n = len(sorted_vals)
    return sorted_vals[max(0, math.ceil(p * n) - 1)]


def col(rows, name):
    out = []
    for r in rows:
        v = r.get(name, "")
        if v != "":
            out.append(float(v))
    return sorted(out)


def fmt(v):
    return f"{v:.1f}"


def summary(outdirs):
    rounds, cli = [], []
    for outdir in outdirs:  # several: their rounds are pooled
        with open(os.path.join(outdir, "rounds.csv")) as f:
            rounds += list(csv.DictReader(f))
        if os.path.exists(os.path.join(outdir, "cli.csv")):
            with open(os.path.join(outdir, "cli.csv")) as f:
                cli += list(csv.DictReader(f))

    def derived(name, a, b):
        for r in rounds:
            r[name] = ms(int(r[a]), int(r[b])) if r[a] and r[b] else ""

    derived("child_after_owning_ms", "new_owning_us", "new_child_start_us")
    derived("stop_after_lost_ms", "old_lost_us", "old_child_stop_us")
    derived("lost_after_owning_event_ms", "old_terminated_event_us", "new_owning_us")

    lines = [
        "| measure (ms) | n | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    spec = [
        ("takeover_ms", rounds, "**takeover**: new `run` process exec → its `event=owning`"),
        ("takeover_internal_ms", rounds, "  of which the takeover itself (dispatchd's `latency_ms`)"),
        ("loss_from_terminated_ms", rounds,
         "**loss detection**: old run's Terminated eventTime → old owner's `ownership_lost`"),
        ("loss_from_owning_ms", rounds, "loss detection, simple: new owner's `owning` → old's `ownership_lost`"),
        ("lost_after_owning_event_ms", rounds, "  (Terminated eventTime → new owner's `owning`)"),
        ("overlap_ms", rounds, "**overlap**: new child `start` → old child `stop` (> 0 = both acting)"),
        ("child_after_owning_ms", rounds, "  new `owning` → new child `start`"),
        ("stop_after_lost_ms", rounds, "  old `ownership_lost` → old child `stop`"),
        ("latency_ms", cli, "`dispatchd takeover` CLI: its `latency_ms`"),
        ("wall_ms", cli, "`dispatchd takeover` CLI: exec → JSON printed and exited"),
    ]
    for name, rows, label in spec:
        v = col(rows, name)
        if not v:
            lines.append(f"| {label} | 0 | | | | |")
            continue
        lines.append(f"| {label} | {len(v)} | {fmt(pct(v, .5))} | {fmt(pct(v, .95))} | "
                     f"{fmt(pct(v, .99))} | {fmt(v[-1])} |")
    ov = col(rounds, "overlap_ms")
    tk = col(rounds, "takeover_ms")
    lt = col(rounds, "loss_from_terminated_ms")
    bad = [r for r in rounds if r["problems"]]
    outcomes = {}
    for r in rounds:
        outcomes[r["outcome"] or "none"] = outcomes.get(r["outcome"] or "none", 0) + 1
    cli_out = {}
    for r in cli:
        cli_out[r["outcome"]] = cli_out.get(r["outcome"], 0) + 1
    lines.append("")
    lines.append(f"- handover rounds: {len(rounds)}; takeover outcomes: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
                 + f"; attempts > 1: {sum(1 for r in rounds if r['attempts'] not in ('', '1'))}")
    if ov:
        lines.append(f"- rounds that overlapped at all (overlap > 0): {sum(1 for x in ov if x > 0)} "
                     f"of {len(ov)}; smallest {fmt(ov[0])} ms (negative: a gap, nobody acting)")
    lines.append(f"- rounds with problems: {len(bad)}"
                 + "".join(f"\n  - round {r['round']}: {r['problems']}" for r in bad[:20]))
    busy = col(rounds, "cpu_busy_pct")
    if busy:
        l1 = col(rounds, "load1")
        lines.append(f"- noise: machine-wide CPU busy per round (every process, ours included) "
                     f"p50 {busy[len(busy) // 2]:.0f} %, p95 {pct(busy, .95):.0f} %, max {busy[-1]:.0f} %; "
                     f"steal max {col(rounds, 'steal_pct')[-1]:.0f} %; 1-min load {l1[0]:.2f}-{l1[-1]:.2f}")
        quiet = [r for r in rounds if r["cpu_busy_pct"] and float(r["cpu_busy_pct"]) < 80]
        busy_r = [r for r in rounds if r["cpu_busy_pct"] and float(r["cpu_busy_pct"]) >= 80]
        for name, label in (("takeover_ms", "takeover"), ("loss_from_terminated_ms", "loss detection"),
                            ("overlap_ms", "overlap")):
            parts = []
            for tag, rs in (("CPU < 80 %", quiet), ("CPU >= 80 %", busy_r)):
                v = col(rs, name)
                if v:
                    parts.append(f"{tag}: n {len(v)}, p50 {fmt(pct(v, .5))}, p99 {fmt(pct(v, .99))}")
            lines.append(f"  - {label} by machine load: " + "; ".join(parts))
    lines.append(f"- CLI reference rounds: {len(cli)}; outcomes: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(cli_out.items())))
    goals = []
    if tk:
        goals.append(f"takeover p95 {fmt(pct(tk, .95))} ms < 250 ms: "
                     f"{'met' if pct(tk, .95) < 250 else 'NOT met'}")
    if lt:
        goals.append(f"loss detection p99 {fmt(pct(lt, .99))} ms < 100 ms: "
                     f"{'met' if pct(lt, .99) < 100 else 'NOT met'}")
    if ov:
        goals.append(f"overlap p99 {fmt(pct(ov, .99))} ms < 200 ms: "
                     f"{'met' if pct(ov, .99) < 200 else 'NOT met'}")
    lines.append("- goals: " + "; ".join(goals))
    print("\n".join(lines))


def main(argv):
    if len(argv) >= 2 and argv[1] == "summary":
        summary(argv[2:] or [os.path.join(HERE, "results")])
        return 0
    if len(argv) >= 4 and argv[1] == "extract":
        opts = dict(zip(argv[4::2], argv[5::2]))
        extract(argv[2], argv[3], opts["--url"], opts["--workflow-id"], int(opts["--rounds"]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
