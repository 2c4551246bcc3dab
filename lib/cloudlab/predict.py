"""The service under test: the chapter's Flask prediction app, modernised.

A random forest fitted on scikit-learn's diabetes data (the chapter's Boston housing set
was removed from scikit-learn) is saved with ``joblib`` and served by Flask with
``/predict``, ``/healthz`` and ``/metrics`` (prometheus_client: a latency histogram, a
request counter and the process's CPU). The service is one self-contained file,
:data:`SOURCE`; :func:`image` builds it into an image from the offline base (the model
is trained at build time) and :func:`serve` runs it with its port on 127.0.0.1.

The image is a cache keyed by the hash of its inputs: it is built once and reused by
every run. It is labelled ``org.cloudlab.run-id=cache``, so ``cloudlab cleanup
--run-id X`` keeps it and a full ``cloudlab cleanup`` removes it.

>>> with serve() as box:                                          # doctest: +SKIP
...     requests.post(box.url + "/predict", json={"features": [[0] * 10]}).json()
{'prediction': [152.4], 'replica': '3f2a...', 'version': 'v1'}
>>> sorted(REQUIREMENTS)
['flask', 'joblib', 'prometheus-client', 'scikit-learn']
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from . import docker, images
from .config import LABEL, Settings, settings
from .errors import ServiceError
from .proc import wait_for

SOURCE = Path(__file__).parent / "data" / "predict_service.py"
REQUIREMENTS = {"flask": "3.1.3", "scikit-learn": "1.9.1", "joblib": "1.6.0",
                "prometheus-client": "0.26.0"}
PORT = 8000  # inside the container
CACHE_LABEL = "cache"  # run-id label value of images shared by every run
# bash's /dev/tcp: a health check that costs almost no CPU (a Python one costs ~0.1 s of
# CPU, and a replica under load must not miss its check for want of CPU)
HEALTH_CMD = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{PORT} && "
              "printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]


def service() -> ModuleType:
    """The service file loaded as a module (to train or test it without a container).

    >>> service().FEATURES[:3]
    ('age', 'sex', 'bmi')
    """
    spec = importlib.util.spec_from_file_location("predict_service", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(out: str | Path, trees: int = 60) -> dict[str, Any]:
    """Fit the model on this machine, as the image does at build time; its test R².

    >>> train(tempfile.mkdtemp() + "/model.joblib")["r2"] > 0.3        # doctest: +SKIP
    True
    """
    return service().train(out, trees)


def app(model_path: str | Path):
    """The Flask app around a saved model (use ``app(...).test_client()`` in tests)."""
    return service().create_app(model_path)


def dockerfile(base: str | None = None) -> str:
    """The service's Dockerfile: pinned dependencies first, model trained at build time.

    >>> "RUN python app.py train" in dockerfile("python:3.11-slim")
    True
    """
    base = base or settings().base_image
    health = json.dumps(HEALTH_CMD)
    return f"""\
FROM {base}
RUN useradd --create-home --no-log-init --uid 10001 app
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py .
RUN python app.py train --out /app/model.joblib
USER 10001
EXPOSE {PORT}
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD {health}
ENTRYPOINT ["python", "app.py"]
CMD ["serve", "--port", "{PORT}"]
"""


def requirements() -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(REQUIREMENTS.items()))


def context(folder: str | Path, base: str | None = None) -> Path:
    """Write the build context (app.py, requirements.txt, Dockerfile) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(SOURCE.read_text())
    (folder / "requirements.txt").write_text(requirements())
    (folder / "Dockerfile").write_text(dockerfile(base))
    return folder


def tag(cfg: Settings | None = None) -> str:
    """The image tag: ``cloudlab-predict:<hash of the source, requirements and base>``.

    >>> tag().startswith("cloudlab-predict:")
    True
    """
    cfg = cfg or settings()
    digest = hashlib.sha256()
    for part in (SOURCE.read_text(), requirements(), dockerfile(cfg.base_image)):
        digest.update(part.encode())
    return f"cloudlab-predict:{digest.hexdigest()[:12]}"


def image(cfg: Settings | None = None, progress: bool = True) -> str:
    """Build the service image once (the first build installs scikit-learn: a minute or
    two); later calls find it cached. Returns its tag."""
    cfg = cfg or settings()
    wanted = tag(cfg)
    if images.present(wanted):
        return wanted
    images.bootstrap(cfg.base_image, cfg)
    with tempfile.TemporaryDirectory(prefix="cloudlab-predict-") as tmp:
        docker.build(context(tmp, cfg.base_image), wanted, progress=progress, cfg=cfg,
                     labels={LABEL: CACHE_LABEL})
    return wanted


class Server(docker.Container):
    """The service in one container, its port published on 127.0.0.1.

    ``url`` is where it answers; ``start()`` waits until ``/healthz`` says ok.
    """

    def __init__(self, *, port: int | None = None, version: str = "v1", work: int = 2,
                 cpus: float | None = 1.0, env: dict[str, str] | None = None,
                 cfg: Settings | None = None, name: str | None = None) -> None:
        cfg = cfg or settings()
        environment = {"APP_VERSION": version, "PREDICT_WORK": str(work), **(env or {})}
        super().__init__(tag(cfg), ports={PORT: port}, env=environment, cpus=cpus,
                         memory="512m", name=name, cfg=cfg, init=False)
        self.version = version

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port(PORT)}"

    def start(self) -> Server:
        if self._box is not None:
            return self
        image(self.cfg, progress=False)
        super().start()
        try:
            wait_for(self._healthy, timeout=60, what=f"the prediction service at {self.url}")
        except ServiceError as exc:
            logs = self.logs(tail=20)
            self.stop()
            raise ServiceError(f"{exc}\n--- container log ---\n{logs}") from None
        return self

    def _healthy(self) -> bool:
        return requests.get(self.url + "/healthz", timeout=2).status_code == 200

    def predict(self, rows: list[list[float]]) -> dict[str, Any]:
        """POST rows of the 10 features to ``/predict``; the JSON answer."""
        answer = requests.post(self.url + "/predict", json={"features": rows}, timeout=10)
        if answer.status_code != 200:
            raise ServiceError(f"/predict answered {answer.status_code}: {answer.text.strip()}")
        return answer.json()


def serve(**options: Any) -> Server:
    """A :class:`Server` (not started): use it in a ``with`` block."""
    return Server(**options)


def sample_rows(n: int = 100, seed: int = 0) -> list[list[float]]:
    """``n`` rows of real feature values from the diabetes data (request payloads).

    >>> len(sample_rows(3)[0])
    10
    """
    import numpy as np
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data
    picks = np.random.default_rng(seed).integers(0, len(x), n)
    return [[round(float(v), 5) for v in x[i]] for i in picks]
