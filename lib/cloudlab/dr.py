"""Reliability and disaster recovery: versioned backups, restore drills, retries, alarms.

Everything runs against the configured AWS mode (the local moto server by default) and is
tagged with the run id, so ``cloudlab cleanup --run-id`` finds what a crashed run left.

* :class:`BackupBucket` - a versioned, encrypted, lifecycle-managed S3 bucket; ``backup``
  uploads a folder with a manifest of SHA-256 checksums, ``restore`` brings a snapshot
  back pinned to its object versions and verifies every checksum (a :class:`Drill`).
* :func:`recovery` - RPO and RTO computed from the timestamps of a real drill.
* :class:`Queue` (SQS with a dead-letter queue), :class:`Downstream` (a real local HTTP
  service you can take down and bring back) and :class:`Worker` (delivers messages with
  exponential :class:`Backoff`, through the queue's visibility timeout).
* :class:`Alarms` - CloudWatch metric alarms. Moto stores alarms but never evaluates
  them, so :meth:`Alarms.evaluate` computes the state from the metric data and sets it
  explicitly with ``set_alarm_state`` (on real AWS, CloudWatch does it itself).
* :func:`checklist` - the serverless pillars, evaluated against the live resources.

>>> Backoff(base=1, factor=2, cap=8).schedule(5)
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> r = recovery(backups=[10.0, 70.0], disaster_at=100.0, restored_at=104.5)
>>> r.rpo_seconds, r.rto_seconds
(30.0, 4.5)
>>> with BackupBucket() as bucket:               # doctest: +SKIP
...     snap = bucket.backup("data/")
...     drill = bucket.restore(snap, "restored/")
...     drill.ok
True
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from . import aws
from .config import LABEL, Settings, settings
from .errors import CloudlabError, UnavailableError
from .lifecycle import Managed
from .ports import free_port
from .services import Service

NAMESPACE = "Cloudlab/DR"
MANIFESTS = "manifests/"


class DrillFailed(CloudlabError):
    """A restore did not give back what the backup recorded."""


def _require(cfg: Settings) -> None:
    ok, why = aws.reachable(cfg)
    if not ok:
        raise UnavailableError(why)


def _name(prefix: str, cfg: Settings) -> str:
    """A unique, S3/SQS-safe name carrying the run id (lower case, at most 63 chars)."""
    return f"{prefix}-{cfg.run_id}-{secrets.token_hex(2)}".lower()[:63]


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- backups and restore drills -----------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """One backup: when it was taken and, per file, the object version and checksum."""

    taken: float
    manifest_key: str
    files: dict[str, dict[str, Any]]  # key -> {"version": ..., "sha256": ..., "bytes": ...}

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files.values())


@dataclass(frozen=True)
class Drill:
    """The outcome of a restore: per-file checksums, and how long the restore took."""

    snapshot: Snapshot
    dest: Path
    files: pd.DataFrame  # key, version, expected, actual, ok
    started: float
    finished: float

    @property
    def ok(self) -> bool:
        return bool(len(self.files)) and bool(self.files["ok"].all())

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def require(self) -> Drill:
        """Raise :class:`DrillFailed` naming the files whose checksum does not match."""
        if not self.ok:
            bad = self.files.loc[~self.files["ok"], "key"].tolist() or ["(no files)"]
            raise DrillFailed(f"restore of snapshot {self.snapshot.manifest_key} did not "
                              f"verify: checksum mismatch in {', '.join(bad)}")
        return self


class BackupBucket(Managed):
    """A versioned S3 bucket for backups, with tags, lifecycle, encryption, no public access.

    ``noncurrent_days`` is how long an overwritten version is kept before the lifecycle
    rule expires it (versioning alone would keep every copy, and bill for it, forever).
    """

    def __init__(self, cfg: Settings | None = None, name: str | None = None,
                 noncurrent_days: int = 30) -> None:
        if noncurrent_days < 1:
            raise ValueError(f"noncurrent_days must be at least 1; got {noncurrent_days}")
        self.cfg = cfg or settings()
        self.name = name or _name("cloudlab-dr", self.cfg)
        self.noncurrent_days = noncurrent_days
        self.created = False

    @functools.cached_property
    def s3(self):
        """One boto3 client, reused (clients are thread-safe)."""
        return aws.client("s3", self.cfg)

    def start(self) -> BackupBucket:
        _require(self.cfg)
        try:
            self._create()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        s3 = self.s3
        kwargs: dict[str, Any] = {"Bucket": self.name}
        if self.cfg.aws_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.cfg.aws_region}
        s3.create_bucket(**kwargs)
        self.created = True
        s3.put_bucket_tagging(Bucket=self.name, Tagging={"TagSet": aws.tags(self.cfg)})
        s3.put_bucket_versioning(Bucket=self.name,
                                 VersioningConfiguration={"Status": "Enabled"})
        s3.put_public_access_block(Bucket=self.name, PublicAccessBlockConfiguration={
            k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                              "RestrictPublicBuckets")})
        s3.put_bucket_encryption(Bucket=self.name, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        s3.put_bucket_lifecycle_configuration(Bucket=self.name, LifecycleConfiguration={
            "Rules": [{"ID": "expire-old-versions", "Status": "Enabled",
                       "Filter": {"Prefix": ""},
                       "NoncurrentVersionExpiration": {"NoncurrentDays": self.noncurrent_days},
                       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})

    def stop(self) -> None:
        """Delete every version, every delete marker, then the bucket; idempotent."""
        if self.created:
            aws.delete_bucket(self.name, self.cfg)
            self.created = False

    def __repr__(self) -> str:
        return f"<BackupBucket s3://{self.name}>"

    # -- what a backup is ------------------------------------------------------------
    def backup(self, src: str | Path) -> Snapshot:
        """Upload every file under ``src`` and a manifest of their versions and checksums."""
        src = Path(src)
        if not src.is_dir():
            raise FileNotFoundError(f"nothing to back up: {src} is not a folder")
        s3, files = self.s3, {}
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = path.relative_to(src).as_posix()
            digest = sha256(path)
            with open(path, "rb") as body:
                put = s3.put_object(Bucket=self.name, Key=key, Body=body,
                                    Metadata={"sha256": digest})
            files[key] = {"version": put["VersionId"], "sha256": digest,
                          "bytes": path.stat().st_size}
        taken = time.time()
        stamp = datetime.fromtimestamp(taken, timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        manifest = f"{MANIFESTS}{stamp}.json"
        s3.put_object(Bucket=self.name, Key=manifest, ContentType="application/json",
                      Body=json.dumps({"taken": taken, "files": files}).encode())
        return Snapshot(taken, manifest, files)

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot recorded in the bucket, oldest first (read back from S3)."""
        s3, found = self.s3, []
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.name,
                                                             Prefix=MANIFESTS)
        for page in pages:
            for obj in page.get("Contents", []):
                body = json.loads(s3.get_object(Bucket=self.name, Key=obj["Key"])["Body"].read())
                found.append(Snapshot(body["taken"], obj["Key"], body["files"]))
        return sorted(found, key=lambda s: s.taken)

    def versions(self) -> pd.DataFrame:
        """Every object version and delete marker in the bucket, newest first per key."""
        rows = []
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.name):
            for kind, items in (("version", page.get("Versions", [])),
                                ("delete marker", page.get("DeleteMarkers", []))):
                rows += [{"key": v["Key"], "version": v["VersionId"], "kind": kind,
                          "latest": v["IsLatest"], "modified": v["LastModified"],
                          "bytes": v.get("Size", 0)} for v in items]
        return pd.DataFrame(rows, columns=["key", "version", "kind", "latest", "modified",
                                           "bytes"])

    def restore(self, snapshot: Snapshot, dest: str | Path, pinned: bool = True) -> Drill:
        """Download a snapshot into ``dest`` and verify every file's checksum.

        ``pinned`` fetches exactly the object versions the snapshot recorded; without it
        the *current* version of each key is fetched, which is what a restore that
        ignores versioning does (and why it can bring back a corrupted file).
        """
        dest = Path(dest)
        started = time.time()
        s3, rows = self.s3, []
        for key, info in snapshot.files.items():
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            extra = {"VersionId": info["version"]} if pinned else {}
            s3.download_file(self.name, key, str(target), ExtraArgs=extra or None)
            actual = sha256(target)
            rows.append({"key": key, "version": info["version"] if pinned else "current",
                         "expected": info["sha256"], "actual": actual,
                         "ok": actual == info["sha256"]})
        return Drill(snapshot, dest, pd.DataFrame(rows, columns=[
            "key", "version", "expected", "actual", "ok"]), started, time.time())


