#!/usr/bin/env bash
# Listener benchmark: the idle agent's memory with one listener against another (issue 18:
# "move the listener's routing to axum if the idle memory grows by less than 1 MiB").
# Starts each binary in turn (interleaved, the order swapped every rep) on the same
# config with `agent.listen` set, lets it settle, reads VmRSS (/proc/PID/status) and Pss
# (/proc/PID/smaps_rollup), serves REQUESTS requests over CONNS connections (curl: the
# open routes, /status and /ping with the token, a 404 and a 405), lets it settle again,
# reads both again, and stops it with SIGTERM. Prints a markdown table of medians
# [min–max] in KiB and the difference B − A.
#
#   bench/listener.sh A_BIN B_BIN            # REPS=7: about 4 min
#
# Environment: REPS=7  SETTLE=5 (s after `listening on`)  AFTER=2 (s after the requests)
#              REQUESTS=600  CONNS=6  OUT=/tmp/klaxon-bench-listener
# Loopback only (port 0). Every agent is started here and stopped by PID.
set -u
A="${1:?usage: bench/listener.sh A_BIN B_BIN}"
B="${2:?usage: bench/listener.sh A_BIN B_BIN}"
REPS="${REPS:-7}"
SETTLE="${SETTLE:-5}"
AFTER="${AFTER:-2}"
REQUESTS="${REQUESTS:-600}"
CONNS="${CONNS:-6}"
OUT="${OUT:-/tmp/klaxon-bench-listener}"
TOKEN=bench-listen-token
rm -rf "$OUT" && mkdir -p "$OUT"

PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

config() {
  cat <<EOF
[agent]
state_dir = "$1"
listen = "127.0.0.1:0"
listen_token = "$TOKEN"

[notifiers.console]
type = "log"

[defaults]
notify = ["console"]
EOF
  for i in 1 2 3 4 5 6 7 8 9 10; do
    printf '\n[jobs.beat-%s]\nevery = "1h"\n[jobs.beat-%s.check]\ntype = "heartbeat"\ngrace = "1h"\n' "$i" "$i"
  done
}

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "$1"; }

# run NAME BIN REP: one start, two readings, appended to $OUT/NAME.tsv.
run() {
  local name=$1 bin=$2 rep=$3 dir="$OUT/$1-$3" addr=
  mkdir -p "$dir"
  config "$dir/state" > "$dir/klaxon.toml"
  RUST_LOG=info "$bin" --config "$dir/klaxon.toml" run 2> "$dir/agent.log" > /dev/null &
  PID=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$dir/agent.log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$name: no listener in $dir/agent.log" >&2; exit 1; }
  sleep "$SETTLE"
  local rss0 pss0 rss1 pss1
  rss0=$(kib /proc/$PID/status VmRSS); pss0=$(kib /proc/$PID/smaps_rollup Pss)
  local per=$((REQUESTS / CONNS)) urls=() c
  for _ in $(seq $((per / 6))); do
    urls+=("http://$addr/healthz" "http://$addr/metrics" "http://$addr/badge/beat-1.svg"
      "http://$addr/badge/beat-2/uptime.svg" "http://$addr/status" "http://$addr/nope")
  done
  for c in $(seq "$CONNS"); do
    curl -s -H "Authorization: Bearer $TOKEN" "${urls[@]}" > /dev/null &
  done
  for c in $(seq "$CONNS"); do
    curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -X POST "http://$addr/ping/beat-$c" \
      -X POST "http://$addr/ping/beat-$c/start" > /dev/null &
  done
  curl -s -X DELETE "http://$addr/healthz" > /dev/null
  wait $(jobs -p | grep -v "^$PID$") 2>/dev/null
  sleep "$AFTER"
  rss1=$(kib /proc/$PID/status VmRSS); pss1=$(kib /proc/$PID/smaps_rollup Pss)
  kill -TERM "$PID"; wait "$PID" 2>/dev/null; PID=
  printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$rss0" "$pss0" "$rss1" "$pss1" >> "$OUT/$name.tsv"
  echo "$name rep $rep: rss $rss0 -> $rss1 KiB, pss $pss0 -> $pss1 KiB (load $(cut -d' ' -f1 /proc/loadavg))" >&2
}

for rep in $(seq "$REPS"); do
  if [ $((rep % 2)) -eq 1 ]; then run a "$A" "$rep"; run b "$B" "$rep"
  else run b "$B" "$rep"; run a "$A" "$rep"; fi
done

python3 - "$OUT" "$A" "$B" <<'EOF'
import statistics, sys
out, a_bin, b_bin = sys.argv[1:]
cols = ["RSS after start", "PSS after start", "RSS after requests", "PSS after requests"]
rows = {n: [list(map(int, l.split("\t")[1:])) for l in open(f"{out}/{n}.tsv")] for n in "ab"}
def cell(vals):
    m = statistics.median(vals)
    return f"{m:,.0f} [{min(vals):,}–{max(vals):,}]" if min(vals) != max(vals) else f"{m:,.0f}"
print(f"A = `{a_bin}`, B = `{b_bin}`, {len(rows['a'])} reps each, KiB, median [min–max]\n")
print("| | " + " | ".join(cols) + " |")
print("| --- |" + " --- |" * len(cols))
for n in "ab":
    print(f"| {n.upper()} | " + " | ".join(cell([r[i] for r in rows[n]]) for i in range(4)) + " |")
diff = [statistics.median(r[i] for r in rows["b"]) - statistics.median(r[i] for r in rows["a"]) for i in range(4)]
print("| B − A (medians) | " + " | ".join(f"{d:+,.0f}" for d in diff) + " |")
EOF
