"""The kernel launcher that runs INSIDE the grading container (stdlib + ipykernel only).

``python -I -m cloudlab.grading.kernel -f CONNECTION_FILE`` copies the student's files from
the read-only ``/submission`` mount into the size-limited ``/work`` tmpfs (their scratch
copy), imports and freezes the checkers before any student code runs, caps how much output a
cell can produce, then starts an ordinary ipykernel. ``-I`` keeps the student's folder off
``sys.path`` while this happens, so a submitted ``cloudlab.py`` cannot replace the checkers.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import shutil
import sys
import types

SUBMISSION = "/submission"
WORK = "/work"
ASSIGNMENT_ENV = "CLOUDLAB_GRADING_ASSIGNMENT"
MAX_OUTPUT_ENV = "CLOUDLAB_MAX_OUTPUT"
NOTE = "\n[output truncated by the grader: this cell printed more than {limit} characters]\n"


def prepare_workdir(src: str = SUBMISSION, dst: str = WORK) -> None:
    """Copy the submission's files (never following links) into the scratch folder."""
    if os.path.isdir(src):
        for entry in os.scandir(src):
            target = os.path.join(dst, entry.name)
            if entry.is_symlink():
                continue
            if entry.is_dir():
                shutil.copytree(entry.path, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(entry.path, target)
    os.makedirs(dst, exist_ok=True)
    os.chdir(dst)


class _FrozenModule(types.ModuleType):
    """A module whose attributes cannot be reassigned (checkers must not be monkeypatched)."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{self.__name__} is read-only while your work is graded")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self.__name__} is read-only while your work is graded")


def preload(assignment: str | None) -> list[str]:
    """Import the checkers (core + the assignment's module) and freeze them."""
    import cloudlab.checks as checks

    names = [checks.__name__]
    if assignment:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(checks.module_name(assignment))
    for info in pkgutil.iter_modules(checks.__path__, checks.__name__ + "."):
        if info.name in sys.modules:
            names.append(info.name)
    registry = checks.__dict__["_REGISTRY"]
    frozen = {key: tuple(fns) for key, fns in registry.items()}
    checks.__dict__["_REGISTRY"] = types.MappingProxyType(frozen)
    for name in names:
        module = sys.modules[name]
        if type(module) is types.ModuleType:
            module.__class__ = _FrozenModule
    return names


def _capped_outstream():
    from ipykernel.iostream import OutStream

    limit = int(os.environ.get(MAX_OUTPUT_ENV, "1000000"))

    class CappedOutStream(OutStream):
        """stdout/stderr that keep at most ``limit`` characters per executed cell."""

        def write(self, string):  # type: ignore[override]
            if not isinstance(string, str):
                return super().write(string)
            key = (self.parent_header or {}).get("msg_id")
            if getattr(self, "_cap_key", None) != key:
                self._cap_key, self._cap_used, self._cap_noted = key, 0, False
            room = limit - self._cap_used
            if room <= 0:
                if not self._cap_noted:
                    self._cap_noted = True
                    super().write(NOTE.format(limit=limit))
                return len(string)
            self._cap_used += min(room, len(string))
            super().write(string[:room])
            return len(string)

    return CappedOutStream


def main(argv: list[str] | None = None) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    prepare_workdir()
    preload(os.environ.get(ASSIGNMENT_ENV))
    sys.modules[__name__].CappedOutStream = _capped_outstream()  # type: ignore[attr-defined]
    from ipykernel.kernelapp import IPKernelApp

    args = list(sys.argv[1:] if argv is None else argv)
    args += [
        f"--IPKernelApp.outstream_class={__name__}.CappedOutStream",
        "--IPKernelApp.exec_lines=__import__('cloudlab.checks', fromlist=['_'])"
        "._install_friendly_tracebacks()",
    ]
    sys.path.insert(0, WORK)  # students may import their own modules (after the checkers)
    IPKernelApp.launch_instance(argv=args)


if __name__ == "__main__":
    main()
