"""One long core call at a time in a thread worker, with a progress bar, a Cancel button and a status line.

The widgets run the core this way: a superqt worker, the core's
``progress(fraction, message)`` relayed to the GUI thread by a queued
signal, and a :class:`dcxcount.progress.CancelToken` that the core checks
between its steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ._compat import keep_triton_from_system_llvm

__all__ = ["TaskPanel"]

_BAR_STEPS = 1000


class _Relay(QObject):
    """Lives in the GUI thread; a signal emitted from the worker thread is queued to it."""

    progressed = Signal(float, str)


class TaskPanel(QWidget):
    """A progress bar, a Cancel button and a status line for one task at a time.

    Attributes
    ----------
    result : Any
        What the last task returned (None when it failed or was cancelled).
    error : BaseException or None
        Why the last task ended without a result.
    relay : QObject
        Its ``progressed(fraction, message)`` signal carries the task's reports to the GUI thread.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Any = None
        self.error: BaseException | None = None
        self.worker: Any = None
        self._token: Any = None
        self.relay = _Relay(self)
        self.relay.progressed.connect(self._on_progress)
        self.bar = QProgressBar()
        self.bar.setRange(0, _BAR_STEPS)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # Room for a two-line message: a word-wrapped label in a dock is otherwise squeezed to one.
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing() + 4)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.redact: Callable[[str], str] = lambda text: text  # blinded review hides names in messages

    @property
    def running(self) -> bool:
        return self._token is not None

    def start(self, task: Callable[..., Any], *, done: Callable[[Any], None],
              failed: Callable[[BaseException], None] | None = None,
              finished: Callable[[], None] | None = None, message: str = "Starting…",
              cancelled: str = "Cancelled.") -> Any:
        """Run ``task(progress=..., cancel=...)`` in a thread; call `done` with its result in the GUI thread.

        `failed` is called with an error other than a cancel, `finished` when
        the task ended however it ended; `cancelled` is the status shown after a cancel.

        Returns
        -------
        superqt.utils.FunctionWorker or None
            None when a task is already running.
        """
        if self.running:
            return None
        from superqt.utils import create_worker

        keep_triton_from_system_llvm()  # the task will import the core's torch (see _compat)
        from dcxcount.progress import CancelToken

        token = CancelToken()
        relay = self.relay.progressed

        def run() -> Any:
            return task(progress=lambda fraction, text: relay.emit(float(fraction), str(text)), cancel=token)

        def returned(result: Any) -> None:
            self.result = result
            done(result)

        def errored(error: BaseException) -> None:
            from dcxcount.progress import Cancelled

            self.error = error
            if isinstance(error, Cancelled):
                self.set_status(cancelled)
                return
            self.set_status(f"Failed: {error}")
            if failed is not None:
                failed(error)

        def ended() -> None:
            self._token = None
            self.cancel_button.setEnabled(False)
            self.bar.setValue(_BAR_STEPS if self.error is None else 0)
            if finished is not None:
                finished()

        self.result, self.error, self._token = None, None, token
        # superqt's worker: napari's thread_worker reports a cancel as a failed task.
        self.worker = create_worker(run, _start_thread=False,
                                    _connect={"returned": returned, "errored": errored, "finished": ended})
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.set_status(message)
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Ask the running task to stop at the core's next step."""
        if self._token is not None:
            self._token.cancel()
            self.set_status("Cancelling…")

    def _on_progress(self, fraction: float, message: str) -> None:
        if self._token is None or self._token.cancelled:
            return  # a late report from a task being cancelled
        self.bar.setValue(round(fraction * _BAR_STEPS))
        self.set_status(message)

    def set_status(self, text: str) -> None:
        self.status.setText(self.redact(text))
