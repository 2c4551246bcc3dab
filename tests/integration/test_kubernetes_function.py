"""The kubernetes exercise's function hook: the answer runs in a locked-down container.

``function_side`` reads the submitted notebook's answer cell, runs ``desired_replicas`` on
the instructor's arguments in a container without network or the workbook, and compares
the results on the host.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cloudlab.checks import kubernetes as kx
from cloudlab.grading import Course
from cloudlab.grading.hooks import HookContext

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "solutions" / "kubernetes" / "kubernetes.ipynb"
MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.M)


def submitted(tmp_path: Path, student: str, change=None) -> HookContext:
    shutil_root = tmp_path / "course"
    (shutil_root / "solutions" / "kubernetes").mkdir(parents=True, exist_ok=True)
    grader = ROOT / "solutions" / "kubernetes" / "grader.py"
    (shutil_root / "solutions" / "kubernetes" / "grader.py").write_text(grader.read_text())
    nb = json.loads(SOURCE.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == kx.ANSWER_CELL:
            text = MARKERS.sub("", "".join(cell["source"]))
            cell["source"] = change(text) if change else text
    folder = Course(shutil_root).submission(student, "kubernetes")
    folder.mkdir(parents=True)
    (folder / "kubernetes.ipynb").write_text(json.dumps(nb))
    return HookContext("kubernetes", student, folder, {}, course=shutil_root)


@pytest.fixture(autouse=True)
def _engine(docker_engine):
    return docker_engine


def test_the_solution_passes_every_case(tmp_path):
    out = kx.function_side(submitted(tmp_path, "solution"))
    assert {k: v["passed"] for k, v in out.items()} == dict.fromkeys(kx.CASE_KEYS.values(), True)


@pytest.mark.parametrize(("student", "change", "lost"), [
    ("tolerance", lambda s: s.replace("0.1 + 1e-12", "0.2"), {"tolerance"}),
    ("clamp", lambda s: s.replace("min(max(desired, min_replicas), max_replicas)",
                                  "max(desired, min_replicas)"), {"clamp"}),
    ("missing", lambda s: s.replace("if current_metric is not None:", "if True:"),
     {"zero_missing"}),
])
def test_each_variant_loses_exactly_its_rule(tmp_path, student, change, lost):
    out = kx.function_side(submitted(tmp_path, student, change))
    assert {k for k, v in out.items() if not v["passed"]} == lost


@pytest.mark.parametrize(("student", "change", "words"), [
    ("library", lambda s: "import cloudlab\n" + s, "your own code"),
    ("loops", lambda s: s.replace('    """Replicas', "    while True: pass\n    \"\"\"Replicas"),
     "did not finish"),
    ("network", lambda s: "import socket\nsocket.create_connection(('10.0.0.1', 80), 2)\n" + s,
     "does not run"),
    ("floats", lambda s: s.replace("return int(", "return float("), "not an int"),
    ("placeholder", lambda s: "# YOUR CODE HERE\nraise NotImplementedError()", "not written"),
])
def test_hostile_or_broken_functions_get_a_reason(tmp_path, student, change, words):
    out = kx.function_side(submitted(tmp_path, student, change))
    assert not any(v["passed"] for v in out.values())
    assert all(words in v["message"] for v in out.values()), out
