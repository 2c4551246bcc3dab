"""Browser tier: two students on the course hub, in headless Chromium.

Each student opens the hub's login page and logs in with their password (PAM), lands in
JupyterLab on their own server, opens Nbgrader > Assignment List, fetches the released
assignment and, once answered, submits it with the list's buttons. The instructor's side
(release, collect, autograde, feedback release) and the answering itself run from the
command line, as in the grading tier: typing a whole notebook in the browser adds minutes
and proves nothing the grading tier does not. Then each student fetches their feedback in
the Assignment List and opens it. Screenshots in ``runs/browser/``: the list before and
after submission, and the feedback page.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from cloudlab import hub, hubaccess
from cloudlab.proc import wait_for
from tests.browser.chromium import BINARY, Chromium
from tests.browser.lab import SHOTS
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "grading" / "fixtures"))

import hubkit

pytestmark = pytest.mark.skipif(BINARY is None,
                                reason="needs Chromium (apt-get install chromium)")
STUDENTS = {"ada": "correct", "bob": "partial"}
MENU = ("[...document.querySelectorAll('.lm-MenuBar-itemLabel')]"
        ".find(e => e.textContent.trim() === 'Nbgrader')")
OPENED = ("(() => { const m = document.querySelector('.lm-MenuBar-menu');"
          " return m && [...m.querySelectorAll('.lm-Menu-itemLabel')]"
          ".map(e => e.textContent.trim()); })()")


def _list(section: str) -> str:
    return (f"(() => {{ const l = document.querySelector('#{section}_assignments_list');"
            " return l ? l.innerText : ''; })()")


def _button(section: str, label: str) -> str:
    return (f"[...document.querySelectorAll('#{section}_assignments_list button')]"
            f".find(b => b.innerText.trim() === {label!r})")


@pytest.fixture(scope="module")
def course(grading_image, tmp_path_factory) -> Iterator[dict]:
    """The hub with the demo assignment released; a browser per student."""
    top = tmp_path_factory.mktemp("hub-browser")
    with hubkit.course_hub(top, list(STUDENTS)) as h:
        hubaccess.as_user(h, h.instructor, ["nbgrader", "release_assignment", "demo"],
                    cwd=h.course_dir)
        yield {"hub": h, "top": top}


@pytest.fixture(scope="module")
def grading_image(docker_engine, tmp_path_factory) -> str:
    from cloudlab.grading import Course, image

    c = Course(tmp_path_factory.mktemp("image-course"))
    return image.ensure(c, log=c.root / "build.log")


def _login(page: Chromium, h: hub.Hub, name: str, password: str) -> None:
    page.open(f"{h.url}/hub/login")
    page.wait_for("!!document.querySelector('#username_input')", "the hub's login page")
    page.evaluate(f"document.querySelector('#username_input').value = {name!r};"
                  f"document.querySelector('#password_input').value = {password!r};"
                  "document.querySelector('#login_submit').click(); true")
    page.wait_for(f"location.pathname.startsWith('/user/{name}/lab')"
                  " && !!document.querySelector('.lm-MenuBar-itemLabel')",
                  f"{name}'s JupyterLab after logging in", timeout=180)


def _assignment_list(page: Chromium) -> None:
    page.wait_for(f"!!({MENU})", "the Nbgrader menu in the menu bar", timeout=120)

    def open_menu() -> list[str] | None:
        page.click(MENU)
        return page.wait_for(OPENED, "the Nbgrader menu to open", timeout=5)

    menu = wait_for(open_menu, timeout=60, interval=1, what="the Nbgrader menu")
    assert "Assignment List" in menu and "Formgrader" not in menu, menu
    page.click("[...document.querySelectorAll('.lm-MenuBar-menu .lm-Menu-itemLabel')]"
               ".find(e => e.textContent.trim() === 'Assignment List')")


def test_two_students_fetch_submit_and_read_feedback_in_the_browser(course):
    h = course["hub"]
    passwords = h.passwords()
    for sid, kind in STUDENTS.items():
        name = h.prefix + sid
        with Chromium(course["top"] / f"chromium-{sid}") as page:
            _login(page, h, name, passwords[name])
            _assignment_list(page)
            page.wait_for(f"{_list('released')}.includes('demo')", "demo among the released")
            page.screenshot(SHOTS / f"hub-{sid}-assignments-released.png")
            page.click(_button("released", "Fetch"))
            page.wait_for(f"{_list('fetched')}.includes('demo')", "demo among the downloaded")
            # the answers, written as the student (their files, their server's API)
            session = hubaccess.Session(h.url, name, passwords[name])
            session.start_server()
            nb = session.server("GET", "/api/contents/demo/demo.ipynb").json()["content"]
            saved = session.server("PUT", "/api/contents/demo/demo.ipynb", json={
                "type": "notebook", "content": hubkit.answer(nb, kind)})
            assert saved.status_code == 200, saved.text
            page.click(_button("fetched", "Submit"))
            page.wait_for(f"{_list('submitted')}.includes('demo')", "demo among the submitted",
                          timeout=120)
            page.screenshot(SHOTS / f"hub-{sid}-assignments-submitted.png")
    hubkit.grade_and_release_feedback(h)
    results = {}
    for sid in STUDENTS:
        name = h.prefix + sid
        data = json.loads((h.course_dir / "course" / "results" / "demo" /
                           f"{name}.json").read_text())
        results[sid] = data["score"]
        with Chromium(course["top"] / f"chromium-{sid}-feedback") as page:
            _login(page, h, name, passwords[name])
            _assignment_list(page)
            page.wait_for(f"!!({_button('submitted', 'Fetch Feedback')})",
                          "the Fetch Feedback button",
                          timeout=120)
            page.click(_button("submitted", "Fetch Feedback"))
            link = ("[...document.querySelectorAll('#submitted_assignments_list a')]"
                    ".find(a => a.innerText.includes('view feedback'))")
            page.wait_for(f"!!({link})", "the view feedback link", timeout=120)
            page.click(link)  # the file browser goes to the fetched feedback folder
            page.wait_for("[...document.querySelectorAll('.jp-DirListing-itemText')]"
                          ".some(e => e.innerText.trim() === 'demo.html')",
                          "demo.html in the file browser", timeout=60)
            session = hubaccess.Session(h.url, name, passwords[name])
            session.start_server()
            [stamp] = [f["name"] for f in session.server(
                "GET", "/api/contents/demo/feedback").json()["content"]]
            page.open(f"{h.url}/user/{name}/files/demo/feedback/{stamp}/demo.html")
            page.wait_for("document.readyState === 'complete' && !!document.body &&"
                          " document.body.innerText.includes('demo')", "the feedback page")
            text = page.evaluate("document.body.innerText")
            page.screenshot(SHOTS / f"hub-{sid}-feedback.png")
            assert f"{results[sid]:g}" in text, text[:2000]
            assert "HIDDEN TESTS" not in text
    assert results == {"ada": 6, "bob": 3}
