"""Trusted graders of ``docker-hub`` (instructor side: never released, never in a sandbox).

The host's pre-grade hook (:func:`cloudlab.checks.docker_hub.hook.docker_side`) built,
linted, ran and inspected the submitted Dockerfile and asked the registry about the
recorded push, before the notebook ran; its results reach each grader as plain data in
``sub.pre_graded``. Each grader below decides one graded cell's points from them: the
notebook's own test cells are feedback only.
"""

from cloudlab.grading.trusted import grader, passed


@grader("q1_lint")
def files_base_and_lint(sub):
    """Part A: the three files, FROM python:3.11-slim, hadolint clean at error level."""
    for key in ("files", "official_base", "lint_clean"):
        passed(sub, key)


@grader("q2_build")
def image_builds(sub):
    passed(sub, "image_builds")


@grader("q3_hello")
def says_hello(sub):
    passed(sub, "says_hello")


@grader("rule_exec_form")
def exec_form(sub):
    """Rule 4: exec form, so that plain `docker run IMAGE` prints the greeting too."""
    passed(sub, "exec_form")
    passed(sub, "plain_run")


@grader("rule_non_root")
def non_root(sub):
    passed(sub, "non_root")


@grader("rule_pinned")
def pinned(sub):
    passed(sub, "pinned")


@grader("rule_no_pip_cache")
def pip_install(sub):
    """Rule 2: pip leaves no cache, and installs the requirements before app.py is copied."""
    passed(sub, "install_first")
    passed(sub, "no_pip_cache")


@grader("rule_size")
def size(sub):
    passed(sub, "size_budget")


@grader("q4_pushed")
def pushed(sub):
    """Part C: the registry serves the recorded reference with the recorded digest."""
    passed(sub, "pushed")


@grader("q5_classmate")
def classmate(sub):
    passed(sub, "classmate")
