"""Prometheus from Python: PromQL into pandas, scrape targets, recording rules, exporters.

Queries go through Prometheus's HTTP API (``/api/v1/query`` and ``/api/v1/query_range``)
and come back as tidy DataFrames: one column per label, then ``timestamp`` (UTC) and
``value``. A query Prometheus cannot parse raises :class:`PromQLError` carrying
Prometheus's own message and the line:column it points at.

The exporters recreate the ``random`` example of Prometheus's getting-started guide with
``prometheus_client``: the summary ``rpc_durations_seconds`` (label ``service``: uniform,
normal, exponential) and the histogram ``rpc_durations_histogram_seconds`` (the normal
distribution only), served over HTTP on 127.0.0.1.

>>> with cl.services.prometheus() as prom, RandomTarget("canary") as t:   # doctest: +SKIP
...     register("random", [t], cfg=prom.cfg)
...     wait_for_targets("random", 1, cfg=prom.cfg)
...     query('rate(rpc_durations_seconds_count[1m])', cfg=prom.cfg)
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import requests
import yaml

from .config import Settings, settings
from .errors import CloudlabError, ServiceError
from .proc import run, wait_for

Time = float | int | datetime | pd.Timestamp | str | None

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_POSITION = re.compile(r"(\d+):(\d+): parse error")


class PromQLError(CloudlabError):
    """Prometheus refused a query: its own message, the error type and the position.

    ``line`` and ``column`` are Prometheus's (1-based); the message points at the column.
    """

    def __init__(self, expr: str, error_type: str, message: str) -> None:
        self.expr = expr
        self.error_type = error_type
        self.message = message
        found = _POSITION.search(message)
        self.line, self.column = (int(found[1]), int(found[2])) if found else (None, None)
        text = f"Prometheus rejected the query ({error_type}): {message}\n  {expr}"
        if self.column is not None and self.line == 1 and "\n" not in expr:
            text += "\n  " + " " * (self.column - 1) + "^"
        super().__init__(text)


# -- queries ---------------------------------------------------------------------------------


def base_url(url: str | None = None, cfg: Settings | None = None) -> str:
    """The Prometheus to talk to: ``url`` when given, else the configured local one."""
    return (url or (cfg or settings()).prometheus_url).rstrip("/")


def api(path: str, params: Mapping[str, Any] | None = None, *, url: str | None = None,
        cfg: Settings | None = None, timeout: float = 10.0, expr: str = "") -> Any:
    """GET ``/api/v1/<path>`` and return its ``data``; errors keep Prometheus's wording."""
    where = f"{base_url(url, cfg)}/api/v1/{path}"
    try:
        resp = requests.get(where, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise ServiceError(f"Prometheus at {base_url(url, cfg)} did not answer: {exc}; "
                           "start it with `cloudlab services up prometheus`") from None
    try:
        body = resp.json()
    except ValueError:
        raise ServiceError(f"{where} answered HTTP {resp.status_code}, not JSON: "
                           f"{resp.text[:200]}") from None
    if body.get("status") != "success":
        raise PromQLError(expr or str(params), body.get("errorType", "error"),
                          body.get("error", resp.text[:500]))
    return body["data"]


def query(expr: str, at: Time = None, *, url: str | None = None,
          cfg: Settings | None = None, timeout: float = 10.0) -> pd.DataFrame:
    """Evaluate ``expr`` at one instant (now by default): one row per series.

    >>> query("up", cfg=cfg)                                  # doctest: +SKIP
       __name__  instance         job        timestamp                   value
    0  up        127.0.0.1:9090   prometheus 2026-11-28 18:40:00+00:00   1.0
    """
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{to_unix(at):.3f}"
    return _frame(api("query", params, url=url, cfg=cfg, timeout=timeout, expr=expr))


def query_range(expr: str, start: Time = "5m", end: Time = None, step: str | float = "5s", *,
                url: str | None = None, cfg: Settings | None = None,
                timeout: float = 30.0) -> pd.DataFrame:
    """Evaluate ``expr`` every ``step`` from ``start`` to ``end`` (now): long format.

    Times are unix seconds, datetimes, or a duration meaning "that long ago" (``"10m"``).
    Use :func:`wide` for one column per series.
    """
    params = {"query": expr, "start": f"{to_unix(start):.3f}",
              "end": f"{to_unix(end):.3f}", "step": str(step)}
    return _frame(api("query_range", params, url=url, cfg=cfg, timeout=timeout, expr=expr))


def value(expr: str, default: float | None = None, *, url: str | None = None,
          cfg: Settings | None = None) -> float | None:
    """The single number ``expr`` evaluates to now; ``default`` when it returns nothing.

    More than one series is an error (aggregate first, e.g. ``sum(...)``).
    """
    df = query(expr, url=url, cfg=cfg)
    if df.empty:
        return default
    if len(df) > 1:
        raise CloudlabError(f"{expr!r} returned {len(df)} series; wrap it in sum() or avg() "
                            "to get one number")
    return float(df["value"].iloc[0])


def wait_for_value(expr: str, expected: float, *, timeout: float = 30.0,
                   cfg: Settings | None = None) -> float:
    """Wait until ``expr`` evaluates to ``expected`` (say, after changing a gauge)."""
    return wait_for(lambda: [v] if (v := value(expr, cfg=cfg)) == expected else [],
                    timeout=timeout, what=f"{expr} == {expected:g}",
                    log=_service(cfg).log)[0]


def wide(df: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Pivot a :func:`query_range` result: timestamps down, one column per series.

    ``by`` names the label(s) that make the column names (default: every label).
    """
    if df.empty:
        return pd.DataFrame()
    labels = [c for c in df.columns if c not in ("timestamp", "value")]
    keys = [by] if isinstance(by, str) else list(by or labels)
    if not keys:
        return df.set_index("timestamp")[["value"]]
    return df.pivot_table(index="timestamp", columns=keys, values="value", aggfunc="first")


def to_unix(t: Time) -> float:
    """Unix seconds from None (now), a number, a datetime or an "ago" duration like "5m"."""
    if t is None:
        return time.time()
    if isinstance(t, int | float):
        return float(t)
    if isinstance(t, datetime):  # pd.Timestamp is one too
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return t.timestamp()
    if isinstance(t, str):
        return time.time() - seconds(t)
    raise CloudlabError(f"cannot use {t!r} as a time: give unix seconds, a datetime or '5m'")


def seconds(duration: str | float | timedelta) -> float:
    """A Prometheus-style duration ("90s", "5m", "1.5h") in seconds."""
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, int | float):
        return float(duration)
    found = _DURATION.match(duration.strip())
    if not found:
        raise CloudlabError(f"{duration!r} is not a duration like '30s', '5m' or '1h'")
    return float(found[1]) * _UNITS[found[2]]


def _frame(data: Mapping[str, Any]) -> pd.DataFrame:
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        rows = [{"timestamp": result[0], "value": result[1]}]
    elif kind == "vector":
        rows = [{**s["metric"], "timestamp": s["value"][0], "value": s["value"][1]}
                for s in result]
    else:  # matrix
        rows = [{**s["metric"], "timestamp": ts, "value": v}
                for s in result for ts, v in s.get("values", [])]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["timestamp", "value"])
    labels = sorted(c for c in df.columns if c not in ("timestamp", "value"))
    df = df[[*labels, "timestamp", "value"]]
    df["timestamp"] = pd.to_datetime(df["timestamp"].astype(float), unit="s", utc=True)
    if kind != "string":
        df["value"] = pd.to_numeric(df["value"], errors="coerce")  # "NaN", "+Inf" included
    return df.sort_values([*labels, "timestamp"]).reset_index(drop=True)


# -- scrape targets ----------------------------------------------------------------------------


def _service(cfg: Settings | None):
    from .services import prometheus

    return prometheus(cfg)


def register(job: str, targets: Iterable[Any], labels: Mapping[str, str] | None = None, *,
             cfg: Settings | None = None) -> Path:
    """Ask the local Prometheus to scrape ``targets`` as job ``job`` (file discovery).

    A target is ``"host:port"`` or anything with an ``address`` and optional ``labels``
    (like :class:`RandomTarget`). Registering the same job again replaces it.
    """
    groups = []
    for t in targets:
        address = t if isinstance(t, str) else t.address
        extra = {} if isinstance(t, str) else dict(getattr(t, "labels", {}) or {})
        groups.append({"targets": [address], "labels": {"job": job, **(labels or {}), **extra}})
    path = _service(cfg).targets_dir / f"{_safe(job)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")  # Prometheus only reads *.json: write, then rename
    tmp.write_text(json.dumps(groups, indent=1))
    tmp.replace(path)
    return path


def unregister(job: str, *, cfg: Settings | None = None) -> None:
    """Stop scraping ``job`` (idempotent)."""
    (_service(cfg).targets_dir / f"{_safe(job)}.json").unlink(missing_ok=True)


def targets(*, url: str | None = None, cfg: Settings | None = None) -> pd.DataFrame:
    """The active scrape targets: job, instance, health, last error, labels."""
    active = api("targets", {"state": "active"}, url=url, cfg=cfg)["activeTargets"]
    rows = [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"),
             "health": t["health"], "last_error": t.get("lastError", ""),
             "labels": {k: v for k, v in t["labels"].items() if k not in ("job", "instance")}}
            for t in active]
    return pd.DataFrame(rows, columns=["job", "instance", "health", "last_error", "labels"])


def wait_for_targets(job: str, count: int, *, timeout: float = 30.0,
                     cfg: Settings | None = None) -> pd.DataFrame:
    """Wait until ``count`` targets of ``job`` have been scraped successfully."""
    def ready() -> list[pd.DataFrame]:
        df = targets(cfg=cfg)
        up = df[(df.job == job) & (df.health == "up")]
        return [up] if len(up) >= count else []

    return wait_for(ready, timeout=timeout, what=f"{count} healthy target(s) of job {job!r}",
                    log=_service(cfg).log)[0]


# -- rules -------------------------------------------------------------------------------------


def check_rules(path: str | Path) -> str:
    """``promtool check rules``: its report, or :class:`CommandError` with its message."""
    return run(["promtool", "check", "rules", str(path)], timeout=60,
               hint="promtool comes with Debian's prometheus package").stdout


def add_rules(name: str, groups: Mapping[str, Any] | str, *, cfg: Settings | None = None,
              timeout: float = 30.0) -> Path:
    """Install a rule file (recording or alerting) in the local Prometheus and reload it.

    ``groups`` is the YAML text or the ``{"groups": [...]}`` mapping. The file is checked
    with promtool first, so a broken file never reaches the server.
    """
    prom = _service(cfg)
    text = groups if isinstance(groups, str) else yaml.safe_dump(dict(groups), sort_keys=False)
    prom.rules_dir.mkdir(parents=True, exist_ok=True)
    staged = prom.dir / f".{_safe(name)}.check.yml"
    staged.write_text(text)
    try:
        check_rules(staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    path = prom.rules_dir / f"{_safe(name)}.yml"
    staged.replace(path)
    wanted = {g["name"] for g in (yaml.safe_load(text) or {}).get("groups", [])}
    reload(cfg=cfg)
    wait_for(lambda: wanted <= set(rules(cfg=cfg)["group"]), timeout=timeout,
             what=f"Prometheus to load rule groups {sorted(wanted)}", log=prom.log)
    return path


def remove_rules(name: str, *, cfg: Settings | None = None) -> None:
    """Remove a rule file installed by :func:`add_rules` and reload (idempotent)."""
    path = _service(cfg).rules_dir / f"{_safe(name)}.yml"
    if path.exists():
        path.unlink()
        reload(cfg=cfg)


def rules(*, url: str | None = None, cfg: Settings | None = None) -> pd.DataFrame:
    """Loaded rules: group, name, type, query, health, state (alerts), last error."""
    data = api("rules", url=url, cfg=cfg)
    rows = [{"group": g["name"], "name": r["name"], "type": r["type"], "query": r["query"],
             "health": r.get("health"), "state": r.get("state", ""),
             "last_error": r.get("lastError", "")}
            for g in data["groups"] for r in g["rules"]]
    return pd.DataFrame(rows, columns=["group", "name", "type", "query", "health", "state",
                                       "last_error"])


def alerts(*, url: str | None = None, cfg: Settings | None = None) -> pd.DataFrame:
    """Alerts Prometheus currently holds (pending or firing), with their labels."""
    data = api("alerts", url=url, cfg=cfg)
    rows = [{"alertname": a["labels"].get("alertname"), "state": a["state"],
             "active_at": pd.Timestamp(a["activeAt"]), "value": float(a["value"]),
             "labels": a["labels"]} for a in data["alerts"]]
    return pd.DataFrame(rows, columns=["alertname", "state", "active_at", "value", "labels"])


def intervals(*, url: str | None = None, cfg: Settings | None = None) -> dict[str, float]:
    """The running server's global scrape and evaluation intervals, in seconds."""
    loaded = yaml.safe_load(api("status/config", url=url, cfg=cfg)["yaml"])["global"]
    return {"scrape": seconds(loaded["scrape_interval"]),
            "evaluation": seconds(loaded["evaluation_interval"])}


def reload(*, cfg: Settings | None = None) -> None:
    """Tell the local Prometheus to re-read its config and rule files."""
    prom = _service(cfg)
    try:
        resp = requests.post(prom.url + "/-/reload", timeout=10)
    except requests.RequestException as exc:
        raise ServiceError(f"Prometheus at {prom.url} did not answer the reload: {exc}") from None
    if resp.status_code != 200:
        raise ServiceError(f"Prometheus refused the reload: {resp.text.strip()}")


def _safe(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise CloudlabError(f"{name!r}: use letters, digits, '.', '_' or '-' only")
    return name


# -- exporters: the getting-started "random" example --------------------------------------------

QUANTILES = (0.5, 0.9, 0.99)  # the upstream summary's objectives
MAX_AGE = 600.0  # a client_golang summary's default window: quantiles over the last 10 min


@dataclass
class _Stream:
    count: int = 0
    total: float = 0.0
    recent: deque | None = None


class _RandomCollector:
    """The summary ``rpc_durations_seconds`` with quantiles, as client_golang computes them.

    prometheus_client's own Summary exports only ``_count`` and ``_sum``; the upstream
    example also exports the 0.5/0.9/0.99 quantiles over a sliding window, so this
    collector keeps the window and computes them on each scrape.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}

    def observe(self, service: str, v: float, now: float) -> None:
        with self._lock:
            s = self._streams.setdefault(service, _Stream(recent=deque()))
            s.count += 1
            s.total += v
            s.recent.append((now, v))
            while s.recent and s.recent[0][0] < now - MAX_AGE:
                s.recent.popleft()

    def collect(self):
        from prometheus_client.core import Metric

        metric = Metric("rpc_durations_seconds", "RPC latency distributions.", "summary")
        with self._lock:
            for service, s in sorted(self._streams.items()):
                values = sorted(v for _, v in s.recent)
                for q in QUANTILES:
                    qv = values[min(len(values) - 1, int(q * len(values)))] if values else math.nan
                    metric.add_sample("rpc_durations_seconds",
                                      {"service": service, "quantile": str(q)}, qv)
                metric.add_sample("rpc_durations_seconds_sum", {"service": service}, s.total)
                metric.add_sample("rpc_durations_seconds_count", {"service": service}, s.count)
        yield metric


class Exporter:
    """A ``/metrics`` endpoint on 127.0.0.1 serving its own prometheus_client registry.

    Subclasses add metrics in :meth:`setup` and may run a background loop in
    :meth:`loop` (it should return when ``self._stop`` is set).

    >>> with Gauge("cloudlab_demo", "A number we set.") as g:   # doctest: +SKIP
    ...     g.set(3)
    """

    def __init__(self, *, group: str = "", host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise CloudlabError(f"exporters listen on loopback only, not {host!r}")
        self.group, self.host, self._port = group, host, port
        self._stop = threading.Event()
        self._server = self._http_thread = self._thread = None

    @property
    def labels(self) -> dict[str, str]:
        """Target labels Prometheus attaches to every series scraped from here."""
        return {"group": self.group} if self.group else {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise CloudlabError(f"{type(self).__name__} is not started")
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def setup(self, registry: Any) -> None:
        """Create the metrics in ``registry``."""

    def loop(self) -> None:
        """Produce observations until ``self._stop`` is set (default: nothing to do)."""

    def start(self) -> Exporter:
        if self._server is not None:
            return self
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        self.setup(registry)
        self._stop.clear()
        self._server, self._http_thread = start_http_server(self._port, self.host, registry)
        if type(self).loop is not Exporter.loop:
            self._thread = threading.Thread(target=self.loop, daemon=True,
                                            name=f"{type(self).__name__}-{self.group}")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop producing and serving (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<{type(self).__name__} {self.group or ''} {where}>"


class Gauge(Exporter):
    """One gauge you set by hand: the simplest way to make a metric cross a threshold.

    >>> with Gauge("cloudlab_queue_depth", "Jobs waiting.") as g:   # doctest: +SKIP
    ...     g.set(42)
    """

    def __init__(self, name: str, help: str = "A value set by the notebook.", *,
                 group: str = "", port: int = 0) -> None:
        super().__init__(group=group, port=port)
        self.name, self.help = name, help
        self._gauge = None

    def setup(self, registry: Any) -> None:
        from prometheus_client import Gauge as PromGauge

        self._gauge = PromGauge(self.name, self.help, registry=registry)

    def set(self, v: float) -> float:
        """Set the gauge; returns the wall-clock time it changed (unix seconds)."""
        if self._gauge is None:
            raise CloudlabError("start the gauge before setting it")
        self._gauge.set(v)
        return time.time()


class RandomTarget(Exporter):
    """One process of the upstream ``random`` example, in a thread, on 127.0.0.1.

    Three fictional services observe latencies: ``uniform`` (every ~100 ms, uniform on
    [0, uniform_domain)), ``normal`` (every ~75 ms, mean normal_mean, sd normal_domain;
    also into the histogram) and ``exponential`` (every ~50 ms, mean 1 µs). The request
    rate oscillates with ``oscillation_period`` exactly as upstream does. :meth:`degrade`
    multiplies every latency, to cause a real, labelled incident.

    >>> with RandomTarget("production") as t:                  # doctest: +SKIP
    ...     requests.get(t.url).text[:40]
    """

    def __init__(self, group: str = "production", *, host: str = "127.0.0.1", port: int = 0,
                 uniform_domain: float = 0.0002, normal_domain: float = 0.0002,
                 normal_mean: float = 0.00001, oscillation_period: float = 600.0,
                 seed: int | None = None) -> None:
        super().__init__(group=group, host=host, port=port)
        self.uniform_domain, self.normal_domain = uniform_domain, normal_domain
        self.normal_mean, self.oscillation_period = normal_mean, oscillation_period
        self.factor = 1.0
        self._rng = random.Random(seed)
        self._started_at = time.monotonic()

    def degrade(self, factor: float) -> float:
        """Multiply every latency from now on by ``factor`` (1.0 = healthy again).

        Returns the wall-clock time of the change (unix seconds), for labelling incidents.
        """
        if not factor > 0:
            raise CloudlabError(f"factor must be positive, got {factor!r}")
        self.factor = float(factor)
        return time.time()

    def setup(self, registry: Any) -> None:
        from prometheus_client import Histogram

        self._summary = _RandomCollector()
        registry.register(self._summary)
        buckets = [self.normal_mean - 5 * self.normal_domain + i * 0.5 * self.normal_domain
                   for i in range(20)]  # upstream: LinearBuckets(mean-5*domain, domain/2, 20)
        self._histogram = Histogram("rpc_durations_histogram_seconds",
                                    "RPC latency distributions.", buckets=buckets,
                                    registry=registry)
        self._started_at = time.monotonic()

    # -- the three generators, one thread ------------------------------------------------------
    def _oscillation(self) -> float:
        t = time.monotonic() - self._started_at
        return 2 + math.sin(math.sin(2 * math.pi * t / self.oscillation_period))

    def loop(self) -> None:
        rng = self._rng
        period = {"uniform": 0.100, "normal": 0.075, "exponential": 0.050}
        due = dict.fromkeys(period, time.monotonic())
        while not self._stop.is_set():
            now = time.monotonic()
            for service, when in due.items():
                if when > now:
                    continue
                if service == "uniform":
                    v = rng.random() * self.uniform_domain
                elif service == "normal":
                    v = rng.gauss(0, 1) * self.normal_domain + self.normal_mean
                else:
                    v = rng.expovariate(1.0) / 1e6
                v *= self.factor
                self._summary.observe(service, v, now)
                if service == "normal":
                    self._histogram.observe(v)
                due[service] = now + period[service] * self._oscillation()
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))


def random_targets(*, seed: int | None = None, **kwargs: Any) -> list[RandomTarget]:
    """The getting-started trio: two ``production`` targets and one ``canary`` (unstarted)."""
    groups = ("production", "production", "canary")
    return [RandomTarget(g, seed=None if seed is None else seed + i, **kwargs)
            for i, g in enumerate(groups)]
