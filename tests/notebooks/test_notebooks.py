"""Notebook tier: every chapter notebook runs headless, and what its prose claims about its
outputs holds on the executed copy (claims.py); one regression notebook is diffed."""

from pathlib import Path

import pytest
from pytest_notebook.nb_regression import NBRegressionFixture

from cloudlab import runner
from tests.conftest import machine_lock
from tests.notebooks.claims import verify as verify_claims

HERE = Path(__file__).parent
CHAPTERS = runner.notebooks()


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_notebook_runs_headless(notebook, tmp_path, docker_engine):
    with machine_lock(runner.shares(notebook)):
        result = runner.execute(notebook, {"ci": True}, out_dir=tmp_path, progress=False)
    assert result.status == "passed", f"{notebook.name}: {result.error}"
    verify_claims(notebook.stem, result.output)  # read from this run, not a second one


def test_library_output_matches_the_regression_notebook():
    fixture = NBRegressionFixture(
        exec_timeout=120,
        diff_ignore=("/metadata/language_info", "/cells/*/outputs/*/traceback"),
        diff_replace=(("/cells/*/outputs/*/text", r"\d{8}-\d{6}-[0-9a-f]{4}", "RUN_ID"),),
        diff_color_words=False,
        diff_use_color=False,
    )
    fixture.check(str(HERE / "fixtures" / "regression.ipynb"))
