"""Self-checks of the chapter notebooks' "your turn" cells: hints, never grades.

Each chapter notebook ends a section with a small task, a starter line and a call to
:func:`your_turn`, which runs this module's visible check for that notebook against the
notebook's variables (the same :func:`cloudlab.checks.register` / :func:`expect` machinery
as the graded exercises) and prints ✓ or ✗ with a hint. It never raises and nothing is
recorded, so a wrong answer cannot stop *Run All* or a headless run. Where the check needs
a backend the notebook could not use, the cell says ``skipped:`` and why.

>>> your_turn("10", {"desired": 6})
✓ 10: passed (1 check)
True
>>> your_turn("10", {"desired": 4})
✗ 10: 3 replicas at 140 % CPU against a 70 % target: how many replicas does the HPA want?
      expected: ceil(3 x 140 / 70)
      found:    4
      hint:     desired = ceil(replicas x current / target) = ceil(3 x 140 / 70)
False
>>> your_turn("04", {}, skip="qemu is not installed (apt-get install qemu-system-x86)")
skipped: 04: qemu is not installed (apt-get install qemu-system-x86)
False
"""

from __future__ import annotations

import math
import re
import shlex

from . import check, expect, register

ASSIGNMENT = "chapter"
PORT_MAPPING = re.compile(r"^127\.0\.0\.1:(\d+):(\d+)$")


def your_turn(question: str, namespace: dict | None = None, *, skip: str | None = None) -> bool:
    """Run the self-check of a notebook's "your turn" cell; prints the verdict, never raises.

    ``skip`` is the reason the check cannot run here (a missing backend): it is printed
    instead, as ``skipped: <question>: <reason>``.
    """
    if skip:
        print(f"skipped: {question}: {skip}")
        return False
    if namespace is None:
        from . import _caller_namespace

        namespace = _caller_namespace()
    return check(question, {**namespace, "ASSIGNMENT": ASSIGNMENT})


def _number(ns: dict, name: str) -> float:
    value = ns.get(name)
    expect(isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value),
           f"set {name} to a number", expected="a number", found=value,
           hint=f"replace the `...` after `{name} =` with an expression, then run the cell")
    return float(value)


def _close(found: float, wanted: float, what: str, hint: str, rel: float = 0.02) -> None:
    """Within ``rel`` of the right value; the value itself is not shown (that would be
    the answer), the hint says how to work it out."""
    expect(math.isclose(found, wanted, rel_tol=rel, abs_tol=1e-9), what,
           expected=f"within {rel:.0%} of the value the hint works out", found=round(found, 4),
           hint=hint)


@register(ASSIGNMENT, "00")
def doctor_rows(ns: dict) -> None:
    wanted = sum(1 for row in ns["report"].rows if row.ok)
    _close(_number(ns, "ok_rows"), wanted, "how many rows of the doctor's report are ok?",
           "each row of report.rows has an .ok attribute: count the True ones "
           "(sum(row.ok for row in report.rows))")


@register(ASSIGNMENT, "01")
def spot_price(ns: dict) -> None:
    from .. import pricing

    wanted = pricing.price("m4.xlarge", ns["table"]) * (1 - 0.7)
    _close(_number(ns, "spot_hourly"), wanted,
           "what would one m4.xlarge cost an hour at a 70 % spot discount?",
           "take the on-demand price (cl.pricing.price('m4.xlarge', table)) and keep 30 % of it")


@register(ASSIGNMENT, "02")
def atomic_swap(ns: dict) -> None:
    command = ns.get("swap")
    expect(isinstance(command, str) and bool(command.strip()), "set swap to a shell command",
           hint="two commands joined by &&: make a new link, then rename it over `current`")
    words = shlex.split(command.replace("&&", " && "))
    expect("ln" in words and "-s" in "".join(w for w in words if w.startswith("-")),
           "the new link must be made with ln -s (a symbolic link)",
           expected="ln -s... NEW-LINK && mv -T NEW-LINK current", found=command,
           hint="ln -sfn releases/004-v4 current.new")
    expect("mv" in words and "-T" in words,
           "the swap must be a rename with mv -T, the one step a reader cannot see half done",
           expected="... && mv -T NEW-LINK current", found=command,
           hint="... && mv -T current.new current")
    expect(words[-1] == "current", "the rename must end at the link the servers read",
           expected="current", found=words[-1], hint="mv -T current.new current")


