"""The course hub for real: JupyterHub, PAM logins, nbgrader's exchange, two students.

One hub for the module (``cloudlab.hub.Hub``, accounts prefixed with this run's id, the
machine lock ``hub`` held: Unix accounts are global to the machine). The instructor
releases the fixture assignment ``demo``; two students log in through the hub's login
page with their passwords, fetch and submit through nbgrader's Assignment List handlers
on their own servers; the instructor collects; ``cloudlab grade autograde`` grades in the
sandbox with the trusted graders; feedback is written, released and fetched. The scores
must equal those of the same notebooks collected from a folder. Then isolation: run as
each student, nothing of another student, the instructor's course or the secrets is
readable, and the formgrader answers the instructor only.
"""

from __future__ import annotations

import json
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import hubkit
import pytest
import requests
from gradingkit import make_course

from cloudlab import cli, config, hub, hubaccess
from cloudlab.grading import Course
from cloudlab.grading.results import Result
from cloudlab.hubexchange import readers

COURSE_ID = "demo101"
ANSWERS = {"ada": "correct", "bob": "partial"}  # 6 of 6, 3 of 6


@pytest.fixture(scope="module")
def course_hub(tmp_path_factory) -> Iterator[hub.Hub]:
    """A hub for the fixture course, with ada and bob; down (and checked gone) at the end."""
    with hubkit.course_hub(tmp_path_factory.mktemp("hub"), list(ANSWERS)) as h:
        yield h


@pytest.fixture(scope="module")
def loop(course_hub: hub.Hub, grading_image, tmp_path_factory) -> dict:
    """The whole course loop once; what each step returned, for the tests below."""
    h = course_hub
    out: dict = {"hub": h}
    released = hubaccess.as_user(h, h.instructor, ["nbgrader", "release_assignment", "demo"],
                           cwd=h.course_dir)
    out["released"] = released.stderr
    passwords = h.passwords()
    sessions = {}
    for sid, kind in ANSWERS.items():
        name = h.prefix + sid
        s = hubaccess.Session(h.url, name, passwords[name])
        s.start_server()
        sessions[sid] = s
        listed = s.server("GET", "/assignments", params={"course_id": COURSE_ID}).json()
        out.setdefault("listed", {})[sid] = listed
        fetched = s.server("POST", "/assignments/fetch",
                           data={"assignment_id": "demo", "course_id": COURSE_ID}).json()
        out.setdefault("fetched", {})[sid] = fetched
        nb = s.server("GET", "/api/contents/demo/demo.ipynb").json()["content"]
        saved = s.server("PUT", "/api/contents/demo/demo.ipynb",
                         json={"type": "notebook", "content": hubkit.answer(nb, kind)})
        assert saved.status_code == 200, saved.text
        submitted = s.server("POST", "/assignments/submit",
                             data={"assignment_id": "demo", "course_id": COURSE_ID}).json()
        out.setdefault("submitted", {})[sid] = submitted
    out["sessions"] = sessions
    hubkit.grade_and_release_feedback(h)
    for sid, s in sessions.items():
        got = s.server("POST", "/assignments/fetch_feedback",
                       data={"assignment_id": "demo", "course_id": COURSE_ID}).json()
        out.setdefault("feedback_listed", {})[sid] = got
    # the same notebooks, collected from a folder into a course of their own, graded alike
    ref_root = tmp_path_factory.mktemp("reference")
    ref = make_course(ref_root / "course")
    folder = ref_root / "from-folder"
    for sid in ANSWERS:
        src = h.course_dir / "course" / "submitted" / (h.prefix + sid) / "demo" / "demo.ipynb"
        (folder / sid / "demo").mkdir(parents=True)
        shutil.copy(src, folder / sid / "demo" / "demo.ipynb")
    assert cli.main(["grade", "--course", str(ref.root), "collect", str(folder)]) == 0
    assert cli.main(["grade", "--course", str(ref.root), "autograde", "demo", "--quiet",
                     "--workers", "2"]) == 0
    out["reference"] = {sid: Result.load(ref.result_file(sid, "demo")) for sid in ANSWERS}
    out["hub_results"] = {sid: Result.load(Course(h.course_dir).result_file(h.prefix + sid,
                                                                           "demo"))
                          for sid in ANSWERS}
    return out


