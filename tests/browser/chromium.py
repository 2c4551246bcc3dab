"""Headless Chromium driven over the DevTools protocol (a websocket; no extra packages).

The browser tier's one driver: start Chromium on a private profile, load a page, evaluate
JavaScript in it (awaiting promises), take screenshots. Loopback only, no background
networking; the process group is killed on stop, even after an error.

>>> with Chromium(profile) as page:                          # doctest: +SKIP
...     page.open("http://127.0.0.1:8888/lab")
...     page.evaluate("document.title")
...     page.screenshot(Path("runs/browser/lab.png"))
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import requests
import websocket

from cloudlab.errors import ServiceError
from cloudlab.lifecycle import Managed
from cloudlab.proc import wait_for

BINARY = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--window-size=1400,900", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0",
         # nothing leaves the machine: every request but loopback goes to a closed port
         # (a page's CDN script, or an address a student's HTML names, fails at once)
         "--proxy-server=127.0.0.1:9", "about:blank")


class BrowserError(RuntimeError):
    """A DevTools command failed, or the page threw."""


class Chromium(Managed):
    """One headless Chromium with one page; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, profile: Path, timeout: float = 60) -> None:
        if BINARY is None:
            raise BrowserError("Chromium not found (apt-get install chromium)")
        self.profile, self.timeout = Path(profile), timeout
        self.proc: subprocess.Popen | None = None
        self.ws: websocket.WebSocket | None = None
        self._ids = itertools.count(1)

    def start(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a previous browser's, on a reused profile
        log = self.profile / "chromium.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([BINARY, f"--user-data-dir={self.profile}", *FLAGS],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30,
                 what="Chromium's DevTools port", log=log)
        port = port_file.read_text().split()[0]
        pages = requests.get(f"http://127.0.0.1:{port}/json", timeout=5).json()
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=self.timeout,
                                              suppress_origin=True)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setFocusEmulationEnabled", enabled=True)  # as if in front
        return self

    def stop(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        self.proc = None

    def send(self, method: str, **params: Any) -> dict:
        """One DevTools command; its result (events in between are dropped)."""
        if self.ws is None:
            raise BrowserError("the browser is not started")
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited); page errors raise."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return result["result"].get("value")

    def command(self, name: str, **args: Any) -> None:
        """Run a JupyterLab command, as its menu item or shortcut would (needs the app
        exposed: ``--LabApp.expose_app_in_browser=True``)."""
        self.evaluate(f"window.jupyterapp.commands.execute({json.dumps(name)}, "
                      f"{json.dumps(args)}).then(() => true)")

    def click(self, element: str) -> None:
        """Click the middle of the element a JavaScript expression finds, as a mouse would."""
        box = self.evaluate(f"(() => {{ const r = ({element}).getBoundingClientRect();"
                            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> Any:
        """Poll a JavaScript expression until it is truthy; its value. On a timeout the
        error shows where the page is and the start of its text (a page's "log")."""
        try:
            return wait_for(lambda: self.evaluate(expression), timeout=timeout, interval=0.5,
                            what=what)
        except ServiceError as exc:
            try:
                seen = self.evaluate("location.href + ' | ' + document.title + '\\n'"
                                     " + (document.body ? document.body.innerText : '')"
                                     ".slice(0, 800)")
            except Exception as why:  # the page itself is gone
                seen = f"(the page did not answer: {why})"
            raise ServiceError(f"{exc}\n--- the page ---\n{seen}") from None

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot")["data"]))
        print(f"screenshot: {path}")
        return path
