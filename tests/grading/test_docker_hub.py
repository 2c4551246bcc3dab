"""The ``docker-hub`` exercise, graded for real by the grading engine.

One sandboxed autograde run grades a batch of submissions made from the solution notebook:
the solution itself, the untouched release, one submission per hidden test that breaks
exactly that rule (and nothing else), and a Dockerfile with a syntax error. Each
submission is what a student's folder holds after running the notebook: the notebook, the
files its ``%%writefile`` cells wrote, and ``answers.json`` with the reference and digest
of an image really pushed to a private registry started for this module.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import gradingkit as kit
import pytest

from cloudlab import config, images, registry, services
from cloudlab import docker as cdocker
from cloudlab.checks import docker_hub as hub
from cloudlab.grading import Course, autograde, classmate, release, trusted
from cloudlab.grading.hooks import hooks_for
from cloudlab.grading.results import Result
from tests.conftest import free_port, outside

ROOT = Path(__file__).resolve().parents[2]
NAME = "docker-hub"
SOURCE = ROOT / "solutions" / NAME / f"{NAME}.ipynb"

SOLUTION_DOCKERFILE = "FROM python:3.11-slim\nRUN useradd"
VENV_DOCKERFILE = """FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd"""

# student -> (cell edits (grade id, old text, new text), answer overrides, test that fails)
VARIANTS: dict[str, tuple[list[tuple[str, str, str]], dict[str, str], str | None]] = {
    "solution": ([], {}, None),
    "shellcmd": ([("dockerfile", 'CMD ["hello"]', "CMD hello")], {}, "rule_exec_form"),
    "rootuser": ([("dockerfile", "USER 10001\n", "")], {}, "rule_non_root"),
    "unpinned": ([("requirements", "click==8.1.7", "click")], {}, "rule_pinned"),
    # pip's HTTP cache stays empty behind this machine's package proxy (its replies carry
    # no caching headers), so the cache left here is the other half of pip's cache: the
    # wheel it builds from a source distribution
    "pipcache": ([("dockerfile", "pip install --no-cache-dir",
                   "pip install --use-pep517 --no-binary=click")], {}, "rule_no_pip_cache"),
    "oversized": ([("dockerfile", "COPY app.py .\n",
                    "COPY app.py .\nRUN dd if=/dev/zero of=/opt/padding bs=1M count=40\n")], {},
                  "rule_size"),
    # rule 2's other half: app.py copied before pip installs (the dependency layer is rebuilt
    # on every code change)
    "copyfirst": ([("dockerfile", "COPY requirements.txt .\n", "COPY requirements.txt app.py ./\n"),
                   ("dockerfile", "COPY app.py .\n", "")], {}, "rule_no_pip_cache"),
    "wrongdigest": ([], {"IMAGE_DIGEST": "<the classmate's digest>"}, "q4_pushed"),
    "wronganswer": ([], {"CLASSMATE_SAYS": "Hello from Grace!"}, "q5_classmate"),
    # a classmate's answers.json, copied: the image is real, but in someone else's namespace
    "copied": ([], {}, "q4_pushed"),
    # rule 4: plain `docker run IMAGE` prints the CLI's usage, not the greeting
    "nocmd": ([("dockerfile", 'CMD ["hello"]\n', "")], {}, "rule_exec_form"),
    # correct, written differently: a multi-stage build into a venv (issue 19's regression)
    "venv": ([("dockerfile", SOLUTION_DOCKERFILE, VENV_DOCKERFILE)], {}, None),
    # in its own namespace on paper, the classmate's image over HTTP (ada/../classmate)
    "traversal": ([], {}, "q4_pushed"),
}
BROKEN = [("dockerfile", "RUN pip install", "RUNN pip install")]


def notebook(course: Course, edits: list[tuple[str, str, str]], *, answered: bool = True) -> dict:
    """The released notebook, answered with the solution (markers removed), then edited."""
    return kit.answered(course, NAME, SOURCE, edits, answered=answered)


def submit(course: Course, student: str, nb: dict, answers: dict | None) -> Path:
    folder = kit.submit(course, NAME, student, nb, files=answers is not None)
    if answers is not None:
        (folder / hub.ANSWERS).write_text(json.dumps(answers, indent=1))
    return folder


@pytest.fixture(scope="module")
def graded(grading_image, docker_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("docker-hub-course")
    shutil.copytree(SOURCE.parent, root / "solutions" / NAME)
    course = Course(root)
    release.release(course, NAME)
    cfg = config.load(env={}, state_dir=root / "state", registry_port=free_port(),
                      run_id="test-docker-hub-" + secrets.token_hex(3))
    mp = pytest.MonkeyPatch()
    mp.setattr(config, "_current", cfg)  # the hooks (forked workers) ask this registry
    reg = services.registry(cfg)
    try:
        with reg:
            ref = classmate.publish(course, cfg)
            secret = classmate.message(course)
            assert classmate.publish(course, cfg) == ref and classmate.message(course) == secret
            _, repo, tag = hub.split_ref(ref)
            other_digest = registry.manifest_digest(repo, tag, cfg=cfg)
            work = root / "build"
            work.mkdir()
            kit.write_files(notebook(course, []), work)
            built = cdocker.build(work, f"cloudlab-test-hello:{cfg.run_id}", progress=False,
                                  cfg=cfg)
            for student, (edits, overrides, _) in VARIANTS.items():
                ref = f"{cfg.registry_host}/{student}/{hub.REPOSITORY}:{hub.VERSION}"
                digest = registry.push(registry.tag(built.tag, ref), progress=False)
                answers = {"IMAGE_REF": ref, "IMAGE_DIGEST": digest,
                           "CLASSMATE_SAYS": secret, **overrides}
                if student == "wrongdigest":
                    answers["IMAGE_DIGEST"] = other_digest
                if student == "traversal":
                    answers.update(IMAGE_REF=f"{cfg.registry_host}/{student}/../"
                                             f"{classmate.REPOSITORY}:{classmate.VERSION}",
                                   IMAGE_DIGEST=other_digest)
                if student == "copied":
                    answers.update(json.loads(
                        (course.submission("solution", NAME) / hub.ANSWERS).read_text()))
                submit(course, student, notebook(course, edits), answers)
            submit(course, "untouched", notebook(course, [], answered=False), None)
            ref = f"{cfg.registry_host}/broken/{hub.REPOSITORY}:{hub.VERSION}"
            submit(course, "broken", notebook(course, BROKEN), {
                "IMAGE_REF": ref, "IMAGE_DIGEST": registry.push(registry.tag(built.tag, ref),
                                                                progress=False),
                "CLASSMATE_SAYS": secret})
            start = time.monotonic()
            results = autograde.autograde(course, NAME, workers=3, timeout=90, progress=False,
                                          image=grading_image, hook_timeout=300)
            seconds = time.monotonic() - start
    finally:
        mp.undo()
        images.remove_labelled(cfg.run_id)
    yield course, {r.student: r for r in results}, seconds, reg
    shutil.rmtree(root, ignore_errors=True)


def _scores(result: Result) -> dict[str, tuple[float, float]]:
    return {t.name: (t.score, t.points) for t in result.tests}


def test_the_solution_scores_full_marks(graded):
    _, results, seconds, _ = graded
    r = results["solution"]
    failed = {t.name: t.message for t in r.tests if not t.passed}
    assert (r.status, failed) == ("graded", {}), r.reason
    assert r.score == r.max_score == 16
    print(f"\ngraded {len(results)} submissions in {seconds:.1f} s")
    print("\n".join(results[s].line() for s in sorted(results)))


def test_the_untouched_release_scores_zero(graded):
    _, results, _, _ = graded
    r = results["untouched"]
    assert (r.status, r.score, r.max_score) == ("graded", 0, 16)


@pytest.mark.parametrize("student", [s for s, v in VARIANTS.items() if v[2]])
def test_each_hidden_rule_costs_exactly_its_points(graded, student):
    _, results, _, _ = graded
    lost = VARIANTS[student][2]
    full, mine = _scores(results["solution"]), _scores(results[student])
    assert results[student].status == "graded", results[student].reason
    changed = {name for name in full if mine[name] != full[name]}
    assert changed == {lost}, {t.name: t.message for t in results[student].tests if not t.passed}
    assert mine[lost][0] == 0
    assert results[student].score == 16 - full[lost][1]
    message = next(t.message for t in results[student].tests if t.name == lost)
    assert message, "a lost test says why"


@pytest.mark.parametrize("student", [s for s, v in VARIANTS.items()
                                     if v[2] is None and s != "solution"])
def test_correct_answers_written_differently_get_full_marks(graded, student):
    _, results, _, _ = graded
    r = results[student]
    failed = {t.name: t.message for t in r.tests if not t.passed}
    assert (r.status, failed) == ("graded", {}), r.reason
    assert r.score == r.max_score == 16


def test_the_messages_say_what_was_wrong(graded):
    _, results, _, _ = graded

    def why(student: str, test: str) -> str:
        return next(t.message for t in results[student].tests if t.name == test)

    assert "shell form" in why("shellcmd", "rule_exec_form")
    assert "root" in why("rootuser", "rule_non_root")
    assert "click" in why("unpinned", "rule_pinned")
    assert "pip's cache" in why("pipcache", "rule_no_pip_cache")
    assert "before pip installs" in why("copyfirst", "rule_no_pip_cache")
    assert "`docker run IMAGE` should print" in why("nocmd", "rule_exec_form")
    assert "budget is 25 MB" in why("oversized", "rule_size")
    assert "another digest" in why("wrongdigest", "q4_pushed")
    assert "not what your classmate" in why("wronganswer", "q5_classmate")
    assert "in solution's namespace" in why("copied", "q4_pushed")
    assert "not a canonical image reference" in why("traversal", "q4_pushed")
    assert "'..' is not allowed" in why("traversal", "q4_pushed")


def test_a_dockerfile_with_a_syntax_error_gets_a_score_and_a_reason(graded):
    _, results, _, _ = graded
    r = results["broken"]
    scores = _scores(r)
    assert r.status == "graded", r.reason
    # what does not depend on the build still counts: pinned, pushed, classmate
    assert r.score == 1 + 3 + 2
    assert {n for n, (s, p) in scores.items() if s == p} == {"rule_pinned", "q4_pushed",
                                                           "q5_classmate"}
    messages = {t.name: t.message for t in r.tests}
    assert "unknown instruction: RUNN" in messages["q2_build"]
    assert "hadolint" in messages["q1_lint"] and "DL1000" in messages["q1_lint"]
    assert "did not build" in messages["rule_size"]


def test_nothing_is_left_behind(graded, docker_engine):
    _, _, _, reg = graded
    assert reg.pid() is None
    ours = f"{config.LABEL}={reg.cfg.run_id}"  # other courses may be grading on this engine
    assert not docker_engine.containers.list(all=True, filters={"label": ours})
    assert not [i for i in docker_engine.images.list()
                if any(t.startswith("cloudlab-graded-") for t in i.tags)]


def test_every_test_cell_is_scored_by_a_trusted_grader_from_the_hooks_keys():
    assert hub.docker_side in hooks_for(NAME)
    graders = trusted.load(SOURCE.parent.parent, NAME)
    nb = json.loads(SOURCE.read_text())
    tests = {c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"}
    assert set(graders) == tests
    used = set(re.findall(r'passed\(sub, "([\w-]+)"\)',
                          (SOURCE.parent / "grader.py").read_text()))
    used |= {"files", "official_base", "lint_clean"}  # read in a loop
    assert used == set(hub.KEYS)
    assert "HIDDEN TESTS" not in SOURCE.read_text()  # they live in grader.py


def test_the_checker_examples_run():
    from cloudlab.checks.docker_hub import hook, rules, student_side

    results = [doctest.testmod(m, optionflags=doctest.ELLIPSIS)
               for m in (hub, rules, student_side, hook)]
    assert sum(r.failed for r in results) == 0 and sum(r.attempted for r in results) > 5


@pytest.mark.parametrize("text, ok", [
    ("click==8.1.7\n", True),
    ("# a comment\nclick == 8.1.7  # pinned\n\n", True),
    ("click[extra]==8.1.7 ; python_version >= '3.8'\n", True),
    ("click>=8\n", False),
    ("click==8.*\n", False),
    ("-r other.txt\n", False),
    ("", False),
])
def test_pinned_requirements(text, ok):
    assert hub.pinned(text)["passed"] is ok


def test_pinned_also_reads_pip_install_in_the_dockerfile():
    good = "FROM python:3.11-slim\nRUN pip install --no-cache-dir -r requirements.txt\n"
    bad = good + "RUN pip install --no-cache-dir click requests==2.32.3\n"
    assert hub.pinned("click==8.1.7\n", good)["passed"]
    found = hub.pinned("click==8.1.7\n", bad)
    assert not found["passed"] and found["found"] == ["Dockerfile: pip install click"]


def test_a_push_elsewhere_than_the_course_registry_is_refused():
    out = hub.pushed({"IMAGE_REF": "registry.example.net/ada/hello-cli:1.0",
                      "IMAGE_DIGEST": "sha256:" + "a" * 64}, "127.0.0.1:5000")
    assert not out["passed"] and "not the course registry" in out["message"]


def test_a_registry_that_is_down_is_a_clear_reason(cfg):
    answers = {"IMAGE_REF": f"{cfg.registry_host}/ada/hello-cli:1.0",
               "IMAGE_DIGEST": "sha256:" + "a" * 64}
    out = hub.pushed(answers, cfg.registry_host)
    assert not out["passed"] and "does not answer" in out["message"]


def test_the_classmate_message_is_only_on_the_trusted_side(tmp_path):
    import inspect

    from cloudlab.grading import Course

    assert "Grace's container" not in inspect.getsource(hub), "no answer in the public module"
    answers = {"CLASSMATE_SAYS": "Hello from Grace's container! Your pull worked."}
    assert not hub.classmate(answers, None)["passed"], "no secret: fail closed"
    course = Course(tmp_path)
    secret = classmate.message(course, create=True)
    assert classmate.message(course) == secret and secret != classmate.message(
        Course(tmp_path / "other"), create=True), "each course has its own"
    assert hub.classmate({"CLASSMATE_SAYS": secret}, secret)["passed"]


@pytest.mark.skipif(not (os.environ.get(registry.USER_VAR) and os.environ.get(registry.TOKEN_VAR)),
                    reason=outside(f"needs a Docker Hub login: set {registry.USER_VAR} and "
                                   f"{registry.TOKEN_VAR} (and a machine that reaches Docker Hub)"))
def test_a_push_to_docker_hub_is_checked_against_docker_hub(docker_engine, tmp_path):
    why = registry.dockerhub_reason()
    if why:
        pytest.skip(outside(why))
    cfg = config.load(registry="dockerhub", run_id="test-docker-hub-" + secrets.token_hex(3))
    creds = registry.dockerhub_credentials(cfg=cfg)
    src = json.loads(SOURCE.read_text())
    kit.write_files({"cells": [{"cell_type": c["cell_type"],
                                "source": kit.MARKERS.sub("", kit.source(c))}
                               for c in src["cells"]]},
                tmp_path)
    try:
        built = cdocker.build(tmp_path, f"cloudlab-test-hello:{cfg.run_id}", progress=False,
                              cfg=cfg)
        ref = registry.tag(built, hub.target(cfg))
        digest = registry.push(ref, auth=creds, progress=False)
        assert hub.pushed({"IMAGE_REF": ref, "IMAGE_DIGEST": digest}, cfg.registry_host)[
            "passed"]
        wrong = hub.pushed({"IMAGE_REF": ref, "IMAGE_DIGEST": "sha256:" + "0" * 64},
                           cfg.registry_host)
        assert not wrong["passed"] and "another digest" in wrong["message"]
    finally:
        images.remove_labelled(cfg.run_id)


@pytest.mark.parametrize("run, args", [
    ("RUN pip install --no-cache-dir -r requirements.txt",
     [["--no-cache-dir", "-r", "requirements.txt"]]),
    ("RUN /opt/venv/bin/pip install --no-cache-dir -r requirements.txt",
     [["--no-cache-dir", "-r", "requirements.txt"]]),
    ("RUN python -m pip install -r requirements.txt", [["-r", "requirements.txt"]]),
    ("RUN /usr/local/bin/python3.11 -m pip --no-cache-dir install click==8.1.7",
     [["click==8.1.7"]]),
    ("RUN pip3.11 install -r r.txt && PIP_NO_CACHE_DIR=1 pip3 install x==1", [["-r", "r.txt"],
                                                                           ["x==1"]]),
    ('RUN ["pip3", "install", "-r", "requirements.txt"]', [["-r", "requirements.txt"]]),
    ("RUN --mount=type=cache,target=/c pip install -r requirements.txt",
     [["-r", "requirements.txt"]]),
    ("RUN python -m venv /opt/venv && echo pip install done", []),
    ("RUN pip list", []),
])
def test_pip_is_recognised_however_it_is_called(run, args):
    assert hub.pip_installs(run) == args


VENV = VENV_DOCKERFILE + """ --create-home --no-log-init --uid 10001 app
WORKDIR /app
COPY app.py .
USER 10001
ENTRYPOINT ["/opt/venv/bin/python", "app.py"]
CMD ["hello"]
"""


@pytest.mark.parametrize("dockerfile, ok", [
    (VENV, True),
    (VENV.replace("/opt/venv/bin/pip install", "/opt/venv/bin/python -m pip install"), True),
    (VENV.replace("FROM python:3.11-slim AS build", "FROM python:3.11-slim AS Build")
     .replace("--from=build", "--from=0"), True),
    # the builder copies app.py before it installs: a code change reinstalls everything
    (VENV.replace("COPY requirements.txt /tmp/requirements.txt",
                  "COPY requirements.txt app.py /tmp/"), False),
    # the builder's install is not in the final image: nothing installs what it runs on
    (VENV.replace("COPY --from=build /opt/venv /opt/venv\n", ""), False),
    ("FROM python:3.11-slim\nCOPY . .\nRUN pip3.11 install -r requirements.txt\n", False),
])
def test_install_first_follows_the_stages_the_image_is_made_of(dockerfile, ok):
    assert hub.install_first(dockerfile)["passed"] is ok, hub.install_first(dockerfile)


def test_pinned_reads_every_pip_spelling_in_the_dockerfile():
    for run in ("pip3.11 install click", "python -m pip install click", "/v/bin/pip install click"):
        found = hub.pinned("click==8.1.7\n", f"FROM python:3.11-slim\nRUN {run}\n")
        assert found["found"] == ["Dockerfile: pip install click"], run
