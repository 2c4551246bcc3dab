"""Trusted graders of the ``alerting`` exercise (instructor side: never released).

Every graded cell's points are decided here, from plain data the host collected
(``cloudlab.grading.trusted``); the notebook's test cells are feedback only.

- ``three_sigma``: the answer cell is executed from its source in a fresh sandbox and the
  function called there with the hidden series below; only its results come back, and
  are compared here with the specification (:func:`reference_three_sigma`).
- ``alert_rules.yml``: ``promtool check rules``, then ``promtool test rules`` on hidden
  series, after a size cap, in a throwaway container (``cloudlab.grading.confine.run``:
  files read-only, no network, CPU/memory/pids/time limits).
- ``alertmanager.yml``: ``amtool check-config``, then ``amtool config routes test`` on
  hidden label sets, the same way. A webhook to anything but loopback is refused before
  any tool sees the file; amtool only reads it. Nothing is ever sent.
- ``five_whys`` is graded by hand (nbgrader's manual grading) with the rubric shown in
  the notebook.

Anything that fails, times out or is killed closes to 0 points with a reason.
"""

from __future__ import annotations

import ast
import ipaddress
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cloudlab.checks.alerting import alert_rules, group_problem, shape_problems
from cloudlab.grading.trusted import call, cell, expect, file, grader

Verdicts = dict[str, dict[str, Any]]

MAX_FILE_BYTES = 64 * 1024  # a rule file or an Alertmanager config bigger than this is refused
TOOL_TIMEOUT = 20.0  # seconds per promtool/amtool run

# -- Part A: three_sigma -------------------------------------------------------------------------

NAN = float("nan")
MIN_VALUES = 20  # fewer values present than this: too little history, nothing is flagged
_NOISE = [10.2, 9.8, 10.1, 9.9, 10.0, 10.3, 9.7, 10.05, 9.95, 10.15,
          9.85, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0, 10.1, 9.9, 10.0]

# grade_id: (points, what it checks, [hidden series]). Every test holds a series on which a
# correct detector flags something, so a detector that never flags anything passes none.
SIGMA_CASES: dict[str, tuple[float, str, list[list[Any]]]] = {
    "sigma_flat": (1, "a flat series has no spread: nothing is flagged (no division by 0); "
                      "one blip on a flat series is flagged",
                   [[4.0] * 30, [4.0] * 30 + [5.0]]),
    # one outlier among n values is at most (n-1)/sqrt(n) population sds away: 12 values
    # already allow 3.2, so without the 20-value rule these short series would flag
    "sigma_short": (1, "fewer than 20 values present: too short to judge, nothing flagged; "
                       "exactly 20 values are judged",
                    [[10.0] * 11 + [100.0], [*_NOISE[:18], 30.0], [*_NOISE[:19], 30.0]]),
    "sigma_nan": (1, "NaN and None are skipped (never flagged, not part of mean or sd)",
                  [[*_NOISE[:10], NAN, *_NOISE[10:], None, 30.0]]),
    # 10.64 is 3.05 population standard deviations above the mean, but only 2.97 sample ones;
    # 9.36 is as far below it: one-sided, a dip is never flagged
    "sigma_spike": (1, "one-sided: a single spike, just over 3 population standard deviations "
                       "above the mean, is the only value flagged; a dip as deep is not",
                    [[*_NOISE[:10], 10.64, *_NOISE[10:]], [*_NOISE[:10], 9.36, *_NOISE[10:]]]),
}


def reference_three_sigma(series: list[Any]) -> list[bool]:
    """The specification, executed: what a correct answer returns."""
    values = [float(v) for v in series if _present(v)]
    if len(values) < MIN_VALUES:
        return [False] * len(series)
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if sd == 0:
        return [False] * len(series)
    return [_present(v) and float(v) - mean > 3 * sd for v in series]


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


# -- Part B: the Prometheus alerting rules -------------------------------------------------------

# Hidden series, one sample a minute. Each service keeps its own baseline and spread, so
# no fixed threshold (``> 5``), no ratio to the mean (``> 1.2 * avg``) and no fixed margin
# (``> avg + 0.05``) passes: only a rule that scales with the standard deviation does.
# Alerts are compared on the labels the text asks for (the series' own and ``severity``),
# read from Prometheus' ALERTS series: labels and annotations a student adds are not
# compared.
_WIGGLE = [0.0, 0.003, -0.002, 0.001, -0.003, 0.002, -0.001, 0.0]  # population sd 0.00187
_SD = math.sqrt(sum(w * w for w in _WIGGLE) / len(_WIGGLE))
INCIDENT_AT = 90  # minutes: every incident below starts here


