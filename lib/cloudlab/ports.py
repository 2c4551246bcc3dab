"""Free TCP ports on 127.0.0.1 that stay free until the server that needs them binds them.

Binding port 0, reading the number and closing the socket hands out a port the kernel
may give to the next outgoing connection or ``bind(0)`` a moment later, before the
server has started. :func:`free_port` avoids both races: it picks below the kernel's
ephemeral range (the kernel never hands those out by itself), and it holds a lock file
per port for the life of the process, so no other cloudlab process on this machine picks
the same one.

>>> free_port() < ephemeral_range()[0]
True
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

LOCKS = Path(tempfile.gettempdir()) / "cloudlab-ports"
LOWEST = 20000  # well above every default service port (5000, 9090, 9093, ...)
_HELD: dict[int, int] = {}  # port -> file descriptor of its lock


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (``net.ipv4.ip_local_port_range``).

    >>> low, high = ephemeral_range()
    >>> 1024 <= low <= high <= 65535
    True
    """
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on and no other cloudlab process has reserved; it stays
    reserved for this process until :func:`release` or exit.

    >>> a, b = free_port(), free_port()
    >>> a != b
    True
    """
    top = ephemeral_range()[0] - 1
    if top <= LOWEST:
        top = 65535
    LOCKS.mkdir(mode=0o1777, parents=True, exist_ok=True)
    for port in random.sample(range(LOWEST, top), min(200, top - LOWEST)):
        if port in _HELD:
            continue
        fd = os.open(LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _bindable(host, port):
            _HELD[port] = fd
            return port
        os.close(fd)
    raise OSError(f"no free port on {host} between {LOWEST} and {top} after 200 tries")


def release(port: int) -> None:
    """Give up the reservation of ``port`` (idempotent)."""
    fd = _HELD.pop(port, None)
    if fd is not None:
        os.close(fd)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
