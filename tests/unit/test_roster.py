"""Course registry accounts: the roster, who may do what, the signed tokens."""

import base64
import json

import pytest

from cloudlab.grading import Course, roster


def test_the_rights_are_per_namespace_and_nobody_deletes():
    g = roster.grant
    assert g("ada", "student", "repository:ada/hello-cli:pull,push") == ["pull", "push"]
    assert g("ada", "student", "repository:bob/hello-cli:pull,push") == []
    assert g("ada", "student", "repository:hello-cli:push") == [], "no namespace: nobody's"
    assert g("ada", "student", "repository:classmate/hello-cli:pull,push") == ["pull"]
    assert g(None, "", "repository:classmate/hello-cli:pull") == ["pull"]
    assert g(None, "", "repository:ada/hello-cli:pull") == []
    assert g("prof", "instructor", "repository:ada/x:pull,push,delete") == ["pull", "push"]
    assert g("ada", "student", "repository:ada/x:delete,*") == []
    assert g("prof", "instructor", "registry:catalog:*") == ["*"]
    assert g("ada", "student", "registry:catalog:*") == []


def test_the_roster_is_read_and_bad_lines_are_named(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("id,dockerhub\nAda,ada-on-hub\n# a comment\nbob,\n")
    assert roster.read_roster(path) == [roster.Student("ada", "ada-on-hub"),
                                        roster.Student("bob", "")]
    path.write_text("ada\nbob smith\n")
    with pytest.raises(roster.RosterError, match=r"roster.csv:2: 'bob smith' cannot be"):
        roster.read_roster(path)
    path.write_text("ada\nada\n")
    with pytest.raises(roster.RosterError, match="ada is on the roster twice"):
        roster.read_roster(path)


def test_accounts_are_private_and_kept_when_the_roster_grows(tmp_path):
    course = Course(tmp_path)
    (tmp_path / "r.txt").write_text("ada\n")
    first = roster.generate(course, tmp_path / "r.txt")
    creds = json.loads((roster.folder(course) / "credentials.json").read_text())
    (tmp_path / "r.txt").write_text("ada\nbob\n")
    second = roster.generate(course, tmp_path / "r.txt")
    again = json.loads((roster.folder(course) / "credentials.json").read_text())
    assert first.added == ["ada", "instructor"] and second.added == ["bob"]
    assert again["ada"]["password"] == creds["ada"]["password"], "handed-out passwords stay"
    for name in ("credentials.json", "users.json", "key.pem"):
        assert (roster.folder(course) / name).stat().st_mode & 0o077 == 0
    users = (roster.folder(course) / "users.json").read_text()
    assert creds["ada"]["password"] not in users, "the server keeps only bcrypt hashes"
    assert roster.namespaces(course, "ada") == {"ada"}


def test_a_token_says_what_was_granted_and_is_signed_by_the_course_key(tmp_path):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509 import load_pem_x509_certificate

    course = Course(tmp_path)
    (tmp_path / "r.txt").write_text("ada\n")
    roster.generate(course, tmp_path / "r.txt")
    key = serialization.load_pem_private_key(
        (roster.folder(course) / "key.pem").read_bytes(), password=None)
    reply = roster.token(key, "ada", "student", ["repository:bob/x:pull,push",
                                                 "repository:ada/x:pull,push"])
    head, body, sig = reply["token"].split(".")

    def part(text):
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    claims = json.loads(part(body))
    assert [a["actions"] for a in claims["access"]] == [[], ["pull", "push"]]
    assert claims["aud"] == roster.SERVICE and claims["sub"] == "ada"
    cert = load_pem_x509_certificate((roster.folder(course) / "cert.pem").read_bytes())
    cert.public_key().verify(part(sig), f"{head}.{body}".encode(), padding.PKCS1v15(),
                             hashes.SHA256())
    assert json.loads(part(head))["kid"] == roster.key_id(cert.public_key())


def test_the_cli_makes_the_accounts_and_names_a_bad_line(tmp_path, capsys):
    from cloudlab import cli

    (tmp_path / "roster.txt").write_text("ada\nbob\n")
    assert cli.main(["grade", "--course", str(tmp_path), "roster",
                     str(tmp_path / "roster.txt")]) == 0
    assert "3 account(s) added" in capsys.readouterr().out
    (tmp_path / "roster.txt").write_text("ada\nBob Smith\n")
    assert cli.main(["grade", "--course", str(tmp_path), "roster",
                     str(tmp_path / "roster.txt")]) == 1
    assert "roster.txt:2: 'bob smith' cannot be a registry namespace" in capsys.readouterr().err
