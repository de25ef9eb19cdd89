"""One progress-and-cancel protocol for counting a section, a study and training.

Long calls take two keyword arguments:

``progress``
    A :data:`ProgressCallback`, called as ``progress(fraction, message)`` with
    the fraction of the call's work done (0 to 1) and what it is doing now.
    The CLI draws a bar from it; the napari plugin a progress bar.
``cancel``
    A :class:`CancelToken`. Another thread calls :meth:`CancelToken.cancel`;
    the long call checks the token between steps and raises
    :class:`Cancelled`, leaving whatever it had saved complete.

A call made of parts hands each part a :func:`sub_progress` that maps the
part's own 0-1 onto its share of the whole, so a section counted inside a
study reports the study's fraction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ProgressCallback", "CancelToken", "Cancelled", "sub_progress", "report"]

ProgressCallback = Callable[[float, str], None]
"""Called as ``progress(fraction, message)``; ``fraction`` runs from 0 to 1."""


class Cancelled(Exception):
    """Raised by a long call whose :class:`CancelToken` was cancelled, between two of its steps."""


class CancelToken:
    """A flag one thread sets and a long call in another thread checks between steps.

    Parameters
    ----------
    parent : CancelToken, optional
        This token is cancelled too when ``parent`` is, so a run can stop its
        own calls without touching its caller's token.
    """

    def __init__(self, *, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent

    def cancel(self) -> None:
        """Ask the call holding this token to stop at its next step."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called (on this token or its parent)."""
        if self.cancelled:
            raise Cancelled("cancelled")


def report(progress: ProgressCallback | None, cancel: CancelToken | None, fraction: float, message: str) -> None:
    """A step boundary: stop here if cancelled, else tell ``progress`` where the call is."""
    if cancel is not None:
        cancel.check()
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def sub_progress(progress: ProgressCallback | None, start: float, stop: float,
                 prefix: str = "") -> ProgressCallback | None:
    """A callback for a part of a call that covers ``start``-``stop`` of the whole.

    Parameters
    ----------
    progress : callable or None
        The whole call's callback (None gives None).
    start, stop : float
        The part's share of the whole, as fractions.
    prefix : str
        Put before each of the part's messages (e.g. the section's name).
    """
    if progress is None:
        return None

    def part(fraction: float, message: str) -> None:
        progress(start + (stop - start) * min(max(fraction, 0.0), 1.0), f"{prefix}{message}")

    return part
