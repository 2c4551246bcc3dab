"""The probe runner: runs INSIDE a fresh grading container, never in the student's kernel.

``python -I -m cloudlab.grading.probe INPUT.json`` reads groups of probes, each naming the
student's cell sources to execute (source text only: no notebook, no IPython, no files of
theirs) and what to ask afterwards: call a function with the given arguments, or read a
variable. Each group runs in a forked child with a time limit, so one group that hangs,
crashes or eats memory costs only its own probes; after each child the runner kills
every process the child left behind. Results are encoded strictly as JSON (only exact
``dict/list/tuple/str/int/float/bool/None``; anything else - an object whose ``__eq__``
always says True, say - becomes an "opaque" marker that equals nothing) and written as the
last line of stdout after :data:`MARK`. The expected answers never enter this process:
the host compares.

``... INPUT.json --then KERNEL ARGV...`` (see :mod:`.sandbox`) runs the probes as the first
stage of the submission's kernel container, which saves a container start per submission.
Then this process must be the container's pid 1, and the order keeps both guarantees:

1. the probes run in a container no student code has touched yet, and only this process
   can write to the container's stdout: it is not dumpable (so ``/proc/1/fd`` is closed to
   the student's processes) and each child keeps no descriptor but its result pipe;
2. before the student's kernel starts, every process of the probe stage is killed and
   everything it could have left for the kernel is wiped (``/tmp``, ``/work``,
   ``/dev/shm``, System V IPC objects; POSIX message queues are refused by a zero
   rlimit), and the host has removed the probe input (the hidden arguments) and checked
   the result line, before it creates :data:`GO_FILE`. Only then is the kernel started, as
   this process's child (this process stays pid 1: it reaps orphans and forwards signals).

A group marked ``stdlib_only`` (the exercise says "standard library only") is not run in
the forked child itself: the child execs a fresh interpreter, ``python -I -S -B`` on
this same file (:func:`isolated`), whose ``sys.path`` holds only the standard library, and
which fences itself with Landlock before it runs a line of the student's code: it may read
the standard library and the system's shared libraries, nothing else (not the workbook, not
``site-packages``, not ``/proc``), and may write, execute, connect or signal nothing. So
no spelling of an import (``exec("imp" + "ort ...")``, ``__import__`` of a decoded string,
``importlib``, a ``sys.path`` entry added at run time, reading a module's source and
executing it) reaches the workbook or a third-party package. Where the kernel has no
Landlock, the group is refused (fail closed) with the reason, never run unfenced.

Standard library only (the grading image has no nbgrader).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import sys
import time
from typing import Any

MARK = "CLOUDLAB-PROBE-RESULT:"
GO_FILE = "go"  # created by the host next to the input once it has read the result
GO_TIMEOUT = 120.0  # seconds the probe stage waits for it before giving up
SCRATCH = ("/tmp", "/work", "/dev/shm", "/dev/mqueue")  # where a child could leave data
MAX_RESULT = 200_000  # bytes of JSON a group may return
MAX_DEPTH = 20


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data, or an opaque marker for anything that is not."""
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if abs(value) < 2**63 else {"__opaque__": "int (too large)"}
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if depth >= MAX_DEPTH:
        return {"__opaque__": "nested too deep"}
    if kind is list or kind is tuple:
        return [plain(v, depth + 1) for v in value[:10_000]]
    if kind is dict and all(type(k) is str for k in value):
        return {"__dict__": {k: plain(v, depth + 1) for k, v in list(value.items())[:10_000]}}
    return {"__opaque__": type(value).__name__[:80]}


