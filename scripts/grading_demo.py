"""The grading demo that ends ``make run``: a throw-away course, three students, the CLI.

It releases the small ``demo`` assignment (tests/grading/fixtures), submits a correct, a
partial and an untouched notebook, and runs the instructor's commands on them: sandboxed
parallel autograde, CSV export and HTML feedback. Exits non-zero when a score is not the
one expected (6, 3 and 0 of 6).

    .venv/bin/python scripts/grading_demo.py
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "grading" / "fixtures"
sys.path.insert(0, str(FIXTURES))

import submissions  # noqa: E402

from cloudlab import cli  # noqa: E402

EXPECTED = {"ada": ("correct", 6.0), "grace": ("partial", 3.0), "linus": ("untouched", 0.0)}


def grade(course: Path, *args: str) -> None:
    print(f"\n$ cloudlab grade {' '.join(args)}", flush=True)
    code = cli.main(["grade", "--course", str(course), *args])
    if code:
        raise SystemExit(f"`cloudlab grade {' '.join(args)}` failed with exit code {code}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cloudlab-grading-demo-") as tmp:
        course = Path(tmp)
        shutil.copytree(FIXTURES / "solutions" / "demo", course / "solutions" / "demo")
        shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        grade(course, "release", "demo")
        for student, (kind, _) in EXPECTED.items():
            submissions.make(course, student, kind)
        print(f"\nsubmitted: {', '.join(f'{s} ({k})' for s, (k, _) in EXPECTED.items())}")
        grade(course, "autograde", "demo", "--workers", "2", "--timeout", "60", "--quiet")
        csv_path = course / "grades.csv"
        grade(course, "export", "demo", "-o", str(csv_path))
        grade(course, "feedback", "demo")
        rows = {r["student"]: r for r in csv.DictReader(csv_path.open())}
        print(f"\n{'student':<8} {'submitted':<10} {'score':>5}  expected")
        wrong = []
        for student, (kind, want) in EXPECTED.items():
            got = float(rows[student]["score"])
            print(f"{student:<8} {kind:<10} {got:>5g}  {want:g}")
            if got != want:
                wrong.append(student)
        feedback = sorted(p.relative_to(course) for p in course.rglob("feedback/**/*.html"))
        print(f"feedback pages: {len(feedback)}")
    if wrong:
        print(f"unexpected scores for: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
