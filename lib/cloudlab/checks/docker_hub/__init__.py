"""Checks of the ``docker-hub`` exercise: a hello-world CLI container, pushed and pulled.

The exercise (``solutions/docker-hub``) has four parts: A) write ``app.py``,
``requirements.txt`` and a ``Dockerfile`` FROM the official ``python:3.11-slim``; B) build,
tag and push the image to the course registry; C) record the reference and digest you
pushed; D) pull a classmate's image and record what it prints.

One set of rules, three places that use them:

* :mod:`.rules` - the pure rules (plain data in, a result dict out; no Docker);
* :mod:`.student_side` - the student's side: :func:`setup`, where to push (:func:`target`,
  :func:`push_auth`), :func:`save_answers`, and the visible checks ``cl.check("q1")`` ...
  ``cl.check("q5")`` that lint, build and run your files with your own Docker engine;
* :mod:`.hook` - the trusted side: the grader's pre-grade hook (:func:`docker_side`)
  builds the Dockerfile you submitted on the grading host, lints it, runs ``hello``,
  inspects the image and asks the registry about your push. The points themselves are
  decided by the instructor's ``solutions/docker-hub/grader.py`` from those results.

Your answers to parts C and D travel in ``answers.json`` (written by
:func:`save_answers`), next to the Dockerfile, so the grader can read them without
running anything of yours.

>>> pinned("click==8.1.7\\n")["passed"]
True
"""

from __future__ import annotations

from .hook import docker_side
from .rules import *  # noqa: F403 - the rules and constants are this package's API
from .rules import __all__ as _rules
from .student_side import (
    classmate_ref,
    course_registry,
    docker_here,
    grading,
    push_auth,
    push_reason,
    save_answers,
    setup,
    student,
    target,
)

__all__ = [*_rules, "classmate_ref", "course_registry", "docker_here", "docker_side",
           "grading", "push_auth", "push_reason", "save_answers", "setup", "student", "target"]
