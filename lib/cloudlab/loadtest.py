"""Load tests with Locust (its current API: ``HttpUser``, ``@task``, ``between``).

A :class:`LoadTest` writes a locustfile whose users POST real feature rows to
``/predict`` (and now and then GET ``/healthz``), and runs Locust headless in its own
process, following a user profile: a list of :class:`Stage` (until ``t`` seconds, run
``users`` users), played by Locust's ``LoadTestShape``. The run is bounded in time (it
is killed if it overruns), aims only at 127.0.0.1, refuses a target that does not accept
connections, and shows a progress bar with users, requests/s and p95. Its CSV output
comes back as pandas DataFrames. ``counters`` are sampled every second while it runs (a
server's CPU seconds, say), and :meth:`Result.steps` turns each into a rate per step.

>>> result = run("http://127.0.0.1:8080", ramp(users=20, seconds=30))      # doctest: +SKIP
>>> result.history[["t", "users", "rps", "p95_ms"]].tail(1)                 # doctest: +SKIP
>>> ramp(users=10, seconds=20, hold=10, start=0)
[Stage(t=20.0, users=10, spawn_rate=0.5), Stage(t=30.0, users=10, spawn_rate=0.5)]
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from .config import Settings, settings
from .errors import CloudlabError, ServiceError
from .lifecycle import Managed
from .proc import alive, end

LOCAL_HOSTS = ("127.0.0.1", "localhost")
PERCENTILES = {"50%": "p50_ms", "95%": "p95_ms", "99%": "p99_ms"}

LOCUSTFILE = '''\
"""Users of the prediction service (written by cloudlab.loadtest)."""
import json
import os
import random
import time

import gevent
from locust import HttpUser, LoadTestShape, between, events, task

SETUP = json.loads(os.environ["CLOUDLAB_LOCUST"])
ROWS = SETUP["rows"]
HISTORY = ("Timestamp,User Count,Requests/s,Failures/s,50%,95%,99%,Total Request Count,"
           "Total Failure Count,Total Average Response Time")


@events.test_start.add_listener
def started(environment, **kwargs):
    """Note when the profile's clock starts (the stages count from here)."""
    with open("started", "w") as f:
        f.write(repr(time.time()))
    gevent.spawn(history, environment)


def history(environment):
    """A row a second, stamped to the millisecond: Locust's own history stamps whole
    seconds, up to 1 s off, which is 1/8 of an 8-second step's throughput."""
    with open("locust_history.csv", "w") as f:
        f.write(HISTORY + "\\n")
        while True:
            total = environment.stats.total
            ready = total.num_requests and total.use_response_times_cache
            cuts = [total.get_current_response_time_percentile(p) if ready else None
                    for p in (0.5, 0.95, 0.99)]
            f.write(",".join(str(v) for v in (
                round(time.time(), 3), environment.runner.user_count,
                round(total.current_rps, 2), round(total.current_fail_per_sec, 2),
                *("" if c is None else c for c in cuts), total.num_requests,
                total.num_failures, round(total.avg_response_time, 2))) + "\\n")
            f.flush()
            gevent.sleep(1)


class Predictor(HttpUser):
    """One user: mostly predictions, now and then a health check."""

    wait_time = between(SETUP["wait"][0], SETUP["wait"][1])

    @task(10)
    def predict(self):
        self.client.post("/predict", json={"features": [random.choice(ROWS)]}, name="/predict")

    @task(1)
    def health(self):
        self.client.get("/healthz", name="/healthz")


class Profile(LoadTestShape):
    """The user profile: (until t seconds, this many users, added at this rate)."""

    def tick(self):
        now = self.get_run_time()
        for stage in SETUP["stages"]:
            if now < stage["t"]:
                return stage["users"], stage["spawn_rate"]
        return None
