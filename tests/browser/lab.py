"""Browser tier: a JupyterLab server for the tests to drive, and where screenshots go."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

from cloudlab.proc import wait_for
from tests.conftest import ROOT, free_port

SHOTS = ROOT / "runs" / "browser"  # screenshots, kept as test artefacts (gitignored)


@contextlib.contextmanager
def jupyterlab(root_dir: Path, home: Path, env: Mapping[str, str] | None = None,
               args: tuple[str, ...] = ()) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 (no token) serving ``root_dir``; its URL."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "lab.log"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
             "--IdentityProvider.token=", "--ServerApp.password=",
             f"--ServerApp.root_dir={root_dir}", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=root_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/api/status", timeout=2).ok,
                 timeout=90, what="JupyterLab", log=log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
