"""The benchmarks' one convention: each writes ``bench/results/<name>.json``.

A result file is a JSON list of figures, each ``{figure, value, unit, target, met, note}``:
``target`` is a comparison such as ``"<= 2 s"`` (or null for a figure shown for context),
``met`` is true/false (null when there is no target or the bench was skipped).
``bench/report.py`` renders ``bench/REPORT.md`` and the plots from every file present.

>>> f = at_most("rebuild", 1.2, "s", 2, note="median of 3")
>>> f.target, f.met
('<= 2 s', True)
>>> at_least("ratio", 1.5, "x", 2).met
False
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Figure:
    figure: str
    value: float | str | None
    unit: str = ""
    target: str | None = None
    met: bool | None = None
    note: str = ""


def info(figure: str, value: float | str | None, unit: str = "", note: str = "") -> Figure:
    """A figure shown for context, with no target."""
    return Figure(figure, _round(value), unit, None, None, note)


def at_most(figure: str, value: float, unit: str, bound: float, note: str = "") -> Figure:
    """A figure whose target is ``value <= bound``."""
    return Figure(figure, _round(value), unit, f"<= {bound:g} {unit}".rstrip(),
                  bool(value <= bound), note)


def at_least(figure: str, value: float, unit: str, bound: float, note: str = "") -> Figure:
    """A figure whose target is ``value >= bound``."""
    return Figure(figure, _round(value), unit, f">= {bound:g} {unit}".rstrip(),
                  bool(value >= bound), note)


def holds(figure: str, ok: bool, note: str = "") -> Figure:
    """A yes/no figure whose target is yes."""
    return Figure(figure, "yes" if ok else "no", "", "yes", bool(ok), note)


def skipped(reason: str) -> list[Figure]:
    """What a bench records when it cannot run here (the report says why)."""
    return [Figure("skipped", None, "", None, None, reason)]


def _round(value: float | str | None) -> float | str | None:
    return round(value, 3) if isinstance(value, float) else value


def save(name: str, figures: list[Figure], folder: Path = RESULTS) -> int:
    """Write ``<folder>/<name>.json``, print the figures; 1 when a target was missed."""
    if not figures:
        raise ValueError(f"{name}: a bench must record at least one figure (or skipped(...))")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps([asdict(f) for f in figures], indent=1) + "\n")
    width = max(len(f.figure) for f in figures)
    for f in figures:
        value = "" if f.value is None else f"{f.value} {f.unit}".strip()
        mark = {True: "  [met]", False: "  [MISSED]", None: ""}[f.met]
        target = f"  (target {f.target})" if f.target else ""
        note = f"  - {f.note}" if f.note else ""
        print(f"{f.figure:<{width}}  {value}{target}{mark}{note}")
    missed = [f.figure for f in figures if f.met is False]
    print(f"{name}: {'missed: ' + ', '.join(missed) if missed else 'no target missed'}"
          f" -> {path}")
    return 1 if missed else 0
