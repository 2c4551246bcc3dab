"""EC2 on-demand and spot launches with guardrails for real money.

A :class:`LaunchRequest` says what you want; :func:`launch` turns it into a
:class:`Fleet`, a context manager that terminates its instances (and cancels its spot
requests) on leaving the block, on any exception and on Ctrl-C. Before anything is
launched the request is checked: known instance type, a max price for spot, caps on
count and size, an explicit opt-in on real AWS (``CLOUDLAB_AWS_ALLOW_LAUNCH=true``), and
a ``DryRun`` call so missing permissions show up before money is spent.

>>> req = LaunchRequest("t3.micro", count=2, max_price=0.01)
>>> with launch(req) as fleet:               # doctest: +SKIP
...     fleet.describe()[["instance_id", "state", "lifecycle"]]
"""

from __future__ import annotations

import difflib
import functools
import warnings
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from . import aws
from .config import Settings, settings
from .errors import CloudlabError
from .lifecycle import Managed
from .proc import GiveUp, wait_for

MARKETS = ("spot", "on-demand")
APIS = ("request", "run")  # request_spot_instances, or run_instances with market options
MAX_COUNT = {"local": 10, "aws": 2}  # instances per request
MAX_VCPUS_AWS = 2  # per instance, on real AWS: t3.micro, t3.small, m5.large ... nothing bigger
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
DENIED = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")
# vCPUs and GiB of current small types that the 2017 price table predates (AWS's spec sheet)
SHAPES = {"t3.nano": (2, 0.5), "t3.micro": (2, 1.0), "t3.small": (2, 2.0),
          "t3.medium": (2, 4.0), "t3.large": (2, 8.0), "m5.large": (2, 8.0),
          "c5.large": (2, 4.0), "r5.large": (2, 16.0)}


class LaunchError(CloudlabError):
    """A launch could not happen; the message says why and what to do."""


class LaunchRefused(LaunchError):
    """A guardrail stopped a launch before any call reached the cloud."""


class PermissionDenied(LaunchError):
    """The DryRun call (or the launch) was refused for lack of permission."""


@dataclass(frozen=True)
class LaunchRequest:
    """What to launch. ``max_price`` is USD per instance-hour (required for spot).

    >>> LaunchRequest("t3.micro", max_price=-1).check()
    Traceback (most recent call last):
    ...
    cloudlab.ec2.LaunchError: max price must be zero or more USD per hour; got -1
    """

    instance_type: str = "t3.micro"
    count: int = 1
    max_price: float | None = None
    market: str = "spot"
    api: str = "request"
    image_id: str | None = None
    name: str = "cloudlab"

    def check(self) -> LaunchRequest:
        """Reject malformed requests (nothing is called); returns the request."""
        if self.market not in MARKETS:
            raise LaunchError(f"market must be one of {', '.join(MARKETS)}; got {self.market!r}")
        if self.api not in APIS:
            raise LaunchError(f"api must be one of {', '.join(APIS)}; got {self.api!r}")
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise LaunchError(f"count must be a whole number >= 1; got {self.count!r}")
        if not self.instance_type or not isinstance(self.instance_type, str):
            raise LaunchError(f"instance type must be a name like 't3.micro'; "
                              f"got {self.instance_type!r}")
        if self.market == "spot" and self.max_price is None:
            raise LaunchError("a spot request needs a max price (USD per hour), e.g. "
                              "max_price=0.01: it caps what you can be charged")
        if self.max_price is not None and (not isinstance(self.max_price, int | float)
                                           or self.max_price < 0):
            raise LaunchError(f"max price must be zero or more USD per hour; "
                              f"got {self.max_price!r}")
        return self

    @property
    def is_spot(self) -> bool:
        return self.market == "spot"


