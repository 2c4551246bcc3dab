"""Elastic file storage: EFS through boto3, and its local stand-in, a shared Docker volume.

On AWS (or moto) a :class:`FileSystem` is created with mount targets in several subnets of
the default VPC, so instances in each availability zone can mount it over NFS. Locally,
the "file system several machines mount at once" is a Docker volume mounted by several
containers at once: :meth:`SharedVolume.writers_and_readers` shows concurrent writers and
readers on it.

>>> with FileSystem(zones=2) as fs:          # doctest: +SKIP
...     fs.mount_targets()[["zone", "state"]]
>>> with SharedVolume() as vol:              # doctest: +SKIP
...     result = vol.writers_and_readers(writers=3, lines=20)
"""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import aws, busybox, engine
from .config import Settings, settings
from .lifecycle import Managed
from .proc import wait_for


class FileSystem(Managed):
    """An EFS file system with one mount target per availability zone (up to ``zones``)."""

    def __init__(self, cfg: Settings | None = None, name: str = "cloudlab-efs", zones: int = 2,
                 performance_mode: str = "generalPurpose", timeout: float = 300) -> None:
        if zones < 1:
            raise ValueError(f"zones must be at least 1; got {zones}")
        self.cfg = cfg or settings()
        self.name, self.zones = name, zones
        self.performance_mode, self.timeout = performance_mode, timeout
        self.id: str | None = None

    @property
    def efs(self):
        return aws.client("efs", self.cfg)

    def start(self) -> FileSystem:
        try:
            self._create()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        ok, why = aws.reachable(self.cfg)
        if not ok:
            from .errors import UnavailableError

            raise UnavailableError(why)
        token = f"{self.cfg.run_id}-{self.name}-{uuid.uuid4().hex[:6]}"
        fs = self.efs.create_file_system(
            CreationToken=token, PerformanceMode=self.performance_mode, Encrypted=True,
            Tags=[*aws.tags(self.cfg), {"Key": "Name", "Value": self.name}])
        self.id = fs["FileSystemId"]
        wait_for(lambda: self.describe()["LifeCycleState"] == "available",
                 timeout=self.timeout, what=f"{self.id} to become available")
        for subnet in self.subnets():
            self.efs.create_mount_target(FileSystemId=self.id, SubnetId=subnet["SubnetId"])
        wait_for(lambda: (self.mount_targets()["state"] == "available").all(),
                 timeout=self.timeout, what=f"the mount targets of {self.id}")

    def subnets(self) -> list[dict[str, Any]]:
        """One subnet per availability zone of the default VPC, ``zones`` of them."""
        ec2 = aws.client("ec2", self.cfg)
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise RuntimeError("no default VPC in this region: create one "
                               "(aws ec2 create-default-vpc) or pass subnets yourself")
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id",
                                                 "Values": [vpcs[0]["VpcId"]]}])["Subnets"]
        by_zone: dict[str, dict[str, Any]] = {}
        for s in sorted(subnets, key=lambda s: s["AvailabilityZone"]):
            by_zone.setdefault(s["AvailabilityZone"], s)
        return list(by_zone.values())[: self.zones]

    def describe(self) -> dict[str, Any]:
        if self.id is None:
            raise RuntimeError("the file system has not been created (call start())")
        return self.efs.describe_file_systems(FileSystemId=self.id)["FileSystems"][0]

    def mount_targets(self) -> pd.DataFrame:
        rows = self.efs.describe_mount_targets(FileSystemId=self.id)["MountTargets"]
        return pd.DataFrame([[m["MountTargetId"], m.get("AvailabilityZoneName", ""),
                              m["SubnetId"], m.get("IpAddress", ""), m["LifeCycleState"]]
                             for m in rows],
                            columns=["mount_target", "zone", "subnet", "ip", "state"])

    def mount_command(self, path: str = "/mnt/efs") -> str:
        """What an instance in the VPC would run to mount it (NFS 4.1; not run here)."""
        host = f"{self.id}.efs.{self.cfg.aws_region}.amazonaws.com"
        return (f"sudo mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,"
                f"timeo=600,retrans=2 {host}:/ {path}")

    def stop(self) -> None:
        """Delete the mount targets, then the file system; safe to call twice."""
        fs_id, self.id = self.id, None
        if fs_id is not None:
            aws.delete_file_system(fs_id, self.cfg, timeout=self.timeout)

    def __repr__(self) -> str:
        return f"<FileSystem {self.id or '(not created)'}>"


