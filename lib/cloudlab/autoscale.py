"""An autoscaler for a Swarm service, driven by Prometheus, deciding like Kubernetes' HPA.

Every ``period`` seconds :class:`Autoscaler` reads each replica's CPU (cores used, from
``process_cpu_seconds_total``) and request rate from Prometheus, turns CPU into
utilisation of the replica's CPU *request* (its reservation), asks :mod:`cloudlab.hpa` for
the desired replica count (the documented algorithm: ratio to target, tolerance, missing
replicas, stabilisation window, min/max), and scales the service through the Docker API.
Every decision is logged with its metric, the desired count and why.

When Prometheus cannot be read the autoscaler holds the current count and says so; it
never scales below ``min_replicas`` (at least 1), so never to zero.

>>> with for_stack(stack, target_cpu=60, max_replicas=6) as scaler:        # doctest: +SKIP
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
from pathlib import Path
from typing import Any, Protocol

from .errors import CloudlabError, ConfigError
from .lifecycle import Managed

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
    """What the autoscaler scales: the replica count asked for, the replicas running, and
    a way to set the count."""

    def desired(self) -> int: ...

    def replicas(self) -> dict[str, bool]: ...  # address -> ready

    def scale(self, replicas: int, wait: bool = False) -> int: ...


@dataclass
class Decision:
    """One pass of the control loop, as logged."""

    t: float  # seconds since the autoscaler started
    time: float  # wall clock
    current: int
    wanted: int | None  # what the metrics ask for (before stabilisation and limits)
    replicas: int  # what the service is set to
    utilisation: float | None  # mean CPU, % of the request, over the replicas read
    rps_per_replica: float | None
    replicas_seen: int
    action: str  # scale-up | scale-down | hold
    reason: str  # one of cloudlab.hpa.REASONS, or "metrics unavailable"
    detail: str


def prometheus_reader(url: str, job: str = "predict", window: str = "10s",
                      timeout: float = 3) -> Callable[[], Sample]:
    """Read per-replica CPU and request rate from the Prometheus at ``url``.

    The one function that talks to Prometheus (through :mod:`cloudlab.prometheus`); any
    failure to read becomes :class:`MetricsUnavailable`.
    """
    from . import prometheus

    def query(expr: str) -> dict[str, float]:
        try:
            frame = prometheus.query(expr, url=url, timeout=timeout)
        except CloudlabError as exc:
            raise MetricsUnavailable(f"Prometheus at {url} cannot be read: {exc}") from None
        if frame.empty or "instance" not in frame:
            return {}
        return dict(zip(frame["instance"], frame["value"].astype(float), strict=True))

    def read() -> Sample:
        return Sample(cpu=query(CPU_QUERY.format(job=job, window=window)),
                      rps=query(RPS_QUERY.format(job=job, window=window)))

    return read


class Autoscaler(Managed):
    """The control loop; ``step()`` is one pass, ``start()`` runs it in a thread.

    The decision is :class:`cloudlab.hpa.Autoscaler`'s (the one implementation of the
    documented algorithm); this class reads the metrics, maps them onto the replicas the
    service runs, applies the decision through ``target.scale`` and logs it.

    ``cpu_request`` is the replica's CPU request in cores (the reservation): utilisation
    is CPU used divided by it, in %, as in Kubernetes. Without a request, utilisation has
    no denominator: scale on ``target_rps`` (requests/s per replica) instead.
    """

    def __init__(self, target: Target, metrics: Callable[[], Sample], *,
                 cpu_request: float | None, target_cpu: float | None = 60.0,
                 target_rps: float | None = None, min_replicas: int = 1,
                 max_replicas: int = 6, period: float = 5.0, tolerance: float = 0.1,
                 downscale_window: int = 30, clock: Callable[[], float] = time.time) -> None:
        from . import hpa

        if min_replicas < 1:
            raise ConfigError(f"min_replicas={min_replicas}: this autoscaler never scales "
                              "to zero; use at least 1")
        if target_cpu is not None and not cpu_request:
            raise ConfigError(
                "CPU utilisation needs a CPU request: the service reserves no CPU, so "
                f"'{target_cpu:g}% of its request' means nothing (this is why the HPA ignores pods "
                "without requests). Set a reservation, or scale on target_rps instead.")
        if target_cpu is None and target_rps is None:
            raise ConfigError("give a target: target_cpu (% of the request) or target_rps")
        self.target = target
        self.metrics = metrics
        self.cpu_request = cpu_request
        self.target_cpu = target_cpu
        self.target_rps = target_rps
        self.period = period
        self.clock = clock
        self.hpa = hpa.Autoscaler(
            min_replicas=min_replicas, max_replicas=max_replicas, tolerance=tolerance,
            behavior=hpa.Behavior.from_spec(
                {"scaleDown": {"stabilizationWindowSeconds": int(downscale_window)}}))
        self.decisions: list[Decision] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._began: float | None = None
        self.error: BaseException | None = None

    @property
    def min_replicas(self) -> int:
        return self.hpa.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.hpa.max_replicas

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
            return self._log(now, current, None, current, None, None, 0,
                             "metrics unavailable", f"holding {current} replicas: {exc}")
        running = self.target.replicas()  # address -> ready
        addresses = list(running) or list(sample.cpu)
        metrics = []
        cpu = [None if a not in sample.cpu else 100 * sample.cpu[a] / self.cpu_request
               for a in addresses] if self.cpu_request else []
        rps = [sample.rps.get(a) for a in addresses]
        if self.target_cpu is not None:
            metrics.append(hpa.Metric(self.target_cpu, cpu, "cpu"))
        if self.target_rps is not None:
            metrics.append(hpa.Metric(self.target_rps, rps, "rps"))
        ready = [running.get(a, True) for a in addresses] if running else None
        if not addresses:
            return self._log(now, current, None, current, None, None, 0, hpa.MISSING_METRICS,
                             f"no replica reported metrics yet, holding {current}")
        verdict = self.hpa.step(now, current, metrics, ready)
        seen = sum(v is not None for v in (cpu or rps))
        if verdict.replicas != current:
            self.target.scale(verdict.replicas, wait=False)
        return self._log(now, current, verdict.metric_replicas, verdict.replicas,
                         _mean(cpu), _mean(rps), seen, verdict.reason, verdict.detail)

    def _log(self, now: float, current: int, wanted: int | None, replicas: int,
             util: float | None, rps: float | None, seen: int, reason: str,
             detail: str) -> Decision:
        action = "hold" if replicas == current else (
            "scale-up" if replicas > current else "scale-down")
        began = self._began if self._began is not None else now
        decision = Decision(round(now - began, 1), now, current, wanted,
                            replicas, None if util is None else round(util, 1),
                            None if rps is None else round(rps, 2), seen, action, reason,
                            detail)
        self.decisions.append(decision)
        said = f"cpu {util:.0f}% of request" if util is not None else "cpu n/a"
        log.info("%s %d -> %d (%s, %s): %s", action, current, replicas, said, reason, detail)
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
                    self._log(self.clock(), current, None, current, None, None, 0, "error",
                              f"holding: {type(exc).__name__}: {exc}")
            self._stop.wait(self.period)

    def stop(self) -> None:
        """Stop the loop (the service keeps its current replica count); idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=self.period + 10)

    def frame(self):
        """Every decision as a DataFrame (t, current, wanted, replicas, reason, detail...)."""
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

    def replicas(self) -> dict[str, bool]:
        """The service's running tasks: overlay address (as Prometheus names it) -> ready."""
        return self.stack.addresses(self.service)

    def scale(self, replicas: int, wait: bool = False) -> int:
        return self.stack.scale(replicas, self.service, wait=wait)


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values that are there (None = no sample)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


