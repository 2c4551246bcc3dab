"""Alerting: the 3-sigma rule, alert quality, promtool/amtool, and a webhook receiver.

- :func:`detect` flags points more than ``k`` standard deviations from a baseline (the
  whole series, or a trailing window that excludes the point being judged), on both sides
  or, as a latency alert does, above it only (``side="above"``).
- :func:`episodes` turns flagged points into alerts; :func:`score` measures them against
  labelled incidents as precision (how many pages were real) and recall (how many
  incidents paged someone).
- :func:`test_rules` runs ``promtool test rules``; :func:`routes` and :func:`routes_test`
  run ``amtool config routes test``; :func:`configure` installs an Alertmanager config.
- :class:`Receiver` is a webhook receiver on 127.0.0.1 that records every notification
  Alertmanager sends, with the time it arrived.

>>> import pandas as pd
>>> s = pd.Series([1.0, 1.1, 0.9, 1.0] * 5 + [9.0])
>>> detect(s).tolist()[-3:]
[False, False, True]
>>> score([(10, 12), (30, 31)], [(11, 15)]).precision
0.5
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
import yaml

from .config import Settings, settings
from .errors import CloudlabError, CommandError, ServiceError
from .lifecycle import Managed
from .proc import run, wait_for

# -- the 68-95-99.7 rule ------------------------------------------------------------------------


def within(k: float) -> float:
    """The share of a normal distribution within ``k`` standard deviations of its mean.

    >>> [round(within(k), 4) for k in (1, 2, 3)]
    [0.6827, 0.9545, 0.9973]
    """
    return math.erf(k / math.sqrt(2))


def false_alarms_per_day(k: float, samples_per_day: float) -> float:
    """Expected points beyond ``k`` sigma per day in healthy, normally distributed data."""
    return (1 - within(k)) * samples_per_day


def empirical(samples: Iterable[float], ks: Sequence[float] = (1, 2, 3)) -> pd.DataFrame:
    """Measured share of ``samples`` within k sigma of their mean, beside the normal's."""
    x = np.asarray([v for v in samples if v == v], dtype=float)
    mu, sd = x.mean(), x.std()
    rows = [{"k": k, "measured": float(np.mean(np.abs(x - mu) <= k * sd)) if sd else 1.0,
             "normal": within(k)} for k in ks]
    return pd.DataFrame(rows).set_index("k")


