"""Checks of the ``kubernetes`` exercise: the hello-world app as Deployment, Service and HPA.

The exercise (``solutions/kubernetes``) asks for three manifest files next to the
notebook - ``deployment.yaml``, ``service.yaml``, ``hpa.yaml`` - and for the HPA's replica
rule as a function, ``desired_replicas``; part B gives the app (``app.py`` with a
``serve`` command, ``requirements.txt``, a ``Dockerfile``).

One set of rules, the places that use them:

* :mod:`.rules` - the pure rules (the files' text in, a result dict out; no cluster);
* :mod:`.student_side` - :func:`setup`, and the visible checks ``cl.check("q1")`` ...
  ``cl.check("q3")`` run on the files next to the notebook;
* :mod:`.cluster` - the trusted side's cluster work: a clean, fenced namespace of the
  grading cluster's pool per submission, apply, watch (:func:`cluster_check`);
* :mod:`.hook` - the trusted side: the grader's pre-grade hook (:func:`manifest_side`):
  the static rules, then, on a grading cluster with a real node, the submitted
  Dockerfile built confined (as ``docker-hub``'s hook builds), loaded into the node and
  run in place of ``hello-cli:1.1``: Ready through the student's own probes, ``GET /``
  through the Service; on a kwok-only cluster, scheduled and Ready as kwok simulates.
  The points are decided by ``solutions/kubernetes/grader.py`` from those results.

>>> good = app_manifests()
>>> valid(good)["passed"], consistent(good)["passed"], cpu_requests(good)["passed"]
(True, True, True)
"""

from __future__ import annotations

from .cluster import (
    POOL_KINDS,
    TOKEN_SECONDS,
    cluster_check,
    drain_grading_pool,
    grading_cluster,
    grading_pool,
)
from .hook import finish_grading, manifest_side
from .rules import *  # noqa: F403 - the rules and constants are this package's API
from .rules import __all__ as _rules
from .student_side import q1_valid, q2_consistent, q3_replicas, setup

__all__ = [*_rules, "POOL_KINDS", "TOKEN_SECONDS", "cluster_check", "drain_grading_pool",
           "finish_grading", "grading_cluster", "grading_pool", "manifest_side", "q1_valid",
           "q2_consistent", "q3_replicas", "setup"]
