#!/usr/bin/env python3
"""Helpers for bench/checks.sh (dns and ping checks next to dig and fping).

    checks_run.py measure --out R.json [--warmup S --window S --stop] -- CMD ARGS...
        runs CMD (stdout and stderr to R.json.out / R.json.err); samples its CPU (self
        and reaped children, /proc/PID/stat) at start+warmup and start+warmup+window;
        with --stop then sends SIGTERM (the agent runs until told), else waits for it to
        exit; writes the window's CPU and the whole run's (wait4: self and children)
    checks_run.py config --kind dns|ping --n N --state DIR --out FILE [--port P --name N]
        an agent config: N dns jobs asking 127.0.0.1:P for NAME (A, expect 10.0.0.1),
        or N ping jobs to 127.0.0.1 … 127.0.0.N (count 1); every 1 s, no retries
    checks_run.py table DIR
        markdown tables (medians over reps, [min–max]) from the JSON in DIR

Every process is started here and stopped by its PID; every wait has a deadline.
"""
import argparse
import glob
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import defaultdict

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """CPU seconds of a live process: its own and its reaped children's."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return sum(int(x) for x in rest[11:15]) / CLK_TCK


def measure(a):
    out = open(a.out + ".out", "wb")
    err = open(a.out + ".err", "wb")
    start = time.time()
    p = subprocess.Popen(a.cmd, stdout=out, stderr=err)
    deadline = start + a.warmup + a.window + a.limit
    cpu0 = cpu1 = t0 = t1 = None
    if a.window > 0:
        time.sleep(max(0.0, start + a.warmup - time.time()))
        if p.poll() is None:
            t0, cpu0 = time.time(), proc_cpu(p.pid)
            time.sleep(max(0.0, t0 + a.window - time.time()))
            if p.poll() is None:
                t1, cpu1 = time.time(), proc_cpu(p.pid)
    if a.stop and p.poll() is None:
        p.send_signal(signal.SIGTERM)
    status = rusage = None
    while time.time() < deadline:
        pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
    else:
        p.kill()
        _, status, rusage = os.wait4(p.pid, 0)
        print(f"{a.cmd[0]}: killed after its deadline", file=sys.stderr)
    end = time.time()
    r = {
        "cmd": a.cmd, "start": start, "end": end, "wall_s": end - start,
        "exit": os.waitstatus_to_exitcode(status),
        "cpu_total_s": rusage.ru_utime + rusage.ru_stime,
        "t0": t0, "t1": t1,
        "window_s": (t1 - t0) if t1 else None,
        "cpu_window_s": (cpu1 - cpu0) if cpu1 is not None else None,
    }
    with open(a.out, "w") as f:
        json.dump(r, f, indent=1)
    return 0 if r["exit"] == 0 else 1


def config(a):
    lines = ["[agent]", 'name = "bench"', f'state_dir = "{a.state}"', "max_concurrent = 256", "",
             "[notifiers.console]", 'type = "log"', "",
             "[defaults]", 'notify = ["console"]', "retry = { attempts = 1 }", ""]
    for i in range(a.n):
        lines += [f"[jobs.j{i}]", 'every = "1s"', f"[jobs.j{i}.check]"]
        if a.kind == "dns":
            lines += ['type = "dns"', f'name = "{a.name}"', f'server = "127.0.0.1:{a.port}"',
                      'expect = ["10.0.0.1"]']
        else:
            lines += ['type = "ping"', f'host = "127.0.0.{i + 1}"', "count = 1", 'ip = "v4"']
        lines.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(lines))


def runs(db, t0, t1):
    """Runs the agent finished inside [t0, t1] (epoch seconds), by severity."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT severity, count(*) FROM runs WHERE skipped IS NULL AND finished_at >= ? "
        "AND finished_at < ? GROUP BY severity", (int(t0 * 1000), int(t1 * 1000))).fetchall()
    skipped = con.execute(
        "SELECT count(*) FROM runs WHERE skipped IS NOT NULL AND started_at >= ? AND started_at < ?",
        (int(t0 * 1000), int(t1 * 1000))).fetchone()[0]
    con.close()
    return dict(rows), skipped


