"""HTML feedback per submission in which hidden tests never appear.

nbgrader's own feedback renders the autograded notebook - hidden test source included
(jupyter/nbgrader#917, #1363). Here every test cell is shown only as its name, points,
pass/fail and the friendly message of its first failure; the student's own cells keep their
code and (escaped, truncated) outputs, and markdown reaches the page only through the
allow-list sanitizer (:func:`.sanitize.markdown`: no script, handler or ``javascript:``
link can run in whoever opens it). As a last line of defence, any line of the hidden
tests that still turns up in a message or output (say, printed from the kernel's history)
is removed before the page is written.

Files: ``course/feedback/<student>/<assignment>/<notebook>.html`` (nbgrader's layout).
"""

from __future__ import annotations

import base64
import binascii
import html
from pathlib import Path

import nbformat

from . import sanitize
from .course import Course
from .release import HIDDEN_BEGIN, HIDDEN_END, redact
from .results import Result

MAX_OUTPUT_CHARS = 5000
STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}
.summary{border:1px solid #ccc;border-radius:6px;padding:1rem;margin-bottom:1.5rem}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top}
.pass{color:#176f2c;font-weight:600} .fail{color:#b00020;font-weight:600}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap}
.test{border-left:4px solid #999;padding:.4rem .8rem;margin:.8rem 0;background:#fafafa}
.test.ok{border-color:#176f2c} .test.ko{border-color:#b00020}
.out{border-left:3px solid #ddd;margin-left:1rem} .md{margin:1rem 0}
"""


def _hidden_lines(course: Course, assignment: str) -> list[str]:
    """Lines of the hidden tests (from the gradebook) that appear nowhere public."""
    from nbgrader.api import Gradebook

    lines: list[str] = []
    public: list[str] = []
    with Gradebook(course.db_url) as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            for cell in nb.source_cells:
                inside = False
                for line in (cell.source or "").splitlines():
                    if HIDDEN_BEGIN in line:
                        inside = True
                    elif HIDDEN_END in line:
                        inside = False
                    elif inside and len(line.strip()) >= 6:
                        lines.append(line.strip())
                    elif not inside:
                        public.append(line)
    outside = "\n".join(public)
    return [line for line in lines if line not in outside]


class _Page:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets

    def markdown(self, source: str) -> str:
        return sanitize.markdown(redact(source, self.secrets))

    def text(self, value: object, limit: int = MAX_OUTPUT_CHARS) -> str:
        raw = redact(str(value), self.secrets)
        if len(raw) > limit:
            raw = raw[:limit] + f"\n[... {len(raw) - limit} more characters not shown]"
        return html.escape(raw)

    def output(self, out: dict) -> str:
        kind = out.get("output_type")
        if kind == "stream":
            return f"<pre class=out>{self.text(out.get('text', ''))}</pre>"
        if kind == "error":
            return (f"<pre class=out>{self.text(out.get('ename', ''))}: "
                    f"{self.text(out.get('evalue', ''))}</pre>")
        data = out.get("data", {})
        png = data.get("image/png")
        if isinstance(png, str):
            try:
                base64.b64decode(png, validate=True)
                return f'<img class=out alt="plot" src="data:image/png;base64,{png}">'
            except (binascii.Error, ValueError):
                pass
        if "text/plain" in data:
            return f"<pre class=out>{self.text(data['text/plain'])}</pre>"
        return ""


def pending_by_hand(result: Result) -> float:
    """Points of the assignment no automatic test decides (answers an instructor grades).

    >>> from cloudlab.grading.results import TestResult
    >>> r = Result("ada", "alerting", score=6, max_score=10,
    ...            tests=[TestResult("alerting", "sigma_flat", 6, 6, True)])
    >>> pending_by_hand(r)
    4.0
    >>> pending_by_hand(Result("bob", "alerting", status="crashed", max_score=10))
    0.0
    """
    if not result.tests:  # the grader failed: the score says nothing about any part
        return 0.0
    pending = float(result.max_score) - sum(float(t.points) for t in result.tests)
    return round(pending, 4) if pending > 1e-6 else 0.0


def render(course: Course, result: Result, notebook: str | None,
           secrets: list[str]) -> str:
    page = _Page(secrets)
    tests = [t for t in result.tests if notebook is None or t.notebook == notebook]
    rows = "".join(
        f"<tr><td>{page.text(t.name)}</td><td>{t.score:g} / {t.points:g}</td>"
        f"<td class={'pass' if t.passed else 'fail'}>{'passed' if t.passed else 'failed'}</td>"
        f"<td><pre>{page.text(t.message) if t.message else ''}</pre></td></tr>"
        for t in tests)
    title = f"{result.assignment} - feedback for {result.student}"
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{page.text(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{page.text(title)}</h1>",
        "<div class=summary>",
        f"<p><b>Score:</b> {result.score:g} / {result.max_score:g}"
        f" &nbsp; <b>Status:</b> {page.text(result.status)}</p>",
    ]
    parts.append(_late(result, page))
    if by_hand := pending_by_hand(result):
        parts.append(f"<p><b>Graded by hand:</b> {by_hand:g} of the {result.max_score:g} "
                     "points are for answers your instructor reads and scores; they are not "
                     "in this score yet.</p>")
    if result.reason:
        parts.append(f"<p><b>Notes:</b> {page.text(result.reason)}</p>")
    parts.append("<table><tr><th>test</th><th>points</th><th>result</th><th>message</th></tr>"
                 f"{rows}</table></div>")
    if notebook:
        parts.append(_cells(course, result, notebook, page))
    parts.append("</body></html>")
    return "\n".join(parts)


def _late(result: Result, page: _Page) -> str:
    """The late policy and what it cost this submission (empty when there is no policy)."""
    if not result.late_policy and not result.late_seconds:
        return ""
    text = f"<p><b>Late policy:</b> {page.text(result.late_policy or 'none')}."
    if result.late_seconds > 0:
        hours = result.late_seconds / 3600
        text += (f" This submission came {hours:.1f} hour(s) after the due date: "
                 f"{result.late_penalty:g} point(s) taken off, final score "
                 f"{max(0.0, result.score - result.late_penalty):g} / {result.max_score:g}.")
    else:
        text += " This submission was on time."
    return text + "</p>"


def _cells(course: Course, result: Result, notebook: str, page: _Page) -> str:
    path = course.autograded / result.student / result.assignment / f"{notebook}.ipynb"
    if not path.exists():
        return "<p>The notebook could not be run, so there is nothing more to show.</p>"
    nb = nbformat.read(str(path), as_version=4)
    by_name = {t.name: t for t in result.tests if t.notebook == notebook}
    out = [f"<h2>{page.text(notebook)}.ipynb</h2>"]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown":
            out.append(f"<div class=md>{page.markdown(cell.source)}</div>")
        elif cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            t = by_name.get(meta.get("grade_id"))
            if t is None:
                continue
            mark = "ok" if t.passed else "ko"
            msg = f"<pre>{page.text(t.message)}</pre>" if t.message and not t.passed else ""
            out.append(f"<div class='test {mark}'><b>Test {page.text(t.name)}</b>: "
                       f"{t.score:g} / {t.points:g} point(s), "
                       f"{'passed' if t.passed else 'failed'}{msg}</div>")
        elif cell.cell_type == "code":
            out.append(f"<pre>{page.text(cell.source)}</pre>")
            out.extend(page.output(o) for o in cell.get("outputs", [])[:20])
    return "\n".join(out)


def feedback(course: Course, assignment: str | None = None,
             students: list[str] | None = None) -> list[Path]:
    """Write the HTML feedback of every graded submission; returns the files written."""
    from .course import tools_on_path

    tools_on_path()
    written: list[Path] = []
    names = [assignment] if assignment else sorted(
        p.name for p in course.results.glob("*") if p.is_dir())
    for name in names:
        secrets = _hidden_lines(course, name)
        for result_file in sorted((course.results / name).glob("*.json")):
            result = Result.load(result_file)
            if students and result.student not in students:
                continue
            folder = course.feedback / result.student / name
            folder.mkdir(parents=True, exist_ok=True)
            notebooks = sorted({t.notebook for t in result.tests}) or [None]
            for nb in notebooks:
                target = folder / f"{nb or 'feedback'}.html"
                target.write_text(render(course, result, nb, secrets))
                written.append(target)
            _exchange_keys(course.submission(result.student, name), folder)
    return written


def _exchange_keys(submitted: Path, folder: Path) -> None:
    """What ``nbgrader release_feedback`` names the released files by: the submission's
    ``timestamp.txt`` and ``submission_secret.txt`` (nbgrader's collect writes both; a
    submission collected from a folder has no secret and is released by hand)."""
    for name in ("timestamp.txt", "submission_secret.txt"):
        if (submitted / name).is_file() and not (submitted / name).is_symlink():
            (folder / name).write_text((submitted / name).read_text())
