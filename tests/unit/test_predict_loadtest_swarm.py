"""The prediction service in-process, the load test's guards, the stack's generated files."""

from __future__ import annotations

import socket

import pytest
import yaml

from cloudlab import loadtest, predict, swarm
from cloudlab.errors import ServiceError


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    score = predict.train(path, trees=10)
    assert score["r2"] > 0.1, score  # a real fit: a constant predictor scores about 0
    return predict.app(path).test_client()


def test_predict_answers_rows_of_ten_features(client):
    rows = predict.sample_rows(3)
    answer = client.post("/predict", json={"features": rows})
    assert answer.status_code == 200
    body = answer.get_json()
    assert len(body["prediction"]) == 3 and body["version"] == "v1"
    assert len(set(body["prediction"])) > 1  # different rows, different predictions


def test_predict_rejects_malformed_rows_with_the_feature_names(client):
    answer = client.post("/predict", json={"features": [[1, 2, 3]]})
    assert answer.status_code == 400
    assert "bmi" in answer.get_json()["error"]


def test_metrics_count_requests_and_latency(client):
    client.get("/healthz")
    client.post("/predict", json={"features": predict.sample_rows(1)})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'predict_requests_total{code="200",endpoint="/predict"}' in text
    assert "predict_request_seconds_bucket" in text
    assert "process_cpu_seconds_total" in text


def test_the_image_tag_follows_the_sources(tmp_path, monkeypatch):
    from cloudlab import config

    cfg = config.load(env={}, state_dir=tmp_path / "state")
    first = predict.tag(cfg)
    assert predict.tag(cfg) == first, "the same sources give the same tag"
    other_base = config.load(env={}, state_dir=tmp_path / "state", base_image="python:3.99")
    assert predict.tag(other_base) != first, "another base image is another image"
    monkeypatch.setitem(predict.REQUIREMENTS, "flask", "0.0.1")
    assert predict.tag(cfg) != first, "other requirements are another image"
    monkeypatch.undo()
    edited = tmp_path / "predict_service.py"
    edited.write_text(predict.SOURCE.read_text() + "\n# one more line\n")
    monkeypatch.setattr(predict, "SOURCE", edited)
    assert predict.tag(cfg) != first, "an edited service is another image"
    assert "RUN pip install --no-cache-dir -r requirements.txt" in predict.dockerfile("b:1")
    assert predict.dockerfile("b:1").index("COPY requirements.txt") < \
        predict.dockerfile("b:1").index("COPY app.py")


def test_load_tests_aim_only_at_this_machine():
    with pytest.raises(ValueError, match=r"only at 127\.0\.0\.1"):
        loadtest.check_target("http://example.org:8080")


def test_a_target_that_refuses_connections_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ServiceError, match=f"127.0.0.1:{port}.*refused"):
            loadtest.check_target(f"http://127.0.0.1:{port}")


def test_profiles():
    assert [s.users for s in loadtest.spike(1, 9, 5, 10, 5)] == [1, 9, 1]
    assert loadtest.ramp(10, 20, hold=5)[-1].t == 25
    with pytest.raises(ValueError, match="increase"):
        loadtest.LoadTest("http://127.0.0.1:1", [loadtest.Stage(10, 1), loadtest.Stage(5, 2)])



def test_steps_measure_completed_requests_and_their_mean_after_the_ramp():
    import pandas as pd

    # 2 users for 6 s at 2 requests/s of 100 ms, then 4 users at 3 requests/s of 500 ms;
    # the second second of each step (the ramp) is noise that settle=2 leaves out
    rows, count, spent = [], 0, 0.0
    for t in range(12):
        users, rps, ms = (2, 2, 100.0) if t < 6 else (4, 3, 500.0)
        if t in (1, 7):
            rps, ms = 50, 1.0
        count += rps
        spent += rps * ms
        rows.append({"t": float(t), "users": users, "requests": count, "avg_ms": spent / count,
                     "p50_ms": ms, "p95_ms": ms})
    result = loadtest.Result(pd.DataFrame(rows), None, None, 0.0, 12.0)
    table = result.steps(settle=2)
    assert table.loc[2, "throughput_rps"] == 2.0 and table.loc[2, "mean_ms"] == 100.0
    assert table.loc[4, "throughput_rps"] == 3.0 and table.loc[4, "mean_ms"] == 500.0
    assert result.steps(settle=0).loc[2, "throughput_rps"] > 2.0  # the ramp counted

def test_compose_is_a_dnsrr_service_with_rollback_and_labels():
    doc = swarm.compose(image="img:1", replicas=3, labels={"org.cloudlab.run-id": "r1"})
    svc = doc["services"]["predict"]
    assert svc["deploy"]["endpoint_mode"] == "dnsrr"
    assert svc["deploy"]["update_config"]["failure_action"] == "rollback"
    assert svc["deploy"]["resources"]["reservations"]["cpus"] == "0.15"
    assert svc["deploy"]["labels"]["org.cloudlab.run-id"] == "r1"
    assert doc["networks"]["net"]["attachable"] is True
    yaml.safe_load(yaml.safe_dump(doc))


def test_generated_configs():
    prom = yaml.safe_load(swarm.prometheus_config())
    assert prom["scrape_configs"][0]["dns_sd_configs"][0]["names"] == ["tasks.predict"]
    assert "resolvers docker" in swarm.haproxy_config()


def test_haproxy_accepts_the_generated_config(tmp_path):
    from cloudlab.proc import run, which

    if which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; make setup does it)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(swarm.haproxy_config())
    assert "valid" in run(["haproxy", "-c", "-f", str(path)]).stdout


def test_steps_turn_a_sampled_counter_into_its_rate_over_each_steady_span():
    import pandas as pd

    # requests as before; a CPU counter sampled every 1.5 s grows 0.2 s/s while 2 users
    # run (t < 6) and 0.5 s/s after: the rates per step are read between the samples
    rows = [{"t": float(t), "users": 2 if t < 6 else 4, "requests": 10 * t, "avg_ms": 100.0,
             "p50_ms": 100.0, "p95_ms": 100.0} for t in range(12)]
    times = [i * 1.5 for i in range(9)]
    cpu = [0.2 * min(t, 6) + 0.5 * max(t - 6, 0) for t in times]
    counters = pd.DataFrame({"t": times, "cpu_cores": cpu})
    result = loadtest.Result(pd.DataFrame(rows), None, None, 0.0, 12.0, 12.0, counters)
    table = result.steps(settle=2)
    assert table.loc[2, "cpu_cores"] == pytest.approx(0.2)
    assert table.loc[4, "cpu_cores"] == pytest.approx(0.5)
    # samples that stop before a step ends say nothing about it: NaN, not a made-up rate
    early = loadtest.Result(pd.DataFrame(rows), None, None, 0.0, 12.0, 12.0,
                            counters[counters["t"] < 7])
    assert early.steps(settle=2)["cpu_cores"].isna().tolist() == [False, True]
