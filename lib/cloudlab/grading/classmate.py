"""The ``docker-hub`` exercise's classmate image, published by the instructor.

Part D asks students to pull a classmate's image and record what it prints. What it prints
is a per-course secret: made once at random, kept in the grading state
(``course/registry/classmate.json``, never in the library, the exercise or the student
edition) and baked into the image the instructor pushes to the course registry when the
exercise is released. A student can only learn it by pulling and running the image; the
grader compares their answer with the secret on the trusted side.

>>> publish(Course())                                         # doctest: +SKIP
'127.0.0.1:5000/classmate/hello-cli:1.0'
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

from ..config import Settings, settings
from . import roster
from .course import Course

REPOSITORY = "classmate/hello-cli"
VERSION = "1.0"
WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris",
         "juniper", "kestrel", "lagoon", "meadow", "nimbus", "orchid", "pebble", "quartz",
         "raven", "sierra", "tundra", "umber", "violet", "willow", "zephyr")

APP = '''\
"""A classmate's hello-world CLI: `python classmate.py hello` greets whoever pulled it."""
import argparse

parser = argparse.ArgumentParser(description="a classmate's hello-world CLI")
parser.add_argument("command", choices=["hello"])
parser.parse_args()
print({message!r})
'''

DOCKERFILE = """\
FROM {base}
RUN useradd --create-home --no-log-init --uid 10001 grace
WORKDIR /app
COPY classmate.py .
USER 10001
ENTRYPOINT ["python", "classmate.py"]
CMD ["hello"]
"""


def _path(course: Course) -> Path:
    return roster.folder(course) / "classmate.json"


def message(course: Course, *, create: bool = False) -> str | None:
    """This course's secret message (made on first use when ``create``; else None)."""
    path = _path(course)
    if path.exists():
        return json.loads(path.read_text())["message"]
    if not create:
        return None
    words = "-".join(secrets.choice(WORDS) for _ in range(2)) + f"-{secrets.randbelow(10000)}"
    text = f"Hello from Grace's container! Your pull worked; the word is {words}."
    path.parent.mkdir(parents=True, exist_ok=True)
    roster._write_private(path, json.dumps({"message": text}))
    return text


def ref(cfg: Settings | None = None) -> str:
    return f"{(cfg or settings()).registry_host}/{REPOSITORY}:{VERSION}"


def publish(course: Course, cfg: Settings | None = None, *, progress: bool = False) -> str:
    """Build the classmate's image with this course's message and push it; its reference.

    Pushes as the roster's instructor when the course registry has accounts. Running it
    again gives the same image (the build is cached, the message kept).
    """
    from .. import docker as cdocker
    from .. import registry

    cfg = cfg or settings()
    said = message(course, create=True)
    target = ref(cfg)
    auth = None
    if (roster.folder(course) / "credentials.json").exists():
        data = json.loads((roster.folder(course) / "credentials.json").read_text())
        boss = next((u for u, e in data.items() if e.get("role") == "instructor"), None)
        auth = roster.credentials(course, boss, cfg) if boss else None
    with tempfile.TemporaryDirectory(prefix="cloudlab-classmate-") as tmp:
        folder = Path(tmp)
        (folder / "classmate.py").write_text(APP.format(message=said))
        (folder / "Dockerfile").write_text(DOCKERFILE.format(base=cfg.base_image))
        built = cdocker.build(folder, f"cloudlab-classmate:{VERSION}", progress=progress,
                              cfg=cfg)
    registry.push(registry.tag(built.tag, target), auth=auth, progress=progress)
    return target
