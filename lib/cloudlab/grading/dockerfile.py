"""What a graded Dockerfile may do, decided on its text before anything is built.

The grader builds a student's Dockerfile on its own engine, where other images live (other
students' builds, the course's own images), and Docker's classic builder fetches a remote
``ADD`` source in the daemon itself, on the host's network, whatever network the build has.
So the policy reads the Dockerfile with Docker's own grammar (the PyPI ``dockerfile``
package wraps BuildKit's Go parser) and refuses what it cannot decide:

* ``FROM`` and ``COPY --from`` name an allowed image or an earlier stage, after the build
  arguments are expanded the way Docker expands them (:func:`expand`);
* ``ADD`` takes files of the build context only: no URL, no git source, no variable;
* no ``ONBUILD``, no ``RUN`` flags (``--mount`` reads other images), no unknown
  instruction, no heredoc, no parser directive but ``# escape=`` on the first line (a
  ``# syntax=`` line names a frontend image the engine would run);
* no ``LABEL`` under the workbook's own prefix (``org.cloudlab``): the grader's labels
  are how its disk watch and sweep find a build's images and containers;
* no character that two Docker versions read differently (NUL, spaces other than space
  and tab: a line ending in ``\\`` and a non-breaking space is no continuation).

Each problem names its line.

>>> policy("FROM python:3.11-slim AS build\\nFROM build\\nCOPY --from=build /a /a\\n",
...        {"python:3.11-slim"})
[]
>>> policy("FROM python:3.11-slim\\nCOPY --from=secret/answers:latest /key /key\\n",
...        {"python:3.11-slim"})
['line 2: COPY --from=secret/answers:latest reads an image that is not allowed here \
(allowed: python:3.11-slim, or an earlier stage)']
>>> policy('FROM python:3.11-slim\\nADD ["http://127.0.0.1:8000/x", "/x"]\\n',
...        {"python:3.11-slim"})[0][:60]
'line 2: ADD http://127.0.0.1:8000/x is not a file of the sub'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PREFIX = "org.cloudlab"  # the workbook's own labels (config.LABEL, confine.BUILD_LABEL)
# What the engine passes to a build without any ARG (Docker's predefined proxy arguments).
PREDEFINED = frozenset(f"{k}_PROXY" for k in ("HTTP", "HTTPS", "FTP", "NO", "ALL")) \
    | frozenset(f"{k}_proxy" for k in ("http", "https", "ftp", "no", "all"))
KNOWN = frozenset({"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
                   "HEALTHCHECK", "LABEL", "MAINTAINER", "RUN", "SHELL", "STOPSIGNAL",
                   "USER", "VOLUME", "WORKDIR"})
FLAGS = {"COPY": {"from", "chown", "chmod"}, "ADD": {"chown", "chmod"},
         "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Undecided(ValueError):
    """A word the policy does not read the way Docker would, so it refuses it."""


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts (1-based, as Docker counts)
    end: int  # its last line (continuations and heredocs included)
    keyword: str  # upper case
    args: str  # the rest of the original text, continuation lines joined
    words: tuple[str, ...] = ()  # Docker's split of the arguments (JSON form decoded)
    flags: tuple[str, ...] = ()  # ``--name=value`` flags, as written
    sub: str | None = None  # the instruction ONBUILD wraps
    heredoc: bool = False


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, read by Docker's own parser.

    Raises :class:`Undecided` when the parser refuses the text or it holds a NUL byte.

    >>> [(i.line, i.end, i.keyword, i.words) for i in instructions("FROM x\\nRUN a \\\\\\n  b\\n")]
    [(1, 1, 'FROM', ('x',)), (2, 3, 'RUN', ('a   b',))]
    """
    import dockerfile  # Docker's Go parser (PyPI ``dockerfile``)

    if "\0" in text:  # the parser would stop reading there; the engine would not
        raise Undecided("the Dockerfile holds a NUL byte")
    try:
        parsed = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise Undecided(f"Docker cannot parse it: {exc}") from None
    out = []
    for cmd in parsed:
        keyword = cmd.cmd.upper()
        args = cmd.original.split(None, 1)[1] if " " in cmd.original.strip() else ""
        out.append(Instruction(cmd.start_line, cmd.end_line, keyword, args.strip(),
                               tuple(cmd.value), tuple(cmd.flags),
                               cmd.sub_cmd.upper() if cmd.sub_cmd else None,
                               bool(cmd.heredocs)))
    return out


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


