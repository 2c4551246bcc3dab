"""Benchmark: elasticity of the Swarm stack under a Locust spike (issue 9).

One stack serves every run. A run resets the service to one replica, plays the same
spike (2 users, a jump to 24, back to 2) with the autoscaler on and again with it off
(the order alternates between runs), and records:

* seconds from the spike to a second replica serving (Prometheus sees it up) - goal <= 60 s;
* Locust's p95 over the second half of the peak, autoscaler on vs off - on must be clearly
  better (goal: at most 75 % of off);
* replicas at the end of the cool-down (goal: back to the minimum, 1).

Prints a table per run and the medians; exits 1 when a goal is missed.
Run: ``.venv/bin/python bench/bench_elasticity.py [--runs N]`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import pandas as pd

import cloudlab as cl

SPIKE = cl.loadtest.spike(base=2, peak=24, before=10, during=60, after=50)
AUTOSCALER = {"target_cpu": 70, "min_replicas": 1, "max_replicas": 4, "period": 3,
              "downscale_window": 20}


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=3, help="on/off pairs (default 3)")
    runs = args.parse_args(argv).runs
    if not cl.engine.available():
        print(f"bench_elasticity: skipped, no Docker engine ({cl.engine.start_hint()})")
        return 0
    if not cl.swarm.PROMETHEUS_BINARY.exists():
        print("bench_elasticity: skipped, Prometheus is not installed (apt-get install prometheus)")
        return 0
    cfg = cl.settings()
    rows = []
    began = time.monotonic()
    with cl.swarm.Stack(replicas=1, cfg=cfg) as stack:
        for run in range(1, runs + 1):
            # alternate the order, so drift in the machine's load hits both sides alike
            for on in ((True, False) if run % 2 else (False, True)):
                exp = cl.autoscale.experiment(stack, SPIKE, autoscaler=on, progress=False,
                                              **(AUTOSCALER if on else {}))
                rows.append({"run": run, **exp.summary()})
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1),
                      flush=True)
    cl.cleanup.sweep(run_id=cfg.run_id, stop_services=False)
    frame = pd.DataFrame(rows)
    on, off = frame[frame["autoscaler"] == "on"], frame[frame["autoscaler"] == "off"]
    lags = [v for v in on["scale-out (s)"] if v == v and v is not None]
    lag = statistics.median(lags) if lags else None
    p95_on = statistics.median(on["p95 at peak (ms)"].dropna())
    p95_off = statistics.median(off["p95 at peak (ms)"].dropna())
    ends = list(on["replicas at end"])
    results = [
        ("spike -> added replica serving",
         f"median {lag} s over {len(lags)}/{runs} runs (goal <= 60 s)"
         if lag is not None else "no scale-out seen", lag is not None and lag <= 60),
        ("p95 at peak, autoscaler on vs off",
         f"median {p95_on:.0f} ms vs {p95_off:.0f} ms ({p95_on / p95_off:.0%}; goal <= 75 %)",
         p95_on <= 0.75 * p95_off),
        ("replicas at the end of the cool-down", f"{ends} (goal: all 1)",
         all(n == 1 for n in ends)),
    ]
    print(f"\nbench_elasticity: {runs} run(s), {time.monotonic() - began:.0f} s")
    for name, said, ok in results:
        print(f"  [{'ok' if ok else 'MISSED'}] {name}: {said}")
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
