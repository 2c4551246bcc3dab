"""Grading: release, collect, sandboxed parallel autograde, export and feedback.

Only light modules load with the package: ``cloudlab.grading.kernel`` runs inside the
grading container, where nbgrader is not installed.

Adding a graded exercise: the rules (CONTRIBUTING.md gives the steps)
--------------------------------------------------------------------

No point may depend on anything student code could replace: test cells are self-checks;
the gradebook gets only the verdicts of `solutions/<name>/grader.py`.

1. `solutions/<name>/<name>.ipynb`, first cell `ASSIGNMENT = "<name>"`, answers between
   `### BEGIN/END SOLUTION`; test cells call `cl.checks.verify("q1")`, visible checks in
   `lib/cloudlab/checks/<name>.py` (`@register` + `expect`; public, no hidden answers).
2. `grader.py` (never released or mounted in a sandbox; `cloudlab.grading.trusted`): one
   `@grader("<test id>", x=call("fn", *args, cells="q1_answer"))` per test cell. `call`/
   `value` run the answers' source before any student code (the kernel container's first
   stage, `grading.probe`) and return plain JSON; `cell`/`file`
   read artefacts. Where the text says "standard library only", pass `stdlib_only=True`:
   those cells then run in a `python -I -S` interpreter fenced by Landlock, which can
   import and read the standard library and nothing else (no word lists: no spelling of an
   import gets through; without Landlock the probe is refused, never run unfenced).
   Pass = return None (or a fraction); `expect` failure = 0 with its
   message; any error = 0 with the reason. Example: `tests/grading/fixtures/solutions/demo`.
3. Host tools (Docker): a `@pre_grade` hook (`grading.hooks`: `build_image`, `run_image`);
   graders read it with `passed(sub, "key")` (`solutions/docker-hub/grader.py`); what the
   hooks share across a run is released by an `@after_grading` hook (the Kubernetes pool).
   A checker is a package like `checks/docker_hub/` and `checks/kubernetes/`: `rules.py`
   (pure), `student_side.py` (setup, visible checks), `hook.py` (trusted), never importing
   the trusted side from the student's (`tests/unit/test_import_cycles.py`). On a grading
   cluster with this machine's real node, the kubernetes hook builds the submitted
   Dockerfile with `hooks.build_image` and runs it there (`k8s.node.load_image`).
4. `cloudlab grade release <name>` (commit `exercises/<name>/`); `tests/grading/
   test_<name>.py`: solution full marks, release 0, each hidden-rule variant loses its points,
   and correct answers written differently get full marks. Test cells call
   `cl.checks.verify("qN", keep_going=True)`: a failure shows as the cell's error (validate
   counts it) without stopping *Run All* before later parts write their files.
5. Host-side work on what a student wrote goes through `cloudlab.grading.confine`, never
   `docker build`/`subprocess` directly: `hooks.build_image` checks `FROM`/`COPY --from`
   (`grading/dockerfile.py`) and builds in a `confine.Jail` (only the package-index proxy
   is reachable; CPU, memory, pids, time, disk limits; labelled and swept); tools
   (`promtool`, `amtool`, `kubectl`) run via `confine.run(cmd, Limits(...), files=...)`.
   Identities: a namespace is the student's id (`cloudlab grade roster`); trusted-only
   answers live in `course/registry/` (`grading/classmate.py`). `cloudlab grade publish
   DEST` writes the student edition and refuses one holding a solution, hidden test or secret.
   Build rules: a Dockerfile is read with Docker's own parser (PyPI `dockerfile`) and its
   `FROM` expanded as Docker does; what the policy cannot decide is refused, naming the line
   (remote `ADD` in any form, `ONBUILD`, heredocs, `# syntax=`, directives past line 1, odd
   spaces, `LABEL org.cloudlab*`); and the build runs in a `grading.jailengine` dockerd
   inside the jail's network namespace, so even the engine's own fetches never see the host.
6. End the notebook with its grading contract: a last markdown cell `## Grading contract`
   holding one table `| test | what it checks | points | visible or hidden |`, a row per
   graded cell (`` `grade_id` ``, points, `visible`/`hidden`). Grade what the text states,
   state what is graded; `tests/unit/test_contracts.py` holds the table against the
   notebook's points and `grader.py`.
7. Student text is hostile to the instructor too. What instructor tools render (autograded
   notebooks, feedback, reports) goes through `grading.sanitize` (`html`, `markdown`,
   `notebook`; nh3 allow-list; originals kept in `course/originals/`); CSV cells through
   `sanitize.cell`. Image references are `imageref.parse`d before any check; the roster
   refuses reserved ids (`roster.RESERVED`) and ids or Docker Hub handles that collide.

>>> from cloudlab.grading import Course       # doctest: +SKIP
"""

from __future__ import annotations

from .course import Course

__all__ = ["Course"]
