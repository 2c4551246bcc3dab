"""nbgrader configuration of the workbook (``cloudlab grade ...`` uses the same layout).

solutions/<assignment>/  nbgrader source: solutions, and grader.py with the hidden tests
                         (instructors only; grader.py is never released)
exercises/<assignment>/  nbgrader release: generated, committed, checked for drift
course/                  gitignored course state: gradebook.db, submitted/, autograded/,
                         feedback/, results/, logs/

Plain ``nbgrader`` commands run from the repository root work on the same folders, but
``cloudlab grade autograde`` is the one that sandboxes student code and scores with the
trusted graders: plain ``nbgrader autograde`` only records the notebooks' self-checks.
"""

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "course/submitted"
c.CourseDirectory.autograded_directory = "course/autograded"
c.CourseDirectory.feedback_directory = "course/feedback"
c.CourseDirectory.db_url = "sqlite:///course/gradebook.db?timeout=30"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".git",
                            "grader.py"]

c.Execute.shutdown_kernel = "immediate"

# Formgrader and feedback render student work in the instructor's browser: nbconvert's own
# sanitizer drops JavaScript and widget outputs and cleans HTML. `cloudlab grade autograde`
# also makes the autograded notebooks themselves safe (cloudlab.grading.sanitize; the
# untouched ones are kept in course/originals/).
c.HTMLExporter.sanitize_html = True
c.Execute.store_widget_state = False  # no widget state saved into a notebook it runs