def strip_magics(source: str) -> str:
    """Source without IPython syntax: a ``%%`` cell is dropped, ``%``/``!`` lines too."""
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def _run_group(group: dict[str, Any]) -> list[dict[str, Any]]:
    namespace: dict[str, Any] = {  # IPython's names a notebook may use, as harmless stand-ins
        "__name__": "__student__", "display": lambda *args, **kwargs: None, "In": [], "Out": {}}
    out: list[dict[str, Any]] = []
    for index, source in enumerate(group.get("sources", [])):
        try:
            code = compile(strip_magics(source), f"<cell {group['cells'][index]}>", "exec")
            exec(code, namespace)
        except BaseException as exc:
            return [{"raised": type(exc).__name__, "message": str(exc)[:500],
                     "where": f"running cell {group['cells'][index]}"}
                    for _ in group.get("probes", [])]
    for probe in group.get("probes", []):
        try:
            if probe["kind"] == "value":
                if probe["name"] not in namespace:
                    raise NameError(f"{probe['name']} is not defined")
                got = namespace[probe["name"]]
            else:
                fn = namespace.get(probe["name"])
                if not callable(fn):
                    raise NameError(f"there is no function called {probe['name']}()")
                got = fn(*probe.get("args", []), **probe.get("kwargs", {}))
            out.append({"value": plain(got)})
        except BaseException as exc:
            out.append({"raised": type(exc).__name__, "message": str(exc)[:500]})
    return out


def _child(group: dict[str, Any], write_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # nothing the student prints reaches the host
        os.dup2(devnull, fd)
    os.closerange(3, write_fd)  # nor through any descriptor but the result pipe
    os.closerange(write_fd + 1, 65536)
    if group.get("stdlib_only"):
        _exec_isolated(group, write_fd)  # never returns
    _report(group, write_fd)  # never returns


ISOLATED = "--isolated"


def _exec_isolated(group: dict[str, Any], write_fd: int) -> None:
    """Replace this child by a fresh standard-library-only interpreter running
    :func:`isolated` (the group handed over in a memory file, the answer on ``write_fd``)."""
    try:
        data = os.memfd_create("probe-group", 0)
        os.write(data, json.dumps(group).encode())
        os.lseek(data, 0, os.SEEK_SET)
        os.set_inheritable(data, True)
        os.set_inheritable(write_fd, True)
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__),
                                  ISOLATED, str(data), str(write_fd)])
    except BaseException as exc:  # exec failed: say so, never run the code here instead
        _refuse(group, write_fd, f"the isolated interpreter could not start: {exc}")


def _refuse(group: dict[str, Any], write_fd: int, why: str) -> None:
    answer = [{"raised": "IsolationError", "message": why[:500]}
              for _ in group.get("probes", [])]
    os.write(write_fd, json.dumps(answer).encode() + b"\n")
    os._exit(0)


# Landlock (Linux >= 5.13; the same syscall numbers on every architecture)
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_READ = (1 << 2) | (1 << 3)  # READ_FILE, READ_DIR
_LL_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)


def _ll_fs_rights(abi: int) -> int:
    """Every filesystem right the kernel's Landlock ABI knows (all of them are denied
    unless a rule grants them)."""
    rights = (1 << 13) - 1       # ABI 1: execute ... make_sym
    if abi >= 2:
        rights |= 1 << 13        # refer
    if abi >= 3:
        rights |= 1 << 14        # truncate
    if abi >= 5:
        rights |= 1 << 15        # ioctl_dev
    return rights


def readable_roots() -> list[str]:
    """What the fenced interpreter may read: the standard library's folders from ``sys.path``
    (each entry but a ``site-packages``/``dist-packages`` folder inside one) and the folders
    of the system's shared libraries (extension modules such as ``_decimal`` load them)."""
    import sysconfig

    third_party = ("site-packages", "dist-packages")
    roots: list[str] = []
    for entry in sys.path:
        if not entry or not os.path.exists(entry) or os.path.basename(entry) in third_party:
            continue
        if os.path.isdir(entry) and any(os.path.isdir(os.path.join(entry, name))
                                        for name in third_party):
            roots += [os.path.join(entry, name) for name in sorted(os.listdir(entry))
                      if name not in third_party]
        else:
            roots.append(entry)
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    for lib in ("/lib", "/usr/lib") if not arch else ():
        roots.append(lib)
    for lib in (f"/lib/{arch}", f"/usr/lib/{arch}", "/lib64", "/usr/lib64",
                "/etc/ld.so.cache") if arch else ("/lib64", "/etc/ld.so.cache"):
        if os.path.exists(lib):
            roots.append(lib)
    return roots


