"""What the chapter's prose claims, checked on a notebook's executed outputs.

The notebooks tier runs every chapter notebook once (``test_notebooks.py``); right after a
run passes, :func:`verify` reads the executed notebook's printed outputs and asserts the
claims its text makes about them. Each claim reads the very lines a student reads, so a
run that stops showing the effect fails here. ``tests/unit/test_notebook_claims.py`` proves
each claim fails on outputs that contradict it.
"""

from __future__ import annotations

import ast
import base64
import re
from collections.abc import Callable
from pathlib import Path

import nbformat

YOUR_TURN = re.compile(r"your_turn\(")
VERDICT = re.compile(r"^(✓|✗|skipped:) ", re.M)


def text(notebook: nbformat.NotebookNode, cell_pattern: str | None = None) -> str:
    """The printed output (streams and plain-text results) of the code cells, joined;
    only of the cells whose source matches ``cell_pattern`` when one is given."""
    parts = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or (cell_pattern and not re.search(cell_pattern,
                                                                       cell.source)):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "text/plain" in out.get("data", {}):
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def _one(pattern: str, output: str, what: str) -> re.Match:
    found = re.search(pattern, output)
    assert found, f"the output has no line saying {what} (looked for /{pattern}/)"
    return found


def detector_scores_differ_across_k(nb: nbformat.NotebookNode) -> None:
    """11: the detector runs at the 1 s interval the text states; its scores differ across
    k (with overlap-free scoring a lagging page no longer credits every k alike), or, as
    the text allows for a short run, no noise crossed even 1 sigma and every incident was
    caught; the false alarms a day, which the text leans on, fall with k."""
    out = text(nb)
    _one(r"scrape every 1(\.0)? s", out, "Prometheus scrapes every 1 s")
    rows = re.findall(r"k = (\d): (\d+) pages, (\d+) of them false; caught (\d+) of (\d+)", out)
    assert len(rows) == 3, f"expected one score line per k = 1, 2, 3, found {rows}"
    scores = {k: rest for k, *rest in rows}
    per_day = ast.literal_eval(_one(r"false alarms a day from noise alone.*?: (\{.*\})", out,
                                    "the false alarms a day per k")[1])
    assert per_day[1] > per_day[2] > per_day[3], f"false alarms a day do not fall with k: {per_day}"
    if len(set(map(tuple, scores.values()))) == 1:
        # the text allows this only as "a short run has few chances for noise to cross the
        # line": no false page at any k, every incident caught; the day's count differs
        _, false, caught, incidents = scores["1"]
        assert false == "0" and caught == incidents, \
            f"the detector scores the same for every k, with misses or false pages: {scores}"


def promql_condition_is_one_sided_and_fires(nb: nbformat.NotebookNode) -> None:
    """11: the exercise's one-sided PromQL condition (mean + 3 sigma of a baseline that ends
    before the point) holds during the major incident."""
    out = text(nb)
    if "skipped:" in out and "one-sided alert condition" not in out:
        return  # no Prometheus: the skip line is held by test_notebooks
    held = ast.literal_eval(_one(r"one-sided alert condition .* held, in seconds: (\{.*\})",
                                 out, "how long the PromQL condition held")[1])
    assert held.get("major", 0) > 0, f"the one-sided condition never held in the major: {held}"


def throughput_flattens_at_saturation(nb: nbformat.NotebookNode) -> None:
    """09: the server never uses more CPU than its limit; where it used all of its cores at
    every step past saturation, four times the users or more bring (almost) no more
    throughput (it may fall: contention), which stays near the capacity measured before the
    test. Where the host left it less, the notebook says so, and its CPU figures agree.

    Two steps of a few seconds each are too noisy on a busy host to compare (each one's CPU
    per request varied by up to half in this machine's runs): the claim spans x4 users."""
    out = text(nb)
    capacity = float(_one(r"capacity CPUS / C = ([\d.]+) requests/s", out, "the capacity")[1])
    cores = ast.literal_eval(_one(r"server CPU per step, in cores: (\{.*?\});", out,
                                  "the server's CPU per step")[1])
    limit = float(_one(r"of its ([\d.]+) cores", out, "the CPU limit")[1])
    assert len(cores) >= 3 and max(cores.values()) <= 1.1 * limit, \
        f"the server's CPU per step is not held under its limit of {limit} cores: {cores}"
    users = _one(r"demand exceeds it from (\S+) users on", out, "where saturation begins")[1]
    assert users != "no", "the profile never asks for more than the capacity: no saturation"
    flat = _one(r"throughput from (\d+) to (\d+) users: ([\d.]+) -> ([\d.]+) requests/s "
                r"\(x([\d.]+) for x(\d+) the users\)", out, "throughput past saturation")
    first, growth, last = int(flat[1]), float(flat[5]), float(flat[4])
    assert first >= int(users) and int(flat[6]) >= 4, \
        f"the profile goes from {flat[1]} to {flat[2]} users past saturation ({users} users " \
        f"on): too short a span (x{flat[6]}, under x4) to show throughput flattening"
    past = [n for n in cores if n >= first]
    if "used all of its" not in out:  # a busy host: the claim is the notebook's account of it
        short = float(_one(r"the server got as little as ([\d.]+) of its", out,
                           "why the server never reached its limit")[1])
        assert short == min(cores[n] for n in past) < 0.9 * limit, (short, cores)
        return
    assert all(cores[n] >= 0.9 * limit for n in past), \
        f"said to be at its limit from {first} users on, but used {cores}"
    assert growth < 2, f"throughput still grows x{growth} for x{flat[6]} the users " \
        f"while the server uses all of its cores ({cores})"
    assert last <= 1.5 * capacity, \
        f"{last} requests/s measured, above the capacity {capacity} it should flatten at"


