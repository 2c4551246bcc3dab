"""The feedback page's summary (rendered without a course: no notebook section)."""

from cloudlab.grading import feedback
from cloudlab.grading.results import Result
from cloudlab.grading.results import TestResult as Test


def _result(*tests: Test, max_score: float) -> Result:
    return Result("ada", "alerting", score=sum(t.score for t in tests), max_score=max_score,
                  tests=list(tests))


def test_points_left_for_the_instructor_are_named():
    r = _result(Test("alerting", "sigma_flat", 6, 6, True), max_score=10)
    page = feedback.render(None, r, None, [])
    assert "Score:</b> 6 / 10" in page
    assert "Graded by hand:</b> 4 of the 10 points" in page


def test_no_note_when_every_point_is_tested():
    r = _result(Test("alerting", "sigma_flat", 6, 6, True),
                Test("alerting", "five_whys", 4, 0, False), max_score=10)
    assert "Graded by hand" not in feedback.render(None, r, None, [])


def test_hidden_lines_are_redacted_from_messages():
    r = _result(Test("alerting", "sigma_nan", 2, 0, False, "assert secret_case(7)"),
                max_score=2)
    page = feedback.render(None, r, None, ["assert secret_case(7)"])
    assert "secret_case" not in page


def test_the_page_carries_no_script_even_from_an_unsanitized_notebook(tmp_path):
    """Feedback sanitizes on its own: a notebook that skipped grading.sanitize (an older
    run, a plain nbgrader autograde) still yields a page where nothing can run."""
    import nbformat

    from cloudlab.grading import Course

    course = Course(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
        "Why? <b>FIVE-WHYS</b> <img src=x onerror=alert(1)> [x](javascript:alert(2))"
        "<script>alert(3)</script><iframe src=/files></iframe>"),
                nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
                    "display_data", {"text/html": "<script>alert(4)</script>",
                                     "text/plain": "<IPython.HTML>"})])]
    folder = course.autograded / "ada" / "alerting"
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / "alerting.ipynb"))
    r = _result(Test("alerting", "sigma_flat", 6, 6, True), max_score=6)
    page = feedback.render(course, r, "alerting", [])
    assert "<b>FIVE-WHYS</b>" in page and "&lt;IPython.HTML&gt;" in page
    low = page.lower()
    for active in ("<script", "onerror", "javascript:", "<iframe"):
        assert active not in low, active


def test_feedback_keeps_what_release_feedback_names_the_files_by(tmp_path):
    """nbgrader's release_feedback names a released file by the submission's secret and
    reads its timestamp: both are copied beside the page (never through a link)."""
    submitted = tmp_path / "submitted"
    submitted.mkdir()
    (submitted / "timestamp.txt").write_text("2026-01-15 10:00:00.000000 UTC")
    (submitted / "submission_secret.txt").write_text("s3cr3t")
    out = tmp_path / "feedback"
    out.mkdir()
    feedback._exchange_keys(submitted, out)
    assert (out / "submission_secret.txt").read_text() == "s3cr3t"
    assert (out / "timestamp.txt").read_text().startswith("2026-01-15")
    (out / "submission_secret.txt").unlink()
    (submitted / "submission_secret.txt").unlink()
    (submitted / "submission_secret.txt").symlink_to("/etc/hostname")
    feedback._exchange_keys(submitted, out)
    assert not (out / "submission_secret.txt").exists()
