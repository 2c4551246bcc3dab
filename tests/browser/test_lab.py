"""Browser tier: JupyterLab serves the workbook and headless Chromium renders a notebook."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloudlab.proc import run, wait_for
from tests.conftest import ROOT, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="needs Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 (no token), stopped after the module."""
    port = free_port()
    home = tmp_path_factory.mktemp("lab-home")
    log = home / "lab.log"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
             "--IdentityProvider.token=", "--ServerApp.password=",
             f"--ServerApp.root_dir={ROOT}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/api/status", timeout=2).ok,
                 timeout=60, what="JupyterLab", log=log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after Chromium ran its scripts (headless, no network but loopback)."""
    return run([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
        "--dump-dom", url,
    ], timeout=120).stdout


def test_lab_lists_the_chapter_notebooks(lab):
    listing = requests.get(f"{lab}/api/contents/notebooks", timeout=10).json()
    names = {item["name"] for item in listing["content"]}
    assert "00-getting-started.ipynb" in names


def test_getting_started_renders_in_the_browser(lab, tmp_path):
    dom = _render(f"{lab}/lab/tree/notebooks/00-getting-started.ipynb", tmp_path / "profile")
    assert "jp-Notebook" in dom, "JupyterLab did not render a notebook panel"
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))
    assert "Getting started" in text
    assert "import cloudlab as cl" in text.replace(" . ", ".")
