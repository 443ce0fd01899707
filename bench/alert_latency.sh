#!/usr/bin/env bash
# Alert latency: klaxon (runner::record -> SQLite outbox commit -> delivery::worker ->
# webhook POST) vs the Python peers of ../shared/bench/peers (APScheduler + requests,
# APScheduler + aiohttp), each rep in the same run. Prints a markdown table (medians over
# REPS, [min–max] when they differ) with ratios; JSON results under $OUT.
#
#   bench/alert_latency.sh                     # REPS=3: about 9 min on 2 cores (+ build)
#   REPS=1 WINDOW=20 bench/alert_latency.sh    # about 3 min
#
# Environment:
#   REPS=3  WINDOW=30 (Python peers' measured window, s)  SINGLES=500  STORMS=20
#   RECEIVER=fast   the one receiver every implementation posts to, in a process of its
#              own, stamping on handler entry: `fast` is benches/receiver.rs (Rust, one
#              thread), `python` the peers' webhook_receiver.py (aiohttp). The headline
#              rows all use it; klaxon's in-process receiver is run too, for the breakdown.
#   PEERS=../shared/bench/peers   OUT=/tmp/klaxon-bench-alerts   BENCH_BIN=prebuilt bench
#
# Needs python3 with 'apscheduler<4' requests aiohttp; nginx (nginx-light), openssl.
# Loopback only. nginx and the webhook receiver are started and stopped by PID through
# the peers' ctl.sh; every run is bounded by `timeout` and driver.py's deadlines.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/bench/peers}"
PEERS="$(cd "$PEERS" && pwd)" || { echo "no peers at $PEERS (set PEERS=)" >&2; exit 2; }
OUT="${OUT:-/tmp/klaxon-bench-alerts}"
REPS="${REPS:-3}"
WINDOW="${WINDOW:-30}"
SINGLES="${SINGLES:-500}"
STORMS="${STORMS:-20}"
RECEIVER="${RECEIVER:-fast}"
PY="${PY:-python3}"
HOOKLOG=/tmp/peers/webhook.log   # where ctl.sh's receiver writes (fixed ports 18090/18443)

[ -f "$PEERS/alert_peer.py" ] || { echo "no alert_peer.py in $PEERS" >&2; exit 2; }
rm -rf "$OUT" && mkdir -p "$OUT/logs"

cleanup() {
  "$PEERS/ctl.sh" stop-webhook
  [ -n "${RECV_PID:-}" ] && kill "$RECV_PID" 2>/dev/null
  "$PEERS/ctl.sh" stop-nginx
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_bin() { # name
  (cd "$ROOT" && cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null) |
    $PY -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
if [ -z "${BENCH_BIN:-}" ]; then
  echo "== building the bench (release profile)" >&2
  BENCH_BIN=$(bench_bin alert_latency) || exit 1
fi
[ -x "$BENCH_BIN" ] || { echo "missing bench binary" >&2; exit 1; }

"$PEERS/ctl.sh" start-nginx || exit 1
mkdir -p /tmp/peers && : > "$HOOKLOG"
case "$RECEIVER" in
  fast)
    RECV_BIN="${RECV_BIN:-$(bench_bin receiver)}"
    [ -x "$RECV_BIN" ] || { echo "missing receiver binary" >&2; exit 1; }
    "$RECV_BIN" --out "$HOOKLOG" --port 18090 2>>"$OUT/logs/receiver.err" &
    RECV_PID=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18090) 2>/dev/null && break; sleep 0.1; done
    echo "benches/receiver.rs (Rust, one thread)" > "$OUT/receiver.txt" ;;
  python)
    "$PEERS/ctl.sh" start-webhook "$HOOKLOG" || exit 1
    echo "webhook_receiver.py (aiohttp)" > "$OUT/receiver.txt" ;;
  *) echo "RECEIVER is fast or python, not $RECEIVER" >&2; exit 2 ;;
esac

peer() { # variant name n interval rep
  local v=$1 name=$2 n=$3 iv=$4 r=$5 id="${1}_${2}_r${5}_$$"
  local out="$OUT/py-${v}_${name}_r$r.json"
  rm -f "$OUT/tmp_peer.json"
  echo "== rep $r: python $v $name (n=$n every ${iv}s, ${WINDOW}s window)" >&2
  timeout $((3 + WINDOW + 240)) $PY "$PEERS/driver.py" --out "$out" --warmup 3 --window "$WINDOW" \
    --peer-result "$OUT/tmp_peer.json" --stderr "$OUT/logs/peer.err" -- \
    $PY "$PEERS/alert_peer.py" --variant "$v" --n "$n" --interval "$iv" --warmup 3 \
    --window "$WINDOW" --run "$id" --out "$OUT/tmp_peer.json" >/dev/null || { echo "FAILED $out" >&2; return; }
  sleep 1.5
  $PY "$PEERS/analyze_alerts.py" --driver-json "$out" --run "$id" --fail-prefix /fail/py \
    --webhook-log "$HOOKLOG" --stamp-log /tmp/peers/nginx/stamp.log >/dev/null || echo "FAILED analyze $out" >&2
}

for r in $(seq 1 "$REPS"); do
  echo "== rep $r: klaxon, in-process receiver  load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  timeout 600 "$BENCH_BIN" --singles "$SINGLES" --storms "$STORMS" \
    --json "$OUT/klaxon_r$r.json" >"$OUT/logs/klaxon_r$r.txt" || echo "FAILED klaxon r$r" >&2
  echo "== rep $r: klaxon, the shared receiver ($(cat "$OUT/receiver.txt"))" >&2
  timeout 600 "$BENCH_BIN" --singles "$SINGLES" --storms "$STORMS" --components 0 \
    --hook http://127.0.0.1:18090/hook --hook-log "$HOOKLOG" \
    --json "$OUT/klaxon-shared_r$r.json" >"$OUT/logs/klaxon-shared_r$r.txt" || echo "FAILED klaxon-shared r$r" >&2
  # isolated: one failing check every 1 s; burst: 100 checks every 10 s, all failing at once
  for v in requests aiohttp; do
    peer "$v" single 1 1 "$r"
    peer "$v" burst 100 10 "$r"
  done
done

{
  echo "## Alert latency — $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo
  echo "REPS=$REPS SINGLES=$SINGLES STORMS=$STORMS (x100) WINDOW=${WINDOW}s"
  echo
  $PY "$ROOT/bench/alert_summary.py" "$OUT"
} | tee "$OUT/table.md"
