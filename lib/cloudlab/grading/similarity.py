"""Similar submissions: pairs of unusually alike answers, for the instructor to look at.

Never a penalty: the list says where to look, a person decides. Each answer (an answer
cell of the notebook, or a file a ``%%writefile`` cell writes) is normalised first, so
that renaming, re-commenting or re-indenting a copy changes nothing:

* Python: tokens only; comments, blank lines and indentation width dropped, every
  identifier becomes ``V``, every string ``S`` (keywords, operators and numbers stay);
* YAML: parsed and walked with keys sorted (comments, quoting, order and layout gone);
  values of naming keys (``name``, labels, selectors, ...) become ``ID``;
* Dockerfiles: comments dropped, continuations joined, instructions upper-cased.

The token streams are fingerprinted by winnowing (Schleimer, Wilkerson and Aiken,
"Winnowing: local algorithms for document fingerprinting", SIGMOD 2003): hashes of
every k-gram with a rolling (Karp-Rabin) hash, then the minimum of each window of w
consecutive hashes. Any run of at least w + k - 1 tokens two answers share is found.
Fingerprints of the released exercise and of the solution are discarded (what every
student starts from, or arrives at when right, is no evidence of copying).

>>> a = "def total(xs):\\n    # add them up\\n    s = 0\\n    for x in xs:\\n        s += x\\n"
>>> b = "def sum_all(values):\\n    acc = 0  # start\\n    for v in values:\\n        acc += v\\n"
>>> normalise(a, "python") == normalise(b, "python")
True
>>> fingerprints(a, "python") == fingerprints(b, "python")
True
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import keyword
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

K = 6  # tokens per k-gram
WINDOW = 4  # k-grams per winnowing window: shared runs of >= K + WINDOW - 1 tokens are found
BASE, MOD = 257, (1 << 61) - 1
MIN_SHARED = 12  # fewer shared fingerprints than this is too little to say anything
THRESHOLD = 0.5  # Jaccard similarity of two submissions' fingerprints worth a look
NAME_KEYS = {"name", "app", "namespace", "serviceName", "containerName", "claimName",
             "labels", "matchLabels", "selector", "hostname", "subdomain"}
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)
WRITEFILE = re.compile(r"\A%%writefile\s+(?:-a\s+)?(\S+)[ \t]*\n")


def kind_of(name: str) -> str:
    """``python``, ``yaml``, ``dockerfile`` or ``text``, from a file name.

    >>> [kind_of(n) for n in ("app.py", "k8s/deploy.yml", "Dockerfile", "notes.md")]
    ['python', 'yaml', 'dockerfile', 'text']
    """
    low = Path(name).name.lower()
    if low.endswith(".py"):
        return "python"
    if low.endswith((".yaml", ".yml")):
        return "yaml"
    if low.startswith("dockerfile") or low.endswith(".dockerfile"):
        return "dockerfile"
    return "text"


def normalise(text: str, kind: str) -> list[str]:
    """The tokens of ``text`` that survive renaming, re-commenting and re-formatting."""
    if kind == "python":
        return _python(text)
    if kind == "yaml":
        return _yaml(text)
    if kind == "dockerfile":
        return _dockerfile(text)
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _python(text: str) -> list[str]:
    text = "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith(("%", "!")))  # IPython magics
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING,
                            tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NAME:
                out.append(tok.string if keyword.iskeyword(tok.string) else "V")
            elif tok.type == tokenize.STRING or tok.type in _FSTRING:
                if not out or out[-1] != "S":
                    out.append("S")
            elif tok.type == tokenize.NEWLINE:
                out.append(";")
            elif tok.type == tokenize.INDENT:
                out.append("{")
            elif tok.type == tokenize.DEDENT:
                out.append("}")
            else:
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.findall(r"\w+|[^\w\s]", re.sub(r"#.*", "", text))
    return out


_FSTRING = {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
            if hasattr(tokenize, n)}


def _yaml(text: str) -> list[str]:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return re.findall(r"\w+|[^\w\s]", re.sub(r"#.*", "", text))
    out: list[str] = []

    def walk(node: object, naming: bool) -> None:
        if isinstance(node, dict):
            out.append("{")
            for key in sorted(node, key=str):
                out.append(str(key))
                walk(node[key], naming or str(key) in NAME_KEYS)
            out.append("}")
        elif isinstance(node, list):
            out.append("[")
            for item in node:
                walk(item, naming)
            out.append("]")
        elif isinstance(node, str):
            out.append("ID" if naming else node.strip().lower())
        else:
            out.append(json.dumps(node))

    for doc in docs:
        walk(doc, False)
    return out


def _dockerfile(text: str) -> list[str]:
    joined = re.sub(r"\\[ \t]*\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out: list[str] = []
    for line in joined.splitlines():
        words = re.findall(r"[\w.:/@=-]+|[^\w\s]", line.strip())
        if words:
            out.append(words[0].upper())
            out.extend(words[1:])
            out.append(";")
    return out


def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=7).digest(), "big")


def kgram_hashes(tokens: list[str], k: int = K) -> list[int]:
    """The Karp-Rabin hash of every k-gram, each computed from the previous one."""
    if len(tokens) < k:
        return []
    values = [_token_hash(t) for t in tokens]
    top = pow(BASE, k - 1, MOD)
    h = 0
    for v in values[:k]:
        h = (h * BASE + v) % MOD
    out = [h]
    for old, new in zip(values, values[k:], strict=False):
        h = ((h - old * top) * BASE + new) % MOD
        out.append(h)
    return out


def winnow(hashes: list[int], window: int = WINDOW) -> set[int]:
    """The minimum hash of every window (the rightmost one on ties), each kept once.

    >>> sorted(winnow([77, 74, 42, 17, 98, 50, 17, 98, 8, 88, 67, 39, 77, 74, 42, 17, 98], 4))
    [8, 17, 39]
    """
    if not hashes:
        return set()
    if len(hashes) <= window:
        return {min(hashes)}
    chosen: set[int] = set()
    last = -1
    for start in range(len(hashes) - window + 1):
        win = hashes[start:start + window]
        low = min(win)
        pos = start + max(i for i, h in enumerate(win) if h == low)
        if pos != last:
            chosen.add(low)
            last = pos
    return chosen


def fingerprints(text: str, kind: str, k: int = K, window: int = WINDOW) -> set[int]:
    return winnow(kgram_hashes(normalise(text, kind), k), window)


def answers(nb: dict) -> dict[str, tuple[str, str]]:
    """A notebook's answers: part name -> (text, kind); a %%writefile cell by its file."""
    out: dict[str, tuple[str, str]] = {}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("solution"):
            continue
        src = cell["source"]
        text = MARKER.sub("", "".join(src) if isinstance(src, list) else str(src))
        if m := WRITEFILE.match(text):
            out[m.group(1)] = (text[m.end():], kind_of(m.group(1)))
        else:
            out[str(meta.get("grade_id"))] = (text, "python")
    return out


