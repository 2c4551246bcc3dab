"""Remove what the workbook created: everything carries the run-id label.

>>> removed = sweep()                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib

from . import aws, dr, engine, images, services, swarm
from .config import LABEL, Settings, settings
from .proc import wait_for


def sweep(run_id: str | None = None, cfg: Settings | None = None,
          stop_services: bool = True) -> dict[str, int]:
    """Remove labelled containers, services, networks, volumes, images, AWS resources, clusters.

    AWS resources (spot requests, instances, EFS file systems, S3 buckets, SQS queues,
    CloudWatch alarms) are swept in the current AWS mode (the moto server when it is up,
    real AWS with credentials); then the local services are stopped unless
    ``stop_services`` is False.

    With ``run_id`` only that run's leftovers go; without, every cloudlab-labelled thing.
    Either way, untagged images left by rebuilds of local builds are removed when they
    are older than ten minutes and no container uses them (:func:`images.sweep_dangling`).
    Returns counts per kind of resource removed.
    """
    cfg = cfg or settings()
    flt = {"label": f"{LABEL}={run_id}" if run_id else LABEL}
    counts = {"containers": 0, "services": 0, "networks": 0, "volumes": 0, "images": 0,
              "dangling_images": 0}
    if engine.version() is not None:
        from docker import errors as docker_errors

        api = engine.client(timeout=60)
        with contextlib.suppress(Exception):  # not a swarm manager: nothing to remove
            for svc in api.services.list(filters=flt):
                svc.remove()
                counts["services"] += 1
        if counts["services"]:  # their tasks' containers must go before their networks
            with contextlib.suppress(Exception):
                wait_for(lambda: not api.containers.list(
                    all=True, filters={"label": ["com.docker.swarm.task", flt["label"]]},
                    sparse=True),
                    timeout=60, what="the removed services' containers to stop")
        # sparse: no inspect per container, so one that goes away on its own between the
        # listing and its removal (--rm, another sweep) is no error (it was: NotFound)
        for c in api.containers.list(all=True, filters=flt, sparse=True):
            try:
                c.remove(force=True, v=True)
            except docker_errors.NotFound:
                continue
            counts["containers"] += 1
        for n in api.networks.list(filters=flt):
            # a stack's network keeps the endpoints of its removed tasks a moment longer
            # ("has active endpoints"): try again until it goes or 30 s have passed
            with contextlib.suppress(Exception):
                wait_for(lambda n=n: _removed(n), timeout=30, interval=0.5,
                         what=f"network {n.name} to be removable")
                counts["networks"] += 1
        for v in api.volumes.list(filters=flt):
            with contextlib.suppress(Exception):
                v.remove(force=True)
                counts["volumes"] += 1
        for image in api.images.list(filters=flt):  # images the run built, all their tags
            with contextlib.suppress(Exception):
                api.images.remove(image.id, force=True)
                counts["images"] += 1
        # what rebuilds under the same tag left untagged (local builds only, unused, old)
        counts["dangling_images"] = images.sweep_dangling(api=api)
        counts["swarm left"] = swarm.sweep(run_id, cfg)
    counts.update(aws.sweep(run_id, cfg))
    from . import k8s  # kwok/kind clusters named after the run id

    counts["clusters"] = k8s.sweep(run_id, cfg)
    if stop_services:
        services.down(cfg=cfg)
        dr.Downstream(cfg, port=0).stop()  # the reliability notebook's local downstream
    return counts


def _removed(network) -> bool:
    """Remove a Docker network; True once it is gone (a refusal now may pass later)."""
    from docker import errors as docker_errors

    try:
        network.remove()
    except docker_errors.NotFound:
        return True
    except docker_errors.APIError:
        return False
    return True
