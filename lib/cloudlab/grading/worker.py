"""Grade one submission: precheck, trusted hooks, sandboxed nbgrader autograde, scoring.

Runs in a worker process forked from the pool (nbgrader already imported). It never raises
for anything a student did: the outcome is always a :class:`~.results.Result`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import nbformat

from . import executor, hooks, precheck, sandbox
from .course import Course
from .results import Result, TestResult, friendly

TRUSTED_CALL = re.compile(r"""trusted\(\s*['"]([\w.\-]+)['"]\s*\)""")


def nbgrader_extra() -> dict:
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    return {
        "Autograde": {
            "force": True, "create_student": True,
            # the sanitising pass already ran CheckCellMetadata on this notebook
            "autograde_preprocessors": [executor.SandboxExecute, IgnorePattern,
                                        ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                                        AssignLatePenalties],
        },
        "Execute": {"shutdown_kernel": "immediate", "interrupt_on_timeout": False,
                    "startup_timeout": 60, "iopub_timeout": 10, "raise_on_iopub_timeout": False},
    }


def grade(course: Course, assignment: str, student: str, *, image: str,
          timeout: float = 60, limits: sandbox.Limits | None = None,
          hook_timeout: float = 300) -> Result:
    """Grade ``student``'s submission of ``assignment``; always returns a Result."""
    start = time.monotonic()
    result = Result(student=student, assignment=assignment)
    stage = Path(tempfile.mkdtemp(prefix="clg-stage-"))
    try:
        _grade(course, assignment, student, image, timeout, limits or sandbox.Limits(),
               hook_timeout, stage, result)
    except Exception as exc:  # the grader's own failure: still a verdict, with the cause
        logging.getLogger("cloudlab.grading").error("grading %s failed:\n%s", student,
                                                    traceback.format_exc())
        result.status = "crashed"
        result.reason = f"the grader failed on this submission: {type(exc).__name__}: {exc}"[:800]
        result.max_score = max_score(course, assignment)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.seconds = round(time.monotonic() - start, 2)
    result.save(course.result_file(student, assignment))
    return result


def _grade(course: Course, assignment: str, student: str, image: str, timeout: float,
           limits: sandbox.Limits, hook_timeout: float, stage: Path, result: Result) -> None:
    from nbgrader.converters import Autograde

    pre = precheck.inspect(course, assignment, student, stage)
    result.timestamp = pre.timestamp
    result.flags = list(pre.flags)
    notes: list[str] = []
    if not pre.notebooks:
        shutil.rmtree(course.autograded / student / assignment, ignore_errors=True)  # stale
        _record_zeros(course, assignment, student, pre.timestamp)
        result.status = "invalid"
        result.reason = pre.reason() or "no notebook was submitted"
        _collect_scores(course, assignment, student, result, pre, {})
        return

    trusted_results: dict = {}
    found_hooks = hooks.hooks_for(assignment)
    trusted_file = None
    if found_hooks:
        ctx = hooks.HookContext(assignment, student, files=_copy_for_hooks(stage),
                                labels={**sandbox.SandboxSpec(image, assignment, "").labels(),
                                        sandbox.GRADER_LABEL: "artefact",
                                        sandbox.SUBMISSION_LABEL: f"{student}/{assignment}"},
                                timeout=hook_timeout, course=course.root)
        trusted_results, hook_notes = hooks.run_hooks(ctx, found_hooks)
        notes += hook_notes
        trusted_file = stage / "trusted.json"
        trusted_file.write_text(json.dumps(trusted_results, indent=1, default=str))
        trusted_file.chmod(0o644)

    spec = sandbox.SandboxSpec(image=image, assignment=assignment,
                               submission=f"{student}/{assignment}", files=stage / "files",
                               trusted=trusted_file, limits=limits)
    sandbox.activate(spec)
    outcome = executor.reset(timeout)
    extra = nbgrader_extra()
    extra["CourseDirectory"] = {"submitted_directory": str(stage / "submitted")}
    coursedir = course.coursedir(assignment, student, **extra)
    converter = Autograde(coursedir=coursedir, config=coursedir.config)
    from .release import capture_log

    with capture_log(converter.log) as errors:
        try:
            converter.start()
        except Exception as exc:
            raise RuntimeError("; ".join(errors)[-600:] or str(exc)) from None
        finally:
            sandbox.activate(None)

    _apply_trusted_and_deletions(course, assignment, student, pre, trusted_results, notes)
    result.status = outcome.status
    parts = [outcome.reason] if outcome.reason else []
    parts += [pre.reason()] if pre.reason() else []
    if outcome.truncated:
        parts.append("some output was truncated")
    result.reason = "; ".join(p for p in parts + notes if p)
    _collect_scores(course, assignment, student, result, pre, trusted_results)


def max_score(course: Course, assignment: str) -> float:
    from nbgrader.api import Gradebook

    try:
        with Gradebook(course.db_url) as gb:
            return float(gb.find_assignment(assignment).max_score or 0)
    except Exception:
        return 0.0


def _copy_for_hooks(stage: Path) -> Path:
    dest = stage / "hook-files"
    shutil.copytree(stage / "files", dest, symlinks=False)
    return dest


def _record_zeros(course: Course, assignment: str, student: str, timestamp: str | None) -> None:
    """An invalid submission still gets a gradebook entry: every grade 0, nothing to review."""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)
        kwargs = {}
        if timestamp:
            with contextlib.suppress(Exception):
                kwargs["timestamp"] = parse_utc(timestamp)
        submission = gb.update_or_create_submission(assignment, student, **kwargs)
        for nb in submission.notebooks:
            for grade in nb.grades:
                grade.auto_score = 0
                grade.manual_score = None
                grade.needs_manual_grade = False
        gb.db.commit()


