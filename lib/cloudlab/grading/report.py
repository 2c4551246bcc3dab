"""The instructor's report of one assignment: where the class struggles, what went wrong.

``cloudlab grade report ASSIGNMENT`` reads the per-submission results (``course/results/``,
written by autograde) and the source notebooks, and writes ``course/reports/<name>.json``
and ``<name>.html`` beside it (plots embedded as PNG data URIs, one self-contained file):

* the distribution of final scores (after the late policy);
* the pass rate of every graded item, the hidden rules included (marked);
* the most common failure messages, grouped (numbers and quoted values folded), with a
  count and an example each;
* submissions that timed out, crashed or were invalid, with the reason;
* flags: tamper attempts and forbidden imports (the precheck's), and refusals (a
  Dockerfile, manifest or config the graders would not run);
* environment errors (the grader's or the machine's fault, not the student's) apart;
* grading time; late submissions; pairs of similar submissions (to look at, never a penalty).

Everything a student wrote (messages, reasons, names) is escaped on the page.

>>> group_key("expected 5, found 'abc' after 3.5 s")
"expected N, found '…' after N s"
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from .course import Course
from .results import Result

ENVIRONMENT = re.compile(
    r"pre-grade check \S+ failed|the grader of \S+ failed|no trusted grader|"
    r"the grader failed on this submission|the grading worker died|"
    r"gradebook could not be reset|not a fraction in \[0, 1\]|probe stage|"
    r"no trusted verdict|the trusted probe run failed|ImageNotFound|No such image|"
    r"Cannot connect to the Docker daemon", re.I)
REFUSAL = re.compile(r"\brefus(ed|es)\b|not allowed here|is not on the allow-list", re.I)
TOP_FAILURES = 15


def group_key(message: str) -> str:
    """A failure message with its particulars folded, so that alike failures group."""
    text = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", "'…'", message.strip())
    text = re.sub(r"\b0x[0-9a-f]+\b|\b\d+(\.\d+)?\b", "N", text)
    return re.sub(r"\s+", " ", text)[:300]


def load(course: Course, assignment: str) -> list[Result]:
    folder = course.results / assignment
    return [Result.load(p) for p in sorted(folder.glob("*.json"))]


def hidden_items(course: Course, assignment: str) -> set[str]:
    """Grade ids of hidden rules: test cells the student sees no check in (only comments
    once the hidden-test region is taken out; the graders hold the whole test)."""
    from .release import _HIDDEN_REGION

    found: set[str] = set()
    for path in sorted((course.source / assignment).glob("*.ipynb")):
        for cell in json.loads(path.read_text()).get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            src = cell.get("source", "")
            src = _HIDDEN_REGION.sub("", "".join(src) if isinstance(src, list) else src)
            if not any(line.strip() and not line.strip().startswith("#")
                       for line in src.splitlines()):
                found.add(meta.get("grade_id"))
    return found


def build(course: Course, assignment: str, *, similar: bool = True) -> dict:
    """The report's data (what the JSON holds and the page shows)."""
    results = load(course, assignment)
    hidden = hidden_items(course, assignment)
    items: dict[tuple[str, str], dict] = {}
    groups: dict[tuple[str, str], dict] = {}
    environment, flags, problems, late = [], [], [], []
    for r in results:
        if r.status != "graded":
            problems.append({"student": r.student, "status": r.status, "reason": r.reason})
        for flag in r.flags:
            flags.append({"student": r.student, "kind": "flagged", "what": flag})
        if r.failure.startswith("environment") or (r.reason and ENVIRONMENT.search(r.reason)):
            environment.append({"student": r.student, "item": "", "message": r.reason})
        if r.late_seconds > 0:
            late.append({"student": r.student, "hours": round(r.late_seconds / 3600, 2),
                         "penalty": r.late_penalty})
        for t in r.tests:
            item = items.setdefault((t.notebook, t.name), {
                "notebook": t.notebook, "item": t.name, "points": t.points,
                "hidden": t.name in hidden, "passed": 0, "graded": 0})
            if r.status != "graded" and not t.passed:
                continue  # the whole submission failed: says nothing about this item
            if not t.passed and ENVIRONMENT.search(t.message):
                environment.append({"student": r.student, "item": t.name,
                                    "message": t.message})
                continue  # the grader's failure, not the student's
            item["graded"] += 1
            item["passed"] += bool(t.passed)
            if t.passed or not t.message:
                continue
            if REFUSAL.search(t.message):
                flags.append({"student": r.student, "kind": f"refused ({t.name})",
                              "what": t.message})
            g = groups.setdefault((t.name, group_key(t.message)), {
                "item": t.name, "message": group_key(t.message), "example": t.message,
                "example_student": r.student, "count": 0})
            g["count"] += 1
    for item in items.values():
        item["pass_rate"] = round(item["passed"] / item["graded"], 3) if item["graded"] else None
    finals = [max(0.0, r.score - r.late_penalty) for r in results]
    seconds = [r.seconds for r in results]
    data = {
        "assignment": assignment,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "submissions": len(results),
        "statuses": dict(Counter(r.status for r in results)),
        "max_score": max((r.max_score for r in results), default=0.0),
        "scores": [{"student": r.student, "status": r.status, "score": r.score,
                    "late_penalty": r.late_penalty, "final": round(f, 4),
                    "seconds": r.seconds} for r, f in zip(results, finals, strict=True)],
        "summary": _summary(finals),
        "items": sorted(items.values(), key=lambda i: (i["notebook"], i["item"])),
        "failures": sorted(groups.values(), key=lambda g: (-g["count"], g["item"]))
        [:TOP_FAILURES],
        "problems": problems,
        "flags": flags,
        "environment": environment,
        "timing": {**_summary(seconds), "total": round(sum(seconds), 2),
                   "slowest": sorted(({"student": r.student, "seconds": r.seconds}
                                      for r in results), key=lambda x: -x["seconds"])[:5]},
        "late": late,
        "similar": [],
    }
    if similar:
        from .similarity import similar as pairs

        data["similar"] = [{"a": p.a, "b": p.b, "similarity": p.similarity,
                            "shared": p.shared, "parts": p.parts}
                           for p in pairs(course, assignment)]
    return data


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": round(statistics.fmean(values), 2),
            "median": round(statistics.median(values), 2), "min": min(values),
            "max": max(values)}