# ----------------------------------------------------------------------------- replay
RECORDED = Path(__file__).parent / "data" / "autoscale-spike.csv"


def recorded():
    """A real recording: per-replica CPU (cores) and requests/s every 2 s, read from the
    stack's Prometheus during a Locust spike (1 -> 40 users at 10 s, back to 2 at 70 s)."""
    import pandas as pd

    return pd.read_csv(RECORDED)


class _Recording:
    """Plays a recorded series back: the metrics source and the replicas at time ``now``."""

    def __init__(self, series) -> None:
        self.series = series
        self.times = sorted(series["t"].unique())
        self.now = 0.0
        self.count = 1

    def _at(self):
        past = [t for t in self.times if t <= self.now]
        return self.series[self.series["t"] == (past[-1] if past else self.times[0])]

    def metrics(self) -> Sample:
        rows = self._at()
        if rows[["cpu", "rps"]].isna().all().all():
            raise MetricsUnavailable("no samples in the recording at this time "
                                     "(Prometheus was down)")
        return Sample(cpu={r.instance: r.cpu for r in rows.itertuples() if r.cpu == r.cpu},
                      rps={r.instance: r.rps for r in rows.itertuples() if r.rps == r.rps})

    def desired(self) -> int:
        return self.count

    def replicas(self) -> dict[str, bool]:
        return {r.instance: True for r in self._at().itertuples()}

    def scale(self, replicas: int, wait: bool = False) -> int:
        self.count = replicas
        return replicas


