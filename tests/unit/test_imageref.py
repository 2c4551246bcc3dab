"""Image references: the distribution grammar, exactly (cases from its own test table)."""

import pytest

from cloudlab import imageref
from cloudlab import registry as reg

VALID = {
    "test_com": ("", "test_com", "", ""),
    "test.com:tag": ("", "test.com", "tag", ""),
    "test.com:5000": ("", "test.com", "5000", ""),
    "test.com/repo:tag": ("test.com", "repo", "tag", ""),
    "test:5000/repo": ("test:5000", "repo", "", ""),
    "test:5000/repo:tag": ("test:5000", "repo", "tag", ""),
    "lowercase:Uppercase": ("", "lowercase", "Uppercase", ""),
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag": ("sub-dom1.foo.com", "bar/baz/quux",
                                                   "some-long-tag", ""),
    "b.gcr.io/test.example.com/my-app:test.example.com": (
        "b.gcr.io", "test.example.com/my-app", "test.example.com", ""),
    "xn--n3h.com/myimage:xn--n3h.com": ("xn--n3h.com", "myimage", "xn--n3h.com", ""),
    "foo_bar.com:8080": ("", "foo_bar.com", "8080", ""),
    "foo/foo_bar.com:8080": ("", "foo/foo_bar.com", "8080", ""),
    "[2001:db8::1]:5000/repo": ("[2001:db8::1]:5000", "repo", "", ""),
    "localhost/a__b/c---d": ("localhost", "a__b/c---d", "", ""),
    "127.0.0.1:5000/ada/hello-cli:1.0@sha256:" + "f" * 64: (
        "127.0.0.1:5000", "ada/hello-cli", "1.0", "sha256:" + "f" * 64),
}
INVALID = ["", ":justtag", "@sha256:" + "f" * 64, "repo@sha256:ffffffffffffffffffffffffffffffff",
           "validname@invaliddigest:" + "f" * 64, "Uppercase:tag", "test:5000/Uppercase/lowercase",
           "aa/asdf$$^/aa", "a" * 256 + "/b", "[fe80::1%eth0]:5000/repo", "a..b/c", "a/.b",
           "a/b-", "a/_b", "a/b___c", "a/b//c", " a/b", "a/b:tag ", "a/b:-tag",
           "a/b:" + "t" * 129, "f" * 64,
           "127.0.0.1:5000/ada/../classmate/hello-cli:1.0",
           "127.0.0.1:5000/ada/./hello-cli:1.0", "127.0.0.1:5000/ada/%2e%2e/classmate/x:1",
           "127.0.0.1:5000/ada\\..\\classmate/x:1", "127.0.0.1:5000/ada/hello-cli:1.0/../x",
           "127.0.0.1:5000/ada/hello-cli?ns=classmate", "127.0.0.1:5000/ada/hello-cli#x",
           "127.0.0.1:5000/ada/hellο-cli"]  # a Greek omicron


@pytest.mark.parametrize("text", VALID)
def test_references_of_the_grammar_parse_into_their_parts(text):
    ref = imageref.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == VALID[text]
    assert str(ref) == text, "a canonical reference is its own string"


@pytest.mark.parametrize("text", INVALID)
def test_anything_else_is_refused_with_its_reason(text):
    with pytest.raises(imageref.ReferenceError, match=r"reference|image id") as err:
        imageref.parse(text)
    assert len(str(err.value)) < 600


def test_the_reason_names_the_part_that_breaks_the_grammar():
    def why(text):
        with pytest.raises(imageref.ReferenceError) as err:
            imageref.parse(text)
        return str(err.value)

    assert "path component '..'" in why("127.0.0.1:5000/ada/../classmate/hello-cli:1.0")
    assert "path component 'Ada'" in why("127.0.0.1:5000/Ada/x")
    assert "its tag '-x'" in why("127.0.0.1:5000/ada/x:-x")
    assert "white space" in why("ada/x ")
    assert "64 lower-case hex" in why("ada/x@sha256:" + "A" * 64)
    assert "image id" in why("f" * 64)


def test_the_registry_api_never_builds_a_url_from_a_non_canonical_path():
    """HTTP would normalise /v2/ada/../classmate/... into the classmate's repository."""
    for call in (lambda: reg.manifest_digest("ada/../classmate/hello-cli", "1.0", "127.0.0.1:9"),
                 lambda: reg.manifest_digest("ada/hello-cli", "../../classmate/x", "127.0.0.1:9"),
                 lambda: reg.tags("ada/%2e%2e/classmate", "127.0.0.1:9"),
                 lambda: reg.delete("ada/..", "sha256:" + "0" * 64, "127.0.0.1:9")):
        with pytest.raises(reg.RegistryError, match=r"is not a repository path|neither a tag"):
            call()


def test_the_docker_hub_check_reads_the_namespace_of_the_canonical_reference_only():
    from cloudlab.checks.docker_hub import rules

    answers = {"IMAGE_REF": "127.0.0.1:9/ada/../classmate/hello-cli:1.0",
               "IMAGE_DIGEST": "sha256:" + "0" * 64}
    for check in (rules.recorded(answers), rules.pushed(answers, "127.0.0.1:9", {"ada"})):
        assert not check["passed"]
        assert "not a canonical image reference" in check["message"], check
