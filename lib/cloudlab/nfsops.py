"""NFSOps: continuous delivery through a shared file system.

A build job tests a project and, only if the tests pass, copies it into a fresh release
folder on the shared file system and atomically repoints a ``current`` symlink at it.
Servers that serve from the shared file system pick up the new release on their next
request; rollback repoints the link. Locally the shared file system is a Docker volume,
the servers are busybox ``httpd`` containers mounting it read-only, and a small
"deployer" container mounting it read-write plays the build agent's mount.

>>> with Pipeline(servers=2) as p:           # doctest: +SKIP
...     p.deploy(sample_project(tmp / "v1", "v1")).status
'deployed'
>>> print(jenkinsfile())                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import sys
import tarfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from . import busybox, engine
from .config import Settings, settings
from .errors import CommandError
from .lifecycle import Managed
from .proc import run, wait_for

MOUNT = "/srv"
PORT = 8080

APP = '''"""The sample project: a greeting page, built into public/."""
import sys
from pathlib import Path

VERSION = "{version}"


def greet(name: str) -> str:
    return {greeting}


def build(out: str = "public") -> None:
    folder = Path(out)
    folder.mkdir(exist_ok=True)
    (folder / "version.txt").write_text(VERSION + "\\n")
    (folder / "index.html").write_text(f"<h1>{{greet('cloud')}}</h1><p>release {{VERSION}}</p>")


if __name__ == "__main__":
    build(*sys.argv[1:])
'''

TESTS = '''import unittest

import app


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(app.greet("cloud"), "Hello, cloud!")

    def test_version_is_set(self):
        self.assertTrue(app.VERSION)
'''


def sample_project(dest: Path | str, version: str, broken: bool = False) -> Path:
    """Write the sample project (``app.py`` + its tests); ``broken`` makes a test fail."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    greeting = '"Hello " + name' if broken else 'f"Hello, {name}!"'
    (dest / "app.py").write_text(APP.format(version=version, greeting=greeting))
    (dest / "test_app.py").write_text(TESTS)
    return dest


@dataclass(frozen=True)
class Deploy:
    """The outcome of one pipeline run."""

    status: str  # deployed | blocked | rolled back
    release: str | None
    seconds: float
    log: str = ""

    def __str__(self) -> str:
        return f"{self.status}: {self.release or '-'} ({self.seconds:.2f} s)"


