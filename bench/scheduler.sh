#!/usr/bin/env bash
# Scheduler benchmark: klaxon's scheduler vs APScheduler 3.x (AsyncIOScheduler) on the
# same N jobs every 1 s, no-op, same warm-up and window; then the idle agent (100 jobs
# every 60 s) vs the idle peers (APScheduler, schedule, monit). Prints markdown tables
# (medians over REPS, [min–max] when they differ) with ratios, the 1-minute load average
# at the start of each run, and last the table README.md's "Performance" section shows.
#
#   bench/scheduler.sh                       # REPS=3 WINDOW=60: about 35 min on 2 cores
#   REPS=1 WINDOW=30 bench/scheduler.sh      # about 8 min
#
# Environment:
#   REPS=3  WINDOW=60  WARMUP=5  SIZES="100 1000 10000"
#   JITTER=1s         klaxon is also run with every job's `jitter` set to this, which
#                     spreads fires over the second as APScheduler's add times do
#                     (empty: aligned fires only)
#   IDLE_WINDOW=120   IDLE_REPS=1   IDLE=0 skips the idle part, PRECISION=0 the other
#   PEERS=../shared/bench/peers   (driver.py, aps_peer.py, schedule_peer.py, monit_gen.py)
#   OUT=/tmp/klaxon-bench-scheduler   results (JSON) and table.md
#   KLAXON_BIN / BENCH_BIN            use these binaries instead of building
#
# Needs python3 with 'apscheduler<4' and schedule; monit (Debian package) for its idle
# row. Loopback only. Every process is started here, stopped by PID, and bounded by
# `timeout` and driver.py's own deadlines.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/bench/peers}"
OUT="${OUT:-/tmp/klaxon-bench-scheduler}"
REPS="${REPS:-3}"
WINDOW="${WINDOW:-60}"
WARMUP="${WARMUP:-5}"
SIZES="${SIZES:-100 1000 10000}"
JITTER="${JITTER-1s}"
IDLE="${IDLE:-1}"
PRECISION="${PRECISION:-1}"
IDLE_WINDOW="${IDLE_WINDOW:-120}"
IDLE_REPS="${IDLE_REPS:-1}"
PY="${PY:-python3}"
PORT="${PORT:-19109}"
HELP="$ROOT/bench/scheduler_idle.py"