# ----------------------------------------------------------------------- expansion
class _Lexer:
    """Docker's word processing (``shell.Lex.ProcessWord``) for the forms every Docker
    version reads alike; anything else raises :class:`Undecided`."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s, self.i, self.env, self.escape = text, 0, env, escape
        self.used: set[str] = set()

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def word(self, stop: str = "") -> str:
        out = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if stop and ch == stop:
                self.i += 1
                return "".join(out)
            if ch == "'":
                out.append(self._single())
            elif ch == '"':
                out.append(self._double())
            elif ch == "$":
                out.append(self._dollar())
            else:
                self.i += 1
                if ch == self.escape:
                    if self.i >= len(self.s):
                        break
                    ch = self.s[self.i]
                    self.i += 1
                out.append(ch)
        if stop:
            raise Undecided(f"a '{stop}' is missing")
        return "".join(out)

    def _single(self) -> str:
        end = self.s.find("'", self.i + 1)
        if end < 0:
            raise Undecided("a closing single quote is missing")
        text, self.i = self.s[self.i + 1:end], end + 1
        return text

    def _double(self) -> str:
        self.i += 1
        out = []
        while True:
            ch = self._peek()
            if not ch:
                raise Undecided("a closing double quote is missing")
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.i += 1
            if ch == self.escape and self._peek() in ('"', "$", self.escape) and self._peek():
                ch = self.s[self.i]
                self.i += 1
            out.append(ch)

    def _name(self) -> str:
        found = _NAME.match(self.s, self.i)
        name = found.group() if found else ""
        self.i += len(name)
        after = self._peek()
        if not name and (after.isalnum() or after in "@*#?-$!_") and after:
            raise Undecided(f"${after} is a form of variable the grader does not read")
        if name and after and (after.isalnum() or after == "_"):
            raise Undecided(f"${name}{after} is a variable name the grader does not read")
        if name:
            self.used.add(name)
        return name

    def _dollar(self) -> str:
        self.i += 1
        if self._peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self.i += 1
        name = self._name()
        if not name:
            raise Undecided("${...} names no variable")
        ch = self._peek()
        self.i += 1
        if ch == "}":
            return self.env.get(name, "")
        modifier = self._peek()
        if ch != ":" or modifier not in ("-", "+"):
            raise Undecided(f"${{{name}{ch}{modifier}...}} is a substitution the grader "
                            "does not read (it reads $V, ${V}, ${V:-word}, ${V:+word})")
        self.i += 1
        word, value = self.word("}"), self.env.get(name, "")
        if modifier == "+":
            return word if value else ""
        return value or word


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``word`` as Docker reads it with the variables ``env``: quotes removed, escapes
    applied, ``$V``, ``${V}``, ``${V:-word}`` and ``${V:+word}`` substituted (an unset
    variable is empty). Other forms raise :class:`Undecided`, and so does a word that uses
    a proxy argument (the engine passes those to the build without any ``ARG``).

    >>> expand("${B:+busybox}", {"B": "python:3.11-slim"}), expand("${B:-x}", {})
    ('busybox', 'x')
    >>> expand("'$A'\\"$A\\"\\\\$A", {"A": "1"})
    '$A1$A'
    """
    lexer = _Lexer(word, env, escape)
    out = lexer.word()
    proxies = sorted(lexer.used & PREDEFINED)
    if proxies:
        raise Undecided(f"it uses {proxies[0]}, which the grader sets for the build")
    return out


# --------------------------------------------------------------------------- policy
def _escape(text: str) -> tuple[str, list[str]]:
    """The escape character and the problems of the text's lines themselves."""
    escape, problems = "\\", []
    lines = text.split("\n")  # as the parser counts them (a \r before \n is its own)
    for number, raw in enumerate(lines, 1):
        line = raw.lstrip("\ufeff") if number == 1 else raw
        odd = sorted({c for c in line.rstrip("\r") if c.isspace() and c not in " \t"})
        if odd:
            problems.append(f"line {number}: holds the space character U+{ord(odd[0]):04X}, "
                            "which Docker versions read differently; use plain spaces")
        found = _DIRECTIVE.match(line.strip())
        if not found:
            continue
        value = line.strip().split("=", 1)[1].strip()
        if number == 1 and found.group(1).lower() == "escape" and value in ("\\", "`"):
            escape = value
        elif found.group(1).lower() == "syntax":
            problems.append(f"line {number}: '# syntax=' names a frontend image the engine "
                            "would run; remove it")
        else:
            problems.append(f"line {number}: '{line.strip()[:40]}' reads as a parser "
                            "directive; only '# escape=\\' or '# escape=`' on the first "
                            "line is allowed")
    return escape, problems


def _flags(ins: Instruction) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    problems = []
    allowed = FLAGS.get(ins.keyword, set())
    for flag in ins.flags:
        name, _, value = flag[2:].partition("=")
        if name.lower() not in allowed:
            what = "RUN --mount" if ins.keyword == "RUN" and name == "mount" \
                else f"{ins.keyword} --{name}"
            problems.append(f"line {ins.line}: {what} is not available in graded builds")
        elif name.lower() in flags:
            problems.append(f"line {ins.line}: {ins.keyword} --{name} is given twice")
        flags[name.lower()] = value
    return flags, problems


def _label_keys(ins: Instruction) -> list[str]:
    problems = []
    for key in ins.words[0::2]:
        bare = re.sub(r"[\"'\\`]", "", key).lower()
        if "$" in key:
            problems.append(f"line {ins.line}: LABEL {key} uses a variable in its key; "
                            "write the key itself")
        elif bare.startswith(PREFIX):
            problems.append(f"line {ins.line}: LABEL {key} is under {PREFIX}, which "
                            "belongs to the grader; choose a key of your own")
    return problems