'''


@dataclass(frozen=True)
class Stage:
    """Until ``t`` seconds into the test, run ``users`` users (added ``spawn_rate``/s)."""

    t: float
    users: int
    spawn_rate: float = 10.0


def ramp(users: int, seconds: float, hold: float = 0, start: int = 1) -> list[Stage]:
    """A linear ramp from ``start`` to ``users`` over ``seconds``, then ``hold`` seconds."""
    if users < 1 or seconds <= 0:
        raise ValueError("a ramp needs users >= 1 and seconds > 0")
    rate = max(0.1, round((users - start) / seconds, 2) if users > start else 1.0)
    stages = [Stage(float(seconds), users, rate)]
    if hold:
        stages.append(Stage(float(seconds + hold), users, rate))
    return stages


def spike(base: int, peak: int, before: float, during: float, after: float) -> list[Stage]:
    """``base`` users, a sudden jump to ``peak`` for ``during`` seconds, then ``base`` again.

    >>> [s.users for s in spike(2, 30, 10, 20, 10)]
    [2, 30, 2]
    """
    return [Stage(float(before), base, 50.0), Stage(float(before + during), peak, 50.0),
            Stage(float(before + during + after), base, 50.0)]


def check_target(url: str) -> tuple[str, int]:
    """The target's host and port, after checking it is local and accepts connections."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"target {url!r} is not an http:// URL")
    if parsed.hostname not in LOCAL_HOSTS:
        raise ValueError(f"target {url!r}: load tests here aim only at 127.0.0.1 "
                         "(sending load to another machine needs its owner's consent)")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.socket() as s:
        s.settimeout(2)
        code = s.connect_ex(("127.0.0.1", port))
    if code != 0:
        raise ServiceError(f"nothing accepts connections at 127.0.0.1:{port} "
                           f"({os.strerror(code)}): start the service before the load test")
    return parsed.hostname, port


@dataclass
class Result:
    """What Locust measured: history over time, totals per endpoint, failures."""

    history: object  # DataFrame: t, users, rps, fail_rps, p50_ms, p95_ms, p99_ms, requests,
    # failures, avg_ms (the last three cumulative since the start)
    stats: object  # DataFrame: one row per endpoint plus Aggregated
    failures: object  # DataFrame: method, name, error, occurrences
    started: float  # wall clock (time.time()) when Locust started
    seconds: float
    duration: float = 0.0  # the profile's length: later rows are Locust shutting down
    counters: object = None  # DataFrame: t, then one column per sampled counter

    def by_users(self):
        """Requests/s and latency percentiles against the number of users.

        Rows are grouped by user count (the steady part of each step): mean of the
        current requests/s and of the percentiles Locust reported.
        """
        frame = self.history[self.history["users"] > 0]
        if self.duration:
            frame = frame[frame["t"] <= self.duration]
        cols = ["rps", "fail_rps", *PERCENTILES.values()]
        return frame.groupby("users")[cols].mean().round(1)

    def steps(self, settle: float = 2.0):
        """Completed requests/s and mean response time per step of the profile.

        For each user count, only rows at least ``settle`` seconds after the count was
        reached are used (the ramp and Locust's own smoothing are left out). Throughput
        is the growth of the cumulative request counter over that span, and the mean
        response time is that of the requests completed in it (from Locust's running
        mean). These are the two numbers Little's law relates. Each sampled counter
        becomes a column too: its growth per second over the same span (CPU seconds a
        second are the cores the server used), read between the samples around it.
        """
        import pandas as pd

        frame = self.history[self.history["users"] > 0]
        if self.duration:
            frame = frame[frame["t"] <= self.duration]
        rows = []
        for users, part in frame.groupby("users", sort=False):
            began = part["t"].iloc[0]
            part = part[part["t"] >= began + settle]
            if len(part) < 2:
                continue
            first, last = part.iloc[0], part.iloc[-1]
            done = float(last["requests"] - first["requests"])
            span = float(last["t"] - first["t"])
            spent = float(last["avg_ms"] * last["requests"] - first["avg_ms"] * first["requests"])
            rows.append({"users": int(users), "seconds": round(span, 1),
                         "completed": int(done),
                         "throughput_rps": round(done / span, 2) if span else float("nan"),
                         "mean_ms": round(spent / done, 1) if done else float("nan"),
                         "p50_ms": part["p50_ms"].mean().round(1),
                         "p95_ms": part["p95_ms"].mean().round(1),
                         **self._rates(float(first["t"]), float(last["t"]))})
        return pd.DataFrame(rows).set_index("users") if rows else pd.DataFrame(
            columns=["seconds", "completed", "throughput_rps", "mean_ms", "p50_ms", "p95_ms"])

    def _rates(self, start: float, end: float) -> dict[str, float]:
        """Each counter's growth per second from ``start`` to ``end`` (NaN when the
        samples do not cover the span)."""
        import numpy as np

        frame = self.counters
        if frame is None or not len(frame) or end <= start:
            return {}
        rates = {}
        for name in frame.columns.drop("t"):
            known = frame[["t", name]].dropna()
            covered = len(known) and known["t"].min() <= start and known["t"].max() >= end
            value = np.interp([start, end], known["t"], known[name]) if covered else None
            rates[name] = round((value[1] - value[0]) / (end - start), 3) if covered \
                else float("nan")
        return rates

    @property
    def total(self) -> dict[str, float]:
        """Aggregated totals: requests, failures, rps, median and p95 (ms)."""
        row = self.stats[self.stats["Name"] == "Aggregated"].iloc[0]
        return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1),
                "median_ms": float(row["Median Response Time"]),
                "p95_ms": float(row["95%"])}


class LoadTest(Managed):
    """A headless Locust run in its own process; ``start()``/``stop()`` or ``with``.

    ``wait()`` blocks until the profile ends (showing progress) and returns a
    :class:`Result`. ``stop()`` ends Locust at once, idempotently.
    """

    def __init__(self, url: str, stages: Sequence[Stage], *, wait: tuple[float, float] = (0.5,
                 1.5), rows: int = 200, folder: str | Path | None = None,
                 cfg: Settings | None = None,
                 counters: Mapping[str, Callable[[], float]] | None = None) -> None:
        if not stages:
            raise ValueError("a load test needs at least one Stage")
        times = [s.t for s in stages]
        if times != sorted(times) or times[0] <= 0:
            raise ValueError(f"stage end times must increase from > 0: {times}")
        self.cfg = cfg or settings()
        self.url = url.rstrip("/")
        self.stages = list(stages)
        self.wait_range = wait
        self.rows = rows
        self.folder = Path(folder) if folder else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None
        self.started = 0.0
        self.counters = dict(counters or {})
        self._samples: list[dict[str, float]] = []

    @property
    def duration(self) -> float:
        return self.stages[-1].t

    @property
    def prefix(self) -> Path:
        return self.workdir / "locust"

    @property
    def workdir(self) -> Path:
        if self.folder is not None:
            return self.folder
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cloudlab-locust-")
        return Path(self._tmp.name)

    @property
    def log(self) -> Path:
        return self.workdir / "locust.log"

    def start(self) -> LoadTest:
        if self._proc is not None:
            return self
        from . import predict

        check_target(self.url)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "locustfile.py").write_text(LOCUSTFILE)
        setup = {"rows": predict.sample_rows(self.rows), "wait": list(self.wait_range),
                 "stages": [asdict(s) for s in self.stages]}
        env = {**os.environ, "CLOUDLAB_LOCUST": json.dumps(setup), "PYTHONUNBUFFERED": "1"}
        locust = Path(sys.executable).with_name("locust")
        cmd = [str(locust) if locust.exists() else "locust", "-f",
               str(self.workdir / "locustfile.py"), "--headless", "--host", self.url,
               "--csv", str(self.prefix), "--only-summary",
               "--loglevel", "WARNING", "--stop-timeout", "1", "--exit-code-on-error", "0"]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                          start_new_session=True)
        self.started = time.time()
        self.sample()
        return self

    def sample(self) -> None:
        """Read every counter once, stamped with the wall clock halfway through the read.

        A counter that cannot be read this time (a busy server's timeout) leaves a gap.
        """
        for name, read in self.counters.items():
            began = time.time()
            with contextlib.suppress(OSError, ValueError, StopIteration, CloudlabError):
                value = float(read())
                self._samples.append({"time": (began + time.time()) / 2, name: value})

    def stop(self) -> None:
        """End Locust now (SIGTERM, then SIGKILL); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            end(proc.pid)
        proc.wait(timeout=5)

    def __exit__(self, *exc: object) -> None:
        """Stop Locust, and remove its temporary folder (a ``folder`` given is kept)."""
        self.stop()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and alive(self._proc.pid)

    def wait(self, progress: bool = True, grace: float = 20) -> Result:
        """Wait for the profile to end (killed ``grace`` s after it should have); results."""
        if self._proc is None:
            raise CloudlabError("the load test is not running: start() it first")
        proc = self._proc
        deadline = self.started + self.duration + grace
        bar = _bar(progress, self.duration)
        try:
            while proc.poll() is None and time.time() < deadline:
                time.sleep(1)
                self.sample()
                if bar is not None:
                    bar.n = round(min(self.duration, time.time() - self.started))
                    now = self.latest()
                    if now:
                        bar.set_postfix(now, refresh=False)
                    bar.refresh()
        finally:
            if bar is not None:
                bar.close()
        overran = proc.poll() is None
        self.stop()
        if overran:
            raise ServiceError(f"Locust ran past {self.duration + grace:g} s and was stopped"
                               f"{_tail(self.log)}")
        return self.result()

    def latest(self) -> dict[str, float]:
        """The last history row Locust wrote: users, requests/s, p95 (ms)."""
        path = Path(f"{self.prefix}_history.csv")
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) < 2:
            return {}
        row = dict(zip(lines[0].split(","), lines[-1].split(","), strict=False))
        with contextlib.suppress(ValueError, KeyError):
            return {"users": int(row["User Count"]), "rps": round(float(row["Requests/s"]), 1),
                    "p95_ms": row["95%"]}
        return {}

    def result(self) -> Result:
        """Read Locust's CSV files into a :class:`Result`; raise when every request failed."""
        import pandas as pd

        history_csv = Path(f"{self.prefix}_history.csv")
        stats_csv = Path(f"{self.prefix}_stats.csv")
        if not stats_csv.exists():
            raise ServiceError(f"Locust wrote no statistics{_tail(self.log)}")
        stats = pd.read_csv(stats_csv)
        with contextlib.suppress(OSError, ValueError):  # the profile's own zero, when known
            self.started = float((self.workdir / "started").read_text())
        failures = _read(Path(f"{self.prefix}_failures.csv"),
                         ["Method", "Name", "Error", "Occurrences"])
        history = _history(history_csv, self.started)
        counters = pd.DataFrame(self._samples, columns=["time", *self.counters])
        counters = counters.assign(t=(counters.pop("time") - self.started).round(2))
        result = Result(history, stats, failures, self.started,
                        round(time.time() - self.started, 1), self.duration,
                        counters[["t", *self.counters]])
        total = result.total
        if total["requests"] and total["failures"] == total["requests"]:
            reason = failures["Error"].iloc[0] if len(failures) else "unknown"
            raise ServiceError(f"every one of {total['requests']} requests to {self.url} "
                               f"failed; the first error: {reason}")
        return result


def run(url: str, stages: Sequence[Stage], *, progress: bool = True, **options) -> Result:
    """Run a load test to the end and return its :class:`Result`."""
    with LoadTest(url, stages, **options) as test:
        return test.wait(progress=progress)


def _history(path: Path, started: float):
    import pandas as pd

    columns = ["t", "time", "users", "rps", "fail_rps", *PERCENTILES.values(), "requests",
               "failures", "avg_ms"]
    if not path.exists():
        return pd.DataFrame(columns=columns)
    raw = pd.read_csv(path)
    frame = pd.DataFrame({
        "time": pd.to_datetime(raw["Timestamp"], unit="s"),
        "t": (raw["Timestamp"] - started).round(2),
        "users": raw["User Count"],
        "rps": raw["Requests/s"].astype(float),
        "fail_rps": raw["Failures/s"].astype(float),
        **{new: pd.to_numeric(raw[old], errors="coerce") for old, new in PERCENTILES.items()},
        "requests": raw["Total Request Count"],
        "failures": raw["Total Failure Count"],
        "avg_ms": pd.to_numeric(raw["Total Average Response Time"], errors="coerce"),
    })
    return frame[columns].reset_index(drop=True)


def _read(path: Path, columns: list[str]):
    import pandas as pd

    if path.exists() and path.stat().st_size:
        return pd.read_csv(path)
    return pd.DataFrame(columns=columns)


def _bar(enabled: bool, total: float):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=round(total), desc="load test", unit="s")


def _tail(log: Path) -> str:
    from .proc import log_tail

    return log_tail(log)


__all__ = ["LoadTest", "Result", "Stage", "check_target", "ramp", "run", "spike"]