def replay(series=None, *, period: float = 3.0, **options: Any):
    """Run the autoscaler's decisions over a recorded series (default: :func:`recorded`).

    ``series`` has columns t (seconds), instance, cpu (cores), rps; a time whose rows are
    all NaN means Prometheus could not be read then. The replicas are the instances
    recorded at each time; what the autoscaler sets is logged, not applied to the
    recording. Returns the decisions as a DataFrame.

    >>> frame = replay(cpu_request=0.25, target_cpu=60, downscale_window=20)
    >>> int(frame["replicas"].max()) > 1, int(frame["replicas"].min()) >= 1
    (True, True)
    """
    series = recorded() if series is None else series
    play = _Recording(series)
    clock = {"now": 0.0}
    options.setdefault("cpu_request", 0.25)
    scaler = Autoscaler(play, play.metrics, period=period, clock=lambda: clock["now"],
                        **options)
    t = 0.0
    end = float(series["t"].max())
    while t <= end:
        clock["now"] = play.now = t
        scaler.step()
        t += period
    return scaler.frame()


# --------------------------------------------------------------------------- timeline
def timeline(result: Any, prometheus_url: str, scaler: Autoscaler | None = None,
             step: float = 2.0, job: str = "predict"):
    """One table on one time axis: Locust's users, requests/s and p95, each replica's CPU
    and the replica count Prometheus saw (plus the autoscaler's target, when given).

    ``t`` is seconds since Locust started; ``cpu <address>`` columns are cores used.
    """
    import pandas as pd

    from . import prometheus

    start, end = result.started, result.started + result.seconds
    frame = result.history[["t", "users", "rps", "p95_ms"]].copy()
    cpu = prometheus.query_range(CPU_QUERY.format(job=job, window="10s"), start, end, step,
                                 url=prometheus_url)
    seen = prometheus.query_range(f'count(up{{job="{job}"}} == 1)', start, end, step,
                                  url=prometheus_url)
    grid = pd.DataFrame({"t": [round(i * step, 1) for i in range(int((end - start) / step) + 1)]})
    if not cpu.empty:
        cpu["t"] = (cpu["timestamp"].astype("int64") / 1e9 - start).round(1)
        wide = cpu.pivot_table(index="t", columns="instance", values="value").add_prefix("cpu ")
        grid = pd.merge_asof(grid, wide.reset_index(), on="t", direction="nearest",
                             tolerance=step)
    if not seen.empty:
        seen["t"] = (seen["timestamp"].astype("int64") / 1e9 - start).round(1)
        grid = pd.merge_asof(grid, seen[["t", "value"]].rename(columns={"value": "replicas"}),
                             on="t", direction="nearest", tolerance=step)
    if scaler is not None and scaler.decisions:
        decided = pd.DataFrame({"t": [round(d.time - start, 1) for d in scaler.decisions],
                                "target replicas": [d.replicas for d in scaler.decisions]})
        grid = pd.merge_asof(grid, decided.sort_values("t"), on="t", direction="backward")
    return pd.merge_asof(grid, frame.sort_values("t"), on="t", direction="nearest",
                         tolerance=step)