def _add_sources(ins: Instruction) -> list[str]:
    problems = []
    for source in ins.words[:-1]:
        if ":" in source or "$" in source or source.lower().startswith("git@"):
            problems.append(f"line {ins.line}: ADD {source} is not a file of the submission "
                            "(a URL, a git source or a variable): graded builds fetch "
                            "nothing that way; COPY a file, or download it in a RUN step")
    return problems


def policy(text: str, allowed: Iterable[str]) -> list[str]:
    """Problems with ``text`` (empty when the grader may build it).

    ``allowed`` are image names (``scratch`` is always allowed: it is empty). A stage may
    use the stages defined above it, by name or by number.
    """
    allowed_names = {normal(a) for a in allowed}
    shown = ", ".join(sorted(allowed)) or "none"
    escape, problems = _escape(text)
    try:
        found = instructions(text)
    except Undecided as exc:
        return [*problems, f"the Dockerfile was not read: {exc}"]
    meta: dict[str, str] = {}  # the ARGs before the first FROM (the grader sets none)
    stages: list[str] = []  # lower-case names ('' for unnamed), in order
    for ins in found:
        where = f"line {ins.line}"
        flags, bad = _flags(ins)
        problems += bad
        if ins.keyword == "ONBUILD":
            problems.append(f"{where}: ONBUILD is not available in graded builds")
        elif ins.keyword not in KNOWN:
            problems.append(f"{where}: {ins.keyword} is not a Dockerfile instruction")
        elif ins.heredoc or (ins.keyword in ("RUN", "COPY", "ADD") and "<<" in ins.args):
            problems.append(f"{where}: heredocs (<<) are not available in graded builds; "
                            "write the commands on RUN lines")
        elif ins.keyword == "ARG" and not stages:
            problems += _meta_arg(ins, meta, escape)
        elif ins.keyword == "FROM":
            problems += _from(ins, meta, escape, stages, allowed_names, shown)
        elif ins.keyword == "LABEL":
            problems += _label_keys(ins)
        elif ins.keyword == "ADD":
            problems += _add_sources(ins)
        if ins.keyword in ("COPY", "ADD") and "from" in flags:
            source = flags["from"]
            earlier = stages[:-1]
            ok = "$" not in source and source and (
                (source.isdigit() and int(source) < len(earlier))
                or source.lower() in earlier or normal(source) in allowed_names)
            if not ok:
                problems.append(f"{where}: {ins.keyword} --from={source} reads an image that "
                                f"is not allowed here (allowed: {shown}, or an earlier stage)")
    if not stages:
        problems.append("the Dockerfile has no FROM line")
    return problems


def _meta_arg(ins: Instruction, meta: dict[str, str], escape: str) -> list[str]:
    if len(ins.words) != 1:
        return [f"line {ins.line}: write one ARG per line"]
    name, eq, default = ins.words[0].partition("=")
    if "$" in name or not _NAME.fullmatch(name):
        return [f"line {ins.line}: ARG {name} is not a plain name"]
    try:
        value = expand(default, meta, escape) if eq else None
    except Undecided as exc:
        return [f"line {ins.line}: ARG {ins.words[0]} is not read here: {exc}"]
    if value is None:
        meta.pop(name, None)  # declared without a value: unset unless the build sets it
    else:
        meta[name] = value
    return []


def _from(ins: Instruction, meta: dict[str, str], escape: str, stages: list[str],
          allowed_names: set[str], shown: str) -> list[str]:
    where, words = f"line {ins.line}", ins.words
    stage = words[2].lower() if len(words) == 3 and words[1].lower() == "as" else ""
    stages.append(stage)
    if not words or len(words) not in (1, 3) or (len(words) == 3 and not stage):
        return [f"{where}: FROM takes an image and an optional AS name"]
    try:
        image = expand(words[0], meta, escape)
    except Undecided as exc:
        return [f"{where}: FROM {words[0]} is not read here: {exc}; name the image itself"]
    if not image.strip():
        return [f"{where}: FROM {words[0]} names no image (it uses a build argument the "
                "grader does not set)"]
    if image.lower() == "scratch" or (image.lower() in stages[:-1] and image)  \
            or normal(image) in allowed_names:
        return []
    return [f"{where}: FROM {image} is not an image allowed here "
            f"(allowed: {shown}, or an earlier stage)"]


def stamp(text: str, labels: dict[str, str]) -> str:
    """``text`` with a ``LABEL`` after every ``FROM``, so every image and build container a
    build makes carries ``labels`` (and can be swept, even after the grader was killed).
    The lines are counted as Docker counts them; every other byte is kept.

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
    for number, line in enumerate(text.split("\n"), 1):
        out.append(line)
        if number in ends:
            out.append(label)
    stamped = "\n".join(out)
    return stamped if stamped.endswith("\n") else stamped + "\n"
