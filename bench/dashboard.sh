#!/usr/bin/env bash
# The dashboard's overview (`/` on the listener) with N jobs: how long it takes to
# render, what it weighs, and what serving it 10 times a second costs the agent
# (a benchmark, not a test). For each size in SIZES:
#   * an agent config with N real, cheap jobs every 60 s (tcp checks of the agent's own
#     listener and http GETs of its /healthz: both measure a latency), a store
#     pre-filled with RUNS runs a job (one a minute up to now: the bars are full; one
#     job in ten has an incident, one in twenty a skipped fire), the release agent
#     started on it and left WARMUP seconds so every job has run and has a state;
#   * render: REPS × RENDERS sequential GETs of / on one keep-alive connection, each
#     timed from sending the request to the body's last byte (an upper bound of the
#     server's render time: loopback included); the page's bytes, and gzipped (-6);
#   * cpu: the agent's CPU (utime+stime, /proc/PID/stat) over REPS pairs of WINDOW-second
#     windows, alternating no client / a client GETting / RATE times a second; the
#     added CPU is the median over pairs of (loaded - idle), in % of one core.
# Prints markdown tables; raw JSON in $OUT.
#
#   bench/dashboard.sh                       # SIZES="20 1000" REPS=3 WINDOW=60: ~20 min
#   SIZES=1000 REPS=1 WINDOW=20 bench/dashboard.sh
#
# Needs: python3, curl.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY=${PY:-python3}
RUN="$PY $HERE/dashboard.py"
SIZES=${SIZES:-"20 1000"}
REPS=${REPS:-3}
WINDOW=${WINDOW:-60}
WARMUP=${WARMUP:-130}
RENDERS=${RENDERS:-50}
RUNS=${RUNS:-90}
RATE=${RATE:-10}
PORT=${PORT:-19850}
OUT=${OUT:-/tmp/klaxon-bench/dashboard-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

command -v curl >/dev/null || { echo "curl is missing: apt-get install curl" >&2; exit 1; }

AGENT=""
stop_agent() {
  [ -n "$AGENT" ] || return 0
  kill -TERM "$AGENT" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$AGENT" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$AGENT" 2>/dev/null
  wait "$AGENT" 2>/dev/null
  AGENT=""
}
trap stop_agent EXIT
trap 'exit 130' INT TERM

cd "$ROOT"
if [ -z "${KLAXON_BIN:-}" ]; then
  echo "== building (release): klaxon" >&2
  timeout 3600 cargo build -q --release --bin klaxon || exit 1
  KLAXON_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/klaxon"
fi
[ -x "$KLAXON_BIN" ] || { echo "missing $KLAXON_BIN" >&2; exit 1; }

cat > "$OUT/meta.json" <<META
{"machine": "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(. /etc/os-release; echo "$PRETTY_NAME")",
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "commit": "$(git -C "$ROOT" rev-parse --short HEAD)",
 "sizes": "$SIZES", "reps": $REPS, "window_s": $WINDOW, "warmup_s": $WARMUP, "renders": $RENDERS,
 "runs_per_job": $RUNS, "rate": $RATE}
META

for n in $SIZES; do
  state="$OUT/state-$n"
  rm -rf "$state"; mkdir -p -m 700 "$state"
  $RUN config --n "$n" --port "$PORT" --state "$state" --out "$OUT/agent-$n.toml"
  # `status` opens the store, which makes its schema, before the runs go in.
  "$KLAXON_BIN" --config "$OUT/agent-$n.toml" status >/dev/null || exit 1
  $RUN prefill --db "$state/klaxon.db" --n "$n" --runs "$RUNS" || exit 1
  RUST_LOG=warn "$KLAXON_BIN" --config "$OUT/agent-$n.toml" run 2>"$OUT/agent-$n.err" &
  AGENT=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" \
    || { echo "the agent does not serve / on 127.0.0.1:$PORT: $(tail -5 "$OUT/agent-$n.err")" >&2; exit 1; }
  echo "== $n jobs: agent $AGENT up; $WARMUP s for every job to run once" >&2
  sleep "$WARMUP"
  for r in $(seq 1 "$REPS"); do
    echo "== $n jobs: render rep $r/$REPS (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    $RUN render --url "http://127.0.0.1:$PORT/" --count "$RENDERS" --out "$OUT/render-$n-r$r.json" || exit 1
  done
  curl -fsS -o "$OUT/page-$n.html" "http://127.0.0.1:$PORT/"
  echo "== $n jobs: cpu, $REPS × (idle, $RATE pages/s) × $WINDOW s" >&2
  $RUN cpu --url "http://127.0.0.1:$PORT/" --pid "$AGENT" --window "$WINDOW" --reps "$REPS" \
    --rate "$RATE" --out "$OUT/cpu-$n.json" || exit 1
  stop_agent
done

{
  echo "## dashboard overview — $(date -u +%Y-%m-%d), $(cut -d'"' -f4 <<<"$(grep machine "$OUT/meta.json")"), commit $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "SIZES=\"$SIZES\" REPS=$REPS WINDOW=${WINDOW}s WARMUP=${WARMUP}s RENDERS=$RENDERS RUNS=$RUNS RATE=$RATE"
  echo
  $RUN table "$OUT"
} | tee "$OUT/table.md"