def guard(req: LaunchRequest, cfg: Settings | None = None) -> None:
    """The guardrails that need no API call: valid request, caps, the real-AWS opt-in.

    >>> from cloudlab.config import load
    >>> guard(LaunchRequest(max_price=0.01), load(env={}, aws_mode="aws"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cloudlab.ec2.LaunchRefused: refusing to launch on real AWS: ...
    """
    cfg = cfg or settings()
    req.check()
    cap = MAX_COUNT[cfg.aws_mode]
    if req.count > cap:
        raise LaunchRefused(f"count {req.count} exceeds the cap of {cap} instances per "
                            f"request in {cfg.aws_mode} mode")
    if cfg.aws_mode == "aws" and not cfg.aws_allow_launch:
        raise LaunchRefused(
            "refusing to launch on real AWS: instances cost money, so launching needs an "
            "explicit opt-in. Set CLOUDLAB_AWS_ALLOW_LAUNCH=true (or "
            "cl.configure(aws_allow_launch=True)) once you accept the charges; everything "
            "launched is tagged and terminated when the `with` block ends")


def instance_type_info(instance_type: str, cfg: Settings | None = None) -> dict[str, Any]:
    """vCPUs and memory of a type, as the API reports them; unknown types are rejected."""
    from botocore.exceptions import ClientError

    ec2 = aws.client("ec2", cfg)
    try:
        found = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "InvalidInstanceType":
            raise
        found = []
    if not found:
        from . import pricing

        known = list(pricing.load().index) + list(SHAPES)
        close = difflib.get_close_matches(instance_type, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LaunchError(f"unknown instance type {instance_type!r}: EC2 does not offer "
                          f"it{hint}")
    t = found[0]
    return {"instance_type": instance_type, "vcpus": t["VCpuInfo"]["DefaultVCpus"],
            "memory_gib": t["MemoryInfo"]["SizeInMiB"] / 1024}


def default_image(cfg: Settings | None = None) -> str:
    """The current Amazon Linux 2023 AMI, from the public SSM parameter AWS publishes."""
    ssm = aws.client("ssm", cfg)
    return ssm.get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]


def _calls(req: LaunchRequest, image: str, cfg: Settings) -> tuple[str, dict[str, Any]]:
    """The boto3 method and arguments that launch ``req``."""
    tags = [*aws.tags(cfg), {"Key": "Name", "Value": req.name}]
    if req.is_spot and req.api == "request":
        return "request_spot_instances", {
            "SpotPrice": f"{req.max_price:.4f}",
            "InstanceCount": req.count,
            "Type": "one-time",
            "LaunchSpecification": {"ImageId": image, "InstanceType": req.instance_type},
            "TagSpecifications": [{"ResourceType": "spot-instances-request", "Tags": tags}],
        }
    kwargs: dict[str, Any] = {
        "ImageId": image, "InstanceType": req.instance_type,
        "MinCount": req.count, "MaxCount": req.count,
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
    }
    if req.is_spot:
        kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "MaxPrice": f"{req.max_price:.4f}", "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate"}}
    return "run_instances", kwargs


def dry_run(req: LaunchRequest, cfg: Settings | None = None, image: str | None = None) -> str:
    """Ask EC2 whether the launch *would* succeed (``DryRun=True``); nothing is created.

    Returns the API's answer on success; raises :class:`PermissionDenied` when the
    credentials lack the permission and :class:`LaunchError` for any other refusal.
    """
    from botocore.exceptions import ClientError

    cfg = cfg or settings()
    method, kwargs = _calls(req.check(), image or default_image(cfg), cfg)
    try:
        getattr(aws.client("ec2", cfg), method)(DryRun=True, **kwargs)
    except ClientError as exc:
        err = exc.response["Error"]
        if err["Code"] == "DryRunOperation":
            return err["Message"]
        if err["Code"] in DENIED:
            raise PermissionDenied(
                f"DryRun of ec2:{_action(method)} was refused ({err['Code']}): "
                f"{err['Message']}. Your credentials may not launch instances; ask for a "
                f"policy allowing ec2:{_action(method)} and ec2:CreateTags") from None
        raise LaunchError(f"DryRun of ec2:{_action(method)} failed ({err['Code']}): "
                          f"{err['Message']}") from None
    raise LaunchError(f"DryRun of ec2:{_action(method)} returned without the expected "
                      "DryRunOperation answer; not launching")


def _action(method: str) -> str:
    return "".join(p.capitalize() for p in method.split("_"))


