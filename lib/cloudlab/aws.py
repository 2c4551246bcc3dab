"""boto3 clients for the configured AWS mode: the local moto server or real AWS.

In ``local`` mode every client points at the moto server on 127.0.0.1 with throwaway
credentials, so nothing can reach (or bill) a real account.

>>> s3 = client("s3")                        # doctest: +SKIP
>>> s3.create_bucket(Bucket="demo")["ResponseMetadata"]["HTTPStatusCode"]  # doctest: +SKIP
200
"""

from __future__ import annotations

from typing import Any

from .config import Settings, settings

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


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
