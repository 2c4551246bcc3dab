"""The docstring examples of the container modules run (those that need no engine)."""

import doctest

import pytest

from cloudlab import docker, lint, project, registry


@pytest.mark.parametrize("module", [docker, lint, project, registry], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
