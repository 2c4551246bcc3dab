"""The kubernetes exercise's replica graders, with the probes run in the grading sandbox.

``desired_replicas`` runs from the answer cell's source in a locked-down container of the
grading image (``trusted.container_runner``: no network, no workbook, CPU/memory/pids
limits); only its results come back, compared on the host with the hidden cases.
"""

from __future__ import annotations

from pathlib import Path

import gradingkit as kit
import pytest

from cloudlab.checks import kubernetes as kx
from cloudlab.grading import sandbox, trusted

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "solutions" / "kubernetes" / "kubernetes.ipynb"
IDS = ("q3_replicas", "rule_tolerance", "rule_clamp", "rule_zero_missing", "rule_float_ratio")
ANSWER = kit.MARKERS.sub("", trusted.from_notebook(SOURCE).cells[kx.ANSWER_CELL])


def grade(tmp_path: Path, image: str, source: str) -> dict[str, trusted.Verdict]:
    sub = trusted.Submission("kubernetes", "s1", files=tmp_path,
                             cells={kx.ANSWER_CELL: source}, answer_cells=[kx.ANSWER_CELL])
    labels = {**sandbox.SandboxSpec(image, "kubernetes", "s1").labels(),
              sandbox.GRADER_LABEL: "probe"}
    runner = trusted.container_runner(image, labels, sandbox.Limits())
    return trusted.run(trusted.load(ROOT / "solutions", "kubernetes"), sub, IDS, runner=runner)


def test_the_solution_passes_every_case(tmp_path, grading_image):
    got = grade(tmp_path, grading_image, ANSWER)
    assert {gid: v.fraction for gid, v in got.items()} == dict.fromkeys(IDS, 1.0), got


@pytest.mark.parametrize(("change", "lost"), [
    (lambda s: s.replace("not 0.9 <= ratio <= 1.1", "abs(ratio - 1) > 0.1"), "rule_tolerance"),
    (lambda s: s.replace("math.ceil(ratio * current_replicas)",
                         "math.ceil(current_replicas * current_metric / target_metric)"),
     "rule_float_ratio"),
    (lambda s: s.replace("min(max(desired, min_replicas), max_replicas)",
                         "max(desired, min_replicas)"), "rule_clamp"),
    (lambda s: s.replace("if current_metric is not None:", "if True:"), "rule_zero_missing"),
])
def test_each_variant_loses_exactly_its_rule(tmp_path, grading_image, change, lost):
    got = grade(tmp_path, grading_image, change(ANSWER))
    assert {gid for gid, v in got.items() if v.fraction < 1} == {lost}
    assert "cases wrong, e.g. desired_replicas(" in got[lost].message


@pytest.mark.parametrize(("change", "words"), [
    (lambda s: "import cloudlab\n" + s, "your own code"),
    # issue 18 item 5: in the grading image the workbook is installed, and still unreachable
    # (no word of 3669b86's list appears: each of these scored full marks there)
    (lambda s: s.replace("    desired = current_replicas\n", "    exec('imp' + 'ort clo' + "
                         "'udlab.hpa')\n    desired = current_replicas\n"),
     "standard library only"),
    (lambda s: s.replace("    desired = current_replicas\n", "    import sys\n    sys.path.append("
                         "'/opt/clo' + 'udlab-grader/lib')\n    exec('imp' + 'ort clo' + "
                         "'udlab')\n    desired = current_replicas\n"), "standard library only"),
    (lambda s: s.replace("    desired = current_replicas\n", "    open('/opt/clo' + 'udlab-grader/"
                         "lib/clo' + 'udlab/hpa.py').read()\n    desired = current_replicas\n"),
     "PermissionError"),
    (lambda s: s.replace('    """Replicas', "    while True: pass\n    \"\"\"Replicas"),
     "did not finish"),
    # the sandbox has no network, and the stdlib-only fence refuses TCP connections even
    # before that: the connection fails at once, nothing is sent
    (lambda s: "import socket\nsocket.create_connection(('10.0.0.1', 80), 2)\n" + s,
     "PermissionError"),
    (lambda s: s.replace("return int(", "return float("), "not an int"),
    (lambda s: "# YOUR CODE HERE\nraise NotImplementedError()", "not answered yet"),
])
def test_hostile_or_broken_functions_get_a_reason(tmp_path, grading_image, change, words):
    got = grade(tmp_path, grading_image, change(ANSWER))
    assert not any(v.fraction for v in got.values())
    assert all(words in v.message for v in got.values()), got


HONEST = '''
import decimal, math, statistics
from fractions import Fraction

def desired_replicas(current_replicas, current_metric, target_metric, min_replicas,
                     max_replicas):
    """Three standard-library modules with C parts (_decimal, _statistics): the fenced
    interpreter must still load them in the grading image."""
    want = current_replicas
    if current_metric is not None:
        if not Fraction(9, 10) <= Fraction(current_metric, target_metric) <= Fraction(11, 10):
            want = math.ceil(current_metric / target_metric * current_replicas)
    want = int(decimal.Decimal(want))
    return int(statistics.median([min_replicas, want, max_replicas]))
'''


def test_an_honest_standard_library_answer_passes_in_the_grading_image(tmp_path, grading_image):
    got = grade(tmp_path, grading_image, HONEST)
    assert {gid: v.fraction for gid, v in got.items()} == dict.fromkeys(IDS, 1.0), got
