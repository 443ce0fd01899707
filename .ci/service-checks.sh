#!/usr/bin/env bash
# Checks the service definitions klaxon prints against the real consumers' parsers:
# `klaxon launchd print` through Python's plistlib, `klaxon systemd print` through
# `systemd-analyze --user verify` (which needs no running systemd, only a runtime dir).
# The binary is copied to a directory whose name has a space, `%` and `$`, and the config
# lives in one with a space and `%`: verify fails when ExecStart's program does not
# exist as written, so a quoting mistake cannot pass.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "service-checks: FAILED: $*" >&2
    exit 1
}

command -v python3 >/dev/null || fail "python3 is not installed"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (apt-get install systemd)"

cargo build -q -p klaxon --bin klaxon
built="${CARGO_TARGET_DIR:-target}/debug/klaxon"
[ -x "$built" ] || fail "no binary at $built"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bin_dir="$work/bin 100% \$x"
conf_dir="$work/conf 50%"
mkdir -p "$bin_dir" "$conf_dir" "$work/home" "$work/runtime"
chmod 700 "$work/runtime"
cp "$built" "$bin_dir/klaxon"
klaxon="$(cd "$bin_dir" && pwd -P)/klaxon"
config="$(cd "$conf_dir" && pwd -P)/klaxon.toml"
cp tests/fixtures/service.toml "$config"

echo "-- launchd print | plistlib"
HOME="$work/home" "$klaxon" --config "$config" launchd print --label com.example.ci >"$work/agent.plist" ||
    fail "klaxon launchd print exited $?"
KLAXON="$klaxon" CONFIG="$config" HOME_DIR="$work/home" python3 - "$work/agent.plist" <<'EOF' ||
import os, plistlib, sys

with open(sys.argv[1], "rb") as f:
    p = plistlib.load(f)
home = os.environ["HOME_DIR"]
klaxon = os.environ["KLAXON"]
expect = {
    "Label": "com.example.ci",
    "ProgramArguments": [klaxon, "--config", os.environ["CONFIG"], "run"],
    "RunAtLoad": True,
    "KeepAlive": {"SuccessfulExit": False},
    "ProcessType": "Background",
    "ThrottleInterval": 10,
    "StandardOutPath": f"{home}/Library/Logs/klaxon/com.example.ci.out.log",
    "StandardErrorPath": f"{home}/Library/Logs/klaxon/com.example.ci.err.log",
    "EnvironmentVariables": {
        "PATH": os.path.dirname(klaxon)
        + ":/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    },
    "WorkingDirectory": home,
}
assert list(p) == list(expect), f"keys: {list(p)}"
for key, want in expect.items():
    assert p[key] == want, f"{key}: {p[key]!r} != {want!r}"
assert type(p["ThrottleInterval"]) is int and type(p["RunAtLoad"]) is bool
print(f"plist ok: {len(p)} keys")
EOF
    fail "the plist printed by klaxon launchd print is not what launchd needs"

echo "-- systemd print | systemd-analyze --user verify"
unit_dir="$work/unit"
mkdir -p "$unit_dir"
HOME="$work/home" "$klaxon" --config "$config" systemd print >"$unit_dir/klaxon.service" ||
    fail "klaxon systemd print exited $?"
grep -qF -- "--config \"${config//%/%%}\" run" "$unit_dir/klaxon.service" ||
    fail "ExecStart does not carry the escaped config path: $(grep ExecStart "$unit_dir/klaxon.service")"
# verify exits 0 on many problems it only warns about (an unknown Type=, say), so any
# output at all is a failure.
if ! out="$(XDG_RUNTIME_DIR="$work/runtime" HOME="$work/home" \
    systemd-analyze --user verify "$unit_dir/klaxon.service" 2>&1)" || [ -n "$out" ]; then
    cat "$unit_dir/klaxon.service" >&2
    fail "systemd-analyze --user verify rejected the unit: $out"
fi
echo "unit ok: systemd-analyze --user verify is silent"