@dataclass(frozen=True)
class Recovery:
    """RPO and RTO of one incident, from measured timestamps (seconds since the epoch)."""

    last_backup_at: float
    disaster_at: float
    restored_at: float

    @property
    def rpo_seconds(self) -> float:
        """Recovery point: how much recent history was lost (disaster - last good backup)."""
        return self.disaster_at - self.last_backup_at

    @property
    def rto_seconds(self) -> float:
        """Recovery time: how long the service was without its data (restored - disaster)."""
        return self.restored_at - self.disaster_at


def recovery(backups: Iterable[float], disaster_at: float, restored_at: float) -> Recovery:
    """The RPO/RTO of an incident: the last backup taken *before* the disaster counts."""
    before = [t for t in backups if t <= disaster_at]
    if not before:
        raise DrillFailed("no backup was taken before the disaster: nothing to recover")
    if restored_at < disaster_at:
        raise ValueError("restored_at is earlier than disaster_at")
    return Recovery(max(before), disaster_at, restored_at)


# -- a queue, a downstream that fails, and retries with backoff ----------------------
@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: attempt n waits ``base * factor**(n-1)``, at most ``cap``."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError(f"need base > 0, factor >= 1, cap >= base; got {self}")

    def delay(self, attempt: int) -> float:
        if attempt < 1:
            raise ValueError(f"attempts count from 1; got {attempt}")
        return float(min(self.cap, self.base * self.factor ** (attempt - 1)))

    def schedule(self, attempts: int) -> list[float]:
        return [self.delay(n) for n in range(1, attempts + 1)]


