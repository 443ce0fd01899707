#!/usr/bin/env python3
"""Markdown tables for bench/alert_latency.sh: medians over reps [min–max], ratios.

    python3 bench/alert_summary.py /tmp/klaxon-bench-alerts
"""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/klaxon-bench-alerts"


def load(pattern):
    rs = []
    for p in sorted(glob.glob(os.path.join(out, pattern))):
        with open(p) as f:
            rs.append(json.load(f))
    return rs


def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def fmt(m):
    v, lo, hi = m
    if v is None:
        return "n/a"
    s = f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if hi - lo > 0.005 * max(1.0, v):
        s += f" [{lo:.2f}–{hi:.2f}]" if hi < 10 else f" [{lo:.1f}–{hi:.1f}]"
    return s


def g(d, *ks):
    for k in ks:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


kl = load("klaxon_r*.json")
ks = load("klaxon-shared_r*.json")
try:
    receiver = open(os.path.join(out, "receiver.txt")).read().strip()
except OSError:
    receiver = "the shared receiver"
rows = []  # (name, single p50, single p99, storm p50, storm p99, storm max, n single, n storm)


def krow(name, rs):
    if rs:
        rows.append((name,
                     med([g(r, "single", "failure", "p50_ms") for r in rs]),
                     med([g(r, "single", "failure", "p99_ms") for r in rs]),
                     med([g(r, "storm", "failure", "p50_ms") for r in rs]),
                     med([g(r, "storm", "failure", "p99_ms") for r in rs]),
                     med([g(r, "storm", "failure", "max_ms") for r in rs]),
                     g(rs[0], "single", "failure", "count"), g(rs[0], "storm", "failure", "count")))


krow("klaxon (durable commit included)", ks)
for v, label in (("requests", "Python requests (new conn.)"), ("aiohttp", "Python aiohttp (session)")):
    s = load(f"py-{v}_single_r*.json")
    b = load(f"py-{v}_burst_r*.json")
    if s or b:
        rows.append((label,
                     med([g(r, "alert", "latency_known", "p50_ms") for r in s]),
                     med([g(r, "alert", "latency_known", "p99_ms") for r in s]),
                     med([g(r, "alert", "latency_known", "p50_ms") for r in b]),
                     med([g(r, "alert", "latency_known", "p99_ms") for r in b]),
                     med([g(r, "alert", "latency_known", "max_ms") for r in b]),
                     g(s[0], "alert", "latency_known", "count") if s else None,
                     g(b[0], "alert", "latency_known", "count") if b else None))

print(f"Headline, like for like: every implementation posts to one receiver, {receiver}, "
      "in a process of its own; arrival is its stamp on handler entry.")
print()
print("| implementation | one alert p50 (ms) | one alert p99 | storm of 100 p50 | storm p99 | storm max | samples (one / storm) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {fmt(r[1])} | {fmt(r[2])} | {fmt(r[3])} | {fmt(r[4])} | {fmt(r[5])} | {r[6]} / {r[7]} |")
aio = next((r for r in rows if r[0].startswith("Python aiohttp")), None)
if rows and rows[0][0].startswith("klaxon") and aio:
    k = rows[0]

    def ratio(i):
        return k[i][0] / aio[i][0] if k[i][0] and aio[i][0] else None

    one, storm = ratio(1), ratio(4)
    print()
    print("klaxon ÷ aiohttp, same run (< 1: klaxon faster). Targets: one alert p50 ≤ 0.8×, storm p99 ≤ 0.25×.")
    print()
    print("| measure | klaxon ÷ aiohttp | target | met |")
    print("|---|---|---|---|")
    for label, v, t in (("one alert p50", one, 0.8), ("storm of 100 p99", storm, 0.25)):
        print(f"| {label} | {v:.2f}× | ≤ {t}× | {'yes' if v is not None and v <= t else 'no'} |"
              if v is not None else f"| {label} | n/a | ≤ {t}× | n/a |")
if kl:
    rows_in = []
    rows, saved = [], rows
    krow("klaxon, in-process receiver (not like for like: no second process)", kl)
    rows_in, rows = rows, saved
    r = rows_in[0]
    print()
    print("For the breakdown only (the receiver inside klaxon's own process):")
    print()
    print("| implementation | one alert p50 (ms) | one alert p99 | storm of 100 p50 | storm p99 | storm max | samples (one / storm) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r[0]} | {fmt(r[1])} | {fmt(r[2])} | {fmt(r[3])} | {fmt(r[4])} | {fmt(r[5])} | {r[6]} / {r[7]} |")
if kl:
    print()
    print("klaxon breakdown (medians over reps, ms):")
    print()
    print("| part | p50 | p99 |")
    print("|---|---|---|")
    parts = [("one alert: `record()` returning (store-thread commit, then the woken worker runs the send first)", ("single", "record_call")),
             ("one alert: recovery message", ("single", "recovery")),
             ("storm: `record()` calls (100 at once, one connection)", ("storm", "record_call")),
             ("storm: first arrival of each storm", ("storm", "first_of_storm")),
             ("storm: last arrival of each storm", ("storm", "last_of_storm")),
             ("alone: spawn_blocking round trip", ("components", "spawn_blocking_hop")),
             ("alone: `store.delivered` (autocommit UPDATE)", ("components", "store_delivered")),
             ("alone: `store.pending` (nothing pending)", ("components", "store_pending_empty")),
             ("alone: webhook `send` (keep-alive POST + 200)", ("components", "webhook_send")),
             ("alone: webhook `send` start → body received", ("components", "webhook_send_to_arrival"))]
    for label, path in parts:
        print(f"| {label} | {fmt(med([g(r, *path, 'p50_ms') for r in kl]))} | {fmt(med([g(r, *path, 'p99_ms') for r in kl]))} |")
