"""Similar submissions (grading/similarity.py) measured on the fixtures.

The copied-submission fixtures (fixtures/copied_submissions.py: renamed variables and
resources, rewritten comments, reordered YAML, a re-wrapped Dockerfile) must be found;
no pair of the honest fixture variants (the kubernetes rule variants, every demo kind)
may be.
"""

from __future__ import annotations

import json
import shutil

import copied_submissions as C
import gradingkit as kit
import k8s_submissions as K
import pytest
import submissions as D

from cloudlab.grading import Course, similarity

DEMO_KINDS = ["correct", "untouched", "partial", "forkbomb", "infinite", "memoryhog",
              "network", "snoop", "vandal", "flood", "outputs", "exit", "edited", "deleted",
              "tamper", "shadow", "transformer", "eqtrue", "rebind", "helper", "dupid",
              "forger", "stash"]


def _course(tmp_path, name: str) -> Course:
    """A course holding the real release and solution notebooks of ``name``."""
    for folder in ("solutions", "exercises"):
        (tmp_path / folder / name).mkdir(parents=True)
        shutil.copy(C.ROOT / folder / name / f"{name}.ipynb", tmp_path / folder / name)
    return Course(tmp_path)


def _submit(course: Course, name: str, student: str, nb: dict) -> None:
    folder = course.submission(student, name)
    folder.mkdir(parents=True)
    (folder / f"{name}.ipynb").write_text(json.dumps(nb))


@pytest.mark.parametrize("name", sorted(C.ANSWERS))
def test_the_copies_are_found_and_the_honest_variants_are_not(tmp_path, name):
    course = _course(tmp_path, name)
    for student, nb in C.notebooks(name).items():
        _submit(course, name, student, nb)
    if name == "kubernetes":
        for variant, (edits, _) in K.VARIANTS.items():
            _submit(course, name, variant, kit.answered(course, name, K.SOURCE, edits))
    pairs = similarity.similar(course, name)
    print("\n".join(p.line() for p in pairs))
    assert {(p.a, p.b) for p in pairs} == C.COPIES
    assert pairs[0].similarity >= 0.8, "a renamed, re-commented copy stays close to 1"
    everything = similarity.similar(course, name, threshold=0.0, min_shared=1)
    honest = [p for p in everything if (p.a, p.b) not in C.COPIES]
    # the grading variants are the solution with one rule broken each: two that break the
    # same function the same way share those few lines (absband and tolerance, 3
    # fingerprints, 0.43); none comes near a copy, and none is reported
    assert max((p.similarity for p in honest), default=0) < similarity.THRESHOLD, honest[:3]
    assert all(p.shared < similarity.MIN_SHARED for p in honest), honest[:3]


def test_no_two_demo_variants_look_alike():
    subs = {kind: {gid: (text, "python") for gid, text in
                   D.answers(kind, {"root": "/srv/course", "port": 9}).items()}
            for kind in DEMO_KINDS}
    solution = {gid: (text, "python") for gid, text in D.CORRECT.items()}
    assert similarity.compare(subs, [solution]) == []
