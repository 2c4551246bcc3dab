"""cloudlab.dr against a private moto server: backups, drills, retries, alarms, sweep."""

import pytest

from cloudlab import aws, cleanup, dr, services
from cloudlab.config import LABEL
from cloudlab.proc import wait_for


@pytest.fixture
def moto_cfg(cfg):
    with services.moto(cfg):
        yield cfg


def _tree(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_backup_restore_drill_and_version_pinning(moto_cfg, tmp_path):
    data = _tree(tmp_path / "data", {"orders.csv": "1,apple\n", "cfg/app.yml": "x: 1\n"})
    with dr.BackupBucket(moto_cfg) as bucket:
        first = bucket.backup(data)
        (data / "orders.csv").write_text("1,apple\n2,pear\n")
        second = bucket.backup(data)
        assert [s.manifest_key for s in bucket.snapshots()] == [first.manifest_key,
                                                                second.manifest_key]
        versions = bucket.versions().query("key == 'orders.csv'")
        assert len(versions) == 2, "versioning keeps both copies"

        drill = bucket.restore(first, tmp_path / "r1").require()
        assert (tmp_path / "r1" / "orders.csv").read_text() == "1,apple\n"
        assert (tmp_path / "r1" / "cfg" / "app.yml").read_text() == "x: 1\n"
        assert drill.ok and drill.seconds >= 0

        # a bad write after the backup: pinned restores still verify, unpinned ones do not
        bucket.s3.put_object(Bucket=bucket.name, Key="orders.csv", Body=b"garbage")
        assert bucket.restore(second, tmp_path / "r2").ok
        unpinned = bucket.restore(second, tmp_path / "r3", pinned=False)
        assert not unpinned.ok
        with pytest.raises(dr.DrillFailed, match=r"orders\.csv"):
            unpinned.require()
    assert not aws.client("s3", moto_cfg).list_buckets()["Buckets"]
    bucket.stop()  # idempotent


def test_bucket_is_tagged_versioned_encrypted_and_expires_old_versions(moto_cfg):
    with dr.BackupBucket(moto_cfg, noncurrent_days=7) as bucket:
        f = dr.facts(bucket=bucket)
    assert (f.versioning, f.lifecycle_noncurrent_days) == ("Enabled", 7)
    assert f.bucket_encrypted and f.public_access_blocked and not f.untagged


def test_worker_retries_with_backoff_until_the_downstream_returns(moto_cfg):
    backoff = dr.Backoff(base=1, factor=2, cap=4)
    with dr.Queue(moto_cfg, max_receives=4, visibility=2) as queue, \
            dr.Downstream(moto_cfg) as downstream:
        downstream.stop()  # the outage starts before the messages arrive
        queue.send(["job-1", "job-2", "poison-3"])
        with dr.Worker(queue, downstream.url + "/jobs", backoff) as worker:
            wait_for(lambda: (worker.history().query("not ok")["body"]
                              .value_counts().get("job-1", 0) >= 3),
                     timeout=30, what="three failed deliveries of job-1")
            downstream.start()  # recovery
            wait_for(lambda: {"job-1", "job-2"} <= worker.delivered(), timeout=30,
                     what="both jobs delivered after the outage")
            wait_for(lambda: queue.depth()["dead"] == 1, timeout=30,
                     what="the poison message in the dead-letter queue")
        history = worker.history()
        assert set(downstream.received()["body"]) == {"job-1", "job-2"}
        job1 = history.query("body == 'job-1'").sort_values("attempt")
        failed = job1.query("not ok")
        assert list(failed["attempt"]) == [1, 2, 3] and job1["ok"].iloc[-1]
        assert set(failed["detail"]) == {"ConnectionError"}, "the backoff was applied"
        # the real redelivery delays, from when each receive happened: each at least the
        # backoff's (1, 2, 4 s; the queue's own visibility timeout is 2 s)
        gaps = list(job1["at"].diff().iloc[1:])
        wanted = backoff.schedule(3)
        assert wanted == [1, 2, 4]
        assert all(gap >= want - 0.5 for gap, want in zip(gaps, wanted, strict=True)), \
            f"redelivered after {gaps} s, backoff {wanted} s"
        poison = history.query("body == 'poison-3'")
        assert poison["detail"].iloc[-1] == "HTTP 500" and not poison["ok"].any()
        assert queue.dead_letters() == ["poison-3"]
        f = dr.facts(queue=queue, worker=worker)
        assert f.dlq_max_receives == 4 and f.retries_back_off and f.queue_encrypted
    assert downstream.pid() is None


def test_alarms_are_evaluated_by_us_and_set_explicitly(moto_cfg):
    with dr.Alarms(moto_cfg) as alarms:
        name = alarms.add("DeadLetters", threshold=0)
        dr.put_metric("DeadLetters", 1, moto_cfg)
        dr.put_metric("DeadLetters", 0, moto_cfg, namespace="Other")
        result = alarms.evaluate()
        assert result.set_index("alarm").loc[name, "computed"] == "ALARM"
        described = alarms.describe().set_index("alarm").loc[name]
        assert described["state"] == "ALARM" and "moto" in described["reason"]
        assert not dr.facts(alarms=alarms).untagged
    assert not aws.client("cloudwatch", moto_cfg).describe_alarms()["MetricAlarms"]


def test_sweep_removes_only_this_runs_buckets_queues_and_alarms(moto_cfg, tmp_path):
    import dataclasses

    other = dataclasses.replace(moto_cfg, run_id="someone-else")
    data = _tree(tmp_path / "d", {"a.txt": "a"})
    mine = [dr.BackupBucket(moto_cfg).start(), dr.Queue(moto_cfg).start()]
    theirs = [dr.BackupBucket(other).start(), dr.Queue(other).start()]
    mine[0].backup(data)
    alarms, their_alarms = dr.Alarms(moto_cfg), dr.Alarms(other)
    alarms.add("DeadLetters", 0)
    their_alarms.add("DeadLetters", 0)
    aws.client("sqs", moto_cfg).create_queue(QueueName="untagged")

    counts = cleanup.sweep(moto_cfg.run_id, moto_cfg, stop_services=False)
    assert (counts["buckets"], counts["queues"], counts["alarms"]) == (1, 2, 1)
    s3 = aws.client("s3", moto_cfg)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [theirs[0].name]
    urls = aws.client("sqs", moto_cfg).list_queues()["QueueUrls"]
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(
        [theirs[1].name, f"{theirs[1].name}-dlq", "untagged"])
    left = aws.client("cloudwatch", moto_cfg).describe_alarms()["MetricAlarms"]
    assert [a["AlarmName"] for a in left] == their_alarms.names
    tags = aws.client("cloudwatch", moto_cfg).list_tags_for_resource(
        ResourceARN=left[0]["AlarmArn"])["Tags"]
    assert {"Key": LABEL, "Value": "someone-else"} in tags
