"""The notebooks tier's claims fail on outputs that contradict the prose, pass on agreeing ones."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tests.notebooks import claims


def executed(*printed: str, source: str = "print(...)") -> nbformat.NotebookNode:
    cells = [new_code_cell(source, outputs=[new_output("stream", name="stdout", text=t)])
             for t in printed]
    return new_notebook(cells=cells)


DETECTOR = ("scrape every 1.0 s; rules evaluated every 5.0 s\n",
            "k = 1: 3 pages, 1 of them false; caught 2 of 2 incidents\n"
            "k = 2: 2 pages, 0 of them false; caught 2 of 2 incidents\n"
            "k = 3: {k3} pages, 0 of them false; caught {c3} of 2 incidents\n",
            "false alarms a day from noise alone, one check per scrape, if the healthy data "
            "were normal: {per_day}\n")
PER_DAY = "{1: 6854, 2: 983, 3: 58}"


def test_detector_scores_must_differ_across_k_unless_the_short_run_was_quiet():
    def nb(k3=1, c3=1, per_day=PER_DAY, text=None):
        return executed(DETECTOR[0], text or DETECTOR[1].format(k3=k3, c3=c3),
                        DETECTOR[2].format(per_day=per_day))
    claims.detector_scores_differ_across_k(nb())
    same = DETECTOR[1].format(k3=2, c3=2).replace("3 pages, 1", "2 pages, 0")
    claims.detector_scores_differ_across_k(nb(text=same))  # quiet: no noise crossed 1 sigma
    missed = same.replace("caught 2 of 2", "caught 1 of 2")
    with pytest.raises(AssertionError, match="same for every k, with misses"):
        claims.detector_scores_differ_across_k(nb(text=missed))
    with pytest.raises(AssertionError, match="do not fall with k"):
        claims.detector_scores_differ_across_k(nb(per_day="{1: 58, 2: 58, 3: 58}"))
    with pytest.raises(AssertionError, match="1 s"):
        claims.detector_scores_differ_across_k(executed("scrape every 5.0 s\n",
                                                        DETECTOR[1].format(k3=1, c3=1)))


SATURATION = ("capacity CPUS / C = 5.0 requests/s; demand exceeds it from {from_} users on\n"
              "throughput from 4 to 16 users: 4.8 -> {last} requests/s (x{growth} for x4 "
              "the users); mean response time 600 -> 2200 ms\n"
              "server CPU per step, in cores: {{2: 0.3, 4: {c4}, 8: 0.5, 16: 0.49}}; CPU per "
              "request U / X, in ms (C alone: 100): {{2: 100.0, 4: 104.0}}\n")
FULL = "the server used all of its 0.5 cores at every step from 4 users on: ...\n"
SHORT = "from 4 users on, the server got as little as {short} of its 0.5 cores: ...\n"


def saturation(from_=4, last=5.0, growth=1.04, c4=0.48, verdict=FULL):
    return executed(SATURATION.format(from_=from_, last=last, growth=growth, c4=c4) + verdict)


def test_throughput_must_flatten_at_saturation():
    claims.throughput_flattens_at_saturation(saturation())
    with pytest.raises(AssertionError, match="still grows"):
        claims.throughput_flattens_at_saturation(saturation(last=9.6, growth=2.0))
    with pytest.raises(AssertionError, match="no saturation"):
        claims.throughput_flattens_at_saturation(saturation(from_="no"))
    with pytest.raises(AssertionError, match="above the capacity"):
        claims.throughput_flattens_at_saturation(saturation(last=9.0, growth=1.9))
    with pytest.raises(AssertionError, match="too short a span"):  # saturation from 8 on
        claims.throughput_flattens_at_saturation(saturation(from_=8))


def test_saturation_is_judged_on_the_cpu_the_server_really_got():
    # said to be at the limit while one step past saturation had 0.3 of its 0.5 cores
    with pytest.raises(AssertionError, match="said to be at its limit"):
        claims.throughput_flattens_at_saturation(saturation(c4=0.3, growth=1.9, last=9.1))
    # a busy host: no flattening claimed, but the account must match the figures
    claims.throughput_flattens_at_saturation(
        saturation(c4=0.3, growth=2.5, last=12.0, verdict=SHORT.format(short=0.3)))
    with pytest.raises(AssertionError):
        claims.throughput_flattens_at_saturation(
            saturation(c4=0.3, verdict=SHORT.format(short=0.49)))
    # more CPU than the limit means the figures are wrong, whatever else they say
    with pytest.raises(AssertionError, match="not held under its limit"):
        claims.throughput_flattens_at_saturation(saturation(c4=0.8))


RPO = ("8 batches written, 2 backups taken, {spacing} s apart on average\n",
       "RPO (data lost)   : {rpo} s of writes, 10 orders in 2 batch(es)\n",
       "to fix (reliability): RPO within 1 s - measured 1.5 s\n")


def rpo_notebook(spacing: float, rpo: float, failing: bool = True) -> nbformat.NotebookNode:
    nb = executed(RPO[0].format(spacing=spacing), RPO[1].format(rpo=rpo),
                  RPO[2] if failing else "")
    nb.cells.append(new_code_cell("table = dr.checklist(facts)", outputs=[new_output(
        "execute_result", data={"text/plain": "pillar ... sustainability"}, execution_count=1)]))
    return nb


def test_rpo_must_mean_something():
    claims.rpo_is_meaningful(rpo_notebook(1.5, 1.5))
    with pytest.raises(AssertionError, match="apart"):
        claims.rpo_is_meaningful(rpo_notebook(0.016, 0.06))
    with pytest.raises(AssertionError, match="failing RPO check"):
        claims.rpo_is_meaningful(rpo_notebook(1.5, 1.5, failing=False))


def test_canary_ratio_must_match_the_worked_out_one():
    line = ("0.9 quantile of the normal service, canary / production: expected 1.71x "
            "(456 / 266 µs), measured {m}x (-2%)\n")
    claims.canary_ratio_as_expected(executed(line.format(m=1.67)))
    with pytest.raises(AssertionError, match=r"against the 1\.71x"):
        claims.canary_ratio_as_expected(executed(line.format(m=20.0)))


def test_your_turn_cells_must_report_a_verdict_and_never_crash():
    ok = executed("✗ 09: set response_at_30 to a number\n",
                  source='cl.checks.chapter.your_turn("09")')
    claims.your_turn_reports(ok)
    crashed = executed("✗ 09: 09: the check could not run: KeyError: 'capacity'\n",
                       source='cl.checks.chapter.your_turn("09")')
    with pytest.raises(AssertionError, match="crashed"):
        claims.your_turn_reports(crashed)
    silent = executed("", source='cl.checks.chapter.your_turn("09")')
    with pytest.raises(AssertionError, match="no verdict"):
        claims.your_turn_reports(silent)


HELD = ("one-sided alert condition (x > baseline mean + 3 sigma) held, in seconds: "
        "{'major': %d, 'minor': 0}\n")


def test_the_one_sided_promql_condition_must_hold_in_the_major_incident():
    claims.promql_condition_is_one_sided_and_fires(executed(HELD % 9))
    with pytest.raises(AssertionError, match="never held"):
        claims.promql_condition_is_one_sided_and_fires(executed(HELD % 0))
    with pytest.raises(AssertionError, match="how long"):
        claims.promql_condition_is_one_sided_and_fires(executed("peak z 12\n"))


def test_verify_reads_the_executed_file(tmp_path):
    path = tmp_path / "11-alerting.ipynb"
    nbformat.write(executed(DETECTOR[0], DETECTOR[1].format(k3=1, c3=1),
                            DETECTOR[2].format(per_day=PER_DAY), HELD % 9), str(path))
    assert claims.verify("11-alerting", path) == ["detector_scores_differ_across_k",
                                                  "promql_condition_is_one_sided_and_fires",
                                                  "your_turn_reports"]


def test_notebook_07_hpa_must_rise_and_fall():
    claims.hpa_scales_up_and_back_down(executed(
        "replicas: from 1 up to 4, back down to 1\nFailedGetResourceMetric warnings: 0\n"))
    with pytest.raises(AssertionError, match="1 -> 4 -> 4"):
        claims.hpa_scales_up_and_back_down(executed(
            "replicas: from 1 up to 4, back down to 4\nFailedGetResourceMetric warnings: 2\n"))
    with pytest.raises(AssertionError, match="replica summary"):
        claims.hpa_scales_up_and_back_down(executed("the HPA did something\n"))
    claims.hpa_scales_up_and_back_down(executed("skipped: this section needs a cluster\n"))


def test_notebook_07_real_pods_must_answer_and_leave_nothing():
    good = ("with a real node: pods really run\nanswered by: {'a', 'b'}\n"
            "while the rollout is held: {'v1'}\nleft by the real node: nothing\n"
            "processes still alive: none\n")
    claims.real_pods_answer_and_leave_nothing(executed(good))
    with pytest.raises(AssertionError, match="broken version"):
        claims.real_pods_answer_and_leave_nothing(executed(good.replace("{'v1'}",
                                                                        "{'v1', 'v2'}")))
    with pytest.raises(AssertionError, match="one pod"):
        claims.real_pods_answer_and_leave_nothing(executed(good.replace("{'a', 'b'}",
                                                                        "{'a'}")))
    claims.real_pods_answer_and_leave_nothing(executed("simulated pods only\n"))


BUILD_SECRET = ("BuildKit     : available - github.com/docker/buildx v0.38.2\n",
          "sha256 of the token, read in the build: {built}\n"
          "sha256 of the token, computed here    : aaaa\n"
          "where the token shows in the image    : {where}\n",
          "the token shows in {n} place(s) of the image:\n"
          "   history: RUN |1 TOKEN=s3cr3t-token /bin/sh -c echo\n")


def test_a_build_secret_must_be_read_and_stay_out_while_the_build_arg_shows():
    def nb(built="aaaa", where="nowhere", n=1, history=True):
        leak = BUILD_SECRET[2].format(n=n)
        return executed(BUILD_SECRET[0], BUILD_SECRET[1].format(built=built, where=where),
                        leak if history else leak.replace("history", "config"))
    claims.build_secret_stays_out(nb())
    with pytest.raises(AssertionError, match="not the token"):
        claims.build_secret_stays_out(nb(built="bbbb"))
    with pytest.raises(AssertionError, match=r"leaked: .*layer 2/2"):
        claims.build_secret_stays_out(nb(where="['layer 2/2 (RUN cp): /kept']"))
    with pytest.raises(AssertionError, match="build argument in the history"):
        claims.build_secret_stays_out(nb(history=False))
    # no BuildKit here: nothing to claim (the skip line is test_notebooks' business)
    claims.build_secret_stays_out(executed("BuildKit     : NOT available - needs Docker\n"))


K8S_SECRET = ("using the kwok backend (simulated pods)\n"
          "# made with: kubectl create secret generic db --from-literal=password=...\n"
          "$ kubectl -n config create secret generic db --from-literal=password=s3cret-ab12\n"
          "secret/db created\n$ kubectl -n config get secret db -o yaml\napiVersion: v1\n"
          "data:\n  password: {stored}\nkind: Secret\n"
          "$ echo {stored} | base64 -d\n{decoded}\n"
          "etcd holds /registry/secrets/config/db: 237 bytes; the password in plain text "
          "among them: True (no encryption at rest configured)\n")
READER = ("with a real node: pods really run\n", "env GREETING = hello from a ConfigMap\n"
          "file /etc/app/greeting = hello from a ConfigMap\n"
          "DB_PASSWORD (env) and /etc/db/password (file) agree: True (12 characters)\n"
          "/etc/db is a tmpfs mount (memory, never the node's disk)\n")
STORED = "czNjcmV0LWFiMTI="  # base64 of s3cret-ab12


def test_notebook_07_secret_is_base64_in_the_api_and_read_by_the_pod():
    good = K8S_SECRET.format(stored=STORED, decoded="s3cret-ab12")
    claims.secret_is_base64_not_encrypted(executed(good, *READER))
    claims.secret_is_base64_not_encrypted(executed(good))  # kwok: no pod runs
    with pytest.raises(AssertionError, match="plain text in get -o yaml"):
        claims.secret_is_base64_not_encrypted(executed(good.replace(
            "kind: Secret", "stringData:\n  password: s3cret-ab12\nkind: Secret")))
    with pytest.raises(AssertionError, match="not base64"):
        claims.secret_is_base64_not_encrypted(executed(
            K8S_SECRET.format(stored="czNjcmV0LWFiMTM=", decoded="s3cret-ab12")))
    with pytest.raises(AssertionError, match="the pod's env"):
        claims.secret_is_base64_not_encrypted(executed(good, READER[0], READER[1].replace(
            "env GREETING = hello from a ConfigMap", "env GREETING = ")))
    with pytest.raises(AssertionError, match="tmpfs"):
        claims.secret_is_base64_not_encrypted(executed(good, READER[0],
                                                       READER[1].replace("tmpfs", "overlay")))
    with pytest.raises(AssertionError, match="etcd"):
        claims.secret_is_base64_not_encrypted(executed(good.replace("among them: True",
                                                                    "among them: False")))
    claims.secret_is_base64_not_encrypted(executed("skipped: no cluster here, so nothing\n"))


SIDECAR = ("with a real node: pods really run\n",
           "sent 5 requests to the app (through kubectl port-forward to port 8000)\n"
           "Prometheus Server is Ready.\n"
           "the sidecar's query predict_requests_total{{job=\"app\", endpoint=\"/predict\"}} "
           "-> instance={instance} job=app value={value}\n")


def test_notebook_07_sidecar_must_scrape_the_app_on_localhost():
    claims.sidecar_scrapes_the_app_on_localhost(
        executed(SIDECAR[0], SIDECAR[1].format(instance="localhost:8000", value=5)))
    with pytest.raises(AssertionError, match="not the app at localhost:8000"):
        claims.sidecar_scrapes_the_app_on_localhost(
            executed(SIDECAR[0], SIDECAR[1].format(instance="10.88.0.7:8000", value=5)))
    with pytest.raises(AssertionError, match="saw 2 requests of the 5"):
        claims.sidecar_scrapes_the_app_on_localhost(
            executed(SIDECAR[0], SIDECAR[1].format(instance="localhost:8000", value=2)))
    with pytest.raises(AssertionError, match="the sidecar's query result"):
        claims.sidecar_scrapes_the_app_on_localhost(executed(SIDECAR[0], "sent 5 requests to "
                                                             "the app\nPrometheus Server is "
                                                             "Ready.\n"))
    claims.sidecar_scrapes_the_app_on_localhost(executed("skipped: the sidecar needs a pod\n"))
    with pytest.raises(AssertionError, match="why the sidecar was skipped"):
        claims.sidecar_scrapes_the_app_on_localhost(executed("simulated pods\n"))