@register(ASSIGNMENT, "03")
def docker_run_command(ns: dict) -> None:
    tag = ns["tag"]
    command = ns.get("run_command")
    expect(isinstance(command, str) and command.startswith("docker run"),
           "run_command should be a `docker run ...` command line",
           expected="docker run ...", found=command,
           hint='start with "docker run -d ..."')
    words = shlex.split(command)
    ports = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-p", "--publish")]
    expect(len(ports) == 1, "publish exactly one port with -p", expected="one -p option",
           found=ports,
           hint="-p 127.0.0.1:8080:8000")
    mapping = PORT_MAPPING.match(ports[0])
    expect(mapping is not None,
           "publish on 127.0.0.1 only, as HOST_IP:HOST_PORT:CONTAINER_PORT",
           expected="127.0.0.1:8080:8000", found=ports[0],
           hint="without 127.0.0.1 the port is open on every interface of the machine")
    expect(mapping.group(1) == "8080" and mapping.group(2) == "8000",
           "host port 8080 should reach the app's port 8000", expected="127.0.0.1:8080:8000",
           found=ports[0],
           hint="-p 127.0.0.1:8080:8000 (host first, container second)")
    expect(any(w.startswith("--memory") or w == "-m" for w in words),
           "limit the container's memory", hint="--memory 256m")
    expect(words[-1] == tag, "the last word must be the image: the tag built above",
           expected=tag, found=words[-1], hint="end with the image's tag")


@register(ASSIGNMENT, "04")
def startup_ratio(ns: dict) -> None:
    timings = ns["timings"]
    medians = timings.groupby("kind")["seconds"].median()
    wanted = medians["vm"] / medians["container"]
    _close(_number(ns, "speedup"), wanted,
           "how many times longer did the VM take to be ready than the container (medians)?",
           'timings.groupby("kind")["seconds"].median(), then divide vm by container',
           rel=0.01)


@register(ASSIGNMENT, "05")
def reference_parts(ns: dict) -> None:
    parts = ns.get("parts")
    expect(isinstance(parts, (tuple, list)) and len(parts) == 3,
           "parts should be (registry, repository, tag)", expected="three strings", found=parts,
           hint='("host:port", "path/name", "tag")')
    wanted = ("127.0.0.1:5000", "course/hello", "1.0")
    for name, found, want in zip(("registry", "repository", "tag"), parts, wanted,
                                 strict=True):
        expect(found == want, f"the {name} of 127.0.0.1:5000/course/hello:1.0 is not {found!r}",
               expected=f"the {name} part", found=found,
               hint="the registry is everything before the first /; the tag follows the "
                    "last :, after the last /")


@register(ASSIGNMENT, "06")
def layer_order(ns: dict) -> None:
    order = ns.get("order")
    lines = ["COPY app.py .", "COPY requirements.txt .", "RUN pip install -r requirements.txt"]
    expect(isinstance(order, (list, tuple)) and sorted(order) == sorted(lines),
           "order should hold the three lines given, each once", expected=sorted(lines),
           found=order,
           hint="reorder the list; do not change the lines")
    expect(list(order) == [lines[1], lines[2], lines[0]],
           "a change to app.py should rebuild only the last step",
           expected="each line before the lines that depend on it, app.py last", found=order,
           hint="what changes least goes first: requirements, then the install, then the code")


@register(ASSIGNMENT, "07-config")
def configmap_items(ns: dict) -> None:
    volume = ns.get("my_volume")
    expect(isinstance(volume, dict) and isinstance(volume.get("configMap"), dict),
           "my_volume should be a volume with a configMap source",
           expected='{"name": "config", "configMap": {...}}', found=volume,
           hint="keep the starter's shape and fill in the configMap part")
    source = volume["configMap"]
    expect(source.get("name") == "app-config", "the volume should show the ConfigMap app-config",
           expected="app-config", found=source.get("name"),
           hint='"name" inside "configMap" names the ConfigMap, not the volume')
    items = source.get("items")
    expect(isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict),
           "list exactly one key under items: only greeting should appear", found=items,
           hint='"items": [{"key": ..., "path": ...}]')
    expect(items[0].get("key") == "greeting", "the item's key is the ConfigMap's key",
           expected="greeting", found=items[0].get("key"),
           hint="the key as it appears under the ConfigMap's data")
    expect(items[0].get("path") == "message.txt",
           "the item's path is the file name inside the mount folder",
           expected="message.txt", found=items[0].get("path"),
           hint="a path relative to the mountPath, without /etc/app")


