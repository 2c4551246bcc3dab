from pathlib import Path

from cloudlab import cli, doctor, runner


def test_report_is_ok_only_when_required_rows_are():
    rows = (doctor.Row("a", True, "fine"), doctor.Row("kind", False, "absent", "get it",
                                                       required=False))
    assert doctor.Report(rows).ok
    bad = doctor.Report((*rows, doctor.Row("Docker engine", False, "no engine", "start it")))
    assert not bad.ok
    assert [r.component for r in bad.missing] == ["Docker engine"]
    text = bad.table()
    assert "MISSING" in text and "start it" in text and "1 required component(s) missing" in text
    assert "<table>" in bad._repr_html_()


def test_summary_table_lists_each_notebook():
    results = [runner.Result("00-a.ipynb", "passed", 1.25, Path("x")),
               runner.Result("01-b.ipynb", "failed", 2.0, Path("y"), "cell 3: ValueError: no")]
    text = runner.summary(results)
    assert "00-a.ipynb" in text and "passed" in text and "1.2" in text
    assert "cell 3: ValueError: no" in text
    assert "1/2 notebooks passed" in text


def test_cli_knows_its_commands():
    p = cli.parser()
    assert p.parse_args(["services", "up", "moto"]).names == ["moto"]
    assert p.parse_args(["run", "--full"]).full is True
