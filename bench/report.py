"""Render ``bench/REPORT.md`` and one PNG plot per bench from ``bench/results/*.json``.

Every figure appears with its target and whether it was met; benches that left no result
(not run, or crashed) are listed as such. Exits 1 when a target was missed.

    .venv/bin/python bench/report.py          # after the bench scripts (make bench does both)
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS, PLOTS, REPORT = HERE / "results", HERE / "plots", HERE / "REPORT.md"
ORDER = ("notebooks", "grading", "docker_images", "vm_vs_container")
MARK = {True: "met", False: "**MISSED**", None: ""}
COLOUR = {True: "#1a7f37", False: "#cf222e", None: "#8c959f"}


def load(folder: Path = RESULTS) -> dict[str, list[dict]]:
    """Each bench's figures, in a stable order (the main four first, then by name)."""
    found = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def scripts() -> list[str]:
    """The bench scripts in this folder (everything but this renderer and helpers)."""
    return sorted(p.stem for p in HERE.glob("[a-z]*.py") if p.stem != "report")


def plot(name: str, figures: list[dict], folder: Path = PLOTS) -> Path | None:
    """Horizontal bars of the numeric figures, one panel per unit, coloured by target."""
    numeric = [f for f in figures if isinstance(f["value"], int | float)
               and not isinstance(f["value"], bool)]
    if not numeric:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(f["unit"] for f in numeric))
    heights = [len([f for f in numeric if f["unit"] == u]) for u in units]
    fig, axes = plt.subplots(len(units), 1, squeeze=False,
                             figsize=(8, 1.2 + 0.45 * sum(heights) + 0.6 * len(units)),
                             gridspec_kw={"height_ratios": heights})
    for ax, unit in zip(axes[:, 0], units, strict=True):
        rows = [f for f in numeric if f["unit"] == unit][::-1]
        ax.barh([f["figure"] for f in rows], [f["value"] for f in rows],
                color=[COLOUR[f["met"]] for f in rows])
        for i, f in enumerate(rows):
            bound = re.match(r"[<>]=\s*([\d.]+)", f["target"] or "")
            if bound:
                ax.plot([float(bound.group(1))] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
        ax.set_xlabel(unit or "value")
    axes[0, 0].set_title(f"{name}: green met, red missed, grey no target; | = target")
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _value(figures: list[dict], prefix: str) -> float | None:
    found = next((f["value"] for f in figures if f["figure"].startswith(prefix)), None)
    return float(found) if isinstance(found, int | float) else None


def capacity(figures: list[dict], students: tuple[int, ...] = (300, 3000),
             node_cpus: int = 4, window_min: float = 15) -> list[str]:
    """The capacity note under ``grading_k8s``: nodes and time for a class, from this
    run's per-submission cost and scheduling rate (nodes of ``node_cpus`` CPUs, one
    submission per student).

    >>> capacity([{"figure": "kubernetes: pod CPU-seconds per submission", "value": 6.0},
    ...           {"figure": "kubernetes: seconds per submission (median)", "value": 9.0},
    ...           {"figure": "simulation: pods placed per second", "value": 20.0}])[4]
    '| 300 | 1800 | 1 | 7.5 min | 7.7 min |'
    """
    cost = _value(figures, "kubernetes: pod CPU-seconds per submission")
    wall = _value(figures, "kubernetes: seconds per submission")
    rate = _value(figures, "simulation: pods placed per second")
    if cost is None or wall is None:
        return ["Capacity: no per-submission figures in this run (the same-batch part needs "
                "the real node)."]
    lines = [f"**Capacity** at this workbook's measured cost ({cost:g} pod CPU-seconds and "
             f"{wall:g} s per submission), on nodes of {node_cpus} CPUs, one submission per "
             f"student, to grade within {window_min:g} minutes:", "",
             "| students | CPU-seconds | nodes | time on 1 node | time on those nodes |",
             "|---|---|---|---|---|"]
    for n in students:
        work = n * cost
        nodes = max(1, -(-int(work) // int(node_cpus * window_min * 60)))
        placing = n / rate if rate else 0.0
        on_nodes = max(work / (nodes * node_cpus), placing) + wall
        lines.append(f"| {n} | {work:.0f} | {nodes} | {work / node_cpus / 60:.1f} min | "
                     f"{on_nodes / 60:.1f} min |")
    if rate:
        lines += ["", f"Placing the pods is not the limit: the control plane placed "
                  f"{rate:g} pods/s in the simulation ({students[-1]} pods in "
                  f"{students[-1] / rate:.0f} s)."]
    return lines


NOTES = {"grading_k8s": capacity}


def render(results: dict[str, list[dict]], expected: list[str], results_dir: Path = RESULTS,
           plots_dir: Path = PLOTS) -> str:
    """The Markdown report (plots written to ``plots_dir``, linked relative to it)."""
    every = [f for figures in results.values() for f in figures]
    met = sum(f["met"] is True for f in every)
    missed = [f"{name}: {f['figure']}" for name, figures in results.items()
              for f in figures if f["met"] is False]
    lines = [
        "# Benchmark report",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores. "
        f"{len(every)} figures: {met} targets met, {len(missed)} missed, "
        f"{len(every) - met - len(missed)} without a target.",
        "",
    ]
    if missed:
        lines += ["Missed: " + "; ".join(missed), ""]
    absent = [name for name in expected if name not in results]
    if absent:
        lines += ["No results from: " + ", ".join(f"`bench/{n}.py`" for n in absent)
                  + " (not run, or it crashed: run it alone to see why).", ""]
    for name, figures in results.items():
        when = time.strftime("%Y-%m-%d %H:%M UTC",
                             time.gmtime((results_dir / f"{name}.json").stat().st_mtime))
        lines += [f"## {name}", "", f"`bench/{name}.py`, measured {when}.", ""]
        png = plot(name, figures, plots_dir)
        if png is not None:
            lines += [f"![{name}]({plots_dir.name}/{png.name})", ""]
        lines += ["| figure | value | target | met | note |", "|---|---|---|---|---|"]
        for f in figures:
            value = "" if f["value"] is None else f"{f['value']} {f['unit']}".strip()
            lines.append(f"| {_cell(f['figure'])} | {_cell(value)} | {_cell(f['target'] or '')}"
                         f" | {MARK[f['met']]} | {_cell(f['note'])} |")
        lines.append("")
        if name in NOTES:
            lines += [*NOTES[name](figures), ""]
    return "\n".join(lines)


def main() -> int:
    results = load()
    if not results:
        print("no results in bench/results/: run the bench scripts first (make bench)")
        return 1
    REPORT.write_text(render(results, scripts()))
    missed = sum(f["met"] is False for figures in results.values() for f in figures)
    print(f"wrote {REPORT} and {len(list(PLOTS.glob('*.png')))} plots in {PLOTS}"
          f" ({missed} target(s) missed)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
