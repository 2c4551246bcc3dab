"""An autoscaler for a Swarm service, driven by Prometheus, deciding like Kubernetes' HPA.

Every ``period`` seconds :class:`Autoscaler` reads each replica's CPU (cores used, from
``process_cpu_seconds_total``) and request rate from Prometheus, turns CPU into
utilisation of the replica's CPU *request* (its reservation), asks :mod:`cloudlab.hpa` for
the desired replica count (the documented algorithm: ratio to target, tolerance, missing
replicas, stabilisation window, min/max), and scales the service through the Docker API.
Every decision is logged with its metric, the desired count and why.

When Prometheus cannot be read the autoscaler holds the current count and says so; it
never scales below ``min_replicas`` (at least 1), so never to zero.

>>> with Autoscaler(stack, target_cpu=0.6, max_replicas=6) as scaler:    # doctest: +SKIP
...     cl.loadtest.run(stack.url, cl.loadtest.spike(2, 40, 10, 60, 30))
>>> scaler.frame()[["t", "current", "desired", "reason"]]                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import requests

from .errors import CloudlabError, ConfigError

log = logging.getLogger("cloudlab.autoscale")

CPU_QUERY = 'rate(process_cpu_seconds_total{{job="{job}"}}[{window}])'
RPS_QUERY = ('sum by (instance) (rate(predict_requests_total'
             '{{job="{job}",endpoint="/predict"}}[{window}]))')


class MetricsUnavailable(CloudlabError):
    """The metrics source could not be read (Prometheus down, say)."""


@dataclass(frozen=True)
class Sample:
    """One reading: per replica (by address) CPU in cores and requests per second."""

    cpu: Mapping[str, float]
    rps: Mapping[str, float] = field(default_factory=dict)


class Target(Protocol):
    """What the autoscaler scales: how many replicas are asked for, and set that."""

    def desired(self) -> int: ...

    def scale(self, replicas: int, wait: bool = False) -> int: ...


@dataclass
class Decision:
    """One pass of the control loop, as logged."""

    t: float  # seconds since the autoscaler started
    time: float  # wall clock
    current: int
    desired: int
    applied: int  # what the service runs after this pass
    utilisation: float | None  # mean CPU / request over the replicas read
    rps_per_replica: float | None
    replicas_seen: int
    action: str  # scale-up | scale-down | hold
    reason: str


def prometheus_reader(url: str, job: str = "predict", window: str = "10s",
                      timeout: float = 3) -> Callable[[], Sample]:
    """Read per-replica CPU and request rate from the Prometheus at ``url``.

    The one function that talks to Prometheus; any failure becomes
    :class:`MetricsUnavailable`.
    """
    def query(expr: str) -> dict[str, float]:
        try:
            answer = requests.get(f"{url}/api/v1/query", params={"query": expr},
                                  timeout=timeout)
            answer.raise_for_status()
            body = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus at {url} cannot be read: "
                                     f"{type(exc).__name__}: {exc}") from None
        if body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus refused {expr!r}: {body.get('error')}")
        return {r["metric"].get("instance", "?"): float(r["value"][1])
                for r in body["data"]["result"]}

    def read() -> Sample:
        return Sample(cpu=query(CPU_QUERY.format(job=job, window=window)),
                      rps=query(RPS_QUERY.format(job=job, window=window)))

    return read


class Autoscaler:
    """The control loop; ``step()`` is one pass, ``start()`` runs it in a thread.

    ``cpu_request`` is the replica's CPU request in cores (the reservation): utilisation is
    CPU used divided by it, as in Kubernetes. Without a request, CPU utilisation has no
    denominator: pass ``target_rps`` (requests/s per replica) instead.
    """

    def __init__(self, target: Target, metrics: Callable[[], Sample], *,
                 cpu_request: float | None, target_cpu: float | None = 0.6,
                 target_rps: float | None = None, min_replicas: int = 1,
                 max_replicas: int = 6, period: float = 5.0, tolerance: float = 0.1,
                 downscale_window: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        if min_replicas < 1:
            raise ConfigError(f"min_replicas={min_replicas}: an autoscaler never scales "
                              "to zero here; use at least 1")
        if max_replicas < min_replicas:
            raise ConfigError(f"max_replicas={max_replicas} is below min_replicas="
                              f"{min_replicas}")
        if target_cpu is not None and not cpu_request:
            raise ConfigError(
                "CPU utilisation needs a CPU request: the service reserves no CPU, so "
                "'60% of its request' means nothing (this is why the HPA ignores pods "
                "without requests). Set a reservation, or scale on target_rps instead.")
        if target_cpu is None and target_rps is None:
            raise ConfigError("give a target: target_cpu (utilisation) or target_rps")
        self.target = target
        self.metrics = metrics
        self.cpu_request = cpu_request
        self.target_cpu = target_cpu
        self.target_rps = target_rps
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.period = period
        self.tolerance = tolerance
        self.downscale_window = downscale_window
        self.clock = clock
        self.decisions: list[Decision] = []
        self._history: list[tuple[float, int]] = []  # (time, recommendation)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._began: float | None = None
        self.error: BaseException | None = None

    # -- one pass ------------------------------------------------------------------------
    def step(self) -> Decision:
        """Read, decide, scale, log: one pass of the loop."""
        from . import hpa

        now = self.clock()
        if self._began is None:
            self._began = now
        current = self.target.desired()
        try:
            sample = self.metrics()
        except MetricsUnavailable as exc:
            return self._log(now, current, current, current, None, None, 0, "hold",
                             f"metrics unavailable, holding {current} replicas: {exc}")
        util = _mean([c / self.cpu_request for c in sample.cpu.values()]) \
            if self.cpu_request else None
        rps = _mean(list(sample.rps.values()))
        seen = len(sample.cpu) or len(sample.rps)
        if not seen:
            return self._log(now, current, current, current, util, rps, 0, "hold",
                             f"no replica reported metrics yet, holding {current}")
        proposals = {}
        if self.target_cpu is not None:
            proposals["cpu"] = hpa.desired_replicas(
                current, [c / self.cpu_request for c in sample.cpu.values()],
                self.target_cpu, tolerance=self.tolerance, ready=current)
        if self.target_rps is not None:
            proposals["rps"] = hpa.desired_replicas(
                current, list(sample.rps.values()), self.target_rps,
                tolerance=self.tolerance, ready=current)
        metric = max(proposals, key=lambda k: proposals[k])
        raw = proposals[metric]
        self._history.append((now, raw))
        self._history = [(t, r) for t, r in self._history if now - t <= self.downscale_window]
        stabilised = hpa.stabilize(raw, [r for _, r in self._history], current)
        desired = min(self.max_replicas, max(self.min_replicas, stabilised))
        why = self._why(metric, util, rps, current, raw, stabilised, desired)
        action = "hold" if desired == current else (
            "scale-up" if desired > current else "scale-down")
        if desired != current:
            self.target.scale(desired, wait=False)
        return self._log(now, current, desired, desired, util, rps, seen, action, why)

    def _why(self, metric: str, util: float | None, rps: float | None, current: int,
             raw: int, stabilised: int, desired: int) -> str:
        if metric == "cpu":
            said = f"cpu {util:.0%} of request vs target {self.target_cpu:.0%}"
            ratio = (util or 0) / self.target_cpu
        else:
            said = f"{rps:.1f} req/s per replica vs target {self.target_rps:g}"
            ratio = (rps or 0) / self.target_rps
        parts = [said, f"ratio {ratio:.2f}"]
        if raw == current and abs(ratio - 1) <= self.tolerance:
            parts.append(f"within tolerance ±{self.tolerance:.0%}")
        else:
            parts.append(f"wants {raw}")
        if stabilised > raw:
            parts.append(f"scale-down held by the {self.downscale_window:g} s stabilisation "
                         f"window (highest recent recommendation {stabilised})")
        if desired != stabilised:
            parts.append(f"clamped to [{self.min_replicas}, {self.max_replicas}]")
        return "; ".join(parts)

    def _log(self, now: float, current: int, desired: int, applied: int,
             util: float | None, rps: float | None, seen: int, action: str,
             reason: str) -> Decision:
        decision = Decision(round(now - (self._began or now), 1), now, current, desired,
                            applied, None if util is None else round(util, 3),
                            None if rps is None else round(rps, 2), seen, action, reason)
        self.decisions.append(decision)
        log.info("%s %d -> %d: %s", action, current, applied, reason)
        return decision

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> Autoscaler:
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="autoscaler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # a Docker hiccup: log it, keep the loop alive
                self.error = exc
                with contextlib.suppress(Exception):
                    current = self.target.desired()
                    self._log(self.clock(), current, current, current, None, None, 0, "hold",
                              f"error, holding: {type(exc).__name__}: {exc}")
            self._stop.wait(self.period)

    def stop(self) -> None:
        """Stop the loop (the service keeps its current replica count); idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=self.period + 10)

    def __enter__(self) -> Autoscaler:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def frame(self):
        """Every decision as a DataFrame (t, current, desired, utilisation, reason...)."""
        import pandas as pd

        return pd.DataFrame([asdict(d) for d in self.decisions],
                            columns=list(Decision.__dataclass_fields__))


def for_stack(stack: Any, **options: Any) -> Autoscaler:
    """An autoscaler for a :class:`cloudlab.swarm.Stack`'s prediction service."""
    options.setdefault("cpu_request", stack.cpu_reservation)
    window = options.pop("window", "10s")
    reader = prometheus_reader(stack.prometheus_url, window=window)
    return Autoscaler(StackTarget(stack), reader, **options)


class StackTarget:
    """Scale a stack's service through the Docker API (``Service.scale``)."""

    def __init__(self, stack: Any, service: str = "predict") -> None:
        self.stack = stack
        self.service = service

    def desired(self) -> int:
        return self.stack.desired(self.service)

    def scale(self, replicas: int, wait: bool = False) -> int:
        return self.stack.scale(replicas, self.service, wait=wait)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(values: Mapping[str, float]) -> dict[str, Any]:
    return {k: round(v, 3) for k, v in values.items()}
