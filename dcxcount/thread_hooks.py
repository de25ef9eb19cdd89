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
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["ThreadScopedHook", "carried"]

T = TypeVar("T")
R = TypeVar("R")

_HOOKS: list[ThreadScopedHook] = []


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
        _HOOKS.append(self)

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


def carried(function: Callable[..., R]) -> Callable[..., R]:
    """``function``, to be run in a pool's thread with every hook's value of the thread calling this.

    A section that hands work to a thread pool (a mosaic's tiles) keeps what
    that work warns or logs as its own.
    """
    values = [(hook, value) for hook in _HOOKS if (value := hook.current()) is not None]
    if not values:
        return function

    @functools.wraps(function)
    def run(*args, **kwargs) -> R:
        with contextlib.ExitStack() as stack:
            for hook, value in values:
                stack.enter_context(hook(value))
            return function(*args, **kwargs)

    return run
