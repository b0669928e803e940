"""CURVE's cost: meshdcm message throughput with the mesh keyring on versus off, in the same run.

Same processes, headers and filter as bench/messaging.py. Goal (issue 4): CURVE costs <= 25% of the throughput.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import emit, median, parser  # noqa: E402
from bench.messaging import run_pair  # noqa: E402


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    from meshdcm.keys import Keyring

    n = 20_000 if args.quick else 100_000
    repeat = 3
    with tempfile.TemporaryDirectory(prefix="meshdcm-keys-") as tmp:
        ring = Keyring(Path(tmp) / "keyring")
        ring.init()
        ring.add("pub")
        ring.add("sub")
        plain, curve = [], []
        for _ in range(repeat):  # interleaved, so that machine noise hits both alike
            plain.append(run_pair("meshdcm", n, 0))
            curve.append(run_pair("meshdcm", n, 0, keyring=str(ring.path)))
        lat_plain = run_pair("meshdcm", 2_000, 2000)
        lat_curve = run_pair("meshdcm", 2_000, 2000, keyring=str(ring.path))
    off = median([r["msgs_per_s"] for r in plain])
    on = median([r["msgs_per_s"] for r in curve])
    cost = 1 - on / off
    print(f"CURVE off {off:10,.0f} msg/s   p99 {lat_plain['p99_ms']} ms at 2,000 msg/s")
    print(f"CURVE on  {on:10,.0f} msg/s   p99 {lat_curve['p99_ms']} ms at 2,000 msg/s")
    print(f"CURVE costs {cost:.1%} of the throughput (goal <= 25%)")
    emit("security", {
        "messages": n, "repeat": repeat,
        "curve_off_msgs_per_s": off, "curve_on_msgs_per_s": on,
        "curve_off_lost": max(n - r["received"] for r in plain), "curve_on_lost": max(n - r["received"] for r in curve),
        "curve_off_p99_ms_at_2000": lat_plain["p99_ms"], "curve_on_p99_ms_at_2000": lat_curve["p99_ms"],
        "curve_on_vs_off": round(on / off, 3), "curve_cost": round(cost, 3), "goal_curve_cost": 0.25,
    })


if __name__ == "__main__":
    main()