@dataclass
class Pipeline(Managed):
    """The shared volume, a deployer, ``servers`` web servers, and the deploy job.

    ``start``/``stop`` (or ``with``) create and remove all of it; ``stop`` is idempotent
    and ``start`` cleans up on any exception.
    """

    servers: int = 3
    cfg: Settings = field(default_factory=settings)
    timeout: float = 60
    volume: str = ""
    history: list[str] = field(default_factory=list)
    _api: Any = field(default=None, repr=False)
    _deployer: Any = field(default=None, repr=False)
    _servers: list[Any] = field(default_factory=list, repr=False)
    _ports: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.servers < 1:
            raise ValueError(f"servers must be at least 1; got {self.servers}")
        self.volume = self.volume or f"cloudlab-{self.cfg.run_id}-nfsops-{uuid.uuid4().hex[:4]}"

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> Pipeline:
        try:
            engine.require(self.cfg)
            self._api = engine.client(timeout=60)
            image = busybox.image(self.cfg)
            labels = self.cfg.labels()
            self._api.volumes.create(self.volume, labels=labels)
            self._deployer = self._api.containers.run(
                image, ["sh", "-c", f"mkdir -p {MOUNT}/releases; exec sleep 86400"],
                detach=True, init=True, name=f"{self.volume}-deployer", labels=labels,
                volumes={self.volume: {"bind": MOUNT, "mode": "rw"}})
            for i in range(1, self.servers + 1):
                c = self._api.containers.run(
                    image, ["httpd", "-f", "-p", str(PORT), "-h", MOUNT], detach=True,
                    init=True, name=f"{self.volume}-web{i}", labels=labels,
                    volumes={self.volume: {"bind": MOUNT, "mode": "ro"}},
                    ports={f"{PORT}/tcp": (self.cfg.host, None)})
                self._servers.append(c)
            for c in self._servers:
                self._ports[c.name.rsplit("-", 1)[1]] = wait_for(
                    lambda c=c: self._answers(c), timeout=self.timeout,
                    what=f"server {c.name} to answer")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self, c: Any) -> int | None:
        c.reload()
        bound = (c.attrs["NetworkSettings"]["Ports"] or {}).get(f"{PORT}/tcp")
        if not bound:
            return None
        port = int(bound[0]["HostPort"])
        requests.get(f"http://{self.cfg.host}:{port}/", timeout=1)  # any HTTP answer is up
        return port

    def stop(self) -> None:
        """Remove the servers, the deployer and the volume; safe to call twice."""
        for c in [*self._servers, self._deployer]:
            if c is not None:
                with contextlib.suppress(Exception):
                    c.remove(force=True)
        self._servers, self._deployer, self._ports = [], None, {}
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.volumes.get(self.volume).remove(force=True)
            self._api = None

    # -- the job ---------------------------------------------------------------------
    def _sh(self, script: str) -> str:
        code, out = self._deployer.exec_run(["sh", "-c", script])
        text = out.decode(errors="replace")
        if code != 0:
            raise CommandError(["sh", "-c", script], code, text)
        return text

    def test(self, project: Path | str) -> tuple[bool, str]:
        """Run the project's tests (``python -m unittest``); returns (passed, output)."""
        done = run([sys.executable, "-m", "unittest", "discover", "-v", "-s", "."],
                   cwd=project, check=False, timeout=120)
        return done.returncode == 0, done.stdout + done.stderr

    def deploy(self, project: Path | str) -> Deploy:
        """Test, build, copy into ``releases/<n>-<version>``, switch ``current``."""
        started = time.monotonic()
        project = Path(project)
        passed, log = self.test(project)
        if not passed:
            return Deploy("blocked", None, time.monotonic() - started, log)
        run([sys.executable, "app.py", "public"], cwd=project, timeout=60)
        version = (project / "public" / "version.txt").read_text().strip()
        release = f"{len(self.releases()) + 1:03d}-{version}"
        self._sh(f"mkdir -p {MOUNT}/releases/{release}")
        self._deployer.put_archive(f"{MOUNT}/releases/{release}", _tar(project))
        self.switch(release)
        self.history.append(release)
        return Deploy("deployed", release, time.monotonic() - started, log)

    def switch(self, release: str) -> None:
        """Atomically point ``current`` at ``release`` (symlink, then rename over)."""
        if release not in self.releases():
            raise ValueError(f"no release {release!r}; have: {', '.join(self.releases())}")
        self._sh(f"cd {MOUNT} && ln -sfn releases/{release}/public .current.new && "
                 "mv -Tf .current.new current")

    def rollback(self) -> Deploy:
        """Point ``current`` back at the release before the one it points at now."""
        started = time.monotonic()
        releases, now = self.releases(), self.current()
        if now not in releases or releases.index(now) == 0:
            raise ValueError(f"nothing to roll back to from {now!r}; releases: {releases}")
        target = releases[releases.index(now) - 1]
        self.switch(target)
        self.history.append(target)
        return Deploy("rolled back", target, time.monotonic() - started)

    def releases(self) -> list[str]:
        return sorted(self._sh(f"ls -1 {MOUNT}/releases").split())

    def current(self) -> str | None:
        try:
            link = self._sh(f"readlink {MOUNT}/current").strip()
        except CommandError:
            return None
        return link.split("/")[1] if link.startswith("releases/") else link

    # -- what the servers serve -------------------------------------------------------
    def served(self) -> dict[str, str | None]:
        """What each server returns for ``/current/version.txt`` right now."""
        out: dict[str, str | None] = {}
        for name, port in self._ports.items():
            try:
                r = requests.get(f"http://{self.cfg.host}:{port}/current/version.txt",
                                 timeout=2)
                out[name] = r.text.strip() if r.status_code == 200 else None
            except requests.RequestException:
                out[name] = None
        return out

    @contextlib.contextmanager
    def watch(self, interval: float = 0.1):
        """Sample :meth:`served` in the background; yields a :class:`Watch`."""
        watch = Watch(t0=time.monotonic())
        done = threading.Event()
        t0 = watch.t0

        def loop() -> None:
            while not done.is_set():
                t = time.monotonic() - t0
                for server, version in self.served().items():
                    watch.samples.append({"t": t, "server": server,
                                          "version": version or "none"})
                watch.rounds += 1
                done.wait(interval)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield watch
        finally:
            done.set()
            thread.join(timeout=10)


