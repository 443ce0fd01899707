#!/usr/bin/env python3
"""Helpers for bench/scheduler.sh.

    scheduler_idle.py config --n 100 --every 60s --port P --state DIR --out FILE
        writes an agent config: N tcp checks to 127.0.0.1:P, a `log` notifier
    scheduler_idle.py listen --port P --pidfile F
        a TCP listener that accepts and closes (the checks' target); runs until killed
    scheduler_idle.py table RESULTS_DIR
        markdown tables (medians over reps) from the JSON the script wrote
"""
import argparse
import glob
import json
import os
import re
import socket
import statistics
import sys
from collections import defaultdict


def config(a):
    lines = ["[agent]", f'state_dir = "{a.state}"', "", "[notifiers.console]", 'type = "log"', "",
             "[defaults]", 'notify = ["console"]', ""]
    for i in range(a.n):
        lines += [f"[jobs.j{i}]", f'every = "{a.every}"', f"[jobs.j{i}.check]", 'type = "tcp"',
                  'host = "127.0.0.1"', f"port = {a.port}", ""]
    with open(a.out, "w") as f:
        f.write("\n".join(lines))


def listen(a):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", a.port))
    s.listen(1024)
    with open(a.pidfile, "w") as f:
        f.write(str(os.getpid()))
    while True:
        c, _ = s.accept()
        c.close()


def med(vals, nd=2):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, "n/a"
    m = statistics.median(vals)
    s = f"{m:,.{nd}f}"
    if len(vals) > 1 and f"{min(vals):,.{nd}f}" != f"{max(vals):,.{nd}f}":
        s += f" [{min(vals):,.{nd}f}–{max(vals):,.{nd}f}]"
    return m, s


def ratio(a, b, nd=1):
    if a is None or b is None or a == 0:
        return "n/a"
    return f"{b / a:,.{nd}f}×"


