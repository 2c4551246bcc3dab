"""The student edition: the workbook without solutions, hidden tests or course secrets.

The instructor's repository holds ``solutions/`` (answers and hidden tests), ``tests/``
and the grading state; serving it to students (``make lab``, Binder) would hand them the
answers. :func:`publish` copies only what students need into a folder of its own, checks
the copy, and can push it to a git remote that Binder and students use::

    cloudlab grade publish ../workbook-student --push git@host:course/workbook-student.git

What goes in: :data:`INCLUDE` (the notebooks, the released exercises, the library, Binder's
config, the data and what installs the library), and ``edition/README.md`` as the
edition's README: it speaks to students (open it, fetch, check, submit), not to the
instructor. Only files git tracks are copied when the course is a git checkout (no
outputs, caches or local state).

>>> report = publish(Course(), "/tmp/student-edition")        # doctest: +SKIP
>>> report.files > 0, report.problems                         # doctest: +SKIP
(True, [])
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CloudlabError
from ..proc import run
from .course import Course

INCLUDE = ("notebooks", "exercises", "lib", "binder", "data", "pyproject.toml",
           "environment.yml", "LICENSE")
STUDENT_README = Path("edition") / "README.md"
# owner/name of a GitHub repository (what the Binder link names) from a push URL
_GITHUB = re.compile(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$")
NEVER = re.compile(r"(^|/)(solutions|tests|course|\.cloudlab|\.venv|__pycache__|"
                   r"\.ipynb_checkpoints)(/|$)|(^|/)nbgrader_config\.py$|\.db$")
MARKERS = re.compile(r"### (BEGIN|END) (SOLUTION|HIDDEN TESTS)")
_REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)[ \t]*\n(.*?)### END \1", re.S)


class PublishError(CloudlabError):
    """The student edition could not be written, or would leak what it must not."""


@dataclass
class Report:
    dest: Path
    files: int = 0
    problems: list[str] = field(default_factory=list)
    pushed: str = ""

    def text(self) -> str:
        head = f"wrote the student edition to {self.dest}: {self.files} file(s)"
        if self.pushed:
            head += f"; pushed to {self.pushed}"
        return "\n".join([head, *(f"  LEAK {p}" for p in self.problems)])


def _tracked(root: Path) -> list[Path] | None:
    """Files git tracks under ``root`` (None when it is not a git checkout)."""
    if not (root / ".git").exists():
        return None
    try:
        out = run(["git", "-C", str(root), "ls-files", "-z", "--", *INCLUDE], timeout=60).stdout
    except Exception:
        return None
    return [Path(p) for p in out.split("\0") if p]


def _walk(root: Path) -> list[Path]:
    found = []
    for name in INCLUDE:
        top = root / name
        if top.is_file():
            found.append(Path(name))
        elif top.is_dir():
            found += [p.relative_to(root) for p in sorted(top.rglob("*")) if p.is_file()]
    return found


def secrets_of(course: Course) -> list[str]:
    """The strings of this course that must never reach students (passwords, keys,
    the classmate's message), read from the grading state."""
    found: list[str] = []
    folder = course.state / "registry"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        found += _strings(data)
    for path in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
        body = [line for line in path.read_text().splitlines() if "-----" not in line]
        found += [line for line in body if len(line) >= 32][:3]
    return [s for s in found if len(s) >= 8]


def _strings(data) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() if k in ("password", "message", "secret",
                                                     "passwords") or isinstance(v, dict | list)
                for s in _strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return []


def hidden_texts(course: Course) -> list[str]:
    """Every solution and hidden-test region of the instructor's notebooks, as text."""
    found: list[str] = []
    for path in sorted(course.source.rglob("*.ipynb")):
        try:
            nb = json.loads(path.read_text())
        except ValueError:
            continue
        for cell in nb.get("cells", []):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            found += [m.group(2).strip() for m in _REGION.finditer(src) if m.group(2).strip()]
    return found


def leaks(dest: Path, course: Course) -> list[str]:
    """What in ``dest`` should not be there: instructor folders, markers, solution or
    hidden-test regions, secrets. Empty when the edition is clean."""
    problems: list[str] = []
    regions = [(" ".join(r.split()), "a solution or hidden test") for r in hidden_texts(course)
               if len(" ".join(r.split())) >= 40]  # shorter ones are stated in the text
    hidden_lines = {line.strip() for r in hidden_texts(course) for line in r.splitlines()
                    if "trusted(" in line or "assert" in line}
    secrets = [(s, "a course secret") for s in secrets_of(course)]
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        rel = path.relative_to(dest).as_posix()
        if rel.startswith(".git/"):
            continue
        if NEVER.search(rel):
            problems.append(f"{rel}: instructor-only file")
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if rel.endswith(".ipynb"):
            text = _sources(text)
        flat = " ".join(text.replace("\\n", "\n").split())
        if rel.endswith(".ipynb") and MARKERS.search(text):  # code may name the markers
            problems.append(f"{rel}: contains a solution or hidden-test marker")
        for needle, what in regions + secrets:
            if needle and (needle in text or " ".join(needle.split()) in flat):
                problems.append(f"{rel}: contains {what}")
                break
        for line in hidden_lines:
            if line and line in text:
                problems.append(f"{rel}: contains the hidden test line {line!r}")
                break
    return problems


def _sources(text: str) -> str:
    try:
        nb = json.loads(text)
    except ValueError:
        return text
    parts = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        parts.append("".join(src) if isinstance(src, list) else src)
        for out in cell.get("outputs", []) or []:
            parts.append(json.dumps(out))
    return "\n".join(parts)


def publish(course: Course, dest: str | Path, *, push: str | None = None,
            branch: str = "main") -> Report:
    """Write the student edition of ``course`` into ``dest`` (emptied first); optionally
    commit it and force-push it to ``push``. Raises :class:`PublishError` on a leak."""
    root = course.root
    dest = Path(dest).resolve()
    if dest == root or (root in dest.parents and not (dest / ".cloudlab-edition").exists()):
        raise PublishError(f"{dest} is inside the course repository; publish to a folder "
                           "of its own")
    if dest.exists() and any(dest.iterdir()) and not (dest / ".cloudlab-edition").exists():
        raise PublishError(f"{dest} exists and is not a student edition; give an empty or "
                           "new folder")
    files = _tracked(root)
    files = _walk(root) if files is None else files
    if dest.exists():
        for child in dest.iterdir():
            if child.name == ".git":
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    report = Report(dest)
    for rel in files:
        if NEVER.search(rel.as_posix()) or not (root / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
        report.files += 1
    (dest / "README.md").write_text(student_readme(root, push))
    report.files += 1
    (dest / ".cloudlab-edition").write_text("the student edition, written by "
                                            "`cloudlab grade publish`; do not edit\n")
    report.problems = leaks(dest, course)
    if report.problems:
        raise PublishError("the student edition would leak:\n  "
                           + "\n  ".join(report.problems[:20]))
    if push:
        _push(dest, push, branch)
        report.pushed = push
    return report


def student_readme(root: Path, push: str | None = None) -> str:
    """The edition's README: ``edition/README.md`` with its Binder line filled in from
    the repository the edition is pushed to (none when that is not a forge Binder builds).

    >>> "mybinder.org/v2/gh/course/book/HEAD" in student_readme(
    ...     Path("."), "git@github.com:course/book.git")
    True
    >>> "BINDER" in student_readme(Path("."), None)
    False
    """
    text = (root / STUDENT_README).read_text()
    found = _GITHUB.search(push or "")
    if found:
        line = (f"[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/"
                f"{found.group(1)}/HEAD?urlpath=lab/tree/notebooks/00-getting-started.ipynb)"
                " opens it in your browser with nothing to install (no Docker there: those "
                "parts say so and skip). A Binder session is temporary: download your work "
                "before you leave.")
    else:
        line = ("Your course may also give you a Binder link that opens it in your browser "
                "with nothing to install (no Docker there: those parts say so and skip).")
    return text.replace("BINDER_LINE", line)


def _push(dest: Path, remote: str, branch: str) -> None:
    git = ["git", "-C", str(dest)]
    if not (dest / ".git").exists():
        run([*git, "init", "-q", "-b", branch], timeout=60)
    run([*git, "add", "-A"], timeout=120)
    ident = ["-c", "user.name=cloudlab", "-c", "user.email=cloudlab@localhost"]
    status = run([*git, "status", "--porcelain"], timeout=60).stdout
    if status.strip():
        run(["git", "-C", str(dest), *ident, "commit", "-q", "-m",
             "Student edition (cloudlab grade publish)"], timeout=120)
    run([*git, "push", "--force", "-q", remote, f"HEAD:{branch}"], timeout=300)
