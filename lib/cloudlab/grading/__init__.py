"""Grading: release, collect, sandboxed parallel autograde, export and feedback.

Only light modules load with the package: ``cloudlab.grading.kernel`` runs inside the
grading container, where nbgrader is not installed.

>>> from cloudlab.grading import Course       # doctest: +SKIP
"""

from __future__ import annotations

from .course import Course

__all__ = ["Course"]
