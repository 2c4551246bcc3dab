"""The narrow Docker path: the grader builds and runs a submitted Dockerfile itself.

The sandbox never gets the Docker socket. A pre-grade hook (registered per assignment)
builds the student's Dockerfile and runs the image in containers of their own, then the
results reach the notebook read-only - and decide the score on the host.
"""

from __future__ import annotations

import json
import shutil

import pytest
from gradingkit import make_course

from cloudlab.config import LABEL, settings
from cloudlab.grading import autograde, hooks
from cloudlab.grading.release import ensure_in_gradebook

GOOD = 'FROM python:3.11-slim\nCMD ["python3", "-c", "print(\'hello from docker\')"]\n'
WRONG = 'FROM python:3.11-slim\nCMD ["python3", "-c", "print(\'bye\')"]\n'
BROKEN = "FROM python:3.11-slim\nRUN exit 3\n"
NOBASE = "FROM no-such-image-here:1\n"


def build_and_run(ctx: hooks.HookContext) -> hooks.Results:
    built = hooks.build_image(ctx, "Dockerfile", timeout=120)
    results = {"image_builds": {"passed": built.ok, "message": built.message}}
    if built.ok:
        ran = hooks.run_image(ctx, built.tag, timeout=30)
        results["prints_hello"] = {
            "passed": ran.ok and "hello from docker" in ran.output,
            "message": "the container should print 'hello from docker'",
            "expected": "hello from docker", "found": ran.output.strip()[-200:]}
    return results


def submit(root, student: str, dockerfile: str | None, *, fake_results: bool = False) -> None:
    folder = root / "course" / "submitted" / student / "dockerdemo"
    folder.mkdir(parents=True)
    nb = json.loads((root / "exercises" / "dockerdemo" / "dockerdemo.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "q1_answer":
            cell["source"] = "%%writefile Dockerfile\n" + (dockerfile or "")
            if fake_results:  # try to forge the grader's results and its checker
                cell["source"] = (
                    "import json, cloudlab.checks as c\n"
                    "for attempt in ('/grader/results.json', 'results.json'):\n"
                    "    try:\n"
                    "        open(attempt, 'w').write(json.dumps({'image_builds': {'passed': True},"
                    " 'prints_hello': {'passed': True}}))\n"
                    "    except OSError as exc:\n"
                    "        print('FORGE', attempt, type(exc).__name__)\n"
                    "import os; os.environ['CLOUDLAB_TRUSTED_RESULTS'] = 'results.json'\n"
                    "open('Dockerfile', 'w').write('FROM python:3.11-slim')\n")
    (folder / "dockerdemo.ipynb").write_text(json.dumps(nb))
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)


@pytest.fixture(scope="module")
def graded(grading_image, docker_engine, tmp_path_factory):
    settings()  # this process's run id, which the forked graders label everything with
    root = tmp_path_factory.mktemp("docker-course")
    course = make_course(root)
    ensure_in_gradebook(course, "dockerdemo")
    submit(root, "good", GOOD)
    submit(root, "wrong", WRONG)
    submit(root, "broken", BROKEN)
    submit(root, "nobase", NOBASE)
    submit(root, "forger", BROKEN, fake_results=True)
    with hooks.registered("dockerdemo", build_and_run):  # no other module sees it
        results = autograde.autograde(course, "dockerdemo", workers=3, timeout=60,
                                      progress=False, image=grading_image)
    yield course, {r.student: r for r in results}
    shutil.rmtree(root, ignore_errors=True)


def test_a_good_dockerfile_gets_full_marks(graded):
    _, r = graded
    assert (r["good"].status, r["good"].score, r["good"].max_score) == ("graded", 4, 4)


@pytest.mark.parametrize("student, words", [
    ("wrong", "should print 'hello from docker'"),
    ("broken", "docker build failed"),
    ("nobase", "FROM no-such-image-here:1 is not an image allowed here"),
])
def test_a_bad_dockerfile_scores_zero_with_the_graders_message(graded, student, words):
    _, r = graded
    assert (r[student].status, r[student].score) == ("graded", 0)
    assert words in r[student].tests[0].message


def test_results_from_inside_the_notebook_cannot_be_forged(graded):
    _, r = graded
    assert r["forger"].score == 0
    assert "docker build failed" in r["forger"].tests[0].message


def test_artefact_images_and_containers_are_removed(graded, docker_engine):
    _, r = graded
    ours = {f"{student}/dockerdemo" for student in r}
    label = "org.cloudlab.grader.submission"
    # this run's only: another lane may be grading students of the same names right now
    run = {"label": [label, f"{LABEL}={settings().run_id}"]}
    assert not [i.tags for i in docker_engine.images.list(filters=run)
                if (i.labels or {}).get(label) in ours]
    assert not [c.name for c in docker_engine.containers.list(all=True, filters=run,
                                                               ignore_removed=True)
                if c.labels.get(label) in ours]


def test_hooks_are_found_per_assignment():
    with hooks.registered("dockerdemo", build_and_run):
        assert build_and_run in hooks.hooks_for("dockerdemo")
        assert build_and_run in hooks.hooks_for("DockerDemo"), "names are normalised"
        assert hooks.hooks_for("demo") == []
    assert build_and_run not in hooks.hooks_for("dockerdemo"), "the registry is as it was"


def test_an_engine_refusal_keeps_the_engines_words(tmp_path, docker_engine):
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY onlyone\n")
    ctx = hooks.HookContext("dockerdemo", "eve", tmp_path, {"org.cloudlab.test": "hooks"},
                            timeout=60)
    try:
        built = hooks.build_image(ctx, "Dockerfile")
    finally:
        ctx.cleanup()
    assert not built.ok
    assert "COPY requires at least two arguments" in built.message, built.message
