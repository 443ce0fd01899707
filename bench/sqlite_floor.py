#!/usr/bin/env python3
"""The floor of klaxon's one-alert transaction on this disk, without klaxon.

The same schema (src/store/migrations.rs), pragmas (WAL, synchronous = NORMAL,
wal_autocheckpoint = 0, a PASSIVE checkpoint every 100 commits) and statements as one
`Store::record` of a failure (src/store/commit.rs: job state read, silence lookup, run
insert, state upsert, undelivered keys, outbox insert, commit), from Python's sqlite3,
so a few microseconds of interpreter per statement are included. Samples are 10 ms
apart, as the bench's single alerts, so caches are as cold as they are there.

    bench/sqlite_floor.py [DIR] [N]    # DIR: where the database goes (default target/tmp)

Prints p50 / min / p90 in microseconds of: the whole transaction, its statements, its
COMMIT alone, and an empty BEGIN IMMEDIATE + COMMIT.
"""
import json
import os
import re
import sqlite3
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
base = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "tmp")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
os.makedirs(base, exist_ok=True)
src = open(os.path.join(ROOT, "src", "store", "migrations.rs")).read()
migrations = re.findall(r'^    "\n(.*?)^",', src, re.S | re.M)
if not migrations:
    sys.exit("no migrations found in src/store/migrations.rs")

with tempfile.TemporaryDirectory(dir=base) as d:
    c = sqlite3.connect(os.path.join(d, "klaxon.db"), isolation_level=None)
    for p in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        c.execute("PRAGMA " + p)
    for m in migrations:
        c.executescript(m)
    state = json.dumps({"open": {"id": "x" * 26, "since": "2026-12-04T00:00:00Z",
                                 "severity": "critical", "notified": ["hook"]},
                        "streak": 1, "last": "critical"})
    payload = json.dumps({"agent": "bench", "id": "a" * 26, "job": "single", "event": "failure",
                          "severity": "critical",
                          "summary": "cannot connect to 127.0.0.1:9: Connection refused",
                          "output": None, "started_at": "2026-12-04T00:00:00.000Z",
                          "at": "2026-12-04T00:00:00.000Z", "attempts": 1})
    res = {k: [] for k in ("transaction", "statements", "commit", "empty_txn")}
    for i in range(n + 20):
        time.sleep(0.010)
        t0 = time.perf_counter_ns()
        c.execute("BEGIN IMMEDIATE")
        c.execute("SELECT state FROM job_state WHERE job = ?", ("single",)).fetchall()
        c.execute("SELECT id, jobs, starts_at, ends_at, comment, created_by, created_at FROM silences"
                  " WHERE starts_at <= ?1 AND ends_at > ?1 ORDER BY ends_at DESC, id", (i,)).fetchall()
        c.execute("INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary,"
                  " output, skipped, metrics, fire_at, silenced) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                  ("single", i, i, "critical", 1, 0, "cannot connect", None, None, None, None, None))
        c.execute("INSERT INTO job_state (job, state) VALUES (?1, ?2)"
                  " ON CONFLICT (job) DO UPDATE SET state = excluded.state", ("single", state))
        c.execute("SELECT DISTINCT notifier, job FROM outbox"
                  " WHERE delivered_at IS NULL AND gave_up_at IS NULL").fetchall()
        cur = c.execute("INSERT INTO outbox (alert_id, job, notifier, event, payload, created_at,"
                        " next_attempt_at, claimed_by, claim_until) VALUES (?1,?2,?3,?4,?5,?6,?6,?7,?8)",
                        ("a" * 26, "single", "hook", "failure", payload, i, "me", i + 60000))
        t1 = time.perf_counter_ns()
        c.execute("COMMIT")
        t2 = time.perf_counter_ns()
        # The delivery's mark, as each message of the bench gets one.
        c.execute("UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, claimed_by = NULL,"
                  " claim_until = NULL WHERE id = ?1", (cur.lastrowid, i))
        time.sleep(0.002)
        t3 = time.perf_counter_ns()
        c.execute("BEGIN IMMEDIATE")
        c.execute("COMMIT")
        t4 = time.perf_counter_ns()
        if i % 100 == 99:
            c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if i >= 20:
            res["transaction"].append((t2 - t0) / 1e3)
            res["statements"].append((t1 - t0) / 1e3)
            res["commit"].append((t2 - t1) / 1e3)
            res["empty_txn"].append((t4 - t3) / 1e3)
    c.close()

print(f"sqlite {sqlite3.sqlite_version}, {n} samples 10 ms apart, load {os.getloadavg()[0]:.2f}")
for k, v in res.items():
    v.sort()
    print(f"{k:12s} p50 {v[len(v) // 2]:7.1f} us  min {v[0]:7.1f}  p90 {v[9 * len(v) // 10]:7.1f}")
