"""The course registry's accounts: one per student, each pushing only to its own namespace.

Debian's registry (CNCF Distribution) checks a login with htpasswd, but then lets every
user push anywhere; per-repository rights need its *token* authentication: the registry
sends clients to a token server, which checks the login and signs a short-lived token
listing what the holder may do to which repository. :class:`AuthServer` is that server,
small and local (127.0.0.1, next port after the registry's), with these rules:

* a student may pull and push ``<their id>/...`` and pull the course's public images
  (``classmate/...``); nothing else;
* the instructor may pull and push everywhere and list the catalogue;
* nobody may delete (and the registry runs with deletes off).

``cloudlab grade roster ROSTER`` makes the accounts from a roster (one id a line, or a CSV
with ``id`` and an optional ``dockerhub`` column) into ``course/registry/``: the passwords
to hand out (``credentials.json``, readable by the instructor only), their bcrypt hashes
for the server (``users.json``), and the token signing key. Running it again keeps the
passwords already given out and adds the new students.

>>> grant("ada", "student", "repository:ada/hello-cli:pull,push")
['pull', 'push']
>>> grant("ada", "student", "repository:bob/hello-cli:pull,push")
[]
>>> grant("ada", "student", "repository:classmate/hello-cli:pull,push")
['pull']
>>> grant("prof", "instructor", "repository:ada/hello-cli:pull,push,delete")
['pull', 'push']
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings, settings
from ..errors import CloudlabError
from ..services import Registry, Service
from .course import Course

ID = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # one path component of a repository name
PUBLIC = ("classmate",)  # namespaces every account (and anonymous pulls) may read
# Namespaces no student id or Docker Hub handle may take: the course's public images
# (grading/classmate.py pushes classmate/hello-cli), the workbook's own images
# (cloudlab/busybox) and Docker Hub's official images (python is library/python).
RESERVED = (*PUBLIC, "cloudlab", "library")
SERVICE = "cloudlab-course-registry"
ISSUER = "cloudlab-roster"
TOKEN_SECONDS = 300


class RosterError(CloudlabError):
    """A roster line that cannot be an account; the message names the line."""


@dataclass(frozen=True)
class Student:
    id: str
    dockerhub: str = ""


def read_roster(path: str | Path, *, reserved: Iterable[str] = ()) -> list[Student]:
    """The students of a roster file (ids and handles lower-cased), refusing whatever could
    let one account reach another's images: a bad or reserved id (:data:`RESERVED`, and
    ``reserved``), the same id twice in any case, or a Docker Hub handle that is a reserved
    namespace, another student's id or another student's handle. Messages name the line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise RosterError(f"cannot read the roster {path}: {exc.strerror}") from None
    rows = list(csv.reader(line for line in lines))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    start = 1 if "id" in header else 0
    column = {name: header.index(name) for name in ("id", "dockerhub") if name in header} \
        if start else {"id": 0, "dockerhub": 1}
    taken = {name: "reserved for the course" for name in RESERVED}
    taken.update({name.lower(): "the instructor's account" for name in reserved})
    found: dict[str, Student] = {}
    lines_of: dict[str, int] = {}
    for number, row in enumerate(rows[start:], start + 1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        raw = cells[column["id"]]
        sid = raw.lower()
        where = f"{path}:{number}"
        if not ID.fullmatch(sid):
            raise RosterError(f"{where}: {sid!r} cannot be a registry namespace "
                              "(lower-case letters, digits and . _ - between them)")
        if sid in taken:
            raise RosterError(f"{where}: the id {raw!r} is {taken[sid]}: choose another")
        if sid in found:
            raise RosterError(f"{where}: {sid} is on the roster twice (also line "
                              f"{lines_of[sid]}; ids are compared in lower case)")
        hub = cells[column["dockerhub"]] if len(cells) > column.get("dockerhub", 99) else ""
        found[sid] = Student(sid, hub.lower())
        lines_of[sid] = number
    if not found:
        raise RosterError(f"the roster {path} names no student")
    handles: dict[str, str] = {}
    for student in found.values():
        hub, where = student.dockerhub, f"{path}:{lines_of[student.id]}"
        if not hub:
            continue
        if not ID.fullmatch(hub):
            raise RosterError(f"{where}: the Docker Hub handle {hub!r} of {student.id} cannot "
                              "be a namespace (lower-case letters, digits and . _ - between "
                              "them)")
        if hub in taken:
            raise RosterError(f"{where}: the Docker Hub handle {hub!r} of {student.id} is "
                              f"{taken[hub]}")
        if hub in found and hub != student.id:
            raise RosterError(f"{where}: the Docker Hub handle {hub!r} of {student.id} is "
                              f"the id of another student (line {lines_of[hub]}): either "
                              "could then claim the other's images")
        if hub in handles:
            raise RosterError(f"{where}: the Docker Hub handle {hub!r} of {student.id} is "
                              f"also {handles[hub]}'s (line {lines_of[handles[hub]]})")
        handles[hub] = student.id
    return list(found.values())


def folder(course: Course) -> Path:
    return course.state / "registry"


@dataclass
class RosterReport:
    folder: Path
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    instructor: str = "instructor"

    def text(self) -> str:
        return (f"{len(self.added)} account(s) added, {len(self.kept)} kept; passwords to "
                f"hand out: {self.folder / 'credentials.json'} (instructor account: "
                f"{self.instructor}). Start the course registry: "
                f"`cloudlab grade registry up`")


def generate(course: Course, roster: str | Path, *, instructor: str = "instructor"
             ) -> RosterReport:
    """Accounts for every student of ``roster`` (and the instructor), keeping old ones."""
    import bcrypt

    if not ID.fullmatch(instructor) or instructor in RESERVED:
        raise RosterError(f"the instructor account {instructor!r} must be a valid id that "
                          f"is not reserved ({', '.join(RESERVED)})")
    students = read_roster(roster, reserved=[instructor])
    out = folder(course)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    creds_path = out / "credentials.json"
    creds = json.loads(creds_path.read_text()) if creds_path.exists() else {}
    _no_clash_with_earlier(students, creds, roster)
    report = RosterReport(out, instructor=instructor)
    wanted = [(s.id, "student", s.dockerhub) for s in students] + [(instructor, "instructor",
                                                                     "")]
    for sid, role, hub in wanted:
        entry = creds.get(sid)
        if entry and entry.get("role") == role:
            report.kept.append(sid)
            entry["dockerhub"] = hub
            continue
        creds[sid] = {"password": secrets.token_urlsafe(18), "role": role, "dockerhub": hub}
        report.added.append(sid)
    _write_private(creds_path, json.dumps(creds, indent=1, sort_keys=True))
    users = {sid: {"hash": bcrypt.hashpw(e["password"].encode(),
                                         bcrypt.gensalt(rounds=10)).decode(),
                   "role": e["role"], "dockerhub": e.get("dockerhub", "")}
             for sid, e in creds.items()}
    _write_private(out / "users.json", json.dumps(users, indent=1, sort_keys=True))
    if not (out / "key.pem").exists():
        _make_key(out)
    return report


def _no_clash_with_earlier(students: list[Student], creds: dict, roster: str | Path) -> None:
    """Accounts an earlier roster made stay: no new id or handle may take their namespace."""
    on_roster = {s.id for s in students}
    earlier = {sid: e for sid, e in creds.items() if sid not in on_roster}
    earlier_handles = {e.get("dockerhub"): sid for sid, e in earlier.items()
                       if e.get("dockerhub")}
    for s in students:
        if s.dockerhub and s.dockerhub in earlier:
            raise RosterError(f"{roster}: the Docker Hub handle {s.dockerhub!r} of {s.id} is "
                              "the id of an account an earlier roster made")
        if s.id in earlier_handles or (s.dockerhub and s.dockerhub in earlier_handles):
            name = s.id if s.id in earlier_handles else s.dockerhub
            raise RosterError(f"{roster}: {name!r} ({s.id}) is the Docker Hub handle of "
                              f"{earlier_handles[name]}, an account an earlier roster made")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _make_key(out: Path) -> None:
    """An RSA key and a self-signed certificate for it (the registry trusts the certificate)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    _write_private(out / "key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode().strip())
    (out / "cert.pem").write_text(cert.public_bytes(serialization.Encoding.PEM).decode())


def credentials(course: Course, user: str, cfg: Settings | None = None):
    """A :class:`cloudlab.registry.Credentials` for ``user`` of this course's registry."""
    from ..registry import Credentials

    data = json.loads((folder(course) / "credentials.json").read_text())
    if user not in data:
        raise RosterError(f"{user} has no account; add them to the roster and run "
                          "`cloudlab grade roster` again")
    return Credentials(user, data[user]["password"], (cfg or settings()).registry_host)


def namespaces(course: Course | None, student: str) -> set[str]:
    """Where ``student``'s image may be: their id, and their Docker Hub account if listed."""
    found = {student.lower()}
    path = folder(course) / "credentials.json" if course else None
    if path is not None and path.exists():
        hub = json.loads(path.read_text()).get(student, {}).get("dockerhub")
        if hub:
            found.add(hub)
    return found


# ------------------------------------------------------------------------ the tokens
def grant(user: str | None, role: str, scope: str) -> list[str]:
    """What ``user`` (None: anonymous) may do of what ``scope`` asks (``type:name:actions``)."""
    kind, _, rest = scope.partition(":")
    name, _, asked = rest.rpartition(":")
    actions = [a for a in asked.split(",") if a]
    if kind == "registry":
        return ["*"] if role == "instructor" and name == "catalog" else []
    if kind != "repository" or not name:
        return []
    namespace = name.split("/", 1)[0] if "/" in name else ""
    if role == "instructor" or (user and namespace == user):
        allowed = {"pull", "push"}
    elif namespace in PUBLIC:
        allowed = {"pull"}
    else:
        allowed = set()
    return [a for a in ("pull", "push") if a in allowed and a in actions]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(public_key) -> str:
    """The key id the registry expects in a token's header (libtrust's fingerprint:
    base32 of the first 30 bytes of SHA-256 of the DER public key, in groups of four)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def sign(key, claims: dict) -> str:
    """A compact JWS (RS256) of ``claims``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = {"typ": "JWT", "alg": "RS256", "kid": key_id(key.public_key())}
    body = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = key.sign(body.encode(), padding.PKCS1v15(), hashes.SHA256())
    return body + "." + _b64(signature)


def token(key, user: str | None, role: str, scopes: Iterable[str]) -> dict:
    now = int(time.time())
    access = []
    for scope in scopes:
        actions = grant(user, role, scope)
        kind, _, rest = scope.partition(":")
        access.append({"type": kind, "name": rest.rpartition(":")[0], "actions": actions})
    claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + TOKEN_SECONDS,
              "nbf": now - 10, "iat": now, "jti": secrets.token_hex(12), "access": access}
    value = sign(key, claims)
    return {"token": value, "access_token": value, "expires_in": TOKEN_SECONDS,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


def serve(where: str, host: str, port: int) -> None:
    """Run the token server (``python -m cloudlab.grading.roster serve DIR HOST PORT``)."""
    import http.server
    from urllib.parse import parse_qs, urlsplit

    import bcrypt
    from cryptography.hazmat.primitives import serialization

    base = Path(where)
    key = serialization.load_pem_private_key((base / "key.pem").read_bytes(), password=None)
    checked: dict[tuple[str, str], bool] = {}

    def who(header: str) -> tuple[str | None, str, bool]:
        """(user, role, ok) of an Authorization header; (None, '', True) for anonymous."""
        if not header.lower().startswith("basic "):
            return None, "", True
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, "", False
        users = json.loads((base / "users.json").read_text())  # a new roster needs no restart
        entry = users.get(user)
        if entry is None:
            return user, "", False
        cache = (user, hashlib.sha256((entry["hash"] + password).encode()).hexdigest())
        if cache not in checked:
            checked[cache] = bcrypt.checkpw(password.encode(), entry["hash"].encode())
        return user, entry["role"], checked[cache]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/health":
                return self._send(200, {"ok": True})
            if url.path != "/token":
                return self._send(404, {"error": "not found"})
            user, role, ok = who(self.headers.get("Authorization", ""))
            if not ok:
                return self._send(401, {"error": "wrong user name or password"})
            query = parse_qs(url.query)
            scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
            return self._send(200, token(key, user, role, scopes))

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="cloudlab"')
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()


class AuthServer(Service):
    """The token server of a course's registry (a Python process, 127.0.0.1 only)."""

    name = "registry-auth"
    binary = sys.executable
    health_path = "/health"

    def __init__(self, course: Course, cfg: Settings | None = None) -> None:
        super().__init__(cfg)
        self.course = course

    @property
    def port(self) -> int:
        return self.cfg.registry_port + 1

    def command(self) -> list[str]:
        return [self.binary, "-m", "cloudlab.grading.roster", "serve",
                str(folder(self.course)), self.cfg.host, str(self.port)]

    def install_hint(self) -> str:
        return "it is this Python; run `cloudlab grade roster ROSTER` first"


def course_registry(course: Course, cfg: Settings | None = None) -> tuple[Registry, AuthServer]:
    """The course registry with token auth from the roster (not started): registry and
    token server. Start the token server first: ``auth.start(); registry.start()``."""
    import yaml

    cfg = cfg or settings()
    where = folder(course)
    if not (where / "users.json").exists():
        raise RosterError("no accounts yet: run `cloudlab grade roster ROSTER` first")
    auth = AuthServer(course, cfg)
    registry = Registry(cfg)
    registry.dir.mkdir(parents=True, exist_ok=True)
    (registry.dir / "token.yml").write_text(yaml.safe_dump({
        "realm": f"{auth.url}/token", "service": SERVICE, "issuer": ISSUER,
        "rootcertbundle": str(where / "cert.pem")}))
    return registry, auth


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "serve":
        serve(argv[1], argv[2], int(argv[3]))
        return 0
    print("usage: python -m cloudlab.grading.roster serve DIR HOST PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
