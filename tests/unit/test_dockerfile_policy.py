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
    ("FROM python:3.11-slim\nADD https://example.invalid/x /x\n", 2, "is not a file"),
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
    assert policy(text, BASE) == []
    # the grader's own label is one a student may not write
    assert [p[:7] for p in policy(out, BASE)] == ["line 2:", "line 6:"]


def test_stamp_counts_lines_as_docker_does():
    """A form feed or a carriage return is no line break to Docker: the label goes after
    the FROM's real last line, and every other byte stays."""
    text = "FROM a \\\r\n  AS b\r\nRUN x\x0cy\n"
    out = stamp(text, {"k": "v"})
    assert out == "FROM a \\\r\n  AS b\r\nLABEL \"k\"=\"v\"\nRUN x\x0cy\n"


def test_names_are_compared_without_the_hub_prefix():
    assert normal("library/python:3.11-slim") == "python:3.11-slim"
    assert normal("python@sha256:ab") == "python:latest@sha256:ab"


@pytest.mark.parametrize("name", ["dockerfile", "buildproxy", "roster", "confine", "jailengine"])
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


# Each of these got past the text-only reader of 3669b86 (issue 18): the engine fetched
# a URL on the host's network, or built from an image the policy never saw.
HIDDEN = [
    ("FROM python:3.11-slim\nADD [\"http://127.0.0.1:9/x\", \"/x\"]\n", 2, "ADD http://"),
    ("FROM python:3.11-slim\nENV U=http://127.0.0.1:9/x\nADD $U /x\n", 3, "ADD $U"),
    ("FROM python:3.11-slim\nADD http\\://127.0.0.1:9/x /x\n", 2, "ADD http\\://"),
    ("FROM python:3.11-slim\nADD git@127.0.0.1:x/y.git /x\n", 2, "ADD git@"),
    ("FROM python:3.11-slim\nADD --checksum=sha256:00 a /x\n", 2, "ADD --checksum"),
    ("FROM python:3.11-slim\nONBUILD ADD http://127.0.0.1:9/x /x\n", 2, "ONBUILD"),
    ("FROM python:3.11-slim\nRUN echo \\\u00a0\nADD http://127.0.0.1:9/x /x\n", 2, "U+00A0"),
    ("# note=x\n# escape=`\nFROM python:3.11-slim\nRUN echo ok # `\nADD http://127.0.0.1:9/x /x\n",
     1, "parser directive"),
    ("# syntax=example/frontend:1\nFROM python:3.11-slim\n", 1, "frontend image"),
    ("ARG B=python:3.11-slim\nFROM ${B:+cloudlab/busybox:1.35}\n", 2, "FROM cloudlab/busybox"),
    ("ARG B\nFROM ${B:-cloudlab/busybox:1.35}\n", 2, "FROM cloudlab/busybox"),
    ("FROM ${HTTP_PROXY:+cloudlab/busybox:1.35}python:3.11-slim\n", 1, "HTTP_PROXY"),
    ("ARG B=python:3.11-slim\nFROM ${B#python}\n", 2, "does not read"),
    ("FROM python:3.11-slim\nARG S=cloudlab/busybox:1.35\nCOPY --from=$S /bin /x\n", 3,
     "COPY --from=$S"),
    ("FROM python:3.11-slim\nRUN <<EOF\nADD http://127.0.0.1:9/x /x\nEOF\n", 2, "heredocs"),
    ("FROM python:3.11-slim\x00\nADD http://127.0.0.1:9/x /x\n", 0, "NUL byte"),
    ("FROM python:3.11-slim\nLABEL org.cloudlab.build=x\n", 2, "belongs to the grader"),
    ("FROM python:3.11-slim\nLABEL \"org.cloudlab.run-id\"=x a=b\n", 2, "belongs to the grader"),
    ("FROM python:3.11-slim\nARG K=org.cloudlab.build\nLABEL $K=x\n", 3, "variable in its key"),
    ("FROM python:3.11-slim\nFROBNICATE now\n", 2, "not a Dockerfile instruction"),
]


@pytest.mark.parametrize("text, line, words", HIDDEN)
def test_what_docker_would_read_differently_is_refused(text, line, words):
    problems = policy(text, BASE)
    assert problems, "refused"
    first = problems[0]
    assert first.startswith(f"line {line}: ") if line else "not read" in first, problems
    assert words in first, problems


def test_the_multi_stage_venv_dockerfile_still_passes():
    text = """\
FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
COPY requirements.txt .
RUN /opt/venv/bin/pip install --no-cache-dir -r requirements.txt
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
COPY --chown=app app.py .
ENV PATH=/opt/venv/bin:$PATH
LABEL org.opencontainers.image.title="hello" maintainer=me
USER app
ENTRYPOINT ["python", "app.py"]
CMD ["hello"]
"""
    assert policy(text, BASE) == []


@pytest.mark.parametrize("word, env, out", [
    ("${B:+x}", {"B": "1"}, "x"), ("${B:+x}", {"B": ""}, ""), ("${B:-x}", {"B": ""}, "x"),
    ("${B:-${C:-y}}", {}, "y"), ("$B/$C", {"B": "a", "C": "b"}, "a/b"),
    ("'$B'", {"B": "a"}, "$B"), ('"$B\\$"', {"B": "a"}, "a$"), ("\\$B", {"B": "a"}, "$B"),
    ("a$", {}, "a$"), ("${B}c", {"B": "a"}, "ac"),
])
def test_expansion_follows_dockers_word_rules(word, env, out):
    from cloudlab.grading.dockerfile import expand

    assert expand(word, env) == out


@pytest.mark.parametrize("word", ["${B-x}", "${B#x}", "${B:?x}", "$1", "${B", "'a", "$Bé"])
def test_forms_docker_versions_read_differently_are_undecided(word):
    from cloudlab.grading.dockerfile import Undecided, expand

    with pytest.raises(Undecided):
        expand(word, {"B": "b"})
