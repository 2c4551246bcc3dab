"""The grading demo of `make run` works end to end through the CLI."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_grading_demo_scores_three_students(grading_image):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "grading_demo.py")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ada      correct        6  6" in done.stdout
    assert "linus    untouched      0  0" in done.stdout
    assert "feedback pages: 3" in done.stdout
