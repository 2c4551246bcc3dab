"""Grading tier fixtures; helpers live in fixtures/gradingkit.py (importable by tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from cloudlab.grading import Course


@pytest.fixture(scope="module")
def grading_image(docker_engine, tmp_path_factory) -> str:
    """The grading image (built once, then found cached by the hash of its inputs)."""
    from cloudlab.grading import image

    course = Course(tmp_path_factory.mktemp("image-course"))
    return image.ensure(course, log=course.root / "build.log")
