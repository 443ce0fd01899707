#!/usr/bin/env bash
# History retention benchmark (issue 14 item 3): a store of RUNS runs over JOBS jobs
# before and after the agent's first pruning pass, next to a store of 10 runs. Prints
# the markdown table README.md's "Performance" section shows. The agent's pass takes about
# 45 s for a million runs on 2 cores; the whole script took 16 min on a busy machine.
#
#   bench/history.sh                          # RUNS=1000000 JOBS=100 REPS=15
#   RUNS=100000 bench/history.sh              # quicker
#   KLAXON_BIN=target/release/klaxon bench/history.sh
#
# OUT=/tmp/klaxon-bench-history holds the stores, the agent's log and history.json.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-/tmp/klaxon-bench-history}"
if [ -z "${KLAXON_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p klaxon)
  KLAXON_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/klaxon"
fi
rm -rf "$OUT" && mkdir -p "$OUT"
python3 "$ROOT/bench/history.py" "$KLAXON_BIN" "$OUT" \
  --runs "${RUNS:-1000000}" --jobs "${JOBS:-100}" --reps "${REPS:-15}" | tee "$OUT/table.md"
