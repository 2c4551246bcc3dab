"""cloudlab.lint: hadolint findings as a table with rule links."""

import pytest

from cloudlab import lint


def test_findings_have_lines_levels_and_rule_links():
    found = lint.lint("FROM python:3.11-slim\nRUN pip install click\nCMD python app.py\n")
    assert list(found.columns) == lint.COLUMNS
    assert set(found["code"]) == {"DL3013", "DL3042", "DL3025"}
    row = found[found["code"] == "DL3025"].iloc[0]
    assert row["line"] == 3 and row["level"] == "warning"
    assert row["rule"] == "https://github.com/hadolint/hadolint/wiki/DL3025"
    assert lint.passes(found, "error") and not lint.passes(found, "warning")


def test_shell_findings_link_to_shellcheck_and_ignore_works(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:3.11-slim\nRUN echo $HOME\n")
    found = lint.lint(path)
    assert "https://www.shellcheck.net/wiki/SC2086" in set(found["rule"])
    assert lint.lint(tmp_path, ignore=["SC2086"]).empty  # a folder means its Dockerfile


def test_a_syntax_error_is_an_error_level_finding():
    found = lint.lint("FORM python:3.11-slim\nRUN true\n")
    assert found.iloc[0]["code"] == "DL1000" and found.iloc[0]["level"] == "error"
    assert not lint.passes(found)


def test_html_table_links_each_rule():
    html = lint.table(lint.lint("FROM python:3.11-slim\nCMD python app.py\n"))
    assert "<a href='https://github.com/hadolint/hadolint/wiki/DL3025'" in html
    assert "no findings" in lint.table(lint.lint("FROM python:3.11-slim\n"))


def test_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Dockerfile at"):
        lint.lint(tmp_path / "missing")
    with pytest.raises(ValueError, match="not one of"):
        lint.passes(lint.lint("FROM x\n"), "fatal")
