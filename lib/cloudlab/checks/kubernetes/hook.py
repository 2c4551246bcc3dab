"""The trusted side of ``kubernetes``: the grader's pre-grade hook and its after-grading one.

:func:`manifest_side` runs on the host before the notebook (never in the sandbox): every
static rule on the submitted files, then the cluster check; its results reach the kernel
read-only and ``solutions/kubernetes/grader.py``, which turns them into points.

On a grading cluster with a real node of this machine (:func:`.cluster.grading_kind`),
the submitted ``Dockerfile`` is built first, confined exactly as ``docker-hub``'s hook
builds (:func:`cloudlab.grading.hooks.build_image`: the build policy of
:mod:`cloudlab.grading.dockerfile`, a jailed engine whose only way out is the package
index), and loaded into the node (:func:`cloudlab.k8s.node.load_image`). Identical build
inputs (the Dockerfile and the files it copies, byte for byte) give the same image, so a
build is made once per distinct input and shared by the run (:func:`build_key`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from ...grading.hooks import HookContext, Results, after_grading, pre_grade
from ...proc import file_lock
from .cluster import (
    Grading,
    cluster_check,
    detect,
    drain_grading_pool,
    grading_cluster,
)
from .rules import (
    ASSIGNMENT,
    GRADING_KUBECONFIG_ENV,
    READY_TIMEOUT,
    STATIC_RULES,
    read_files,
    result,
)

DOCKERFILE = "Dockerfile"
REAL_READY_TIMEOUT = 60.0  # a real pod: the image's start, then the first probes
IMAGE_PREFIX = "cloudlab.local/kgrade-"


@pre_grade(ASSIGNMENT)
def manifest_side(ctx: HookContext) -> Results:
    """The grader's host-side work: every static rule, then the cluster (if configured):
    on a real node with the submission's own image, else on kwok's simulated pods. The
    cluster's verdict starts with which kind of cluster graded."""
    texts = read_files(ctx.files)
    out: Results = {key: rule(texts) for key, rule in STATIC_RULES.items()}
    target = grading_cluster()
    if target is None:
        out["cluster"] = result(False, "no grading cluster is configured (the instructor sets "
                                f"{GRADING_KUBECONFIG_ENV}); the cluster part was not graded")
        return out
    grading = detect(*target)
    image = None
    if grading.real:
        image, why = node_image(ctx, target)
        if image is None:
            out["cluster"] = _labelled(grading, result(
                False, f"not applied: your image could not be run on the node: {why}"))
            return out
    timeout = min(ctx.timeout, REAL_READY_TIMEOUT if grading.real else READY_TIMEOUT)
    verdict = cluster_check(texts, target[0], context=target[1], labels=ctx.labels,
                            timeout=timeout, grading=grading, image=image)
    out["cluster"] = _labelled(grading, verdict)
    return out


def _labelled(grading: Grading, verdict: dict) -> dict:
    """The verdict saying which kind of cluster graded: in its message, and as
    ``graded_on`` (the notebook's setup cell shows it in the feedback, passed or not)."""
    verdict["message"] = f"[{grading.label()}] {verdict['message']}"
    verdict["graded_on"] = grading.label()
    if isinstance(verdict.get("data"), dict):
        verdict["data"]["cluster_kind"] = grading.kind
    return verdict


@after_grading(ASSIGNMENT)
def finish_grading() -> list[str]:
    """After a grading run: the configured grading cluster's pool namespaces deleted and
    the images loaded into its real node removed (nothing to do without one); the
    namespaces deleted."""
    target = grading_cluster()
    if not target:
        return []
    drained = drain_grading_pool(*target)
    forget_images(*target)
    return drained


# ------------------------------------------------------------------ the node's images