def rpo_is_meaningful(nb: nbformat.NotebookNode) -> None:
    """12: backups are spaced (not milliseconds apart), the RPO is of the order of that
    spacing, and the RPO check fails on purpose against its 1 s target."""
    out = text(nb)
    spacing = float(_one(r"backups taken, ([\d.]+) s apart", out, "the backup spacing")[1])
    rpo = float(_one(r"RPO \(data lost\)\s*: ([\d.]+) s", out, "the measured RPO")[1])
    assert spacing >= 0.5, f"backups only {spacing} s apart: the RPO cannot mean much"
    assert rpo >= 0.5 * spacing, f"RPO {rpo} s is far below the backup spacing {spacing} s"
    _one(r"to fix \(reliability\): RPO within", out, "the failing RPO check")
    assert "sustainability" in text(nb, r"dr\.checklist"), "the checklist lacks a pillar"


def canary_ratio_as_expected(nb: nbformat.NotebookNode) -> None:
    """08: the measured canary/production ratio is the one worked out beforehand."""
    found = _one(r"expected ([\d.]+)x .* measured ([\d.]+)x", text(nb), "the two ratios")
    expected, measured = float(found[1]), float(found[2])
    assert abs(measured / expected - 1) < 0.35, \
        f"measured {measured}x against the {expected}x the text works out"


