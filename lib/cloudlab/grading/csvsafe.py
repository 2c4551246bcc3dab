"""CSV cells no spreadsheet evaluates (OWASP "CSV Injection").

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a
formula to Excel, LibreOffice and Google Sheets; it gets a leading single quote. Numbers
are left alone (a negative score is a number, not a formula).

>>> cell("=HYPERLINK(\\"http://x\\")"), cell("-2+3"), cell("\\rx"), cell(-2.5), cell("ada")
('\\'=HYPERLINK("http://x")', "'-2+3", "'\\rx", -2.5, 'ada')
"""

from __future__ import annotations

from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """``value`` made safe to open in a spreadsheet (strings only; numbers unchanged)."""
    if isinstance(value, str) and value.startswith(TRIGGERS):
        return "'" + value
    return value


def row(values: dict[str, Any]) -> dict[str, Any]:
    """Every cell of a ``csv.DictWriter`` row made safe."""
    return {k: cell(v) for k, v in values.items()}