def table(a):
    res = a.results
    g = lambda d, *p: (d if not p else g((d or {}).get(p[0]) if isinstance(d, dict) else None, *p[1:]))
    prec = defaultdict(list)
    for p in glob.glob(f"{res}/precision/*.json"):
        m = re.match(r"(.+)_n(\d+)_r\d+\.json$", os.path.basename(p))
        if not m:
            continue
        with open(p) as f:
            d = json.load(f)
        # klaxon writes its own result; the APScheduler run is wrapped by driver.py
        if "peer" in d and "proc" in d:
            r = dict(d["peer"] or {})
            r["cpu_pct"] = g(d, "proc", "cpu_pct")
            r["cpu_s"] = g(d, "proc", "cpu_s")
            r["vmhwm_kib"] = g(d, "proc", "hwm_kb_end")
        else:
            r = d
        r = dict(r)
        try:
            with open(p[:-len(".json")] + ".load") as f:
                r["load"] = float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            r["load"] = None
        prec[(m.group(1), int(m.group(2)))].append(r)
    tools = sorted({t for t, _ in prec})
    print("### N jobs every 1 s, no-op, lateness = start − intended fire\n")
    print("| tool | N | reps | late p50 ms | late p99 ms | late max ms | fires done / due | missed | CPU s | CPU % of a core | peak RSS MiB | load at start |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for n in sorted({n for _, n in prec}):
        for t in tools:
            runs = prec.get((t, n))
            if not runs:
                continue
            row = {}
            cells = []
            for key, path, nd, sc in [("p50", ("lateness", "p50_ms"), 3, 1), ("p99", ("lateness", "p99_ms"), 3, 1),
                                      ("max", ("lateness", "max_ms"), 2, 1), ("done", ("executed_runs",), 0, 1),
                                      ("due", ("expected_runs",), 0, 1), ("missed", ("missed_runs",), 0, 1),
                                      ("cpu_s", ("cpu_s",), 2, 1), ("cpu", ("cpu_pct",), 1, 1),
                                      ("rss", ("vmhwm_kib",), 1, 1 / 1024), ("load", ("load",), 1, 1)]:
                vals = [g(r, *path) for r in runs]
                vals = [v * sc if v is not None else None for v in vals]
                row[key], s = med(vals, nd)
                cells.append(s)
            summary[(t, n)] = row
            done_due = f"{cells[3]} / {cells[4]}"
            print(f"| {t} | {n:,} | {len(runs)} | {cells[0]} | {cells[1]} | {cells[2]} | {done_due} | {cells[5]} | {cells[6]} | {cells[7]} | {cells[8]} | {cells[9]} |")
    base = [t for t in tools if t.startswith("klaxon")]
    peers = [t for t in tools if not t.startswith("klaxon")]
    if base and peers:
        print("\n### Ratios (peer ÷ klaxon; > 1 means klaxon is better)\n")
        print("| klaxon run | peer | N | p50 | p99 | max | CPU | peak RSS |")
        print("|---|---|---|---|---|---|---|---|")
        for b in base:
            for pr in peers:
                for n in sorted({n for _, n in prec}):
                    k, p = summary.get((b, n)), summary.get((pr, n))
                    if not k or not p:
                        continue
                    print(f"| {b} | {pr} | {n:,} | " + " | ".join(ratio(k[x], p[x]) for x in ["p50", "p99", "max", "cpu", "rss"]) + " |")
    idle = defaultdict(list)
    for p in glob.glob(f"{res}/idle/*.json"):
        name = re.sub(r"_r\d+\.json$", "", os.path.basename(p))
        with open(p) as f:
            idle[name].append(json.load(f))
    if idle:
        print("\n### Idle: 100 jobs every 60 s (klaxon: tcp checks to a local listener; peers: no-op)\n")
        print("| process | reps | RSS MiB (end) | VmHWM MiB | CPU s / window | voluntary ctx sw / min | all ctx sw / min | threads |")
        print("|---|---|---|---|---|---|---|---|")
        for name in sorted(idle):
            runs = idle[name]
            per_min = lambda r, k: g(r, "proc", k) * 60.0 / g(r, "proc", "window_s")
            cells = [med([g(r, "proc", "rss_kb_end") / 1024 for r in runs], 1)[1],
                     med([g(r, "proc", "hwm_kb_end") / 1024 for r in runs], 1)[1],
                     med([g(r, "proc", "cpu_s") for r in runs], 2)[1],
                     med([per_min(r, "vcsw") for r in runs], 0)[1],
                     med([per_min(r, "vcsw") + per_min(r, "nvcsw") for r in runs], 0)[1],
                     med([g(r, "proc", "threads_end") for r in runs], 0)[1]]
            print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    readme(summary, idle, res)


def readme(summary, idle, res):
    """The table README.md's "Performance" section shows, from this run alone."""
    n = max((n for _, n in summary), default=None)
    if n is None:
        return
    names = {"klaxon-jitter": "klaxon, fires spread over the second (`jitter = \"{j}\"`)",
             "klaxon": f"klaxon, all {n:,} fires on the same instant",
             "aps-asyncio": "APScheduler 3 asyncio (same run)"}
    print(f"\n### README table\n")
    print(f"| {n:,} jobs every 1 s | lateness p50 / p99 / max | missed | CPU (one core) | load at start |")
    print("| --- | --- | --- | --- | --- |")
    fmt = lambda v, nd: "n/a" if v is None else f"{v:,.{nd}f}"
    order = sorted({t for t, m in summary if m == n},
                   key=lambda t: (0 if t.startswith("klaxon-jitter") else 1 if t == "klaxon" else 2, t))
    for t in order:
        row = summary[(t, n)]
        label = names.get(t)
        if label is None and t.startswith("klaxon-jitter"):
            label = names["klaxon-jitter"].format(j=t[len("klaxon-jitter"):])
        label = label or t
        lat = " / ".join(fmt(row[k], 2) for k in ("p50", "p99", "max"))
        print(f"| {label} | {lat} ms | {fmt(row['missed'], 0)} | {fmt(row['cpu'], 1)} % | {fmt(row['load'], 1)} |")
    if idle:
        loads = []
        for p in glob.glob(f"{res}/idle/load_r*.txt"):
            with open(p) as f:
                loads.append(float(f.read().split()[0]))
        load = f", load {statistics.median(loads):.1f} at start" if loads else ""
        print(f"\n| idle, 100 jobs every 60 s{load} | RSS MiB (end) | CPU s / window |")
        print("| --- | --- | --- |")
        g = lambda d, *p: (d if not p else g((d or {}).get(p[0]) if isinstance(d, dict) else None, *p[1:]))
        for name in sorted(idle, key=lambda x: (not x.startswith("klaxon"), x)):
            rss = statistics.median(g(r, "proc", "rss_kb_end") / 1024 for r in idle[name])
            cpu = statistics.median(g(r, "proc", "cpu_s") for r in idle[name])
            print(f"| {name} | {rss:.1f} | {cpu:.2f} |")


ap = argparse.ArgumentParser()
sub = ap.add_subparsers(dest="cmd", required=True)
c = sub.add_parser("config")
c.add_argument("--n", type=int, default=100)
c.add_argument("--every", default="60s")
c.add_argument("--port", type=int, required=True)
c.add_argument("--state", required=True)
c.add_argument("--out", required=True)
l = sub.add_parser("listen")
l.add_argument("--port", type=int, required=True)
l.add_argument("--pidfile", required=True)
t = sub.add_parser("table")
t.add_argument("results")
a = ap.parse_args()
{"config": config, "listen": listen, "table": table}[a.cmd](a)