def _prints(parts: dict[str, tuple[str, str]]) -> set[tuple[str, int]]:
    return {(name, h) for name, (text, kind) in parts.items() for h in fingerprints(text, kind)}


@dataclass
class Pair:
    a: str
    b: str
    similarity: float  # Jaccard of the two fingerprint sets (after the common ones go)
    shared: int
    parts: list[str] = field(default_factory=list)  # where they share most, best first

    def line(self) -> str:
        return (f"{self.a} ~ {self.b}: {self.similarity:.0%} alike ({self.shared} shared "
                f"fingerprints; {', '.join(self.parts[:4])})")


def compare(submissions: dict[str, dict[str, tuple[str, str]]],
            common: Iterable[dict[str, tuple[str, str]]] = (), *,
            threshold: float = THRESHOLD, min_shared: int = MIN_SHARED) -> list[Pair]:
    """Pairs of ``submissions`` (student -> answers) at or above ``threshold``, most alike
    first; fingerprints of each of ``common`` (release, solution) are left out."""
    ignore: set[tuple[str, int]] = set()
    for parts in common:
        ignore |= _prints(parts)
    prints = {s: _prints(parts) - ignore for s, parts in submissions.items()}
    found: list[Pair] = []
    for a, b in itertools.combinations(sorted(prints), 2):
        both = prints[a] & prints[b]
        union = prints[a] | prints[b]
        if len(both) < min_shared or not union:
            continue
        score = len(both) / len(union)
        if score >= threshold:
            by_part: dict[str, int] = {}
            for name, _ in both:
                by_part[name] = by_part.get(name, 0) + 1
            parts = sorted(by_part, key=lambda n: -by_part[n])
            found.append(Pair(a, b, round(score, 3), len(both), parts))
    return sorted(found, key=lambda p: -p.similarity)


def similar(course, assignment: str, **kwargs) -> list[Pair]:
    """Similar pairs among the submitted notebooks of ``assignment`` (course folders)."""
    subs: dict[str, dict[str, tuple[str, str]]] = {}
    for student in course.students(assignment):
        parts: dict[str, tuple[str, str]] = {}
        for path in sorted(course.submission(student, assignment).glob("*.ipynb")):
            try:
                parts.update(answers(json.loads(path.read_text())))
            except (OSError, ValueError):
                continue  # unreadable: the autograde's report says why
        subs[student] = parts
    common = [answers(json.loads(p.read_text()))
              for folder in (course.release / assignment, course.source / assignment)
              for p in sorted(folder.glob("*.ipynb"))]
    return compare(subs, common, **kwargs)
