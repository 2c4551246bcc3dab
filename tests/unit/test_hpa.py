"""The HPA algorithm against the worked examples of the Kubernetes documentation.

Each test names the passage it checks: "Algorithm details" and "Configurable scaling
behavior" of the HorizontalPodAutoscaler concept page (kubernetes.io), the HPAScalingRules
API reference, and the v1.33 configurable-tolerance blog post.
"""

import math

import pytest

from cloudlab import hpa
from cloudlab.hpa import Autoscaler, Behavior, HpaError, Metric, Policy, Rules

NO_WINDOW = Rules(0, (hpa.Policy("Percent", 100, 15),))


def one_step(current, values, target, ready=None, **kw):
    return Autoscaler(**kw).step(0, current, Metric(target, values), ready)


# -- "Algorithm details" ---------------------------------------------------------------

def test_docs_200m_over_100m_doubles_the_replicas():
    """Docs: "if the current metric value is 200m, and the desired value is 100m, the
    number of replicas will be doubled, since 200.0 / 100.0 == 2.0"."""
    assert hpa.desired_replicas(3, 200, 100) == 6
    p = hpa.replica_proposal(3, Metric(100, [200, 200, 200]))
    assert (p.replicas, p.ratio, p.reason) == (6, 2.0, hpa.SCALED)


def test_docs_50m_over_100m_halves_the_replicas():
    """Docs: "If the current value is instead 50m, you'll halve the number of replicas"."""
    assert hpa.desired_replicas(6, 50, 100) == 3
    assert hpa.replica_proposal(6, Metric(100, [50] * 6)).replicas == 3