class Queue(Managed):
    """An SQS queue with a dead-letter queue: after ``max_receives`` failed receives a
    message moves there instead of being retried forever. Long polling is on.
    """

    def __init__(self, cfg: Settings | None = None, name: str | None = None,
                 max_receives: int = 5, visibility: int = 5, wait: int = 1) -> None:
        if max_receives < 1:
            raise ValueError(f"max_receives must be at least 1; got {max_receives}")
        self.cfg = cfg or settings()
        self.name = name or _name("cloudlab-jobs", self.cfg)
        self.max_receives, self.visibility, self.wait = max_receives, visibility, wait
        self.url: str | None = None
        self.dlq_url: str | None = None

    @functools.cached_property
    def sqs(self):
        """One boto3 client, reused (clients are thread-safe)."""
        return aws.client("sqs", self.cfg)

    def start(self) -> Queue:
        _require(self.cfg)
        try:
            sqs, tags = self.sqs, self.cfg.labels()
            self.dlq_url = sqs.create_queue(QueueName=f"{self.name}-dlq"[:80], tags=tags,
                                            Attributes={"SqsManagedSseEnabled": "true"})[
                "QueueUrl"]
            dlq_arn = self.attributes(self.dlq_url)["QueueArn"]
            self.url = sqs.create_queue(QueueName=self.name[:80], tags=tags, Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                             "maxReceiveCount": str(self.max_receives)}),
                "VisibilityTimeout": str(self.visibility),
                "ReceiveMessageWaitTimeSeconds": str(self.wait),
                "SqsManagedSseEnabled": "true"})["QueueUrl"]
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Delete the queue and its dead-letter queue; idempotent."""
        for attr in ("url", "dlq_url"):
            url = getattr(self, attr)
            if url:
                with contextlib.suppress(Exception):
                    self.sqs.delete_queue(QueueUrl=url)
                setattr(self, attr, None)

    def attributes(self, url: str | None = None) -> dict[str, str]:
        return self.sqs.get_queue_attributes(QueueUrl=url or self.url,
                                             AttributeNames=["All"])["Attributes"]

    def send(self, bodies: Iterable[str]) -> list[str]:
        """Send one message per body; returns the message ids."""
        return [self.sqs.send_message(QueueUrl=self.url, MessageBody=b)["MessageId"]
                for b in bodies]

    def depth(self) -> dict[str, int]:
        """Messages waiting, in flight (received, not yet deleted) and dead-lettered."""
        main, dead = self.attributes(), self.attributes(self.dlq_url)
        return {"waiting": int(main["ApproximateNumberOfMessages"]),
                "in_flight": int(main["ApproximateNumberOfMessagesNotVisible"]),
                "dead": int(dead["ApproximateNumberOfMessages"])
                + int(dead["ApproximateNumberOfMessagesNotVisible"])}

    def dead_letters(self) -> list[str]:
        """The bodies sitting in the dead-letter queue (received, then made visible again)."""
        got = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", [])
        return [m["Body"] for m in got]


class Downstream(Service):
    """A real local HTTP service the worker delivers to: ``POST /jobs`` records the body.

    A body containing ``poison`` is refused with 500 every time (a message that can never
    succeed, which is what dead-letter queues are for). Stop it to simulate an outage,
    start it again to recover; what it received is in :meth:`received`.
    """

    name = "downstream"
    binary = sys.executable
    health_path = "/health"
    start_timeout = 20.0

    def __init__(self, cfg: Settings | None = None, port: int | None = None) -> None:
        super().__init__(cfg)
        self._port = free_port(self.cfg.host) if port is None else port

    @property
    def port(self) -> int:
        return self._port

    @property
    def journal(self) -> Path:
        return self.dir / "received.jsonl"

    def command(self) -> list[str]:
        # run by path: the server is stdlib only and starts in a fraction of a second
        return [self.binary, str(Path(__file__).with_name("_downstream.py")), "--host",
                self.cfg.host, "--port", str(self.port), "--journal", str(self.journal)]

    def received(self) -> pd.DataFrame:
        rows = ([json.loads(line) for line in self.journal.read_text().splitlines()]
                if self.journal.exists() else [])
        return pd.DataFrame(rows, columns=["at", "body"])

    def install_hint(self) -> str:
        return "it needs only this Python"


class Worker(Managed):
    """Consumes a :class:`Queue` in a thread and POSTs each message to ``url``.

    A failed delivery is not retried in a loop: the message's visibility timeout is set
    to the backoff delay for its receive count, so SQS itself hands it back later, and
    after ``max_receives`` attempts moves it to the dead-letter queue. Every attempt is
    recorded in :attr:`attempts`.
    """

    def __init__(self, queue: Queue, url: str, backoff: Backoff | None = None,
                 timeout: float = 1.0) -> None:
        self.queue, self.url = queue, url
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self.attempts: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> Worker:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="dr-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop polling and wait for the thread; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        sqs = self.queue.sqs
        while not self._stop.is_set():
            try:
                got = sqs.receive_message(QueueUrl=self.queue.url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=self.queue.wait,
                                          AttributeNames=["ApproximateReceiveCount"])
            except Exception as exc:  # the endpoint itself hiccuped: back off, try again
                self._record("", 0, False, f"receive failed: {exc}", self.backoff.base)
                self._stop.wait(self.backoff.base)
                continue
            for msg in got.get("Messages", []):
                self.handle(msg)

    def handle(self, msg: dict[str, Any]) -> bool:
        """Deliver one received message; on failure, delay its next receive (backoff)."""
        sqs = self.queue.sqs
        attempt = int(msg.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            resp = requests.post(self.url, data=msg["Body"].encode(), timeout=self.timeout)
            ok, detail = resp.status_code < 300, f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            ok, detail = False, type(exc).__name__
        if ok:
            sqs.delete_message(QueueUrl=self.queue.url, ReceiptHandle=msg["ReceiptHandle"])
            self._record(msg["Body"], attempt, True, detail, 0.0)
            return True
        delay = self.backoff.delay(attempt)
        try:
            sqs.change_message_visibility(QueueUrl=self.queue.url,
                                          ReceiptHandle=msg["ReceiptHandle"],
                                          VisibilityTimeout=math.ceil(delay))
        except Exception as exc:  # say so: it comes back after the queue's own timeout
            detail = f"{detail}; the backoff was not applied: {exc}"
            delay = float(self.queue.visibility)
        self._record(msg["Body"], attempt, False, detail, delay)
        return False

    def _record(self, body: str, attempt: int, ok: bool, detail: str, delay: float) -> None:
        with self._lock:
            self.attempts.append({"at": time.time(), "body": body, "attempt": attempt,
                                  "ok": ok, "detail": detail, "next_delay": delay})

    def history(self) -> pd.DataFrame:
        with self._lock:
            rows = list(self.attempts)
        return pd.DataFrame(rows, columns=["at", "body", "attempt", "ok", "detail",
                                           "next_delay"])

    def delivered(self) -> set[str]:
        return set(self.history().query("ok")["body"])


# -- CloudWatch metrics and alarms ----------------------------------------------------
def put_metric(name: str, value: float, cfg: Settings | None = None,
               namespace: str = NAMESPACE, unit: str = "None") -> None:
    """Publish one data point of a custom metric."""
    aws.client("cloudwatch", cfg or settings()).put_metric_data(
        Namespace=namespace, MetricData=[{"MetricName": name, "Value": float(value),
                                          "Unit": unit}])


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def alarm_state(values: list[float], threshold: float, comparison: str) -> str:
    """What CloudWatch would decide: ALARM when every value breaches, OK when none does
    break it, INSUFFICIENT_DATA with no values. (Partial breaches count as OK here:
    the alarm needs all its evaluation periods breaching, the default "M of N" = N.)
    """
    if comparison not in _COMPARE:
        raise ValueError(f"comparison must be one of {', '.join(_COMPARE)}; got {comparison!r}")
    if not values:
        return "INSUFFICIENT_DATA"
    return "ALARM" if all(_COMPARE[comparison](v, threshold) for v in values) else "OK"


class Alarms(Managed):
    """CloudWatch alarms created by this run (tagged); deleted by :meth:`stop`."""

    def __init__(self, cfg: Settings | None = None, namespace: str = NAMESPACE) -> None:
        self.cfg = cfg or settings()
        self.namespace = namespace
        self.names: list[str] = []

    @functools.cached_property
    def cw(self):
        """One boto3 client, reused (clients are thread-safe)."""
        return aws.client("cloudwatch", self.cfg)

    def start(self) -> Alarms:
        _require(self.cfg)
        return self

    def add(self, metric: str, threshold: float, comparison: str = "GreaterThanThreshold",
            statistic: str = "Maximum", period: int = 60, periods: int = 1,
            description: str = "") -> str:
        """Create an alarm on ``metric``; returns its name (it carries the run id)."""
        if comparison not in _COMPARE:
            raise ValueError(f"comparison must be one of {', '.join(_COMPARE)}; "
                             f"got {comparison!r}")
        name = f"cloudlab-{metric}-{self.cfg.run_id}"
        self.cw.put_metric_alarm(
            AlarmName=name, AlarmDescription=description, Namespace=self.namespace,
            MetricName=metric, Statistic=statistic, Period=period,
            EvaluationPeriods=periods, Threshold=float(threshold),
            ComparisonOperator=comparison, TreatMissingData="missing",
            Tags=aws.tags(self.cfg))
        if name not in self.names:
            self.names.append(name)
        return name

    def describe(self) -> pd.DataFrame:
        found = self.cw.describe_alarms(AlarmNames=self.names)["MetricAlarms"] \
            if self.names else []
        return pd.DataFrame([{"alarm": a["AlarmName"], "metric": a["MetricName"],
                              "threshold": a["Threshold"],
                              "comparison": a["ComparisonOperator"], "state": a["StateValue"],
                              "reason": a.get("StateReason", "")} for a in found],
                            columns=["alarm", "metric", "threshold", "comparison", "state",
                                     "reason"])

    def evaluate(self, set_state: bool | None = None) -> pd.DataFrame:
        """Compute each alarm's state from its metric's recent data points.

        With ``set_state`` (default: in local mode, where moto never evaluates alarms)
        the computed state is written with ``set_alarm_state``; on real AWS CloudWatch
        evaluates alarms itself and this only reports what it would decide.
        """
        set_state = self.cfg.aws_mode == "local" if set_state is None else set_state
        cw, rows = self.cw, []
        now = datetime.now(timezone.utc)
        for a in (cw.describe_alarms(AlarmNames=self.names)["MetricAlarms"]
                  if self.names else []):
            window = timedelta(seconds=a["Period"] * a["EvaluationPeriods"])
            points = cw.get_metric_statistics(
                Namespace=a["Namespace"], MetricName=a["MetricName"], StartTime=now - window,
                EndTime=now + timedelta(seconds=1), Period=a["Period"],
                Statistics=[a["Statistic"]])["Datapoints"]
            values = [p[a["Statistic"]] for p in sorted(points, key=lambda p: p["Timestamp"])]
            state = alarm_state(values, a["Threshold"], a["ComparisonOperator"])
            if set_state:
                cw.set_alarm_state(AlarmName=a["AlarmName"], StateValue=state, StateReason=(
                    f"set by cloudlab.dr from {len(values)} data point(s) {values}: "
                    "moto stores alarms but does not evaluate them"))
            rows.append({"alarm": a["AlarmName"], "metric": a["MetricName"],
                         "values": values, "threshold": a["Threshold"], "computed": state})
        return pd.DataFrame(rows, columns=["alarm", "metric", "values", "threshold",
                                           "computed"])

    def stop(self) -> None:
        """Delete this run's alarms; idempotent."""
        if self.names:
            with contextlib.suppress(Exception):
                self.cw.delete_alarms(AlarmNames=self.names)
            self.names = []