def _p99(service: str, instance: str) -> str:
    return (f'rpc_durations_seconds{{quantile="0.99", service="{service}", job="random", '
            f'instance="{instance}"}}')


def _steady(base: float, minutes: int = INCIDENT_AT, then: float | None = None,
            bad: int = 20) -> str:
    """``base`` with a small wiggle for ``minutes``, then ``bad`` minutes at ``then``."""
    values = [f"{base + _WIGGLE[i % len(_WIGGLE)]:.4g}" for i in range(minutes)]
    return " ".join(values + ([f"{then:.4g}"] * bad if then is not None else []))


def _swings(low: float, high: float, minutes: int = INCIDENT_AT + 20) -> str:
    """Ten minutes low, ten minutes high, and so on: normal for this service."""
    return " ".join(f"{high if (i // 10) % 2 else low:g}" for i in range(minutes))


# steady: 0.200 s +- 0.003, then 0.240 s (a 20 % rise, 21 sigma); noisy: 0.35 s and 0.65 s
# in turns (sd 0.15 s; 0.65 s is only 1 sigma, and it is high from minute 90 to 99)
FIRE_SERIES = [{"series": _p99("steady", "a:8080"), "values": _steady(0.2, then=0.24)},
               {"series": _p99("noisy", "b:8080"), "values": _swings(0.35, 0.65)}]
# calm rises to 2.5 sigma (never even pending); warm, on a lower baseline, jumps 10 sigma
QUIET_SERIES = [{"series": _p99("calm", "c:8080"), "values": _steady(0.2, then=0.2 + 2.5 * _SD)},
                {"series": _p99("warm", "d:8080"), "values": _steady(0.1, then=0.1 + 10 * _SD)}]
DOWN_SERIES = [{"series": 'up{job="random", instance="a:8080"}', "values": "1 1 1 0 0 0 0"},
               {"series": 'up{job="random", instance="b:8080"}', "values": "1 1 1 1 1 1 1"}]
_KEEP = ("quantile", "service", "job", "instance", "severity")


def _alerts(alert: str, state: str | None, keep: tuple[str, ...] = _KEEP) -> str:
    """PromQL: the alerts of ``alert`` (in ``state``: pending, firing; None: either)."""
    which = f'alertname="{alert}"' + (f', alertstate="{state}"' if state else "")
    return f"count by ({', '.join(keep)}) (ALERTS{{{which}}})"


