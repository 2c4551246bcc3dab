"""Building images: Dockerfile parsing, the classic builder with a progress bar, BuildKit.

``build`` streams the classic builder's output into a progress bar (one tick per
Dockerfile instruction) and returns a :class:`Build` that says which steps came from the
cache; a failure raises :class:`BuildError` naming the Dockerfile line and instruction.
``build(..., builder="buildkit")`` builds with BuildKit through ``docker buildx`` where the
engine and CLI have it (:func:`buildkit`), with build secrets that never reach a layer.

(Inside this package ``import docker`` is an absolute import: it loads the Docker SDK.)

>>> b = build("hello", "hello:1")                # doctest: +SKIP
>>> b.cached_steps                               # doctest: +SKIP
0
"""

from __future__ import annotations

import difflib
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from .. import engine
from ..config import Settings, settings
from ..errors import CloudlabError, CommandError, UnavailableError
from ..proc import run

INSTRUCTIONS = ("FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
                "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
                "HEALTHCHECK", "SHELL")
BUILDX_HINT = ("install the buildx plugin to build with BuildKit: `make setup` builds it "
               "(scripts/setup_buildkit.sh: buildx from source through the Go module proxy, "
               "needs Go 1.26+, as Debian 12 packages none); Docker's own packages "
               "(docker-buildx-plugin) and Docker Desktop ship it")
BOOTSTRAP_HINT = "run `cloudlab images bootstrap` to build python:3.11-slim offline"


# --------------------------------------------------------------------------- Dockerfiles
@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: where it starts and its text (continuations joined)."""

    line: int
    keyword: str
    text: str


def instructions(dockerfile: str) -> list[Instruction]:
    """The instructions of a Dockerfile, in order, with their first line numbers.

    >>> [(i.line, i.keyword) for i in instructions("# c\\nFROM x\\n\\nRUN a \\\\\\n  b\\n")]
    [(2, 'FROM'), (4, 'RUN')]
    >>> instructions("FROM x\\nRUN a \\\\\\n  b\\n")[1].text
    'RUN a b'
    """
    escape = "\\"
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    directives = True
    for number, raw in enumerate(dockerfile.splitlines(), 1):
        line = raw.strip()
        if directives and (m := re.match(r"#\s*escape\s*=\s*(\S)", line, re.I)):
            escape = m.group(1)
            continue
        if line.startswith("#") or (not line and not parts):
            continue
        directives = False
        if not parts:
            start = number
        if line.endswith(escape):
            parts.append(line[: -len(escape)].strip())
            continue
        parts.append(line)
        text = " ".join(p for p in parts if p)
        parts = []
        found.append(Instruction(start, text.split(None, 1)[0].upper(), text))
    if parts:
        text = " ".join(p for p in parts if p)
        found.append(Instruction(start, text.split(None, 1)[0].upper(), text))
    return found


def base_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile builds FROM (stage names and ``$ARG`` bases left out).

    >>> base_images("FROM python:3.11-slim AS build\\nFROM build\\nFROM alpine:3\\n")
    ['python:3.11-slim', 'alpine:3']
    """
    stages: set[str] = set()
    bases: list[str] = []
    for ins in instructions(dockerfile):
        if ins.keyword != "FROM":
            continue
        words = [w for w in ins.text.split()[1:] if not w.startswith("--")]
        if not words:
            continue
        image = words[0]
        if image.lower() not in stages and "$" not in image and image != "scratch":
            bases.append(image)
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
    return bases


# --------------------------------------------------------------------------------- build
class BuildError(CloudlabError):
    """A build failed; names the Dockerfile line and instruction where it happened."""

    def __init__(self, message: str, *, line: int | None = None,
                 instruction: str = "", log: str = "") -> None:
        self.line = line
        self.instruction = instruction
        self.log = log
        super().__init__(message)


@dataclass
class Step:
    number: int
    instruction: str
    line: int | None
    cached: bool = False
    seconds: float = 0.0