def your_turn_reports(nb: nbformat.NotebookNode) -> None:
    """Every "your turn" cell ran its check: a verdict or a skip reason, never a crash of
    the check itself (a notebook variable it needs has gone missing)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and YOUR_TURN.search(c.source)]
    for cell in cells:
        out = text(nbformat.v4.new_notebook(cells=[cell]))
        assert VERDICT.search(out), f"a your-turn cell printed no verdict: {out!r}"
        assert "the check could not run" not in out, f"a your-turn check crashed: {out!r}"


def build_secret_stays_out(nb: nbformat.NotebookNode) -> None:
    """03: the BuildKit step read the secret (the digest it wrote is the token's), the
    token shows nowhere in that image, and as a build argument it shows in the history."""
    out = text(nb)
    if "BuildKit     : NOT available" in out:
        return  # no BuildKit (or no engine) here: test_notebooks holds the skip line
    built = _one(r"sha256 of the token, read in the build: *(\S+)", out, "the build's digest")
    here = _one(r"sha256 of the token, computed here *: *(\S+)", out, "the token's digest")
    assert built[1] == here[1], f"the build read {built[1]}, not the token ({here[1]})"
    where = _one(r"where the token shows in the image *: *(.*)", out, "where the token shows")
    assert where[1].strip() == "nowhere", f"the build secret leaked: {where[1]}"
    count = _one(r"the token shows in (\d+) place\(s\) of the image:\n +history: ", out,
                 "the build argument in the history")
    assert int(count[1]) > 0


def hpa_scales_up_and_back_down(nb: nbformat.NotebookNode) -> None:
    """07: the real HPA adds replicas under the load and removes them after it (on kwok's
    emulated CPU, or on the real node's); the warnings it met are counted and explained."""
    out = text(nb)
    if "skipped: this section" in out:
        return  # no cluster here: the skip line itself is held by test_notebooks
    found = _one(r"replicas: from (\d+) up to (\d+), back down to (\d+)", out,
                 "the HPA's replica summary")
    first, peak, last = map(int, found.groups())
    assert peak > first and last < peak, f"the HPA went {first} -> {peak} -> {last}"
    _one(r"FailedGetResourceMetric warnings: (\d+)", out, "how many metric warnings it met")


def real_pods_answer_and_leave_nothing(nb: nbformat.NotebookNode) -> None:
    """07 on a real node: the Service answers from several pods, a rollout held by a broken
    readiness probe keeps serving v1 only, and the node leaves nothing behind."""
    out = text(nb)
    if "with a real node: pods really run" not in out:
        return  # kwok's simulated pods only: nothing runs, nothing answers
    answered = _one(r"answered by: (\{.*\})", out, "which pods answered")
    assert len(ast.literal_eval(answered.group(1))) > 1, "one pod answered every request"
    held = _one(r"while the rollout is held: (\{.*\})", out, "what the held rollout served")
    assert ast.literal_eval(held.group(1)) == {"v1"}, "the broken version served requests"
    assert "left by the real node: nothing" in out, "the real node left something behind"
    assert "processes still alive: none" in out, "the real node left processes behind"


def secret_is_base64_not_encrypted(nb: nbformat.NotebookNode) -> None:
    """07: the Secret's value never shows in plain text in ``kubectl get secret -o yaml``,
    only base64-encoded, which ``base64 -d`` turns back into it; etcd holds it readable; on
    the real node the pod read the ConfigMap's value (env and file) and the Secret's."""
    out = text(nb)
    if "skipped: no cluster here" in out:
        return  # the manifests only: nothing was stored
    password = _one(r"\$ kubectl .*create secret generic db --from-literal=password=(\S+)", out,
                    "the Secret's value as created")[1]
    shown = _one(r"(?s)get secret db -o yaml\n(.*?)\n\$ echo (\S+) \| base64 -d\n(\S+)", out,
                 "the Secret as the API returns it, then decoded")
    stored = base64.b64encode(password.encode()).decode()
    assert password not in shown[1], "the Secret's value shows in plain text in get -o yaml"
    assert f"password: {stored}" in shown[1], "the Secret's value is not base64 in get -o yaml"
    assert shown[2] == stored and shown[3] == password, \
        f"base64 -d of {shown[2]} gave {shown[3]}, not the value stored"
    if "using the kwok backend" in out:  # its etcd runs on this machine
        _one(r"the password in plain text among them: True", out, "etcd holding it readable")
    if "with a real node: pods really run" not in out:
        return  # kwok: no process reads anything
    _one(r"env GREETING = hello from a ConfigMap\n", out, "the pod's env from the ConfigMap")
    _one(r"file /etc/app/greeting = hello from a ConfigMap\n", out,
         "the pod's file from the ConfigMap")
    _one(r"/etc/db/password \(file\) agree: True", out, "the Secret read twice, alike")
    _one(r"/etc/db is a tmpfs mount", out, "the Secret volume on a tmpfs")


def sidecar_scrapes_the_app_on_localhost(nb: nbformat.NotebookNode) -> None:
    """07 on a real node: the app's container reached the Prometheus sidecar at localhost,
    and the sidecar's query returned the app's own counter, scraped at localhost:8000, with
    at least the requests sent."""
    out = text(nb)
    if "with a real node: pods really run" not in out:
        _one(r"skipped: the sidecar", out, "why the sidecar was skipped")
        return
    sent = int(_one(r"sent (\d+) requests to the app", out, "how many requests were sent")[1])
    _one(r"Prometheus Server is Ready", out, "the app's container reaching the sidecar")
    found = _one(r"the sidecar's query .*? -> instance=(\S+) job=(\S+) value=([\d.e+]+)", out,
                 "the sidecar's query result")
    instance, job, value = found[1], found[2], float(found[3])
    assert (instance, job) == ("localhost:8000", "app"), \
        f"the sample came from {job} at {instance}, not the app at localhost:8000"
    assert value >= sent, f"the sidecar saw {value:g} requests of the {sent} sent"


CLAIMS: dict[str, list[Callable[[nbformat.NotebookNode], None]]] = {
    "03-containers-with-docker": [build_secret_stays_out],
    "07-kubernetes": [hpa_scales_up_and_back_down, real_pods_answer_and_leave_nothing,
                      secret_is_base64_not_encrypted, sidecar_scrapes_the_app_on_localhost],
    "08-prometheus": [canary_ratio_as_expected],
    "09-load-testing": [throughput_flattens_at_saturation],
    "11-alerting": [detector_scores_differ_across_k, promql_condition_is_one_sided_and_fires],
    "12-reliability-and-dr": [rpo_is_meaningful],
}


def verify(stem: str, executed: Path) -> list[str]:
    """Assert the claims of notebook ``stem`` on its executed copy; the names checked."""
    nb = nbformat.read(str(executed), as_version=4)
    checks = [*CLAIMS.get(stem, []), your_turn_reports]
    for claim in checks:
        claim(nb)
    return [c.__name__ for c in checks]