# -- the serverless pillars, evaluated ------------------------------------------------
@dataclass
class Facts:
    """What the checklist looks at, read from the live resources (see :func:`facts`)."""

    versioning: str | None = None
    lifecycle_noncurrent_days: int | None = None
    bucket_encrypted: bool = False
    public_access_blocked: bool = False
    queue_encrypted: bool = False
    dlq_max_receives: int | None = None
    long_polling_seconds: int = 0
    alarm_metrics: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)
    drill_ok: bool | None = None
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    retries_back_off: bool | None = None


def facts(bucket: BackupBucket | None = None, queue: Queue | None = None,
          alarms: Alarms | None = None, drill: Drill | None = None,
          incident: Recovery | None = None, worker: Worker | None = None) -> Facts:
    """Read the facts the checklist needs from the resources themselves (API calls)."""
    from botocore.exceptions import ClientError

    f = Facts()
    if bucket is not None and bucket.created:
        s3, b = bucket.s3, bucket.name
        f.versioning = s3.get_bucket_versioning(Bucket=b).get("Status")
        with contextlib.suppress(ClientError):
            rules = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
            days = [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules
                    if r.get("Status") == "Enabled" and "NoncurrentVersionExpiration" in r]
            f.lifecycle_noncurrent_days = min(days) if days else None
        with contextlib.suppress(ClientError):
            f.bucket_encrypted = bool(s3.get_bucket_encryption(Bucket=b)[
                "ServerSideEncryptionConfiguration"]["Rules"])
        with contextlib.suppress(ClientError):
            f.public_access_blocked = all(s3.get_public_access_block(Bucket=b)[
                "PublicAccessBlockConfiguration"].values())
        tags: dict[str, str] = {}
        with contextlib.suppress(ClientError):
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=b)["TagSet"]}
        if LABEL not in tags:
            f.untagged.append(f"s3://{b}")
    if queue is not None and queue.url:
        attrs = queue.attributes()
        f.queue_encrypted = attrs.get("SqsManagedSseEnabled") == "true" \
            or "KmsMasterKeyId" in attrs
        if "RedrivePolicy" in attrs:
            f.dlq_max_receives = int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"])
        f.long_polling_seconds = int(attrs.get("ReceiveMessageWaitTimeSeconds", "0"))
        for url in (queue.url, queue.dlq_url):
            if LABEL not in queue.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}):
                f.untagged.append(url)
    if alarms is not None and alarms.names:
        cw = alarms.cw
        for a in cw.describe_alarms(AlarmNames=alarms.names)["MetricAlarms"]:
            f.alarm_metrics.append(a["MetricName"])
            found = cw.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"]
            if LABEL not in {t["Key"] for t in found}:
                f.untagged.append(a["AlarmName"])
    if drill is not None:
        f.drill_ok = drill.ok
    if incident is not None:
        f.rpo_seconds, f.rto_seconds = incident.rpo_seconds, incident.rto_seconds
    if worker is not None:
        failed = worker.history().query("not ok and attempt > 0")
        if len(failed):
            f.retries_back_off = all(
                (g["next_delay"].diff().dropna() >= 0).all()
                and (g["next_delay"].iloc[-1] > g["next_delay"].iloc[0] or len(g) == 1)
                for _, g in failed.sort_values("attempt").groupby("body"))
    return f