@dataclass
class Build:
    """What a build produced: the image, each step (cached or not) and how long it took."""

    tag: str
    id: str
    seconds: float
    steps: list[Step] = field(default_factory=list)
    log: str = ""

    @property
    def cached_steps(self) -> int:
        return sum(s.cached for s in self.steps)

    @property
    def size(self) -> int:
        """Image size in bytes."""
        return int(engine.client(timeout=30).images.get(self.id).attrs["Size"])

    def frame(self):
        """The steps as a DataFrame (number, line, instruction, cached, seconds)."""
        import pandas as pd

        frame = pd.DataFrame([s.__dict__ for s in self.steps],
                             columns=["number", "line", "instruction", "cached", "seconds"])
        return frame.astype({"line": "Int64"})

    def __repr__(self) -> str:
        return (f"Build({self.tag!r}, id={self.id[7:19]!r}, steps={len(self.steps)}, "
                f"cached={self.cached_steps}, seconds={self.seconds:.1f})")


def build(
    context: str | Path,
    tag: str,
    *,
    dockerfile: str = "Dockerfile",
    nocache: bool = False,
    rm: bool = True,
    forcerm: bool = True,
    buildargs: Mapping[str, str] | None = None,
    target: str | None = None,
    labels: Mapping[str, str] | None = None,
    progress: bool = True,
    verbose: bool = False,
    cfg: Settings | None = None,
    timeout: int = 900,
    builder: str = "classic",
    secrets: Mapping[str, str | Path] | None = None,
) -> Build:
    """Build ``context``/``dockerfile`` as ``tag`` with the classic builder.

    ``rm`` removes intermediate containers after a successful step, ``forcerm`` also after
    a failed one (so a failed build leaves nothing behind). Layers are reused from the
    cache unless ``nocache``. The image carries the run-id label. ``verbose`` prints the
    output of each step (pip's, say) above the progress bar.

    ``builder="buildkit"`` builds with BuildKit instead (``docker buildx build``), where
    ``secrets`` maps a secret id to a file that ``RUN --mount=type=secret,id=...`` reads
    without it entering any layer; ``"auto"`` takes BuildKit when :func:`buildkit` finds it.
    The classic builder has no secrets: passing some is refused rather than leaked.

    >>> b = build("hello", "hello:1")                # doctest: +SKIP
    >>> b.cached_steps, b.tag                        # doctest: +SKIP
    (0, 'hello:1')
    """
    if builder not in ("classic", "buildkit", "auto"):
        raise ValueError(f"builder must be 'classic', 'buildkit' or 'auto'; got {builder!r}")
    if builder == "auto":
        builder = "buildkit" if buildkit()[0] else "classic"
    if builder == "buildkit":
        return build_buildkit(context, tag, dockerfile=dockerfile, nocache=nocache,
                              buildargs=buildargs, target=target, labels=labels,
                              secrets=secrets, progress=progress, verbose=verbose, cfg=cfg,
                              timeout=timeout)
    if secrets:
        raise ValueError("the classic builder has no build secrets (a build arg would end "
                         "up in the image history): use builder='buildkit'")
    cfg = cfg or settings()
    context, path = _sources(context, dockerfile)
    engine.require(cfg)
    parsed = instructions(path.read_text())
    api = engine.client(timeout=timeout, fresh=True)  # closed to cancel the build
    all_labels = {**cfg.labels(), **(labels or {})}
    steps: list[Step] = []
    log: list[str] = []
    start = began = time.monotonic()
    bar = _bar(progress, total=len(parsed) + 1, desc=f"build {tag}", unit="step")
    try:
        try:
            stream = api.api.build(
                path=str(context), dockerfile=dockerfile, tag=tag, decode=True, rm=rm,
                forcerm=forcerm, nocache=nocache, buildargs=dict(buildargs or {}),
                target=target, labels=all_labels, timeout=timeout,
            )
            for chunk in stream:
                if "error" in chunk:
                    message = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise _build_error(message, steps, parsed, "".join(log))
                text = chunk.get("stream", "")
                if not text:
                    continue
                log.append(text)
                step = re.match(r"Step (\d+)/(\d+) : (.*)", text)
                if step:
                    began = _finish(steps, began)
                    number, total = int(step.group(1)), int(step.group(2))
                    ins = parsed[number - 1] if number <= len(parsed) else None
                    shown = ins.text if ins else " ".join(step.group(3).split())
                    steps.append(Step(number, shown, ins.line if ins else None))
                    if bar is not None:
                        bar.total = total
                        bar.n = number - 1
                        bar.set_postfix_str(_short(step.group(3)), refresh=True)
                elif text.startswith(" ---> Using cache") and steps:
                    steps[-1].cached = True
                elif verbose and text.strip() and not text.startswith((" --->", "Removing")):
                    _say(bar, text.rstrip())
        except docker.errors.APIError as exc:
            raise _build_error(exc.explanation or str(exc), steps, parsed, "".join(log)) from None
        _finish(steps, began)
        if bar is not None:
            bar.n = bar.total
            bar.set_postfix_str(f"done ({sum(s.cached for s in steps)} cached)", refresh=True)
    except BaseException:
        # interrupted or failed: dropping the connection makes the engine cancel the
        # build, and forcerm removes the intermediate container
        api.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    image = api.images.get(tag)
    return Build(tag, image.id, time.monotonic() - start, steps, "".join(log))


