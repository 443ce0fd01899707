#!/usr/bin/env python3
"""Markdown table of one bench/http_checks.sh run: medians [min-max] over the
repetitions, and the ratios klaxon/aiohttp and klaxon/wrk (of the medians).

    python3 bench/http_summary.py /tmp/klaxon-bench/http-YYYYMMDD-HHMMSS
"""
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict

OUT = sys.argv[1]


def load(pattern):
    runs = []
    for p in sorted(glob.glob(os.path.join(OUT, pattern))):
        with open(p) as f:
            runs.append(json.load(f))
    return runs


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def cell(vals, nd=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m, lo, hi = statistics.median(vals), min(vals), max(vals)

    def f(x):
        return f"{x:,.{nd}f}"

    return f(m) if len(vals) == 1 or f(lo) == f(hi) else f"{f(m)} [{f(lo)}–{f(hi)}]"


def g(d, *path):
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


klaxon = defaultdict(list)
for p in sorted(glob.glob(os.path.join(OUT, "klaxon_c*_r*.json"))):
    c = int(re.search(r"_c(\d+)_", p).group(1))
    with open(p) as f:
        klaxon[c].append(json.load(f))
wrk = load("wrk_r*.json")
aio_by_n = defaultdict(list)
for p in sorted(glob.glob(os.path.join(OUT, "aiohttp_n*_r*.json"))):
    with open(p) as f:
        aio_by_n[int(re.search(r"_n(\d+)_", p).group(1))].append(json.load(f))

rows = []
for c, runs in sorted(klaxon.items()):
    rows.append([
        f"klaxon `http` check, {c} concurrent", len(runs),
        cell([r["checks_per_s"] for r in runs]),
        cell([r["p50_ms"] for r in runs], 2), cell([r["p99_ms"] for r in runs], 2),
        cell([r["cpu_pct"] for r in runs]),
        cell([r.get("watched_cpu_pct") for r in runs]),
        cell([r.get("other_cpu_pct") for r in runs]),
        cell([r["errors"] for r in runs]),
    ])
if wrk:
    rows.append([
        f"wrk -t2 -c{wrk[0]['conns']} (raw ceiling, no validation)", len(wrk),
        cell([r["rps"] for r in wrk]),
        cell([g(r, "latency", "p50_ms") for r in wrk], 2),
        cell([g(r, "latency", "p99_ms") for r in wrk], 2),
        "n/a", cell([r["server_cpu_pct"] for r in wrk]), "n/a",
        cell([r["non2xx"] for r in wrk]),
    ])
for n, aio in sorted(aio_by_n.items()):
    rows.append([
        f"APScheduler AsyncIOScheduler + aiohttp, {n:,} jobs/s (status 200 checked)", len(aio),
        cell([g(r, "peer", "checks_ok_per_s") for r in aio]),
        cell([g(r, "peer", "check_duration", "p50_ms") for r in aio], 2),
        cell([g(r, "peer", "check_duration", "p99_ms") for r in aio], 2),
        cell([g(r, "proc", "cpu_pct") for r in aio]), "n/a", "n/a",
        cell([g(r, "peer", "checks_fail") for r in aio]),
    ])

head = ["tool", "runs", "validated checks/s (req/s for wrk)", "p50 ms", "p99 ms",
        "its CPU %", "nginx CPU %", "other CPU % on the machine", "errors / failed"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")
print()

best = max(klaxon, key=lambda c: med([r["checks_per_s"] for r in klaxon[c]]), default=None)
if best is not None:
    k = med([r["checks_per_s"] for r in klaxon[best]])
    a = max((med([g(r, "peer", "checks_ok_per_s") for r in runs]) or 0
             for runs in aio_by_n.values()), default=None)
    w = med([r["rps"] for r in wrk])
    us = med([r["cpu_us_per_check"] for r in klaxon[best]])
    ngx = med([r.get("watched_us_per_check") for r in klaxon[best]])
    print(f"klaxon (c={best}): {k:,.0f} validated checks/s; "
          f"{us:.1f} µs klaxon CPU per check" + (f", {ngx:.1f} µs nginx CPU per check" if ngx else ""))
    if a:
        print(f"klaxon / aiohttp = {k / a:.1f}x (aiohttp at its best jobs/s: {a:,.0f} checks/s)")
    if w:
        print(f"klaxon / wrk     = {k / w:.2f} ({100 * k / w:.0f} % of the raw ceiling)")
    print(f"target >= 30,000 validated checks/s: {'met' if k >= 30000 else 'NOT met'}")
