#!/usr/bin/env bash
# HTTP check throughput, klaxon next to its peers, all against the same local nginx in
# the same run (a benchmark, not a test):
#   * klaxon:  `cargo bench -p klaxon-checks --bench check_throughput` (release), K tasks
#              looping `Check::run`, counting checks that validated status 200 and body;
#   * wrk:     the raw loopback ceiling of that nginx (../shared/bench/peers/wrk_bench.py);
#   * APScheduler (AsyncIOScheduler) + aiohttp, APS_N jobs every 1 s
#              (../shared/bench/peers/aps_peer.py under driver.py).
# Repeats REPS times and prints medians [min–max] and the ratios klaxon/aiohttp and
# klaxon/wrk. Traffic goes to 127.0.0.1 only; every step has a deadline; nginx is
# started and stopped by PID through the peers' ctl.sh.
#
#   bench/http_checks.sh                    # ~3.5 min after the build, REPS=3 DURATION=10
#   CONC=64 REPS=1 bench/http_checks.sh     # other klaxon concurrency
#   SWEEP="16 64 256" bench/http_checks.sh  # klaxon only, one run per concurrency
#
# Needs: nginx-light wrk (apt), python3 with 'apscheduler<4' aiohttp requests (pip).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$(cd "$(dirname "$0")/../../shared/bench/peers" && pwd)"
PY=${PY:-python3}
REPS=${REPS:-3}
DURATION=${DURATION:-10}    # measurement window of every tool, seconds
WARMUP=${WARMUP:-2}         # klaxon warm-up (aps_peer always gets 5 s: its jobs start 1 s apart)
CONC=${CONC:-64}            # klaxon concurrent checks (best of 16/64/256 on 2 cores)
WRK_CONNS=${WRK_CONNS:-50}  # as in the peers' runs
# aiohttp jobs per second, one run each; the best median counts. Past its capacity it
# collapses (100 pooled connections, 5 s total timeout: 10,000/s here ends in timeouts),
# so try a couple around where it saturates on your machine.
APS_N=${APS_N:-3000 5000}
QUIET_WAIT=${QUIET_WAIT:-60} # wait up to this long for the machine to be idle before each run
SWEEP=${SWEEP:-}
URL=http://127.0.0.1:18080/
NGINX_PID=/tmp/peers/pids/nginx.pid
OUT=${OUT:-/tmp/klaxon-bench/http-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

CUR=""  # PID of the step running now, stopped by the trap if we are interrupted
cleanup() {
  if [ -n "$CUR" ] && kill -0 "$CUR" 2>/dev/null; then
    kill -TERM "$CUR" 2>/dev/null; sleep 1; kill -KILL "$CUR" 2>/dev/null
  fi
  "$PEERS/ctl.sh" stop-nginx
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { # seconds cmd...: run bounded, in the background so the trap can stop it by PID
  local limit=$1; shift
  timeout --kill-after=5 "$limit" "$@" &
  CUR=$!
  wait "$CUR"; local rc=$?
  CUR=""
  return $rc
}

# nginx master + workers, whose CPU the klaxon bench reports for its window (wrk_bench.py
# counts the same PIDs for wrk's run).
nginx_pids() {
  local m; m=$(cat "$NGINX_PID")
  echo "$m" $(ps -o pid= --ppid "$m") | tr ' ' ','
}

# Waits (at most QUIET_WAIT s) until the machine was ≥ 90 % idle over one second: other
# builds on a 2-core machine would take CPU from whichever tool runs at that moment.
quiet() {
  local end=$((SECONDS + QUIET_WAIT))
  while [ $SECONDS -lt $end ]; do
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
    set -- $a $b
    local busy=$(( $3 - $1 )) idle=$(( $4 - $2 ))
    [ $((busy * 10)) -le $((busy + idle)) ] && return 0
  done
  echo "   (machine still busy after ${QUIET_WAIT}s; measuring anyway, see 'other CPU')" >&2
}

klaxon_run() { # conc out.json
  quiet
  step $((WARMUP + DURATION + 120)) "$BENCH_BIN" --bench \
    --url "$URL" --concurrency "$1" --duration "$DURATION" --warmup "$WARMUP" --json "$2" \
    --watch-pids "$(nginx_pids)" >"$2.log" || echo "FAILED: klaxon c=$1" >&2
  grep -v '^RESULT ' "$2.log"
}

cd "$ROOT"
echo "== building the bench (release): cargo bench -p klaxon-checks --bench check_throughput"
# Built once; every run then starts the executable cargo bench runs (the same
# `--bench` argument), so no rebuild or manifest reload falls inside a measurement.
[ -n "${BENCH_BIN:-}" ] || BENCH_BIN=$(timeout 1800 cargo bench -q -p klaxon-checks --bench check_throughput --no-run \
  --message-format=json | $PY -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "check_throughput":
        print(m["executable"])')
[ -x "$BENCH_BIN" ] || { echo "could not build the bench" >&2; exit 1; }
if (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null; then
  echo "something already listens on 127.0.0.1:18080 (an nginx left running? $PEERS/ctl.sh stop-nginx)" >&2
  trap - EXIT; exit 1
fi
"$PEERS/ctl.sh" start-nginx || exit 1
echo "== results under $OUT"

if [ -n "$SWEEP" ]; then
  for r in $(seq 1 "$REPS"); do
    for c in $SWEEP; do
      echo "== sweep rep $r c=$c"
      klaxon_run "$c" "$OUT/klaxon_c${c}_r$r.json"
    done
  done
else
  for r in $(seq 1 "$REPS"); do
    echo "== rep $r/$REPS: klaxon c=$CONC"
    klaxon_run "$CONC" "$OUT/klaxon_c${CONC}_r$r.json"
    echo "== rep $r/$REPS: wrk -c $WRK_CONNS"
    quiet
    step $((DURATION + 60)) $PY "$PEERS/wrk_bench.py" --out "$OUT/wrk_r$r.json" --threads 2 \
      --conns "$WRK_CONNS" --duration "$DURATION" --pidfile "$NGINX_PID" "$URL" \
      || echo "FAILED: wrk" >&2
    for n in $APS_N; do
      echo "== rep $r/$REPS: APScheduler + aiohttp, $n jobs/s"
      quiet
      rm -f "$OUT/aps_peer.json"
      step $((5 + DURATION + 240)) $PY "$PEERS/driver.py" --out "$OUT/aiohttp_n${n}_r$r.json" \
        --warmup 5 --window "$DURATION" --peer-result "$OUT/aps_peer.json" --stderr "$OUT/aps.err" -- \
        $PY "$PEERS/aps_peer.py" --sched asyncio --task aiohttp --n "$n" --interval 1 \
        --warmup 5 --window "$DURATION" --url "$URL" --out "$OUT/aps_peer.json" \
        || echo "FAILED: aiohttp peer n=$n" >&2
    done
  done
fi

$PY "$HERE/http_summary.py" "$OUT" | tee "$OUT/summary.md"
