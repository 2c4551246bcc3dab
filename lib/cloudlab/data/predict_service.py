#!/usr/bin/env python
"""The prediction service: a scikit-learn model behind Flask, with Prometheus metrics.

This file is the whole service. ``cloudlab.predict`` copies it into an image's build
context as ``app.py``; the image trains the model at build time and serves it:

    python app.py train --out model.joblib     # fit on scikit-learn's diabetes data
    python app.py serve --port 8000            # /predict, /healthz, /metrics

It imports nothing from cloudlab, so the image needs only its pinned requirements.

Environment knobs (read at start):
  APP_VERSION     reported by /predict and as a metric label (a rolling update changes it)
  PREDICT_WORK    model evaluations per request: the CPU cost of one request (default 2)
  FAIL_HEALTH     "1" makes /healthz answer 503 (to show a health-checked rollback)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)


def train(out: str | Path = "model.joblib", trees: int = 60, seed: int = 0) -> dict:
    """Fit a random forest on ``load_diabetes`` and save it with joblib; its test score."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed)
    model = RandomForestRegressor(n_estimators=trees, max_depth=8, random_state=seed)
    model.fit(x_train, y_train)
    joblib.dump(model, out)
    return {"r2": round(float(model.score(x_test, y_test)), 3), "trees": trees,
            "train_rows": len(x_train), "test_rows": len(x_test), "path": str(out)}


def create_app(model_path: str | Path = "model.joblib"):
    """The Flask app: /predict (POST JSON rows or GET for a sample), /healthz, /metrics."""
    import joblib
    import numpy as np
    from flask import Flask, jsonify, request
    from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

    model = joblib.load(model_path)
    version = os.environ.get("APP_VERSION", "v1")
    work = max(1, int(os.environ.get("PREDICT_WORK", "2")))
    fail_health = os.environ.get("FAIL_HEALTH", "") == "1"
    replica = socket.gethostname()
    sample = np.zeros((1, len(FEATURES)))

    app = Flask("predict")
    requests_total = Counter("predict_requests_total", "Requests served, by endpoint and code",
                             ["endpoint", "code"])
    latency = Histogram("predict_request_seconds", "Time to answer a request, by endpoint",
                        ["endpoint"], buckets=BUCKETS)
    inflight = Gauge("predict_inflight_requests", "Requests being answered right now")
    info = Gauge("predict_build_info", "The running version", ["version"])
    info.labels(version).set(1)

    @app.before_request
    def _start():
        request.environ["predict.t0"] = time.perf_counter()
        inflight.inc()

    @app.after_request
    def _count(response):
        inflight.dec()
        endpoint = request.path if request.path in ("/predict", "/healthz") else "other"
        if request.path != "/metrics":
            took = time.perf_counter() - request.environ.get("predict.t0", time.perf_counter())
            latency.labels(endpoint).observe(took)
            requests_total.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.route("/predict", methods=["GET", "POST"])
    def predict():
        rows = sample
        if request.method == "POST":
            body = request.get_json(silent=True) or {}
            raw = body.get("features")
            try:
                rows = np.asarray(raw, dtype=float).reshape(-1, len(FEATURES))
            except (TypeError, ValueError):
                return jsonify(error=f"'features' must be rows of {len(FEATURES)} numbers "
                                     f"({', '.join(FEATURES)})"), 400
        for _ in range(work - 1):  # the knob that makes one request cost more CPU
            model.predict(rows)
        values = model.predict(rows)
        return jsonify(prediction=[round(float(v), 2) for v in values], version=version,
                       replica=replica)

    @app.route("/healthz")
    def healthz():
        if fail_health:
            return jsonify(status="failing", version=version), 503
        return jsonify(status="ok", version=version, replica=replica)

    @app.route("/metrics")
    def metrics():
        return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    return app


def serve(port: int = 8000, host: str = "0.0.0.0", model_path: str | Path = "model.joblib",
          ) -> int:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and exit 0."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server(host, port, create_app(model_path), threaded=True)

    def stop(signum, frame):
        print(f"signal {signum}: shutting down", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving on {host}:{port} (version {os.environ.get('APP_VERSION', 'v1')})",
          flush=True)
    server.serve_forever()
    print("stopped cleanly", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit the model and save it")
    t.add_argument("--out", default="model.joblib")
    t.add_argument("--trees", type=int, default=60)
    s = sub.add_parser("serve", help="serve the model over HTTP")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--model", default="model.joblib")
    args = p.parse_args(argv)
    if args.command == "train":
        print(train(args.out, args.trees), flush=True)
        return 0
    return serve(args.port, args.host, args.model)


if __name__ == "__main__":
    sys.exit(main())
