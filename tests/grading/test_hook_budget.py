"""Time the grader spends on the host for a submission (a build) is not the notebook's."""

from __future__ import annotations

import json
import time

from gradingkit import make_course

from cloudlab.grading import autograde, hooks

BUDGET = 20.0  # seconds the notebook may run
SLOW = BUDGET + 5  # the host-side work takes longer than that


def test_a_slow_build_does_not_eat_the_notebooks_time_budget(grading_image, tmp_path):
    course = make_course(tmp_path)
    nb = json.loads((course.release / "other" / "other.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "other_answer":
            cell["source"] = "answer = 42"
    folder = course.submission("ada", "other")
    folder.mkdir(parents=True)
    (folder / "other.ipynb").write_text(json.dumps(nb))

    def slow_build(ctx: hooks.HookContext) -> hooks.Results:
        time.sleep(SLOW)
        return {}

    with hooks.registered("other", slow_build):
        started = time.monotonic()
        [result] = autograde.autograde(course, "other", timeout=BUDGET, progress=False,
                                       image=grading_image, hook_timeout=SLOW + 30)
        took = time.monotonic() - started
    assert took > SLOW
    assert result.status == "graded", result.reason
    assert result.score == result.max_score > 0
