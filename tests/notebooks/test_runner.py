"""``cloudlab run --jobs``: notebooks side by side, never two that share something."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

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


@pytest.fixture(autouse=True)
def _private_record(tmp_path, monkeypatch):
    """Notebook times go to this test's folder, never the checkout's record."""
    monkeypatch.setattr(runner, "_seconds_file", lambda: tmp_path / "seconds.json")


def test_the_longest_notebook_last_time_starts_first_and_times_are_kept(tmp_path):
    log = tmp_path / "log.jsonl"
    books = [_notebook(tmp_path, n, []) for n in ("a-free", "b-free", "c-long")]
    (tmp_path / "seconds.json").write_text(json.dumps({"c-long.ipynb": 250.0}))
    results = runner.run_all(books, {"log": str(log)}, progress=False, jobs=2,
                             out_dir=tmp_path / "runs")
    assert [r.notebook for r in results] == [b.name for b in books]  # order given, still
    starts = {json.loads(line)[0]: json.loads(line)[1] for line in log.read_text().splitlines()}
    assert starts["c-long"] < starts["b-free"], f"the long one waited: {starts}"
    kept = runner.last_seconds()
    assert set(kept) == {"a-free.ipynb", "b-free.ipynb", "c-long.ipynb"}
    assert 1.5 < kept["c-long.ipynb"] < 120  # this run's time replaced the old one


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


def test_a_message_a_wait_missed_is_found_by_the_next_slice():
    """jupyter/nbclient#312: one long wait on a kernel socket can sleep through the reply
    that came during it. Waits come in slices, so the next one sees it at once."""
    import asyncio
    import queue
    import time

    calls = []

    async def get(t):
        calls.append(t)
        if len(calls) == 1:  # the reply arrives, but this wait misses it
            await asyncio.sleep(t)
            raise queue.Empty
        return {"msg_type": "execute_reply"}

    started = time.monotonic()
    msg = asyncio.run(runner.poll_in_slices(get, timeout=900, step=0.05))
    assert msg == {"msg_type": "execute_reply"}
    assert time.monotonic() - started < 5 and len(calls) == 2 and calls[0] == 0.05


def test_a_wait_in_slices_still_ends_at_its_timeout():
    import asyncio
    import queue
    import time

    async def nothing(t):
        await asyncio.sleep(t)
        raise queue.Empty

    started = time.monotonic()
    with pytest.raises(queue.Empty):
        asyncio.run(runner.poll_in_slices(nothing, timeout=0.3, step=0.05))
    assert 0.25 < time.monotonic() - started < 3


def test_papermill_runs_a_widget_cell_with_the_sliced_client(tmp_path):
    """The runner's kernel manager hands out the sliced client, and a cell that shows
    ipywidgets (the kind that hung) runs through it."""
    km = runner.ipc_kernel_manager()(kernel_name="python3")
    assert km.client_factory is runner.sliced_client()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import ipywidgets as w\n"
        "box = w.interactive(lambda k: print('k =', k), k=w.IntSlider(value=3, max=5))\n"
        "display(box)")] * 3
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "widgets.ipynb"
    nbformat.write(nb, path)
    result = runner.execute(path, out_dir=tmp_path / "out", progress=False, timeout=120)
    assert result.status == "passed", result.error
    assert "k = 3" in result.output.read_text()