def _apply_trusted_and_deletions(course: Course, assignment: str, student: str,
                                 pre: precheck.Precheck, trusted_results: dict,
                                 notes: list[str]) -> None:
    """Scores the sandbox cannot fake: deleted tests, failed trusted checks, review flags."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(assignment, student)
        for nb in submission.notebooks:
            source = {c.name: c.source or "" for c in nb.notebook.source_cells}
            for grade in nb.grades:
                if grade.name in pre.deleted.get(nb.name, []):
                    grade.auto_score = 0
                    grade.needs_manual_grade = False
                    continue
                keys = TRUSTED_CALL.findall(source.get(grade.name, ""))
                failed = [k for k in keys if not trusted_results.get(k, {}).get("passed")]
                if failed and (grade.auto_score or 0) > 0:
                    grade.auto_score = 0
                    notes.append(f"{grade.name}: 0 points, the grader's own check "
                                 f"{', '.join(failed)} did not pass")
                if pre.flags and grade.auto_score is not None:
                    grade.needs_manual_grade = True
        gb.db.commit()


def _collect_scores(course: Course, assignment: str, student: str, result: Result,
                    pre: precheck.Precheck, trusted_results: dict) -> None:
    from nbgrader.api import Gradebook

    messages = _messages(course, assignment, student)
    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(assignment, student)
        result.score = float(submission.score or 0)
        result.max_score = float(submission.max_score or 0)
        for nb in submission.notebooks:
            source = {c.name: c.source or "" for c in nb.notebook.source_cells}
            for grade in sorted(nb.grades, key=lambda g: g.name):
                if grade.cell_type != "code" and grade.auto_score is None:
                    continue
                score = float(grade.score or 0)
                points = float(grade.max_score or 0)
                msg = messages.get((nb.name, grade.name), "")
                if nb.name in pre.invalid:
                    msg = f"not graded: {nb.name}.ipynb {pre.invalid[nb.name]}"
                elif nb.name in pre.missing:
                    msg = f"not graded: {nb.name}.ipynb was not submitted"
                elif grade.name in pre.deleted.get(nb.name, []):
                    msg = "this test cell was deleted from the notebook"
                elif not msg and score < points:
                    keys = TRUSTED_CALL.findall(source.get(grade.name, ""))
                    bad = [trusted_results.get(k, {}) for k in keys]
                    msg = next((str(b.get("message", "")) for b in bad
                                if not b.get("passed")), "")
                result.tests.append(TestResult(nb.name, grade.name, points, score,
                                               score >= points > 0 or (points == 0),
                                               msg[:1000]))


def _messages(course: Course, assignment: str, student: str) -> dict[tuple[str, str], str]:
    """The first error of each graded cell in the autograded notebooks (friendly text only)."""
    found: dict[tuple[str, str], str] = {}
    folder = course.autograded / student / assignment
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:
            continue
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade") or cell.cell_type != "code":
                continue
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    found[(path.stem, meta.get("grade_id"))] = friendly(out)
                    break
    return found
