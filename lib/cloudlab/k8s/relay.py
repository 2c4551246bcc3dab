"""A TCP relay from 127.0.0.1 to one checked address: a Service's ClusterIP, say.

``kubectl port-forward service/x`` picks ONE pod and sends everything there, so a load
test through it never spreads over the replicas the HPA adds. The relay instead opens a
new connection to the Service's virtual IP for every client connection, and kube-proxy's
rules pick a ready pod for each, as a cloud load balancer would. It listens on 127.0.0.1
only, and its target must be routed onto the node's bridge (checked before it starts).

>>> import socket, threading
>>> server = socket.create_server(("127.0.0.1", 0))
>>> def answer():
...     conn, _ = server.accept()
...     conn.sendall(conn.recv(5).upper())
...     conn.close()
>>> threading.Thread(target=answer, daemon=True).start()
>>> with Relay("127.0.0.1", server.getsockname()[1]) as relay:
...     with socket.create_connection(("127.0.0.1", relay.port)) as c:
...         c.sendall(b"hello")
...         c.recv(5)
b'HELLO'
"""

from __future__ import annotations

import contextlib
import socket
import threading

from ..lifecycle import Managed


class Relay(Managed):
    """Listen on ``127.0.0.1:port`` (0: a free one); copy each connection to
    ``target:target_port`` in both directions until either side closes."""

    def __init__(self, target: str, target_port: int, *, port: int = 0) -> None:
        self.target, self.target_port, self.port = target, target_port, port
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.5)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with self._lock:
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.close()
            self._conns.clear()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((self.target, self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns |= {client, upstream}
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
                with self._lock:
                    self._conns.discard(s)
