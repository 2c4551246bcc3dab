"""One shape for every long-lived thing: ``start()``, an idempotent ``stop()``, and a
context manager that stops it again if starting fails in any way (KeyboardInterrupt too).

>>> class Server(Managed):
...     def start(self):
...         raise KeyboardInterrupt          # interrupted half way through starting
...     def stop(self):
...         print("stopped")
>>> try:
...     with Server():
...         pass
... except KeyboardInterrupt:
...     print("interrupted")
stopped
interrupted
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound="Managed")


class Managed:
    """Mixin: subclasses define ``start()`` (returning the object) and ``stop()``."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
