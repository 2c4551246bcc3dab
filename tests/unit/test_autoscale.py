"""The autoscaler's decisions, replayed over a real recording of a Locust spike.

The recording (lib/cloudlab/data/autoscale-spike.csv) is what the stack's Prometheus saw
per replica, every 2 s: load jumps from 2 to 40 users at 10 s and falls back at 70 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloudlab import autoscale
from cloudlab.errors import ConfigError


@pytest.fixture(scope="module")
def series():
    return autoscale.recorded()


def test_the_recording_is_a_spike(series):
    total = series.groupby("t")["cpu"].sum()
    assert total[total.index < 8].max() < 0.05      # quiet before
    assert total[(total.index > 50) & (total.index < 75)].max() > 0.3   # busy during
    assert total[total.index > 95].max() < 0.1      # quiet after


def test_a_spike_is_answered_with_replicas_within_seconds(series):
    frame = autoscale.replay(series, target_cpu=60, downscale_window=20)
    ups = frame[frame["action"] == "scale-up"]
    assert len(ups) >= 1
    assert ups["t"].iloc[0] <= 24  # the spike starts at 10 s; the 10 s rate window lags
    assert (ups["reason"] == "scaled").all()
    assert ups["detail"].str.contains("ceil").all()


def test_scale_down_waits_for_the_stabilisation_window(series):
    short = autoscale.replay(series, target_cpu=60, downscale_window=20)
    held = short[short["reason"] == "stabilized"]
    assert len(held) and held["detail"].str.contains("20 s window").all()
    assert short["replicas"].iloc[-1] == 1           # back to the minimum after the spike
    long = autoscale.replay(series, target_cpu=60, downscale_window=300)
    assert (long["action"] != "scale-down").all()    # 300 s: no scale-down in 112 s
    assert long["replicas"].iloc[-1] > 1


def test_min_and_max_bound_every_decision(series):
    frame = autoscale.replay(series, target_cpu=20, min_replicas=2, max_replicas=3,
                             downscale_window=20)
    assert frame["replicas"].between(2, 3).all()
    assert frame["replicas"].max() == 3


def test_prometheus_down_holds_the_count_and_says_so(series):
    gap = series.copy()
    down = (gap["t"] >= 40) & (gap["t"] <= 50)
    gap.loc[down, ["cpu", "rps"]] = np.nan
    frame = autoscale.replay(gap, target_cpu=60, downscale_window=20)
    during = frame[(frame["t"] >= 40) & (frame["t"] <= 50)]
    assert len(during) >= 3
    assert (during["reason"] == "metrics unavailable").all()
    assert (during["replicas"] == during["current"]).all()
    assert during["detail"].str.contains("holding").all()
    assert (frame["replicas"] >= 1).all()


def test_requests_per_second_can_drive_it_too(series):
    frame = autoscale.replay(series, cpu_request=None, target_cpu=None, target_rps=5,
                             downscale_window=20)
    assert frame["replicas"].max() > 1


def test_cpu_utilisation_without_a_request_is_refused():
    with pytest.raises(ConfigError, match="needs a CPU request"):
        autoscale.replay(cpu_request=None, target_cpu=60)
    with pytest.raises(ConfigError, match="'70% of its request'"):  # the target given
        autoscale.replay(cpu_request=None, target_cpu=70)


def test_never_to_zero():
    with pytest.raises(ConfigError, match="never scales to zero"):
        autoscale.replay(min_replicas=0, target_cpu=60)


@pytest.mark.parametrize("name", ["autoscale", "loadtest", "predict", "swarm"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"cloudlab.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