def test_blog_50_replicas_at_90_percent_of_a_75_percent_target_become_60():
    """v1.33 tolerance blog: 50 replicas, CPU 90 % against a 75 % target: 50 x 90/75 = 60,
    and 90/75 is 20 % off target, beyond the 10 % tolerance, so the scale-up goes ahead."""
    assert hpa.desired_replicas(50, 90, 75, max_replicas=100) == 60
    d = one_step(50, [90] * 50, 75, max_replicas=100, behavior={"scaleUp": {"policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]}})
    assert (d.replicas, d.reason) == (60, hpa.SCALED)


@pytest.mark.parametrize("metric", [91, 95, 100, 105, 109, 110, 90])
def test_docs_skip_scaling_when_the_ratio_is_within_the_0_1_tolerance(metric):
    """Docs: "the control plane skips any scaling action if the ratio is sufficiently close
    to 1.0 (within a configurable tolerance, 0.1 by default)" - the band is inclusive."""
    assert hpa.desired_replicas(10, metric, 100) == 10
    d = one_step(10, [metric] * 10, 100)
    assert (d.replicas, d.reason) == (10, hpa.WITHIN_TOLERANCE)


def test_a_ratio_outside_the_tolerance_that_rounds_back_to_current_is_not_logged_as_scaled():
    """ceil(0.8 x 1) = 1: outside the band, yet nothing changes; the log must not say
    "scaled" (it did, for rows going 1 -> 1 and 3 -> 3 in notebook 10)."""
    d = one_step(1, [56], 70)
    assert (d.replicas, d.reason) == (1, hpa.AT_RECOMMENDATION)
    assert "1 replica already running" in d.detail
    moved = one_step(3, [35] * 3, 70, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    assert (moved.replicas, moved.reason) == (2, hpa.SCALED)


@pytest.mark.parametrize(("metric", "expected"), [(111, 12), (89, 9), (150, 15), (10, 1)])
def test_just_outside_the_tolerance_band_scales(metric, expected):
    """Docs, same passage: outside 0.9..1.1 the ratio formula applies (ceil)."""
    assert hpa.desired_replicas(10, metric, 100, max_replicas=20) == expected


def test_blog_per_direction_tolerance():
    """v1.33 blog: behavior.scaleDown.tolerance 0.05 and scaleUp.tolerance 0: a 3 % rise
    scales up, a 7 % drop scales down, a 3 % drop does not."""
    behavior = {"scaleDown": {"tolerance": 0.05, "stabilizationWindowSeconds": 0},
                "scaleUp": {"tolerance": 0}}
    assert one_step(100, [103] * 100, 100, max_replicas=200, behavior=behavior).replicas == 103
    assert one_step(100, [93] * 100, 100, max_replicas=200, behavior=behavior).replicas == 93
    d = one_step(100, [97] * 100, 100, max_replicas=200, behavior=behavior)
    assert (d.replicas, d.reason) == (100, hpa.WITHIN_TOLERANCE)


def test_docs_missing_metrics_count_as_100_percent_of_target_on_scale_down():
    """Docs: missing metrics: "assume those pods were consuming 100% of the desired value
    in case of a scale down" - dampening the scale-down."""
    p = hpa.replica_proposal(4, Metric(50, [10, 10, 10, None]))
    assert p.ratio == pytest.approx(0.4)          # (10+10+10+50) / 4 / 50
    assert p.replicas == 2                        # not ceil(0.2 * 3) = 1


def test_docs_missing_metrics_count_as_0_percent_on_scale_up():
    """Docs: "... and 0% in case of a scale up"."""
    p = hpa.replica_proposal(3, Metric(50, [100, 100, None]))
    assert p.ratio == pytest.approx(200 / 3 / 50)
    assert p.replicas == 4                        # not ceil(2.0 * 2) = 4 ... nor 6
    assert hpa.replica_proposal(3, Metric(50, [100, 100, 100])).replicas == 6


def test_docs_not_ready_pods_count_as_0_on_scale_up():
    """Docs: "if any not-yet-ready pods were present, and the workload would have scaled
    up without factoring in missing metrics or not-yet-ready pods, the controller
    conservatively assumes that the not-yet-ready pods are consuming 0% of the desired
    metric"."""
    p = hpa.replica_proposal(3, Metric(30, [0, 50, 70]), ready=[False, True, True])
    assert p.ratio == pytest.approx(40 / 30)      # (0 + 50 + 70) / 3 / 30
    assert p.replicas == 4                        # ceil(1.333 x 3)


def test_docs_not_ready_pods_are_left_out_on_scale_down():
    """Docs: unready pods are "set aside"; only a scale-up puts them back at 0."""
    p = hpa.replica_proposal(4, Metric(50, [99, 10, 10, 10]), ready=[False, True, True, True])
    assert p.replicas == 1                        # ceil(0.2 x 3): the 99 is not counted


def test_docs_recheck_skips_scaling_when_the_direction_would_flip():
    """Docs: "If the new ratio reverses the scale direction, or is within the tolerance,
    the controller doesn't take any scaling action"."""
    flipped = hpa.replica_proposal(4, Metric(50, [60, None, None, None]))
    assert (flipped.replicas, flipped.reason) == (4, hpa.DIRECTION_FLIPPED)
    calmed = hpa.replica_proposal(10, Metric(50, [54] * 9 + [None]))
    assert (calmed.replicas, calmed.reason) == (10, hpa.WITHIN_TOLERANCE)


def test_no_ready_pod_with_a_sample_is_a_missing_metric():
    p = hpa.replica_proposal(2, Metric(50, [None, None]))
    assert (p.replicas, p.reason) == (None, hpa.MISSING_METRICS)
    d = one_step(2, [None, None], 50)
    assert (d.replicas, d.reason) == (2, hpa.MISSING_METRICS)


def test_docs_multiple_metrics_take_the_largest_proposal():
    """Docs: "this calculation is done for each metric, and then the largest of the
    desired replica counts is chosen"."""
    d = Autoscaler(max_replicas=20).step(0, 4, [Metric(50, [25] * 4, "cpu"),
                                               Metric(100, [200] * 4, "rps")])
    assert [p.replicas for p in d.proposals] == [2, 8]
    assert (d.metric_replicas, d.replicas, d.reason) == (8, 8, hpa.SCALED)
    assert "rps" in d.detail


def test_docs_an_unreadable_metric_blocks_a_scale_down_but_not_a_scale_up():
    """Docs: "If any of these metrics cannot be converted into a desired replica count ...
    and a scale down is suggested by the metrics which can be fetched, scaling is
    skipped. This means that the HPA is still capable of scaling up"."""
    cpu_down, cpu_up, lost = Metric(50, [5] * 4), Metric(50, [100] * 4), Metric(1, [None] * 4)
    blocked = Autoscaler().step(0, 4, [cpu_down, lost])
    assert (blocked.replicas, blocked.reason) == (4, hpa.MISSING_METRICS)
    assert Autoscaler().step(0, 4, [cpu_up, lost]).replicas == 8


def test_min_and_max_clamp():
    """HPA spec: minReplicas / maxReplicas bound every decision."""
    d = one_step(4, [500] * 4, 50, max_replicas=6)
    assert (d.replicas, d.reason) == (6, hpa.CLAMPED_TO_MAX)
    down = Autoscaler(min_replicas=3, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    d = down.step(0, 8, Metric(50, [1] * 8))
    assert (d.replicas, d.reason) == (3, hpa.CLAMPED_TO_MIN)
    assert hpa.desired_replicas(4, 0, 50, min_replicas=2) == 2
    assert hpa.desired_replicas(4, None, 50, min_replicas=2) == 4       # no sample: no change
    assert hpa.desired_replicas(12, None, 50, max_replicas=10) == 10


def test_current_outside_the_range_is_brought_back_first():
    """horizontal.go: replicas above maxReplicas (or below min) are corrected at once."""
    d = one_step(15, [50] * 15, 50, max_replicas=10)
    assert (d.replicas, d.reason) == (10, hpa.CLAMPED_TO_MAX)
    d = one_step(1, [50], 50, min_replicas=2)
    assert (d.replicas, d.reason) == (2, hpa.CLAMPED_TO_MIN)


def test_a_target_scaled_to_zero_is_left_alone():
    """Docs (implicit scale-to-zero): with minReplicas >= 1, spec.replicas 0 disables it."""
    d = one_step(0, [], 50)
    assert (d.replicas, d.reason) == (0, hpa.DISABLED)
    assert hpa.desired_replicas(0, 80, 50) == 0


# -- "Configurable scaling behavior" ----------------------------------------------------

def test_docs_default_behavior():
    """Docs "Default behavior": scaleDown 300 s window, 100 %/15 s; scaleUp no window,
    max(4 pods, 100 %) per 15 s, selectPolicy Max."""
    b = Behavior()
    assert b.scale_down == Rules(300, (Policy("Percent", 100, 15),), "Max")
    assert b.scale_up == Rules(0, (Policy("Pods", 4, 15), Policy("Percent", 100, 15)), "Max")
    given = {"behavior": {}}                    # any behavior: the defaults fill it in
    assert one_step(1, [1000], 50, max_replicas=100, **given).replicas == 5   # +4 beats x2
    assert one_step(10, [1000] * 10, 50, max_replicas=100, **given).replicas == 20
    d = one_step(10, [1000] * 10, 50, max_replicas=100, **given)
    assert d.reason == hpa.LIMITED_BY_POLICY and d.metric_replicas == 200


def test_without_behavior_the_controller_caps_a_scale_up_at_twice_or_four():
    """horizontal.go, seen on the real controller (tests/integration/test_hpa_controller.py):
    an HPA with no ``behavior`` scales up to at most max(2 x current, 4) per pass - from 2
    replicas at 151 % of a 50 % target the controller asked for 4, not 6."""
    d = one_step(2, [151, 151], 50, max_replicas=10)
    assert (d.metric_replicas, d.replicas, d.reason) == (7, 4, hpa.LIMITED_BY_POLICY)
    assert "max(2 x 2, 4)" in d.detail
    assert one_step(1, [1000], 50, max_replicas=100).replicas == 4
    assert one_step(10, [1000] * 10, 50, max_replicas=100).replicas == 20
    assert one_step(3, [100] * 3, 50, max_replicas=5).reason == hpa.CLAMPED_TO_MAX


def test_docs_scale_down_policies_80_replicas_example():
    """Docs "Scaling policies": policies Pods 4/60 s and Percent 10/60 s (Max): "if there
    are 80 replicas and the target has to be scaled down to 10 replicas then during the
    first step 8 replicas will be reduced. In the next iteration when the number of
    replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8 ... When the
    number of replicas falls below 40 the first policy (Pods) is applied and 4 replicas
    will be reduced at a time." (Window set to 0 here to see the policies alone; the
    load is tiny and minReplicas 10 is the floor.)"""
    scaler = Autoscaler(min_replicas=10, max_replicas=100, behavior={"scaleDown": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60},
                     {"type": "Percent", "value": 10, "periodSeconds": 60}]}})
    replicas, seen = 80, [80]
    for minute in range(16):
        d = scaler.step(minute * 60, replicas, Metric(100, [1] * replicas))
        replicas = d.replicas
        seen.append(replicas)
    assert seen == [80, 72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10, 10, 10]
    assert d.reason == hpa.CLAMPED_TO_MIN


def test_docs_period_seconds_counts_what_already_changed():
    """Docs: "periodSeconds indicates the length of time in the past for which the policy
    must hold true": two steps inside one 60 s period share the 4-pod budget."""
    scaler = Autoscaler(max_replicas=100, behavior={"scaleUp": {
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}})
    first = scaler.step(0, 2, Metric(50, [500] * 2))
    second = scaler.step(15, first.replicas, Metric(50, [500] * first.replicas))
    third = scaler.step(61, second.replicas, Metric(50, [500] * second.replicas))
    assert (first.replicas, second.replicas, third.replicas) == (6, 6, 10)
    assert second.reason == hpa.LIMITED_BY_POLICY


def test_docs_select_policy_min_removes_no_more_than_5_pods_a_minute():
    """Docs "Example: limit scale down rate": Percent 10/60 s plus Pods 5/60 s with
    selectPolicy Min, "to ensure that no more than 5 Pods are removed per minute"."""
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Min",
                              "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60},
                                           {"type": "Pods", "value": 5, "periodSeconds": 60}]}}
    d = one_step(80, [1] * 80, 50, max_replicas=100, behavior=behavior)
    assert (d.replicas, d.reason) == (75, hpa.LIMITED_BY_POLICY)
    d = one_step(30, [1] * 30, 50, max_replicas=100, behavior=behavior)
    assert d.replicas == 27                        # 10 % of 30 = 3 < 5 pods


