"""The grading image's prune never takes an image another grader may be using."""

from __future__ import annotations

import io
import secrets

from cloudlab import engine
from cloudlab.grading import image


def _images(repo: str, n: int) -> list[str]:
    api = engine.client(timeout=120)
    tags = []
    for i in range(n):
        tag = f"{repo}:{i}"
        dockerfile = f"FROM scratch\nLABEL n={i} repo={repo}\n".encode()
        api.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
        tags.append(tag)
    return tags


def test_prune_spares_the_kept_the_newest_the_used_and_the_recent(docker_engine):
    repo = f"cloudlab-test-prune-{secrets.token_hex(3)}"
    api = engine.client(timeout=120)
    tags = _images(repo, 6)
    user = api.containers.create(tags[0], command=["x"])  # an image some grader runs
    try:
        image._prune(keep=tags[1], newest=2, repository=repo)  # all made just now
        assert len(api.images.list(name=repo)) == 6
        image._prune(keep=tags[1], newest=2, grace=0, repository=repo)
        left = {t for i in api.images.list(name=repo) for t in i.tags}
        assert tags[0] in left and tags[1] in left  # in use, kept
        assert len(left) == 4  # and the two newest; the other two went
    finally:
        user.remove(force=True)
        for i in api.images.list(name=repo):
            api.images.remove(i.id, force=True)
