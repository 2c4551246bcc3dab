"""cl.prometheus without a server: result parsing, times, errors, the random exporter."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import pytest
import requests

from cloudlab import prometheus as prom
from cloudlab.errors import CloudlabError

VECTOR = {"resultType": "vector", "result": [
    {"metric": {"__name__": "up", "job": "b", "instance": "x:1"}, "value": [1700000000.5, "1"]},
    {"metric": {"__name__": "up", "job": "a", "instance": "x:2"}, "value": [1700000000.5, "0"]},
]}
MATRIX = {"resultType": "matrix", "result": [
    {"metric": {"group": "canary"}, "values": [[10, "1"], [15, "NaN"]]},
    {"metric": {"group": "production"}, "values": [[10, "2"], [15, "+Inf"]]},
]}


def test_vector_becomes_one_row_per_series_sorted_by_labels():
    df = prom._frame(VECTOR)
    assert list(df.columns) == ["__name__", "instance", "job", "timestamp", "value"]
    assert list(df["instance"]) == ["x:1", "x:2"]  # sorted by the labels, in column order
    assert list(df["value"]) == [1.0, 0.0]
    assert df["timestamp"].iloc[0] == datetime(2023, 11, 14, 22, 13, 20, 500000,
                                               tzinfo=timezone.utc)


def test_matrix_is_long_and_special_values_are_floats():
    df = prom._frame(MATRIX)
    assert len(df) == 4
    assert math.isnan(df["value"].iloc[1]) and math.isinf(df["value"].iloc[3])
    table = prom.wide(df, by="group")
    assert list(table.columns) == ["canary", "production"] and len(table) == 2


def test_scalar_and_empty_results():
    assert prom._frame({"resultType": "scalar", "result": [5, "2.5"]})["value"].tolist() == [2.5]
    empty = prom._frame({"resultType": "vector", "result": []})
    assert empty.empty and list(empty.columns) == ["timestamp", "value"]
    assert prom.wide(empty).empty


def test_times_and_durations():
    assert prom.seconds("90s") == 90 and prom.seconds("1.5h") == 5400
    assert prom.seconds("250ms") == 0.25
    assert abs(prom.to_unix("5m") - (time.time() - 300)) < 2
    assert prom.to_unix(datetime(1970, 1, 1, 0, 1)) == 60.0
    with pytest.raises(CloudlabError, match="'5 minutes' is not a duration"):
        prom.seconds("5 minutes")
    with pytest.raises(CloudlabError, match="cannot use"):
        prom.to_unix([1])


def test_promql_error_points_at_prometheus_position():
    msg = 'invalid parameter "query": 1:17: parse error: unclosed left parenthesis'
    err = prom.PromQLError("sum(rate(up[5m])", "bad_data", msg)
    assert (err.line, err.column) == (1, 17)
    assert "unclosed left parenthesis" in str(err)
    assert str(err).splitlines()[-1].index("^") == 2 + 16


def test_unreachable_prometheus_says_how_to_start_it():
    with pytest.raises(CloudlabError, match="cloudlab services up prometheus"):
        prom.query("up", url="http://127.0.0.1:9")


def test_job_names_are_checked():
    with pytest.raises(CloudlabError, match="letters, digits"):
        prom._safe("../etc")


def test_random_target_serves_the_upstream_metrics():
    with prom.RandomTarget("canary", seed=3) as t:
        deadline = time.time() + 10
        while True:
            text = requests.get(t.url, timeout=5).text
            if 'rpc_durations_seconds_count{service="exponential"}' in text or \
                    time.time() > deadline:
                break
            time.sleep(0.1)
        assert t.labels == {"group": "canary"}
    assert "# TYPE rpc_durations_seconds summary" in text
    assert 'rpc_durations_seconds{quantile="0.99",service="normal"}' in text
    assert "# TYPE rpc_durations_histogram_seconds histogram" in text
    assert text.count("rpc_durations_histogram_seconds_bucket{") == 21
    with pytest.raises(CloudlabError, match="not started"):
        _ = t.port


def test_degrade_multiplies_latencies():
    with prom.RandomTarget(seed=1, uniform_domain=1.0) as t:
        t.degrade(1000)
        deadline = time.time() + 10
        while time.time() < deadline:
            s = t._summary._streams.get("uniform")
            if s and s.count >= 3:
                break
            time.sleep(0.05)
        assert s.total / s.count > 1.0  # uniform on [0, 1) scaled by 1000
    with pytest.raises(CloudlabError, match="positive"):
        t.degrade(0)


def test_random_targets_are_the_getting_started_trio():
    groups = [t.group for t in prom.random_targets()]
    assert groups == ["production", "production", "canary"]
