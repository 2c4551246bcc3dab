"""Notebook 07's claims, read from its executed outputs (ci=True): the HPA's replicas rise
and fall; on the real node, the Service answers from several pods, a held rollout keeps
serving the old version, and nothing is left on the machine afterwards."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from cloudlab import runner

NOTEBOOK = next(p for p in runner.notebooks() if p.stem == "07-kubernetes")


@pytest.fixture(scope="module")
def text(tmp_path_factory, docker_engine) -> str:
    result = runner.execute(NOTEBOOK, {"ci": True}, out_dir=tmp_path_factory.mktemp("nb07"),
                            progress=False)
    assert result.status == "passed", result.error
    return outputs(result.output)


def outputs(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream")


def test_the_hpa_scales_up_and_back_down(text):
    if "skipped: this section" in text or "using the None backend" in text:
        pytest.skip("no kwok cluster here: the HPA section was skipped")
    found = re.search(r"replicas: from (\d+) up to (\d+), back down to (\d+)", text)
    assert found, "the HPA cell printed no replica summary"
    first, peak, last = map(int, found.groups())
    assert peak > first and last < peak
    warnings = re.search(r"FailedGetResourceMetric warnings: (\d+)", text)
    assert warnings


def test_real_pods_answer_and_leave_nothing(text):
    if "with a real node: pods really run" not in text:
        pytest.skip("no real node here (the notebook ran on kwok's simulated pods)")
    answered = re.search(r"answered by: (\{.*\})", text)
    assert answered and len(ast.literal_eval(answered.group(1))) > 1
    held = re.search(r"while the rollout is held: (\{.*\})", text)
    assert held and ast.literal_eval(held.group(1)) == {"v1"}
    assert "left by the real node: nothing" in text
    assert "processes still alive: none" in text
