"""Every docstring example in the library runs (those that need a service say +SKIP)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cloudlab

MODULES = sorted(m.name for m in pkgutil.walk_packages(cloudlab.__path__, "cloudlab."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert failed == 0, f"{name}: {failed} docstring example(s) failed (run pytest " \
                        f"--doctest-modules {module.__file__})"
