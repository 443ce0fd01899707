#!/usr/bin/env bash
# Interleaved A/B of alert_latency bench binaries (old and new builds of klaxon) against
# one shared receiver (benches/receiver.rs) in its own process, on port 18097, the
# order of the binaries alternating every rep. Prints per build the one alert p50 of
# each rep and their median, and the medians of `record()` p50, storm p99, storm p50,
# last of a storm and recovery p50. JSON per run under OUTDIR.
#
#   RECV_BIN=path/to/receiver bench/alert_ab.sh OUTDIR REPS SINGLES STORMS old=BIN new=BIN
#
# Build each side with `cargo bench --bench alert_latency --no-run` from its own tree
# and copy the binary away: cargo keeps one artifact per bench in a target dir.
# NICE (default -19) is the benches' niceness; STATE_DIR (default OUTDIR) their disk.
set -u
OUT=$1; REPS=$2; SINGLES=$3; STORMS=$4; shift 4
mkdir -p "$OUT"
HOOKLOG=$OUT/hook.log; : > "$HOOKLOG"
RECV=${RECV_BIN:?set RECV_BIN to the receiver bench binary}
"$RECV" --out "$HOOKLOG" --port 18097 2>>"$OUT/receiver.err" &
RPID=$!
trap 'kill $RPID 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18097) 2>/dev/null && break; sleep 0.1; done
for r in $(seq 1 "$REPS"); do
  list=("$@")
  if [ $((r % 2)) -eq 0 ]; then mapfile -t list < <(printf '%s\n' "$@" | tac); fi
  for nb in "${list[@]}"; do
    name=${nb%%=*}; bin=${nb#*=}
    echo "rep $r $name load $(cut -d' ' -f1 /proc/loadavg)" >&2
    timeout 600 nice -n "${NICE:--19}" "$bin" --singles "$SINGLES" --storms "$STORMS" --components 0 \
      --hook http://127.0.0.1:18097/hook --hook-log "$HOOKLOG" --state-dir "${STATE_DIR:-$OUT}" \
      --json "$OUT/${name}_r$r.json" > "$OUT/${name}_r$r.txt" 2>&1 || echo "FAILED $name r$r" >&2
  done
done
python3 - "$OUT" <<'PY'
import collections, glob, json, os, statistics, sys
rows = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[1] + "/*_r*.json")):
    name = os.path.basename(f).rsplit("_r", 1)[0]
    j = json.load(open(f))
    rows[name].append((j["single"]["failure"]["p50_ms"], j["single"]["record_call"]["p50_ms"],
                       j["storm"]["failure"].get("p99_ms"), j["storm"]["failure"].get("p50_ms"),
                       j["storm"]["last_of_storm"].get("p50_ms"), j["single"]["recovery"]["p50_ms"]))
def med(c):
    c = [x for x in c if x is not None]
    return statistics.median(c) if c else float("nan")
for name, v in rows.items():
    cols = list(zip(*v))
    each = " / ".join("%.3f" % x for x in cols[0])
    print(f"{name}: one p50 [{each}] med {med(cols[0]):.3f} | record p50 med {med(cols[1]):.3f}"
          f" | storm p99 [{' / '.join('%.1f' % x for x in cols[2] if x is not None)}] med {med(cols[2]):.2f}"
          f" | storm p50 med {med(cols[3]):.2f} | last med {med(cols[4]):.2f} | recovery p50 med {med(cols[5]):.3f}")
PY
