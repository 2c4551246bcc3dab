"""What a graded Dockerfile may build on, checked on its text before anything is built."""

import pytest

from cloudlab.grading.dockerfile import instructions, normal, policy, stamp

BASE = {"python:3.11-slim"}


@pytest.mark.parametrize("text", [
    "FROM python:3.11-slim\nRUN pip install click==8.1.7\n",
    "FROM docker.io/library/python:3.11-slim AS build\nFROM build\nCOPY --from=build /a /a\n",
    "FROM python:3.11-slim\nFROM python:3.11-slim\nCOPY --from=0 /a /a\n",
    "ARG BASE=python:3.11-slim\nFROM ${BASE}\n",
    "FROM scratch\nCOPY app.py /\n",
    "FROM python:3.11-slim\nCOPY --from=python:3.11-slim /etc/os-release /x\n",
    "# escape=`\nFROM python:3.11-slim\nRUN echo a `\n  b\n",
])
def test_allowed_images_and_earlier_stages_pass(text):
    assert policy(text, BASE) == []


@pytest.mark.parametrize("text, line, words", [
    ("FROM other-student/hello-cli:1.0\n", 1, "FROM other-student/hello-cli:1.0 is not"),
    ("FROM python:3.11-slim\nCOPY --from=cloudlab-graded-abc:latest /app /app\n", 2,
     "COPY --from=cloudlab-graded-abc:latest reads an image"),
    ("FROM python:3.11-slim AS a\nCOPY --from=b /x /x\nFROM python:3.11-slim AS b\n", 2,
     "COPY --from=b"),  # a later stage is not an earlier one
    ("FROM python:3.11-slim\nCOPY --from=0 /x /x\n", 2, "COPY --from=0"),  # itself
    ("FROM $IMAGE\n", 1, "uses a build argument"),
    ("FROM python:3.11-slim\nADD https://example.invalid/x /x\n", 2, "ADD from a URL"),
    ("FROM python:3.11-slim\nRUN --mount=type=bind,from=secret,target=/s cat /s/key\n", 2,
     "RUN --mount"),
    ("FROM python:3.11-slim\nRUN echo \\\n  a\nCOPY \\\n  --from=other:1 /a /a\n", 4,
     "COPY --from=other:1"),
])
def test_other_images_are_refused_naming_the_line(text, line, words):
    problems = policy(text, BASE)
    assert problems and problems[0].startswith(f"line {line}: "), problems
    assert words in problems[0]


def test_no_from_at_all_is_a_problem():
    assert policy("RUN echo hi\n", BASE) == ["the Dockerfile has no FROM line"]


def test_stamp_labels_every_stage_and_keeps_the_instructions():
    text = "FROM python:3.11-slim AS a\nRUN echo \\\n  hi\nFROM a\nCMD [\"x\"]\n"
    out = stamp(text, {"org.cloudlab.build": "b1"})
    kinds = [i.keyword for i in instructions(out)]
    assert kinds == ["FROM", "LABEL", "RUN", "FROM", "LABEL", "CMD"]
    assert policy(out, BASE) == []


def test_names_are_compared_without_the_hub_prefix():
    assert normal("library/python:3.11-slim") == "python:3.11-slim"
    assert normal("python@sha256:ab") == "python:latest@sha256:ab"


@pytest.mark.parametrize("name", ["dockerfile", "buildproxy", "roster", "confine"])
def test_the_grading_side_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"cloudlab.grading.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_the_proxy_reads_targets_and_refuses_what_is_not_one():
    from cloudlab.grading.buildproxy import target

    assert target("CONNECT", "[2001:db8::1]:443") == ("2001:db8::1", "443", "")
    assert target("GET", "http://Index.Example/simple/click/") == ("index.example", "80",
                                                                   "/simple/click/")
    for method, text in (("GET", "/etc/passwd"), ("CONNECT", "nohost"), ("GET", "ftp://x/")):
        with pytest.raises(ValueError):
            target(method, text)
