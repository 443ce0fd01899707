#!/usr/bin/env bash
# dns and ping checks, klaxon next to dig and fping doing the same work in the same run
# (a benchmark, not a test). Each repetition runs, one after the other:
#   dns (one A query for a.test to a dnsmasq this script starts on 127.0.0.1:$DNS_PORT,
#   klaxon checking that the answer holds 10.0.0.1):
#     * agent-dns:    `klaxon run` with DNS_JOBS dns jobs every 1 s (scheduler, check,
#                     store: everything a real agent does), runs counted in its store;
#     * klaxon-bench: the dns check runtime alone, as fast as it goes, one at a time
#                     (`cargo bench -p klaxon-checks --bench check_throughput -- --type dns`);
#     * dig-batch:    `dig -f` with DIG_QUERIES lines, one process asking one at a time;
#     * dig-each:     one `dig` process per query, DIG_EACH of them (what a cron or
#                     monit script check would run);
#   ping (100 targets, 127.0.0.1 … 127.0.0.100 on loopback, every second, one echo each):
#     * agent-ping:   `klaxon run` with 100 ping jobs, every = "1s", count = 1;
#     * fping:        `fping -c N -p 1000` over the same 100 targets (N rounds, 1 s apart).
# CPU per check: for the agent, its CPU over a WINDOW-second window after WARMUP seconds
# divided by the runs its store recorded finishing in that window; for the klaxon bench,
# its window; for dig and fping, their whole run (wait4: the process and its children,
# start-up included). Prints medians over REPS [min–max] and the ratios.
#
#   bench/checks.sh                   # REPS=3 WINDOW=20: about 6 min after the build
#   REPS=1 WINDOW=10 bench/checks.sh
#
# Needs: dnsmasq-base, bind9-dnsutils (dig), fping (apt); python3. As root it sets
# net.ipv4.ping_group_range to allow every group for the ping part and puts it back on
# exit; as another user that range must already include one of your groups.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY=${PY:-python3}
RUN="$PY $HERE/checks_run.py"
REPS=${REPS:-3}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-3}
DNS_JOBS=${DNS_JOBS:-1000}
DIG_QUERIES=${DIG_QUERIES:-20000}
DIG_EACH=${DIG_EACH:-300}
DNS_PORT=${DNS_PORT:-15353}
OUT=${OUT:-/tmp/klaxon-bench/checks-$(date +%Y%m%d-%H%M%S)}
RANGE=/proc/sys/net/ipv4/ping_group_range
mkdir -p "$OUT"

for tool in dnsmasq dig fping; do
  command -v $tool >/dev/null || {
    echo "$tool is missing: apt-get install dnsmasq-base bind9-dnsutils fping" >&2; exit 1; }
done

