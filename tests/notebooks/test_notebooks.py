"""Notebook tier: every chapter notebook runs headless, and what its prose claims about its
outputs holds on the executed copy (claims.py); one regression notebook is diffed.

A notebook never fails because a backend is missing: it prints a skip line and runs the
rest. So "papermill finished" proves little: a backend that silently broke (moto that
would not start, say) gives the same green run. Each skip line a notebook prints must
therefore name a component that ``cloudlab doctor`` reports as missing on this machine
(under ``CLOUDLAB_STRICT=1``: one that no setup here can provide).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_notebook.nb_regression import NBRegressionFixture

from cloudlab import CloudlabError, config, doctor, engine, runner, services
from tests.conftest import STRICT, free_port, machine_lock
from tests.notebooks.claims import verify as verify_claims

HERE = Path(__file__).parent
CHAPTERS = runner.notebooks()

SKIP_LINE = re.compile(r"\bskipped\b|\bnot available\b|\bcannot run here\b", re.IGNORECASE)
# doctor component -> what a skip line caused by it mentions
MENTIONS = {
    "Docker engine": r"docker(?![-\w])|engine",
    "base image": r"base image|bootstrap",
    "Python packages": r"package|pip install",
    "service: moto": r"moto|\bAWS\b",
    "AWS mode": r"\bAWS\b|credentials",
    "service: registry": r"registry",
    "service: prometheus": r"prometheus",
    "service: alertmanager": r"alertmanager",
    "hadolint": r"hadolint|lint",
    "promtool": r"promtool",
    "amtool": r"amtool",
    "qemu-system-x86_64": r"qemu|\bVM\b",
    "mmdebstrap": r"mmdebstrap",
    "kubectl": r"kubectl",
    "kubernetes: kwok": r"kwok|cluster|kubernetes",
    "kubernetes: kind": r"\bkind\b|cluster",
    "kubernetes: kubeconfig": r"kubeconfig|cluster",
    "BuildKit (buildx)": r"buildkit|buildx",
    "GPU runtime": r"GPU|nvidia",
    "Docker Hub reachable": r"Docker Hub",
}
# what no setup of this machine provides: the only skips strict mode accepts
# (BuildKit is not among them: setup builds the buildx plugin, scripts/setup_buildkit.sh)
OUTSIDE = {"GPU runtime", "kubernetes: kind", "kubernetes: kubeconfig", "Docker Hub reachable"}
ALWAYS_OUTSIDE = re.compile(r"Docker Hub|real AWS|real ECR|ECR needs real AWS", re.IGNORECASE)


@pytest.fixture(scope="module", autouse=True)
def course_services(tmp_path_factory) -> Iterator[config.Settings]:
    """The course services the notebooks start (moto, the registry, Prometheus,
    Alertmanager) on free ports with a state folder of this run, stopped at the end: the
    tier never meets, nor leaves behind, the services of a checkout that is in use (a
    `make run` elsewhere holds 5000 and 5050, and a kernel inherits these variables)."""
    private = {"CLOUDLAB_STATE_DIR": str(tmp_path_factory.mktemp("course-state")),
               **{f"CLOUDLAB_{name.upper()}_PORT": str(free_port())
                  for name in ("moto", "registry", "prometheus", "alertmanager")}}
    with pytest.MonkeyPatch.context() as env:
        for var, value in private.items():
            env.setenv(var, value)
        cfg = config.load()
        try:
            yield cfg
        finally:
            services.down(cfg=cfg)


@pytest.fixture(scope="session")
def missing() -> set[str]:
    """The doctor's components that are not ok here, once the engine was given its chance
    (``engine.up`` starts dockerd when it can; a machine without one still runs every
    notebook, which then says what it skipped)."""
    with contextlib.suppress(CloudlabError):
        engine.up()
    return {row.component for row in doctor.check().rows if not row.ok}


def skip_lines(executed: Path) -> list[str]:
    """The printed lines of an executed notebook that say something was skipped."""
    lines = []
    for cell in json.loads(executed.read_text())["cells"]:
        # one cell's stream outputs joined first: a line can arrive in two pieces
        # ("skipped:" and its reason, flushed apart)
        text = "".join("".join(t) if isinstance(t := out.get("text", ""), list) else t
                       for out in cell.get("outputs", []))
        lines += [line.strip() for line in text.splitlines() if SKIP_LINE.search(line)]
    return lines


def unexplained(lines: list[str], missing: set[str], strict: bool = False) -> list[str]:
    """The skip lines that name no missing component (under ``strict``: no component
    that is missing for good reasons beyond this machine).

    >>> unexplained(["skipped: moto exited with code 1"], {"GPU runtime"})
    ['skipped: moto exited with code 1']
    >>> unexplained(["skipped: no Docker engine"], {"Docker engine"})
    []
    >>> unexplained(["skipped: no Docker engine"], {"Docker engine"}, strict=True)
    ['skipped: no Docker engine']
    """
    allowed = (missing & OUTSIDE) if strict else missing
    return [line for line in lines
            if not ALWAYS_OUTSIDE.search(line)
            and not any(re.search(MENTIONS.get(c, re.escape(c)), line, re.IGNORECASE)
                        for c in allowed)]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_notebook_runs_headless(notebook, tmp_path, missing):
    with machine_lock(runner.shares(notebook)):
        result = runner.execute(notebook, {"ci": True}, out_dir=tmp_path, progress=False)
    assert result.status == "passed", f"{notebook.name}: {result.error}"
    verify_claims(notebook.stem, result.output)  # read from this run, not a second one
    wrong = unexplained(skip_lines(result.output), missing, STRICT)
    assert not wrong, (f"{notebook.name} skipped something that `cloudlab doctor` reports "
                       f"as available{' (or that setup could provide)' if STRICT else ''}: "
                       f"{wrong}; missing here: {sorted(missing) or 'nothing'}")


def test_a_skip_line_for_a_working_backend_is_caught(tmp_path):
    """The check above, on a notebook whose AWS cell skipped though moto is fine."""
    executed = tmp_path / "nb.ipynb"
    executed.write_text(json.dumps({"cells": [
        {"cell_type": "code", "outputs": [
            {"output_type": "stream", "name": "stdout",
             "text": ["AWS mode : local -> ok, moto\n", "skipped: moto exited with code 2\n"]}]},
    ]}))
    assert skip_lines(executed) == ["skipped: moto exited with code 2"]
    assert unexplained(skip_lines(executed), {"GPU runtime"}) == \
        ["skipped: moto exited with code 2"]
    assert unexplained(skip_lines(executed), {"service: moto"}) == []
    # a line flushed in two pieces is read whole
    executed.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "skipped:"},
        {"output_type": "stream", "name": "stdout", "text": " Docker Hub is not reachable\n"}]}]}))
    assert skip_lines(executed) == ["skipped: Docker Hub is not reachable"]
    assert unexplained(skip_lines(executed), set(), strict=True) == []


def test_library_output_matches_the_regression_notebook():
    fixture = NBRegressionFixture(
        exec_timeout=120,
        diff_ignore=("/metadata/language_info", "/cells/*/outputs/*/traceback"),
        diff_replace=(("/cells/*/outputs/*/text", r"\d{8}-\d{6}-[0-9a-f]{4}", "RUN_ID"),),
        diff_color_words=False,
        diff_use_color=False,
    )
    fixture.check(str(HERE / "fixtures" / "regression.ipynb"))
