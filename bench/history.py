#!/usr/bin/env python3
"""History retention benchmark: a state store with RUNS runs over JOBS jobs, before and
after the agent's pruning, against one with 10 runs.

    bench/history.py KLAXON_BIN OUT_DIR [--runs 1000000] [--jobs 100] [--reps 15]

Steps, all on the real binary and the real on-disk store:
  1. `small`: `klaxon once` ten times: a store of 10 runs. `klaxon status` is timed.
  2. `big`: the same schema (made by `klaxon once`) filled with RUNS runs spread
     evenly over the last 365 days, every one an ok run with its output (about 200
     bytes) and metrics, as the agent writes them. `klaxon status` is timed.
  3. The agent is started on `big` with the default `[history]` (keep = "90d",
     max_runs = 10000): its RSS is sampled until its first pass logs "pruned the
     history", and for 5 s after. Then `status` is timed again and the store measured.

Prints a markdown table; writes OUT_DIR/history.json. Standard library only.
"""

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time

DAY_MS = 86_400_000
OUTPUT = ("GET /health 200 OK in 12 ms; body: " + "x" * 160)[:200]
METRICS = json.dumps([{"name": "latency_ms", "value": 12.5, "unit": "ms"}])


def config(dir_, jobs):
    lines = [
        "[agent]",
        'name = "bench"',
        f'state_dir = "{dir_}/state"',
        "",
        "[notifiers.console]",
        'type = "log"',
        "",
    ]
    for j in range(jobs):
        lines += [
            f"[jobs.job-{j}]",
            'every = "1h"',
            'notify = ["console"]',
            f"[jobs.job-{j}.check]",
            'type = "script"',
            'shell = "true"',
            "",
        ]
    path = os.path.join(dir_, "klaxon.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def klaxon(bin_, cfg, *args, **kw):
    return subprocess.run(
        [bin_, "--config", cfg, *args],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=300,
        **kw,
    )


def time_status(bin_, cfg, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        klaxon(bin_, cfg, "status", "--json")
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times), max(times)


def db_facts(path):
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
    db.close()
    return {
        "file_mb": os.path.getsize(path) / 1e6,
        "live_mb": (pages - free) * page / 1e6,
        "runs": runs,
    }


def fill(path, runs, jobs):
    db = sqlite3.connect(path)
    now = int(time.time() * 1000)
    span = 365 * DAY_MS
    rows = (
        (
            f"job-{i % jobs}",
            now - span + i * span // runs,
            now - span + i * span // runs + 12,
            OUTPUT,
            METRICS,
        )
        for i in range(runs)
    )
    with db:
        db.executemany(
            "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms,"
            " summary, output, skipped, metrics, fire_at)"
            " VALUES (?1, ?2, ?3, 'ok', 1, 12, 'exit 0', ?4, NULL, ?5, ?2)",
            rows,
        )
    db.close()


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def agent_pass(bin_, cfg, log_path):
    env = dict(os.environ, RUST_LOG="klaxon=info")
    with open(log_path, "w") as log:
        agent = subprocess.Popen(
            [bin_, "--config", cfg, "run"], stdout=subprocess.DEVNULL, stderr=log, env=env
        )
    peak, deadline, line = 0, time.time() + 900, None
    try:
        while time.time() < deadline:
            peak = max(peak, rss_kb(agent.pid))
            with open(log_path) as f:
                line = next((l for l in f if "pruned the history" in l), None)
            if line:
                break
            if agent.poll() is not None:
                sys.exit(f"the agent exited:\n{open(log_path).read()}")
            time.sleep(0.2)
        else:
            sys.exit(f"no pass within 900 s:\n{open(log_path).read()}")
        after = []
        for _ in range(25):
            after.append(rss_kb(agent.pid))
            time.sleep(0.2)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    fields = dict(re.findall(r"(\w+)=(\d+)", line))
    return {
        "rss_peak_mb": peak / 1024,
        "rss_after_mb": statistics.median(after) / 1024,
        **{k: int(v) for k, v in fields.items()},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bin")
    p.add_argument("out")
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--reps", type=int, default=15)
    a = p.parse_args()
    res = {"runs": a.runs, "jobs": a.jobs}

    small = os.path.join(a.out, "small")
    big = os.path.join(a.out, "big")
    for d in (small, big):
        os.makedirs(d, exist_ok=True)
    cfg_small, cfg_big = config(small, a.jobs), config(big, a.jobs)
    for _ in range(10):
        klaxon(a.bin, cfg_small, "once", "job-0")
    res["small"] = {"status_ms": time_status(a.bin, cfg_small, a.reps)}

    klaxon(a.bin, cfg_big, "once", "job-0")
    db = os.path.join(big, "state", "klaxon.db")
    t = time.perf_counter()
    fill(db, a.runs, a.jobs)
    res["fill_s"] = time.perf_counter() - t
    res["before"] = {**db_facts(db), "status_ms": time_status(a.bin, cfg_big, a.reps)}
    res["pass"] = agent_pass(a.bin, cfg_big, os.path.join(big, "agent.log"))
    res["after"] = {**db_facts(db), "status_ms": time_status(a.bin, cfg_big, a.reps)}

    with open(os.path.join(a.out, "history.json"), "w") as f:
        json.dump(res, f, indent=2)
    b, af, ps = res["before"], res["after"], res["pass"]
    ms = lambda t: f"{t[0]:.1f} ms [{t[1]:.1f}–{t[2]:.1f}]"
    print(f"| store | runs | file | live data | `klaxon status` (median of {a.reps}) |")
    print("|---|---|---|---|---|")
    print(f"| 10 runs | 10 | – | – | {ms(res['small']['status_ms'])} |")
    print(
        f"| {a.runs:,} runs over {a.jobs} jobs, 365 days | {b['runs']:,} | {b['file_mb']:.0f} MB |"
        f" {b['live_mb']:.0f} MB | {ms(b['status_ms'])} |"
    )
    print(
        f"| after the agent's first pass (keep 90d) | {af['runs']:,} | {af['file_mb']:.0f} MB |"
        f" {af['live_mb']:.0f} MB | {ms(af['status_ms'])} |"
    )
    print()
    print(
        f"First pass: {ps.get('runs', 0):,} runs pruned in {ps.get('steps', 0):,} steps,"
        f" {ps.get('pass_ms', 0) / 1000:.1f} s in all, longest step {ps.get('longest_step_ms', 0)} ms."
        f" Agent RSS: peak {ps['rss_peak_mb']:.1f} MB during the pass, {ps['rss_after_mb']:.1f} MB after."
    )


if __name__ == "__main__":
    main()