def explorer(samples_per_day: float = 24 * 60):
    """An ipywidgets explorer of the 68-95-99.7 rule: move k, see the tails and the pager.

    Returns the widget; display it in a notebook.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    out = w.Output()
    k = w.FloatSlider(value=3.0, min=0.5, max=5.0, step=0.1, description="k (sigmas)")
    rate = w.IntSlider(value=int(samples_per_day), min=24, max=86400, step=24,
                       description="samples/day")

    def draw(*_: object) -> None:
        with out:
            out.clear_output(wait=True)
            xs = np.linspace(-5, 5, 801)
            pdf = np.exp(-xs ** 2 / 2) / math.sqrt(2 * math.pi)
            _, ax = plt.subplots(figsize=(7, 2.8))
            ax.plot(xs, pdf, color="black")
            inside = np.abs(xs) <= k.value
            ax.fill_between(xs, pdf, where=inside, alpha=0.3, label="normal")
            ax.fill_between(xs, pdf, where=~inside, color="red", alpha=0.5, label="alert")
            ax.set_xlabel("distance from the mean, in standard deviations")
            ax.set_title(f"within ±{k.value:g}σ: {within(k.value):.4%}; healthy data pages "
                         f"{false_alarms_per_day(k.value, rate.value):.1f} times/day")
            ax.legend(loc="upper right")
            plt.show()

    k.observe(draw, "value")
    rate.observe(draw, "value")
    draw()
    return w.VBox([w.HBox([k, rate]), out])


# -- detection and alert quality ----------------------------------------------------------------


def zscores(series: pd.Series, window: int | None = None) -> pd.Series:
    """Distance from the baseline in standard deviations (NaN where undefined).

    Without ``window`` the baseline is the whole series; with it, the ``window`` points
    before each point (the point itself excluded, so a spike cannot hide in its own mean).
    """
    s = pd.Series(series, dtype=float)
    if window is None:
        mu, sd = s.mean(), s.std(ddof=0)
        return (s - mu) / sd if sd and sd == sd else pd.Series(np.nan, index=s.index)
    if window < 3:
        raise CloudlabError(f"window must be at least 3 points, got {window}")
    past = s.shift(1).rolling(window, min_periods=window)
    sd = past.std(ddof=0).replace(0, np.nan)
    return (s - past.mean()) / sd


SIDES = ("above", "below", "both")


def detect(series: pd.Series, k: float = 3.0, window: int | None = None,
           side: str = "both") -> pd.Series:
    """True where a point is more than ``k`` sigma from its baseline (NaN is never flagged).

    ``side="above"`` is one-sided, as a latency alert is (slower is an incident, faster is
    not): only points above the baseline count; ``"below"`` the other way round.

    >>> s = pd.Series([1.0, 1.1, 0.9, 1.0] * 5 + [-7.0])
    >>> detect(s).iloc[-1], detect(s, side="above").iloc[-1]
    (np.True_, np.False_)
    """
    if side not in SIDES:
        raise CloudlabError(f"side={side!r}: one of {', '.join(SIDES)}")
    z = zscores(series, window)
    beyond = z.abs() if side == "both" else z if side == "above" else -z
    return (beyond > k).fillna(False).astype(bool)


def episodes(flags: pd.Series, gap: int = 0) -> list[tuple[Any, Any]]:
    """Runs of consecutive True flags as (first, last) index pairs: one page per run.

    Runs separated by at most ``gap`` False points are merged (an alert that flaps).
    """
    runs: list[list[Any]] = []
    idx = list(pd.Series(flags).index)
    last_true = None
    for pos, (i, flag) in enumerate(zip(idx, pd.Series(flags).tolist(), strict=True)):
        if not flag:
            continue
        if runs and last_true is not None and pos - last_true <= gap + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
        last_true = pos
    return [(a, b) for a, b in runs]


@dataclass(frozen=True)
class Score:
    """How good an alert is: precision = real pages / pages, recall = paged incidents."""

    pages: int
    true_pages: int
    incidents: int
    caught: int

    @property
    def false_pages(self) -> int:
        return self.pages - self.true_pages

    @property
    def precision(self) -> float:
        return self.true_pages / self.pages if self.pages else math.nan

    @property
    def recall(self) -> float:
        return self.caught / self.incidents if self.incidents else math.nan

    def as_dict(self) -> dict[str, float]:
        return {"pages": self.pages, "false pages": self.false_pages,
                "incidents": self.incidents, "caught": self.caught,
                "precision": self.precision, "recall": self.recall}


def score(alerts: Iterable[tuple[Any, Any]], incidents: Iterable[tuple[Any, Any]],
          slack: Any = 0, by_start: bool = False) -> Score:
    """Compare alert episodes with labelled incidents (both as (start, end) intervals).

    By default a page is true when it overlaps an incident widened by ``slack`` on each
    side, and an incident is caught when any page overlaps it. With ``by_start=True`` a page
    belongs to the incident its *start* falls in (widened by ``slack``), and only pages that
    belong to an incident catch it: a long page that began in one incident and lags into
    the next does not take credit for the second.

    >>> score([(0, 9)], [(0, 3), (6, 9)]).caught                 # the page overlaps both
    2
    >>> score([(0, 9)], [(0, 3), (6, 9)], by_start=True).caught  # it began in the first
    1
    """
    pages, wanted = list(alerts), list(incidents)

    def overlaps(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
        return a[0] <= b[1] + slack and b[0] - slack <= a[1]

    def owner(page: tuple[Any, Any]) -> int | None:
        return next((n for n, i in enumerate(wanted)
                     if i[0] - slack <= page[0] <= i[1] + slack), None)

    if by_start:
        owners = [owner(p) for p in pages]
        return Score(len(pages), sum(o is not None for o in owners), len(wanted),
                     len({o for o in owners if o is not None}))
    true_pages = sum(any(overlaps(p, i) for i in wanted) for p in pages)
    caught = sum(any(overlaps(p, i) for p in pages) for i in wanted)
    return Score(len(pages), true_pages, len(wanted), caught)


# -- promtool and amtool -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolResult:
    """A promtool/amtool verdict: passed or not, with the tool's own words."""

    passed: bool
    output: str

    def __bool__(self) -> bool:
        return self.passed