def _labels(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


STEADY = _labels(quantile="0.99", service="steady", job="random", instance="a:8080",
                 severity="page")


def _expect(expr: str, minute: int, *labels: str) -> dict[str, Any]:
    return {"expr": expr, "eval_time": f"{minute}m",
            "exp_samples": [{"labels": lbl, "value": 1} for lbl in labels]}


def _test(series: list[dict[str, str]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"interval": "1m", "input_series": series, "promql_expr_test": checks}


LATENCY = "LatencyThreeSigma"
RULE_CASES: dict[str, tuple[float, str, dict[str, Any]]] = {
    "rule_fires": (2, "an incident on a steady series pages once it has lasted 5 minutes "
                      "(severity=page, the series' own labels), while a noisy series whose "
                      "swings stay within 3 sigma of its own baseline pages nobody",
                   _test(FIRE_SERIES, [_expect(_alerts(LATENCY, "firing"), m, STEADY)
                                       for m in (INCIDENT_AT + 7, INCIDENT_AT + 9)])),
    "rule_waits": (1, "3 minutes into that incident the alert is pending, not yet firing "
                      "(for: 5m), and nothing else is pending",
                   _test(FIRE_SERIES, [_expect(_alerts(LATENCY, "pending"), INCIDENT_AT + 3,
                                               STEADY),
                                       _expect(_alerts(LATENCY, "firing"), INCIDENT_AT + 3)])),
    "rule_quiet": (1, "a sustained rise to 2.5 sigma never even makes the alert pending, "
                      "while a 10 sigma jump on another series does",
                   _test(QUIET_SERIES,
                         [_expect(_alerts(LATENCY, None, ("service",)), INCIDENT_AT + 3,
                                  _labels(service="warm")),
                          *[_expect(_alerts(LATENCY, None, ("service",))
                                    .replace("alertname=", 'service="calm", alertname='), m)
                            for m in (INCIDENT_AT + 3, INCIDENT_AT + 7, INCIDENT_AT + 9)]])),
    "rule_target_down": (1, "a target down for 2 minutes raises TargetDown with "
                            "severity=ticket and its job and instance; one that answers "
                            "raises nothing",
                         _test(DOWN_SERIES,
                               [_expect(_alerts("TargetDown", "firing",
                                                ("job", "instance", "severity")), 6,
                                        _labels(job="random", instance="a:8080",
                                                severity="ticket")),
                                _expect(_alerts("TargetDown", "firing",
                                                ("job", "instance", "severity")), 3)])),
}
RULES_VALID = ("rules_valid", 1.0)


def _tools(commands: dict[str, list[str]], work: Path, tool: str) -> dict[str, tuple[Any, str]]:
    """Run each command on the files in ``work`` inside ONE confined container.

    ``cloudlab.grading.confine.run``: the files read-only, no network, no capabilities,
    CPU/memory/pids/time limits; each command also has its own time limit. Returns
    ``{name: (passed, output)}``; passed is None when that command ran out of time.
    """
    from cloudlab.grading import confine

    script = []
    for name, cmd in commands.items():
        quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in cmd)
        script.append(f"echo '@@begin {name}'; timeout -s KILL {TOOL_TIMEOUT:g} {quoted} 2>&1;"
                      f" echo \"@@end {name} $?\"")
    limits = confine.Limits(cpus=1.0, memory="512m", pids=64, disk="16m",
                            seconds=TOOL_TIMEOUT * len(commands) + 15)
    ran = confine.run(["sh", "-c", "\n".join(script)], limits, files=work, tools=[tool])
    found: dict[str, tuple[Any, str]] = {}
    for name in commands:
        block = re.search(rf"@@begin {re.escape(name)}\n(.*?)@@end {re.escape(name)} (\d+)",
                          ran.output, re.S)
        if block is None:
            why = ("the tools ran out of time" if ran.timed_out
                   else _tail(ran.output) or "the tool did not run")
            found[name] = (False, f"{tool}: {why}")
            continue
        text = "\n".join(ln for ln in block[1].splitlines()
                         if "overrides the --alertmanager.url" not in ln).strip()
        code = int(block[2])
        found[name] = ((None, f"{tool} did not finish within {TOOL_TIMEOUT:g} s")
                       if code in (124, 137) else (code == 0, text))
    return found


def _tool_missing(tool: str) -> str | None:
    return None if shutil.which(tool) else f"{tool} is not installed on the grading host"


def grade_rules(text: str | bytes | None) -> Verdicts:
    """promtool check rules and the file's shape (1 point), then one promtool test per
    hidden case, on the student's file as written."""
    gid_valid, valid_pts = RULES_VALID
    verdicts = {gid_valid: _zero(valid_pts, ""),
                **{gid: _zero(pts, "") for gid, (pts, _, _) in RULE_CASES.items()}}
    problem = _file_problem(text, "alert_rules.yml") or _tool_missing("promtool")
    if problem:
        return _all_zero(verdicts, problem)
    with tempfile.TemporaryDirectory(prefix="grade-rules-") as tmp:
        work = Path(tmp)
        (work / "rules.yml").write_text(_text(text))
        checked = _tools({"check": ["promtool", "check", "rules", "rules.yml"]}, work,
                         "promtool")
        ok, out = checked["check"]
        if not ok:
            return _all_zero(verdicts, "promtool check rules: " + _tail(out))
        rules = alert_rules(yaml.safe_load(_text(text)))
        if not rules:
            return _all_zero(verdicts, "alert_rules.yml defines no alerting rules")
        missing = shape_problems(rules)
        verdicts[gid_valid] = (_zero(valid_pts, "; ".join(missing)) if missing else
                               _full(valid_pts, "promtool check rules: SUCCESS; both alerts "
                                                "have a summary"))
        for gid, (_, _, case) in RULE_CASES.items():
            spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [case]}
            (work / f"{gid}.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        results = _tools({gid: ["promtool", "test", "rules", f"{gid}.yml"]
                          for gid in RULE_CASES}, work, "promtool")
        for gid, (pts, what, _) in RULE_CASES.items():
            ok, out = results[gid]
            verdicts[gid] = (_full(pts, f"passed: {what}") if ok
                             else _zero(pts, f"{what}: {_tail(out)}"))
    return verdicts


# -- Part C: the Alertmanager escalation policy --------------------------------------------------

