"""The downstream HTTP service of :class:`cloudlab.dr.Downstream` (stdlib only).

``POST /jobs`` appends ``{"at": ..., "body": ...}`` to the journal and answers 200; a body
containing ``poison`` is refused with 500 every time; ``GET /health`` answers 200.
Run by path (``python _downstream.py --port N --journal FILE``) so that it starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def serve(host: str, port: int, journal: Path) -> None:
    """Run the downstream HTTP service until killed."""
    journal.parent.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(200 if self.path == "/health" else 404, b"ok\n")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            if "poison" in body:
                self._reply(500, b"cannot process this message\n")
                return
            with open(journal, "a") as fh:
                fh.write(json.dumps({"at": time.time(), "body": body}) + "\n")
            self._reply(200, b"accepted\n")

        def _reply(self, code: int, text: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"{time.strftime('%T')} {fmt % args}\n")
            sys.stderr.flush()

    ThreadingHTTPServer((host, port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.journal)


if __name__ == "__main__":
    main()
