"""The benchmarks' convention: figures saved as JSON, rendered into one report with plots."""

import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import _report
import report


def test_targets_are_judged_and_saved_as_a_list_of_figures(tmp_path, capsys):
    figures = [_report.at_most("rebuild", 2.5, "s", 2, "median of 3"),
               _report.at_least("ratio", 2.25, "x", 2), _report.info("size", 145.0, "MB"),
               _report.holds("same scores", True)]
    assert _report.save("demo", figures, folder=tmp_path) == 1  # one target missed
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert [f["met"] for f in saved] == [False, True, None, True]
    assert saved[0] == {"figure": "rebuild", "value": 2.5, "unit": "s", "target": "<= 2 s",
                        "met": False, "note": "median of 3"}
    assert "[MISSED]" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least one figure"):
        _report.save("empty", [], folder=tmp_path)


def test_report_shows_each_target_skips_and_missing_benches(tmp_path):
    results, plots = tmp_path / "results", tmp_path / "plots"
    _report.save("fast", [_report.at_most("boot", 1.0, "s", 2),
                          _report.at_least("speed-up", 1.5, "x", 2)], folder=results)
    _report.save("cluster", _report.skipped("no kwok binaries here"), folder=results)
    text = report.render(report.load(results), ["fast", "cluster", "absent"], results, plots)
    assert "| boot | 1.0 s | <= 2 s | met |" in text
    assert "| speed-up | 1.5 x | >= 2 x | **MISSED** |" in text
    assert "no kwok binaries here" in text
    assert "`bench/absent.py`" in text and "Missed: fast: speed-up" in text
    assert (plots / "fast.png").stat().st_size > 0 and not (plots / "cluster.png").exists()
    assert "![fast](plots/fast.png)" in text


def test_make_test_times_report_the_newest_passing_run_of_each_kind(tmp_path):
    import test_times

    times = tmp_path / "test-times.jsonl"
    assert test_times.main(times)[0].figure == "skipped"
    rows = [{"finished": 1, "pytest_s": 900, "total_s": 960, "fresh": False, "passed": True,
             "checkout": "/a"},
            {"finished": 2, "pytest_s": 700, "total_s": 730, "fresh": False, "passed": False,
             "checkout": "/a"},
            {"finished": 3, "pytest_s": 1300, "total_s": 1330, "fresh": False, "passed": True,
             "checkout": "/b"}]
    times.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    warm, with_setup, fresh = test_times.main(times)
    assert (warm.value, warm.met, warm.target) == (1300.0, False, "<= 1200 s")  # newest passing
    assert "/b" in warm.note and with_setup.value == 1330.0
    assert fresh.value is None and "no such run" in fresh.note
