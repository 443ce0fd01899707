#!/usr/bin/env python3
"""Helpers for bench/dashboard.sh (the dashboard's overview: render time, weight, CPU).

    dashboard.py config --n N --port P --state DIR --out FILE
        an agent listening on 127.0.0.1:P with N real, cheap jobs every 60 s (jitter 60 s,
        so their runs spread over the minute): two in three `tcp` checks of the agent's
        own listener (they measure `connect_ms`), one in three `http` GETs of its
        `/healthz` (`latency_ms`); no retries, notifying a `log` notifier
    dashboard.py prefill --db DB --n N --runs R
        R runs per job into the store (schema made by the agent), one a minute up to now,
        so every bar is full: most ok, one job in ten with an incident of 2-6 critical
        runs, one in twenty with a skipped fire; latencies 0.1-3 ms with noise
    dashboard.py render --url URL --out R.json [--count C]
        C sequential GETs of URL on one keep-alive connection: the time from sending the
        request to the body's last byte of each (an upper bound of the server's render
        time: loopback transfer included), the body's size and its size gzipped (-6)
    dashboard.py cpu --url URL --pid PID --out R.json [--window S --reps R --rate Q]
        the agent's CPU (utime+stime of /proc/PID/stat) over R pairs of S-second
        windows, alternating: no client, then a client GETting URL Q times a second
        (fixed schedule, one keep-alive connection, body read in full); the load average
        at each window's start
    dashboard.py table DIR
        markdown tables (medians over reps, [min-max]) from the JSON in DIR

Every process is started by the shell script and stopped by its PID; every wait here
has a deadline.
"""
import argparse
import glob
import gzip
import http.client
import json
import os
import random
import sqlite3
import statistics
import sys
import threading
import time
import urllib.parse

CLK_TCK = os.sysconf("SC_CLK_TCK")


def kind(i):
    return "http" if i % 3 == 2 else "tcp"


def config(a):
    lines = ["[agent]", 'name = "bench"', f'state_dir = "{a.state}"', "max_concurrent = 64",
             f'listen = "127.0.0.1:{a.port}"', "",
             "[log]", 'level = "warn"', "",
             "[notifiers.console]", 'type = "log"', "",
             "[defaults]", 'notify = ["console"]', "retry = { attempts = 1 }", 'timeout = "5s"', ""]
    for i in range(a.n):
        lines += [f"[jobs.job-{i:04d}]", 'every = "60s"', 'jitter = "60s"', f"[jobs.job-{i:04d}.check]"]
        if kind(i) == "tcp":
            lines += ['type = "tcp"', 'host = "127.0.0.1"', f"port = {a.port}"]
        else:
            lines += ['type = "http"', f'url = "http://127.0.0.1:{a.port}/healthz"']
        lines.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(lines))


