"""The course hub: a real JupyterHub on 127.0.0.1 with nbgrader's exchange.

``cloudlab hub up --roster ROSTER`` (root, Linux) sets up, on this machine:

* a Unix account per roster student and one for the instructor (``<prefix><id>``, real
  passwords set with ``chpasswd``; JupyterHub's PAM authenticator checks them), and a
  graders' group holding the instructor;
* a root-owned base folder (``/srv/cloudlab-hub-<prefix><course>``) with the single-user
  environment (this venv's packages made readable, :mod:`cloudlab.userenv`; the student
  edition of ``cloudlab grade publish`` as its ``cloudlab``; the formgrader switched
  off), and nbgrader's exchange (root-owned, 1777; the course's folder owned by the
  instructor and the graders' group, ``inbound`` 2733 as nbgrader makes it; submissions
  and feedback readable by their own student and the graders only, :mod:`.hubexchange`);
* the nbgrader course (``solutions/``, ``exercises/``, the gradebook) in the instructor's
  home (0700), with the formgrader as a JupyterHub service running as the instructor, that
  only the ``formgrade-<course>`` group may reach;
* JupyterHub itself (root: PAM and spawning users need it), configurable-http-proxy from
  ``scripts/setup_hub.sh``, LocalProcessSpawner running ``jupyterhub-singleuser``.

Everything it creates is written to ``.cloudlab/hub/state.json`` as it goes; ``down``
removes exactly that (an account whose uid is no longer the one it made is refused) and
restores the modes it tightened. An error in the middle of ``up`` runs ``down``. Logging
in, running as a user and the isolation check: :mod:`cloudlab.hubaccess`.

>>> with Hub(Course(), "roster.txt") as hub:                 # doctest: +SKIP
...     hub.url, sorted(hub.passwords())
('http://127.0.0.1:20417', ['cl-ada', 'cl-bob', 'cl-instructor'])
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .config import Settings, settings
from .errors import CloudlabError, UnavailableError
from .grading.course import Course
from .lifecycle import Managed
from .ports import free_port
from .proc import GiveUp, alive, identity, run, wait_for

NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # a Unix account name we make (useradd's rule)
COURSE_ID = re.compile(r"[a-z][a-z0-9-]{0,30}")
PROXY = Path.home() / ".cache" / "cloudlab" / "hub" / "node_modules" / ".bin" / \
    "configurable-http-proxy"
STOP_SECONDS = 30
NO_KERNEL = "sandbox-only-use-cloudlab-grade-autograde"


class HubError(CloudlabError):
    """The course hub could not be set up, reached or taken down; says what and why."""


@dataclass
class State:
    """What ``up`` made (so ``down`` removes that and nothing else) and where it runs."""

    course_id: str = ""
    prefix: str = ""
    base: str = ""
    users: dict[str, int] = field(default_factory=dict)     # name -> uid we created
    groups: dict[str, int] = field(default_factory=dict)    # name -> gid we created
    folders: list[str] = field(default_factory=list)        # folders we created
    modes: dict[str, int] = field(default_factory=dict)     # path -> mode before we tightened
    roles: dict[str, str] = field(default_factory=dict)     # name -> student / instructor
    pid: int = 0
    identity: str = ""
    port: int = 0
    course: str = ""

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        tmp.replace(path)


def unix_name(prefix: str, roster_id: str) -> str:
    """The account of a roster id: ``prefix + id``, or :class:`HubError` when that cannot be
    an account we make (useradd's rule, 32 characters; a prefix keeps ids such as ``root``
    or ``daemon`` from ever naming a system account).

    >>> unix_name("cl-", "ada")
    'cl-ada'
    >>> try:
    ...     unix_name("cl-", "a.b")
    ... except HubError as exc:
    ...     print(str(exc)[:40])
    roster id 'a.b' cannot be an account: 'c
    """
    name = prefix + roster_id
    if not NAME.fullmatch(name):
        raise HubError(f"roster id {roster_id!r} cannot be an account: {name!r} is not a Unix "
                       "user name we make (a-z first, then a-z 0-9 _ -, at most 32)")
    return name


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True



FORMGRADER = "nbgrader.server_extensions.formgrader"


def _drop_formgrader(etc: Path) -> list[Path]:
    """Remove every mention of formgrader from the server config files under ``etc`` (what
    ``jupyter server extension enable --sys-prefix`` leaves in the venv the users' venv was
    copied from); the files changed.

    >>> import tempfile; d = Path(tempfile.mkdtemp()) / "jupyter_server_config.d"
    >>> d.mkdir(); _ = (d / "on.json").write_text(
    ...     '{"ServerApp": {"jpserver_extensions": {"%s": true, "x": true}}}' % FORMGRADER)
    >>> [p.name for p in _drop_formgrader(d.parent)], (d / "on.json").read_text()
    (['on.json'], '{"ServerApp": {"jpserver_extensions": {"x": true}}}')
    """
    changed = []
    for path in [*(etc / "jupyter_server_config.d").glob("*.json"),
                 etc / "jupyter_server_config.json"]:
        try:
            config = json.loads(path.read_text())
            extensions = config["ServerApp"]["jpserver_extensions"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(extensions, dict) and extensions.pop(FORMGRADER, None) is not None:
            path.unlink()  # never write through a link to the file it was copied from
            path.write_text(json.dumps(config))
            changed.append(path)
    return changed


class Hub(Managed):
    """A JupyterHub for one course; ``start``/``stop`` or a ``with`` block.

    ``course``: the nbgrader course (solutions, exercises, gradebook) copied into the
    instructor's home; ``roster``: student ids, as ``cloudlab grade roster`` reads them;
    ``edition``: the workbook whose student edition the single-user servers get (default:
    this checkout); ``prefix``: put before every account name.
    """

    def __init__(self, course: Course | None = None, roster: str | Path | None = None, *,
                 course_id: str = "cloudlab", prefix: str = "cl-",
                 instructor: str = "instructor", edition: Course | None = None,
                 cfg: Settings | None = None, base: Path | None = None,
                 proxy: Path | None = None) -> None:
        self.cfg = cfg or settings()
        self.course = course or Course()
        self.roster = Path(roster) if roster else None
        self.course_id = course_id
        self.prefix = prefix
        self.instructor_id = instructor
        self.edition = edition or Course()
        self.base = Path(base or f"/srv/cloudlab-hub-{prefix}{course_id}")
        self.proxy = Path(proxy or os.environ.get("CLOUDLAB_HUB_PROXY") or PROXY)
        self.state_file = self.cfg.state_dir / "hub" / "state.json"
        self.state = State.load(self.state_file) or State()

    def up(self) -> Hub:
        """Start; on any error (Ctrl-C too) undo what this start made. A hub already set
        up (by ``cloudlab hub up``) is used and left as it is."""
        was_set_up = bool(State.load(self.state_file))
        try:
            self.start()
        except BaseException:
            if not was_set_up:
                self.stop()
            raise
        self._owned = not was_set_up
        return self

    def __enter__(self) -> Hub:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "_owned", False):
            self.stop()

    # -- where things are --------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state.port}"

    @property
    def instructor(self) -> str:
        return self.prefix + self.instructor_id

    @property
    def graders(self) -> str:
        return f"{self.prefix}graders"

    @property
    def exchange(self) -> Path:
        return Path(self.state.base or self.base) / "exchange"

    @property
    def venv(self) -> Path:
        return Path(self.state.base or self.base) / "venv"

    @property
    def course_dir(self) -> Path:
        """The instructor's nbgrader course (in their home, 0700)."""
        return Path(self.state.course) if self.state.course else \
            Path(pwd.getpwnam(self.instructor).pw_dir) / self.course_id

    @property
    def log(self) -> Path:
        return self.cfg.state_dir / "hub" / "jupyterhub.log"

    @property
    def passwords_file(self) -> Path:
        return self.cfg.state_dir / "hub" / "passwords.json"

    def passwords(self) -> dict[str, str]:
        """Account -> password (root-only file): hand them out to the students."""
        return json.loads(self.passwords_file.read_text())

    def students(self) -> list[str]:
        return sorted(n for n, r in self.state.roles.items() if r == "student")

    # -- up ------------------------------------------------------------------------------
    def _record(self) -> None:
        self.state.save(self.state_file)

    def _plan(self) -> list[tuple[str, str]]:
        """(account, role) of everyone, checked before anything is made."""
        from .grading.roster import read_roster

        if os.geteuid() != 0 or sys.platform != "linux":
            raise UnavailableError("the course hub makes Unix accounts and runs JupyterHub "
                                   "with PAM: run it as root on Linux")
        if not COURSE_ID.fullmatch(self.course_id):
            raise HubError(f"course id {self.course_id!r}: lower-case letters, digits and -")
        if self.roster is None:
            raise HubError("no roster: give the student ids (cloudlab hub up --roster FILE)")
        students = read_roster(self.roster, reserved=[self.instructor_id])
        plan = [(unix_name(self.prefix, self.instructor_id), "instructor")]
        plan += [(unix_name(self.prefix, s.id), "student") for s in students]
        taken = [n for n, _ in plan if _exists(n)] + \
            [g for g in (self.graders,) if _group_exists(g) or _exists(g)]
        taken += [n for n, _ in plan if _group_exists(n)]
        if taken:
            raise HubError(f"{', '.join(sorted(set(taken)))} already exist(s) on this machine; "
                           "the hub only uses (and removes) accounts it makes: choose another "
                           "--prefix, or `cloudlab hub down` the hub that made them")
        if not self.proxy.exists():
            raise UnavailableError(f"no configurable-http-proxy at {self.proxy}: run "
                                   "scripts/setup_hub.sh (needs Node.js and npm)")
        if self.base.exists():
            raise HubError(f"{self.base} exists already; remove it or choose another --prefix")
        return plan

    def start(self) -> Hub:
        """Set everything up and start JupyterHub (no-op when this hub is running)."""
        if self.state.pid and identity(self.state.pid) == self.state.identity:
            return self
        if self.state.users or self.state.folders:
            raise HubError(f"a hub that is not running left {self.state_file}: run "
                           "`cloudlab hub down` first")
        plan = self._plan()
        self.state = State(course_id=self.course_id, prefix=self.prefix, base=str(self.base))
        self._record()
        self._groupadd(self.graders)
        passwords: dict[str, str] = {}
        for name, role in plan:
            passwords[name] = self._useradd(name, role)
        fd = os.open(self.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(passwords, f, indent=1)
        self._folders()
        self._environment()
        self._course()
        self._tighten(self.course)
        self._launch()
        return self

    def _groupadd(self, name: str) -> None:
        run(["groupadd", "--", name], timeout=60)
        self.state.groups[name] = grp.getgrnam(name).gr_gid
        self._record()

    def _useradd(self, name: str, role: str) -> str:
        """Make ``name`` (home 0700, own group, bash); set a fresh password; return it."""
        extra = ["--groups", self.graders] if role == "instructor" else []
        run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", *extra,
             "--", name], timeout=60)
        self.state.users[name] = pwd.getpwnam(name).pw_uid
        self.state.roles[name] = role
        self._record()
        Path(pwd.getpwnam(name).pw_dir).chmod(0o700)
        password = secrets.token_urlsafe(15)
        run(["chpasswd"], input=f"{name}:{password}\n", timeout=60)
        return password

    def _mkdir(self, path: Path, mode: int, owner: str | None = None,
               group: str | None = None) -> Path:
        path.mkdir()
        self.state.folders.append(str(path))
        self._record()
        if owner or group:
            shutil.chown(path, owner, group)
        path.chmod(mode)
        return path

    def _folders(self) -> None:
        self._mkdir(self.base, 0o755)
        self._mkdir(self.base / "hub", 0o700)
        self._mkdir(self.exchange, 0o1777)  # nbgrader: everyone writes; sticky: own entries
        # the course's folder: the instructor's, its group passed on to what is made inside
        # (set-group-id), so submissions belong to the graders' group
        self._mkdir(self.exchange / self.course_id, 0o2755, self.instructor, self.graders)

    def _environment(self) -> None:
        """The single-user environment: this venv's packages, readable; the student edition
        as ``cloudlab``; nbgrader's student config (exchange, course) and no formgrader."""
        from . import userenv
        from .grading.publish import publish

        userenv.student_venv(self.base, data=True, caches=True)
        packages = self.base / "packages"
        for editable in [*packages.glob("__editable__*cloudlab*"),
                         *packages.glob("cloudlab-*.dist-info")]:
            shutil.rmtree(editable) if editable.is_dir() else editable.unlink()
        publish(self.edition, self.base / "edition")
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        pth = self.venv / "lib" / version / "site-packages" / "workbook.pth"
        pth.write_text(f"{self.base / 'edition' / 'lib'}\n{packages}\n")
        etc = self.venv / "etc" / "jupyter"
        (etc / "nbgrader_config.py").write_text(
            "# the course hub's nbgrader config (cloudlab hub up): every user of this venv\n"
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = {self.course_id!r}\n"
            f"c.Exchange.root = {str(self.exchange)!r}\n"
            "c.ExchangeFactory.submit = 'cloudlab.hubexchange.ExchangeSubmit'\n"
            "c.ExchangeFactory.release_feedback = "
            "'cloudlab.hubexchange.ExchangeReleaseFeedback'\n")
        extensions = {f"nbgrader.server_extensions.{name}": name != "formgrader"
                      for name in ("formgrader", "assignment_list", "course_list",
                                   "validate_assignment")}
        (etc / "jupyter_server_config.d").mkdir(parents=True, exist_ok=True)
        _drop_formgrader(etc)  # a copied file that turns it on would win over ours
        (etc / "jupyter_server_config.d" / "nbgrader.json").write_text(json.dumps(
            {"ServerApp": {"jpserver_extensions": extensions}}, indent=1))
        (etc / "labconfig").mkdir(exist_ok=True)
        (etc / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {
            "@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True,
            "@jupyter/nbgrader:course-list": True}}, indent=1))
        # the formgrader service's own config folder (JUPYTER_CONFIG_DIR): formgrader on
        grader = self._mkdir(self.base / "formgrader", 0o755, self.instructor)
        (grader / "jupyter_server_config.json").write_text(json.dumps(
            {"ServerApp": {"jpserver_extensions": {**extensions,
                                                   "nbgrader.server_extensions.formgrader":
                                                   True}}}, indent=1))
        for path in [self.base / "edition", *(self.base / "edition").rglob("*"), etc,
                     *etc.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)

    def _course(self) -> None:
        """The nbgrader course in the instructor's home, theirs alone."""
        home = Path(pwd.getpwnam(self.instructor).pw_dir)
        dest = home / self.course_id
        dest.mkdir(mode=0o700)
        for part in ("solutions", "exercises"):
            src = self.course.root / part
            if src.is_dir():
                shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns(
                    "__pycache__", ".ipynb_checkpoints"))
        (dest / "course").mkdir()
        if self.course.gradebook.is_file():
            shutil.copy2(self.course.gradebook, dest / "course" / "gradebook.db")
        (dest / "nbgrader_config.py").write_text(
            "# the instructor's course (cloudlab hub up); mirrors the workbook's layout\n"
            "c = get_config()  # noqa: F821\n"
            "c.CourseDirectory.root = '.'\n"
            "c.CourseDirectory.source_directory = 'solutions'\n"
            "c.CourseDirectory.release_directory = 'exercises'\n"
            "c.CourseDirectory.submitted_directory = 'course/submitted'\n"
            "c.CourseDirectory.autograded_directory = 'course/autograded'\n"
            "c.CourseDirectory.feedback_directory = 'course/feedback'\n"
            "c.CourseDirectory.db_url = 'sqlite:///course/gradebook.db?timeout=30'\n"
            "c.CourseDirectory.ignore = ['.ipynb_checkpoints', '*.pyc', '__pycache__', "
            "'feedback', '.git', 'grader.py']\n"
            "c.HTMLExporter.sanitize_html = True\n"
            "# student code runs only in the grading sandbox (`cloudlab grade autograde`, as\n"
            "# root): nbgrader's own autograde (the formgrader's button, the CLI) would run it\n"
            "# here, unconfined, as the instructor; a kernel that does not exist stops it\n"
            f"c.Execute.kernel_name = {NO_KERNEL!r}\n")
        self.give_back(dest)
        self.state.course = str(dest)
        self._record()

    def give_back(self, folder: Path | None = None) -> None:
        """Make the course (or ``folder`` in it) the instructor's again, after root's
        grading wrote into it (``cloudlab grade autograde`` runs as root: Docker)."""
        folder = folder or self.course_dir
        for path in [folder, *folder.rglob("*")]:
            os.lchown(path, self.state.users[self.instructor], grp.getgrnam(self.instructor).gr_gid)

    def _tighten(self, course: Course) -> None:
        """The source course's solutions and grading state: no access for other users while
        students have accounts here (modes restored by ``down``)."""
        for part in (course.source, course.state):
            if part.exists() and part.stat().st_mode & 0o007:
                self.state.modes[str(part)] = part.stat().st_mode & 0o7777
                self._record()
                part.chmod(part.stat().st_mode & ~0o007)

    def _config(self, ports: dict[str, int]) -> Path:
        hub_dir = self.base / "hub"
        venv_bin = self.venv / "bin"
        path = f"{venv_bin}:/usr/local/bin:/usr/bin:/bin"
        students = self.students()
        text = f"""# written by `cloudlab hub up`; JupyterHub for the course {self.course_id!r}
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {ports['public']}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {ports['hub']}
c.JupyterHub.db_url = "sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = "{hub_dir / 'cookie_secret'}"
c.JupyterHub.pid_file = "{hub_dir / 'jupyterhub.pid'}"
c.ConfigurableHTTPProxy.command = ["{self.proxy}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports['proxy_api']}"
c.ConfigurableHTTPProxy.pid_file = "{hub_dir / 'proxy.pid'}"
# real accounts, real passwords: JupyterHub's default PAMAuthenticator
c.Authenticator.allowed_users = {set(self.state.users)!r}
c.Authenticator.admin_users = set()
c.PAMAuthenticator.open_sessions = False
# each user's own server, as that user: the default LocalProcessSpawner
c.Spawner.cmd = ["{venv_bin / 'jupyterhub-singleuser'}"]
c.Spawner.default_url = "/lab"
c.Spawner.ip = "127.0.0.1"
c.Spawner.environment = {{"PATH": "{path}"}}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
# the formgrader: a service run as the instructor, for the formgrade group only
c.JupyterHub.services = [{{
    "name": "{self.course_id}",
    "url": "http://127.0.0.1:{ports['formgrader']}",
    "command": ["{venv_bin / 'jupyterhub-singleuser'}"],
    "user": "{self.instructor}",
    "cwd": "{self.course_dir}",
    "environment": {{"JUPYTERHUB_DEFAULT_URL": "/formgrader", "PATH": "{path}",
                     "JUPYTER_CONFIG_DIR": "{self.base / 'formgrader'}"}},
    "oauth_no_confirm": True,
    "timeout": 180,
}}]
c.JupyterHub.load_groups = {{
    "formgrade-{self.course_id}": {{"users": ["{self.instructor}"]}},
    "nbgrader-{self.course_id}": {{"users": {students!r}}},
}}
c.JupyterHub.load_roles = [{{
    "name": "formgrade-{self.course_id}",
    "groups": ["formgrade-{self.course_id}"],
    "scopes": ["access:services!service={self.course_id}"],
}}]
"""
        config = hub_dir / "jupyterhub_config.py"
        config.write_text(text)
        return config

    def _launch(self) -> None:
        ports = {k: free_port() for k in ("public", "hub", "proxy_api", "formgrader")}
        config = self._config(ports)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting jupyterhub\n".encode())
            log.flush()
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:"
                   f"{os.environ.get('PATH', '/usr/bin:/bin')}"}
            proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.base / "hub", env=env,
                                    start_new_session=True)
        self.state.pid, self.state.identity = proc.pid, identity(proc.pid) or ""
        self.state.port = ports["public"]
        self._record()

        def ready() -> bool:
            if proc.poll() is not None:
                raise GiveUp(f"jupyterhub exited with code {proc.returncode}")
            return requests.get(f"{self.url}/hub/health", timeout=2).status_code == 200

        wait_for(ready, timeout=240, what=f"JupyterHub at {self.url}", log=self.log)

    # -- status --------------------------------------------------------------------------
    def running(self) -> bool:
        return bool(self.state.pid) and identity(self.state.pid) == self.state.identity

    def status(self) -> dict:
        return {"running": self.running(), "url": self.url if self.state.port else "",
                "pid": self.state.pid or None, "course": self.state.course_id,
                "accounts": dict(self.state.roles), "exchange": str(self.exchange)
                if self.state.base else "", "state": str(self.state_file)}

    # -- down ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop JupyterHub and its servers, remove the accounts, group and folders ``up``
        made, restore the modes it changed. Idempotent; refuses (and keeps in the state
        file) an account whose uid is not the one it made."""
        state = State.load(self.state_file) or self.state
        self.state = state
        self.removed = State(**json.loads(json.dumps(state.__dict__)))  # what it found
        problems: list[str] = []
        if state.pid and identity(state.pid) == state.identity:
            _terminate_group(state.pid, STOP_SECONDS)
        proxy_pid = Path(state.base) / "hub" / "proxy.pid" if state.base else None
        if proxy_pid and proxy_pid.is_file():
            with contextlib.suppress(ValueError):
                pid = int(proxy_pid.read_text().strip())
                if "configurable-http-proxy" in _cmdline(pid):
                    _terminate_group(pid, 10)
        uids = {uid for name, uid in state.users.items()
                if _exists(name) and pwd.getpwnam(name).pw_uid == uid}
        _kill_owned(uids)
        for name, uid in list(state.users.items()):
            if not _exists(name):
                del state.users[name]
                continue
            if pwd.getpwnam(name).pw_uid != uid:
                problems.append(f"{name}: its uid is no longer {uid}, not the account the hub "
                                "made; left alone")
                continue
            try:
                run(["userdel", "--remove", "--", name], timeout=60)
            except CloudlabError as exc:
                if _exists(name):
                    problems.append(f"{name}: {exc}")
                    continue
            del state.users[name]
            state.roles.pop(name, None)
            self._record()
        for name, gid in list(state.groups.items()):
            if _group_exists(name) and grp.getgrnam(name).gr_gid == gid:
                run(["groupdel", "--", name], timeout=60)
            del state.groups[name]
            self._record()
        for folder in sorted(state.folders, key=len):
            shutil.rmtree(folder, ignore_errors=True)
        state.folders = [f for f in state.folders if Path(f).exists()]
        for path, mode in list(state.modes.items()):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, mode)
            del state.modes[path]
        state.pid, state.identity = 0, ""
        self._record()
        if problems:
            raise HubError("cloudlab hub down left some of its work:\n  " +
                           "\n  ".join(problems))
        self.state_file.unlink(missing_ok=True)
        self.passwords_file.unlink(missing_ok=True)
        self.state = State()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _terminate_group(pid: int, timeout: float) -> None:
    """SIGTERM ``pid`` (JupyterHub stops its servers and proxy on it), then SIGKILL its
    process group if it is still there after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def owned_processes(uids: set[int]) -> list[int]:
    """Pids of processes whose real uid is one of ``uids``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) in uids:
                        found.append(int(entry.name))
                    break
    return found


def _kill_owned(uids: set[int]) -> None:
    """Kill what still runs as the accounts the hub made (userdel refuses otherwise)."""
    if not uids:
        return
    for _ in range(50):
        pids = owned_processes(uids)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
