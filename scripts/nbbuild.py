"""Build a notebook (without outputs) from percent-format text.

``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell (its lines lose the
leading ``# ``), and ``# %% tags=["parameters"]`` a tagged code cell.

Usage: ``python scripts/nbbuild.py SRC.py DST.ipynb``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _markdown(body: str) -> str:
    return "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#")
                     for ln in body.splitlines())


def build(src: Path, dst: Path) -> None:
    cells = []
    for chunk in re.split(r"^# %%", Path(src).read_text(), flags=re.M)[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if "[markdown]" in header:
            cells.append(new_markdown_cell(_markdown(body)))
            continue
        cell = new_code_cell(body)
        if "tags" in header:
            cell.metadata["tags"] = re.findall(r'"([^"]+)"', header)
        cells.append(cell)
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL,
                                             "language_info": {"name": "python"}})
    nbformat.write(nb, str(dst))


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
