"""Build and run containers on the Docker Engine, with readable progress and real limits.

Two halves: :mod:`~cloudlab.docker.building` (Dockerfile parsing, the classic builder and
BuildKit) and :mod:`~cloudlab.docker.running` (containers with ports, volumes, limits,
logs). Notebooks keep calling ``cl.docker.build``, ``cl.docker.run`` and friends: they are
re-exported here.

(This package is ``cloudlab.docker``; inside it, ``import docker`` is an absolute import
and loads the Docker SDK, not this package.)

>>> with run("python:3.11-slim", ["python", "-c", "print('hi')"]) as box:  # doctest: +SKIP
...     box.wait()
...     box.logs()
0
'hi\\n'
"""

from __future__ import annotations

import docker  # the SDK (tests check that this package does not shadow it)

from .. import engine
from ..errors import CloudlabError
from .building import (
                       BOOTSTRAP_HINT,
                       INSTRUCTIONS,
                       Build,
                       BuildError,
                       Instruction,
                       Step,
                       base_images,
                       build,
                       build_buildkit,
                       buildkit,
                       instructions,
)
from .running import (
                       DEFAULT_LOG_OPTS,
                       GPU_HINT,
                       Container,
                       containers,
                       gpu_available,
                       gpu_request,
                       run,
                       run_once,
                       volume,
)

__all__ = ["BOOTSTRAP_HINT", "DEFAULT_LOG_OPTS", "GPU_HINT", "INSTRUCTIONS", "Build",
           "BuildError", "CloudlabError", "Container", "Instruction", "Step", "base_images",
           "build", "build_buildkit", "buildkit", "containers", "docker", "engine",
           "gpu_available", "gpu_request", "instructions", "run", "run_once", "volume"]