def test_students_fetch_and_submit_through_the_assignment_list(loop):
    for sid in ANSWERS:
        listed = loop["listed"][sid]["value"]
        assert [(a["assignment_id"], a["status"]) for a in listed] == [("demo", "released")]
        fetched = loop["fetched"][sid]["value"]
        assert ("demo", "fetched") in [(a["assignment_id"], a["status"]) for a in fetched]
        submitted = loop["submitted"][sid]
        assert submitted["success"], submitted
        assert any(a["status"] == "submitted" for a in submitted["value"]), submitted


def test_hub_scores_equal_grading_the_same_notebooks_from_a_folder(loop):
    for sid in ANSWERS:
        mine, ref = loop["hub_results"][sid], loop["reference"][sid]
        assert mine.status == ref.status == "graded", (mine.reason, ref.reason)
        assert (mine.score, mine.max_score) == (ref.score, ref.max_score)
        assert [(t.name, t.score) for t in mine.tests] == [(t.name, t.score) for t in ref.tests]
    assert loop["hub_results"]["ada"].score == 6 and loop["hub_results"]["bob"].score == 3


def test_students_fetch_their_feedback_and_see_their_score(loop):
    h = loop["hub"]
    for sid, s in loop["sessions"].items():
        listed = loop["feedback_listed"][sid]["value"]
        [demo] = [a for a in listed if a["assignment_id"] == "demo"
                  and a["status"] == "submitted"]
        [submission] = demo["submissions"]
        assert submission["has_local_feedback"] and not submission["feedback_updated"], demo
        folder = s.server("GET", "/api/contents/demo/feedback").json()["content"]
        [stamp] = [f["name"] for f in folder]
        page = s.server("GET", f"/api/contents/demo/feedback/{stamp}/demo.html").json()
        html = page["content"]
        score = loop["hub_results"][sid].score
        assert f"{score:g}" in html and "demo" in html
        assert "HIDDEN" not in html and "trusted(" not in html
    assert h.students() == sorted(h.prefix + s for s in ANSWERS)


def test_a_student_reads_nothing_of_another_or_of_the_course(loop):
    h = loop["hub"]
    course = h.course
    breaches = hubaccess.isolation(h, [course.state / "registry" / "credentials.json",
                                 course.source / "demo" / "grader.py", course.gradebook])
    assert breaches == []
    # the check sees real files: each student reads their own submission and feedback
    inbound = h.exchange / COURSE_ID / "inbound"
    feedback = sorted((h.exchange / COURSE_ID / "feedback").glob("*.html"))
    assert len(feedback) == 2
    for sid in ANSWERS:
        name = h.prefix + sid
        own = [p for p in inbound.rglob("*.ipynb") if p.stat().st_uid == h.state.users[name]]
        assert own and hubaccess.readable_by(name, own) == [str(own[0])]
        mine = [p for p in feedback if h.state.users[name] in readers(p)]
        assert len(mine) == 1 and hubaccess.readable_by(name, mine) == [str(mine[0])]


def test_loosening_one_permission_breaks_isolation(loop):
    h = loop["hub"]
    inbound = h.exchange / COURSE_ID / "inbound"
    ada = h.state.users[h.prefix + "ada"]
    [submission] = [p for p in inbound.iterdir() if p.stat().st_uid == ada]
    saved = {p: p.stat().st_mode for p in [submission, *submission.rglob("*")]}
    try:
        for p in saved:
            p.chmod(p.stat().st_mode | (0o005 if p.is_dir() else 0o004))  # chmod -R o+rX
        breaches = hubaccess.isolation(h)
        assert breaches and all(b.startswith(f"{h.prefix}bob can read {submission}")
                                for b in breaches), breaches
    finally:
        for p, mode in saved.items():
            p.chmod(mode)
    assert hubaccess.isolation(h) == []


def test_only_the_instructor_reaches_the_formgrader(loop):
    h = loop["hub"]
    passwords = h.passwords()
    teacher = hubaccess.Session(h.url, h.instructor, passwords[h.instructor])
    teacher.start_server()
    api = f"{h.url}/services/{COURSE_ID}/formgrader/api/assignments"

    def get(token: str) -> requests.Response:
        return requests.get(api, headers={"Authorization": f"token {token}"}, timeout=60,
                            allow_redirects=False)

    mine = get(teacher.token)
    assert mine.status_code == 200, (mine.status_code, mine.headers.get("Location"))
    assert "demo" in [a["name"] for a in mine.json()]
    assert '"name": "demo"' in mine.text
    for s in loop["sessions"].values():
        theirs = get(s.token)
        assert theirs.status_code in (403, 404), (theirs.status_code, theirs.text[:300])
        assert '"name": "demo"' not in theirs.text  # nothing of the gradebook's answer
        # and their own servers have no formgrader either
        own = s.server("GET", "/formgrader/api/assignments", allow_redirects=False)
        assert own.status_code == 404, own.status_code