# the page ------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem} td,th{border-bottom:1px solid
#ddd;padding:.35rem;text-align:left;vertical-align:top} .plots{display:flex;flex-wrap:wrap;
gap:1rem;align-items:flex-start} .plots img{max-width:32rem;height:auto;
border:1px solid #eee} .hidden{color:#8a5300}
pre{white-space:pre-wrap;margin:0;font-size:.85rem} .none{color:#666}
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(data: dict) -> dict[str, str]:
    """Score distribution, pass rate per item and grading time, as PNG data URIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out: dict[str, str] = {}
    finals = [s["final"] for s in data["scores"]]
    top = data["max_score"] or max(finals, default=1) or 1
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist(finals, bins=min(20, max(5, int(top) + 1)), range=(0, top), color="#3b6ea8",
            edgecolor="white")
    ax.set(title="Final scores", xlabel=f"points (of {top:g})", ylabel="submissions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    out["scores"] = _png(fig)
    items = [i for i in data["items"] if i["pass_rate"] is not None]
    fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.32 * max(1, len(items))))
    names = [i["item"] + (" (hidden)" if i["hidden"] else "") for i in items]
    ax.barh(names, [100 * i["pass_rate"] for i in items],
            color=["#c77c02" if i["hidden"] else "#3b8a4a" for i in items])
    ax.set(title="Pass rate per item", xlabel="% of graded submissions", xlim=(0, 100))
    ax.invert_yaxis()
    out["items"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist([s["seconds"] for s in data["scores"]], bins=15, color="#7a5ca8",
            edgecolor="white")
    ax.set(title="Grading time", xlabel="seconds per submission", ylabel="submissions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    out["time"] = _png(fig)
    return out


def _table(rows: list[dict], columns: list[tuple[str, str]], empty: str) -> str:
    if not rows:
        return f"<p class=none>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in columns)
    body = "".join("<tr>" + "".join(f"<td><pre>{html.escape(str(row.get(key, '')))}</pre></td>"
                                    for _, key in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(data: dict, images: dict[str, str]) -> str:
    e = html.escape
    s, t = data["summary"], data["timing"]
    statuses = ", ".join(f"{n} {e(k)}" for k, n in sorted(data["statuses"].items()))
    items = [{**i, "rate": "-" if i["pass_rate"] is None else f"{100 * i['pass_rate']:.0f}%",
              "kind": "hidden rule" if i["hidden"] else "visible",
              "count": f"{i['passed']}/{i['graded']}"} for i in data["items"]]
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{e(data['assignment'])} - "
        f"grading report</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(data['assignment'])}: grading report</h1>",
        f"<p>{data['submissions']} submission(s): {statuses or 'none'}. Final score mean "
        f"{s.get('mean', '-')}, median {s.get('median', '-')} of {data['max_score']:g}. "
        f"Generated {e(data['generated'])}.</p>",
        "<div class=plots>" + "".join(
            f"<img id=plot-{k} alt='{e(k)} plot' src='{v}'>" for k, v in images.items())
        + "</div>",
        "<h2>Pass rate per item</h2>",
        _table(items, [("item", "item"), ("notebook", "notebook"), ("kind", "kind"),
                       ("points", "points"), ("passed", "count"), ("pass rate", "rate")],
               "no graded items"),
        "<h2>Most common failures</h2>",
        _table(data["failures"], [("item", "item"), ("count", "count"),
                                  ("message (grouped)", "message"),
                                  ("example", "example"), ("from", "example_student")],
               "no failures"),
        "<h2>Timed out, crashed, invalid</h2>",
        _table(data["problems"], [("student", "student"), ("status", "status"),
                                  ("reason", "reason")], "every submission was graded"),
        "<h2>Flags</h2>",
        _table(data["flags"], [("student", "student"), ("kind", "kind"), ("what", "what")],
               "nothing flagged"),
        "<h2>Environment errors (not the student's)</h2>",
        _table(data["environment"], [("student", "student"), ("item", "item"),
                                     ("message", "message")], "none"),
        "<h2>Late submissions</h2>",
        _table(data["late"], [("student", "student"), ("hours late", "hours"),
                              ("penalty (points)", "penalty")], "none late"),
        "<h2>Similar submissions (to look at, never a penalty)</h2>",
        _table([{**p, "similarity": f"{100 * p['similarity']:.0f}%",
                 "parts": ", ".join(p["parts"])} for p in data["similar"]],
               [("student", "a"), ("student", "b"), ("alike", "similarity"),
                ("shared fingerprints", "shared"), ("where", "parts")],
               "no pair stands out"),
        "<h2>Grading time</h2>",
        f"<p>{t.get('total', 0):g} s in all; per submission mean {t.get('mean', '-')} s, "
        f"median {t.get('median', '-')} s, longest {t.get('max', '-')} s.</p>",
        _table(t.get("slowest", []), [("student", "student"), ("seconds", "seconds")], ""),
        "</body></html>",
    ]
    return "\n".join(parts)


def write(course: Course, assignment: str, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``<out>/<assignment>.html`` and ``.json`` (default ``course/reports``)."""
    from ..errors import CloudlabError

    if not (course.results / assignment).is_dir():
        raise CloudlabError(f"no results for {assignment!r} in {course.results} "
                            "(autograde first: cloudlab grade autograde)")
    folder = Path(out) if out else course.state / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    data = build(course, assignment)
    page = folder / f"{assignment}.html"
    page.write_text(render(data, plots(data)))
    (folder / f"{assignment}.json").write_text(json.dumps(data, indent=1))
    return page, folder / f"{assignment}.json"

