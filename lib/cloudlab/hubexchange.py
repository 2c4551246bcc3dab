"""nbgrader's file exchange, with each submission and feedback file readable by its owner
and the graders only.

Stock nbgrader hides a submission by its name (student, time and a random string, in an
``inbound`` folder nobody but the instructor may list) but leaves its files readable by
everyone (0644); feedback files are 0644 too, named by a hash of the submission's secret.
Whoever learns a name reads the file. On the course hub (:mod:`cloudlab.hub`) the course's
exchange folder belongs to the graders' group and passes it on (set-group-id), so:

* :class:`ExchangeSubmit` (run by the student) makes the submission ``0640``/``0750``
  plus an ACL entry for the graders' group: the student and the graders read it, other
  students do not, name or no name;
* :class:`ExchangeReleaseFeedback` (run by the instructor) makes each feedback file
  ``0640`` plus one POSIX ACL entry: read for the student it belongs to, and nobody else.

Configured in the hub's ``nbgrader_config.py``::

    c.ExchangeFactory.submit = "cloudlab.hubexchange.ExchangeSubmit"
    c.ExchangeFactory.release_feedback = "cloudlab.hubexchange.ExchangeReleaseFeedback"

>>> acl_entries(_acl(0o640, {1001: 4}))
[(1, 6, -1), (2, 4, 1001), (4, 4, -1), (16, 4, -1), (32, 0, -1)]
"""

from __future__ import annotations

import glob
import os
import pwd
import struct
from pathlib import Path

from nbgrader.exchange.default.release_feedback import (
    ExchangeReleaseFeedback as _ReleaseFeedback,
)
from nbgrader.exchange.default.submit import ExchangeSubmit as _Submit
from nbgrader.utils import notebook_hash

# POSIX ACL as Linux stores it in the system.posix_acl_access attribute (acl_ea.h)
_VERSION, _UNDEFINED = 2, 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ATTRIBUTE = "system.posix_acl_access"


def _acl(mode: int, users: dict[int, int], groups: dict[int, int] | None = None) -> bytes:
    """The ACL of ``mode`` plus permission bits per uid in ``users`` and gid in ``groups``."""
    groups = groups or {}
    entries = [(USER_OBJ, (mode >> 6) & 7, _UNDEFINED)]
    entries += [(USER, bits, uid) for uid, bits in sorted(users.items())]
    entries.append((GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED))
    entries += [(GROUP, bits, gid) for gid, bits in sorted(groups.items())]
    mask = (mode >> 3) & 7
    for bits in [*users.values(), *groups.values()]:
        mask |= bits
    if users or groups:
        entries.append((MASK, mask, _UNDEFINED))
    entries.append((OTHER, mode & 7, _UNDEFINED))
    return struct.pack("<I", _VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


def acl_entries(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, permission bits, uid or -1) of an ACL attribute's value."""
    out = []
    for offset in range(4, len(data), 8):
        tag, perm, who = struct.unpack_from("<HHI", data, offset)
        out.append((tag, perm, -1 if who == _UNDEFINED else who))
    return out


def grant_read(path: str | Path, user: str, mode: int = 0o640) -> None:
    """Make ``path`` ``mode`` and readable by ``user`` too (an ACL entry), nobody else."""
    os.chmod(path, mode)
    os.setxattr(path, ATTRIBUTE, _acl(mode, {pwd.getpwnam(user).pw_uid: 4}))


def readers(path: str | Path) -> list[int]:
    """The uids an ACL on ``path`` names (empty without one)."""
    try:
        data = os.getxattr(path, ATTRIBUTE)
    except OSError:
        return []
    return [who for tag, perm, who in acl_entries(data) if tag == USER and perm & 4]


class ExchangeSubmit(_Submit):
    """nbgrader's submit, then the submission closed to everyone but the graders' group
    (the group of ``inbound``), named in an ACL: the student need not belong to it."""

    def copy_files(self) -> None:
        super().copy_files()
        dest = Path(self.inbound_path) / self.assignment_filename
        graders = os.stat(self.inbound_path).st_gid
        for path in [*dest.rglob("*"), dest]:
            if path.is_symlink():
                continue
            mode, bits = (0o750, 5) if path.is_dir() else (0o640, 4)
            if path == dest:
                bits = 7  # the graders may tidy up later, as stock's 0777 allows
            os.chmod(path, mode)
            os.setxattr(path, ATTRIBUTE, _acl(mode, {}, {graders: bits}))


class ExchangeReleaseFeedback(_ReleaseFeedback):
    """nbgrader's release_feedback, then each file readable by its own student only."""

    def copy_files(self) -> None:
        super().copy_files()
        for html_file in glob.glob(os.path.join(self.src_path, "*.html")):
            where = Path(html_file).parent
            student = where.parent.name
            secret_file = where / "submission_secret.txt"
            if not secret_file.is_file():
                continue
            checksum = notebook_hash(secret=secret_file.read_text(),
                                     notebook_id=Path(html_file).stem)
            released = Path(self.dest_path) / f"{checksum}.html"
            if released.exists():
                grant_read(released, student)
