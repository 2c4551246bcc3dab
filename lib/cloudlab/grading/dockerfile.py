"""What a graded Dockerfile may build on: ``FROM`` and ``COPY --from`` checked before a build.

The grader builds a student's Dockerfile on its own engine, where other images live (other
students' builds, the course's own images). A ``FROM`` or a ``COPY --from`` naming such an
image would read it, so both are restricted to an allow-list of images and to earlier
stages of the same Dockerfile. ``ADD`` from a URL and BuildKit's ``RUN --mount`` are
refused too (the one fetches past the build's proxy, the other reads other images).

The check works on the text alone, with the same line joining and ``ARG`` expansion the
engine uses for ``FROM``; each problem names its line.

>>> policy("FROM python:3.11-slim AS build\\nFROM build\\nCOPY --from=build /a /a\\n",
...        {"python:3.11-slim"})
[]
>>> policy("FROM python:3.11-slim\\nCOPY --from=secret/answers:latest /key /key\\n",
...        {"python:3.11-slim"})
['line 2: COPY --from=secret/answers:latest reads an image that is not allowed here \
(allowed: python:3.11-slim, or an earlier stage)']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"^#\s*(\w+)\s*=\s*(\S+)\s*$")
_VAR = re.compile(r"\$(?:\{(\w+)(?::?[-+][^}]*)?\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts (1-based)
    end: int  # its last line (continuations included)
    keyword: str  # upper case
    args: str  # the rest, continuation lines joined


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, honouring an ``# escape=`` parser directive.

    >>> [(i.line, i.end, i.keyword, i.args) for i in instructions("FROM x\\nRUN a \\\\\\n  b\\n")]
    [(1, 1, 'FROM', 'x'), (2, 3, 'RUN', 'a b')]
    """
    escape = "\\"
    lines = text.splitlines()
    for raw in lines:  # parser directives: only at the very top, before anything else
        found = _DIRECTIVE.match(raw.strip())
        if not found:
            break
        if found.group(1).lower() == "escape" and found.group(2) in ("\\", "`"):
            escape = found.group(2)
    out: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not parts):
            continue
        if not parts:
            start = number
        if line.endswith(escape):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        out.append(_make(start, number, parts))
        parts = []
    if parts:
        out.append(_make(start, len(lines), parts))
    return out


def _make(start: int, end: int, parts: list[str]) -> Instruction:
    text = " ".join(p for p in parts if p)
    keyword, _, args = text.partition(" ")
    return Instruction(start, end, keyword.upper(), args.strip())


def normal(image: str) -> str:
    """An image name without Docker Hub's implied prefixes.

    >>> normal("docker.io/library/python:3.11-slim"), normal("python")
    ('python:3.11-slim', 'python:latest')
    """
    for prefix in ("docker.io/library/", "index.docker.io/library/", "library/"):
        if image.startswith(prefix):
            image = image[len(prefix):]
    name, at, digest = image.partition("@")
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


def _expand(value: str, args: dict[str, str]) -> str | None:
    """``$VAR`` / ``${VAR}`` from the ARG defaults; None when one cannot be resolved."""
    missing = False

    def sub(found: re.Match) -> str:
        nonlocal missing
        name = found.group(1) or found.group(2)
        if name not in args:
            missing = True
            return ""
        return args[name]

    out = _VAR.sub(sub, value)
    return None if missing else out


def _flags(args: str) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    words = args.split()
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key.lower()] = value
    return flags, words


def policy(text: str, allowed: Iterable[str]) -> list[str]:
    """Problems with what ``text`` builds on (empty when it only uses what is allowed).

    ``allowed`` are image names (``scratch`` is always allowed: it is empty). A stage may
    use the stages defined above it, by name or by number.
    """
    allowed_names = {normal(a) for a in allowed}
    shown = ", ".join(sorted(allowed)) or "none"
    problems: list[str] = []
    global_args: dict[str, str] = {}
    stages: list[str] = []  # lower-case names ('' for unnamed), in order
    seen_from = False
    for ins in instructions(text):
        where = f"line {ins.line}"
        flags, words = _flags(ins.args)
        if ins.keyword == "ARG" and not seen_from:
            for word in words:
                name, _, default = word.partition("=")
                global_args[name] = default.strip("'\"")
            continue
        if ins.keyword == "FROM":
            seen_from = True
            if not words:
                problems.append(f"{where}: FROM names no image")
                continue
            image = _expand(words[0], global_args)
            if image is None:
                problems.append(f"{where}: FROM {words[0]} uses a build argument the grader "
                                "does not set; name the image itself")
                continue
            if image.lower() != "scratch" and image.lower() not in stages \
                    and normal(image) not in allowed_names:
                problems.append(f"{where}: FROM {image} is not an image allowed here "
                                f"(allowed: {shown}, or an earlier stage)")
            alias = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
            stages.append(alias)
            continue
        if ins.keyword in ("COPY", "ADD") and "from" in flags:
            source = flags["from"]
            earlier = stages[:-1]
            ok = (source.isdigit() and int(source) < len(earlier)) \
                or (source.lower() in earlier and source) \
                or ("$" not in source and normal(source) in allowed_names)
            if not ok:
                problems.append(f"{where}: {ins.keyword} --from={source} reads an image that "
                                f"is not allowed here (allowed: {shown}, or an earlier stage)")
        if ins.keyword == "ADD" and any(re.match(r"(https?|git|ftp)://|git@", w, re.I)
                                        for w in words):
            problems.append(f"{where}: ADD from a URL fetches past the build's proxy; "
                            "COPY a file of the submission, or download it in a RUN step")
        if ins.keyword == "RUN" and "mount" in flags:
            problems.append(f"{where}: RUN --mount is not available in graded builds")
        if ins.keyword == "ONBUILD" and re.search(r"--from|--mount", ins.args):
            problems.append(f"{where}: ONBUILD may not read other images")
    if not seen_from:
        problems.append("the Dockerfile has no FROM line")
    return problems


def stamp(text: str, labels: dict[str, str]) -> str:
    """``text`` with a ``LABEL`` after every ``FROM``, so every image and build container a
    build makes carries ``labels`` (and can be swept, even after the grader was killed).

    >>> print(stamp("FROM a AS b\\nRUN x\\n", {"k": "v"}))
    FROM a AS b
    LABEL "k"="v"
    RUN x
    <BLANKLINE>
    """
    if not labels:
        return text
    label = "LABEL " + " ".join(f'"{k}"="{v}"' for k, v in sorted(labels.items()))
    ends = {ins.end for ins in instructions(text) if ins.keyword == "FROM"}
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        out.append(line)
        if number in ends:
            out.append(label)
    return "\n".join(out) + "\n"