def plot_timeline(frame, title: str = "", axes=None):
    """Users, requests/s, p95, CPU per replica and replicas, stacked on one time axis."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(5, 1, figsize=(10, 10), sharex=True)
    cpu_cols = [c for c in frame.columns if c.startswith("cpu ")]
    panels = [("users", ["users"]), ("requests/s", ["rps"]), ("p95 latency (ms)", ["p95_ms"]),
              ("CPU per replica (cores)", cpu_cols),
              ("replicas", [c for c in ("replicas", "target replicas") if c in frame])]
    for ax, (label, cols) in zip(axes, panels, strict=True):
        for col in cols:
            ax.plot(frame["t"], frame[col], label=col.removeprefix("cpu "),
                    drawstyle="steps-post" if "replicas" in col else "default")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(cols) > 1 and len(cols) <= 8:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds since the load test started")
    if title:
        axes[0].set_title(title)
    return axes


# ------------------------------------------------------------------------- experiment
@dataclass
class Experiment:
    """One load test against a stack, with or without the autoscaler, and its figures."""

    autoscaler: bool
    result: Any  # cloudlab.loadtest.Result
    frame: Any  # timeline(): one row per step
    decisions: Any  # the autoscaler's decisions (empty when it was off)
    scale_out_s: float | None  # spike start -> a second replica serving (Prometheus saw it)
    p95_peak_ms: float | None  # Locust's p95 over the second half of the peak
    replicas_end: int  # replicas asked for when the test ended

    def summary(self) -> dict[str, Any]:
        return {"autoscaler": "on" if self.autoscaler else "off",
                "scale-out (s)": self.scale_out_s, "p95 at peak (ms)": self.p95_peak_ms,
                "replicas at end": self.replicas_end,
                "requests": self.result.total["requests"],
                "failures": self.result.total["failures"]}


def experiment(stack: Any, stages: list, *, autoscaler: bool = True, start_replicas: int = 1,
               progress: bool = True, **options: Any) -> Experiment:
    """Reset the stack to ``start_replicas``, run Locust's ``stages`` (the peak is the stage
    with the most users) with the autoscaler on or off, and measure the elasticity."""
    from . import loadtest

    stack.scale(start_replicas)
    peak = max(range(len(stages)), key=lambda i: stages[i].users)
    begin = stages[peak - 1].t if peak else 0.0
    end = stages[peak].t
    scaler = for_stack(stack, **options) if autoscaler else None
    with contextlib.ExitStack() as stop:
        if scaler is not None:
            stop.enter_context(scaler)
        result = loadtest.run(stack.url, stages, progress=progress)
    frame = timeline(result, stack.prometheus_url, scaler)
    more = frame[(frame["t"] >= begin) & (frame.get("replicas", 0) > start_replicas)] \
        if "replicas" in frame else frame.iloc[0:0]
    half = result.history[(result.history["t"] >= (begin + end) / 2)
                          & (result.history["t"] <= end)]
    return Experiment(
        autoscaler, result, frame,
        scaler.frame() if scaler else None,
        round(float(more["t"].iloc[0]) - begin, 1) if len(more) else None,
        round(float(half["p95_ms"].mean()), 1) if len(half) else None,
        stack.desired())
