"""Canvas and Moodle grade import CSVs (grading/lms.py), checked against their documentation.

Canvas: a grades CSV needs the columns Student (name), ID, SIS User ID, SIS Login ID and
Section, then one column per assignment; a column whose name is not an existing
assignment's creates one ("Importing a CSV file to Grades", CarmenCanvas guide, Ohio State
University, https://teaching.resources.osu.edu/toolsets/carmencanvas/guides/
calculating-final-grades/import-csv-file-carmen-grades; the Canvas Gradebook export has
the same five leading columns: https://ts.vcu.edu/askit/teaching-and-learning/canvas/
faculty/grading-faculty/gradebook-action-menu-faculty/).
Moodle: a CSV grade import maps one column to a user field, "Id Number" to
``useridnumber`` or "Email Address" to ``useremail``, and each other column to a grade
item or its feedback; importing feedback overwrites the grade, so both go together
(MoodleDocs, "Grade import", https://docs.moodle.org/311/en/Grade_import).
"""

from __future__ import annotations

import csv

import pytest
from gradingkit import make_course

from cloudlab.errors import CloudlabError
from cloudlab.grading import lms
from cloudlab.grading.results import Result

ROSTER = ("id,name,canvas_id,sis_id,login,section,email\n"
          "ada,\"Lovelace, Ada\",101,S-1,ada.l,Mon,ada@uni.example\n"
          "bob,Bob Babbage,102,S-2,bob.b,Tue,bob@uni.example\n"
          "eve,=HYPERLINK(\"http://x\"),103,S-3,eve,@Wed,eve@uni.example\n")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The demo assignment with three graded students (scores written through nbgrader's
    gradebook, as autograde does) and one on the roster who never submitted."""
    from nbgrader.api import Gradebook

    course = make_course(tmp_path_factory.mktemp("lms"))
    scores = {"ada": {"q1_test": 2, "q2_test": 3, "q3_test": 1},
              "bob": {"q1_test": 2, "q2_test": 0, "q3_test": 1},
              "eve": {"q1_test": 0, "q2_test": 0, "q3_test": 1}}
    with Gradebook(course.db_url) as gb:
        for student, by_item in scores.items():
            gb.update_or_create_student(student)
            sub = gb.update_or_create_submission("demo", student)
            for nb in sub.notebooks:
                for grade in nb.grades:
                    grade.auto_score = by_item.get(grade.name, 0)
                if student == "bob":
                    nb.late_submission_penalty = 0.6
            gb.db.commit()
    for student in scores:
        Result(student, "demo", max_score=6, late_policy="10% of the score per day late"
               ).save(course.result_file(student, "demo"))
    (course.root / "roster.csv").write_text(ROSTER + "zoe,Zoe Z,104,S-4,zoe,Mon,zoe@u.example\n")
    return course


def _read(path):
    return list(csv.reader(path.open(encoding="utf-8")))


def test_canvas_header_and_rows_follow_the_documented_format(course, tmp_path):
    path = lms.export(course, "demo", course.root / "roster.csv", "canvas", tmp_path / "c.csv")
    rows = _read(path)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "demo"]
    by_login = {r[3]: r for r in rows[1:]}
    assert by_login["ada.l"] == ["Lovelace, Ada", "101", "S-1", "ada.l", "Mon", "6.0"]
    assert by_login["bob.b"][5] == "2.4", "the final score: 3 - 0.6 late penalty"
    assert by_login["zoe"][5] == "0.0", "on the roster, never submitted: 0"
    assert len(rows) == 5


def test_per_item_columns_are_optional(course, tmp_path):
    rows = _read(lms.export(course, "demo", course.root / "roster.csv", "canvas",
                            tmp_path / "c.csv", items=True))
    assert rows[0][5:] == ["demo", "demo: q1_test", "demo: q2_test", "demo: q3_test"]
    bob = next(r for r in rows if r[3] == "bob.b")
    assert bob[6:] == ["2.0", "0.0", "1.0"]


def test_moodle_maps_by_id_number_or_email_and_carries_feedback(course, tmp_path):
    rows = _read(lms.export(course, "demo", course.root / "roster.csv", "moodle",
                            tmp_path / "m.csv"))
    assert rows[0] == ["First name", "Last name", "ID number", "Email address", "demo",
                       "demo feedback"]
    by_id = {r[2]: r for r in rows[1:]}
    assert by_id["S-1"][:5] == ["Ada", "Lovelace", "S-1", "ada@uni.example", "6.0"]
    assert by_id["S-2"][4] == "2.4"
    assert "late: -0.6 (10% of the score per day late)" in by_id["S-2"][5]
    assert by_id["S-4"][4:] == ["0.0", "missing"]


def test_formula_cells_are_neutralised(course, tmp_path):
    for fmt in ("canvas", "moodle"):
        text = (lms.export(course, "demo", course.root / "roster.csv", fmt,
                           tmp_path / f"{fmt}.csv")).read_text()
        assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and "\"=HYPERLINK" \
            not in text
    assert "'@Wed" in (tmp_path / "canvas.csv").read_text()


def test_a_graded_student_missing_from_the_roster_is_named(course, tmp_path):
    short = tmp_path / "roster.csv"
    short.write_text(ROSTER.replace("bob,Bob Babbage,102,S-2,bob.b,Tue,bob@uni.example\n", ""))
    with pytest.raises(CloudlabError, match="'bob' has grades but is not on the roster"):
        lms.export(course, "demo", short, "canvas", tmp_path / "c.csv")
    with pytest.raises(CloudlabError, match="unknown LMS format 'blackboard'"):
        lms.export(course, "demo", short, "blackboard", tmp_path / "c.csv")
