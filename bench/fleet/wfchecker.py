#!/usr/bin/env python3
"""wfchecker.py - the independent checker of the fleet bench in workflow mode
(bench/fleet/run.sh MODE=workflow), stdlib only.

The dispatchers are real Temporal workflows (DispatcherWorkflow of
tests/interop/main.go, run by SDK workers, continuing as new every few
seconds). This checker never reads dispatchd's logs, metrics, `status` or its
Redis records. Its sources are
  * Temporal's HTTP API: every run of every dispatcher workflow ID (any type),
    and each run's full history: WorkflowExecutionStarted (first run id of the
    chain, the run it continued, its input), the close event (continued as
    new / terminated with reason and identity / completed ...) and their times;
  * the workflows' own records: DIR/runs.log, written by the SDK workers when a
    run begins (`run TS_US WID RUN FIRST_RUN GEN STARTED_BY PID`: which server
    id started the chain, as the workflow itself read it from its input);
  * DIR/watch.jsonl: visibility samples of the running runs (checker.py watch
    --redis-port 0), every 250 ms while the bench ran;
  * DIR/events.log: what the harness did to which process, and when.

A chain is every run with one firstExecutionRunId: the run dispatchd started
and the runs it continued as new into. Its span is [the first run's
WorkflowExecutionStarted, the close event of its last run] (open while that
run is running). Its owner is the server id that started it.

Invariants (any breach -> exit 1):
  W1 never two running chains for one workflow ID: for every ID, any two
     chains' spans are disjoint (the older one's last close event is no later
     than the newer one's first started event). One exception, reported and not
     failed: TERMINATE_EXISTING ends the old run and starts the new one in one
     server step, and the two events' times can come out inverted by <= 1 ms
     (checker.py, I1). Visibility samples with two running runs of one ID are
     counted and must be cleared by the histories.
  W2 no healthy chain terminated. A chain ends TERMINATED at time t (its last
     run's close event) by terminator X:
       "released by X" / "takeover by X": X; "stale: ...": the reconciler;
       any other reason with a new chain of the ID started within 1 s of t
       (the server's TERMINATE_EXISTING on dispatchd's start): the server id
       that started that new chain.
     Its owner S is healthy at t when S was running, not SIGSTOPped and not
     cut off from Redis and Temporal ("whole", "redis", "asym" partitions) at
     any moment of [max(t - stale threshold - grace, the chain's start), t],
     grace 1 s (two heartbeat intervals): no standby or reconciler may then see
     S's record of that chain stale (S wrote it when it started the chain). A
     host is down from host_kill9 or host_term until its host_start, from
     host_stop until host_cont, from host_partition until host_heal. A
     "temporal" partition (S cut off from Temporal only, heartbeats going on)
     does not make S unhealthy: nobody may move then. The termination is
     allowed when
       - S released its own chain ("released by S") while being stopped
         (host_term of S within 20 s before t), or
       - S was not healthy at t (failover, stale cleanup), or
       - it is a takeover at start: S healthy, X != S, the harness's last
         action before t was (re)starting X (the harness then waits for X to
         own everything before its next action; reconcile cycles do not
         count), at most --takeover-window-s (30 s, run.sh's SETTLE_S) before
         t, and the chain that replaced S's is X's first chain of this ID since
         that start (the newest starter wins, by design).
     Every other termination whose terminator is dispatchd or the reconciler
     is a healthy chain terminated. A termination of anything else (a reason
     that is none of these) and a chain that ended without being terminated
     (nobody here sends `finish`) are violations too.
  W3 the workflows' records agree with Temporal: the server id a chain's runs
     recorded is the one in the chain's input (--input-server-id-field).
  W4 at the end (settled, read live): every dispatcher ID has exactly one
     running run, it is the last run of its last chain, and that chain's
     owner is a host that is up.
  W5 every chain a crash, a freeze or a partition left behind was replaced
     (no dispatcher ownerless past --failover-limit-s).
Latencies (from the harness event to the next chain's WorkflowExecutionStarted
in Temporal): failover after kill -9 / SIGSTOP / partition, graceful handover
(SIGTERM of the owner), takeover at start (host start -> its chain). Target:
failover after kill -9 p95 <= threshold + 500 ms (x --latency-factor on the
500 ms); enforced with --enforce-targets.
"""
import argparse
import base64
import json
import os
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checker import dist, http_json, list_executions, now_us, parse_ts, read_events  # noqa: E402

CLOSE = {
    "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED": "COMPLETED",
    "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED": "FAILED",
    "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT": "TIMED_OUT",
    "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED": "CANCELED",
    "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED": "TERMINATED",
    "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW": "CONTINUED_AS_NEW",
}


