"""The trusted side of ``docker-hub``: the host builds, lints, runs and inspects the image.

:func:`docker_side` is the exercise's pre-grade hook: the grader runs it on the host
before the notebook (never in the sandbox); its results reach the kernel read-only (the
visible checks show them as feedback) and ``solutions/docker-hub/grader.py``, which turns
them into points.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ...grading.hooks import HookContext, Results, pre_grade
from .rules import (
    ASSIGNMENT,
    DOCKERFILE,
    OFFICIAL_BASE,
    REQUIREMENTS,
    _not_built,
    _read,
    _safe,
    classmate,
    exec_form,
    files,
    final_base,
    install_first,
    lint_clean,
    load_answers,
    no_pip_cache,
    non_root,
    official_base,
    pinned,
    prints_greeting,
    pushed,
    result,
    scan_filesystem,
    size_budget,
    syntax_error,
)


class _Chunks:
    """A file-like view of the engine's export stream (for tarfile's stream mode)."""

    def __init__(self, chunks, deadline: float) -> None:
        self.chunks, self.buf, self.deadline = chunks, b"", deadline

    def read(self, n: int = -1) -> bytes:

        while n < 0 or len(self.buf) < n:
            if time.monotonic() > self.deadline:
                raise TimeoutError("reading the image's files took too long")
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _scan(ctx: HookContext, tag: str, user: str, timeout: float = 60) -> dict[str, Any]:
    """Read the image's file system (a created, never started container, exported)."""
    import tarfile

    from ... import engine

    api = engine.client(timeout=int(timeout) + 30)
    box = api.containers.create(tag, entrypoint=["/bin/true"], command=[], labels=ctx.labels,
                                network_mode="none", detach=True)
    ctx.created_containers.append(box.id)
    stream = _Chunks(iter(box.export(chunk_size=1 << 20)), time.monotonic() + timeout)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        def read(member):
            got = tar.extractfile(member)
            return got.read() if got is not None else b""

        return scan_filesystem(tar, read, user)



@pre_grade(ASSIGNMENT)
def docker_side(ctx: HookContext) -> Results:
    """The grader's trusted checks: build, lint, run and inspect the submitted Dockerfile.

    Runs on the grading host before the notebook, never inside the sandbox. The build is
    confined (:func:`cloudlab.grading.hooks.build_image`: its only way out is the package
    index, for pip; CPU, memory, processes, time and disk are limited); ``hello`` runs
    without a network, locked down; the image's files are read from an export of a
    container that is never started (nothing the student wrote runs to answer the
    pip-cache and user questions). The push must be in the student's own namespace, and
    the classmate's message is the course's secret (:mod:`cloudlab.grading.classmate`).
    Returns a result per key of :data:`KEYS`.
    """
    from ... import images
    from ...config import settings
    from ...grading import Course, hooks, roster
    from ...grading import classmate as classmate_secret

    course = Course(ctx.course) if ctx.course else None
    folder = Path(ctx.files)
    dockerfile = _read(folder, DOCKERFILE)
    answers = load_answers(folder)
    out: Results = {
        "files": _safe(files, folder),
        "official_base": _safe(official_base, dockerfile),
        "lint_clean": _safe(lint_clean, dockerfile),
        "pinned": _safe(pinned, _read(folder, REQUIREMENTS), dockerfile),
        "install_first": _safe(install_first, dockerfile),
        "pushed": _safe(pushed, answers, settings().registry_host,
                        roster.namespaces(course, ctx.student), _grader_login(course)),
        "classmate": _safe(classmate, answers,
                           classmate_secret.message(course) if course else None),
    }
    broken = syntax_error(dockerfile) if dockerfile is not None else None
    if broken:  # the engine would refuse it before the first step: say why, build nothing
        built = hooks.Built(False, "", f"docker build failed: {broken}")
    else:
        built = hooks.build_image(ctx, DOCKERFILE, network="proxy",
                                  timeout=max(30.0, min(ctx.timeout - 60, 600)))
        if not built.ok and "Step 1/" not in built.log and "APIError" in built.message:
            built.message += " (the engine rejected the Dockerfile before its first step; " \
                             "hadolint's result above points at the line)"
    out["image_builds"] = result(built.ok, built.message,
                                 found=built.log[-600:] if not built.ok and built.log else None)
    later = ("says_hello", "plain_run", "exec_form", "non_root", "no_pip_cache",
             "size_budget")
    if not built.ok:
        out.update({key: _not_built(built.message) for key in later})
        return out
    ran = hooks.run_image(ctx, built.tag, ["hello"], timeout=30)
    out["says_hello"] = prints_greeting(
        "docker run IMAGE hello", ran.ok, ran.output, ran.exit_code, ran.timed_out,
        hint='ENTRYPOINT ["python", "app.py"] makes `hello` the argument of your CLI')
    plain = hooks.run_image(ctx, built.tag, None, timeout=30)  # the image's own CMD
    out["plain_run"] = prints_greeting(
        "docker run IMAGE", plain.ok, plain.output, plain.exit_code, plain.timed_out,
        hint='CMD ["hello"] after ENTRYPOINT ["python", "app.py"]: the default argument')
    try:
        from ... import engine

        config = engine.client(timeout=60).api.inspect_image(built.tag)
    except Exception as exc:
        out.update({k: result(False, f"the grader could not inspect the image: {exc}"[:400])
                    for k in later[2:]})
        return out
    conf = config.get("Config") or {}
    out["exec_form"] = _safe(exec_form, conf.get("Entrypoint"), conf.get("Cmd"))
    try:
        scan = _scan(ctx, built.tag, conf.get("User") or "")
        out["non_root"] = non_root(conf.get("User"), scan.get("uid"))
        out["no_pip_cache"] = no_pip_cache(scan.get("pip_cache") or {})
    except Exception as exc:
        out["non_root"] = _safe(non_root, conf.get("User"))
        out["no_pip_cache"] = result(False, f"the grader could not look inside the image: "
                                            f"{str(exc)[:300]}")
    base = final_base(dockerfile or "") or OFFICIAL_BASE
    try:
        base_size = images.size(base)
    except Exception:
        base_size = images.size(settings().base_image)
        base = settings().base_image
    out["size_budget"] = _safe(size_budget, int(config.get("Size") or 0), base_size, base)
    return out


def _grader_login(course):
    """The instructor's login to the course registry (None when it has no accounts)."""
    from ...grading import roster

    if course is None or not (roster.folder(course) / "credentials.json").exists():
        return None
    data = json.loads((roster.folder(course) / "credentials.json").read_text())
    boss = next((u for u, e in data.items() if e.get("role") == "instructor"), None)
    return roster.credentials(course, boss) if boss else None