@dataclass
class Watch:
    """What a background sampler saw: one row per server per round."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    rounds: int = 0
    t0: float = field(default_factory=time.monotonic)

    def mark(self, label: str) -> None:
        """Note an event (a deploy, a rollback) on the same clock as the samples."""
        self.events.append((time.monotonic() - self.t0, label))

    def settle(self, rounds: int = 5, timeout: float = 30) -> None:
        """Wait until the sampler has asked every server ``rounds`` more times."""
        target = self.rounds + rounds
        wait_for(lambda: self.rounds >= target, timeout=timeout,
                 what=f"{rounds} more sampling rounds")


def timeline(watch: Watch | list[dict[str, Any]]) -> pd.DataFrame:
    """The samples as a table: t (seconds), server, version ('none' = nothing served)."""
    samples = watch.samples if isinstance(watch, Watch) else watch
    return pd.DataFrame(list(samples), columns=["t", "server", "version"])


def _tar(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            tar.add(str(path), arcname=str(path.relative_to(folder)), recursive=False)
    return buf.getvalue()


def jenkinsfile(mount: str = "/mnt/efs") -> str:
    """The same job as a declarative Jenkins pipeline (the seed's tool)."""
    return textwrap.dedent(f"""\
        // NFSOps: test, then publish a release onto the EFS mount and switch `current`.
        pipeline {{
            agent {{ label 'efs' }}          // a build agent with EFS mounted at {mount}
            options {{ disableConcurrentBuilds() }}
            stages {{
                stage('Test') {{
                    steps {{ sh 'python3 -m unittest discover -v -s .' }}
                }}
                stage('Build') {{
                    steps {{ sh 'python3 app.py public' }}
                }}
                stage('Deploy') {{
                    steps {{
                        sh '''
                            set -eu
                            release="$(printf %03d "$BUILD_NUMBER")-$(cat public/version.txt)"
                            rsync -a --delete --exclude .git ./ "{mount}/releases/$release/"
                            ln -sfn "releases/$release/public" "{mount}/.current.new"
                            mv -Tf "{mount}/.current.new" "{mount}/current"
                        '''
                    }}
                }}
            }}
            post {{ failure {{ echo 'Tests failed: nothing was deployed.' }} }}
        }}
        """)


def github_actions(mount: str = "/mnt/efs") -> str:
    """The same job as a GitHub Actions workflow on a self-hosted runner with the mount."""
    return textwrap.dedent(f"""\
        name: nfsops
        on:
          push:
            branches: [main]
        concurrency: nfsops-deploy
        jobs:
          test:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
              - uses: actions/setup-python@v5
                with:
                  python-version: "3.12"
              - run: python -m unittest discover -v -s .
          deploy:
            needs: test            # a failing test blocks the deploy
            runs-on: [self-hosted, efs]   # a runner with EFS mounted at {mount}
            steps:
              - uses: actions/checkout@v4
              - run: python3 app.py public
              - name: publish and switch atomically
                run: |
                  set -eu
                  release="$(printf %03d "$GITHUB_RUN_NUMBER")-$(cat public/version.txt)"
                  rsync -a --delete --exclude .git ./ "{mount}/releases/$release/"
                  ln -sfn "releases/$release/public" "{mount}/.current.new"
                  mv -Tf "{mount}/.current.new" "{mount}/current"
        """)