@dataclass
class SharedRun:
    """What concurrent writers wrote and what readers saw while they wrote."""

    lines: pd.DataFrame  # seq, writer, n: the shared file, in order
    samples: pd.DataFrame  # reader, sample, lines_seen

    @property
    def switches(self) -> int:
        """How often consecutive lines come from different writers (0 = no overlap)."""
        w = self.lines["writer"]
        return int((w != w.shift()).sum() - 1) if len(w) else 0

    @property
    def intact(self) -> bool:
        """Every writer's lines are all there, each exactly once, in its own order."""
        return all(list(g["n"]) == list(range(1, len(g) + 1))
                   for _, g in self.lines.groupby("writer"))


class SharedVolume(Managed):
    """A labelled Docker volume that several containers mount at once (local "EFS")."""

    mount = "/shared"

    def __init__(self, cfg: Settings | None = None, name: str | None = None) -> None:
        self.cfg = cfg or settings()
        self.name = name or f"cloudlab-{self.cfg.run_id}-shared-{uuid.uuid4().hex[:4]}"
        self._api = None
        self._containers: list[Any] = []
        self.image: str | None = None

    def start(self) -> SharedVolume:
        try:
            engine.require(self.cfg)
            self._api = engine.client(timeout=60)
            self.image = busybox.image(self.cfg)
            self._api.volumes.create(self.name, labels=self.cfg.labels())
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, script: str, role: str, read_only: bool = False):
        """Start a container running ``script`` with the volume at ``/shared``."""
        if self._api is None:
            raise RuntimeError(f"volume {self.name} is not started: use `with` or start()")
        c = self._api.containers.run(
            self.image, ["sh", "-c", script], detach=True,
            name=f"{self.name}-{role}", labels=self.cfg.labels(),
            volumes={self.name: {"bind": self.mount, "mode": "ro" if read_only else "rw"}})
        self._containers.append(c)
        return c

    def writers_and_readers(self, writers: int = 3, lines: int = 40, readers: int = 1,
                            pause_ms: int = 25, timeout: float = 120) -> SharedRun:
        """``writers`` containers append to one file while ``readers`` watch it grow."""
        if writers < 1 or lines < 1 or readers < 0:
            raise ValueError("need at least one writer and one line, and readers >= 0")
        total = writers * lines
        log = f"{self.mount}/log.txt"
        self.run(f": > {log}", "init").wait(timeout=timeout)
        # readers first, so they see the file grow; each prints how many lines it sees
        reader_cs = [self.run(
            f"n=0; s=0; while [ $n -lt {total} ] && [ $s -lt 3000 ]; do "
            f"n=$(wc -l < {log}); echo $n; s=$((s+1)); usleep 20000; done", f"reader{i}",
            read_only=True) for i in range(1, readers + 1)]
        script = ("i=1; while [ $i -le {lines} ]; do echo \"w{w} $i\" >> {log}; i=$((i+1)); "
                  "usleep {pause}; done")
        with ThreadPoolExecutor(max_workers=writers) as pool:  # start them all at once
            writer_cs = list(pool.map(lambda w: self.run(
                script.format(lines=lines, w=w, log=log, pause=pause_ms * 1000), f"writer{w}"),
                range(1, writers + 1)))
        for c in writer_cs + reader_cs:
            c.wait(timeout=timeout)
        text = self.run(f"cat {log}", "cat")
        text.wait(timeout=timeout)
        content = text.logs().decode()
        rows = [(i, *ln.split()) for i, ln in enumerate(content.splitlines(), 1)]
        df = pd.DataFrame(rows, columns=["seq", "writer", "n"]).astype({"n": int})
        samples = [(f"reader{i}", j, int(v)) for i, c in enumerate(reader_cs, 1)
                   for j, v in enumerate(c.logs().decode().split(), 1)]
        return SharedRun(df, pd.DataFrame(samples, columns=["reader", "sample", "lines_seen"]))

    def stop(self) -> None:
        """Remove this volume's containers and the volume itself; idempotent."""
        api = self._api or (engine.client(timeout=60) if engine.available(self.cfg) else None)
        for c in self._containers:
            with contextlib.suppress(Exception):
                c.remove(force=True)
        self._containers = []
        if api is not None:
            with contextlib.suppress(Exception):
                api.volumes.get(self.name).remove(force=True)