def tool_output(cmd: Sequence[str], *, cwd: str | Path | None = None,
                timeout: float = 60) -> tuple[bool, str]:
    """Run promtool/amtool: (exit code 0, its stdout and stderr without amtool's chatter)."""
    done = run(cmd, check=False, timeout=timeout, cwd=cwd)
    text = "\n".join(ln for ln in (done.stdout + done.stderr).splitlines()
                     if "overrides the --alertmanager.url" not in ln).strip()
    return done.returncode == 0, text


def test_rules(test_file: str | Path, timeout: float = 60) -> ToolResult:
    """``promtool test rules FILE``: passed, and promtool's report (failures included)."""
    try:
        return ToolResult(*tool_output(["promtool", "test", "rules", str(test_file)],
                                       cwd=Path(test_file).parent, timeout=timeout))
    except CommandError as exc:  # not installed, or timed out
        return ToolResult(False, str(exc))


def rule_tests(rules: str | Mapping[str, Any], tests: Sequence[Mapping[str, Any]], *,
               evaluation_interval: str = "1m", timeout: float = 60) -> ToolResult:
    """Write ``rules`` and a promtool test file for ``tests`` to a temp dir and run them."""
    with tempfile.TemporaryDirectory(prefix="cloudlab-promtool-") as tmp:
        rules_path = Path(tmp) / "rules.yml"
        rules_path.write_text(rules if isinstance(rules, str)
                              else yaml.safe_dump(dict(rules), sort_keys=False))
        spec = {"rule_files": ["rules.yml"], "evaluation_interval": evaluation_interval,
                "tests": [dict(t) for t in tests]}
        test_path = Path(tmp) / "tests.yml"
        test_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return test_rules(test_path, timeout=timeout)


def check_config(config: str | Path | Mapping[str, Any]) -> ToolResult:
    """``amtool check-config``: is this a valid Alertmanager config?"""
    with _config_file(config) as path:
        return ToolResult(*tool_output(["amtool", "check-config", str(path)], timeout=30))