def row(tool, rep, f, meta):
    """One measurement as (checks done, checks ok, CPU s, wall s) from its files."""
    r = json.load(open(f))
    if tool.startswith("agent"):
        by, skipped = runs(os.path.join(os.path.dirname(f), f"state-{tool}-r{rep}", "klaxon.db"),
                           r["t0"], r["t1"])
        done = sum(by.values())
        return {"done": done, "ok": by.get("ok", 0), "skipped": skipped,
                "cpu_s": r["cpu_window_s"], "wall_s": r["window_s"]}
    text = open(f + ".out", errors="replace").read() + open(f + ".err", errors="replace").read()
    if tool == "fping":
        pairs = re.findall(r"xmt/rcv/%loss = (\d+)/(\d+)/", text)
        done = sum(int(x) for x, _ in pairs)
        ok = sum(int(y) for _, y in pairs)
    elif tool == "klaxon-bench":
        res = json.loads(text[text.index("RESULT ") + 7:].splitlines()[0])
        return {"done": res["validated"] + res["errors"], "ok": res["validated"],
                "cpu_s": res["cpu_s"], "wall_s": res["window_s"]}
    else:  # dig: one answer line per query answered
        ok = len(re.findall(r"^a\.test\.\s+\d+\s+IN\s+A\s+10\.0\.0\.1$", text, re.M))
        done = meta["queries"][tool]
    return {"done": done, "ok": ok, "cpu_s": r["cpu_total_s"], "wall_s": r["wall_s"]}


def med(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, "n/a"
    m = statistics.median(vals)
    s = fmt.format(m)
    if len(vals) > 1 and fmt.format(min(vals)) != fmt.format(max(vals)):
        s += f" [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"
    return m, s


def table(a):
    meta = json.load(open(os.path.join(a.dir, "meta.json")))
    by = defaultdict(list)
    for f in sorted(glob.glob(os.path.join(a.dir, "*_r*.json"))):
        m = re.match(r"(dns|ping)-(.+)_r(\d+)\.json$", os.path.basename(f))
        if not m:
            continue
        kind, tool, rep = m.groups()
        try:
            by[(kind, tool)].append(row(tool, rep, f, meta))
        except (OSError, ValueError, KeyError, sqlite3.Error) as e:
            print(f"{f}: {e}", file=sys.stderr)
    names = meta["names"]
    for kind, title in (("dns", "dns: one A query to dnsmasq on loopback"),
                        ("ping", "ping: 100 targets (127.0.0.1–100) every second, one echo each")):
        print(f"### {title}\n")
        print("| tool | checks/s | CPU µs per check | ok / done | reps |")
        print("| --- | --- | --- | --- | --- |")
        cpu_of = {}
        for (k, tool), rs in sorted(by.items(), key=lambda kv: list(names).index(kv[0][1])
                                    if kv[0][1] in names else 99):
            if k != kind:
                continue
            rate = [r["done"] / r["wall_s"] if r["wall_s"] else None for r in rs]
            cpu = [1e6 * r["cpu_s"] / r["ok"] if r["ok"] else None for r in rs]
            _, rate_s = med(rate, "{:,.0f}")
            cpu_of[tool], cpu_s = med(cpu, "{:,.1f}")
            okdone = ", ".join(f"{r['ok']}/{r['done']}" + (f" ({r['skipped']} skipped)"
                               if r.get("skipped") else "") for r in rs)
            print(f"| {names.get(tool, tool)} | {rate_s} | {cpu_s} | {okdone} | {len(rs)} |")
        print()
        base = [t for t in cpu_of if t.startswith(("agent", "klaxon")) and cpu_of[t]]
        peers = [t for t in cpu_of if not t.startswith(("agent", "klaxon")) and cpu_of[t]]
        for p in peers:
            for b in base:
                print(f"- CPU per check, {names.get(p, p)} / {names.get(b, b)}: "
                      f"**{cpu_of[p] / cpu_of[b]:.2f}×**")
        print()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", required=True)
    m.add_argument("--warmup", type=float, default=0.0)
    m.add_argument("--window", type=float, default=0.0)
    m.add_argument("--limit", type=float, default=120.0, help="seconds past the window before SIGKILL")
    m.add_argument("--stop", action="store_true")
    m.add_argument("cmd", nargs=argparse.REMAINDER)
    c = sub.add_parser("config")
    c.add_argument("--kind", choices=["dns", "ping"], required=True)
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--state", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--port", type=int, default=0)
    c.add_argument("--name", default="a.test")
    t = sub.add_parser("table")
    t.add_argument("dir")
    a = ap.parse_args()
    if a.what == "measure":
        a.cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
        sys.exit(measure(a))
    if a.what == "config":
        config(a)
    else:
        table(a)


if __name__ == "__main__":
    main()