[ -f "$PEERS/driver.py" ] || { echo "no peers at $PEERS (set PEERS=)" >&2; exit 2; }
rm -rf "$OUT/precision" "$OUT/idle"
mkdir -p "$OUT/precision" "$OUT/idle" "$OUT/logs"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$OUT/listener.pid" ] && kill "$(cat "$OUT/listener.pid")" 2>/dev/null
  rm -f "$OUT/listener.pid"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${KLAXON_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  echo "== building (release)" >&2
  (cd "$ROOT" && cargo build --release --bin klaxon) || exit 1
  BENCH_BIN=$(cd "$ROOT" && cargo bench --bench scheduler --no-run --message-format=json 2>/dev/null |
    $PY -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "scheduler" and m.get("executable"):
        print(m["executable"])') || exit 1
  KLAXON_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/klaxon"
fi
[ -x "$KLAXON_BIN" ] && [ -x "$BENCH_BIN" ] || { echo "missing binaries" >&2; exit 1; }

machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"

load() { # the 1-minute load average, kept next to each result: the machine may be shared
  cut -d' ' -f1 /proc/loadavg
}

run_bg() { # pid-tracked background command
  "$@" & PIDS+=($!)
}

if [ "$PRECISION" = 1 ]; then
  for r in $(seq 1 "$REPS"); do
    for n in $SIZES; do
      echo "== rep $r N=$n: klaxon (aligned)  load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
      load > "$OUT/precision/klaxon_n${n}_r$r.load"
      timeout $((WARMUP + WINDOW + 120)) "$BENCH_BIN" --jobs "$n" --window "$WINDOW" --warmup "$WARMUP" \
        --json "$OUT/precision/klaxon_n${n}_r$r.json" || echo "FAILED klaxon n=$n" >&2
      if [ -n "$JITTER" ]; then
        echo "== rep $r N=$n: klaxon (jitter $JITTER)" >&2
        load > "$OUT/precision/klaxon-jitter${JITTER}_n${n}_r$r.load"
        timeout $((WARMUP + WINDOW + 120)) "$BENCH_BIN" --jobs "$n" --window "$WINDOW" --warmup "$WARMUP" \
          --jitter "$JITTER" --json "$OUT/precision/klaxon-jitter${JITTER}_n${n}_r$r.json" \
          || echo "FAILED klaxon jitter n=$n" >&2
      fi
      echo "== rep $r N=$n: APScheduler asyncio" >&2
      load > "$OUT/precision/aps-asyncio_n${n}_r$r.load"
      rm -f "$OUT/aps.json"
      timeout $((WARMUP + WINDOW + 240)) $PY "$PEERS/driver.py" --out "$OUT/precision/aps-asyncio_n${n}_r$r.json" \
        --warmup "$WARMUP" --window "$WINDOW" --peer-result "$OUT/aps.json" --stderr "$OUT/logs/aps.err" -- \
        $PY "$PEERS/aps_peer.py" --sched asyncio --task noop --n "$n" --interval 1 \
        --warmup "$WARMUP" --window "$WINDOW" --out "$OUT/aps.json" --log "$OUT/logs/aps.log" >/dev/null \
        || echo "FAILED aps n=$n" >&2
    done
  done
fi

if [ "$IDLE" = 1 ]; then
  $PY "$HELP" listen --port "$PORT" --pidfile "$OUT/listener.pid" &
  PIDS+=($!)
  sleep 0.5
  for r in $(seq 1 "$IDLE_REPS"); do
    echo "== idle rep $r (${IDLE_WINDOW} s window, all side by side)" >&2
    load > "$OUT/idle/load_r$r.txt"
    rm -rf "$OUT/state" && mkdir -p "$OUT/state"
    $PY "$HELP" config --n 100 --every 60s --port "$PORT" --state "$OUT/state" --out "$OUT/idle.toml"
    lim=$((WARMUP + IDLE_WINDOW + 240))
    run_bg timeout $lim $PY "$PEERS/driver.py" --out "$OUT/idle/klaxon_r$r.json" --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --ready-delay 0.5 --stderr "$OUT/logs/klaxon.err" -- \
      "$KLAXON_BIN" run --config "$OUT/idle.toml"
    run_bg timeout $lim $PY "$PEERS/driver.py" --out "$OUT/idle/aps-asyncio_r$r.json" --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --peer-result "$OUT/idle_as.json" --stderr "$OUT/logs/aps.err" -- \
      $PY "$PEERS/aps_peer.py" --sched asyncio --task noop --n 100 --interval 60 --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --out "$OUT/idle_as.json" --log "$OUT/logs/aps.log"
    run_bg timeout $lim $PY "$PEERS/driver.py" --out "$OUT/idle/aps-bg_r$r.json" --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --peer-result "$OUT/idle_bg.json" --stderr "$OUT/logs/aps.err" -- \
      $PY "$PEERS/aps_peer.py" --sched bg --task noop --n 100 --interval 60 --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --out "$OUT/idle_bg.json" --log "$OUT/logs/aps.log"
    run_bg timeout $lim $PY "$PEERS/driver.py" --out "$OUT/idle/schedule_r$r.json" --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --peer-result "$OUT/idle_sc.json" --stderr "$OUT/logs/schedule.err" -- \
      $PY "$PEERS/schedule_peer.py" --task noop --n 100 --interval 60 --warmup "$WARMUP" \
      --window "$IDLE_WINDOW" --out "$OUT/idle_sc.json"
    if command -v monit >/dev/null; then
      $PY "$PEERS/monit_gen.py" --mode idle --n 100 --dir "$OUT/monit_idle" >/dev/null
      ( ulimit -n 1024
        exec timeout $lim $PY "$PEERS/driver.py" --out "$OUT/idle/monit_r$r.json" --warmup "$WARMUP" \
          --window "$IDLE_WINDOW" --ready-delay 0.5 --stderr "$OUT/logs/monit.err" -- \
          monit -c "$OUT/monit_idle/monitrc" -I ) &
      PIDS+=($!)
    fi
    for p in "${PIDS[@]:1}"; do wait "$p"; done
    PIDS=("${PIDS[0]}")
  done
fi

{
  echo "## Scheduler benchmark — $(date -u +%Y-%m-%d), $machine"
  echo
  echo "REPS=$REPS WINDOW=${WINDOW}s WARMUP=${WARMUP}s SIZES=\"$SIZES\" JITTER=${JITTER:-none} IDLE_WINDOW=${IDLE_WINDOW}s"
  echo
  $PY "$HELP" table "$OUT"
} | tee "$OUT/table.md"
