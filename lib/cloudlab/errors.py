"""The one error type of the workbook, and its specialisations.

Every failure the library reports carries what was attempted and what came back, so a
student sees the real cause instead of a bare traceback.

>>> err = CommandError(["false"], 1, "", "boom")
>>> err.returncode, "boom" in str(err)
(1, True)
"""

from __future__ import annotations

from collections.abc import Sequence


class CloudlabError(RuntimeError):
    """Base class: anything the workbook itself reports as a failure."""


class ConfigError(CloudlabError, ValueError):
    """A setting has a value the workbook cannot use; the message names the variable."""


class CommandError(CloudlabError):
    """A command failed: carries the command, its exit code and its output."""

    def __init__(
        self,
        cmd: Sequence[str] | str,
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        hint: str = "",
    ) -> None:
        self.cmd = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        self.returncode = returncode
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        code = "timed out" if self.returncode is None else f"exit code {self.returncode}"
        parts = [f"`{self.cmd}` failed ({code})"]
        for label, text in (("stderr", self.stderr), ("stdout", self.stdout)):
            tail = _tail(text)
            if tail:
                parts.append(f"--- {label} (last lines) ---\n{tail}")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class ServiceError(CloudlabError):
    """A local service could not be started, reached or stopped; includes its log tail."""


class UnavailableError(CloudlabError):
    """An optional backend (Docker, a registry, a cluster) is not available here."""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
