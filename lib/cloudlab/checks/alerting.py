"""Visible checks of the ``alerting`` exercise (public: the hidden cases are not here).

``q1`` runs the student's ``three_sigma`` on one obvious case; ``q2`` checks that the
alert rule file is valid for promtool and names the two alerts, each with a ``summary``;
``q3`` checks that the Alertmanager config is valid for amtool, groups by alertname and
service, names the four receivers and sends nothing off this machine. The points come
from the trusted graders of the instructor's side, which use other, hidden, cases.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import expect, register

ASSIGNMENT = "alerting"
RECEIVERS = ("team-chat", "tickets", "oncall-primary", "oncall-backup")
ALERTS = ("LatencyThreeSigma", "TargetDown")
GROUP_BY = {"alertname", "service"}


def group_problem(config: Any) -> str:
    """'' when the top route groups by alertname and service (in any order), else why not.

    >>> group_problem({"route": {"group_by": ["service", "alertname"]}})
    ''
    >>> group_problem({"route": {"group_by": ["instance"]}})
    "the route should group by alertname and service, not ['instance']"
    """
    route = config.get("route") if isinstance(config, dict) else None
    group_by = route.get("group_by") if isinstance(route, dict) else None
    if isinstance(group_by, list) and set(map(str, group_by)) == GROUP_BY:
        return ""
    return f"the route should group by alertname and service, not {group_by!r}"


def shape_problems(rules: dict[str, dict[str, Any]]) -> list[str]:
    """What the text asks of the file beyond promtool: both alerts, each with a summary.

    >>> shape_problems({"TargetDown": {"annotations": {"summary": "down"}}})
    ['the alert LatencyThreeSigma is missing']
    >>> shape_problems({a: {"annotations": {"runbook": "x"}} for a in ALERTS})[0]
    'LatencyThreeSigma has no summary annotation'
    """
    found = []
    for name in ALERTS:
        rule = rules.get(name)
        if rule is None:
            found.append(f"the alert {name} is missing")
        elif not str((rule.get("annotations") or {}).get("summary") or "").strip():
            found.append(f"{name} has no summary annotation")
    return found


@register(ASSIGNMENT, "q1")
def three_sigma_finds_an_obvious_spike(ns: dict) -> None:
    fn = ns.get("three_sigma")
    expect(callable(fn), "define a function called three_sigma(series)",
           hint="write `def three_sigma(series):` in the answer cell and run it")
    series = [10, 11, 9, 10] * 6 + [60]
    found = fn(list(series))
    expect(isinstance(found, list | tuple) and len(found) == len(series),
           "three_sigma should return one boolean per value", expected=f"{len(series)} booleans",
           found=found)
    expect([bool(x) for x in found] == [False] * 24 + [True],
           "only the last value (60) is more than 3 standard deviations above the mean",
           expected="True only at index 24",
           found=[i for i, x in enumerate(found) if x], hint="compare x - mean with 3 * sd")
    dip = [*series[:-1], -40]
    found = fn(list(dip))
    expect(isinstance(found, list | tuple) and not any(found),
           "a value far BELOW the mean (-40) is not flagged: the detector is one-sided",
           expected="no True", found=[i for i, x in enumerate(found or []) if x],
           hint="only values above the mean count (slower is an incident, faster is not): "
                "no abs()")


def _yaml_file(name: str) -> dict:
    path = Path(name)
    expect(path.is_file(), f"write the file {name} (run its %%writefile cell)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        expect(False, f"{name} is not valid YAML", found=str(exc)[:300],
               hint="check the indentation: YAML uses spaces, never tabs")
    expect(isinstance(doc, dict), f"{name} should be a YAML mapping", found=type(doc).__name__)
    return doc


@register(ASSIGNMENT, "q2")
def rule_file_is_valid(ns: dict) -> None:
    from ..alerting import tool_output
    from ..proc import which

    doc = _yaml_file("alert_rules.yml")
    rules = alert_rules(doc)
    for problem in shape_problems(rules):
        expect(False, f"alert_rules.yml: {problem}", expected=list(ALERTS), found=list(rules),
               hint="each rule's `alert:` field is its name (spelling and case matter); "
                    "`annotations: {summary: ...}` says in one line what is wrong")
    if which("promtool"):
        ok, out = tool_output(["promtool", "check", "rules", "alert_rules.yml"])
        expect(ok, "promtool check rules rejects alert_rules.yml", expected="SUCCESS",
               found=_tail(out))


@register(ASSIGNMENT, "q3")
def alertmanager_config_is_valid(ns: dict) -> None:
    from ..alerting import tool_output
    from ..proc import which

    doc = _yaml_file("alertmanager.yml")
    names = [r.get("name") for r in doc.get("receivers") or []]
    for wanted in RECEIVERS:
        expect(wanted in names, f"alertmanager.yml should have a receiver called {wanted}",
               expected=list(RECEIVERS), found=names)
    away = [url for url in _urls(doc) if not _loopback(url)]
    expect(not away, "a receiver points off this machine: the grader would score the whole "
           "part 0", expected="http://127.0.0.1:<port>/...", found=away,
           hint="every webhook url must use 127.0.0.1; nothing is sent anywhere")
    grouping = group_problem(doc)
    expect(not grouping, grouping, hint="route: {group_by: [alertname, service], ...}")
    if which("amtool"):
        ok, out = tool_output(["amtool", "check-config", "alertmanager.yml"])
        expect(ok, "amtool check-config rejects alertmanager.yml", expected="SUCCESS",
               found=_tail(out))


def alert_rules(doc: Any) -> dict[str, dict[str, Any]]:
    """The alerting rules of a parsed rule file, by name (recording rules left out).

    >>> list(alert_rules({"groups": [{"rules": [{"record": "r"}, {"alert": "A"}]}]}))
    ['A']
    """
    groups = doc.get("groups") if isinstance(doc, dict) else None
    return {str(r["alert"]): r for g in groups or [] if isinstance(g, dict)
            for r in g.get("rules") or [] if isinstance(r, dict) and "alert" in r}


def _tail(output: str, width: int = 150) -> str:
    r"""The end of a tool's output on one line (where promtool and amtool say what is wrong).

    >>> _tail("Checking x\n\n  FAILED:\nx: 1:7: parse error")
    'Checking x FAILED: x: 1:7: parse error'
    """
    flat = " ".join(output.split())
    return flat if len(flat) <= width else "..." + flat[-width:]


def _urls(node: Any, key: str = "") -> list[str]:
    """Every URL in the config: a ``...url`` field, or any string with ``://``."""
    if isinstance(node, dict):
        return [u for k, v in node.items() for u in _urls(v, str(k))]
    if isinstance(node, list):
        return [u for v in node for u in _urls(v, key)]
    return [node] if isinstance(node, str) and (key.endswith("url") or "://" in node) else []


def _loopback(url: str) -> bool:
    host = urlsplit(url if "://" in url else "//" + url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
