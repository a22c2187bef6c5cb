#!/usr/bin/env python3
"""Summarises bench/stack_restart/run.sh output (python3 stdlib only).

    bench/stack_restart/report.py [results/restart.csv] [--markdown]

Per supervisor: n, median, p95, min, max of kill -> PING (ms), and each
median's ratio to the best median. For dispatchd also the detection time
(exit seen -> restart issued, from its own log), kill -> exit seen, and
kill -> new server spawned. p95 is linearly interpolated between order
statistics (numpy's default); with 30 trials it lies between the 28th and
29th smallest values, so read it as "nearly the worst case".
"""
import csv
import os
import sys


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def stats(xs):
    return {
        "n": len(xs),
        "median": quantile(xs, 0.5),
        "p95": quantile(xs, 0.95),
        "min": min(xs) if xs else float("nan"),
        "max": max(xs) if xs else float("nan"),
    }


def fmt(v, digits=1):
    return f"{v:.{digits}f}"


def main(argv):
    md = "--markdown" in argv
    args = [a for a in argv if not a.startswith("--")]
    path = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "results", "restart.csv")
    rows = list(csv.DictReader(open(path, newline="")))
    order = []
    kill_ping = {}
    for r in rows:
        s = r["supervisor"]
        if s not in kill_ping:
            order.append(s)
            kill_ping[s] = []
        kill_ping[s].append(int(r["kill_to_ping_us"]) / 1000.0)
    st = {s: stats(kill_ping[s]) for s in order}
    others = [s for s in order if s != "dispatchd"]
    best = min(st[s]["median"] for s in order)
    best_other = min((st[s]["median"] for s in others), default=float("nan"))
    best_other_name = min(others, key=lambda s: st[s]["median"]) if others else "-"

    out = []
    if md:
        out.append("| supervisor | n | median ms | p95 ms | min ms | max ms | median / best |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for s in order:
            x = st[s]
            out.append(f"| {s} | {x['n']} | {fmt(x['median'])} | {fmt(x['p95'])} | "
                       f"{fmt(x['min'])} | {fmt(x['max'])} | {x['median'] / best:.2f} |")
    else:
        out.append(f"{'supervisor':<12} {'n':>3} {'median':>9} {'p95':>9} {'min':>9} {'max':>9} "
                   f"{'med/best':>9}   (kill -9 -> PING answered, ms)")
        for s in order:
            x = st[s]
            out.append(f"{s:<12} {x['n']:>3} {fmt(x['median']):>9} {fmt(x['p95']):>9} "
                       f"{fmt(x['min']):>9} {fmt(x['max']):>9} {x['median'] / best:>9.2f}")

    dd = [r for r in rows if r["supervisor"] == "dispatchd"]
    goal_ok = None
    if dd:
        det = [int(r["exit_to_restart_us"]) / 1000.0 for r in dd if r["exit_to_restart_us"]]
        kex = [int(r["kill_to_exit_seen_us"]) / 1000.0 for r in dd if r["kill_to_exit_seen_us"]]
        ksp = [int(r["kill_to_spawned_us"]) / 1000.0 for r in dd if r["kill_to_spawned_us"]]
        backoffs = sum(1 for r in dd if r["backoff"] == "1")
        missing = len(dd) - len(det)
        out.append("")
        if md:
            out.append("| dispatchd (from its log) | n | median ms | p95 ms | max ms |")
            out.append("|---|---:|---:|---:|---:|")
            for name, xs in (("detection: exit seen -> restart issued", det),
                             ("kill -> exit seen (SIGCHLD)", kex),
                             ("kill -> service_started logged (after spawn and status-file fsync)", ksp)):
                x = stats(xs)
                out.append(f"| {name} | {x['n']} | {fmt(x['median'], 3)} | {fmt(x['p95'], 3)} | "
                           f"{fmt(x['max'], 3)} |")
        else:
            for name, xs in (("detection (exit seen -> restart issued)", det),
                             ("kill -> exit seen", kex),
                             ("kill -> service_started logged", ksp)):
                x = stats(xs)
                out.append(f"dispatchd {name}: n={x['n']} median={fmt(x['median'], 3)} ms "
                           f"p95={fmt(x['p95'], 3)} ms max={fmt(x['max'], 3)} ms")
        out.append("")
        out.append(f"dispatchd restarts that went through backoff instead of at once: {backoffs}"
                   + (f"; trials without log timestamps: {missing}" if missing else ""))
        if others:
            ratio = st["dispatchd"]["median"] / best_other
            det_max = max(det) if det else float("inf")
            med_ok = ratio <= 1.10
            det_ok = det_max < 10.0 and missing == 0
            goal_ok = med_ok and det_ok
            out.append(
                f"goal: dispatchd median {fmt(st['dispatchd']['median'], 2)} ms vs best other "
                f"({best_other_name}) {fmt(best_other, 2)} ms = {ratio:.3f}x "
                f"({'within' if med_ok else 'NOT within'} 10 %); detection max "
                f"{fmt(det_max, 3)} ms ({'under' if det_ok else 'NOT under'} 10 ms) -> "
                f"{'MET' if goal_ok else 'NOT MET'}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