ROUTE_CASES: dict[str, tuple[float, dict[str, str], list[str], str]] = {
    "route_page": (1, {"alertname": "LatencyThreeSigma", "severity": "page",
                       "service": "normal"}, ["oncall-primary"],
                   "a page goes to the primary on-call"),
    "route_escalate": (1, {"alertname": "LatencyThreeSigmaUnacknowledged",
                           "severity": "escalate", "service": "normal"},
                       ["oncall-primary", "oncall-backup"],
                       "an escalation reaches the primary AND the backup"),
    "route_ticket": (1, {"alertname": "TargetDown", "severity": "ticket",
                         "job": "random"}, ["tickets"], "a ticket goes to the ticket queue"),
    "route_default": (1, {"alertname": "Watchdog", "severity": "info"}, ["team-chat"],
                      "anything else goes to the team chat"),
}
CONFIG_VALID = ("am_valid", 1.0)
_LOOPBACK = ("localhost",)


def outside_urls(config: Any) -> list[str]:
    """Every URL in the config that points anywhere but this machine's loopback."""
    found: list[str] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and (key.endswith("url") or "://" in node):
            host = urlsplit(node if "://" in node else "//" + node).hostname or ""
            if host in _LOOPBACK:
                return
            try:
                if ipaddress.ip_address(host).is_loopback:
                    return
            except ValueError:
                pass
            found.append(node)

    walk(config)
    return found


def grade_routes(text: str | bytes | None) -> Verdicts:
    """amtool check-config (1 point), then amtool config routes test per hidden label set."""
    gid_valid, valid_pts = CONFIG_VALID
    verdicts = {gid_valid: _zero(valid_pts, ""),
                **{gid: _zero(pts, "") for gid, (pts, *_) in ROUTE_CASES.items()}}
    problem = _file_problem(text, "alertmanager.yml") or _tool_missing("amtool")
    if problem:
        return _all_zero(verdicts, problem)
    try:
        parsed = yaml.safe_load(_text(text))
    except yaml.YAMLError as exc:
        return _all_zero(verdicts, f"alertmanager.yml is not valid YAML: {exc}"[:500])
    outside = outside_urls(parsed)
    if outside:
        return _all_zero(verdicts, "refused: the config sends notifications off this machine "
                                   f"({', '.join(outside[:3])}); receivers must use 127.0.0.1."
                                   " Nothing was sent")
    with tempfile.TemporaryDirectory(prefix="grade-am-") as tmp:
        work = Path(tmp)
        (work / "alertmanager.yml").write_text(_text(text))
        checked = _tools({"check": ["amtool", "check-config", "alertmanager.yml"]}, work,
                         "amtool")
        ok, out = checked["check"]
        if not ok:
            return _all_zero(verdicts, "amtool check-config: " + _tail(out))
        grouping = group_problem(parsed)
        verdicts[gid_valid] = (_zero(valid_pts, grouping) if grouping else
                               _full(valid_pts, "amtool check-config: SUCCESS; grouped by "
                                                "alertname and service"))
        # who is notified, compared as a set: Alertmanager notifies the receivers of an
        # alert in parallel, so the order the routes list them in does not matter
        commands = {gid: ["amtool", "config", "routes", "test",
                          "--config.file=alertmanager.yml",
                          *[f"{k}={v}" for k, v in labels.items()]]
                    for gid, (_, labels, expect, _) in ROUTE_CASES.items()}
        results = _tools(commands, work, "amtool")
        for gid, (pts, _, expect, what) in ROUTE_CASES.items():
            ok, out = results[gid]
            got = receivers(out) if ok else None
            verdicts[gid] = (_full(pts, f"passed: {what}") if got == set(expect)
                             else _zero(pts, f"{what}: expected {', '.join(expect)}, amtool "
                                             f"says {', '.join(sorted(got)) if got else ''}"
                                             f"{'' if ok else _tail(out)}"))
    return verdicts


def receivers(output: str) -> set[str]:
    """The receivers ``amtool config routes test`` printed (its last line, comma-separated).

    >>> sorted(receivers("oncall-backup,oncall-primary\\n"))
    ['oncall-backup', 'oncall-primary']
    """
    lines = [ln.strip() for ln in output.splitlines()
             if ln.strip() and not ln.lower().startswith("warning")]
    return {r.strip() for r in lines[-1].split(",") if r.strip()} if lines else set()


# -- helpers --------------------------------------------------------------------------------------


def _text(data: str | bytes | None) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else (data or "")


def _file_problem(data: str | bytes | None, name: str) -> str | None:
    if data is None:
        return (f"{name} is not in the submission (or it is a link, or larger than "
                f"{10 * MAX_FILE_BYTES} bytes)")
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_FILE_BYTES:
        return f"{name} is {size} bytes, over the {MAX_FILE_BYTES} byte limit: not run"
    if not _text(data).strip():
        return f"{name} is empty"
    return None


