"""Who owns a grading container, image or folder, and whether that grader has gone.

A grader labels what it creates with its owner, ``<hostname>:<pid>``, and, in a label of
its own, that process's identity (:func:`cloudlab.proc.identity`: boot id and start
time), which tells it from a later process that got the same pid. (Two labels, not one:
graders of an older version share the engine and read ``<hostname>:<pid>`` only.) The
start-of-run sweep removes only what a grader that has gone left behind:

- ours (same host): gone when that pid no longer runs, or runs another process;
- another host's (graders sharing one engine, or a grader in a container): never ours
  to judge, so spared; ``cloudlab cleanup`` removes them when asked to.

>>> gone(owner(), identity_of()), gone(""), gone(owner(), "0a1b2c3d-1")
(False, True, True)
>>> gone("elsewhere:1", "0a1b2c3d-1")
False
"""

from __future__ import annotations

import os
import socket

from ..proc import alive, identity


def owner(pid: int | None = None) -> str:
    """The owner label of process ``pid`` (default: this one): ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def identity_of(pid: int | None = None) -> str:
    """The identity label of process ``pid`` (default: this one); empty if unknown."""
    return identity(os.getpid() if pid is None else pid) or ""


def gone(label: str | None, ident: str | None = "") -> bool:
    """Whether the grader with owner ``label`` (and identity ``ident``, when recorded)
    has gone; see the module's rules."""
    host, _, pid = (label or "").partition(":")
    if not host or not pid.isdigit():
        return True  # no owner: nobody else will ever remove it
    if host != socket.gethostname():
        return False
    if not alive(int(pid)):
        return True
    return bool(ident) and identity(int(pid)) != ident
