"""Benchmark: time from a metric breach to the webhook notification, against the expected.

A gauge served on 127.0.0.1 crosses an alerting threshold; the real Prometheus scrapes it,
evaluates the rule, sends the alert to the real Alertmanager, which routes it to a local
webhook receiver. Each trial uses a new value, so the alert (labelled with it) starts a
new Alertmanager group and pays ``group_wait`` as a first notification does.

The expected window comes from the configured intervals (``cl.alerting.expected_delay``):
the breach waits up to one scrape interval to be seen and up to one evaluation interval
to be judged, then ``for`` and ``group_wait``. Everything runs on private ports and
state, and is stopped at the end. Records ``bench/results/alerting.json``
(``bench/_report.py``).

    .venv/bin/python bench/alerting.py [--trials 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _report import Figure, at_most, info, save, skipped

from cloudlab import alerting, config, services
from cloudlab import prometheus as prom
from cloudlab.ports import free_port

EVALUATION = 1.0  # the rule group's interval (s)
FOR = 0.0
GROUP_WAIT = 1.0


def main(argv: list[str] | None = None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="cloudlab-bench-alerting-"))
    cfg = config.load(state_dir=state, prometheus_port=free_port(),
                      alertmanager_port=free_port())
    pservice = services.prometheus(cfg)
    for svc in (pservice, services.alertmanager(cfg)):
        if svc.executable() is None:
            return skipped(f"{svc.binary} not installed ({svc.install_hint()})")
    scrape = prom.seconds(pservice.scrape_interval)
    rules = {"groups": [{"name": "bench", "interval": f"{EVALUATION:g}s", "rules": [
        {"alert": "Breach", "expr": "cloudlab_bench_value > 0", "for": f"{FOR:g}s",
         "labels": {"severity": "page", "trial": "{{ $value }}"}}]}]}
    delays = []
    rng = random.Random(args.seed)
    with alerting.Receiver() as hook, prom.Gauge("cloudlab_bench_value") as gauge:
        alerting.configure({
            "route": {"receiver": "pager", "group_by": ["alertname", "trial"],
                      "group_wait": f"{GROUP_WAIT:g}s", "group_interval": "5s",
                      "repeat_interval": "1h"},
            "receivers": [{"name": "pager", "webhook_configs": [{"url": hook.url("pager")}]}],
        }, cfg=cfg)
        with services.alertmanager(cfg) as am, pservice:
            prom.register("bench", [gauge], cfg=cfg)
            prom.add_rules("bench", rules, cfg=cfg)
            prom.wait_for_targets("bench", 1, cfg=cfg)
            for trial in range(1, args.trials + 1):
                gauge.set(0)
                prom.wait_for_value("cloudlab_bench_value", 0, cfg=cfg)
                # that wait ends just after a scrape: breach at a random point of the next
                # scrape interval, as a real incident would
                time.sleep(rng.uniform(0, scrape))
                breach = gauge.set(trial)
                got = hook.wait(1, timeout=60, log=am.log,
                                where=lambda n, t=trial: _trial(n) == str(t))
                delays.append(got[0]["received_at"] - breach)
                print(f"trial {trial}: breach -> webhook {delays[-1]:.2f} s", flush=True)
    low, high = alerting.expected_delay(scrape_interval=scrape, evaluation_interval=EVALUATION,
                                        for_=FOR, group_wait=GROUP_WAIT)
    shutil.rmtree(state, ignore_errors=True)
    intervals = (f"scrape {scrape:g} s, evaluation {EVALUATION:g} s, for {FOR:g} s, "
                 f"group_wait {GROUP_WAIT:g} s")
    return [
        info("expected breach -> webhook, fastest", low, "s", intervals),
        info("expected breach -> webhook, slowest", high, "s", intervals),
        info("breach -> webhook, median", statistics.median(delays), "s",
             f"{len(delays)} trials, min {min(delays):.2f} s"),
        at_most("breach -> webhook, slowest trial", max(delays), "s", round(high + 1.0, 2),
                "the expected slowest + 1 s"),
    ]


def _trial(notification: dict) -> str | None:
    alerts = notification["body"].get("alerts") or [{}]
    return alerts[0].get("labels", {}).get("trial")


if __name__ == "__main__":
    sys.exit(save("alerting", main()))