def _sources(context: str | Path, dockerfile: str) -> tuple[Path, Path]:
    """The build context and its Dockerfile, both checked to exist."""
    context = Path(context)
    path = context / dockerfile
    if not context.is_dir():
        raise FileNotFoundError(f"build context {context} is not a folder")
    if not path.exists():
        raise FileNotFoundError(f"no Dockerfile at {path}")
    return context, path


def _finish(steps: list[Step], began: float) -> float:
    """Close the last step's clock; the time now (when the next step begins)."""
    now = time.monotonic()
    if steps:
        steps[-1].seconds = round(now - began, 3)
    return now


def _build_error(message: str, steps: list[Step], parsed: list[Instruction],
                 log: str) -> BuildError:
    """Turn the engine's message into one that names the Dockerfile line."""
    parse = re.search(r"parse error (?:on )?line (\d+): (.*)", message)
    if parse:
        line = int(parse.group(1))
        text = _line_text(parsed, line)
        detail = parse.group(2).strip()
        unknown = re.search(r"unknown instruction: (\S+)", detail)
        if unknown:
            guess = difflib.get_close_matches(unknown.group(1).upper(), INSTRUCTIONS, n=1)
            if guess:
                detail += f" (did you mean {guess[0]}?)"
        return BuildError(f"Dockerfile line {line}: `{text}`: {detail}", line=line,
                          instruction=text, log=log)
    step = steps[-1] if steps else None
    line = step.line if step else None
    where = f"Dockerfile line {line}: `{step.instruction}`" if step else "Dockerfile"
    instruction = step.instruction if step else ""
    if step and step.instruction.upper().startswith("FROM"):
        image = step.instruction.split()[1]
        return BuildError(f"{where}: the base image {image} is not present locally and "
                          f"cannot be pulled ({_pull_reason(message)}). For python:3.11-slim "
                          f"run `cloudlab images bootstrap`; otherwise build or pull {image} "
                          "while online.",
                          line=line, instruction=instruction, log=log)
    code = re.search(r"returned a non-zero code: (\d+)", message)
    if code:
        out = _step_output(log, step.number if step else 0)
        tail = "\n".join(out.splitlines()[-15:])
        return BuildError(f"{where} failed with exit code {code.group(1)}"
                          + (f"\n--- its output (last lines) ---\n{tail}" if tail else ""),
                          line=line, instruction=instruction, log=log)
    return BuildError(f"{where}: {message}", line=line, instruction=instruction, log=log)


def _pull_reason(message: str) -> str:
    low = message.lower()
    if any(k in low for k in ("no such host", "dial tcp", "timeout", "connection refused",
                              "network is unreachable", "i/o timeout")):
        return "no registry is reachable from here: offline"
    if any(k in low for k in ("not found", "does not exist", "pull access denied")):
        return "the registry has no such image, or it needs `docker login`"
    return message.split(":")[0]


def _line_text(parsed: list[Instruction], line: int) -> str:
    for ins in parsed:
        if ins.line == line:
            return ins.text
    return f"line {line}"


def _step_output(log: str, number: int) -> str:
    parts = re.split(r"Step \d+/\d+ : ", log)
    body = parts[number] if 0 < number < len(parts) else ""
    keep = [ln for ln in body.splitlines()[1:]
            if not ln.startswith((" --->", "Removing intermediate"))]
    return "\n".join(keep)