def routes(config: str | Path | Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """The receivers an alert with ``labels`` reaches (``amtool config routes test``).

    Only the config is read: no Alertmanager is contacted and nothing is sent.
    """
    with _config_file(config) as path:
        done = run(["amtool", "config", "routes", "test", f"--config.file={path}",
                    *_label_args(labels)], timeout=30,
                   hint="amtool comes with Debian's prometheus-alertmanager package")
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return [r.strip() for r in line.split(",") if r.strip()]


def routes_test(config: str | Path | Mapping[str, Any], labels: Mapping[str, str],
                expect: Sequence[str]) -> ToolResult:
    """``amtool config routes test --verify.receivers``: does ``labels`` reach ``expect``?"""
    with _config_file(config) as path:
        return ToolResult(*tool_output(["amtool", "config", "routes", "test",
                                        f"--config.file={path}",
                                        f"--verify.receivers={','.join(expect)}",
                                        *_label_args(labels)], timeout=30))


def _label_args(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


class _config_file:
    """A path for an Alertmanager config given as a path, YAML text or a mapping."""

    def __init__(self, config: str | Path | Mapping[str, Any]) -> None:
        self.config, self._tmp = config, None

    def __enter__(self) -> Path:
        if isinstance(self.config, Path):
            return self.config
        self._tmp = tempfile.TemporaryDirectory(prefix="cloudlab-amtool-")
        path = Path(self._tmp.name) / "alertmanager.yml"
        path.write_text(self.config if isinstance(self.config, str)
                        else yaml.safe_dump(dict(self.config), sort_keys=False))
        return path

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


# -- the live Alertmanager ----------------------------------------------------------------------


def configure(config: str | Mapping[str, Any], *, cfg: Settings | None = None) -> Path:
    """Install an Alertmanager config (checked by amtool first) and reload when running."""
    from .services import alertmanager

    checked = check_config(config)
    if not checked:
        raise CloudlabError(f"amtool rejected the Alertmanager config:\n{checked.output}")
    am = alertmanager(cfg)
    am.dir.mkdir(parents=True, exist_ok=True)
    path = am.dir / "alertmanager.yml"
    path.write_text(config if isinstance(config, str)
                    else yaml.safe_dump(dict(config), sort_keys=False))
    if am.pid() is not None:
        resp = requests.post(am.url + "/-/reload", timeout=10)
        if resp.status_code != 200:
            raise ServiceError(f"Alertmanager refused the reload: {resp.text.strip()}")
    return path


def active(*, cfg: Settings | None = None) -> pd.DataFrame:
    """Alerts Alertmanager holds now: name, state, receivers, start time, labels."""
    url = (cfg or settings()).alertmanager_url
    try:
        data = requests.get(url + "/api/v2/alerts", timeout=10).json()
    except (requests.RequestException, ValueError) as exc:
        raise ServiceError(f"Alertmanager at {url} did not answer: {exc}") from None
    rows = [{"alertname": a["labels"].get("alertname"), "state": a["status"]["state"],
             "receivers": [r["name"] for r in a.get("receivers", [])],
             "starts_at": pd.Timestamp(a["startsAt"]), "labels": a["labels"]} for a in data]
    return pd.DataFrame(rows, columns=["alertname", "state", "receivers", "starts_at", "labels"])


def expected_delay(*, scrape_interval: float, evaluation_interval: float, for_: float,
                   group_wait: float) -> tuple[float, float]:
    """Shortest and longest time from a metric breach to the first webhook, in seconds.

    The breach is seen at the next scrape (0..scrape_interval), the rule notices it at
    the next evaluation (0..evaluation_interval), it stays pending for ``for_`` (rounded
    up to whole evaluations), Prometheus sends it at once, and Alertmanager waits
    ``group_wait`` before the first notification of a new group.

    >>> expected_delay(scrape_interval=5, evaluation_interval=5, for_=10, group_wait=1)
    (11.0, 21.0)
    """
    pending = math.ceil(for_ / evaluation_interval) * evaluation_interval if for_ else 0.0
    low = pending + group_wait
    return float(low), float(low + scrape_interval + evaluation_interval)


# -- the webhook receiver -----------------------------------------------------------------------


class Receiver(Managed):
    """A webhook receiver on 127.0.0.1 that records each notification with its arrival time.

    >>> with Receiver() as hook:                                 # doctest: +SKIP
    ...     alertmanager_config = {"receivers": [{"name": "pager",
    ...         "webhook_configs": [{"url": hook.url("pager")}]}], ...}
    ...     hook.wait(1, timeout=60)
    ...     hook.frame()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise CloudlabError(f"the receiver listens on loopback only, not {host!r}")
        self.host, self._port = host, port
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise CloudlabError("the receiver is not started")
        return self._server.server_address[1]

    def url(self, name: str = "default") -> str:
        """The webhook URL to give Alertmanager; the path names who was paged."""
        return f"http://{self.host}:{self.port}/{name}"

    def start(self) -> Receiver:
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                raw = self.rfile.read(size)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"unparsed": raw[:500].decode(errors="replace")}
                receiver._record(self.path.strip("/") or "default", body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # keep the notebook quiet
                pass

        self._server = ThreadingHTTPServer((self.host, self._port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="alert-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent); the recorded notifications stay."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.notifications.append({"received_at": time.time(), "path": path, "body": body})

    def clear(self) -> None:
        with self._lock:
            self.notifications.clear()

    def wait(self, count: int = 1, *, timeout: float = 60, where: Any = None,
             log: Path | None = None) -> list[dict[str, Any]]:
        """Wait until ``count`` notifications (matching ``where(n)`` if given) arrived."""
        def enough() -> list[dict[str, Any]] | None:
            with self._lock:
                got = [n for n in self.notifications if where is None or where(n)]
            return got if len(got) >= count else None

        return wait_for(enough, timeout=timeout, what=f"{count} webhook notification(s)",
                        log=log, interval=0.05)

    def frame(self, since: float | None = None) -> pd.DataFrame:
        """One row per alert per notification: when, to whom, status, alert, labels."""
        with self._lock:
            notes = list(self.notifications)
        rows = []
        for n in notes:
            body = n["body"]
            for a in body.get("alerts", []) or [{}]:
                labels = a.get("labels", {})
                rows.append({
                    "received_at": pd.Timestamp(n["received_at"], unit="s", tz="UTC"),
                    "after_s": None if since is None else round(n["received_at"] - since, 2),
                    "paged": n["path"], "receiver": body.get("receiver"),
                    "status": a.get("status", body.get("status")),
                    "alertname": labels.get("alertname"), "severity": labels.get("severity"),
                    "labels": labels})
        return pd.DataFrame(rows, columns=["received_at", "after_s", "paged", "receiver",
                                           "status", "alertname", "severity", "labels"])

    def __repr__(self) -> str:
        where = f"http://{self.host}:{self.port}/" if self._server else "stopped"
        return f"<Receiver {where} {len(self.notifications)} notification(s)>"