def payload_value(p):
    """A payload as the HTTP API shows it: shorthand JSON, or {metadata, data}."""
    if isinstance(p, dict) and "data" in p and "metadata" in p:
        try:
            return json.loads(base64.b64decode(p["data"]).decode())
        except (ValueError, TypeError):
            return None
    return p


def fetch_history(base, wid, rid):
    evs, token = [], ""
    for _ in range(100):
        q = {"execution.runId": rid}
        if token:
            q["nextPageToken"] = token
        d = http_json("%s/api/v1/namespaces/default/workflows/%s/history?%s"
                      % (base, urllib.parse.quote(wid, safe=""), urllib.parse.urlencode(q)), timeout=30)
        evs.extend(d.get("history", {}).get("events", []))
        token = d.get("nextPageToken") or ""
        if not token:
            return evs
    return evs


def run_of(base, wid, rid):
    evs = fetch_history(base, wid, rid)
    first = evs[0]
    a = first.get("workflowExecutionStartedEventAttributes") or {}
    inp = a.get("input") or []
    if isinstance(inp, dict):  # {payloads: [...]}; the shorthand form is a plain list
        inp = inp.get("payloads") or []
    inp = payload_value(inp[0]) if isinstance(inp, list) and inp else None
    r = {"wid": wid, "run": rid, "start": parse_ts(first["eventTime"]),
         "first": a.get("firstExecutionRunId") or rid, "prev": a.get("continuedExecutionRunId") or "",
         "type": (a.get("workflowType") or {}).get("name", ""),
         "input_sid": inp.get("server_id") if isinstance(inp, dict) else None,
         "close": None, "kind": None, "reason": "", "identity": "", "next": ""}
    last = evs[-1]
    k = CLOSE.get(last["eventType"])
    if k:
        r["close"], r["kind"] = parse_ts(last["eventTime"]), k
        if k == "TERMINATED":
            t = last.get("workflowExecutionTerminatedEventAttributes") or {}
            r["reason"], r["identity"] = t.get("reason", ""), t.get("identity", "")
        elif k == "CONTINUED_AS_NEW":
            r["next"] = (last.get("workflowExecutionContinuedAsNewEventAttributes") or {}).get("newExecutionRunId", "")
    return r


def read_runs_log(path):
    """-> {first_run_id: set(started_by)}, {run_id: started_by}, lines"""
    by_first, by_run, n = {}, {}, 0
    if not os.path.exists(path):
        return by_first, by_run, 0
    for line in open(path):
        f = line.split()
        if len(f) < 8 or f[0] != "run":
            continue
        n += 1
        sb = "" if f[6] == "-" else f[6]
        by_first.setdefault(f[4], set()).add(sb)
        by_run[f[3]] = sb
    return by_first, by_run, n


