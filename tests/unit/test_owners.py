"""Grading owners: the start-of-run sweep removes only what a grader that has gone left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from cloudlab.grading import owners
from cloudlab.proc import identity


def test_a_live_grader_here_is_not_gone_and_a_dead_one_is():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        label, ident = owners.owner(child.pid), owners.identity_of(child.pid)
        assert (label, ident) == (f"{socket.gethostname()}:{child.pid}", identity(child.pid))
        assert not owners.gone(label, ident) and not owners.gone(label)
    finally:
        child.kill()
        child.wait()
    assert owners.gone(label, ident) and owners.gone(label)


def test_a_reused_pid_does_not_keep_a_dead_graders_things():
    # the label's process has gone and an unrelated process (this one) got its pid
    assert owners.gone(owners.owner(os.getpid()), "0a1b2c3d-1")


def test_another_hosts_grader_is_spared():
    assert not owners.gone("grader-elsewhere:1", "0a1b2c3d-1")
    assert not owners.gone("grader-elsewhere:1")  # an older grader's: no identity


def test_no_owner_means_nobody_else_will_remove_it():
    assert owners.gone("") and owners.gone(None) and owners.gone(f"{socket.gethostname()}:x")
