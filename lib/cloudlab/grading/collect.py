"""Collect submissions from a folder or a zip into ``course/submitted/<student>/<assignment>/``.

Two layouts are understood (either may sit inside one wrapping folder):

* ``<student>/<assignment>/<files...>`` - nbgrader's own submitted layout;
* flat files named the way LMS downloads and ``nbgrader zip_collect`` expect,
  ``<assignment>_<student>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>``.

Each submission gets a ``timestamp.txt`` decided by the collection (the LMS name's time,
else the newest file time in the archive or folder), recorded also outside the student's
folder (``course/collected/``), where grading reads it; a ``timestamp.txt`` the student
handed in is ignored. Malformed entries - unknown assignments, unsafe names, links,
files outside any submission, oversized archives - are reported, never fatal. Nothing from
outside the given path is ever written or followed.

>>> report = collect(Course(), "downloads/docker-hub.zip")   # doctest: +SKIP
>>> print(report.text())                                    # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import CloudlabError
from .course import Course

ZIP_COLLECT = re.compile(
    r"^(?P<assignment>.+?)_(?P<student_id>[\w.\-@]+)_attempt_(?P<timestamp>[0-9][0-9\-]+)_"
    r"(?P<file_id>.+)$")
SAFE_NAME = re.compile(r"^[\w.\-@+]{1,128}$")
MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_MEMBER_BYTES = 200 * 1024**2
TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"


@dataclass
class Report:
    collected: dict[tuple[str, str], int] = field(default_factory=dict)  # (student, a) -> files
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"collected {len(self.collected)} submission(s)"]
        for (student, assignment), n in sorted(self.collected.items()):
            lines.append(f"  {student}/{assignment}: {n} file(s)")
        if self.problems:
            lines.append(f"{len(self.problems)} entr{'y' if len(self.problems) == 1 else 'ies'} "
                         "skipped:")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _timestamp(text: str | None, fallback: float | None) -> str:
    if text:
        for fmt in ("%Y-%m-%d-%H-%M-%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
            try:
                when = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
                return when.strftime(TS_FORMAT)
            except ValueError:
                pass
    when = dt.datetime.fromtimestamp(fallback or dt.datetime.now().timestamp(), dt.timezone.utc)
    return when.strftime(TS_FORMAT)


def collect(course: Course, path: str | Path, assignment: str | None = None) -> Report:
    """Copy submissions found at ``path`` (folder or .zip) into the course."""
    path = Path(path)
    if not path.exists():
        raise CloudlabError(f"{path} does not exist")
    report = Report()
    known = set(course.assignments())
    with tempfile.TemporaryDirectory(prefix="cloudlab-collect-") as tmp:
        root = Path(tmp) / "in"
        if path.is_dir():
            shutil.copytree(path, root, symlinks=True)
        elif zipfile.is_zipfile(path):
            _extract(path, root, report)
        else:
            raise CloudlabError(f"{path} is neither a folder nor a zip file")
        entries = _entries(root, known)
        stamps: dict[tuple[str, str], str] = {}
        for rel, source in entries:
            _place(course, rel, source, known, assignment, report, stamps)
    for (student, name) in report.collected:
        dest = course.submission(student, name)
        ts = dest / "timestamp.txt"
        stamp = stamps.get((student, name))
        if stamp is None:
            newest = max((p.stat().st_mtime for p in dest.rglob("*")
                          if p.is_file() and p != ts), default=None)
            stamp = _timestamp(None, newest)
        ts.write_text(stamp + "\n")
        record = course.collected_timestamp(student, name)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(stamp + "\n")
    return report


def _extract(archive: Path, root: Path, report: Report) -> None:
    root.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        total = 0
        for info in zf.infolist():
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if info.is_dir():
                continue
            if name.startswith("/") or ".." in parts or not parts:
                report.problems.append(f"{name}: unsafe path in the archive")
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                report.problems.append(f"{name}: links are not collected")
                continue
            if parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
                continue
            total += info.file_size
            if info.file_size > MAX_MEMBER_BYTES or total > MAX_ARCHIVE_BYTES:
                report.problems.append(f"{name}: too large ({info.file_size} bytes)")
                continue
            target = root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            mtime = dt.datetime(*info.date_time).timestamp()
            os.utime(target, (mtime, mtime))


def _entries(root: Path, known: set[str]) -> list[tuple[PurePosixPath, Path]]:
    """Every file below ``root`` (relative path, absolute path); unwrap one lone folder."""
    top = [p for p in root.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
    if len(top) == 1 and top[0].is_dir() and not top[0].is_symlink():
        inner = list(top[0].iterdir())
        names_below = {q.name for p in inner if p.is_dir() for q in p.iterdir()}
        if top[0].name not in known and not ({p.name for p in inner} & known) and (
                names_below & known
                or all(p.is_file() and ZIP_COLLECT.match(p.name) for p in inner)):
            root = top[0]
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or p.is_file():
            found.append((PurePosixPath(p.relative_to(root).as_posix()), p))
    return found


def _place(course: Course, rel: PurePosixPath, source: Path, known: set[str],
           only: str | None, report: Report, stamps: dict[tuple[str, str], str]) -> None:
    if source.is_symlink():
        report.problems.append(f"{rel}: links are not collected")
        return
    parts = rel.parts
    if len(parts) == 1:
        m = ZIP_COLLECT.match(parts[0])
        if not m:
            report.problems.append(f"{rel}: not inside <student>/<assignment>/ and not named "
                                   "<assignment>_<student>_attempt_<time>_<file>")
            return
        student, name, file_parts = m["student_id"], m["assignment"], [m["file_id"]]
        stamp = m["timestamp"]
    else:
        if len(parts) < 3:
            report.problems.append(f"{rel}: expected <student>/<assignment>/<file>")
            return
        student, name, file_parts, stamp = parts[0], parts[1], list(parts[2:]), None
    if only and name != only:
        if name not in known:
            report.problems.append(f"{rel}: not for assignment {only!r}")
        return
    if name not in known:
        report.problems.append(f"{rel}: unknown assignment {name!r} (known: "
                               f"{', '.join(sorted(known)) or 'none'})")
        return
    if not SAFE_NAME.match(student) or any(not SAFE_NAME.match(x) for x in file_parts[:-1]):
        report.problems.append(f"{rel}: unsafe student or folder name")
        return
    if not file_parts[-1] or file_parts[-1] in (".", ".."):
        report.problems.append(f"{rel}: empty file name")
        return
    dest = course.submission(student, name)
    key = (student, name)
    if file_parts == ["timestamp.txt"]:
        report.problems.append(f"{rel}: a submitted timestamp.txt is ignored (the collection "
                               "records when it took the submission)")
        return
    if key not in report.collected:
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        report.collected[key] = 0
    target = dest.joinpath(*file_parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    report.collected[key] += 1
    if stamp:
        stamps[key] = _timestamp(stamp, None)