def host_down_intervals(events):
    """{host: [(from_us, to_us)]} when the host was not healthy (see W2)."""
    down, open_ = {}, {}

    def begin(h, t, why):
        if h not in open_:
            open_[h] = (t, why)

    def end(h, t, whys):
        if h in open_ and open_[h][1] in whys:
            down.setdefault(h, []).append((open_[h][0], t))
            del open_[h]

    t0 = events[0]["t"] if events else 0
    seen = set()
    for e in events:
        k, t, args = e["kind"], e["t"], e["args"]
        if not args:
            continue
        h = args[0]
        if k == "host_start":
            if h not in seen:
                down.setdefault(h, []).append((t0 - 1, t))
            seen.add(h)
            end(h, t, ("kill9", "term"))
        elif k == "host_kill9":
            begin(h, t, "kill9")
        elif k == "host_term":
            begin(h, t, "term")
        elif k == "host_stop":
            begin(h, t, "stop")
        elif k == "host_cont":
            end(h, t, ("stop",))
        elif k == "host_partition" and args[1:] != ["temporal"]:
            begin(h, t, "partition")
        elif k == "host_heal":
            end(h, t, ("partition",))
    for h, (t, _) in open_.items():
        down.setdefault(h, []).append((t, 1 << 62))
    return down


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--temporal-url", required=True)
    ap.add_argument("--workflow-type", default="DispatcherWorkflow")
    ap.add_argument("--stale-threshold-s", type=float, default=2)
    ap.add_argument("--grace-ms", type=float, default=1000)
    ap.add_argument("--takeover-window-s", type=float, default=30,
                    help="a takeover at start follows the host's start by at most this (run.sh: SETTLE_S)")
    ap.add_argument("--failover-limit-s", type=float, default=30)
    ap.add_argument("--latency-factor", type=float, default=1.0)
    ap.add_argument("--enforce-targets", action="store_true")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--offline", action="store_true",
                    help="re-check from DIR/temporal_runs.json (written by the live check); no W4")
    a = ap.parse_args()
    d = a.dir
    events = read_events(os.path.join(d, "events.log"))
    wids = open(os.path.join(d, "dispatchers")).read().split()
    rec_first, rec_run, rec_lines = read_runs_log(os.path.join(d, "runs.log"))
    violations, rep = [], {}
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    rep["harness_events"] = kinds
    rep["restarts_and_crashes"] = sum(kinds.get(k, 0) for k in (
        "host_term", "host_kill9", "host_stop", "host_partition", "redis_stop", "temporal_stop"))

    # ---- every run of every dispatcher ID, and its history
    cache = os.path.join(d, "temporal_runs.json")
    if a.offline:
        runs = json.load(open(cache))
    else:
        refs = []
        for wid in wids:
            for e in list_executions(a.temporal_url, "WorkflowId = '%s'" % wid):
                refs.append((wid, e["execution"]["runId"]))
        with ThreadPoolExecutor(max_workers=a.threads) as pool:
            runs = list(pool.map(lambda x: run_of(a.temporal_url, *x), refs))
        with open(cache, "w") as fh:  # what was read, for an offline re-check (--offline)
            json.dump(runs, fh)
    rep["runs_total"] = len(runs)
    rep["runs_log_lines"] = rec_lines
    other_types = [r for r in runs if r["type"] != a.workflow_type]
    for r in other_types[:20]:
        violations.append("W1 %s run %s has type %s, not %s" % (r["wid"], r["run"], r["type"], a.workflow_type))

    # ---- chains
    chains = {}
    for r in runs:
        chains.setdefault((r["wid"], r["first"]), []).append(r)
    by_wid = {}
    broken = 0
    for (wid, first), rs in chains.items():
        rs.sort(key=lambda r: r["start"])
        for k in range(1, len(rs)):
            if rs[k]["prev"] != rs[k - 1]["run"] or rs[k - 1]["kind"] != "CONTINUED_AS_NEW":
                broken += 1
                violations.append("W1 chain %s of %s: run %s does not continue %s" % (first, wid, rs[k]["run"], rs[k - 1]["run"]))
        last = rs[-1]
        recs = rec_first.get(first, set())
        isid = rs[0]["input_sid"]
        if len(recs) > 1 or (recs and isid and isid not in recs):
            violations.append("W3 chain %s of %s: the workflow recorded started_by %s, its input says %s"
                              % (first, wid, sorted(recs), isid))
        owner = sorted(recs)[0] if recs else (isid or "?")
        c = {"wid": wid, "first": first, "runs": len(rs), "start": rs[0]["start"], "end": last["close"],
             "kind": last["kind"], "reason": last["reason"], "identity": last["identity"], "owner": owner,
             "owner_source": "workflow record" if recs else "input", "last_run": last["run"]}
        by_wid.setdefault(wid, []).append(c)
    for l in by_wid.values():
        l.sort(key=lambda c: c["start"])
    nchains = sum(len(l) for l in by_wid.values())
    rep["chains_total"] = nchains
    rep["continued_as_new_total"] = sum(1 for r in runs if r["kind"] == "CONTINUED_AS_NEW")
    rep["chains_owner_from_workflow_record"] = sum(1 for l in by_wid.values() for c in l if c["owner_source"] != "input")
    rep["broken_chain_links"] = broken

    # ---- W1: two running chains of one ID
    dup, inversions = [], []
    for wid, l in by_wid.items():
        for i in range(len(l)):
            for j in range(i + 1, len(l)):
                p, n = l[i], l[j]
                pend = p["end"] if p["end"] is not None else 1 << 62
                if pend <= n["start"]:
                    continue
                over = pend - n["start"]
                if p["kind"] == "TERMINATED" and 0 < over <= 1000 and j == i + 1:
                    inversions.append("%s: chain %s closed %d us after chain %s began (%s)"
                                      % (wid, p["first"], over, n["first"], p["reason"][:60]))
                    continue
                dup.append((wid, p, n, over))
    for wid, p, n, over in dup[:50]:
        violations.append("W1 two running chains of %s: %s (by %s, %s) and %s (by %s) overlap %.1f ms"
                          % (wid, p["first"], p["owner"], p["kind"] or "RUNNING", n["first"], n["owner"], over / 1000))
    rep["duplicate_chains"] = len(dup)
    rep["terminate_existing_inversions"] = {"n": len(inversions), "examples": inversions[:10]}
    # visibility samples: two running runs of one ID in one sample (index lag or real)
    two = 0
    wpath = os.path.join(d, "watch.jsonl")
    nsamples = 0
    if os.path.exists(wpath):
        for line in open(wpath):
            try:
                w = json.loads(line)
            except ValueError:
                continue
            if w.get("src") != "temporal" or "running" not in w:
                continue
            nsamples += 1
            per = {}
            for wid, run, _ in w["running"]:
                per.setdefault(wid, set()).add(run)
            two += sum(1 for v in per.values() if len(v) > 1)
    rep["visibility_samples_changed"] = nsamples
    rep["visibility_samples_two_running_of_one_id"] = two
    rep["visibility_note"] = "each such sample is index lag unless the histories (W1) confirm an overlap"

    # ---- W2: terminations
    thr_us = int(a.stale_threshold_s * 1e6)
    grace_us = int(a.grace_ms * 1000)
    takeover_us = int(a.takeover_window_s * 1e6)
    down = host_down_intervals(events)

    def healthy(h, t, since=0):
        lo = max(t - thr_us - grace_us, since)
        return not any(s < t and e > lo for s, e in down.get(h, []))

    def last_event(kind, h, t, within_us):
        for e in reversed(events):
            if e["t"] > t:
                continue
            if t - e["t"] > within_us:
                return None
            if e["kind"] == kind and e["args"] and e["args"][0] == h:
                return e
        return None

    acts = [e for e in events if e["kind"] not in ("reconcile", "host_exit", "settle_timeout")]

    def first_claim_after_start(l, i, X, t):
        """The harness's last action before t was starting X (it then waits
        for X's takeover at start to settle before doing anything else), at
        most --takeover-window-s before t, and the chain that replaced l[i] is
        X's first chain of this ID since then."""
        prior = [e for e in acts if e["t"] <= t]
        st = prior[-1] if prior else None
        if st is None or st["kind"] != "host_start" or st["args"][0] != X or t - st["t"] > takeover_us:
            return False
        if i + 1 >= len(l) or l[i + 1]["owner"] != X:
            return False
        return not any(c["owner"] == X and st["t"] <= c["start"] < l[i + 1]["start"] for c in l[:i + 1])

    cls, reasons, tlist = {}, {}, []
    healthy_term = []
    for wid, l in by_wid.items():
        for i, c in enumerate(l):
            if c["kind"] is None or c["kind"] == "CONTINUED_AS_NEW":
                continue
            t = c["end"]
            if c["kind"] != "TERMINATED":
                cls["ended_" + c["kind"].lower()] = cls.get("ended_" + c["kind"].lower(), 0) + 1
                violations.append("W2 chain %s of %s (owner %s) ended %s on its own: nobody here ends one"
                                  % (c["first"], wid, c["owner"], c["kind"]))
                continue
            R = c["reason"]
            nxt = l[i + 1] if i + 1 < len(l) else None
            if R.startswith("released by "):
                X, how = R[len("released by "):].split()[0], "release"
            elif R.startswith("takeover by "):
                X, how = R[len("takeover by "):].split()[0], "takeover"
            elif R.startswith("stale:"):
                X, how = "reconciler", "stale"
            elif nxt is not None and abs(nxt["start"] - t) <= 1000000:
                X, how = nxt["owner"], "replaced by start"
            else:
                cls["unexplained"] = cls.get("unexplained", 0) + 1
                violations.append("W2 chain %s of %s (owner %s) terminated at %d by someone not dispatchd: "
                                  "reason %r identity %r" % (c["first"], wid, c["owner"], t, R, c["identity"]))
                continue
            S = c["owner"]
            if how == "release" and X == S:
                if last_event("host_term", S, t, 20000000):
                    verdict = "release_on_sigterm"
                else:
                    verdict = None
                    violations.append("W2 chain %s of %s: released by its owner %s at %d, which was not being stopped"
                                      % (c["first"], wid, S, t))
            elif not healthy(S, t, c["start"]):
                verdict = "owner_unhealthy_" + how.replace(" ", "_")
            elif X not in (S, "reconciler") and first_claim_after_start(l, i, X, t):
                verdict = "takeover_at_start"
            else:
                verdict = None
                healthy_term.append(c)
                violations.append("W2 healthy chain terminated: %s of %s, owner %s healthy over the last %.1f s, "
                                  "terminated at %d by %s (%s): reason %r identity %r"
                                  % (c["first"], wid, S, (thr_us + grace_us) / 1e6, t, X, how, R, c["identity"]))
            tlist.append({"wid": wid, "chain": c["first"], "owner": S, "t": t, "by": X, "how": how,
                          "reason": R[:80], "verdict": verdict or "HEALTHY_CHAIN_TERMINATED"})
            if verdict:
                cls[verdict] = cls.get(verdict, 0) + 1
                ex = reasons.setdefault(verdict, {})
                rk = R.split(" for ")[0][:60]
                ex[rk] = ex.get(rk, 0) + 1
    cls["healthy_chain_terminated"] = len(healthy_term)
    rep["terminations"] = cls
    rep["termination_reasons"] = reasons
    rep["terminations_list"] = tlist
    rep["healthy_chains_terminated"] = len(healthy_term)

    # ---- latencies: harness event -> the next chain's first WorkflowExecutionStarted
    lim = int(a.failover_limit_s * 1e6)
    lat = {"failover_kill9": [], "failover_sigstop": [], "failover_partition": [],
           "graceful_handover": [], "takeover_at_start": []}
    missing = []
    key_of = {"host_kill9": "failover_kill9", "host_stop": "failover_sigstop",
              "host_partition": "failover_partition", "host_term": "graceful_handover"}
    for e in events:
        k, t = e["kind"], e["t"]
        if k == "host_partition" and e["args"][1:] == ["temporal"]:
            continue
        if k in key_of:
            h = e["args"][0]
            for wid, l in by_wid.items():
                for i, c in enumerate(l):
                    if c["owner"] != h or c["start"] > t or (c["end"] is not None and c["end"] <= t):
                        continue
                    nxt = l[i + 1] if i + 1 < len(l) else None
                    if nxt is None or nxt["start"] - t > lim:
                        missing.append("%s %s at %d: chain %s of %s not replaced within %.0f s"
                                       % (k, h, t, c["first"], wid, a.failover_limit_s))
                    else:
                        lat[key_of[k]].append(nxt["start"] - t)
        elif k == "host_start":
            h = e["args"][0]
            for wid, l in by_wid.items():
                for c in l:
                    if c["owner"] == h and t <= c["start"] <= t + lim:
                        lat["takeover_at_start"].append(c["start"] - t)
                        break
    for m in missing[:50]:
        violations.append("W5 " + m)
    rep["latency_ms"] = {k: dist(v) for k, v in lat.items()}

    # ---- W4: the end state, live
    try:
        if a.offline:
            raise LookupError("offline")
        running = list_executions(a.temporal_url, "ExecutionStatus='Running' AND WorkflowType='%s'" % a.workflow_type)
        run_by_wid = {}
        for e in running:
            run_by_wid.setdefault(e["execution"]["workflowId"], []).append(e["execution"]["runId"])
        tnow = now_us()
        for wid in wids:
            rr = run_by_wid.get(wid, [])
            l = by_wid.get(wid, [])
            if len(rr) != 1:
                violations.append("W4 %s has %d running runs at the end" % (wid, len(rr)))
                continue
            if not l or l[-1]["end"] is not None:
                # the chain may have continued as new since the histories were read
                continue
            if not healthy(l[-1]["owner"], tnow):
                violations.append("W4 %s: its running chain's owner %s is not up" % (wid, l[-1]["owner"]))
        rep["final_dispatchers_checked"] = len(wids)
    except LookupError:
        rep["final_dispatchers_checked"] = "offline: not checked"
    except Exception as e:  # noqa: BLE001
        violations.append("W4 cannot read the final state: %s" % e)

    # ---- targets
    thr = a.stale_threshold_s * 1000
    f = a.latency_factor
    rep["latency_factor"] = f
    L = rep["latency_ms"]
    tg = []

    def target(name, value, limit):
        tg.append({"target": name, "value": value, "limit": limit, "met": value is not None and value <= limit})

    target("failover after kill -9 p95 <= threshold + 500 ms", L["failover_kill9"].get("p95"), thr + 500 * f)
    target("duplicate chains = 0", len(dup), 0)
    target("healthy chains terminated = 0", len(healthy_term), 0)
    rep["targets"] = tg
    if a.enforce_targets:
        for x in tg:
            if not x["met"]:
                violations.append("target missed: %s (measured %s)" % (x["target"], x["value"]))
    rep["violations"] = violations
    with open(os.path.join(d, "report.json"), "w") as fh:
        json.dump(rep, fh, indent=1)
    print(json.dumps({k: v for k, v in rep.items() if k not in ("violations", "terminations_list")}, indent=1))
    if violations:
        print("\nINVARIANT VIOLATIONS (%d):" % len(violations))
        for v in violations[:100]:
            print("  " + v)
        return 1
    print("\nwfchecker: all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
