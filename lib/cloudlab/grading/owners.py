"""Who owns a grading container, image or folder, and whether that grader has gone.

A grader labels what it creates with its owner: ``<hostname>:<pid>:<identity>``, where the
identity (:func:`cloudlab.proc.identity`: boot id and start time) tells this process from
a later one that got the same pid. The start-of-run sweep removes only what a grader
that has gone left behind:

- ours (same host): gone when that pid no longer runs the process that made it;
- another host's (graders sharing one engine, or a grader in a container): never
  ours to judge, so spared; ``cloudlab cleanup`` removes them when asked to.

>>> me = owner()
>>> gone(me), gone(""), gone(me.rsplit(":", 1)[0] + ":0a1b2c3d-1")
(False, True, True)
>>> gone("elsewhere:1:0a1b2c3d-1")
False
"""

from __future__ import annotations

import os
import socket

from ..proc import alive, identity


def owner(pid: int | None = None) -> str:
    """The owner label of process ``pid`` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{identity(pid) or ''}"


def gone(label: str | None) -> bool:
    """Whether the grader named by owner ``label`` has gone (see the module's rules)."""
    host, _, rest = (label or "").partition(":")
    pid, _, recorded = rest.partition(":")
    if not host or not pid.isdigit():
        return True  # no owner: nobody will ever remove it
    if host != socket.gethostname():
        return False
    if not alive(int(pid)):
        return True
    return bool(recorded) and identity(int(pid)) != recorded  # "host:pid" labels: older