def fence(roots: list[str]) -> None:
    """Landlock this process (and what it starts): read ``roots``, nothing else; no writes,
    no exec, no TCP, no signals or abstract sockets outside. Raises OSError if it cannot."""
    import ctypes
    import errno
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 0:
        code = ctypes.get_errno()
        why = {errno.ENOSYS: "this kernel has no Landlock (Linux 5.13 or later needed)",
               errno.EOPNOTSUPP: "Landlock is disabled on this kernel (boot option lsm=)",
               errno.EPERM: "a seccomp policy forbids Landlock"}.get(code, os.strerror(code))
        raise OSError(code, why)
    fs = _ll_fs_rights(abi)
    attr = struct.pack("=Q", fs)
    if abi >= 4:
        attr += struct.pack("=Q", (1 << 0) | (1 << 1))  # bind_tcp, connect_tcp
    if abi >= 6:
        attr += struct.pack("=Q", (1 << 0) | (1 << 1))  # abstract unix sockets, signals
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = syscall(_LL_CREATE, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for root in roots:
            try:
                fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rights = _LL_READ if os.path.isdir(root) else _LL_READ & _LL_FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights & fs, fd), 12)
                if syscall(_LL_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), rule,
                           ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {root}")
            finally:
                os.close(fd)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if syscall(_LL_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def isolated(data_fd: int, write_fd: int) -> None:
    """The fenced run of one ``stdlib_only`` group (this file, run by
    :func:`_exec_isolated` as ``python -I -S -B probe.py --isolated DATA_FD WRITE_FD``)."""
    with os.fdopen(data_fd, "rb") as f:
        group = json.loads(f.read())
    if not sys.flags.isolated or not sys.flags.no_site:
        _refuse(group, write_fd, "not started as python -I -S")
    try:
        fence(readable_roots())
    except OSError as exc:
        _refuse(group, write_fd, "this grading machine cannot fence a standard-library-only "
                f"answer, so it was not run: {exc.strerror or exc}")
    _report(group, write_fd)  # never returns


def _collect(pid: int, read_fd: int, timeout: float) -> tuple[bytes | None, str]:
    """The child's answer, or None and why there is none."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, f"did not finish within {timeout:g} s"
        ready, _, _ = select.select([read_fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                if chunks:
                    break
                return None, _wait(pid, deadline)
            chunks.append(chunk)
            size += len(chunk)
            if chunk.endswith(b"\n") or size > MAX_RESULT:
                break
        else:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:  # exited; anything it wrote is already in the pipe
                ready, _, _ = select.select([read_fd], [], [], 0)
                if not ready:
                    return None, _ended(status)
    return b"".join(chunks), ""


def _wait(pid: int, deadline: float) -> str:
    """Why the child closed its end without answering (it exited, or was killed)."""
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "the process ended without an answer"
        if done:
            return _ended(status)
        time.sleep(0.02)
    return "the process closed its output without an answer"


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            return "the process was killed (out of memory, most likely)"
        return f"the process was killed by signal {sig}"
    return f"the process exited (exit code {os.WEXITSTATUS(status)})"


SWEEP_ENV = "CLOUDLAB_PROBE_SWEEP"  # "all": we are alone in a container's pid namespace


def _kill_all_but_me(pid: int) -> None:
    """The child's process group; in the container every process but this one and init,
    waiting (briefly) until init has reaped them, so the next group can fork again.
    (When this process is init, it reaps them itself.)"""
    everything = os.environ.get(SWEEP_ENV) == "all"
    deadline = time.monotonic() + 5
    while True:
        try:
            if everything:
                os.kill(-1, signal.SIGKILL)
            else:
                os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        if not everything or not _others() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _others() -> list[int]:
    """Processes in this pid namespace other than init and this one."""
    me = os.getpid()
    with contextlib.suppress(OSError):
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
    return []


def _fork() -> int:
    deadline = time.monotonic() + 3
    while True:
        try:
            return os.fork()
        except BlockingIOError:  # the pids limit: the last group's processes not reaped yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def budget(groups: list[dict[str, Any]], slack: float = 30) -> float:
    """Seconds the host waits for a whole probe run: every group's own time limit, plus
    ``slack`` for starting the container and Python.

    >>> budget([{"timeout": 10}, {"timeout": 5}])
    45.0
    """
    return sum(float(group.get("timeout", 10)) for group in groups) + slack


def run(groups: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    results = []
    for group in groups:
        timeout = float(group.get("timeout", 10))
        try:
            read_fd, write_fd = os.pipe()
            pid = _fork()
        except OSError as exc:
            results.append([{"raised": "OSError", "message": f"could not start: {exc}"}
                            for _ in group.get("probes", [])])
            continue
        if pid == 0:
            os.setpgrp()
            os.close(read_fd)
            _child(group, write_fd)
        os.close(write_fd)
        raw, why = _collect(pid, read_fd, timeout)
        os.close(read_fd)
        _kill_all_but_me(pid)
        try:
            got = json.loads(raw) if raw else None
        except ValueError:
            got, why = None, "its answer was not readable"
        if not (isinstance(got, list) and len(got) == len(group.get("probes", []))):
            kind = "TimeoutError" if why.startswith("did not finish") else "ProcessDied"
            got = [{"raised": kind, "message": why or "no answer"}
                   for _ in group.get("probes", [])]
        results.append(got)
    return results


def _undumpable() -> None:
    """Close this process's /proc entries (fds, memory) to other processes of its uid."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _wipe(folders: tuple[str, ...] = SCRATCH) -> list[str]:
    """Empty each folder (not following links, not entering mounts); what could not be
    removed."""
    import shutil

    left = []
    for folder in folders:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(folder):
                if os.path.ismount(entry.path):  # the socket folder: the host resets it
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    left.append(entry.path)
    return left


def _drop_sysv_ipc() -> list[str]:
    """Remove every System V shared memory segment, queue and semaphore set; what is left."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ctl = {"shm": libc.shmctl, "msg": libc.msgctl, "sem": libc.semctl}
    left = []
    for kind, fn in ctl.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                ids = [int(line.split()[1]) for line in f.readlines()[1:] if line.strip()]
        except OSError:
            continue
        for ident in ids:  # IPC_RMID is 0 for all three
            if (fn(ident, 0, 0, 0) if kind == "sem" else fn(ident, 0, None)) != 0:
                left.append(f"{kind} {ident}")
    return left


def _await_go(path: str, timeout: float = GO_TIMEOUT) -> bool:
    """Wait (polling, with a deadline) for the host to create ``path``."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True


def _serve(argv: list[str]) -> None:
    """Run ``argv`` as a child and act as its init: reap orphans, forward signals, exit
    with its status."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.execvp(argv[0], argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(0)
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def stage(spec: dict[str, Any], then: list[str], out: int) -> None:
    """The probe stage of a kernel container (module docstring): probes, cleanup, the
    result line, the host's go, then the kernel."""
    if os.getpid() != 1:
        os.write(out, b"probe stage refused: not the container's pid 1\n")
        os._exit(2)
    _undumpable()
    os.environ[SWEEP_ENV] = "all"  # we are alone in this pid namespace
    import resource

    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    results = run(spec["groups"])
    _kill_all_but_me(0)  # every group already did; once more for what is left
    left = [f"pid {p}" for p in _others()] + _wipe() + _drop_sysv_ipc()
    if left:
        os.write(out, f"probe stage: could not clean up {left[:5]}\n".encode())
        os._exit(3)
    os.write(out, (MARK + json.dumps(results) + "\n").encode())
    if not _await_go(os.path.join(os.path.dirname(spec["input"]), GO_FILE)):
        os._exit(4)
    _serve(then)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [ISOLATED]:
        isolated(int(args[1]), int(args[2]))
    then = args[args.index("--then") + 1:] if "--then" in args else []
    with open(args[0]) as f:
        spec = json.load(f)
    out = os.dup(1)
    if then:
        spec["input"] = os.path.abspath(args[0])
        stage(spec, then, out)
    results = run(spec["groups"])
    os.write(out, ("\n" + MARK + json.dumps(results) + "\n").encode())


def _report(group: dict, write_fd: int) -> None:
    """Run the group's probes and write their plain-JSON results to the pipe; exits."""
    try:
        data = json.dumps(_run_group(group), allow_nan=False)
    except BaseException as exc:
        data = json.dumps([{"raised": type(exc).__name__, "message": "unreadable result"}
                           for _ in group.get("probes", [])])
    os.write(write_fd, data.encode()[:MAX_RESULT] + b"\n")
    os._exit(0)


if __name__ == "__main__":
    main()

