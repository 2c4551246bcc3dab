"""Browser tier: JupyterLab serves the workbook and headless Chromium renders a notebook."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloudlab.proc import run
from tests.browser.lab import jupyterlab
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="needs Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[str]:
    """A JupyterLab server on the workbook, stopped after the module."""
    with jupyterlab(ROOT, tmp_path_factory.mktemp("lab-home")) as url:
        yield url


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


def test_lab_does_not_ask_about_jupyter_news(lab):
    """The shipped settings (binder/overrides.json, installed by setup and postBuild) answer
    JupyterLab's first-start question: no news feed, no update check, no prompt."""
    plugin = "@jupyterlab/apputils-extension:notification"
    got = requests.get(f"{lab}/lab/api/settings/{plugin}", timeout=10).json()
    defaults = {k: v.get("default") for k, v in got["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false", defaults  # JupyterLab's own default asks ("none")
    assert defaults["checkForUpdates"] is False
