#!/usr/bin/env python3
"""Where one alert's time goes between threads, from the kernel's scheduler events.

Record the bench's single alerts with the scheduler's wake-ups and switches, e.g.

    benches/receiver.rs binary --out /tmp/hook.log --port 18091 &
    perf record -e sched:sched_switch,sched:sched_wakeup -a -o sched.data -- \\
        nice -n -19 BENCH_BIN --singles 200 --storms 0 --components 0 \\
        --hook http://127.0.0.1:18091/hook --hook-log /tmp/hook.log
    perf script -i sched.data -F comm,tid,cpu,time,event,trace > sched.txt
    bench/sched_timeline.py sched.txt

For every wake-up of a `klaxon-store` thread (a commit) whose run is followed within
3 ms by a wake-up of the receiver, it prints p50 / p10 / p90 in microseconds of: how
long the async worker ran before it woke the store thread, how long that wake-up took
to run, how long the store thread ran (the transaction and its hand-over), the wake-up
of the async worker it woke, the worker's time until it woke the receiver (the
delivery loop, the notifier, reqwest and hyper up to the socket write), and the
receiver's own wake-up.

Since the delivery loop takes a message as its row is inserted (before the commit),
the store thread wakes a worker twice per alert, and the split above counts the
commit's end in "worker until receiver woken". The last line is the path after the
commit alone: from the store thread's last wake-up of a worker (the commit releasing
the prepared request) to the wake-up of the receiver, within 3 ms.
"""
import re
import sys

LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(sched_\w+):\s+(.*)$")
WAKE = re.compile(r"comm=(.*?) pid=(\d+)")
SWITCH = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")

# (time us, kind, from tid, from comm, to tid, to comm)
events = []
for line in open(sys.argv[1]):
    m = LINE.match(line)
    if not m:
        continue
    comm, tid, _cpu, t, kind, rest = m.groups()
    t = float(t) * 1e6
    if kind == "sched_wakeup":
        w = WAKE.search(rest)
        events.append((t, "wake", int(tid), comm, int(w.group(2)), w.group(1)))
    else:
        w = SWITCH.search(rest)
        events.append((t, "switch", int(w.group(2)), w.group(1), int(w.group(5)), w.group(4)))
events.sort()


def find(start, pred, stop=None):
    end = len(events) if stop is None else min(len(events), stop)
    return next((j for j in range(start, end) if pred(events[j])), None)


def switched_in(tid):
    return lambda e: e[1] == "switch" and e[4] == tid


def switched_out(tid):
    return lambda e: e[1] == "switch" and e[2] == tid


parts = {k: [] for k in ("worker ran before", "store wake-up", "store ran", "worker wake-up",
                         "worker until receiver woken", "receiver wake-up")}
for i, e in enumerate(events):
    if not (e[1] == "wake" and e[5].startswith("klaxon-store") and e[3].startswith("tokio")):
        continue
    store = e[4]
    before = next((j for j in range(i, -1, -1) if switched_in(e[2])(events[j])), None)
    s_in = find(i, switched_in(store))
    s_out = s_in is not None and find(s_in + 1, switched_out(store))
    if before is None or s_in is None or not s_out:
        continue
    woke = find(s_in, lambda x: x[1] == "wake" and x[2] == store and x[5].startswith("tokio"), s_out)
    if woke is None:
        continue
    w_in = find(woke, switched_in(events[woke][4]))
    if w_in is None:
        continue
    r_wake = find(w_in, lambda x: x[1] == "wake" and x[5].startswith("receiver"))
    if r_wake is None or events[r_wake][0] - events[s_out][0] > 3000:
        continue
    r_in = find(r_wake, switched_in(events[r_wake][4]))
    if r_in is None:
        continue
    t = lambda j: events[j][0]
    parts["worker ran before"].append(e[0] - t(before))
    parts["store wake-up"].append(t(s_in) - e[0])
    parts["store ran"].append(t(s_out) - t(s_in))
    parts["worker wake-up"].append(t(w_in) - t(woke))
    parts["worker until receiver woken"].append(t(r_wake) - t(w_in))
    parts["receiver wake-up"].append(t(r_in) - t(r_wake))

for name, v in parts.items():
    if not v:
        sys.exit("no alert found in the trace")
    v.sort()
    print(f"{name:28s} p50 {v[len(v) // 2]:7.1f} us  p10 {v[len(v) // 10]:7.1f}  p90 {v[9 * len(v) // 10]:7.1f}  n={len(v)}")

after = []
last_release = None
for e in events:
    if e[1] != "wake":
        continue
    if e[3].startswith("klaxon-store") and e[5].startswith("tokio"):
        last_release = e[0]
    elif e[5].startswith("receiver") and e[3].startswith("tokio") and last_release is not None:
        if e[0] - last_release < 3000:
            after.append(e[0] - last_release)
        last_release = None
if after:
    after.sort()
    print(f"{'commit released -> receiver':28s} p50 {after[len(after) // 2]:7.1f} us  "
          f"p10 {after[len(after) // 10]:7.1f}  p90 {after[9 * len(after) // 10]:7.1f}  n={len(after)}")
