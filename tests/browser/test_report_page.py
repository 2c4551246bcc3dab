"""Browser tier: the instructor's grading report (grading/report.py) in headless Chromium.

The page is written from recorded results (one of them carrying a script in its failure
message), opened from disk, and checked as a browser sees it: the three plots decoded and
drawn, the hostile text shown as text and never run. The screenshot is kept in
``runs/browser/report.png``.
"""

from __future__ import annotations

import pytest

from cloudlab.grading import Course, report
from cloudlab.grading.results import Result, TestResult
from tests.browser.chromium import BINARY, Chromium
from tests.browser.lab import SHOTS

pytestmark = pytest.mark.skipif(BINARY is None,
                                reason="needs Chromium (apt-get install chromium)")
HOSTILE = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>"


def _results(course: Course) -> None:
    q = [("q1_test", 2), ("q2_test", 3), ("q3_test", 1)]
    marks = {"ada": (2, 3, 1), "bob": (2, 0, 1), "cy": (0, 0, 1), "dee": (2, 3, 0),
             "eve": (2, 0, 0), "fay": (0, 3, 1), "gus": (2, 3, 1), "hal": (0, 0, 0)}
    for n, (student, got) in enumerate(marks.items()):
        tests = [TestResult("demo", name, pts, s, s >= pts,
                            "" if s >= pts else (HOSTILE if student == "eve" and name == "q3_test"
                                                 else f"{name}: expected 2.5, found {n}"))
                 for (name, pts), s in zip(q, got, strict=True)]
        Result(student, "demo", score=sum(got), max_score=6, seconds=3.0 + n,
               tests=tests).save(course.result_file(student, "demo"))
    Result("ivy", "demo", status="timed out", reason="the grader gave up after 90 s",
           max_score=6, seconds=90).save(course.result_file("ivy", "demo"))


def test_the_report_page_shows_its_plots_and_runs_nothing_a_student_wrote(tmp_path):
    course = Course(tmp_path)
    _results(course)
    page, _ = report.write(course, "demo", tmp_path / "reports")
    with Chromium(tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        drawn = browser.wait_for(
            "(() => { const i = [...document.querySelectorAll('img[id^=plot-]')];"
            " return i.length === 3 && i.every(x => x.complete && x.naturalWidth > 100)"
            " && i.map(x => x.id); })()", "the report's three plots")
        assert drawn == ["plot-scores", "plot-items", "plot-time"]
        assert browser.evaluate("window.pwned === undefined"), "a student's markup ran"
        text = browser.evaluate("document.body.innerText")
        assert HOSTILE in text, "the hostile message is shown as text"
        assert "Pass rate per item" in text and "the grader gave up after 90 s" in text
        shot = browser.screenshot(SHOTS / "report.png")
    assert shot.stat().st_size > 20_000
