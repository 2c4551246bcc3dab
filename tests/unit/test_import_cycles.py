"""No import cycle between the grading machinery and the exercises' checks.

Read from the source (nothing is imported): each module's imports made when it loads
(module level, ``if``/``try`` blocks included; imports inside functions are deferred on
purpose and do not count). ``grading`` may depend on ``checks`` or the other way round,
never both; ``grading.sandbox`` (what runs a student's kernel) and ``grading.trusted``
(the instructor's graders) never import each other; and the student's side of an
exercise package imports nothing of the trusted side.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib"
PKG = LIB / "cloudlab"


def _module(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _loading_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    out: list = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    todo.extend(child.body if isinstance(child, ast.ExceptHandler)
                                else [child])
    return out


def graph() -> dict[str, set[str]]:
    """cloudlab module -> the cloudlab modules it imports while loading."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in _loading_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rsplit(".", 1)[0]
                stem = f"{base}.{node.module}" if node.level and node.module else \
                    (base if node.level else node.module or "")
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem
                           for a in node.names]
            for t in targets:
                while t and t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name:
                    edges[name].add(t)
    return edges


def reaches(edges: dict[str, set[str]], start: str, prefix: str) -> list[str]:
    """A chain of loading imports from ``start`` to a module under ``prefix`` ([] if none)."""
    seen, todo = {start: [start]}, [start]
    while todo:
        here = todo.pop()
        for nxt in sorted(edges[here]):
            if nxt in seen:
                continue
            seen[nxt] = [*seen[here], nxt]
            if nxt == prefix or nxt.startswith(prefix + "."):
                return seen[nxt]
            todo.append(nxt)
    return []


def test_the_reader_sees_the_known_imports():
    edges = graph()
    assert "cloudlab.grading.hooks" in edges["cloudlab.checks.kubernetes.hook"]
    assert "cloudlab.checks" in edges["cloudlab.grading.trusted"]
    assert "cloudlab.checks.kubernetes.rules" in edges["cloudlab.checks.kubernetes.cluster"]


def test_grading_and_checks_do_not_import_each_other_in_a_circle():
    edges = graph()
    for one, other in (("cloudlab.grading", "cloudlab.checks"),
                       ("cloudlab.grading.sandbox", "cloudlab.grading.trusted")):
        for a in [m for m in edges if m == one or m.startswith(one + ".")]:
            there = reaches(edges, a, other)
            if not there:
                continue
            back = reaches(edges, there[-1], one)
            assert not back, f"import cycle: {' -> '.join(there)} -> {' -> '.join(back[1:])}"


def test_the_student_side_imports_nothing_trusted():
    edges = graph()
    for pkg in ("cloudlab.checks.kubernetes", "cloudlab.checks.docker_hub"):
        for side in (f"{pkg}.student_side", f"{pkg}.rules"):
            for trusted in (f"{pkg}.hook", f"{pkg}.cluster", "cloudlab.grading"):
                chain = reaches(edges, side, trusted)
                assert not chain, " -> ".join(chain)
