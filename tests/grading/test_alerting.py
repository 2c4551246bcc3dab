"""The ``alerting`` exercise, graded for real: sandboxed autograde + the trusted graders.

One autograde run grades a batch of submissions made from the solution notebook: the
solution, the untouched release, one variant per hidden rule that breaks exactly that
rule, and hostile ones (a huge rule file, a rule that never evaluates, a webhook to an
outside address, a three_sigma that calls the library or never returns). Nothing is
sent anywhere: a listener stands in for every loopback webhook and must stay silent.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from alerting_submissions import (
    AUTO_TOTAL,
    HOSTILE,
    NAME,
    SOURCE,
    VARIANTS,
    notebook,
    submit,
)

from cloudlab.grading import Course, autograde, release, trusted

pytestmark = pytest.mark.skipif(not (shutil.which("promtool") and shutil.which("amtool")),
                                reason="needs promtool and amtool (apt-get install "
                                       "prometheus prometheus-alertmanager)")


@pytest.fixture(scope="module")
def graded(grading_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("alerting-course")
    shutil.copytree(SOURCE.parent, root / "solutions" / NAME)
    course = Course(root)
    release.release(course, NAME)
    assert not (course.release / NAME / "grader.py").exists()
    for student, (edits, _) in VARIANTS.items():
        submit(course, student, notebook(course, edits))
    for student, edits in HOSTILE.items():
        submit(course, student, notebook(course, edits))
    submit(course, "untouched", notebook(course, [], answered=False), files=False)
    start = time.monotonic()
    results = autograde.autograde(course, NAME, workers=3, timeout=90, progress=False,
                                  image=grading_image)
    seconds = time.monotonic() - start
    yield course, {r.student: r for r in results}, seconds
    shutil.rmtree(root, ignore_errors=True)


def _scores(result) -> dict[str, tuple[float, float]]:
    return {t.name: (t.score, t.points) for t in result.tests if t.name != "five_whys"}


def _auto(result) -> float:
    return sum(score for score, _ in _scores(result).values())


def _why(result, test: str) -> str:
    return next(t.message for t in result.tests if t.name == test)


def test_the_solution_scores_full_marks(graded):
    _, results, seconds = graded
    r = results["solution"]
    failed = {t.name: t.message for t in r.tests if not t.passed and t.name != "five_whys"}
    assert (r.status, failed) == ("graded", {}), r.reason
    assert _auto(r) == AUTO_TOTAL
    print(f"\ngraded {len(results)} submissions in {seconds:.1f} s")


def test_the_untouched_release_scores_zero(graded):
    _, results, _ = graded
    r = results["untouched"]
    assert r.status == "graded" and _auto(r) == 0
    assert "not answered yet" in _why(r, "sigma_flat")
    assert "alert_rules.yml is not in the submission" in _why(r, "rule_fires")


@pytest.mark.parametrize("student", [s for s, v in VARIANTS.items() if v[1]])
def test_each_hidden_rule_costs_exactly_its_points(graded, student):
    _, results, _ = graded
    lost = VARIANTS[student][1]
    lost = {lost} if isinstance(lost, str) else set(lost)
    full, mine = _scores(results["solution"]), _scores(results[student])
    assert results[student].status == "graded", results[student].reason
    changed = {name for name in full if mine[name] != full[name]}
    assert changed == lost, {t.name: t.message for t in results[student].tests
                             if not t.passed}
    assert _auto(results[student]) == AUTO_TOTAL - sum(full[name][1] for name in lost)
    assert all(_why(results[student], name) for name in lost)


@pytest.mark.parametrize("student", [s for s, v in VARIANTS.items()
                                     if v[1] is None and s != "solution"])
def test_correct_answers_written_differently_get_full_marks(graded, student):
    _, results, _ = graded
    r = results[student]
    failed = {t.name: t.message for t in r.tests if not t.passed and t.name != "five_whys"}
    assert (r.status, failed) == ("graded", {}), r.reason
    assert _auto(r) == AUTO_TOTAL


def test_hostile_submissions_each_get_a_verdict(graded):
    _, results, _ = graded
    rules = {"rules_valid", "rule_fires", "rule_waits", "rule_quiet", "rule_target_down"}
    routes = {"am_valid", "route_page", "route_escalate", "route_ticket", "route_default"}
    sigma = {"sigma_flat", "sigma_short", "sigma_nan", "sigma_spike"}

    def zeroed(student):
        return {n for n, (score, pts) in _scores(results[student]).items() if score < pts}

    assert zeroed("huge") == rules
    assert "byte limit: not run" in _why(results["huge"], "rules_valid")
    assert zeroed("never") == {"rule_fires", "rule_waits", "rule_quiet"}
    assert zeroed("outside") == routes
    assert "198.51.100.7" in _why(results["outside"], "am_valid")
    assert "Nothing was sent" in _why(results["outside"], "am_valid")
    assert zeroed("library") == sigma
    assert "your own code" in _why(results["library"], "sigma_flat")
    assert zeroed("forever") == sigma  # the trusted probe was stopped, and scored 0
    forever = results["forever"]  # its own kernel hit the time limit at the self-check
    assert forever.status == "timed out" and "time limit" in forever.reason
    for student in set(HOSTILE) - {"forever"}:
        assert results[student].status == "graded", results[student].reason


def test_every_test_cell_has_a_trusted_grader():
    graders = trusted.load(SOURCE.parent.parent, NAME)
    nb = json.loads(SOURCE.read_text())
    tests = {c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"}
    assert tests == set(graders)


def test_run_all_reaches_parts_b_and_c_after_a_failing_check(tmp_path):
    """A wrong Part A fails its test cell, visibly, and Run All still writes B's and C's files.

    Executed as JupyterLab's Run All does: the first cell whose execution fails stops the
    rest (nbclient without allow_errors). ``cloudlab grade validate`` still reports the test.
    """
    import gradingkit as kit
    import nbformat
    from nbclient import NotebookClient

    from cloudlab.grading import validate

    root = SOURCE.parents[2]
    nb = kit.answered(Course(root), NAME, SOURCE, [
        ("three_sigma", "def three_sigma(series):\n",
         "def three_sigma(series):\n    return [False] * len(series)\n")])
    path = tmp_path / f"{NAME}.ipynb"
    path.write_text(json.dumps(nb))
    ran = nbformat.read(str(path), as_version=4)
    NotebookClient(ran, timeout=120, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "alert_rules.yml").is_file()
    assert (tmp_path / "alertmanager.yml").is_file()
    spike = next(c for c in ran.cells
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "sigma_spike")
    errors = [o for o in spike.outputs if o.output_type == "error"]
    assert errors and "only the last value" in "\n".join(errors[0].traceback)
    report = validate.validate(path)
    assert set(report.failed) == {"sigma_spike"}, report.text()
    assert {"rules_valid", "am_valid"} <= set(report.passed), report.text()