def build_key(folder: Path, dockerfile: str = DOCKERFILE) -> str:
    """What the build of ``folder/dockerfile`` reads, hashed: the Dockerfile and every file
    its COPY/ADD instructions name (plain file names only); anything else (a folder, a
    wildcard, a variable, a Dockerfile the parser refuses) hashes the whole context.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "Dockerfile").write_text("FROM python:3.11-slim\\nCOPY app.py .\\n")
    >>> _ = (d / "app.py").write_text("print(1)\\n")
    >>> k = build_key(d)
    >>> _ = (d / "notes.txt").write_text("not read by the build")
    >>> build_key(d) == k
    True
    >>> _ = (d / "app.py").write_text("print(2)\\n")
    >>> build_key(d) == k
    False
    """
    from ...config import settings
    from ...grading import dockerfile as rules

    h = hashlib.sha256()
    text = (folder / dockerfile).read_bytes()
    h.update(b"base\0" + settings().base_image.encode() + b"\0dockerfile\0" + text)
    names: list[str] | None = []
    try:
        for ins in rules.instructions(text.decode(errors="replace")):
            if ins.keyword not in ("COPY", "ADD"):
                continue
            if any(f.startswith("--from") for f in ins.flags):
                continue  # from a stage or an allowed image: no file of the context
            for source in ins.words[:-1]:
                path = folder / source
                if any(c in source for c in "*?[$\\") or source.startswith("/") \
                        or ".." in Path(source).parts or not path.is_file() \
                        or path.is_symlink():
                    names = None
                    break
                names.append(source)
            if names is None:
                break
    except rules.Undecided:
        names = None
    ignore = folder / ".dockerignore"
    files = sorted(set(names)) if names is not None else sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if ignore.is_file():
        files = sorted({*files, ".dockerignore"})
    for name in files:
        h.update(b"\0file\0" + name.encode() + b"\0" + (folder / name).read_bytes())
    return h.hexdigest()


def _cache(target: tuple[str, str | None]) -> Path:
    from ...k8s.pool import folder_for

    folder = folder_for(*target) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def node_image(ctx: HookContext, target: tuple[str, str | None]) -> tuple[str | None, str]:
    """The submission's image in the real node's containerd: ``(name, "")``, or ``(None,
    why)`` (no Dockerfile, refused by the build policy, a failed build, ...). Built once per
    :func:`build_key` in a grading run (a second submission with the same inputs waits for
    the first build and reuses it)."""
    from ... import engine
    from ...grading import hooks
    from ...k8s import node

    if not (ctx.files / DOCKERFILE).is_file() or (ctx.files / DOCKERFILE).is_symlink():
        return None, f"there is no {DOCKERFILE} in the submission (part B writes it)"
    key = build_key(ctx.files)
    name = f"{IMAGE_PREFIX}{key[:20]}:1.1"
    cache = _cache(target)
    with file_lock(cache / f"{key[:20]}.lock"):
        if (cache / f"{key[:20]}.json").is_file() and node.has_image(name):
            return name, ""
        built = hooks.build_image(ctx, DOCKERFILE, network="proxy",
                                  timeout=max(30.0, min(ctx.timeout - 60, 600)))
        if not built.ok:
            tail = built.log.strip().splitlines()[-3:] if built.log else []
            return None, f"{built.message}" + (f" ({' / '.join(tail)[-300:]})" if tail else "")
        started = time.monotonic()
        api = engine.client(timeout=120).api
        try:
            api.tag(built.tag, name.rsplit(":", 1)[0], name.rsplit(":", 1)[1])
            node.load_image(name)
        except Exception as exc:
            return None, f"the grader could not load the image into the node: {exc}"[:400]
        finally:
            with contextlib.suppress(Exception):
                api.remove_image(name, noprune=True)  # the node holds it now
        (cache / f"{key[:20]}.json").write_text(json.dumps(
            {"image": name, "build_seconds": built.seconds,
             "load_seconds": time.monotonic() - started}))
    return name, ""


def forget_images(kubeconfig: str | Path, context: str | None = None) -> int:
    """Remove the images this run loaded into the real node. Their records stay, marked
    removed, with what each build and load took (:func:`builds`), until the pool's
    folder goes with the cluster; a removed image is built again when next needed."""
    from ...k8s import node

    removed = 0
    for rec, data in _records(kubeconfig, context):
        image = str(data.get("image", ""))
        with contextlib.suppress(Exception):
            if image.startswith(IMAGE_PREFIX) and node.remove_image(image):
                removed += 1
        rec.write_text(json.dumps({**data, "removed": True}))
    return removed


def builds(kubeconfig: str | Path, context: str | None = None) -> list[dict]:
    """The images grading runs built for this cluster: image, build and load seconds."""
    return [data for _, data in _records(kubeconfig, context)]


def _records(kubeconfig: str | Path, context: str | None) -> list[tuple[Path, dict]]:
    from ...k8s.pool import folder_for

    out = []
    for rec in sorted((folder_for(kubeconfig, context) / "images").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(rec.read_text())
            if isinstance(data, dict):
                out.append((rec, data))
    return out