class Fleet(Managed):
    """Instances launched from one :class:`LaunchRequest`; terminated on any way out.

    ``start`` runs the whole flow: guardrails, type check, DryRun, launch, wait for
    fulfilment, tag the instances, wait until running. If anything fails part-way
    (including Ctrl-C) everything created so far is cancelled and terminated before the
    error propagates. ``stop`` is idempotent.
    """

    def __init__(self, request: LaunchRequest, cfg: Settings | None = None,
                 timeout: float | None = None) -> None:
        self.request = request
        self.cfg = cfg or settings()
        self.timeout = timeout or (60 if self.cfg.aws_mode == "local" else 600)
        self.spot_request_ids: list[str] = []
        self.instance_ids: list[str] = []
        self.image_id: str | None = None
        self.type_info: dict[str, Any] = {}
        self.terminated: list[str] = []

    @functools.cached_property
    def ec2(self):
        return aws.client("ec2", self.cfg)

    def start(self) -> Fleet:
        try:
            self._launch()
        except BaseException:
            try:
                self.stop()
            except Exception as exc:  # keep the original error; say what may be left
                warnings.warn(f"cleanup after a failed launch failed too ({exc}); run "
                              f"`cloudlab cleanup --run-id {self.cfg.run_id}`", stacklevel=2)
            raise
        return self

    def _launch(self) -> None:
        req = self.request
        guard(req, self.cfg)
        self.type_info = instance_type_info(req.instance_type, self.cfg)
        if self.cfg.aws_mode == "aws" and self.type_info["vcpus"] > MAX_VCPUS_AWS:
            raise LaunchRefused(f"{req.instance_type} has {self.type_info['vcpus']} vCPUs; "
                                f"the workbook caps real launches at {MAX_VCPUS_AWS} vCPUs")
        self.image_id = req.image_id or default_image(self.cfg)
        dry_run(req, self.cfg, self.image_id)
        method, kwargs = _calls(req, self.image_id, self.cfg)
        answer = getattr(self.ec2, method)(**kwargs)
        if method == "request_spot_instances":
            self.spot_request_ids = [r["SpotInstanceRequestId"]
                                     for r in answer["SpotInstanceRequests"]]
            self.instance_ids = _wait_fulfilled(self)
            _tag(self)
        else:
            self.instance_ids = [i["InstanceId"] for i in answer["Instances"]]
        self.wait_running()

    def wait_running(self) -> None:
        def running() -> bool:
            states = self.describe()["state"]
            if states.isin(["shutting-down", "terminated"]).any():
                raise GiveUp(f"an instance ended before running: {list(states)}")
            return len(states) == len(self.instance_ids) and (states == "running").all()

        wait_for(running, timeout=self.timeout, what=f"{len(self.instance_ids)} instance(s) "
                 "to run", interval=0.5 if self.cfg.aws_mode == "aws" else 0.1)

    def requests(self) -> pd.DataFrame:
        """The spot requests of this fleet: state, status code, instance."""
        cols = ["request_id", "state", "status", "instance_id", "max_price"]
        if not self.spot_request_ids:
            return pd.DataFrame(columns=cols)
        rows = self.ec2.describe_spot_instance_requests(
            SpotInstanceRequestIds=self.spot_request_ids)["SpotInstanceRequests"]
        return pd.DataFrame([[r["SpotInstanceRequestId"], r["State"],
                              r.get("Status", {}).get("Code", ""), r.get("InstanceId", ""),
                              r.get("SpotPrice", "")] for r in rows], columns=cols)

    def describe(self) -> pd.DataFrame:
        """One row per instance: id, type, state, lifecycle (spot or on-demand), tags."""
        cols = ["instance_id", "type", "state", "lifecycle", "zone", "tags"]
        if not self.instance_ids:
            return pd.DataFrame(columns=cols)
        res = self.ec2.describe_instances(InstanceIds=self.instance_ids)["Reservations"]
        return pd.DataFrame([[i["InstanceId"], i["InstanceType"], i["State"]["Name"],
                              i.get("InstanceLifecycle", "on-demand"),
                              i["Placement"]["AvailabilityZone"],
                              {t["Key"]: t["Value"] for t in i.get("Tags", [])}]
                             for r in res for i in r["Instances"]], columns=cols)

    def stop(self) -> None:
        """Cancel the spot requests and terminate every instance; safe to call twice.

        Every step is attempted even when an earlier one fails; failures are then
        reported together (``cloudlab cleanup`` is the fallback).
        """
        if not (self.spot_request_ids or self.instance_ids):
            return
        ec2, errors = self.ec2, []
        ids = set(self.instance_ids)
        if self.spot_request_ids:
            try:  # cancel first, so no new instance can appear; then find their instances
                ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=self.spot_request_ids)
                found = ec2.describe_spot_instance_requests(
                    SpotInstanceRequestIds=self.spot_request_ids)["SpotInstanceRequests"]
                ids |= {r["InstanceId"] for r in found if r.get("InstanceId")}
            except Exception as exc:
                errors.append(f"spot requests {self.spot_request_ids}: {exc}")
        if ids:
            try:
                ec2.terminate_instances(InstanceIds=sorted(ids))
            except Exception as exc:
                errors.append(f"instances {sorted(ids)}: {exc}")
        self.terminated = sorted(ids)
        if errors:
            raise LaunchError("could not clean up everything: " + "; ".join(errors)
                              + f". Run `cloudlab cleanup --run-id {self.cfg.run_id}`")
        self.spot_request_ids, self.instance_ids = [], []

    def __repr__(self) -> str:
        return (f"<Fleet {self.request.count} x {self.request.instance_type} "
                f"{self.request.market} instances={self.instance_ids}>")