def _tail(text: str, lines: int = 6) -> str:
    return re.sub(r"\s+\n", "\n", "\n".join(text.strip().splitlines()[-lines:]))[:800]


def _full(points: float, reason: str) -> dict[str, Any]:
    return {"points": float(points), "max_points": float(points), "reason": reason}


def _zero(points: float, reason: str) -> dict[str, Any]:
    return {"points": 0.0, "max_points": float(points), "reason": reason}


def _all_zero(verdicts: Verdicts, reason: str) -> Verdicts:
    return {gid: _zero(v["max_points"], reason) for gid, v in verdicts.items()}


def _points(verdict: dict[str, Any]) -> float | None:
    """A verdict as the trusted mechanism wants it: None = full marks, else CheckFailed."""
    expect(verdict["points"] >= verdict["max_points"], verdict["reason"] or "not passed")
    return None


# -- the trusted graders, one per graded cell -----------------------------------------------------
def not_own_code(source: str) -> list[str]:
    """What in ``source`` is not "your own code with the standard library only".

    Read from the code itself (imports and names), never from comments or strings: a
    comment saying "like numpy's default" is fine, ``import numpy`` is not.

    >>> not_own_code("import math, statistics\n# unlike numpy, divide by n\n")
    []
    >>> not_own_code("import numpy as np\nfrom cloudlab import alerting\nx = __import__('os')")
    ['import numpy', 'import cloudlab', '__import__']
    """
    try:
        tree = ast.parse(source or "")
    except SyntaxError:
        return []  # the probe reports it, with its line
    found: list[str] = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        found += [f"import {n.split('.')[0]}" for n in names
                  if n.split(".")[0] not in sys.stdlib_module_names or n.startswith("importlib")]
        if isinstance(node, ast.Name) and node.id in ("__import__", "importlib"):
            found.append(node.id)
    return list(dict.fromkeys(found))


def _sigma(gid: str):
    _, what, cases = SIGMA_CASES[gid]
    probes = {f"got{i}": call("three_sigma", series, cells="three_sigma", stdlib_only=True)
              for i, series in enumerate(cases)}

    @grader(gid, source=cell("three_sigma"), **probes)
    def check(sub, source, **got):
        used = not_own_code(source)
        expect(not used, "three_sigma must be your own code with the standard library only: "
               f"found {', '.join(used)}")
        for i, series in enumerate(cases):
            answer = got[f"got{i}"]
            want = reference_three_sigma(series)
            flags = answer if isinstance(answer, list) else None
            expect(flags is not None and len(flags) == len(series)
                   and all(type(f) is bool for f in flags),
                   f"{what}: three_sigma should return a list of {len(series)} booleans",
                   found=answer)
            expect(flags == want, f"{what}: wrong values flagged",
                   expected=f"True at {_where(want)}", found=f"True at {_where(flags)}")

    check.fn.__name__ = gid
    return check


def _where(flags: list[bool]) -> str:
    hits = [i for i, f in enumerate(flags) if f is True]
    return (str(hits) if hits else "no index") + f" (of {len(flags)})"


sigma_flat = _sigma("sigma_flat")
sigma_short = _sigma("sigma_short")
sigma_nan = _sigma("sigma_nan")
sigma_spike = _sigma("sigma_spike")


def _rule_verdicts(sub) -> Verdicts:
    return grade_rules(sub.read("alert_rules.yml", limit=10 * MAX_FILE_BYTES))


def _route_verdicts(sub) -> Verdicts:
    return grade_routes(sub.read("alertmanager.yml", limit=10 * MAX_FILE_BYTES))


def _from(verdicts_of, gid: str):
    @grader(gid, present=file("alert_rules.yml" if verdicts_of is _rule_verdicts
                              else "alertmanager.yml", limit=10 * MAX_FILE_BYTES))
    def check(sub, present):
        return _points(sub.once(verdicts_of)[gid])

    check.fn.__name__ = gid
    return check


rules_valid = _from(_rule_verdicts, "rules_valid")
rule_fires = _from(_rule_verdicts, "rule_fires")
rule_waits = _from(_rule_verdicts, "rule_waits")
rule_quiet = _from(_rule_verdicts, "rule_quiet")
rule_target_down = _from(_rule_verdicts, "rule_target_down")
am_valid = _from(_route_verdicts, "am_valid")
route_page = _from(_route_verdicts, "route_page")
route_escalate = _from(_route_verdicts, "route_escalate")
route_ticket = _from(_route_verdicts, "route_ticket")
route_default = _from(_route_verdicts, "route_default")
