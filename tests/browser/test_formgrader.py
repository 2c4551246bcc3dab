"""Browser tier: the instructor opens a hostile submission in formgrader's Manual Grading.

The submission is graded for real (sandboxed autograde): its own cells put scripts
everywhere a notebook can carry them - a markdown answer's ``<img onerror>``, a
``javascript:`` link, an iframe, ``display(Javascript(...))``, an HTML output with a
``<script>``, a widget view and widget state. Each payload, if it ran, would rename the page
and leave its name in ``window.pwned``. Headless Chromium loads the Manual Grading page
(with formgrader's own scripts) and the test proves that none of them ran, and that the
harmless parts of the answer are still shown. A screenshot is kept in ``runs/browser/``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator

import pytest

from cloudlab.grading import Course, autograde, image
from tests.browser.chromium import BINARY, Chromium
from tests.browser.lab import SHOTS, jupyterlab
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "grading" / "fixtures"))

import submissions as S
from gradingkit import make_course

pytestmark = pytest.mark.skipif(BINARY is None,
                                reason="needs Chromium (apt-get install chromium)")
STUDENT = "mallory"
# what the page looks like once formgrader's scripts have run and every image has loaded
# or failed (an onerror handler would have fired by then)
SETTLED = ("document.readyState === 'complete' && !!window.jQuery"
           " && document.querySelectorAll('.nbgrader_cell').length > 0")


@pytest.fixture(scope="module")
def manual_grading(docker_engine, tmp_path_factory) -> Iterator[str]:
    """A course with the hostile submission autograded; formgrader on it; the page URL."""
    from nbgrader.api import Gradebook

    root = tmp_path_factory.mktemp("formgrader")
    course: Course = make_course(root / "course-root")
    root = course.root
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    S.make(root, STUDENT, "xss")
    tag = image.ensure(course, log=root / "grading-image.log")
    [result] = autograde.autograde(course, "demo", students=[STUDENT], workers=1, timeout=60,
                                   progress=False, image=tag)
    assert (result.status, result.score) == ("graded", 6), result.reason
    with Gradebook(course.db_url) as gb:
        notebook_id = gb.find_submission_notebook("demo", "demo", STUDENT).id
    with jupyterlab(root, root.parent / "lab-home") as url:
        yield f"{url}/formgrader/submissions/{notebook_id}/"


def test_a_hostile_submission_runs_no_script_in_manual_grading(manual_grading, tmp_path):
    with Chromium(tmp_path / "profile") as page:
        page.open(manual_grading)
        page.wait_for(SETTLED, "formgrader's Manual Grading page", timeout=120)
        page.evaluate("new Promise(r => setTimeout(() => r(true), 1500))")  # late handlers
        page.screenshot(SHOTS / "formgrader-hostile-submission.png")
        seen = page.evaluate("""(() => {
            const notebook = document.querySelector('#notebook-container');
            const active = [...notebook.querySelectorAll('*')].flatMap(e => [
                ...(['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'svg'].includes(e.tagName)
                    ? [e.tagName] : []),
                ...[...e.attributes].filter(a => a.name.startsWith('on')
                    || /^\\s*javascript:/i.test(a.value)).map(a => e.tagName + ' ' + a.name)]);
            return {title: document.title, pwned: window.pwned || [], active,
                    text: notebook.innerText};
        })()""")
    assert seen["pwned"] == [] and seen["title"] == "demo", \
        f"student script ran in the instructor's page: {json.dumps(seen['pwned'])}"
    assert seen["active"] == [], seen["active"]
    text = seen["text"]
    assert "SAFE-MARKER" in text and "HTML-MARKER" in text and "XSS-CELL-RAN" in text, \
        "the harmless parts of the answer are shown"
    assert "a widget" in text, "a widget's text stands in for its view"
