"""Who reaches what on the course hub (:mod:`cloudlab.hub`): logging in through its page,
running a command as one of its users, and the isolation check.

>>> s = Session(hub.url, "cl-ada", hub.passwords()["cl-ada"])   # doctest: +SKIP
>>> token = s.start_server()                                   # doctest: +SKIP
>>> s.server("GET", "/assignments", params={"course_id": "cloudlab"}).json()  # doctest: +SKIP
>>> isolation(hub)                                             # doctest: +SKIP
[]
"""

from __future__ import annotations

import json
import pwd
import subprocess
from pathlib import Path

import requests

from .hub import Hub, HubError
from .proc import run, wait_for


class Session:
    """A user logged in through the hub's own login page (PAM checks the password)."""

    def __init__(self, hub_url: str, user: str, password: str) -> None:
        self.hub_url, self.user = hub_url, user
        self.http = requests.Session()
        page = self.http.get(f"{hub_url}/hub/login", timeout=30)
        xsrf = self.http.cookies.get("_xsrf", "")
        done = self.http.post(f"{hub_url}/hub/login?next=", timeout=60, allow_redirects=False,
                              data={"username": user, "password": password, "_xsrf": xsrf})
        if done.status_code != 302:
            raise HubError(f"{user} could not log in (HTTP {done.status_code}); login page "
                           f"said {page.status_code}")
        self.xsrf = self.http.cookies.get("_xsrf", xsrf)
        self.token = ""

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf, "Referer": f"{self.hub_url}/hub/"}
        return self.http.request(method, f"{self.hub_url}/hub/api{path}", headers=headers,
                                 timeout=120, **kw)

    def start_server(self, timeout: float = 120) -> str:
        """Start this user's server (if not yet) and wait until it answers; a token for it."""
        if not self.token:
            made = self.api("POST", f"/users/{self.user}/tokens", json={"note": "cloudlab"})
            if made.status_code not in (200, 201):
                raise HubError(f"{self.user}: no token (HTTP {made.status_code}: {made.text})")
            self.token = made.json()["token"]
        self.api("POST", f"/users/{self.user}/server")

        def ready() -> bool:
            info = requests.get(f"{self.hub_url}/hub/api/users/{self.user}", timeout=10,
                                headers={"Authorization": f"token {self.token}"}).json()
            server = info.get("servers", {}).get("", {})
            return bool(server.get("ready"))

        wait_for(ready, timeout=timeout, what=f"{self.user}'s server")
        return self.token

    def server(self, method: str, path: str, **kw) -> requests.Response:
        """A request to this user's own server (``/user/<name>/...``) with its token."""
        return requests.request(method, f"{self.hub_url}/user/{self.user}{path}", timeout=120,
                                headers={"Authorization": f"token {self.token}"}, **kw)


def as_user(hub: Hub, name: str, cmd: list[str], *, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as account ``name`` (its groups, no capabilities, its home, the hub's
    single-user environment first on PATH)."""
    from .userenv import as_user as prefix

    entry = pwd.getpwnam(name)
    env = {"HOME": entry.pw_dir, "USER": name, "LOGNAME": name, "LANG": "C.UTF-8",
           "PATH": f"{hub.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
    return run([*prefix(name), *cmd], env=env, cwd=cwd or entry.pw_dir, check=check,
               timeout=300)


# ------------------------------------------------------------------ isolation
_PROBE = """
import json, os, sys
found = []
for path in json.loads(sys.argv[1]):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        found.append(path)
    except OSError:
        pass
print(json.dumps(found))
"""


def readable_by(name: str, paths: list[str | Path]) -> list[str]:
    """Which of ``paths`` account ``name`` can read (a folder: list), tried as that user."""
    from .userenv import as_user as prefix

    done = run([*prefix(name), "/usr/bin/python3", "-I", "-c", _PROBE,
                json.dumps([str(p) for p in paths])], cwd="/", timeout=60,
               env={"PATH": "/usr/bin:/bin", "HOME": pwd.getpwnam(name).pw_dir})
    return json.loads(done.stdout.strip().splitlines()[-1])


def isolation(hub: Hub, private: list[str | Path] = ()) -> list[str]:
    """What a student can read that is not theirs: another student's submission or
    feedback in the exchange (by exact path, not only by listing), the exchange's
    unlistable folders, the instructor's course (solutions, gradebook), this state folder
    (passwords), and ``private`` (say, the registry's credentials). Empty when isolated.

    >>> isolation(hub, [course.state / "registry" / "credentials.json"])  # doctest: +SKIP
    []
    """
    course_ex = hub.exchange / hub.state.course_id
    inbound, feedback = course_ex / "inbound", course_ex / "feedback"
    belongs: dict[Path, set[str]] = {}  # exchange entry -> the students it is for
    for top in (inbound, feedback):
        for path in sorted(top.rglob("*")) if top.is_dir() else []:
            uid, acl = path.stat().st_uid, _acl_readers(path)
            belongs[path] = {name for name, user_uid in hub.state.users.items()
                             if uid == user_uid or user_uid in acl}
    shared = [inbound, feedback, hub.course_dir, *hub.course_dir.rglob("*"),
              hub.cfg.state_dir / "hub", hub.passwords_file, *map(Path, private)]
    breaches = []
    for student in hub.students():
        others = [p for p, names in belongs.items() if student not in names]
        for path in readable_by(student, [*others, *shared]):
            breaches.append(f"{student} can read {path}")
    return breaches


def _acl_readers(path: Path) -> list[int]:
    from .hubexchange import readers

    return readers(path)
