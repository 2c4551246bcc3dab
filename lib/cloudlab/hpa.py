"""The HorizontalPodAutoscaler algorithm, as the Kubernetes documentation describes it.

Pure and deterministic: no cluster, no clock. Time is an argument, so a simulation and
a real control loop (the Swarm autoscaler) run the same code. Every decision carries its
reason, one of :data:`REASONS`.

One metric, one step (the ratio formula, the 0.1 tolerance, missing and not-ready pods):

>>> replica_proposal(2, Metric(target=100, values=[200, 200])).replicas
4
>>> replica_proposal(10, Metric(target=100, values=[105] * 10)).reason
'within tolerance'

The whole loop (several metrics, stabilization windows, ``behavior`` policies, min/max):

>>> scaler = Autoscaler(min_replicas=1, max_replicas=10)
>>> d = scaler.step(now=0, current_replicas=2, metrics=Metric(target=50, values=[100, 100]))
>>> d.replicas, d.reason
(4, 'scaled')
>>> d = scaler.step(now=15, current_replicas=4, metrics=Metric(target=50, values=[5] * 4))
>>> d.replicas, d.reason   # scale-down waits out the 300 s stabilization window
(4, 'stabilized')

Over time, from a load curve (without a ``behavior`` the controller scales up to at most
max(2 x current, 4) per pass):

>>> frame = simulate([100, 400, 400, 100], min_replicas=1, max_replicas=8, target=50)
>>> list(frame["replicas"])
[2, 4, 8, 8]

Sources: the "Algorithm details" and "Configurable scaling behavior" sections of the
Kubernetes HorizontalPodAutoscaler documentation, and the controller's
``replica_calculator.go`` / ``horizontal.go`` (whose arithmetic this mirrors, including
the inclusive tolerance band ``1 - down <= ratio <= 1 + up``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import CloudlabError

TOLERANCE = 0.1            # --horizontal-pod-autoscaler-tolerance
SYNC_PERIOD = 15.0         # --horizontal-pod-autoscaler-sync-period, seconds
DOWNSCALE_WINDOW = 300     # --horizontal-pod-autoscaler-downscale-stabilization, seconds

WITHIN_TOLERANCE = "within tolerance"
DIRECTION_FLIPPED = "direction flipped"
SCALED = "scaled"
AT_RECOMMENDATION = "already at the recommendation"
STABILIZED = "stabilized"
LIMITED_BY_POLICY = "limited by policy"
CLAMPED_TO_MAX = "clamped to max"
CLAMPED_TO_MIN = "clamped to min"
MISSING_METRICS = "missing metrics"
DISABLED = "autoscaling disabled"
REASONS = (WITHIN_TOLERANCE, DIRECTION_FLIPPED, SCALED, AT_RECOMMENDATION, STABILIZED,
           LIMITED_BY_POLICY, CLAMPED_TO_MAX, CLAMPED_TO_MIN, MISSING_METRICS, DISABLED)

__all__ = ["REASONS", "Autoscaler", "Behavior", "Decision", "HpaError", "Metric", "Policy",
           "Proposal", "Rules", "desired_replicas", "explore", "load_profile", "plot",
           "replica_proposal", "simulate"]


class HpaError(CloudlabError, ValueError):
    """An autoscaler input the algorithm cannot use; the message names the field."""


# ---------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Metric:
    """One metric of the scale target: a per-replica target and one value per replica.

    ``values[i]`` is replica *i*'s current value (CPU utilization in % of its request,
    requests per second, ...); ``None`` means the metrics pipeline has no sample for it.
    The target is an *average per replica* (``averageUtilization`` / ``averageValue``).
    """

    target: float
    values: Sequence[float | None]
    name: str = "cpu"

    def __post_init__(self) -> None:
        if not _finite(self.target) or self.target <= 0:
            raise HpaError(f"metric {self.name!r}: target must be a number > 0, "
                           f"got {self.target!r}")
        values = tuple(self.values)
        for i, v in enumerate(values):
            if v is not None and (not _finite(v) or v < 0):
                raise HpaError(f"metric {self.name!r}: values[{i}] must be a number >= 0 "
                               f"or None (missing), got {v!r}")
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Policy:
    """A ``behavior`` policy: change at most ``value`` Pods (or Percent) per ``period_seconds``."""

    type: str
    value: int
    period_seconds: int

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise HpaError(f"policy type must be 'Pods' or 'Percent', got {self.type!r}")
        if not isinstance(self.value, int) or self.value <= 0:
            raise HpaError(f"policy value must be an integer > 0, got {self.value!r}")
        if not isinstance(self.period_seconds, int) or not 0 < self.period_seconds <= 1800:
            raise HpaError("policy periodSeconds must be an integer in 1..1800, "
                           f"got {self.period_seconds!r}")


@dataclass(frozen=True)
class Rules:
    """``behavior.scaleUp`` or ``behavior.scaleDown``: window, policies, selectPolicy."""

    stabilization_window_seconds: int
    policies: tuple[Policy, ...]
    select_policy: str = "Max"
    tolerance: float | None = None   # Kubernetes 1.33+: per-direction tolerance

    def __post_init__(self) -> None:
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise HpaError("selectPolicy must be 'Max', 'Min' or 'Disabled', "
                           f"got {self.select_policy!r}")
        w = self.stabilization_window_seconds
        if not isinstance(w, int) or not 0 <= w <= 3600:
            raise HpaError(f"stabilizationWindowSeconds must be an integer in 0..3600, got {w!r}")
        if self.tolerance is not None and (not _finite(self.tolerance) or self.tolerance < 0):
            raise HpaError(f"tolerance must be a number >= 0, got {self.tolerance!r}")
        object.__setattr__(self, "policies", tuple(self.policies))


DEFAULT_SCALE_UP = Rules(0, (Policy("Pods", 4, 15), Policy("Percent", 100, 15)), "Max")
DEFAULT_SCALE_DOWN = Rules(DOWNSCALE_WINDOW, (Policy("Percent", 100, 15),), "Max")


@dataclass(frozen=True)
class Behavior:
    """``spec.behavior`` of an ``autoscaling/v2`` HPA; the defaults are the documented ones.

    >>> Behavior.from_spec({"scaleDown": {"stabilizationWindowSeconds": 60}}).scale_down
    Rules(stabilization_window_seconds=60, policies=(Policy(type='Percent', value=100, \
period_seconds=15),), select_policy='Max', tolerance=None)
    """

    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Behavior:
        """Read the camelCase ``behavior`` of a manifest, filling unset fields with defaults."""
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise HpaError(f"behavior must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"scaleUp", "scaleDown"}
        if unknown:
            raise HpaError(f"behavior has unknown field(s) {sorted(unknown)}; "
                           "expected scaleUp and/or scaleDown")
        return cls(_rules(spec.get("scaleUp"), DEFAULT_SCALE_UP, "scaleUp"),
                   _rules(spec.get("scaleDown"), DEFAULT_SCALE_DOWN, "scaleDown"))


def _rules(spec: Mapping[str, Any] | None, default: Rules, where: str) -> Rules:
    if spec is None:
        return default
    if not isinstance(spec, Mapping):
        raise HpaError(f"behavior.{where} must be a mapping")
    known = {"stabilizationWindowSeconds", "policies", "selectPolicy", "tolerance"}
    if set(spec) - known:
        raise HpaError(f"behavior.{where} has unknown field(s) {sorted(set(spec) - known)}")
    policies = default.policies
    if "policies" in spec:
        raw = spec["policies"]
        if not isinstance(raw, list) or not raw:
            raise HpaError(f"behavior.{where}.policies must be a non-empty list")
        try:
            policies = tuple(Policy(p["type"], p["value"], p["periodSeconds"]) for p in raw)
        except (KeyError, TypeError) as exc:
            raise HpaError(f"behavior.{where}.policies: every policy needs type, value and "
                           f"periodSeconds ({exc!r})") from None
    return Rules(spec.get("stabilizationWindowSeconds", default.stabilization_window_seconds),
                 policies, spec.get("selectPolicy", default.select_policy),
                 spec.get("tolerance", default.tolerance))


# ---------------------------------------------------------------------------- one metric

@dataclass(frozen=True)
class Proposal:
    """What one metric asks for: ``replicas`` (None when it has no usable samples)."""

    metric: str
    replicas: int | None
    ratio: float | None
    reason: str
    detail: str


def replica_proposal(current_replicas: int, metric: Metric, ready: Sequence[bool] | None = None,
                     *, tolerance: float | tuple[float, float] = TOLERANCE) -> Proposal:
    """The replica count one metric asks for: the documented ratio rule, step by step.

    Pods that are not ready, and pods without a sample, are set aside; the ratio
    ``mean(values) / target`` of the rest gives ``ceil(ratio * ready_with_metrics)``.
    Set-aside pods are then put back conservatively - a missing pod counts as 100 % of
    the target on a scale-down and 0 on a scale-up; a not-ready pod counts as 0 on a
    scale-up - and if that flips the direction or lands inside the tolerance, nothing
    changes. ``tolerance`` is one number or ``(down, up)``.

    >>> replica_proposal(3, Metric(target=50, values=[100, 100, None])).replicas  # 0 % for missing
    4
    """
    down_tol, up_tol = _tolerances(tolerance)
    if ready is None:
        ready = [True] * len(metric.values)
    if len(ready) != len(metric.values):
        raise HpaError(f"metric {metric.name!r}: {len(metric.values)} values but "
                       f"{len(ready)} readiness flags; give one of each per replica")

    def within(r: float) -> bool:
        return (1.0 - down_tol) <= r <= (1.0 + up_tol)

    samples = [v for v, ok in zip(metric.values, ready, strict=True) if ok and v is not None]
    unready = sum(1 for ok in ready if not ok)
    missing = sum(1 for v, ok in zip(metric.values, ready, strict=True) if ok and v is None)
    if not samples:
        return Proposal(metric.name, None, None, MISSING_METRICS,
                        f"no ready replica reported {metric.name!r}")
    ratio = sum(samples) / len(samples) / metric.target
    scale_up_with_unready = unready > 0 and ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if within(ratio):
            return Proposal(metric.name, current_replicas, ratio, WITHIN_TOLERANCE,
                            f"ratio {ratio:.3f} is within the tolerance band "
                            f"[{1 - down_tol:g}, {1 + up_tol:g}]")
        n = math.ceil(ratio * len(samples))
        return Proposal(metric.name, n, ratio, SCALED,
                        f"ceil({ratio:.3f} x {len(samples)} replicas) = {n}")
    filled = list(samples)
    notes = []
    if missing and ratio < 1.0:
        filled += [metric.target] * missing
        notes.append(f"{missing} missing counted at 100 % of target")
    elif missing and ratio > 1.0:
        filled += [0.0] * missing
        notes.append(f"{missing} missing counted at 0")
    if scale_up_with_unready:
        filled += [0.0] * unready
        notes.append(f"{unready} not ready counted at 0")
    new_ratio = sum(filled) / len(filled) / metric.target
    how = "; ".join(notes) or "set-aside pods left out"
    if within(new_ratio):
        return Proposal(metric.name, current_replicas, new_ratio, WITHIN_TOLERANCE,
                        f"ratio {ratio:.3f} -> {new_ratio:.3f} ({how}): within tolerance")
    if (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return Proposal(metric.name, current_replicas, new_ratio, DIRECTION_FLIPPED,
                        f"ratio {ratio:.3f} -> {new_ratio:.3f} ({how}) reverses the "
                        "scale direction: no change")
    n = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and n > current_replicas) or (new_ratio > 1.0 and n < current_replicas):
        return Proposal(metric.name, current_replicas, new_ratio, DIRECTION_FLIPPED,
                        f"ceil({new_ratio:.3f} x {len(filled)}) = {n} would move against "
                        "the metric: no change")
    return Proposal(metric.name, n, new_ratio, SCALED,
                    f"ceil({new_ratio:.3f} x {len(filled)} replicas) = {n} ({how})")


def desired_replicas(current_replicas: int, current_metric: float | None, target_metric: float,
                     min_replicas: int = 1, max_replicas: int = 10,
                     tolerance: float = TOLERANCE) -> int:
    """The textbook rule: ``ceil(current * current_metric / target)``, tolerance, min/max.

    ``current_metric`` is the average over the replicas; ``None`` means no sample (the
    controller then does not scale). Inside the tolerance band the count stays. The result
    is clamped into ``[min_replicas, max_replicas]``. A target scaled to 0 replicas stays
    at 0: the controller treats that as "autoscaling switched off".

    >>> desired_replicas(1, 200, 100), desired_replicas(4, 50, 100), desired_replicas(4, 105, 100)
    (2, 2, 4)
    >>> desired_replicas(3, 900, 50, min_replicas=2, max_replicas=10)
    10
    """
    if not isinstance(min_replicas, int) or not isinstance(max_replicas, int) \
            or min_replicas < 0 or max_replicas < max(min_replicas, 1):
        raise HpaError(f"need integers 0 <= min_replicas <= max_replicas, max_replicas >= 1; "
                       f"got min_replicas={min_replicas}, max_replicas={max_replicas}")
    if not isinstance(current_replicas, int) or current_replicas < 0:
        raise HpaError(f"current_replicas must be an integer >= 0, got {current_replicas!r}")
    if not _finite(target_metric) or target_metric <= 0:
        raise HpaError(f"target_metric must be a number > 0, got {target_metric!r}")
    if current_metric is not None and (not _finite(current_metric) or current_metric < 0):
        raise HpaError(f"current_metric must be a number >= 0 or None, got {current_metric!r}")
    down, up = _tolerances(tolerance)
    if current_replicas == 0 and min_replicas != 0:
        return 0
    wanted = current_replicas
    if current_metric is not None:
        ratio = current_metric / target_metric
        if not (1.0 - down) <= ratio <= (1.0 + up):
            wanted = math.ceil(ratio * current_replicas)
    return min(max(wanted, min_replicas), max_replicas)


# ---------------------------------------------------------------------------- the loop

@dataclass(frozen=True)
class Decision:
    """One pass of the control loop: what the metrics asked for and what was done, and why."""

    time: float
    current_replicas: int
    metric_replicas: int | None     # max over the metrics' proposals (before the rules)
    recommendation: int             # after the stabilization window
    replicas: int                   # what the scale target is set to
    reason: str                     # one of REASONS
    detail: str
    proposals: tuple[Proposal, ...] = ()

    @property
    def changed(self) -> bool:
        return self.replicas != self.current_replicas


@dataclass
class Autoscaler:
    """The HPA controller's loop for one scale target, with its memory (windows, events).

    Call :meth:`step` once per sync period with the time (seconds), the current replica
    count and the metrics; it returns a :class:`Decision` and remembers what it needs for
    the stabilization windows and the ``behavior`` policies. Any control loop can drive it
    (a Swarm service's scaler passes per-task values and readiness the same way).

    >>> scaler = Autoscaler(min_replicas=2, max_replicas=6, behavior={
    ...     "scaleDown": {"stabilizationWindowSeconds": 0}})
    >>> d = scaler.step(30, 4, Metric(target=60, values=[120, 60, None, 80]),
    ...                 ready=[True, True, True, False])
    >>> d.replicas, d.reason   # 1.5x on two samples, but the other two count as 0 now
    (4, 'direction flipped')
    """

    min_replicas: int = 1
    max_replicas: int = 10
    behavior: Behavior | Mapping[str, Any] | None = None
    tolerance: float = TOLERANCE
    _recommendations: list[tuple[float, int]] = field(default_factory=list, init=False,
                                                      repr=False)
    _events: list[tuple[float, int]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        # No ``behavior`` at all: the controller's older rule applies (horizontal.go), a
        # scale-up to at most max(2 x current, 4) per sync and the 300 s downscale window.
        # Any ``behavior`` (even {}): the documented defaults fill what it leaves out.
        self._legacy = self.behavior is None
        if not isinstance(self.behavior, Behavior):
            self.behavior = Behavior.from_spec(self.behavior)
        if not isinstance(self.min_replicas, int) or not isinstance(self.max_replicas, int) \
                or self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise HpaError(f"need integers 0 <= minReplicas <= maxReplicas, maxReplicas >= 1; "
                           f"got {self.min_replicas}, {self.max_replicas}")
        if not _finite(self.tolerance) or self.tolerance < 0:
            raise HpaError(f"tolerance must be a number >= 0, got {self.tolerance!r}")

    @classmethod
    def from_manifest(cls, hpa: Mapping[str, Any]) -> Autoscaler:
        """An autoscaler configured like an ``autoscaling/v2`` HPA manifest (a dict)."""
        spec = hpa.get("spec") or {}
        return cls(min_replicas=spec.get("minReplicas", 1), max_replicas=spec["maxReplicas"],
                   behavior=spec.get("behavior"))

    def reset(self) -> None:
        """Forget the recommendation history and the scale events."""
        self._recommendations.clear()
        self._events.clear()

    def step(self, now: float, current_replicas: int, metrics: Metric | Iterable[Metric],
             ready: Sequence[bool] | None = None) -> Decision:
        """Decide the replica count at time ``now`` (seconds, non-decreasing between calls)."""
        metrics = [metrics] if isinstance(metrics, Metric) else list(metrics)
        if not metrics:
            raise HpaError("give at least one Metric")
        if self._recommendations and now < self._recommendations[-1][0]:
            raise HpaError(f"time went backwards: {now} after {self._recommendations[-1][0]}")
        lo, hi, cur = self.min_replicas, self.max_replicas, current_replicas

        def decide(replicas: int, reason: str, detail: str, metric: int | None = None,
                   rec: int | None = None, proposals: tuple[Proposal, ...] = ()) -> Decision:
            if replicas != cur:
                self._events.append((now, replicas - cur))
            rec = replicas if rec is None else rec
            return Decision(now, cur, metric, rec, replicas, reason, detail, proposals)

        if cur == 0 and lo != 0:
            return decide(0, DISABLED, "the target is scaled to 0: autoscaling is off "
                          "until someone scales it up")
        if cur > hi:
            return decide(hi, CLAMPED_TO_MAX, f"{cur} replicas is above maxReplicas={hi}")
        if cur < lo:
            return decide(lo, CLAMPED_TO_MIN, f"{cur} replicas is below minReplicas={lo}")

        tol = (_pick(self.behavior.scale_down.tolerance, self.tolerance),
               _pick(self.behavior.scale_up.tolerance, self.tolerance))
        proposals = tuple(replica_proposal(cur, m, ready, tolerance=tol) for m in metrics)
        valid = [p.replicas for p in proposals if p.replicas is not None]
        if not valid or (len(valid) < len(proposals) and max(valid) < cur):
            names = ", ".join(p.metric for p in proposals if p.replicas is None)
            return decide(cur, MISSING_METRICS, f"no samples for {names}: no scaling "
                          "(an invalid metric blocks a scale-down)", proposals=proposals)
        wanted = max(valid)
        stabilized = self._stabilize(now, cur, wanted)
        final, limit_reason, limit_detail = self._limit(now, cur, stabilized)
        if final != stabilized:
            reason, detail = limit_reason, limit_detail
        elif stabilized != wanted:
            w = (self.behavior.scale_up if wanted > cur else self.behavior.scale_down)
            reason = STABILIZED
            detail = (f"metrics ask for {wanted}; the {w.stabilization_window_seconds} s "
                      f"window's {'lowest' if wanted > cur else 'highest'} recommendation "
                      f"is {stabilized}")
        elif final == cur and all(p.reason in (WITHIN_TOLERANCE, DIRECTION_FLIPPED)
                                  for p in proposals if p.replicas is not None):
            first = next(p for p in proposals if p.replicas is not None)
            reason, detail = first.reason, first.detail
        else:
            top = max((p for p in proposals if p.replicas is not None),
                      key=lambda p: p.replicas or 0)
            # outside the tolerance, yet the rounded-up count is what runs already
            # (ceil(0.8 x 1) = 1): nothing was scaled, so the log must not say so
            reason = SCALED if final != cur else AT_RECOMMENDATION
            detail = (top.detail if len(proposals) == 1
                      else f"largest proposal: {top.metric}, {top.detail}")
            if final == cur:
                detail += f": {cur} replica{'s' if cur != 1 else ''} already running"
        return decide(final, reason, detail, wanted, stabilized, proposals)

    # The two rules of horizontal.go, applied in its order.
    def _stabilize(self, now: float, cur: int, wanted: int) -> int:
        up_w = self.behavior.scale_up.stabilization_window_seconds
        down_w = self.behavior.scale_down.stabilization_window_seconds
        up_rec = down_rec = wanted
        for t, rec in self._recommendations:
            if t > now - up_w:
                up_rec = min(up_rec, rec)
            if t > now - down_w:
                down_rec = max(down_rec, rec)
        keep = max(up_w, down_w)
        self._recommendations[:] = [(t, r) for t, r in self._recommendations if t > now - keep]
        self._recommendations.append((now, wanted))
        return min(max(cur, up_rec), down_rec)

    def _changed_within(self, now: float, period: int) -> tuple[int, int]:
        added = sum(c for t, c in self._events if t > now - period and c > 0)
        removed = -sum(c for t, c in self._events if t > now - period and c < 0)
        return added, removed

    def _limit(self, now: float, cur: int, wanted: int) -> tuple[int, str, str]:
        lo, hi = self.min_replicas, self.max_replicas
        longest = max(p.period_seconds for r in (self.behavior.scale_up, self.behavior.scale_down)
                      for p in r.policies)
        self._events[:] = [(t, c) for t, c in self._events if t > now - longest]
        if wanted > cur and self._legacy:
            limit = max(2 * cur, 4)
            if hi > limit and wanted > limit:
                return limit, LIMITED_BY_POLICY, (f"without a behavior the controller scales up "
                                                  f"to at most max(2 x {cur}, 4) = {limit} now")
            if wanted > hi:
                return hi, CLAMPED_TO_MAX, f"metrics ask for {wanted}; maxReplicas is {hi}"
        elif wanted > cur:
            rules = self.behavior.scale_up
            limit = self._policy_limit(now, cur, rules, up=True)
            limit = max(limit, cur)
            if hi > limit:
                if wanted > limit:
                    return limit, LIMITED_BY_POLICY, self._policy_text(rules, "up", limit, cur)
            elif wanted > hi:
                return hi, CLAMPED_TO_MAX, f"metrics ask for {wanted}; maxReplicas is {hi}"
        elif wanted < cur:
            rules = self.behavior.scale_down
            limit = self._policy_limit(now, cur, rules, up=False)
            limit = min(limit, cur)
            if lo < limit:
                if wanted < limit:
                    return limit, LIMITED_BY_POLICY, self._policy_text(rules, "down", limit, cur)
            elif wanted < lo:
                return lo, CLAMPED_TO_MIN, f"metrics ask for {wanted}; minReplicas is {lo}"
        return wanted, "", ""

    def _policy_limit(self, now: float, cur: int, rules: Rules, *, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return cur
        proposed = []
        for p in rules.policies:
            added, removed = self._changed_within(now, p.period_seconds)
            start = cur - added + removed   # replicas at the start of the period
            if up:
                proposed.append(start + p.value if p.type == "Pods"
                                else math.ceil(start * (1 + p.value / 100)))
            else:
                proposed.append(start - p.value if p.type == "Pods"
                                else int(start * (1 - p.value / 100)))
        # "Max" = the policy allowing the biggest change: highest limit up, lowest down.
        biggest = (max if up else min)(proposed)
        smallest = (min if up else max)(proposed)
        return biggest if rules.select_policy == "Max" else smallest

    @staticmethod
    def _policy_text(rules: Rules, direction: str, limit: int, cur: int) -> str:
        if rules.select_policy == "Disabled":
            return f"scale-{direction} is Disabled by behavior.scale{direction.capitalize()}"
        pols = ", ".join(f"{p.value}{' pods' if p.type == 'Pods' else ' %'}/{p.period_seconds}s"
                         for p in rules.policies)
        return (f"scale-{direction} policies ({pols}, selectPolicy {rules.select_policy}) "
                f"allow {limit} replicas now (from {cur})")


# ---------------------------------------------------------------------------- simulation

def load_profile(kind: str = "spike", steps: int = 80, *, base: float = 50, peak: float = 400,
                 start: int | None = None, length: int | None = None) -> list[float]:
    """A load curve (total load, in units of the per-replica target metric) of ``steps`` points.

    ``kind``: ``step`` (base, then peak from ``start`` on), ``spike`` (peak for ``length``
    steps), ``ramp`` (base rising linearly to peak and back), ``wave`` (two sine periods),
    ``flapping`` (alternates base/peak every step: what stabilization is for).

    >>> load_profile("spike", 6, base=10, peak=90, start=2, length=2)
    [10, 10, 90, 90, 10, 10]
    """
    if steps < 1:
        raise HpaError(f"steps must be >= 1, got {steps}")
    start = steps // 4 if start is None else start
    length = steps // 4 if length is None else length
    if kind == "step":
        return [base if i < start else peak for i in range(steps)]
    if kind == "spike":
        return [peak if start <= i < start + length else base for i in range(steps)]
    if kind == "ramp":
        half = max(steps // 2, 1)
        return [base + (peak - base) * (1 - abs(i - half) / half) for i in range(steps)]
    if kind == "wave":
        return [base + (peak - base) * (1 - math.cos(4 * math.pi * i / steps)) / 2
                for i in range(steps)]
    if kind == "flapping":
        return [peak if i % 2 else base for i in range(steps)]
    raise HpaError(f"unknown load profile {kind!r}; choose step, spike, ramp, wave or flapping")


def simulate(load: Sequence[float] | Callable[[float], float], *, min_replicas: int = 1,
             max_replicas: int = 10, target: float = 50, initial_replicas: int | None = None,
             behavior: Behavior | Mapping[str, Any] | None = None, tolerance: float = TOLERANCE,
             sync_period: float = SYNC_PERIOD, startup_seconds: float = 0,
             steps: int | None = None):
    """Run the autoscaler against a load curve; one row per sync period (a pandas DataFrame).

    The model: ``load`` is the total demand in units of the per-replica metric (with a CPU
    target of 50 %, a load of 300 keeps 6 replicas at target); it is shared evenly by the
    *ready* replicas. A new replica becomes ready ``startup_seconds`` after it is created
    (until then it reports 0 and counts as not ready); removed replicas go at once.
    ``load`` is a sequence (one value per sync period) or a function of time in seconds.

    Columns: ``time``, ``load``, ``replicas`` (after the decision), ``ready``,
    ``utilization`` (per ready replica, before the decision), ``metric_replicas``,
    ``recommendation``, ``reason``, ``detail``.
    """
    import pandas as pd

    if callable(load):
        if steps is None:
            raise HpaError("with a load function, say how many steps to simulate")
        curve = [float(load(i * sync_period)) for i in range(steps)]
    else:
        curve = [float(x) for x in load][: steps or None]
    if not curve:
        raise HpaError("the load curve is empty")
    if any(not _finite(x) or x < 0 for x in curve):
        raise HpaError("load values must be numbers >= 0")
    scaler = Autoscaler(min_replicas, max_replicas, behavior, tolerance)
    n0 = max(min_replicas, 1) if initial_replicas is None else initial_replicas
    ready_at = [-math.inf] * n0     # when each replica is (or was) ready
    rows = []
    for i, demand in enumerate(curve):
        now = i * sync_period
        ready = [t <= now for t in ready_at]
        n_ready = sum(ready)
        per = demand / n_ready if n_ready else 0.0
        values = [per if ok else 0.0 for ok in ready]
        d = scaler.step(now, len(ready_at), Metric(target, values), ready)
        if d.replicas > len(ready_at):
            ready_at += [now + startup_seconds] * (d.replicas - len(ready_at))
        else:
            ready_at = sorted(ready_at)[: d.replicas]   # the newest (least ready) go first
        rows.append({"time": now, "load": demand, "replicas": d.replicas, "ready": n_ready,
                     "utilization": per, "metric_replicas": d.metric_replicas,
                     "recommendation": d.recommendation, "reason": d.reason,
                     "detail": d.detail})
    frame = pd.DataFrame(rows)
    frame.attrs.update(target=target, min_replicas=min_replicas, max_replicas=max_replicas)
    return frame


def plot(frame, ax=None, title: str | None = None):
    """Replicas (steps) and per-replica utilization against its target, over time."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    minutes = frame["time"] / 60
    ax.step(minutes, frame["replicas"], where="post", color="tab:blue", label="replicas")
    ax.step(minutes, frame["ready"], where="post", color="tab:blue", alpha=0.35,
            linestyle="--", label="ready")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("replicas")
    ax.set_ylim(0, max(frame["replicas"].max(), frame.attrs.get("max_replicas", 1)) + 1)
    twin = ax.twinx()
    twin.plot(minutes, frame["load"], color="tab:gray", alpha=0.5, label="load (total)")
    twin.plot(minutes, frame["utilization"], color="tab:orange", label="per ready replica")
    if "target" in frame.attrs:
        twin.axhline(frame.attrs["target"], color="tab:orange", linestyle=":", label="target")
    twin.set_ylabel("metric")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize="small")
    ax.set_title(title or "HorizontalPodAutoscaler simulation")
    return ax


