"""Next fire times from cronsim, for klaxon's differential test (tests/cron_differential.rs).

Reads one JSON object per line on stdin:

    {"expr": "30 2 * * *", "zone": "Europe/Berlin", "start": "2026-03-28T12:00:00+01:00", "n": 5}

and writes one JSON object per line on stdout, in the same order:

    {"fires": ["2026-03-29T03:00:00+02:00", ...], "exhausted": false}
    {"error": "Bad day-of-month"}

`fires` holds up to `n` fires strictly after `start`, in RFC 3339 with the zone's offset.
cronsim computes a job with fixed minute and hour on the naive wall clock, so from a start
in the second pass of a fall-back overlap it can yield the first pass's instant, which lies
before `start`; klaxon's `next_after` is strictly after its argument, so such fires are
dropped here and counted in `dropped`. `exhausted` says cronsim stopped (no fire within
50 years) before `n` fires.
"""

import json
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

# A bound on fires at or before `start` skipped in one case: a 5-field line yields at most
# one per minute of a one-hour overlap.
MAX_DROPPED = 1000


def next_fires(expr: str, zone: str, start: str, n: int) -> dict:
    tz = ZoneInfo(zone)
    begin = datetime.fromisoformat(start).astimezone(tz)
    # Compared in UTC: aware datetimes sharing a tzinfo compare by wall clock, fold ignored.
    begin_utc = begin.astimezone(timezone.utc)
    try:
        it = CronSim(expr, begin)
    except CronSimError as e:
        return {"error": str(e)}
    fires: list[str] = []
    dropped = 0
    exhausted = False
    while len(fires) < n:
        try:
            fire = next(it)
        except StopIteration:
            exhausted = True
            break
        if fire.astimezone(timezone.utc) <= begin_utc:
            dropped += 1
            if dropped > MAX_DROPPED:
                return {"error": f"more than {MAX_DROPPED} fires before start"}
            continue
        fires.append(fire.isoformat())
    return {"fires": fires, "exhausted": exhausted, "dropped": dropped}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            out = next_fires(case["expr"], case["zone"], case["start"], case["n"])
        except Exception as e:  # a cronsim crash is a finding, not a reason to stop
            out = {"crash": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
