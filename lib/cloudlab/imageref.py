"""Image references read by the distribution reference grammar, and nothing looser.

The grammar is the one every registry and engine applies (github.com/distribution/
reference, ``regexp.go``)::

    reference      := name [ ":" tag ] [ "@" digest ]
    name           := [ domain "/" ] path-component [ "/" path-component ]*
    domain         := host [ ":" port ]         (a DNS name, an IPv4 or a [bracketed] IPv6)
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest         := algorithm ":" hex{32,}    (sha256: exactly 64 lower-case hex digits)

A reference that does not match exactly is refused, never repaired: ``ada/../classmate``
is not a path that happens to normalise to ``classmate``, it is not a reference at all.
Checks that read a namespace from a reference must :func:`parse` it first.

>>> ref = parse("127.0.0.1:5000/ada/hello-cli:1.0")
>>> ref.domain, ref.path, ref.tag, ref.namespace
('127.0.0.1:5000', 'ada/hello-cli', '1.0', 'ada')
>>> parse("127.0.0.1:5000/ada/../classmate/hello-cli:1.0")
Traceback (most recent call last):
...
cloudlab.imageref.ReferenceError: ... not a canonical image reference: its path component '..' ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CloudlabError

ALPHANUMERIC = r"[a-z0-9]+"
SEPARATOR = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = f"{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*"
REMOTE_NAME = f"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_NAME = rf"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*"
IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
DOMAIN = rf"(?:{DOMAIN_NAME}|{IPV6})(?::[0-9]+)?"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII only
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# the name is greedy as in Go: a first component with '.' or ':' (or localhost) is a domain
REFERENCE = re.compile(rf"((?:{DOMAIN}/)?{REMOTE_NAME})(?::({TAG}))?(?:@({DIGEST}))?")
NAME = re.compile(rf"(?:({DOMAIN})/)?({REMOTE_NAME})")
IDENTIFIER = re.compile(r"[a-f0-9]{64}")
NAME_MAX = 255  # characters of a name, domain included
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
HUB_DOMAINS = ("docker.io", "index.docker.io", "registry-1.docker.io")


class ReferenceError(CloudlabError):
    """Not an image reference by the distribution grammar; the message says which part."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``domain`` is '' when the reference names none (Docker Hub)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``domain/path`` (just the path without a domain)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def namespace(self) -> str:
        """The first path component when there are several ('' for ``hello-cli``)."""
        return self.path.split("/", 1)[0] if "/" in self.path else ""

    @property
    def version(self) -> str:
        """What a registry looks the manifest up by: the digest, else the tag, else latest."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


def parse(text: str) -> Reference:
    """The parts of ``text``; :class:`ReferenceError` (naming the bad part) unless ``text``
    is exactly a reference of the grammar.

    >>> parse("python:3.11-slim")
    Reference(domain='', path='python', tag='3.11-slim', digest='')
    >>> parse("localhost/a@sha256:" + "0" * 64).version[:10]
    'sha256:000'
    >>> parse("127.0.0.1:5000/Ada/hello-cli")
    Traceback (most recent call last):
    ...
    cloudlab.imageref.ReferenceError: ... its path component 'Ada' is not allowed (lower-case ...
    """
    if not isinstance(text, str):
        raise ReferenceError(f"an image reference is text, not {type(text).__name__}")
    found = REFERENCE.fullmatch(text)
    if found is None:
        raise ReferenceError(f"{text!r} is not a canonical image reference: {_why(text)}")
    name, tag, digest = found.group(1), found.group(2) or "", found.group(3) or ""
    if len(name) > NAME_MAX:
        raise ReferenceError(f"{text[:80]!r}... is not a canonical image reference: its name "
                             f"is {len(name)} characters long, at most {NAME_MAX} are allowed")
    if IDENTIFIER.fullmatch(name):
        raise ReferenceError(f"{text!r} is an image id (64 hex digits), not a reference")
    domain, path = _split(name)
    if digest:
        algorithm, _, hexes = digest.partition(":")
        wanted = DIGEST_LENGTHS.get(algorithm)
        if wanted is None or len(hexes) != wanted or hexes != hexes.lower():
            raise ReferenceError(f"{text!r} is not a canonical image reference: its digest "
                                 f"should be sha256: and 64 lower-case hex digits")
    return Reference(domain, path, tag, digest)


def _split(name: str) -> tuple[str, str]:
    """(domain, path) as the engine splits a name (``splitDockerDomain``): the first of
    several components is a domain when it has a '.' or a ':', is localhost, or is not
    lower case (a namespace never is)."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"
                or first != first.lower()):
        return first, rest
    return "", name


def _why(text: str) -> str:
    """The first part of ``text`` that breaks the grammar, in words."""
    if not text:
        return "it is empty"
    if text != text.strip():
        return "it starts or ends with white space"
    rest, at, digest = text.partition("@")
    if at and not re.fullmatch(DIGEST, digest):
        return f"its digest {digest!r} should be an algorithm, ':' and hex digits"
    parts = rest.split("/")
    last = parts[-1]
    if ":" in last:
        last, tag = last.rsplit(":", 1)
        if not re.fullmatch(TAG, tag):
            return (f"its tag {tag!r} is not allowed (letters, digits, '_', '.' and '-', "
                    "at most 128, not starting with '.' or '-')")
        parts[-1] = last
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if not re.fullmatch(DOMAIN, parts[0]):
            return f"its registry host {parts[0]!r} is not a host name or address with a port"
        parts = parts[1:]
    for part in parts:
        if not re.fullmatch(PATH_COMPONENT, part):
            return (f"its path component {part!r} is not allowed (lower-case letters and "
                    "digits, joined by one '.', one or two '_' or any number of '-')")
    return "it does not follow the distribution reference grammar"


def check_repository(path: str) -> str:
    """``path`` when it is a repository path of the grammar (no domain); else refused.

    >>> check_repository("ada/hello-cli")
    'ada/hello-cli'
    >>> check_repository("ada/../classmate/hello-cli")
    Traceback (most recent call last):
    ...
    cloudlab.imageref.ReferenceError: 'ada/../classmate/hello-cli' is not a repository path: ...
    """
    if not isinstance(path, str) or not re.fullmatch(REMOTE_NAME, path):
        raise ReferenceError(f"{path!r} is not a repository path: {_why(str(path))}")
    return path


def check_version(version: str) -> str:
    """``version`` when it is a tag or a digest of the grammar; else refused.

    >>> check_version("1.0")
    '1.0'
    >>> check_version("../../x")
    Traceback (most recent call last):
    ...
    cloudlab.imageref.ReferenceError: '../../x' is neither a tag nor a digest
    """
    if isinstance(version, str) and (re.fullmatch(TAG, version)
                                     or re.fullmatch(DIGEST, version)):
        return version
    raise ReferenceError(f"{version!r} is neither a tag nor a digest")
