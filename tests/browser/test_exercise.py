"""Browser tier: a student opens the docker-hub exercise in JupyterLab, as Binder serves it.

The instructor releases the exercise into an nbgrader exchange, the student fetches it,
opens it in JupyterLab (headless Chromium), runs its setup and a self-check cell, then
opens the Nbgrader menu and the assignment list. No Docker for the student (as on
Binder): the setup says so and the self-check still answers. Screenshots of each step
are kept in ``runs/browser/`` (gitignored; the paths are printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudlab.proc import run, wait_for
from tests.browser.chromium import BINARY, Chromium
from tests.browser.lab import SHOTS, jupyterlab
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(BINARY is None,
                                reason="needs Chromium (apt-get install chromium)")
COURSE, ASSIGNMENT = "cloudlab", "docker-hub"
NBGRADER = str(Path(sys.executable).with_name("nbgrader"))
PATH = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
# The exercise's notebook panel in Lab's main area (found by path, so focus does not matter).
PANEL = (f"[...window.jupyterapp.shell.widgets('main')]"
         f".find(w => w.context && w.context.path === {PATH!r})")


def _cells(assignment: Path) -> dict[str, int]:
    """Each nbgrader cell's grade id and its index in the notebook."""
    nb = json.loads((assignment / f"{ASSIGNMENT}.ipynb").read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: i for i, c in enumerate(nb["cells"])
            if "nbgrader" in c.get("metadata", {})}


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Iterator[dict]:
    """The exercise released to an exchange and fetched by a student; Lab on their folder."""
    top = tmp_path_factory.mktemp("exercise")
    exchange, course, home = top / "exchange", top / "course", top / "student"
    (course / "exercises").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(ROOT / "exercises" / ASSIGNMENT), str(course / "exercises")],
                   check=True)
    (course / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    flags = [f"--Exchange.root={exchange}", f"--CourseDirectory.course_id={COURSE}"]
    run([NBGRADER, "release_assignment", ASSIGNMENT, *flags], cwd=course, timeout=300)
    home.mkdir()
    run([NBGRADER, "fetch_assignment", ASSIGNMENT, *flags], cwd=home, timeout=300)

    config = home / ".lab" / "config"
    config.mkdir(parents=True)
    (config / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\n"
        f"c.CourseDirectory.course_id = {COURSE!r}\n")
    env = {"CLOUDLAB_DOCKER": "off",  # the student side of Binder: no engine
           "CLOUDLAB_REGISTRY_PORT": str(free_port()), "CLOUDLAB_MOTO_PORT": str(free_port())}
    with jupyterlab(home, home / ".lab", env, ("--LabApp.expose_app_in_browser=True",)) as url:
        yield {"url": url, "home": home, "cells": _cells(home / ASSIGNMENT)}


@pytest.fixture
def page(student, tmp_path) -> Iterator[Chromium]:
    with Chromium(tmp_path / "profile") as browser:
        browser.open(f"{student['url']}/lab")
        browser.wait_for("window.jupyterapp && window.jupyterapp.started && "
                         "document.querySelector('#jp-main-dock-panel') !== null",
                         "JupyterLab to start in the browser", timeout=180)
        browser.evaluate("window.jupyterapp.restored.then(() => true)")
        yield browser


def _run_cell(page: Chromium, index: int) -> str:
    """Select cell ``index`` of the open notebook, run it, wait; the text of its outputs."""
    page.evaluate(f"""(async () => {{
        const panel = {PANEL};
        await panel.sessionContext.ready;
        window.jupyterapp.shell.activateById(panel.id);
        panel.content.activeCellIndex = {index};
        await window.jupyterapp.commands.execute('notebook:run-cell');
        return true;
    }})()""")
    cell = f"{PANEL}.content.widgets[{index}]"
    page.wait_for(f"{cell}.model.executionCount !== null && "
                  f"{cell}.node.querySelector('.jp-OutputArea-output') !== null",
                  f"cell {index} to finish", timeout=120)
    return page.evaluate(f"{cell}.node.querySelector('.jp-OutputArea').innerText")


def test_student_opens_the_exercise_and_runs_a_self_check(student, page):
    page.command("docmanager:open", path=PATH)
    page.wait_for(f"document.querySelector('.jp-Notebook .jp-Cell') !== null && "
                  f"{PANEL}.sessionContext.session !== null",
                  "the exercise to open with a kernel", timeout=90)
    title = page.evaluate("document.querySelector('.jp-Notebook .jp-MarkdownCell').innerText")
    assert "Graded exercise" in title
    page.screenshot(SHOTS / "exercise-opened.png")

    setup = _run_cell(page, student["cells"]["setup"])
    assert "Error" not in setup, f"the setup cell failed in the browser:\n{setup}"
    check = _run_cell(page, student["cells"]["q1_lint"])
    page.screenshot(SHOTS / "exercise-self-check.png")
    # Nothing written yet: the self-check names what is missing and how to fix it.
    assert "q1" in check and "missing" in check, check
    assert "hint" in check, f"the self-check gave no hint:\n{check}"


def test_nbgrader_menu_and_assignment_list(page):
    label = ("[...document.querySelectorAll('.lm-MenuBar-itemLabel')]"
             ".find(e => e.textContent.trim() === 'Nbgrader')")
    opened = ("(() => { const m = document.querySelector('.lm-MenuBar-menu');"
              " return m && [...m.querySelectorAll('.lm-Menu-itemLabel')]"
              ".map(e => e.textContent.trim()); })()")
    page.wait_for(f"!!({label})", "the Nbgrader menu in the menu bar")

    def click_menu() -> list[str] | None:
        page.click(label)
        return page.wait_for(opened, "the Nbgrader menu to open", timeout=5)

    menu = wait_for(click_menu, timeout=60, interval=1, what="the Nbgrader menu to open")
    page.screenshot(SHOTS / "nbgrader-menu.png")
    assert "Assignment List" in menu, menu

    page.click("[...document.querySelectorAll('.lm-MenuBar-menu .lm-Menu-itemLabel')]"
               ".find(e => e.textContent.trim() === 'Assignment List')")
    # The student fetched it already, so it is listed under "Downloaded assignments".
    fetched = page.wait_for(
        "(() => { const l = document.querySelector('#fetched_assignments_list');"
        f" return l && l.innerText.includes({ASSIGNMENT!r}) ? l.innerText : null; }})()",
        f"{ASSIGNMENT} in the assignment list", timeout=120)
    page.screenshot(SHOTS / "assignment-list.png")
    assert COURSE in fetched, fetched
    assert "Submit" in fetched, f"no Submit button for the downloaded assignment:\n{fetched}"