def _short(text: str, width: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _bar(enabled: bool, **kwargs: Any):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


def _say(bar: Any, text: str) -> None:
    if bar is not None:
        bar.write(text)
    else:
        print(text)


# ------------------------------------------------------------------------------ BuildKit
def buildkit(timeout: float = 30) -> tuple[bool, str]:
    """Whether BuildKit builds work here (``docker buildx``), and why not.

    BuildKit is the default builder of current Docker engines; the Docker CLI reaches it
    through the buildx plugin. An engine without it still builds with the classic builder.
    """
    try:
        out = run(["docker", "buildx", "version"], timeout=timeout).stdout.strip()
    except CommandError as exc:
        detail = [ln for ln in (exc.stderr or exc.stdout).splitlines() if ln.strip()]
        return False, ("`docker buildx` is not available ("
                       + (detail[0].strip() if detail else f"exit {exc.returncode}")
                       + f"): {BUILDX_HINT}")
    return True, out


def build_buildkit(
    context: str | Path,
    tag: str,
    *,
    dockerfile: str = "Dockerfile",
    nocache: bool = False,
    buildargs: Mapping[str, str] | None = None,
    target: str | None = None,
    labels: Mapping[str, str] | None = None,
    secrets: Mapping[str, str | Path] | None = None,
    progress: bool = True,
    verbose: bool = False,
    cfg: Settings | None = None,
    timeout: int = 900,
) -> Build:
    """Build with BuildKit (``docker buildx build --load``); see :func:`build`.

    BuildKit's plain progress output is parsed into the same :class:`Step` list: each
    ``#N [stage i/n] INSTRUCTION`` line opens a step and ``#N CACHED`` marks it cached.
    """
    cfg = cfg or settings()
    context, path = _sources(context, dockerfile)
    ok, why = buildkit()
    if not ok:
        raise UnavailableError(why)
    engine.require(cfg)
    parsed = instructions(path.read_text())
    cmd = ["docker", "buildx", "build", "--load", "--progress=plain", "-t", tag,
           "-f", str(path)]
    for key, value in {**cfg.labels(), **(labels or {})}.items():
        cmd += ["--label", f"{key}={value}"]
    for key, value in (buildargs or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    for sid, src in (secrets or {}).items():
        if not Path(src).is_file():
            raise FileNotFoundError(f"secret {sid!r}: {src} is not a file")
        cmd += ["--secret", f"id={sid},src={Path(src).resolve()}"]
    if nocache:
        cmd.append("--no-cache")
    if target:
        cmd += ["--target", target]
    cmd.append(str(context))
    steps: dict[str, Step] = {}
    log: list[str] = []
    start = time.monotonic()
    bar = _bar(progress, total=len(parsed), desc=f"buildkit {tag}", unit="step")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        for text in proc.stdout:
            log.append(text)
            vertex = re.match(r"#(\d+) \[(?:[\w.-]+ )?(\d+)/(\d+)\] (.*)", text)
            if vertex:
                number = int(vertex.group(2))
                ins = next((i for i in parsed if i.text == " ".join(vertex.group(4).split())),
                           parsed[number - 1] if number <= len(parsed) else None)
                steps.setdefault(vertex.group(1), Step(number, ins.text if ins else
                                                       vertex.group(4).strip(),
                                                       ins.line if ins else None))
                if bar is not None:
                    bar.n = number
                    bar.set_postfix_str(_short(vertex.group(4)), refresh=True)
            elif (done := re.match(r"#(\d+) (CACHED|DONE ([\d.]+)s)", text)) \
                    and done.group(1) in steps:
                step = steps[done.group(1)]
                step.cached = done.group(2) == "CACHED"
                step.seconds = float(done.group(3) or 0)
            elif verbose and text.strip():
                _say(bar, text.rstrip())
        code = proc.wait(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if bar is not None:
            bar.close()
    if code != 0:
        message = next((ln for ln in reversed(log) if "ERROR" in ln or "error" in ln),
                       f"docker buildx build exited {code}")
        raise _build_error(message.strip(), sorted(steps.values(), key=lambda s: s.number),
                           parsed, "".join(log))
    image = engine.client(timeout=60).images.get(tag)
    return Build(tag, image.id, time.monotonic() - start,
                 sorted(steps.values(), key=lambda s: s.number), "".join(log))
