"""``cloudlab run --jobs``: notebooks side by side, never two that share something."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from cloudlab import runner

BODY = """
import json, os, time
t0 = time.time()
time.sleep(2)
with open(log, "a") as f:
    f.write(json.dumps([name, t0, time.time(), os.getpid()]) + "\\n")
"""


def _notebook(folder: Path, name: str, shares: list[str], fail: bool = False) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('log = ""')
    params.metadata["tags"] = ["parameters"]
    body = f"name = {name!r}" + BODY + ("raise ValueError('boom')" if fail else "")
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["cloudlab"] = {"shares": shares}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def test_jobs_never_overlap_what_they_share_and_keep_the_order(tmp_path):
    log = tmp_path / "log.jsonl"
    books = [_notebook(tmp_path, "a-swarm", ["swarm"]), _notebook(tmp_path, "b-free", []),
             _notebook(tmp_path, "c-swarm", ["swarm", "prometheus"]),
             _notebook(tmp_path, "d-fails", [], fail=True)]
    assert runner.shares(books[2]) == {"swarm", "prometheus"}
    results = runner.run_all(books, {"log": str(log)}, progress=False, jobs=2,
                             out_dir=tmp_path / "runs")

    assert [r.notebook for r in results] == [b.name for b in books]
    assert [r.status for r in results] == ["passed", "passed", "passed", "failed"]
    assert "boom" in results[3].error
    assert all(r.output == tmp_path / "runs" / r.notebook for r in results)
    spans = {}
    for line in log.read_text().splitlines():
        name, start, end, pid = json.loads(line)
        spans[name] = (start, end, pid)
    assert set(spans) == {"a-swarm", "b-free", "c-swarm", "d-fails"}
    a, c = spans["a-swarm"], spans["c-swarm"]
    assert a[1] <= c[0] or c[1] <= a[0], f"notebooks sharing the Swarm overlapped: {a} {c}"
    assert len({pid for *_, pid in spans.values()}) == 4, "each notebook has a kernel of its own"
    # never more than two at once
    edges = sorted([(s, 1) for s, _, _ in spans.values()] + [(e, -1) for _, e, _ in
                                                             spans.values()])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    assert peak <= 2
    text = runner.summary(results, wall=12.5)
    assert text.splitlines()[-1].startswith("3/4 notebooks passed: 12.5 s wall clock")


def test_every_notebook_that_uses_the_swarm_says_it_shares_it():
    """``make run`` runs two notebooks at a time: one that joins the engine's Swarm without
    saying so could be torn down under another."""
    for nb in runner.notebooks():
        if "cl.swarm." in nb.read_text():
            assert "swarm" in runner.shares(nb), f"{nb.name}: metadata cloudlab.shares"


def test_every_notebook_on_the_shared_prometheus_says_it_shares_it():
    """A notebook on the machine's Prometheus (port 9090, its targets and rules) shares it;
    one that starts its own with ``cl.services.private`` (notebook 11) runs beside others."""
    for nb in runner.notebooks():
        text = nb.read_text()
        if "cl.services.prometheus(" in text and "cl.services.private(" not in text:
            assert "prometheus" in runner.shares(nb), f"{nb.name}: metadata cloudlab.shares"


def test_every_notebook_that_starts_a_real_node_says_it_shares_it():
    """One real node per machine: a notebook starting one beside another would be
    refused, so it says so and runs alone (and the real-node tests wait for it)."""
    for nb in runner.notebooks():
        if "real_nodes=" in nb.read_text():
            assert "real-node" in runner.shares(nb), f"{nb.name}: metadata cloudlab.shares"