def prefill(a):
    rnd = random.Random(18)
    con = sqlite3.connect(a.db)
    now = int(time.time() * 1000)
    rows = []
    for i in range(a.n):
        job = f"job-{i:04d}"
        base = rnd.uniform(0.1, 3.0)
        down = set()
        if i % 10 == 3:
            start = rnd.randrange(a.runs - 10)
            down = set(range(start, start + rnd.randint(2, 6)))
        skip = rnd.randrange(a.runs) if i % 20 == 7 else None
        for k in range(a.runs):
            at = now - (a.runs - k) * 60_000 - rnd.randrange(60_000)
            latency = round(base * rnd.uniform(0.7, 1.6), 3)
            if k == skip:
                rows.append((job, at, at, "skipped", 0, 0, "the previous run was still going",
                             None, "max_instances", None, None))
                continue
            if kind(i) == "tcp":
                name, what = "connect_ms", f"connected to 127.0.0.1 in {latency} ms"
            else:
                name, what = "latency_ms", f"HTTP 200 OK in {latency} ms"
            severity = "ok"
            if k in down:
                severity, what = "critical", "connection refused (os error 111)"
            metrics = json.dumps([{"name": name, "value": latency, "unit": "ms", "min": 0.0}])
            rows.append((job, at, at + 2, severity, 1, max(1, round(latency)), what, None, None,
                         metrics, latency))
    con.executemany(
        "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary,"
        " output, skipped, metrics, latency_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def connect(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10), u.path or "/"


def get(conn, path):
    conn.request("GET", path, headers={"Accept": "text/html"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"GET {path}: HTTP {r.status}: {body[:200]!r}")
    return body


def render(a):
    conn, path = connect(a.url)
    get(conn, path)  # the first page builds the connection and warms the caches
    times, size, zipped = [], None, None
    for _ in range(a.count):
        t0 = time.perf_counter()
        body = get(conn, path)
        times.append((time.perf_counter() - t0) * 1000)
        size = len(body)
        zipped = len(gzip.compress(body, 6))
    times.sort()
    r = {"count": a.count, "ms": times, "p50_ms": statistics.median(times),
         "p95_ms": times[int(0.95 * (len(times) - 1))], "bytes": size, "gzip_bytes": zipped,
         "rects": body.count(b"<rect"), "polylines": body.count(b"<polyline")}
    json.dump(r, open(a.out, "w"), indent=1)


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def client(url, rate, stop, served):
    conn, path = connect(url)
    period, t = 1.0 / rate, time.monotonic()
    while not stop.is_set():
        get(conn, path)
        served[0] += 1
        t += period
        stop.wait(max(0.0, t - time.monotonic()))


def cpu(a):
    windows = []
    for rep in range(a.reps):
        for loaded in (False, True):
            stop, served = threading.Event(), [0]
            th = None
            load = open("/proc/loadavg").read().split()[0]
            if loaded:
                th = threading.Thread(target=client, args=(a.url, a.rate, stop, served), daemon=True)
                th.start()
                time.sleep(1.0)  # the client's connection is open and its pace set
            t0, c0 = time.monotonic(), proc_cpu(a.pid)
            served0 = served[0]
            time.sleep(a.window)
            t1, c1 = time.monotonic(), proc_cpu(a.pid)
            n = served[0] - served0
            stop.set()
            if th:
                th.join(15)
            windows.append({"rep": rep, "loaded": loaded, "wall_s": t1 - t0, "cpu_s": c1 - c0,
                            "cpu_pct": 100 * (c1 - c0) / (t1 - t0), "requests": n,
                            "load1": float(load)})
            print(f"  rep {rep + 1}/{a.reps} {'10 req/s' if loaded else 'idle    '}: "
                  f"{100 * (c1 - c0) / (t1 - t0):.2f} % of a core, {n} pages, load {load}",
                  file=sys.stderr)
    json.dump({"windows": windows, "rate": a.rate, "window_s": a.window}, open(a.out, "w"), indent=1)


def med(vals):
    vals = sorted(vals)
    return statistics.median(vals), vals[0], vals[-1]


def table(a):
    print("| jobs | page bytes (gzip) | render p50 / p95 (ms) | `<rect>` / `<polyline>` |")
    print("| --- | --- | --- | --- |")
    for n in sorted({int(os.path.basename(f).split("-")[1]) for f in glob.glob(f"{a.dir}/render-*.json")}):
        rs = [json.load(open(f)) for f in sorted(glob.glob(f"{a.dir}/render-{n}-r*.json"))]
        p50, lo, hi = med([r["p50_ms"] for r in rs])
        p95 = med([r["p95_ms"] for r in rs])[0]
        b = rs[-1]
        print(f"| {n} | {b['bytes'] / 1000:.1f} KB ({b['gzip_bytes'] / 1000:.1f} KB) | "
              f"{p50:.2f} [{lo:.2f}–{hi:.2f}] / {p95:.2f} | {b['rects']} / {b['polylines']} |")
    print()
    print("| jobs | agent CPU idle | with 10 pages/s | added (median of pairs) | load |")
    print("| --- | --- | --- | --- | --- |")
    for f in sorted(glob.glob(f"{a.dir}/cpu-*.json")):
        n = os.path.basename(f).split("-")[1].split(".")[0]
        w = json.load(open(f))["windows"]
        idle = [x["cpu_pct"] for x in w if not x["loaded"]]
        busy = [x["cpu_pct"] for x in w if x["loaded"]]
        diffs = [b - i for i, b in zip(idle, busy)]
        loads = [x["load1"] for x in w]
        fmt = lambda t: f"{t[0]:.2f} % [{t[1]:.2f}–{t[2]:.2f}]"
        print(f"| {n} | {fmt(med(idle))} | {fmt(med(busy))} | {fmt(med(diffs))} | "
              f"{min(loads):.1f}–{max(loads):.1f} |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--state", required=True)
    c.add_argument("--out", required=True)
    f = sub.add_parser("prefill")
    f.add_argument("--db", required=True)
    f.add_argument("--n", type=int, required=True)
    f.add_argument("--runs", type=int, default=90)
    r = sub.add_parser("render")
    r.add_argument("--url", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--count", type=int, default=50)
    u = sub.add_parser("cpu")
    u.add_argument("--url", required=True)
    u.add_argument("--pid", type=int, required=True)
    u.add_argument("--out", required=True)
    u.add_argument("--window", type=float, default=60)
    u.add_argument("--reps", type=int, default=3)
    u.add_argument("--rate", type=float, default=10)
    t = sub.add_parser("table")
    t.add_argument("dir")
    a = p.parse_args()
    return {"config": config, "prefill": prefill, "render": render, "cpu": cpu, "table": table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
