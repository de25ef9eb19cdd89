"""The Review widget: step through a counted study, correct it in the viewer, save it for ``dcxcount summarize``.

Everything but the Qt is :class:`._results.ReviewSession`; this module shows
its sections as layers (:func:`._results.study_section_layers`, the same
layers a count in the viewer adds), binds the review keys, and runs the
recount and the save in a thread worker (:class:`._tasks.TaskPanel`).

Keys (bound on the viewer and on the section's image and ``cells`` layers,
whose own shortcuts come first while they are selected; a Labels or Shapes
layer keeps its editing keys):

=====  ==========================================================
n / p  next / previous section
j / k  next / previous doubtful stage call (the view centres on it)
a - f  set the selected cell's stage (a point selected in ``cells``,
       else the doubtful call shown)
x      exclude the selected cell from the counts
u      update: recount the section from the edited layers
s      save the section
=====  ==========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._model import MARKER_NAMES, result_layer_data, summary_rows
from ._results import ResultsFolderError, ReviewSession, mask_from_polygons, study_section_layers
from ._tasks import TaskPanel

if TYPE_CHECKING:
    import napari
    import pandas as pd

    from dcxcount.pipeline import SectionResult

__all__ = ["ReviewWidget", "REVIEW_KEYS"]

REVIEW_KEYS: dict[str, str] = {"n": "next_section", "p": "previous_section", "j": "next_cell", "k": "previous_cell",
                               "x": "exclude_cell", "u": "update", "s": "save",
                               **{stage.lower(): f"stage_{stage}" for stage in "ABCDEF"}}
"""Key -> what it does (a method of :class:`ReviewWidget`; ``stage_X`` sets stage X)."""

# Screen pixels per micrometre when centring on a cell: about 130 um across a laptop's canvas,
# enough to see a cell's processes and its neighbours.
_CELL_ZOOM = 6.0


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setWordWrap(False)
    header = table.horizontalHeader()
    for column in range(len(headers)):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: list[tuple]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(str(text))
            item.setToolTip(str(text))
            table.setItem(r, c, item)


class ReviewWidget(QWidget):
    """Review and correct a counted study, section by section, optionally blinded.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    folder : path, optional
        A results folder to open at once.
    blinded : bool
        Start blinded (hide animal and group names, shuffle the sections).
    seed : int
        Seeds the blinded order.

    Attributes
    ----------
    session : ReviewSession or None
    key_table : QTableWidget
        The blinding key, filled only by :meth:`end_review`.
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None, *,
                 folder: str | Path | None = None, blinded: bool = False, seed: int = 0) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.session: ReviewSession | None = None
        self._layers: list[Any] = []
        self._gcl_shown: list[np.ndarray] = []
        self._cells: list[int] = []  # the section's doubtful calls, fixed when it opens
        self._cell_index = -1
        self._pending_update = False
        self._discard_armed = False
        self._title = viewer.title

        study = QGroupBox("Study")
        grid = QGridLayout(study)
        self.folder_edit = QLineEdit(str(folder) if folder else "")
        self.folder_edit.setPlaceholderText("results folder (dcxcount count --out)")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.blinded_box = QCheckBox("Blinded")
        self.blinded_box.setChecked(blinded)
        self.blinded_box.setToolTip("Hide animal and group names and shuffle the sections; the key is shown "
                                    "when the review ends")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setValue(seed)
        self.seed_box.setToolTip("Seed of the blinded order")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self.open(self.folder_edit.text().strip()))
        grid.addWidget(self.folder_edit, 0, 0, 1, 3)
        grid.addWidget(browse, 0, 3)
        grid.addWidget(self.blinded_box, 1, 0)
        grid.addWidget(QLabel("seed"), 1, 1, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.seed_box, 1, 2)
        grid.addWidget(self.open_button, 1, 3)

        self.section_label = QLabel("No study open.")
        self.section_label.setWordWrap(True)
        self.cell_label = QLabel("")
        self.cell_label.setWordWrap(True)

        def button(text: str, action: str, tip: str) -> QPushButton:
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda: self.command(action))
            return b

        moves = QHBoxLayout()
        moves.addWidget(button("◀ Section", "previous_section", "Previous section (p)"))
        moves.addWidget(button("Section ▶", "next_section", "Next section (n)"))
        moves.addWidget(button("◀ Doubtful", "previous_cell", "Previous doubtful stage call (k)"))
        moves.addWidget(button("Doubtful ▶", "next_cell", "Next doubtful stage call (j)"))
        stages = QHBoxLayout()
        stages.addWidget(QLabel("Stage:"))
        for stage in "ABCDEF":
            stages.addWidget(button(stage, f"stage_{stage}", f"Set the selected cell's stage to {stage} (key "
                                                             f"{stage.lower()})"))
        stages.addWidget(button("Exclude (x)", "exclude_cell", "Exclude the selected cell from the counts"))
        actions = QHBoxLayout()
        actions.addWidget(button("Update (u)", "update", "Recount from the edited labels and GCL (no segmenting)"))
        actions.addWidget(button("Save (s)", "save", "Write the section folder; dcxcount summarize reads it"))
        self.end_button = button("End review", "end_review", "Show the blinding key (and write blinding_key.csv)")
        actions.addWidget(self.end_button)

        self.task = TaskPanel()
        self.summary_table = _table(["Section", "Value", "Share"])
        self.corrections_table = _table(["Correction", "Value", "Who, when"])
        self.key_table = _table(["Code", "Animal", "Group", "Section"])
        self.key_table.setVisible(False)

        layout = QVBoxLayout(self)
        layout.addWidget(study)
        layout.addWidget(self.section_label)
        layout.addLayout(moves)
        layout.addWidget(self.cell_label)
        layout.addLayout(stages)
        layout.addLayout(actions)
        layout.addWidget(self.task)
        layout.addWidget(self.summary_table, 2)
        layout.addWidget(QLabel("Corrections"))
        layout.addWidget(self.corrections_table, 1)
        layout.addWidget(self.key_table, 1)
        self.setMinimumWidth(380)

        self._bound: list[str] = []
        for key, action in REVIEW_KEYS.items():
            # Bound on the viewer, so they work whichever non-editing layer is selected.
            self.viewer.bind_key(key, self._key_handler(action), overwrite=True)
            self._bound.append(key)
        if folder:
            self.open(folder)

    # ------------------------------------------------------------------ keys and commands

    def _key_handler(self, action: str) -> Any:
        def handler(viewer: Any) -> None:
            self.command(action)

        return handler

    def command(self, action: str) -> None:
        """Do what a key or button does (:data:`REVIEW_KEYS`); the status line says what happened."""
        try:
            if action.startswith("stage_"):
                self.set_stage(action.removeprefix("stage_"))
            else:
                getattr(self, action)()
        except (ResultsFolderError, KeyError, ValueError) as error:
            self._status(str(error).strip("'\""))

    def _status(self, text: str) -> None:
        self.task.set_status(text)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Results folder")
        if folder:
            self.folder_edit.setText(folder)

    # ------------------------------------------------------------------ study and sections

    def open(self, folder: str | Path) -> ReviewSession | None:
        """Open a results folder (or a section folder of one) and show its first section in review order."""
        try:
            session = ReviewSession(folder, blinded=self.blinded_box.isChecked(), seed=self.seed_box.value())
        except (ResultsFolderError, OSError) as error:
            self._status(f"Cannot open: {error}")
            return None
        self.session = session
        self.task.redact = session.redact
        self.key_table.setVisible(False)
        self.key_table.setRowCount(0)
        self.folder_edit.setText(str(session.study.out_dir))
        for widget in (self.blinded_box, self.seed_box):
            widget.setEnabled(False)  # blinding is fixed for a review; End review, then open again
        if session.blinded:
            self._drop_revealing_layers()
        self.go(0)
        return session

    def _drop_revealing_layers(self) -> None:
        """Remove layers that a blinded review must not show: any of this study's, opened by name before."""
        paths = {entry.path for entry in self.session.study.entries.values()}
        for layer in list(self.viewer.layers):
            meta = layer.metadata or {}
            source = str(getattr(getattr(layer, "source", None), "path", None) or "")
            if meta.get("results") or meta.get("path") in paths or source in paths or any(
                    entry.animal in layer.name or (entry.group and entry.group in layer.name)
                    for entry in self.session.study.entries.values()):
                self.viewer.layers.remove(layer)

    def go(self, index: int) -> None:
        """Show the section at place `index` of the review order."""
        if self.session is None:
            raise ResultsFolderError("open a results folder first")
        loaded = self.session.go(index)
        self._discard_armed = False
        for layer in self._layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._layers = []
        for data, kwargs, kind in study_section_layers(loaded, blinded=self.session.blinded):
            kwargs = {**kwargs, "metadata": {**kwargs.get("metadata", {}), "review": True}}
            self._layers.append(getattr(self.viewer, f"add_{kind}")(data, **kwargs))
        for layer in self._layers:
            if layer.metadata.get("dcxcount") not in ("labels", "gcl", "processes"):
                # The image and cells layers' own keys (Points: A, P, S; Image: C, X) come before the
                # viewer's while the layer is selected: the review's keys are bound on them too. A
                # Labels or Shapes layer keeps its editing keys.
                for key, action in REVIEW_KEYS.items():
                    layer.bind_key(key, self._key_handler(action), overwrite=True)
        gcl = self._layer("gcl")
        self._gcl_shown = [np.array(d, copy=True) for d in gcl.data] if gcl is not None else []
        self._cells = self.session.doubtful_cells()
        self._cell_index = -1
        self._show_section()
        if loaded.result is not None:
            self.viewer.reset_view()
        self._status(f"{self.session.title()}: {loaded.error}" if loaded.error else
                     f"{self.session.title()}: {len(self._cells)} doubtful stage call(s); j / k to step through")
        self.viewer.layers.selection.active = self._layer("cells") or (self._layers[0] if self._layers else None)

    def next_section(self) -> None:
        if self._guard_unsaved():
            self.go(self.session.index + 1)

    def previous_section(self) -> None:
        if self._guard_unsaved():
            self.go(self.session.index - 1)

    def _guard_unsaved(self) -> bool:
        """Leave a section with unsaved changes only when asked twice."""
        if self.session is None:
            raise ResultsFolderError("open a results folder first")
        if self._discard_armed or not self.session.has_unsaved_changes(**self._edited_inputs()):
            return True
        self._discard_armed = True
        self._status("This section has unsaved changes: Save (s), or press n / p again to discard them.")
        return False

    def _show_section(self) -> None:
        session = self.session
        n = len(session.order)
        entry = session.current.loaded.entry
        what = f"{session.title()}  ({session.index + 1} of {n})"
        if not session.blinded or session.ended:
            what += f", group {entry.group}" if entry.group else ""
        what += f": {'failed' if entry.failed else f'{entry.doubtful} doubtful stage call(s)'}"
        self.section_label.setText(what)
        blinded = " (blinded)" if session.blinded and not session.ended else ""
        self.viewer.title = f"napari: dcxcount review{blinded}: {session.title()}"
        self._show_tables()
        self._show_cell()

    def _show_tables(self) -> None:
        current, redact = self.session.current, self.session.redact
        rows = summary_rows(current.result.summary) if current.result is not None else []
        # A GCL outline's file name (gcl_source) may name the animal: blinded, it is hidden.
        _fill(self.summary_table, [tuple(redact(text) for text in row) for row in rows])
        _fill(self.corrections_table, self.session.corrections_rows())

    # ------------------------------------------------------------------ cells

    def _layer(self, kind: str, marker: str | None = None) -> Any:
        for layer in self._layers:
            meta = layer.metadata
            if meta.get("dcxcount") == kind and (marker is None or meta.get("marker") == marker):
                return layer
        return None

    def next_cell(self) -> None:
        self._step_cell(+1)

    def previous_cell(self) -> None:
        self._step_cell(-1)

    def _step_cell(self, step: int) -> None:
        if not self._cells:
            self._status("No doubtful stage call in this section.")
            return
        self._cell_index = (self._cell_index + step) % len(self._cells)
        self.show_cell(self._cells[self._cell_index])

    @property
    def camera(self) -> Any:
        """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
        scene = getattr(self.viewer, "scene", None)
        return scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera

    def show_cell(self, cell_id: int, *, marker: str = "dcx") -> None:
        """Centre the view on a cell and select its point in the ``cells`` layer."""
        cell = self.session.cell(cell_id, marker=marker)
        camera = self.camera
        camera.center = (float(cell["y_um"]), float(cell["x_um"]))
        camera.zoom = max(camera.zoom, _CELL_ZOOM)
        points = self._layer("cells")
        if points is not None:
            rows = np.flatnonzero((points.features["marker"] == marker).to_numpy()
                                  & (points.features["cell_id"] == int(cell_id)).to_numpy())
            points.selected_data = set(int(r) for r in rows[:1])
            self.viewer.layers.selection.active = points
        self._show_cell()

    def selected_cell(self) -> tuple[str, int]:
        """(marker, cell_id) of the cell a key acts on: the one point selected in ``cells``, else the doubtful call shown."""
        points = self._layer("cells")
        if points is not None and len(points.selected_data) == 1:
            row = next(iter(points.selected_data))
            return str(points.features["marker"].iloc[row]), int(points.features["cell_id"].iloc[row])
        if 0 <= self._cell_index < len(self._cells):
            return "dcx", self._cells[self._cell_index]
        raise ResultsFolderError("select a cell: a point of the cells layer, or a doubtful call with j / k")

    def _show_cell(self) -> None:
        try:
            marker, cell_id = self.selected_cell()
            cell = self.session.cell(cell_id, marker=marker)
        except (ResultsFolderError, KeyError):
            self.cell_label.setText(f"{len(self._cells)} doubtful stage call(s): j / k to step through them.")
            return
        place = (f"doubtful call {self._cell_index + 1} of {len(self._cells)}: "
                 if 0 <= self._cell_index < len(self._cells) and self._cells[self._cell_index] == cell_id else "")
        stage = cell.get("stage")
        stage_text = (f", stage {stage} ({cell.get('stage_source', 'rules')}, margin "
                      f"{float(cell.get('stage_margin', np.nan)):.2f})" if isinstance(stage, str) else "")
        self.cell_label.setText(f"{place}{marker} cell {cell_id}{stage_text}")

    def set_stage(self, stage: str) -> None:
        """Record the person's stage call for the selected DCX cell, then recount (colours and table follow)."""
        marker, cell_id = self.selected_cell()
        if marker != "dcx":
            raise ResultsFolderError(f"only DCX cells have a stage; the selected cell is a {marker} object")
        self.session.set_stage(cell_id, stage)
        self._status(f"cell {cell_id}: stage {stage.upper()} (by {self.session.who}); recounting…")
        self.update()

    def exclude_cell(self) -> None:
        """Exclude the selected cell from the counts, then recount."""
        marker, cell_id = self.selected_cell()
        self.session.exclude(cell_id, marker=marker)
        self._status(f"{marker} cell {cell_id} excluded; recounting…")
        self.update()

    # ------------------------------------------------------------------ recount and save

    def _edited_inputs(self) -> dict[str, Any]:
        """The Labels layers' data and, when the GCL shapes were edited, their mask (copies, for the worker)."""
        labels = {}
        for layer in self._layers:
            if layer.metadata.get("dcxcount") == "labels":
                labels[layer.metadata["marker"]] = np.array(layer.data, np.int32, copy=True)
        gcl = self._layer("gcl")
        mask = None
        if gcl is not None and (len(gcl.data) != len(self._gcl_shown) or any(
                np.shape(a) != np.shape(b) or not np.allclose(a, b) for a, b in zip(gcl.data, self._gcl_shown))):
            shape = next(iter(labels.values())).shape
            mask = mask_from_polygons([np.asarray(d) for d in gcl.data], shape=shape)
        return {"labels": labels, "gcl_mask": mask}

    def update(self) -> Any:
        """Recount the section from its Labels and GCL layers and the corrections (no segmenting), in a worker."""
        if self.session is None:
            raise ResultsFolderError("open a results folder first")
        self.session._require()
        if self.task.running:
            self._pending_update = True  # one more recount when this one ends, with the latest edits
            return None
        inputs = self._edited_inputs()
        session = self.session
        return self.task.start(lambda progress, cancel: session.recount(**inputs, progress=progress, cancel=cancel),
                               done=self._recounted, message="Recounting…")

    def save(self) -> Any:
        """Recount and write the section folder (``save_section``) so that ``dcxcount summarize`` reads it."""
        if self.session is None:
            raise ResultsFolderError("open a results folder first")
        self.session._require()
        if self.task.running:
            self._status("Busy: save again when the recount ends.")
            return None
        inputs = self._edited_inputs()
        session = self.session

        def task(progress: Any, cancel: Any) -> SectionResult:
            result = session.recount(**inputs, progress=progress, cancel=cancel)
            session.save(result)
            return result

        def done(result: SectionResult) -> None:
            self._recounted(result)
            self._gcl_shown = [np.array(d, copy=True) for d in self._layer("gcl").data] if self._layer("gcl") else []
            self._status(f"{session.title()} saved; `dcxcount summarize {session.study.out_dir}` rebuilds the "
                         "study tables from it.")

        return self.task.start(task, done=done, message="Recounting and saving…")

    def _recounted(self, result: SectionResult) -> None:
        """Show a recount: the cells and processes layers, the tables."""
        px = float(self._layers[0].scale[-1]) if self._layers else 1.0
        fresh = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in result_layer_data(result, scale=(px, px))}
        points = self._layer("cells")
        if points is not None:
            data, kwargs = fresh["cells"]
            selected = points.selected_data
            points.data = data
            points.features = kwargs["features"]
            points.face_color = kwargs["face_color"]
            points.selected_data = {i for i in selected if i < len(data)}
        processes = self._layer("processes")
        if processes is not None:
            processes.data = fresh["processes"][0]
        self._show_tables()
        self._show_cell()
        counts = ", ".join(f"{MARKER_NAMES.get(m, m)} {result.summary.get(f'{m}_count', 0)}" for m in result.labels)
        self._status(f"Recounted: {counts}; {result.summary.get('stage_by_person', 0)} stage call(s) by a person.")
        if self._pending_update:
            self._pending_update = False
            self.update()

    # ------------------------------------------------------------------ end

    def end_review(self) -> pd.DataFrame | None:
        """End the review: reveal the blinding key in the widget (and write ``blinding_key.csv`` when blinded)."""
        if self.session is None:
            raise ResultsFolderError("open a results folder first")
        key = self.session.end_review()
        _fill(self.key_table, list(key[["code", "animal", "group", "section"]].astype(str).itertuples(index=False)))
        self.key_table.setVisible(True)
        self.blinded_box.setEnabled(True)
        self.seed_box.setEnabled(True)
        self._show_section()
        where = f"; written to {self.session.study.out_dir / 'blinding_key.csv'}" if self.session.blinded else ""
        self._status(f"Review ended{where}.")
        return key

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        """Unbind the review keys, give the viewer its title back and stop a running recount."""
        for key in self._bound:
            self.viewer.bind_key(key, None, overwrite=True)
        self._bound = []
        self.viewer.title = self._title
        self.task.cancel()
        super().closeEvent(event)