@register(ASSIGNMENT, "07-sidecar")
def scrape_itself(ns: dict) -> None:
    job = ns.get("my_scrape_job")
    expect(isinstance(job, dict) and job.get("job_name") == "prometheus",
           'my_scrape_job should be a dict with "job_name": "prometheus"', found=job,
           hint="keep the starter's shape")
    try:
        targets = [t for group in job["static_configs"] for t in group["targets"]]
    except (KeyError, TypeError):
        targets = None
    expect(isinstance(targets, list) and len(targets) == 1,
           "list one target under static_configs", found=job.get("static_configs"),
           hint='"static_configs": [{"targets": ["host:port"]}]')
    expect(isinstance(targets[0], str) and ":" in targets[0],
           "a target is a string \"host:port\"", expected="a string like \"host:port\"",
           found=targets[0],
           hint="replace the ... with one string: the address the sidecar can reach itself at")
    host, _, port = targets[0].rpartition(":")
    expect(port == "9090", "the target's port is the one Prometheus listens on",
           expected="the port of --web.listen-address", found=targets[0],
           hint="the sidecar listens on 9090 (PROM_PORT)")
    expect(host in ("localhost", "127.0.0.1"),
           "scrape it from inside the pod, where every container shares one network "
           "namespace", expected="the pod's own loopback name", found=targets[0],
           hint="the pod IP changes with every pod: the app was scraped at localhost:8000")


@register(ASSIGNMENT, "08")
def promql_rate(ns: dict) -> None:
    from .. import prometheus

    cfg = ns["cfg"]
    wanted = prometheus.value(
        'sum(rate(rpc_durations_seconds_count{service="uniform"}[1m]))', cfg=cfg)
    mine = ns.get("calls_per_second")
    expect(isinstance(mine, str) and bool(mine.strip()), "set calls_per_second to a PromQL query",
           hint="rate(<counter>[1m]), summed over the targets")
    try:
        found = prometheus.value(mine, cfg=cfg)
    except prometheus.PromQLError as exc:
        expect(False, "Prometheus cannot run this query", expected="a valid query",
               found=str(exc),
               hint="look at the column the error points at")
    _close(float(found if found is not None else math.nan), float(wanted or 0.0),
           "calls per second of the uniform service, all targets together", rel=0.05,
           hint='rate() of rpc_durations_seconds_count{service="uniform"} over [1m], '
                "inside sum()")


@register(ASSIGNMENT, "09")
def littles_law(ns: dict) -> None:
    plateau, think = ns["plateau"], sum(ns["THINK"]) / 2
    wanted = 30 / plateau - think
    _close(_number(ns, "response_at_30"), wanted,
           "the mean response time (s) of 30 users once the service is saturated",
           "saturated, throughput X = plateau; Little: N = X (R + Z), so R = N / X - Z")


@register(ASSIGNMENT, "10")
def hpa_desired(ns: dict) -> None:
    desired = ns.get("desired")
    expect(desired == 6,
           "3 replicas at 140 % CPU against a 70 % target: how many replicas does the HPA want?",
           expected="ceil(3 x 140 / 70)", found=desired,
           hint="desired = ceil(replicas x current / target) = ceil(3 x 140 / 70)")


@register(ASSIGNMENT, "11")
def false_pages(ns: dict) -> None:
    from .. import alerting

    wanted = alerting.false_alarms_per_day(2, 86400 / 15) / 2
    _close(_number(ns, "false_per_day"), wanted,
           "false pages a day of a one-sided 2-sigma rule checked every 15 s, on normal noise",
           "cl.alerting.false_alarms_per_day(k, checks_per_day) counts both tails; "
           "a one-sided rule sees half of them")


@register(ASSIGNMENT, "12")
def backup_interval(ns: dict) -> None:
    interval = _number(ns, "backup_every_min")
    expect(0 < interval <= 15, "with an RPO target of 15 minutes, how often must backups run "
           "(minutes between backups)?", expected="an interval that meets the target",
           found=interval,
           hint="the worst case loses everything since the last backup: one whole interval")
    expect(interval == 15, "that interval meets the target, but the question asks for the "
           "largest one that does", expected="the longest interval within the target",
           found=interval, hint="the worst case loses one whole interval: it may be as long "
                                "as the target, and no longer")


def registered_questions() -> list[str]:
    """The notebooks with a self-check, in order."""
    from . import registered

    return sorted(registered(ASSIGNMENT))


__all__ = ["ASSIGNMENT", "registered_questions", "your_turn"]

