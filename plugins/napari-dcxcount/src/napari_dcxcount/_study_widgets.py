"""The Fine-tune and Agreement widgets: thin Qt over :mod:`._study`.

Both run the core in a thread worker (:class:`._tasks.TaskPanel`) so the
viewer stays usable, and show what the core returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._compat import keep_triton_from_system_llvm
from ._review import _fill, _table
from ._study import FineTuned, agreement_rows, animal_rows, fine_tune_study, recount_study
from ._tasks import TaskPanel

if TYPE_CHECKING:
    import napari

    from dcxcount.agreement import Agreement

__all__ = ["FineTuneWidget", "AgreementWidget"]


def _folder_row(edit: QLineEdit, parent: QWidget) -> QHBoxLayout:
    """A folder field with a browse button."""
    browse = QPushButton("…")

    def choose() -> None:
        folder = QFileDialog.getExistingDirectory(parent, "Results folder")
        if folder:
            edit.setText(folder)

    browse.clicked.connect(choose)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(browse)
    return row


def _score(scores: dict, name: str = "f1") -> str:
    value = scores.get(name)
    return "—" if value is None else f"{value:.3f}"


class FineTuneWidget(QWidget):
    """Fine-tune the DCX model on a study's corrected sections, then recount the study with it.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    folder : path, optional
        The results folder to fill in.
    steps : int
        Training steps (300 by default, a few minutes on a laptop CPU; tests
        use a handful).

    Attributes
    ----------
    fine_tuned : FineTuned or None
        The last model made (its path, F1 before and after on the held-out
        corrected sections).
    recounted : dcxcount.batch.StudyResult or None
        The last recount's study tables.
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None, *,
                 folder: str | Path | None = None, steps: int = 300) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.fine_tuned: FineTuned | None = None
        self.recounted: Any = None
        self.folder_edit = QLineEdit(str(folder) if folder else "")
        self.folder_edit.setPlaceholderText("results folder with corrected sections")
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 100_000)
        self.steps_box.setValue(steps)
        self.steps_box.setToolTip("Training steps: 300 takes a few minutes on a laptop CPU")
        form = QFormLayout()
        form.addRow("Study", _folder_row(self.folder_edit, self))
        form.addRow("Steps", self.steps_box)
        self.train_button = QPushButton("Fine-tune")
        self.train_button.setToolTip("Train on the sections a person corrected; whole sections are held out to "
                                     "score the model before and after")
        self.train_button.clicked.connect(self.fine_tune)
        self.recount_button = QPushButton("Recount the study with the new model")
        self.recount_button.setToolTip("Uncorrected sections are segmented again with the new model; corrected "
                                       "ones keep their corrections")
        self.recount_button.setEnabled(False)
        self.recount_button.clicked.connect(self.recount)
        self.task = TaskPanel()
        self.scores = _table(["Held-out corrected sections", "Base model", "Fine-tuned"])
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.train_button)
        layout.addWidget(self.task)
        layout.addWidget(self.scores, 1)
        layout.addWidget(self.recount_button)
        self.setMinimumWidth(420)

    @property
    def running(self) -> bool:
        return self.task.running

    def fine_tune(self) -> Any:
        """Start fine-tuning in a worker; the scores table fills when it ends."""
        folder = self.folder_edit.text().strip()
        if not folder:
            self.task.set_status("Choose the study's results folder.")
            return None
        steps = self.steps_box.value()

        def done(result: FineTuned) -> None:
            self.fine_tuned = result
            rows = [(name, _score(result.before, name), _score(result.after, name))
                    for name in ("f1", "precision", "recall", "ap50") if name in result.after]
            rows.append(("sections held out / trained on", str(result.n_val), str(result.n_train)))
            _fill(self.scores, rows)
            self.recount_button.setEnabled(True)
            self.task.set_status(f"F1 {_score(result.before)} → {_score(result.after)} on {result.n_val} held-out "
                                 f"corrected section(s). Saved models/{result.path.name} in the study, with its "
                                 f"card {result.path.with_suffix('.json').name}.")

        return self.task.start(lambda progress, cancel: fine_tune_study(folder, steps=steps, progress=progress,
                                                                        cancel=cancel),
                               done=done, message="Fine-tuning…")

    def recount(self) -> Any:
        """Recount the study with the fine-tuned model, in a worker (corrections kept)."""
        if self.fine_tuned is None:
            self.task.set_status("Fine-tune first.")
            return None
        folder, model = self.folder_edit.text().strip(), self.fine_tuned.path

        def done(result: Any) -> None:
            self.recounted = result
            self.task.set_status(f"Recounted {len(result.sections) - result.n_failed} of {len(result.sections)} "
                                 f"section(s) with {model.name}; the study tables are rewritten.")

        return self.task.start(lambda progress, cancel: recount_study(folder, dcx_model=model, progress=progress,
                                                                      cancel=cancel),
                               done=done, message="Recounting the study…")


class AgreementWidget(QWidget):
    """Compare two raters' reviewed copies of one study (``dcxcount agree``).

    Attributes
    ----------
    agreement : dcxcount.agreement.Agreement or None
        The last comparison.
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None, *,
                 folder_a: str | Path | None = None, folder_b: str | Path | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.agreement: Agreement | None = None
        self.a_edit = QLineEdit(str(folder_a) if folder_a else "")
        self.a_edit.setPlaceholderText("rater A's results folder")
        self.b_edit = QLineEdit(str(folder_b) if folder_b else "")
        self.b_edit.setPlaceholderText("rater B's copy of the same study")
        form = QFormLayout()
        form.addRow("Rater A", _folder_row(self.a_edit, self))
        form.addRow("Rater B", _folder_row(self.b_edit, self))
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.compare)
        self.task = TaskPanel()
        self.table = _table(["Agreement", "Value", "Note"])
        self.animals = _table(["Animal", "Group", "Sections", "A", "B", "B - A", "%", "F1"])
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.compare_button)
        layout.addWidget(self.task)
        layout.addWidget(self.table, 1)
        layout.addWidget(QLabel("Per animal"))
        layout.addWidget(self.animals, 1)
        self.setMinimumWidth(520)

    @property
    def running(self) -> bool:
        return self.task.running

    def compare(self) -> Any:
        """Run :func:`dcxcount.agreement.compare_studies` on the two folders in a worker."""
        a, b = self.a_edit.text().strip(), self.b_edit.text().strip()
        if not a or not b:
            self.task.set_status("Choose both results folders.")
            return None

        def task(progress: Any, cancel: Any) -> Agreement:
            keep_triton_from_system_llvm()  # the core imports torch (see _compat)
            from dcxcount.agreement import compare_studies

            return compare_studies(a, b, progress=progress, cancel=cancel)

        def done(agreement: Agreement) -> None:
            self.agreement = agreement
            _fill(self.table, agreement_rows(agreement))
            _fill(self.animals, animal_rows(agreement))
            self.task.set_status(f"F1 {agreement.f1:.3f}; kappa on stages {agreement.stages.value:.3f}.")

        return self.task.start(task, done=done, message="Comparing…")

    def values(self) -> dict[str, tuple[str, str]]:
        """The pooled table as shown: quantity -> (value, note)."""
        return {self.table.item(r, 0).text(): (self.table.item(r, 1).text(), self.table.item(r, 2).text())
                for r in range(self.table.rowCount())}