def test_nbgrader_autograde_as_the_instructor_runs_no_student_code(loop):
    """The formgrader's Autograde button (nbgrader's own autograde) would run student code
    unconfined as the instructor: in the hub's course it refuses to start a kernel."""
    h = loop["hub"]
    student = h.prefix + "ada"
    done = hubaccess.as_user(h, h.instructor, ["nbgrader", "autograde", "demo", "--force",
                                               "--student", student],
                             cwd=h.course_dir, check=False)
    assert hub.NO_KERNEL in done.stdout + done.stderr, done.stderr[-2000:]
    assert "Kernel started" not in done.stdout + done.stderr


def test_a_wrong_password_does_not_log_in(course_hub):
    with pytest.raises(hub.HubError, match="could not log in"):
        hubaccess.Session(course_hub.url, course_hub.prefix + "ada", "not-the-password")


# ------------------------------------------------------------- hostile roster ids
def test_a_roster_id_never_names_an_existing_or_odd_account(tmp_path):
    hubkit.skip_unless_root()
    cfg = config.load(env={}, state_dir=tmp_path / "state")
    course = make_course(tmp_path / "course")
    for ids, match in ((["daemon"], "already exist"), (["root"], "already exist"),
                       (["a.b"], "cannot be an account"),
                       (["x" * 40], "cannot be an account")):
        roster = tmp_path / "roster.txt"
        roster.write_text("\n".join(ids) + "\n")
        h = hub.Hub(course, roster, course_id=COURSE_ID, prefix="", cfg=cfg)
        with pytest.raises(hub.HubError, match=match):
            h.start()
        assert not h.state_file.exists()
    # a shell's words never reach useradd: the roster refuses them first
    from cloudlab.grading.roster import RosterError

    roster.write_text("ada;touch /tmp/pwned\n")
    with pytest.raises(RosterError):
        hub.Hub(course, roster, cfg=cfg, prefix=hubkit.prefix()).start()
    assert not Path("/tmp/pwned").exists()


def test_an_error_in_the_middle_of_up_leaves_nothing(tmp_path):
    """The proxy is a program that fails: accounts, group, folders and the single-user
    environment are made by then, JupyterHub starts and dies; nothing may remain."""
    hubkit.skip_unless_root()
    course = make_course(tmp_path / "course")
    roster = tmp_path / "roster.txt"
    roster.write_text("ada\n")
    cfg = config.load(env={}, state_dir=tmp_path / "state")
    h = hub.Hub(course, roster, course_id=COURSE_ID, prefix=hubkit.prefix(), cfg=cfg,
                proxy=Path("/bin/false"))
    with hubkit.hub_lock(), pytest.raises(Exception, match=r"(?i)jupyterhub"), h:
        pass
    made = h.removed
    assert sorted(made.users) == [h.prefix + "ada", h.prefix + "instructor"]
    assert made.folders and made.pid  # it got as far as starting JupyterHub
    assert hubkit.leftovers(h, made) == []
    assert not Path(f"/srv/cloudlab-hub-{h.prefix}{COURSE_ID}").exists()
    assert not any(Path("/home").glob(f"{h.prefix}*"))
    assert course.source.stat().st_mode & 0o007 == 0o005  # the modes it tightened, back


def test_down_refuses_an_account_it_did_not_make(tmp_path):
    hubkit.skip_unless_root()
    cfg = config.load(env={}, state_dir=tmp_path / "state")
    h = hub.Hub(None, None, cfg=cfg)
    h.state = hub.State(users={"root": 12345}, roles={"root": "student"})
    h.state.save(h.state_file)
    with pytest.raises(hub.HubError, match="root: its uid is no longer 12345"):
        h.stop()
    assert hubkit._exists(pwd.getpwnam, "root")
    assert json.loads(h.state_file.read_text())["users"] == {"root": 12345}  # kept
