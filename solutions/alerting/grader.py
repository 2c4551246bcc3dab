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

import ipaddress
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cloudlab.grading.trusted import call, cell, expect, file, grader

Verdicts = dict[str, dict[str, Any]]

MAX_FILE_BYTES = 64 * 1024  # a rule file or an Alertmanager config bigger than this is refused
TOOL_TIMEOUT = 20.0  # seconds per promtool/amtool run

# -- Part A: three_sigma -------------------------------------------------------------------------

NAN = float("nan")
MIN_VALUES = 20  # fewer values present than this: too little history, nothing is flagged
_NOISE = [10.2, 9.8, 10.1, 9.9, 10.0, 10.3, 9.7, 10.05, 9.95, 10.15,
          9.85, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0, 10.1, 9.9, 10.0]

SIGMA_CASES: dict[str, tuple[float, list[Any], str]] = {
    # grade_id: (points, input, what it checks)
    "sigma_flat": (1, [4.0] * 30, "a flat series has no spread: nothing is an outlier"),
    "sigma_short": (1, [10.0] * 11 + [100.0],
                    "fewer than 20 values present: too short to judge, nothing flagged"),
    "sigma_nan": (1, [*_NOISE[:10], NAN, *_NOISE[10:], None, 30.0],
                  "NaN and None are skipped (never flagged, not part of mean or sd)"),
    # 9.36 is 3.05 population standard deviations below the mean, but only 2.97 sample ones
    "sigma_spike": (1, [*_NOISE[:10], 9.36, *_NOISE[10:]],
                    "a single dip, just over 3 population standard deviations below the "
                    "mean, is the only outlier"),
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
    return [_present(v) and abs(float(v) - mean) > 3 * sd for v in series]


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


# -- Part B: the Prometheus alerting rules -------------------------------------------------------

P99 = 'rpc_durations_seconds{quantile="0.99", service="normal"}'
PAGE_LABELS = {"severity": "page", "service": "normal", "quantile": "0.99"}


def _healthy(minutes: int) -> str:
    pattern = ["1", "1.2", "0.9", "1.1", "0.8", "1", "1.1", "0.9"]
    return " ".join(pattern[i % len(pattern)] for i in range(minutes))


def _incident(healthy: int, bad: int, level: float = 10) -> str:
    return _healthy(healthy) + " " + " ".join([f"{level:g}"] * bad)


def _test(series: list[dict[str, str]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"interval": "1m", "input_series": series, "alert_rule_test": checks}


RULE_CASES: dict[str, tuple[float, str, dict[str, Any]]] = {
    "rule_fires": (2, "the p99 jumps far above 3 sigma and stays there: after 5 minutes "
                      "LatencyThreeSigma fires with severity=page and the series' labels",
                   _test([{"series": P99, "values": _incident(90, 20)}],
                         [{"eval_time": "97m", "alertname": "LatencyThreeSigma",
                           "exp_alerts": [{"exp_labels": PAGE_LABELS}]}])),
    "rule_waits": (1, "3 minutes into the incident the alert is still pending (for: 5m)",
                   _test([{"series": P99, "values": _incident(90, 20)}],
                         [{"eval_time": "93m", "alertname": "LatencyThreeSigma",
                           "exp_alerts": []}])),
    "rule_quiet": (1, "a sustained rise to about 2.5 sigma pages nobody",
                   _test([{"series": P99, "values": _healthy(90) + " 1.3 1.28" * 5}],
                         [{"eval_time": f"{m}m", "alertname": "LatencyThreeSigma",
                           "exp_alerts": []} for m in (93, 97, 99)])),
    "rule_target_down": (1, "a target down for 2 minutes raises TargetDown with "
                            "severity=ticket",
                         _test([{"series": 'up{job="random", instance="a:8080"}',
                                 "values": "1 1 1 0 0 0 0"}],
                               [{"eval_time": "6m", "alertname": "TargetDown",
                                 "exp_alerts": [{"exp_labels": {
                                     "severity": "ticket", "job": "random",
                                     "instance": "a:8080"}}]},
                                {"eval_time": "3m", "alertname": "TargetDown",
                                 "exp_alerts": []}])),
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
    """promtool check rules (1 point), then one promtool test per hidden case."""
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
        if not _alert_names(_text(text)):
            return _all_zero(verdicts, "alert_rules.yml defines no alerting rules")
        verdicts[gid_valid] = _full(valid_pts, "promtool check rules: SUCCESS")
        # promtool compares annotations too; the hidden cases judge labels and timing, so
        # they run on a copy without annotations (their templates were checked just now)
        (work / "tested.yml").write_text(yaml.safe_dump(_without_annotations(_text(text))))
        for gid, (_, _, case) in RULE_CASES.items():
            spec = {"rule_files": ["tested.yml"], "evaluation_interval": "1m", "tests": [case]}
            (work / f"{gid}.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        results = _tools({gid: ["promtool", "test", "rules", f"{gid}.yml"]
                          for gid in RULE_CASES}, work, "promtool")
        for gid, (pts, what, _) in RULE_CASES.items():
            ok, out = results[gid]
            verdicts[gid] = (_full(pts, f"passed: {what}") if ok
                             else _zero(pts, f"{what}: {_tail(out)}"))
    return verdicts


def _alert_names(text: str) -> list[str]:
    doc = yaml.safe_load(text) or {}
    return [r["alert"] for g in doc.get("groups") or [] for r in g.get("rules") or []
            if isinstance(r, dict) and "alert" in r]


def _without_annotations(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text) or {}
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            rule.pop("annotations", None)
    return doc


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
        verdicts[gid_valid] = _full(valid_pts, "amtool check-config: SUCCESS")
        commands = {gid: ["amtool", "config", "routes", "test",
                          "--config.file=alertmanager.yml",
                          f"--verify.receivers={','.join(expect)}",
                          *[f"{k}={v}" for k, v in labels.items()]]
                    for gid, (_, labels, expect, _) in ROUTE_CASES.items()}
        results = _tools(commands, work, "amtool")
        for gid, (pts, _, expect, what) in ROUTE_CASES.items():
            ok, out = results[gid]
            verdicts[gid] = (_full(pts, f"passed: {what}") if ok
                             else _zero(pts, f"{what}: expected {expect}, amtool says "
                                             f"{_tail(out)}"))
    return verdicts


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
FORBIDDEN = ("cloudlab", "import cl", "__import__", "importlib", "numpy", "pandas")


def _sigma(gid: str):
    _, series, what = SIGMA_CASES[gid]

    @grader(gid, got=call("three_sigma", series, cells="three_sigma"),
            source=cell("three_sigma"))
    def check(sub, got, source):
        used = [w for w in FORBIDDEN if w in (source or "")]
        expect(not used, "three_sigma must be your own code with the standard library only: "
               f"found {', '.join(used)}")
        want = reference_three_sigma(series)
        flags = got if isinstance(got, list) else None
        expect(flags is not None and len(flags) == len(series)
               and all(type(f) is bool for f in flags),
               f"{what}: three_sigma should return a list of {len(series)} booleans",
               found=got)
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
