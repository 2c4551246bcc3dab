"""boto3 clients for the configured AWS mode: the local moto server or real AWS.

In ``local`` mode every client points at the moto server on 127.0.0.1 with throwaway
credentials, so nothing can reach (or bill) a real account. Everything the workbook
creates carries :func:`tags`, and :func:`sweep` removes what a run left behind (instances,
spot requests, EFS file systems, S3 buckets, SQS queues, CloudWatch alarms) in the
current mode.

>>> s3 = client("s3")                        # doctest: +SKIP
>>> s3.create_bucket(Bucket="demo")["ResponseMetadata"]["HTTPStatusCode"]  # doctest: +SKIP
200
>>> sweep(run_id="20250101-000000-abcd")     # doctest: +SKIP
{'spot_requests': 0, 'instances': 0, 'file_systems': 0, 'buckets': 0, 'queues': 0, 'alarms': 0}
"""

from __future__ import annotations

from typing import Any

import requests

from .config import LABEL, Settings, settings
from .proc import wait_for

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def client(service: str, cfg: Settings | None = None, **kwargs: Any):
    """A boto3 client for ``service`` in the current AWS mode."""
    import boto3

    cfg = cfg or settings()
    if cfg.aws_mode == "local":
        kwargs = {"endpoint_url": cfg.moto_url, **LOCAL_CREDENTIALS, **kwargs}
    return boto3.client(service, region_name=cfg.aws_region, **kwargs)


def tags(cfg: Settings | None = None) -> list[dict[str, str]]:
    """The run-id tag every AWS resource the workbook creates carries."""
    cfg = cfg or settings()
    return [{"Key": k, "Value": v} for k, v in cfg.labels().items()]


def tag_filters(run_id: str | None = None) -> list[dict[str, Any]]:
    """EC2 ``Filters`` matching one run's resources (or every cloudlab-tagged one)."""
    if run_id:
        return [{"Name": f"tag:{LABEL}", "Values": [run_id]}]
    return [{"Name": "tag-key", "Values": [LABEL]}]


def reachable(cfg: Settings | None = None) -> tuple[bool, str]:
    """Whether the current AWS mode can be called, and why not."""
    cfg = cfg or settings()
    if cfg.aws_mode == "local":
        try:
            requests.get(cfg.moto_url + "/moto-api/", timeout=2).raise_for_status()
            return True, f"moto server at {cfg.moto_url}"
        except requests.RequestException:
            return False, (f"no moto server answers at {cfg.moto_url}; start it with "
                           "`cloudlab services up moto` or `cl.services.moto().start()`")
    import boto3

    if boto3.session.Session().get_credentials() is None:
        return False, ("CLOUDLAB_AWS_MODE=aws but no AWS credentials are configured "
                       "(aws configure, or AWS_PROFILE)")
    return True, f"real AWS in {cfg.aws_region}"


def sweep(run_id: str | None = None, cfg: Settings | None = None) -> dict[str, int]:
    """Cancel tagged spot requests, terminate tagged instances, delete tagged EFS file
    systems, S3 buckets (every version first), SQS queues and CloudWatch alarms.

    Instances a spot request launched are found through the request too (AWS does not
    copy a request's tags onto its instances). Nothing happens when the current mode
    cannot be reached (no moto server, no credentials).
    """
    cfg = cfg or settings()
    counts = {"spot_requests": 0, "instances": 0, "file_systems": 0, "buckets": 0,
              "queues": 0, "alarms": 0}
    if not reachable(cfg)[0]:
        return counts
    ec2 = client("ec2", cfg)
    flt = tag_filters(run_id)
    reqs = ec2.describe_spot_instance_requests(
        Filters=[*flt, {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]
    doomed = {r["InstanceId"] for r in reqs if r.get("InstanceId")}
    if reqs:
        ec2.cancel_spot_instance_requests(
            SpotInstanceRequestIds=[r["SpotInstanceRequestId"] for r in reqs])
        counts["spot_requests"] = len(reqs)
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[*flt, {"Name": "instance-state-name", "Values": LIVE_STATES}])
    doomed |= {i["InstanceId"] for page in pages for res in page["Reservations"]
               for i in res["Instances"]}
    if doomed:
        live = [i["InstanceId"] for res in ec2.describe_instances(InstanceIds=sorted(doomed))[
            "Reservations"] for i in res["Instances"] if i["State"]["Name"] in LIVE_STATES]
        if live:
            ec2.terminate_instances(InstanceIds=live)
        counts["instances"] = len(live)
    efs = client("efs", cfg)
    for fs in efs.describe_file_systems()["FileSystems"]:
        found = {t["Key"]: t["Value"] for t in fs.get("Tags", [])}
        if LABEL in found and (run_id is None or found[LABEL] == run_id):
            delete_file_system(fs["FileSystemId"], cfg)
            counts["file_systems"] += 1
    counts["buckets"] = _sweep_buckets(run_id, cfg)
    counts["queues"] = _sweep_queues(run_id, cfg)
    counts["alarms"] = _sweep_alarms(run_id, cfg)
    return counts


def _ours(found: dict[str, str], run_id: str | None) -> bool:
    return LABEL in found and (run_id is None or found[LABEL] == run_id)


def _sweep_buckets(run_id: str | None, cfg: Settings) -> int:
    from botocore.exceptions import ClientError

    s3, n = client("s3", cfg), 0
    for bucket in s3.list_buckets().get("Buckets", []):
        try:  # a bucket without tags (or not ours to read) answers with an error
            tags = s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
        except ClientError:
            continue
        if _ours({t["Key"]: t["Value"] for t in tags}, run_id):
            delete_bucket(bucket["Name"], cfg)
            n += 1
    return n


def _sweep_queues(run_id: str | None, cfg: Settings) -> int:
    sqs, n = client("sqs", cfg), 0
    for url in sqs.list_queues().get("QueueUrls", []):
        if _ours(sqs.list_queue_tags(QueueUrl=url).get("Tags", {}), run_id):
            sqs.delete_queue(QueueUrl=url)
            n += 1
    return n


def _sweep_alarms(run_id: str | None, cfg: Settings) -> int:
    cw = client("cloudwatch", cfg)
    doomed = []
    for page in cw.get_paginator("describe_alarms").paginate():
        for alarm in page.get("MetricAlarms", []):
            tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
            if _ours({t["Key"]: t["Value"] for t in tags}, run_id):
                doomed.append(alarm["AlarmName"])
    for i in range(0, len(doomed), 100):  # the API takes at most 100 names a call
        cw.delete_alarms(AlarmNames=doomed[i:i + 100])
    return len(doomed)


def delete_bucket(name: str, cfg: Settings | None = None) -> None:
    """Delete an S3 bucket: every object version and delete marker first (S3 insists)."""
    from botocore.exceptions import ClientError

    s3 = client("s3", cfg)
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(doomed), 1000):
                s3.delete_objects(Bucket=name, Delete={"Objects": doomed[i:i + 1000],
                                                       "Quiet": True})
        s3.delete_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


def delete_file_system(fs_id: str, cfg: Settings | None = None, timeout: float = 300) -> None:
    """Delete an EFS file system: its mount targets first (AWS refuses otherwise)."""
    efs = client("efs", cfg)
    for mt in efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]:
        efs.delete_mount_target(MountTargetId=mt["MountTargetId"])
    wait_for(lambda: not efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"],
             timeout=timeout, what=f"the mount targets of {fs_id} to go")
    efs.delete_file_system(FileSystemId=fs_id)
