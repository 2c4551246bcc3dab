"""Grade one submission: precheck, host hooks, sandboxed autograde, trusted scoring.

Runs in a worker process forked from the pool (nbgrader already imported). It never raises
for anything a student did: the outcome is always a :class:`~.results.Result`.

The notebook runs in the sandbox with every hidden-test region stripped out, for feedback
and nbgrader's bookkeeping only. The score written to the gradebook is the trusted
graders' (``solutions/<name>/grader.py``, see :mod:`.trusted`); if anything fails after
nbgrader saved the in-kernel scores, every grade of the submission is set to 0 and the
reason recorded (fail closed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.preprocessors import SaveAutoGrades
from traitlets import Bool, Unicode

from . import executor, hooks, late, precheck, sandbox, sanitize, trusted
from .course import Course
from .results import Result, TestResult, friendly


def nbgrader_extra(execute: type | None = None) -> dict:
    """nbgrader's configuration for one submission (``execute``: the step that runs the
    notebook; the local sandbox's unless a backend gives its own)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import AssignLatePenalties, IgnorePattern, LimitOutput

    return {
        "Autograde": {
            "force": True, "create_student": True,
            # the sanitising pass already ran CheckCellMetadata on this notebook
            "autograde_preprocessors": [StripHiddenTests, execute or executor.SandboxExecute,
                                        IgnorePattern,
                                        ClearMetadataPreprocessor, LimitOutput, SaveAutoGradesOnce,
                                        AssignLatePenalties, KeepAndSanitize],
        },
        "Exporter": {"optimistic_validation": True},  # validated once, not per preprocessor
        "Execute": {"shutdown_kernel": "immediate", "interrupt_on_timeout": False,
                    "store_widget_state": False,
                    "startup_timeout": 60, "iopub_timeout": 10, "raise_on_iopub_timeout": False},
    }