def checklist(f: Facts, rpo_target: float, rto_target: float,
              alarm_on: Iterable[str] = ()) -> pd.DataFrame:
    """The six Well-Architected pillars as checks on :class:`Facts`: pass True/False, or
    None when the fact was not gathered (the evidence column says which)."""
    def row(pillar: str, check: str, ok: bool | None, evidence: str) -> dict[str, Any]:
        return {"pillar": pillar, "check": check, "pass": ok, "evidence": evidence}

    def known(value: Any, ok: bool) -> bool | None:
        return None if value is None else ok

    wanted = list(alarm_on)
    missing = [m for m in wanted if m not in f.alarm_metrics]
    rows = [
        row("operational excellence", "alarms on the key metrics", not missing,
            f"alarms on {f.alarm_metrics or 'nothing'}"
            + (f"; missing {missing}" if missing else "")),
        row("security", "backups encrypted at rest", f.bucket_encrypted,
            "default bucket encryption" if f.bucket_encrypted else "no bucket encryption"),
        row("security", "no public access to backups", f.public_access_blocked,
            "all four public-access blocks on" if f.public_access_blocked
            else "public access not fully blocked"),
        row("security", "queue encrypted at rest", f.queue_encrypted,
            "SQS-managed encryption" if f.queue_encrypted else "queue not encrypted"),
        row("reliability", "bucket versioning on", known(f.versioning, f.versioning == "Enabled"),
            f"versioning: {f.versioning}"),
        row("reliability", "failed messages go to a dead-letter queue",
            f.dlq_max_receives is not None,
            f"after {f.dlq_max_receives} receives" if f.dlq_max_receives else "no redrive policy"),
        row("reliability", "retries back off exponentially", f.retries_back_off,
            "from the worker's attempt log" if f.retries_back_off is not None
            else "no failed delivery observed"),
        row("reliability", "restore drill verified every checksum", f.drill_ok,
            "from the drill" if f.drill_ok is not None else "no drill run"),
        row("reliability", f"RPO within {rpo_target:g} s",
            known(f.rpo_seconds, (f.rpo_seconds or 0) <= rpo_target),
            f"measured {f.rpo_seconds:.2f} s" if f.rpo_seconds is not None else "not measured"),
        row("reliability", f"RTO within {rto_target:g} s",
            known(f.rto_seconds, (f.rto_seconds or 0) <= rto_target),
            f"measured {f.rto_seconds:.2f} s" if f.rto_seconds is not None else "not measured"),
        row("performance efficiency", "consumers long-poll the queue",
            f.long_polling_seconds > 0, f"ReceiveMessageWaitTimeSeconds={f.long_polling_seconds}"),
        row("cost optimization", "every resource tagged with the run id",
            not f.untagged, f"untagged: {f.untagged}" if f.untagged
            else "all tagged: costs can be attributed, and leftovers found"),
        row("sustainability", "old backup versions expire",
            f.lifecycle_noncurrent_days is not None,
            f"noncurrent versions expire after {f.lifecycle_noncurrent_days} days: stored "
            "data stays bounded" if f.lifecycle_noncurrent_days
            else "versions kept (stored, powered and billed) forever"),
    ]
    return pd.DataFrame(rows, columns=["pillar", "check", "pass", "evidence"])
