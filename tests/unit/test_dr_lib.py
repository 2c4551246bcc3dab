"""cloudlab.dr without a server: backoff, RPO/RTO arithmetic, alarm maths, the checklist."""

import pytest

from cloudlab import config, dr
from cloudlab.dr import Backoff, Facts
from tests.conftest import free_port


def test_backoff_doubles_up_to_the_cap():
    assert Backoff(base=1, factor=2, cap=8).schedule(6) == [1, 2, 4, 8, 8, 8]
    assert Backoff(base=0.5, factor=3, cap=100).delay(3) == 4.5


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"factor": 0.5}, {"base": 4, "cap": 2}])
def test_bad_backoff_is_refused(kwargs):
    with pytest.raises(ValueError, match="need base > 0"):
        Backoff(**kwargs)


def test_attempts_count_from_one():
    with pytest.raises(ValueError, match="attempts count from 1"):
        Backoff().delay(0)


def test_recovery_uses_the_last_backup_before_the_disaster():
    r = dr.recovery([10.0, 50.0, 200.0], disaster_at=80.0, restored_at=95.5)
    assert (r.last_backup_at, r.rpo_seconds, r.rto_seconds) == (50.0, 30.0, 15.5)


def test_recovery_without_a_backup_is_a_failed_drill():
    with pytest.raises(dr.DrillFailed, match="no backup was taken before the disaster"):
        dr.recovery([100.0], disaster_at=50.0, restored_at=60.0)
    with pytest.raises(ValueError, match="earlier than disaster_at"):
        dr.recovery([1.0], disaster_at=50.0, restored_at=40.0)


@pytest.mark.parametrize(("values", "comparison", "state"), [
    ([], "GreaterThanThreshold", "INSUFFICIENT_DATA"),
    ([5.0, 7.0], "GreaterThanThreshold", "ALARM"),
    ([5.0, 2.0], "GreaterThanThreshold", "OK"),
    ([3.0], "GreaterThanOrEqualToThreshold", "ALARM"),
    ([1.0], "LessThanThreshold", "ALARM"),
    ([3.0], "LessThanOrEqualToThreshold", "ALARM"),
    ([4.0], "LessThanOrEqualToThreshold", "OK"),
])
def test_alarm_state_is_computed_like_cloudwatch(values, comparison, state):
    assert dr.alarm_state(values, 3.0, comparison) == state


def test_unknown_comparison_is_named():
    with pytest.raises(ValueError, match="comparison must be one of"):
        dr.alarm_state([1.0], 1.0, "Bigger")


GOOD = Facts(versioning="Enabled", lifecycle_noncurrent_days=30, bucket_encrypted=True,
             public_access_blocked=True, queue_encrypted=True, dlq_max_receives=4,
             long_polling_seconds=1, alarm_metrics=["BackupAgeSeconds", "DeadLetters"],
             drill_ok=True, rpo_seconds=20.0, rto_seconds=2.0, retries_back_off=True)


def test_checklist_passes_on_a_well_built_stack():
    table = dr.checklist(GOOD, rpo_target=60, rto_target=30,
                         alarm_on=["BackupAgeSeconds", "DeadLetters"])
    assert table["pass"].tolist() == [True] * len(table)
    assert set(table["pillar"]) == {"operational excellence", "security", "reliability",
                                    "performance efficiency", "cost optimization",
                                    "sustainability"}


def test_checklist_names_each_failure():
    bad = Facts(versioning="Suspended", untagged=["s3://x"], rpo_seconds=120.0,
                rto_seconds=1.0, drill_ok=False, alarm_metrics=["DeadLetters"])
    table = dr.checklist(bad, rpo_target=60, rto_target=30,
                         alarm_on=["BackupAgeSeconds", "DeadLetters"]).set_index("check")
    failed = set(table.index[table["pass"] == False])  # noqa: E712 (None is "unknown")
    assert failed == {
        "alarms on the key metrics", "every resource tagged with the run id",
        "backups encrypted at rest", "no public access to backups", "queue encrypted at rest",
        "bucket versioning on", "failed messages go to a dead-letter queue",
        "restore drill verified every checksum", "RPO within 60 s",
        "consumers long-poll the queue",
        "old backup versions expire"}
    assert "missing ['BackupAgeSeconds']" in table.loc["alarms on the key metrics", "evidence"]
    assert table.loc["RTO within 30 s", "pass"] == True  # noqa: E712
    assert table.loc["retries back off exponentially", "pass"] is None


def test_unmeasured_facts_are_unknown_not_passed():
    table = dr.checklist(Facts(), rpo_target=60, rto_target=30).set_index("check")
    for check in ("bucket versioning on", "RPO within 60 s", "RTO within 30 s",
                  "restore drill verified every checksum"):
        assert table.loc[check, "pass"] is None, check


def test_resources_refuse_to_start_without_an_endpoint(tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path, moto_port=free_port())
    for resource in (dr.BackupBucket(cfg), dr.Queue(cfg), dr.Alarms(cfg)):
        with pytest.raises(dr.UnavailableError, match="no moto server answers"):
            resource.start()


def test_backup_of_a_missing_folder_is_named(tmp_path):
    bucket = dr.BackupBucket(config.load(env={}, state_dir=tmp_path))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        bucket.backup(tmp_path / "nope")


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="noncurrent_days"):
        dr.BackupBucket(noncurrent_days=0)
    with pytest.raises(ValueError, match="max_receives"):
        dr.Queue(max_receives=0)


def test_a_failed_drill_names_the_files(tmp_path):
    import pandas as pd

    snap = dr.Snapshot(1.0, "manifests/x.json", {"a": {}, "b": {}})
    files = pd.DataFrame({"key": ["a", "b"], "ok": [True, False]})
    drill = dr.Drill(snap, tmp_path, files, 0.0, 1.0)
    with pytest.raises(dr.DrillFailed, match="checksum mismatch in b"):
        drill.require()