class SaveAutoGradesOnce(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``, with the notebook's grades and comments read in one
    query each and written in one commit (it queried and committed once or twice per
    graded cell: most of a worker's database time on a notebook with many cells)."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        ids = resources["nbgrader"]
        with Gradebook(ids["db_url"]) as gb:
            found = gb.find_submission_notebook(ids["notebook"], ids["assignment"],
                                                ids["student"])
            self._grades = {g.name: g for g in found.grades}
            self._comments = {c.name: c for c in found.comments}
            nb, resources = Preprocessor.preprocess(self, nb, resources)  # the cells
            gb.db.commit()
        return nb, resources

    def _add_score(self, cell, resources) -> None:
        from nbgrader import utils

        grade = self._grades[cell.metadata["nbgrader"]["grade_id"]]
        grade.auto_score, _ = utils.determine_grade(cell, self.log)
        # a manual grade already given, or no automatic score: someone must look
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None

    def _add_comment(self, cell, resources) -> None:
        from nbgrader import utils

        comment = self._comments[cell.metadata["nbgrader"]["grade_id"]]
        unchanged = cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(cell)
        comment.auto_comment = "No response." if unchanged and not utils.is_task(cell) \
            else None


class KeepAndSanitize(Preprocessor):
    """The last step: the autograded notebook as it ran is kept for the record
    (``originals/<student>/<assignment>/<notebook>.ipynb``, a folder formgrader never
    renders), and the copy nbgrader writes - what Manual Grading and the feedback show -
    is made safe (:func:`.sanitize.notebook`: no script, handler, widget or JS output)."""

    enabled = Bool(True)
    originals = Unicode("", help="where the untouched notebooks are kept").tag(config=True)

    def preprocess(self, nb, resources):
        if self.originals:
            ids = resources["nbgrader"]
            folder = Path(self.originals) / ids["student"] / ids["assignment"]
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(folder / f"{ids['notebook']}.ipynb"))
        done = sanitize.notebook(nb)
        if done:
            self.log.info("made safe for instructors: %s", "; ".join(done[:20]))
        return nb, resources


class StripHiddenTests(Preprocessor):
    """Hidden-test regions never reach the student's kernel (the graders hold those tests)."""

    enabled = Bool(True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and release_markers(cell.source):
            cell.source = precheck.released_source(cell.source)
        return cell, resources


def release_markers(source: str) -> bool:
    from .release import HIDDEN_BEGIN

    return HIDDEN_BEGIN in source


def grade(course: Course, assignment: str, student: str, *, image: str,
          timeout: float = 60, limits: sandbox.Limits | None = None,
          hook_timeout: float = 300, backend=None) -> Result:
    """Grade ``student``'s submission of ``assignment``; always returns a Result.
    ``backend``: where the notebook runs instead of a local container
    (:class:`~.kubejobs.Backend`)."""
    start = time.monotonic()
    result = Result(student=student, assignment=assignment,
                    backend=getattr(backend, "name", "local"))
    stage = Path(tempfile.mkdtemp(prefix="clg-stage-"))
    try:
        _grade(course, assignment, student, image, timeout, limits or sandbox.Limits(),
               hook_timeout, stage, result, backend)
    except Exception as exc:  # the grader's own failure: still a verdict, with the cause
        logging.getLogger("cloudlab.grading").error("grading %s failed:\n%s", student,
                                                    traceback.format_exc())
        result.status = "crashed"
        result.reason = f"the grader failed on this submission: {type(exc).__name__}: {exc}"[:800]
        result.max_score = max_score(course, assignment)
        result.score = 0.0
        result.tests = []
        try:
            fail_closed(course, assignment, student)
        except Exception as again:  # the gradebook itself failed: say so, still no score
            result.reason += f"; the gradebook could not be reset: {again}"[:300]
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.seconds = round(time.monotonic() - start, 2)
    result.save(course.result_file(student, assignment))
    return result


def _grade(course: Course, assignment: str, student: str, image: str, timeout: float,
           limits: sandbox.Limits, hook_timeout: float, stage: Path, result: Result,
           backend=None) -> None:
    from nbgrader.converters import Autograde

    pre = precheck.inspect(course, assignment, student, stage)
    shutil.rmtree(course.originals / student / assignment, ignore_errors=True)  # stale
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

    graders = trusted.load(course.source, assignment)  # no grader: crashed, 0 (fail closed)
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
        if backend is not None:
            notes.append(HOST_HOOKS.format(backend=backend.name, hooks=", ".join(
                getattr(h, "__name__", "hook") for h in found_hooks)))
        trusted_file = stage / "trusted.json"
        trusted_file.write_text(json.dumps(trusted_results, indent=1, default=str))
        trusted_file.chmod(0o644)

    sub = trusted.Submission(
        assignment, student, files=_copy_for_hooks(stage, "grader-files"), cells=pre.cells,
        answer_cells=pre.answer_cells, pre_graded=trusted_results,
        labels={**sandbox.SandboxSpec(image, assignment, f"{student}/{assignment}").labels(),
                sandbox.GRADER_LABEL: "probe"}, timeout=hook_timeout)
    grade_ids = autograded_ids(course, assignment)
    groups = trusted.plan(graders, sub, grade_ids)
    spec = sandbox.SandboxSpec(image=image, assignment=assignment,
                               submission=f"{student}/{assignment}", files=stage / "files",
                               trusted=trusted_file, limits=limits,
                               probe=_probe_input(stage, groups), backend=backend)
    sandbox.activate(spec)
    outcome = executor.reset(timeout)
    extra = nbgrader_extra(backend.execute_class() if backend is not None else None)
    extra["CourseDirectory"] = {"submitted_directory": str(stage / "submitted")}
    extra["KeepAndSanitize"] = {"originals": str(course.originals)}
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

    # the probes ran first in the kernel's container; a fresh container if that failed
    if groups:
        ran = spec.state.get("probe") is not None
        result.probes = spec.state.get("probe_where", "kernel container") if ran else \
            "own container ({})".format(spec.state.get("probe_error") or
                                        "no kernel was started")
        if not ran:
            logging.getLogger("cloudlab.grading").warning("probe stage: %s", result.probes)
    fallback = backend.probe_runner(sub.labels) if backend is not None else \
        trusted.container_runner(image, sub.labels, limits)
    runner = trusted.prefetched(groups, spec.state.get("probe"), fallback)
    result.retries = list(spec.state.get("retries", []))
    result.failure = spec.state.get("failure", "")
    verdicts = trusted.run(graders, sub, grade_ids, runner=runner)
    write_verdicts(course, assignment, student, pre, verdicts, notes)
    result.late_seconds, result.late_penalty = late.assess(course, assignment, student)
    result.late_policy = late.policy(course, assignment).text()
    result.status = outcome.status
    if result.status != "graded" and not result.failure:
        result.failure = f"student: {result.status}"
    parts = [outcome.reason] if outcome.reason else []
    parts += [pre.reason()] if pre.reason() else []
    if outcome.truncated:
        parts.append("some output was truncated")
    result.reason = "; ".join(p for p in parts + notes if p)
    _collect_scores(course, assignment, student, result, pre, verdicts)


HOST_HOOKS = ("pre-grade checks that need the instructor's machine ({hooks}) ran there, "
              "not in the {backend} cluster; only the notebook ran in the cluster")


def _probe_input(stage: Path, groups: list[dict]) -> Path | None:
    """A folder holding the probe groups for the kernel container's probe stage."""
    if not groups:
        return None
    folder = stage / "probe"
    folder.mkdir(mode=0o755)
    (folder / sandbox.PROBE_INPUT).write_text(json.dumps({"groups": groups}))
    (folder / sandbox.PROBE_INPUT).chmod(0o644)
    folder.chmod(0o755)
    return folder


def max_score(course: Course, assignment: str) -> float:
    from nbgrader.api import Gradebook

    try:
        with Gradebook(course.db_url) as gb:
            return float(gb.find_assignment(assignment).max_score or 0)
    except Exception:
        return 0.0


def _copy_for_hooks(stage: Path, name: str = "hook-files") -> Path:
    dest = stage / name
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


def autograded_ids(course: Course, assignment: str) -> list[str]:
    """Grade ids of the cells scored automatically (test cells; not manually graded answers)."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        return [c.name for nb in gb.find_assignment(assignment).notebooks
                for c in nb.grade_cells
                if c.cell_type == "code" and c.name not in {s.name for s in nb.solution_cells}]


def write_verdicts(course: Course, assignment: str, student: str, pre: precheck.Precheck,
                   verdicts: dict[str, trusted.Verdict], notes: list[str]) -> None:
    """Write the trusted scores over nbgrader's in-kernel ones, in one transaction."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(assignment, student)
        for nb in submission.notebooks:
            answers = {c.name for c in nb.notebook.solution_cells}
            for grade in nb.grades:
                if grade.cell_type != "code" or grade.name in answers:
                    continue  # manually graded
                verdict = verdicts.get(grade.name) or trusted.Verdict(
                    grade.name, 0.0, "no trusted verdict (0 points)")
                deleted = grade.name in pre.deleted.get(nb.name, [])
                fraction = 0.0 if deleted or nb.name not in pre.notebooks else verdict.fraction
                grade.auto_score = round(float(grade.max_score or 0) * fraction, 4)
                grade.needs_manual_grade = bool(pre.flags)
        _commit(gb)


def _commit(gb) -> None:
    gb.db.commit()


def fail_closed(course: Course, assignment: str, student: str) -> None:
    """Every automatic grade of the submission set to 0 (whatever the kernel scored)."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for nb in submission.notebooks:
            for grade in nb.grades:
                if grade.cell_type == "code" or grade.auto_score is not None:
                    grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()


def _collect_scores(course: Course, assignment: str, student: str, result: Result,
                    pre: precheck.Precheck, verdicts: dict[str, trusted.Verdict]) -> None:
    from nbgrader.api import Gradebook

    messages = _messages(course, assignment, student)
    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(assignment, student)
        result.score = float(submission.score or 0)
        result.max_score = float(submission.max_score or 0)
        for nb in submission.notebooks:
            for grade in sorted(nb.grades, key=lambda g: g.name):
                if grade.cell_type != "code" and grade.auto_score is None:
                    continue
                score = float(grade.score or 0)
                points = float(grade.max_score or 0)
                verdict = verdicts.get(grade.name)
                msg = verdict.message if verdict is not None else \
                    messages.get((nb.name, grade.name), "")
                if nb.name in pre.invalid:
                    msg = f"not graded: {nb.name}.ipynb {pre.invalid[nb.name]}"
                elif nb.name in pre.missing:
                    msg = f"not graded: {nb.name}.ipynb was not submitted"
                elif grade.name in pre.deleted.get(nb.name, []):
                    msg = "this test cell was deleted from the notebook"
                elif score >= points:
                    msg = ""
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
