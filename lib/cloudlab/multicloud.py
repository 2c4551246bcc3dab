"""The same spot request on Google Cloud and Azure, as the real CLI commands.

The workbook has no GCP or Azure stand-in, so these commands are generated, shown and
checked for shape, but **never executed here**. They come from the same
:class:`cloudlab.ec2.LaunchRequest` as the EC2 launch: the instance type's vCPUs and
memory pick the closest machine size on the other cloud.

>>> from cloudlab.ec2 import LaunchRequest
>>> req = LaunchRequest("c4.large", count=2, max_price=0.05)
>>> print(gcloud(req, run_id="r1").text)             # doctest: +NORMALIZE_WHITESPACE
gcloud compute instances create cloudlab-1 cloudlab-2 --zone=us-central1-a
  --machine-type=n2-highcpu-2 --provisioning-model=SPOT --instance-termination-action=DELETE
  --image-family=debian-12 --image-project=debian-cloud --labels=cloudlab-run-id=r1
>>> az(req, run_id="r1").argv[:3]
['az', 'vm', 'create']
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .ec2 import LaunchRequest

NOT_EXECUTED = "NOT EXECUTED HERE: run it yourself with the cloud's CLI, logged in, if you mean it"
GCP_SIZES = (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)
AZURE_SIZES = (2, 4, 8, 16, 32, 48, 64, 96)


@dataclass(frozen=True)
class Command:
    """A cloud CLI command: ``argv`` for a program, ``text`` for a person to read."""

    cloud: str
    argv: list[str]
    note: str = ""

    @property
    def text(self) -> str:
        parts = [shlex.quote(a) for a in self.argv]
        lines, line = [], ""
        for p in parts:
            if line and len(line) + len(p) > 88:
                lines.append(line)
                line = "  "
            line += ("" if line.strip() == "" else " ") + p
        return "\n".join([*lines, line])

    def __str__(self) -> str:
        return f"# {self.cloud}: {NOT_EXECUTED}\n" + (f"# {self.note}\n" if self.note else "") \
            + self.text.replace("\n", " \\\n")


def _shape(req: LaunchRequest) -> tuple[int, float]:
    """vCPUs and GiB of the request's instance type (known shapes, price table, the API)."""
    from . import pricing
    from .ec2 import SHAPES, instance_type_info

    if req.instance_type in SHAPES:
        return SHAPES[req.instance_type]
    try:
        row = pricing.lookup(req.instance_type)
        return int(row["vcpu"]), float(row["memory_gb"])
    except pricing.PriceError:
        info = instance_type_info(req.instance_type)  # ask the API about anything else
        return int(info["vcpus"]), float(info["memory_gib"])


def _round_up(vcpus: int, sizes: tuple[int, ...]) -> int:
    return next((s for s in sizes if s >= vcpus), sizes[-1])


def _family(vcpus: int, gib: float) -> str:
    ratio = gib / max(vcpus, 1)
    return "highcpu" if ratio <= 2 else ("standard" if ratio <= 5 else "highmem")


def gcp_machine_type(req: LaunchRequest) -> str:
    vcpus, gib = _shape(req)
    return f"n2-{_family(vcpus, gib)}-{_round_up(vcpus, GCP_SIZES)}"


def azure_size(req: LaunchRequest) -> str:
    vcpus, gib = _shape(req)
    n = _round_up(vcpus, AZURE_SIZES)
    return {"highcpu": f"Standard_F{n}s_v2", "standard": f"Standard_D{n}s_v5",
            "highmem": f"Standard_E{n}s_v5"}[_family(vcpus, gib)]


def gcloud(req: LaunchRequest, run_id: str | None = None, zone: str = "us-central1-a",
           ) -> Command:
    """``gcloud compute instances create`` for ``req`` (Spot VMs when the market is spot)."""
    from .config import settings

    req.check()
    run_id = run_id or settings().run_id
    names = [f"{req.name}-{i}" for i in range(1, req.count + 1)]
    argv = ["gcloud", "compute", "instances", "create", *names, f"--zone={zone}",
            f"--machine-type={gcp_machine_type(req)}"]
    note = ""
    if req.is_spot:
        argv += ["--provisioning-model=SPOT", "--instance-termination-action=DELETE"]
        note = ("GCP Spot VMs have no bid: the price is set by Google; "
                f"your max price ${req.max_price}/h is checked by you, not by GCP")
    argv += ["--image-family=debian-12", "--image-project=debian-cloud",
             f"--labels=cloudlab-run-id={_gcp_label(run_id)}"]
    return Command("Google Cloud", argv, note)


def _gcp_label(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())[:63]


def az(req: LaunchRequest, run_id: str | None = None, resource_group: str = "cloudlab-rg",
       ) -> Command:
    """``az vm create`` for ``req`` (Spot priority with a max price when the market is spot)."""
    from .config import settings

    req.check()
    run_id = run_id or settings().run_id
    argv = ["az", "vm", "create", "--resource-group", resource_group, "--name", req.name,
            "--image", "Debian:debian-12:12:latest", "--size", azure_size(req)]
    if req.count > 1:
        argv += ["--count", str(req.count)]
    if req.is_spot:
        argv += ["--priority", "Spot", "--max-price", f"{req.max_price:g}",
                 "--eviction-policy", "Delete"]
    argv += ["--tags", f"cloudlab-run-id={run_id}"]
    return Command("Azure", argv, "--max-price -1 would mean: up to the pay-as-you-go price"
                   if req.is_spot else "")
