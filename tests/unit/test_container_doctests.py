"""The docstring examples of the container modules run (those that need no engine)."""

import doctest

import pytest

from cloudlab import images, lint, project, registry, vm
from cloudlab.docker import building, running


@pytest.mark.parametrize("module", [building, running, images, lint, project, registry, vm],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