def _wait_fulfilled(fleet: Fleet) -> list[str]:
    """Wait until every spot request has an instance; a request that fails gives up."""
    def fulfilled() -> list[str] | None:
        rows = fleet.requests()
        dead = rows[rows["state"].isin(["cancelled", "failed", "closed"])]
        if not dead.empty:
            raise GiveUp(f"spot request {dead.iloc[0]['request_id']} is {dead.iloc[0]['state']}"
                         f" ({dead.iloc[0]['status']})")
        done = rows["instance_id"].astype(bool)
        return list(rows["instance_id"]) if len(rows) and done.all() else None

    return wait_for(fulfilled, timeout=fleet.timeout,
                    what=f"spot requests {fleet.spot_request_ids} to be fulfilled")


def _tag(fleet: Fleet) -> None:
    """Copy the run-id tag onto instances a spot request launched (AWS does not)."""
    tags = [*aws.tags(fleet.cfg), {"Key": "Name", "Value": fleet.request.name}]
    fleet.ec2.create_tags(Resources=fleet.instance_ids, Tags=tags)


def launch(request: LaunchRequest, cfg: Settings | None = None,
           timeout: float | None = None) -> Fleet:
    """A :class:`Fleet` for ``request``; use it in a ``with`` block (which starts it)."""
    return Fleet(request, cfg, timeout)


def on_demand(request: LaunchRequest) -> LaunchRequest:
    """The same request on the on-demand market (no max price needed)."""
    return replace(request, market="on-demand")


def spot_price_history(instance_types: list[str], cfg: Settings | None = None,
                       max_results: int = 100) -> pd.DataFrame:
    """Recent spot prices from the API. ``attrs['placeholder']`` is True on moto.

    moto answers with a constant made-up price: use it to learn the call, not for
    economics (see :mod:`cloudlab.pricing` for real prices).
    """
    cfg = cfg or settings()
    rows = aws.client("ec2", cfg).describe_spot_price_history(
        InstanceTypes=list(instance_types), ProductDescriptions=["Linux/UNIX"],
        MaxResults=max_results)["SpotPriceHistory"]
    df = pd.DataFrame([[r["Timestamp"], r["AvailabilityZone"], r["InstanceType"],
                        float(r["SpotPrice"])] for r in rows],
                      columns=["time", "zone", "instance_type", "spot_price"])
    df.attrs["placeholder"] = cfg.aws_mode == "local"
    return df
