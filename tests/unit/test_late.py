"""The late policy (grading/late.py) at its edges, and its configuration file."""

import pytest

from cloudlab.errors import CloudlabError
from cloudlab.grading import Course, late
from cloudlab.grading.late import DAY, Policy

RULE = Policy(percent_per_day=10, cap_percent=30, zero_after_days=5)


@pytest.mark.parametrize(("seconds", "percent"), [
    (-60, 0), (0, 0),                      # early, exactly on time
    (1, 10), (DAY, 10), (DAY + 1, 20),     # 1 s late is a started day; a day and 1 s: two
    (3 * DAY, 30), (4 * DAY, 30),          # capped
    (5 * DAY, 30),                         # exactly N days: still the cap
    (5 * DAY + 1, 100),                    # just over N days: zero
])
def test_the_penalty_at_its_edges(seconds, percent):
    assert RULE.percent(seconds) == percent
    assert RULE.penalty(6, seconds) == pytest.approx(6 * percent / 100)


def test_no_policy_takes_nothing_and_says_so():
    assert Policy().penalty(6, 30 * DAY) == 0
    assert Policy().text() == "no penalty for late submissions"
    assert Policy(zero_after_days=2).percent(2 * DAY + 1) == 100


def test_the_plugin_is_nbgraders_and_applies_the_policy():
    from nbgrader.plugins import LateSubmissionPlugin

    plugin = late.LatePenalty(percent_per_day=10, cap_percent=30, zero_after_days=5)
    assert isinstance(plugin, LateSubmissionPlugin)
    assert plugin.late_submission_penalty("ada", 6.0, 1) == pytest.approx(0.6)
    assert plugin.late_submission_penalty("ada", 6.0, 5 * DAY + 1) == 6.0


def test_the_file_sets_defaults_and_per_assignment_overrides(tmp_path):
    course = Course(tmp_path)
    assert late.policy(course, "demo") == Policy()
    late.path(course).parent.mkdir(parents=True)
    late.path(course).write_text("percent_per_day = 10\ncap_percent = 50\n"
                                 "[assignment.demo]\ndue = \"2026-01-15 10:00:00 UTC\"\n"
                                 "percent_per_day = 20\n")
    assert late.policy(course, "demo") == Policy(20, 50, 0, "2026-01-15 10:00:00 UTC")
    assert late.policy(course, "other") == Policy(10, 50, 0, None)


@pytest.mark.parametrize(("text", "needle"), [
    ("percent_per_dya = 10\n", "unknown setting"),
    ("cap_percent = 150\n", "percentages must be 0-100"),
    ("percent_per_day = 'ten'\n", "could not convert"),
    ("percent_per_day = \n", "not valid TOML"),
    ("[assignment.demo]\ndue = \"next friday-ish\"\n", "is not a date"),
])
def test_a_bad_policy_file_is_named(tmp_path, text, needle):
    course = Course(tmp_path)
    late.path(course).parent.mkdir(parents=True)
    late.path(course).write_text(text)
    with pytest.raises(CloudlabError, match=needle):
        late.policy(course, "demo")
