"""Visible checks of the ``alerting`` exercise (public: the hidden cases are not here).

``q1`` runs the student's ``three_sigma`` on one obvious case; ``q2`` checks that the
alert rule file is valid for promtool and names the two alerts; ``q3`` checks that the
Alertmanager config is valid for amtool, names the four receivers and sends nothing off
this machine. The points come from the trusted graders of the instructor's side, which
use other, hidden, cases.
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
           "only the last value (60) is more than 3 standard deviations from the mean",
           expected="True only at index 24",
           found=[i for i, x in enumerate(found) if x], hint="compare |x - mean| with 3 * sd")


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
    names = [r.get("alert") for g in doc.get("groups") or [] for r in g.get("rules") or []]
    for wanted in ("LatencyThreeSigma", "TargetDown"):
        expect(wanted in names, f"alert_rules.yml should define the alert {wanted}",
               expected=["LatencyThreeSigma", "TargetDown"], found=names,
               hint="each rule's `alert:` field is its name (spelling and case matter)")
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
    if which("amtool"):
        ok, out = tool_output(["amtool", "check-config", "alertmanager.yml"])
        expect(ok, "amtool check-config rejects alertmanager.yml", expected="SUCCESS",
               found=_tail(out))


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