DNSMASQ=""
OLD_RANGE=""
cleanup() {
  [ -n "$DNSMASQ" ] && kill "$DNSMASQ" 2>/dev/null && wait "$DNSMASQ" 2>/dev/null
  [ -n "$OLD_RANGE" ] && echo "$OLD_RANGE" > "$RANGE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$ROOT"
if [ -z "${KLAXON_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  echo "== building (release): klaxon, and the check_throughput bench" >&2
  timeout 3600 cargo build -q --release --bin klaxon || exit 1
  KLAXON_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/klaxon"
  BENCH_BIN=$(timeout 3600 cargo bench -q -p klaxon-checks --bench check_throughput --no-run \
    --message-format=json | $PY -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "check_throughput":
        print(m["executable"])')
fi
[ -x "$KLAXON_BIN" ] && [ -x "$BENCH_BIN" ] || { echo "missing binaries" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then
  OLD_RANGE=$(cat "$RANGE")
  echo "0 2147483647" > "$RANGE"
fi

user=(); [ "$(id -u)" = 0 ] && user=(--user=root)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
  --bind-interfaces --listen-address=127.0.0.1 --pid-file= "${user[@]}" --port="$DNS_PORT" \
  --host-record=a.test,10.0.0.1,fd00::1 --host-record=b.test,10.0.0.2 \
  --mx-host=a.test,mail.a.test,10 --txt-record=a.test,"v=spf1 -all" --local=/test/ \
  2>"$OUT/dnsmasq.err" &
DNSMASQ=$!
for _ in $(seq 50); do
  dig +short +tries=1 +time=1 @127.0.0.1 -p "$DNS_PORT" a.test A 2>/dev/null | grep -qx 10.0.0.1 && break
  sleep 0.1
done
dig +short +tries=1 +time=1 @127.0.0.1 -p "$DNS_PORT" a.test A | grep -qx 10.0.0.1 \
  || { echo "dnsmasq does not answer on 127.0.0.1:$DNS_PORT: $(cat "$OUT/dnsmasq.err")" >&2; exit 1; }

yes "a.test A" | head -n "$DIG_QUERIES" > "$OUT/dig.batch"
targets=$(seq -f "127.0.0.%g" 1 100)
fping_rounds=$((WARMUP + WINDOW))
cat > "$OUT/meta.json" <<EOF
{"machine": "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(. /etc/os-release; echo "$PRETTY_NAME")",
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "reps": $REPS, "window_s": $WINDOW, "warmup_s": $WARMUP,
 "queries": {"dig-batch": $DIG_QUERIES, "dig-each": $DIG_EACH},
 "versions": {"dnsmasq": "$(dnsmasq --version | head -1 | awk '{print $3}')", "dig": "$(dig -v 2>&1 | awk '{print $2}')", "fping": "$(fping -v | awk '{print $3}')"},
 "names": {"agent-dns": "klaxon agent, $DNS_JOBS dns jobs every 1 s", "klaxon-bench": "klaxon dns check runtime, 1 at a time",
           "dig-batch": "dig -f (one process, $DIG_QUERIES queries)", "dig-each": "dig, one process per query",
           "agent-ping": "klaxon agent, 100 ping jobs every 1 s", "fping": "fping -c $fping_rounds -p 1000, 100 targets"}}
EOF

agent() { # kind rep: the agent on a config of its own, under checks_run.py's clock
  local kind=$1 r=$2 n state
  n=$([ "$kind" = dns ] && echo "$DNS_JOBS" || echo 100)
  state="$OUT/state-agent-$kind-r$r"
  rm -rf "$state"; mkdir -p -m 700 "$state"
  $RUN config --kind "$kind" --n "$n" --port "$DNS_PORT" --state "$state" --out "$OUT/agent-$kind.toml"
  RUST_LOG=warn $RUN measure --out "$OUT/$kind-agent-${kind}_r$r.json" --warmup "$WARMUP" \
    --window "$WINDOW" --stop -- "$KLAXON_BIN" --config "$OUT/agent-$kind.toml" run \
    || echo "FAILED: agent $kind (see $OUT/$kind-agent-${kind}_r$r.json.err)" >&2
}

for r in $(seq 1 "$REPS"); do
  echo "== rep $r/$REPS: klaxon agent, $DNS_JOBS dns jobs every 1 s (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  agent dns "$r"
  echo "== rep $r/$REPS: klaxon dns check runtime, one at a time" >&2
  $RUN measure --out "$OUT/dns-klaxon-bench_r$r.json" --limit 60 -- "$BENCH_BIN" --bench --type dns \
    --table "$(printf 'name = "a.test"\nserver = "127.0.0.1:%s"\nexpect = ["10.0.0.1"]' "$DNS_PORT")" \
    --concurrency 1 --threads 1 --duration "$WINDOW" --warmup "$WARMUP" \
    || echo "FAILED: klaxon bench" >&2
  echo "== rep $r/$REPS: dig -f, $DIG_QUERIES queries" >&2
  $RUN measure --out "$OUT/dns-dig-batch_r$r.json" --limit 600 -- dig +tries=1 +time=2 +noall +answer \
    @127.0.0.1 -p "$DNS_PORT" -f "$OUT/dig.batch" || echo "FAILED: dig -f" >&2
  echo "== rep $r/$REPS: dig, one process per query, $DIG_EACH queries" >&2
  $RUN measure --out "$OUT/dns-dig-each_r$r.json" --limit 600 -- bash -c \
    'for i in $(seq "$1"); do dig +tries=1 +time=2 +noall +answer @127.0.0.1 -p "$2" a.test A; done' \
    _ "$DIG_EACH" "$DNS_PORT" || echo "FAILED: dig each" >&2
  echo "== rep $r/$REPS: klaxon agent, 100 ping jobs every 1 s" >&2
  agent ping "$r"
  echo "== rep $r/$REPS: fping -c $fping_rounds -p 1000 over the same 100 targets" >&2
  $RUN measure --out "$OUT/ping-fping_r$r.json" --limit 60 -- fping -c "$fping_rounds" -p 1000 -i 1 -q \
    $targets || echo "FAILED: fping" >&2
done

{
  echo "## dns and ping checks — $(date -u +%Y-%m-%d), $(cut -d'"' -f4 <<<"$(grep machine "$OUT/meta.json")")"
  echo
  echo "REPS=$REPS WINDOW=${WINDOW}s WARMUP=${WARMUP}s DNS_JOBS=$DNS_JOBS DIG_QUERIES=$DIG_QUERIES DIG_EACH=$DIG_EACH"
  echo
  $RUN table "$OUT"
} | tee "$OUT/table.md"