def test_docs_select_policy_disabled_never_scales_down():
    """Docs "Example: disable scale down": selectPolicy Disabled."""
    behavior = {"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}
    d = one_step(10, [1] * 10, 50, behavior=behavior)
    assert (d.replicas, d.reason) == (10, hpa.LIMITED_BY_POLICY)
    assert "Disabled" in d.detail
    assert one_step(2, [100] * 2, 50, behavior=behavior).replicas == 4   # up still works


def test_docs_percent_900_allows_a_tenfold_scale_up():
    """Docs "Scaling policies": a Percent policy of 900 lets the count grow 10x a period."""
    behavior = {"scaleUp": {"policies": [{"type": "Percent", "value": 900,
                                          "periodSeconds": 60}]}}
    assert one_step(2, [5000] * 2, 50, max_replicas=100, behavior=behavior).replicas == 20


def test_docs_stabilization_window_uses_the_highest_recommendation():
    """Docs "Stabilization window": "when the metrics indicate that the target should be
    scaled down the algorithm looks into previously computed desired states, and uses the
    highest value from the specified interval" (300 s by default)."""
    scaler = Autoscaler(max_replicas=20)
    loads = {0: 400, 15: 50, 30: 200, 45: 50}     # total load; target 50 per replica
    replicas = 8
    for t, total in loads.items():
        d = scaler.step(t, replicas, Metric(50, [total / replicas] * replicas))
        replicas = d.replicas
    assert (replicas, d.reason) == (8, hpa.STABILIZED)
    assert d.metric_replicas == 1
    d = scaler.step(299, replicas, Metric(50, [50 / replicas] * replicas))
    assert d.replicas == 8                        # 400 at t=0 is still inside the window
    d = scaler.step(301, replicas, Metric(50, [50 / replicas] * replicas))
    assert d.replicas == 4                        # now the highest in the window is t=30's 4
    assert d.reason == hpa.STABILIZED


def test_docs_change_the_downscale_window_to_60_seconds():
    """Docs "Example: change downscale stabilization window": 60 s."""
    scaler = Autoscaler(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    assert scaler.step(0, 4, Metric(50, [50] * 4)).replicas == 4
    assert scaler.step(45, 4, Metric(50, [10] * 4)).replicas == 4
    assert scaler.step(75, 4, Metric(50, [10] * 4)).replicas == 1


def test_scale_up_window_takes_the_lowest_recommendation():
    """API reference: a scaleUp window picks the safest (lowest) recent recommendation."""
    scaler = Autoscaler(max_replicas=20, behavior={"scaleUp": {"stabilizationWindowSeconds": 60}})
    d = scaler.step(0, 2, Metric(50, [50, 50]))
    d = scaler.step(15, 2, Metric(50, [200, 200]))
    assert (d.replicas, d.reason) == (2, hpa.STABILIZED)
    d = scaler.step(61, 2, Metric(50, [200, 200]))
    assert (d.recommendation, d.replicas) == (8, 6)   # then the +4 pods policy
    assert d.reason == hpa.LIMITED_BY_POLICY


def test_stabilization_stops_flapping_in_a_simulation():
    """Docs: the window "is used to restrict the flapping of replica count"."""
    flap = hpa.load_profile("flapping", 40, base=50, peak=400)
    calm = hpa.simulate(flap, target=50, max_replicas=10)
    jumpy = hpa.simulate(flap, target=50, max_replicas=10,
                         behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    changes = lambda f: int((f["replicas"].diff().fillna(0) != 0).sum())  # noqa: E731
    assert changes(calm) <= 2 < changes(jumpy)
    assert set(calm["reason"]) <= {hpa.SCALED, hpa.STABILIZED, hpa.LIMITED_BY_POLICY,
                                   hpa.WITHIN_TOLERANCE}


def test_simulation_with_startup_delay_and_a_load_function():
    frame = hpa.simulate(lambda t: 400 if t >= 60 else 50, steps=20, target=50,
                         max_replicas=10, startup_seconds=30)
    assert frame["replicas"].iloc[-1] == 8
    assert (frame["ready"] <= frame["replicas"].shift(fill_value=1)).all()
    assert list(frame.columns[:4]) == ["time", "load", "replicas", "ready"]
    assert frame["time"].iloc[1] == hpa.SYNC_PERIOD


def test_simulation_is_deterministic_and_plots(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    a = hpa.simulate(hpa.load_profile("wave", 60), target=50)
    b = hpa.simulate(hpa.load_profile("wave", 60), target=50)
    assert a.equals(b)
    ax = hpa.plot(a)
    ax.figure.savefig(tmp_path / "hpa.png")
    assert (tmp_path / "hpa.png").stat().st_size > 1000


def test_explore_builds_its_widgets():
    box = hpa.explore(steps=20)
    assert len(box.children) == 2
    assert len(box.children[0].children) >= 8


def test_from_manifest_reads_an_hpa():
    manifest = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "spec": {"minReplicas": 2, "maxReplicas": 7,
                         "behavior": {"scaleDown": {"selectPolicy": "Disabled"}}}}
    scaler = Autoscaler.from_manifest(manifest)
    assert (scaler.min_replicas, scaler.max_replicas) == (2, 7)
    assert scaler.behavior.scale_down.select_policy == "Disabled"
    assert scaler.behavior.scale_down.stabilization_window_seconds == 300


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Metric(0, [1]), "target must be a number > 0"),
    (lambda: Metric(50, [1, -2]), "values[1]"),
    (lambda: Metric(50, [math.nan]), "values[0]"),
    (lambda: Policy("Replicas", 1, 15), "'Pods' or 'Percent'"),
    (lambda: Policy("Pods", 0, 15), "integer > 0"),
    (lambda: Policy("Pods", 1, 4000), "1..1800"),
    (lambda: Rules(5000, ()), "0..3600"),
    (lambda: Rules(0, (), "Largest"), "selectPolicy"),
    (lambda: Behavior.from_spec({"scaleSideways": {}}), "unknown field"),
    (lambda: Behavior.from_spec({"scaleUp": {"policies": [{"type": "Pods"}]}}),
     "type, value and periodSeconds"),
    (lambda: Autoscaler(min_replicas=5, max_replicas=2), "minReplicas <= maxReplicas"),
    (lambda: hpa.desired_replicas(2, 50, 0), "target_metric"),
    (lambda: hpa.desired_replicas(-1, 50, 50), "current_replicas"),
    (lambda: hpa.replica_proposal(2, Metric(50, [1, 1]), ready=[True]), "readiness flags"),
    (lambda: hpa.load_profile("zigzag"), "unknown load profile"),
    (lambda: hpa.simulate([]), "empty"),
])
def test_bad_input_is_named(make, words):
    with pytest.raises(HpaError, match=None) as info:
        make()
    assert words in str(info.value)


def test_time_must_not_go_backwards():
    scaler = Autoscaler()
    scaler.step(100, 2, Metric(50, [50, 50]))
    with pytest.raises(HpaError, match="backwards"):
        scaler.step(50, 2, Metric(50, [50, 50]))


def test_docstring_examples_run():
    import doctest
    result = doctest.testmod(hpa, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 10
