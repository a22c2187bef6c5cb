#!/usr/bin/env python3
"""child.py LOGFILE - the command a dispatcher owner runs (bench/fleet).

It "acts" by appending one line every TICK seconds (default 0.1) to LOGFILE
(O_APPEND, one write per line, so many children can share one file):

  start <wall_us> <workflow_id> <run_id> <server_id> <pid>
  tick  <wall_us> <workflow_id> <run_id> <server_id> <pid>
  stop  <wall_us> <workflow_id> <run_id> <server_id> <pid> <signal>

A child that is frozen (SIGSTOP) or killed writes nothing, so the checker
treats gaps in the ticks as "not acting". Identity comes from the env the
owner sets (DISPATCHD_WORKFLOW_ID, DISPATCHD_RUN_ID, DISPATCHD_SERVER_ID);
the etcd anchor sets the same variables itself.
"""
import os
import signal
import sys
import time

log = sys.argv[1]
tick = float(os.environ.get("CHILD_TICK_S", "0.1"))
wid = os.environ.get("DISPATCHD_WORKFLOW_ID", "?")
rid = os.environ.get("DISPATCHD_RUN_ID", "?") or "?"
sid = os.environ.get("DISPATCHD_SERVER_ID", "?")
pid = os.getpid()
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def line(kind, extra=""):
    us = time.time_ns() // 1000
    os.write(fd, f"{kind} {us} {wid} {rid} {sid} {pid}{extra}\n".encode())


def on_signal(sig, _frame):
    line("stop", f" {sig}")
    os._exit(0)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGHUP, on_signal)
line("start")
while True:
    time.sleep(tick)
    line("tick")
