"""Running commands and waiting for things, the two primitives everything else uses.

>>> run(["echo", "hi"]).stdout
'hi\\n'
>>> wait_for(lambda: True, timeout=1, what="nothing")
True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import CommandError, ServiceError

T = TypeVar("T")


def which(name: str) -> str | None:
    """Find a program, looking beside this Python first (venv tools: hadolint, kubectl)."""
    if "/" in name:
        return name if Path(name).exists() else None
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 600,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
    hint: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` and capture its output; raise :class:`CommandError` when it fails."""
    cmd = [str(c) for c in cmd]
    exe = which(cmd[0])
    if exe is None and not Path(cmd[0]).exists():
        raise CommandError(cmd, 127, "", f"{cmd[0]}: command not found", hint=hint)
    try:
        done = subprocess.run(
            [exe or cmd[0], *cmd[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
            cwd=cwd,
            input=input,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(cmd, None, _text(exc.stdout), _text(exc.stderr), hint=hint) from None
    if check and done.returncode != 0:
        raise CommandError(cmd, done.returncode, done.stdout, done.stderr, hint=hint)
    return done


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    log: Path | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; raise with ``log``'s tail on timeout.

    Exceptions raised by the probe count as "not yet", except :class:`GiveUp`, which
    ends the wait at once (say, because the process being waited for has exited).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except GiveUp as exc:
            raise ServiceError(f"gave up waiting for {what}: {exc}{log_tail(log)}") from None
        except Exception as exc:  # a probe that raises is simply not ready yet
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 1.0)
    detail = f" (last error: {last_error})" if last_error else ""
    raise ServiceError(f"timed out after {timeout:g} s waiting for {what}{detail}{log_tail(log)}")


def identity(pid: int) -> str | None:
    """Who process ``pid`` is: this boot's id and the process's start time (clock ticks
    since boot), or None when there is no such process. A pid is reused by unrelated
    processes; its identity is not.

    >>> identity(os.getpid()) == identity(os.getpid()) != None
    True
    >>> identity(2**22 + 1) is None
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name (field 2) may hold spaces
    return f"{boot[:8]}-{fields[19]}" if len(fields) > 19 else None


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie does not count: a child of ours is reaped,
    another process's is dead all the same, only not yet waited for by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
    return True


def end(pid: int, timeout: float = 5) -> None:
    """End process group ``pid``: SIGTERM, and SIGKILL if it is still there ``timeout`` s
    later; a group already gone is fine.

    >>> p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    >>> end(p.pid); alive(p.pid)
    False
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not alive(pid), timeout=timeout, interval=0.05,
                 what=f"pid {pid} to exit")
    except ServiceError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), timeout=5, interval=0.05, what=f"pid {pid} to die")


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made if missing) until the block ends: what
    other processes of this machine share (a port range, the one real node, a build).

    The kernel drops the lock when its holder exits, however it exits, so a crashed
    holder never leaves it taken.

    >>> import tempfile
    >>> with file_lock(Path(tempfile.mkdtemp()) / "demo.lock"):
    ...     "held"
    'held'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class GiveUp(Exception):
    """Raised by a probe to stop :func:`wait_for` early with a reason."""


def log_tail(log: Path | None, lines: int = 25) -> str:
    """The last lines of a log file, formatted for an error message ('' when absent)."""
    if log is None or not Path(log).exists():
        return ""
    text = Path(log).read_text(errors="replace").strip().splitlines()[-lines:]
    return f"\n--- {log} (last {len(text)} lines) ---\n" + "\n".join(text)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
