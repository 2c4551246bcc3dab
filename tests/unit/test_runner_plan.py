"""The order ``make run`` starts the chapter's notebooks in, two at a time."""

from __future__ import annotations

import json

from cloudlab import runner


def test_a_machine_with_no_record_starts_the_longest_notebook_first(tmp_path, monkeypatch):
    """A fresh machine's first ``make run`` still starts 07 first (it is the longest, and
    started in alphabetical order it ran last beside the others: 413 s for the chapter
    instead of about 350 s)."""
    monkeypatch.setattr(runner, "_seconds_file", lambda: tmp_path / "none.json")
    measured = json.loads(runner.MEASURED.read_text())
    assert set(measured) == {nb.name for nb in runner.notebooks()}
    plan = [nb.name for nb in runner.longest_first(runner.notebooks())]
    assert plan[0] == max(measured, key=measured.get) == "07-kubernetes.ipynb"


def test_this_machines_own_record_comes_before_the_measured_figures(tmp_path, monkeypatch):
    record = tmp_path / "seconds.json"
    record.write_text(json.dumps({"12-reliability-and-dr.ipynb": 999.0}))
    monkeypatch.setattr(runner, "_seconds_file", lambda: record)
    assert runner.longest_first(runner.notebooks())[0].name == "12-reliability-and-dr.ipynb"
