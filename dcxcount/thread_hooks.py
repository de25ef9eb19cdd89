"""A process-wide hook, installed while any thread needs it, that serves each thread its own value.

Python's warning filters, ``warnings.showwarning`` and loggers are process-wide,
while ``--workers N`` counts N sections in threads at once. Installing and
restoring such a hook around each section would race (one thread restores what
another just replaced) and mix the sections' lines. Instead the first user
installs it, the last one restores what was there, and whatever the hook
collects goes to the value of the thread it came from.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["ThreadScopedHook"]

T = TypeVar("T")


class ThreadScopedHook(Generic[T]):
    """``with hook(value):`` the hook is installed, and :meth:`current` is ``value`` in this thread.

    Parameters
    ----------
    install : callable
        Installs the hook and returns the function that removes it again.
        Called when the first thread enters; its remover when the last one
        leaves, in whichever thread that is.
    """

    def __init__(self, install: Callable[[], Callable[[], None]]) -> None:
        self._install = install
        self._lock = threading.Lock()
        self._users = 0
        self._remove: Callable[[], None] | None = None
        self._values = threading.local()

    def current(self) -> T | None:
        """This thread's value (None outside a ``with`` block of this thread)."""
        return getattr(self._values, "value", None)

    @contextlib.contextmanager
    def __call__(self, value: T) -> Iterator[T]:
        with self._lock:
            if self._users == 0:
                self._remove = self._install()
            self._users += 1
        outer, self._values.value = self.current(), value
        try:
            yield value
        finally:
            self._values.value = outer
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._remove()
                    self._remove = None