def explore(steps: int = 80):
    """An interactive simulator: pick a load curve and the HPA's knobs, see replicas over time.

    Returns an ipywidgets box (display it in a notebook); outside Jupyter it is still built.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    style = {"description_width": "11em"}
    lay = w.Layout(width="24em")
    controls = {
        "kind": w.Dropdown(options=["spike", "step", "ramp", "wave", "flapping"],
                           value="spike", description="load curve", style=style, layout=lay),
        "peak": w.FloatSlider(400, min=0, max=1500, step=25, description="peak load",
                              style=style, layout=lay),
        "target": w.FloatSlider(50, min=10, max=100, step=5, description="target / replica",
                                style=style, layout=lay),
        "min_replicas": w.IntSlider(1, min=1, max=10, description="minReplicas",
                                    style=style, layout=lay),
        "max_replicas": w.IntSlider(10, min=1, max=30, description="maxReplicas",
                                    style=style, layout=lay),
        "tolerance": w.FloatSlider(0.1, min=0, max=0.5, step=0.05, description="tolerance",
                                   style=style, layout=lay),
        "down_window": w.IntSlider(300, min=0, max=900, step=30,
                                   description="scale-down window (s)", style=style, layout=lay),
        "up_pods": w.IntSlider(4, min=1, max=20, description="scale-up pods / 15 s",
                               style=style, layout=lay),
        "startup": w.IntSlider(0, min=0, max=120, step=15, description="pod startup (s)",
                               style=style, layout=lay),
    }
    out = w.Output()

    def draw(kind, peak, target, min_replicas, max_replicas, tolerance, down_window, up_pods,
             startup):
        max_replicas = max(max_replicas, min_replicas)
        behavior = Behavior(replace(DEFAULT_SCALE_UP, policies=(
            Policy("Pods", up_pods, 15), Policy("Percent", 100, 15))),
            replace(DEFAULT_SCALE_DOWN, stabilization_window_seconds=down_window))
        frame = simulate(load_profile(kind, steps, base=target / 2, peak=peak),
                         min_replicas=min_replicas, max_replicas=max_replicas, target=target,
                         behavior=behavior, tolerance=tolerance, startup_seconds=startup)
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(9, 4))
            plot(frame, ax)
            plt.show()
            plt.close(fig)
            counts = frame["reason"].value_counts()
            print("decisions:", ", ".join(f"{k} x{v}" for k, v in counts.items()))

    w.interactive_output(draw, controls)
    return w.HBox([w.VBox(list(controls.values())), out])


# ---------------------------------------------------------------------------- helpers

def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


def _tolerances(tolerance: float | tuple[float, float]) -> tuple[float, float]:
    down, up = tolerance if isinstance(tolerance, tuple) else (tolerance, tolerance)
    if not (_finite(down) and _finite(up)) or down < 0 or up < 0:
        raise HpaError(f"tolerance must be >= 0, got {tolerance!r}")
    return float(down), float(up)
