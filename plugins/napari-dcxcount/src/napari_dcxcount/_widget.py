"""The Count widget: choose the channels and the model, count in a thread, show the result.

Everything but the Qt is in :mod:`._model`; this module wires it to the
viewer. The count runs in a thread worker so that the viewer stays usable;
the core reports progress through a callback and stops at its next step when
the Cancel button sets its :class:`dcxcount.progress.CancelToken`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._model import MARKER_NAMES, MARKERS, MODELS, CountRequest, guess_markers, result_layer_data, summary_rows
from ._tasks import TaskPanel

if TYPE_CHECKING:
    import napari
    from superqt.utils import FunctionWorker

    from dcxcount.pipeline import SectionResult

__all__ = ["CountWidget", "NO_LAYER"]

NO_LAYER = "—"
"""The channel box entry meaning "this marker is not in the section"."""

class CountWidget(QWidget):
    """Count DCX+ cells and nuclei in the viewer's image layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are counted and to which the results
        are added (napari passes it).

    Attributes
    ----------
    task : TaskPanel
        Runs the count in a thread worker: its progress bar, Cancel button
        and status line, the last ``result`` (a
        :class:`dcxcount.pipeline.SectionResult`) or ``error`` (a
        :class:`dcxcount.progress.Cancelled` when it was cancelled).
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._chosen: dict[str, Any] = {}
        self._pixel_size_from: Any = None  # the DCX layer the pixel size was last taken from

        channels = QGroupBox("Channels")
        form = QFormLayout(channels)
        self.channel_boxes: dict[str, QComboBox] = {}
        for marker in MARKERS:
            box = QComboBox()
            box.setToolTip(f"The image layer that shows {MARKER_NAMES[marker]} ({NO_LAYER}: not stained)")
            box.currentTextChanged.connect(self._on_channel_changed)
            self.channel_boxes[marker] = box
            form.addRow(MARKER_NAMES[marker], box)

        settings = QGroupBox("Settings")
        settings_form = QFormLayout(settings)
        self.model_box = QComboBox()
        self.model_box.setEditable(True)  # a model file path may be typed or browsed
        self.model_box.addItems(MODELS)
        self.model_box.setToolTip("specialist: the bundled CPU models; cpsam: Cellpose-SAM (weights on disk, "
                                  "GPU advised); or a model file")
        browse = QPushButton("…")
        browse.setToolTip("Choose a model file (cellpose 4 or dcxcount specialist)")
        browse.clicked.connect(self._browse_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(browse)
        settings_form.addRow("Model", model_row)
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setDecimals(4)
        self.pixel_size.setRange(0.0, 100.0)
        self.pixel_size.setSingleStep(0.05)
        self.pixel_size.setSuffix(" µm")
        self.pixel_size.setSpecialValueText("unknown")  # 0 shows as "unknown": the core never guesses it
        self.pixel_size.setToolTip("Pixel size, from the DCX layer's scale; give it when the file had none")
        settings_form.addRow("Pixel size", self.pixel_size)

        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.task = TaskPanel()
        # The panel's parts under the names this widget has always had.
        self.progress_bar, self.cancel_button, self.status = self.task.bar, self.task.cancel_button, self.task.status

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Section", "Value", "Share"])
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        # Names and shares as wide as they need; values (a few long, like the channel list) get the rest.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setWordWrap(False)
        self.setMinimumWidth(360)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)

        layout = QVBoxLayout(self)
        layout.addWidget(channels)
        layout.addWidget(settings)
        layout.addWidget(self.run_button)
        layout.addWidget(self.task)
        layout.addWidget(self.table, 1)

        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh_channels)
        self._refresh_channels()

    # ------------------------------------------------------------------ channels

    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb]

    def _refresh_channels(self, event: Any = None) -> None:
        """Refill the channel boxes from the image layers, keeping what the user chose."""
        layers = self._image_layers()
        names = [layer.name for layer in layers]
        for layer in layers:  # a renamed layer renames its entry (connecting twice is a no-op)
            layer.events.name.connect(self._refresh_channels)
        guesses = guess_markers(names, layer_markers={layer.name: layer.metadata.get("marker")
                                                      for layer in layers if layer.metadata.get("marker")})
        for marker, box in self.channel_boxes.items():
            # Follow the chosen layer itself, so a renamed layer stays chosen.
            chosen = self._chosen.get(marker)
            keep = chosen.name if chosen is not None and chosen in layers else guesses.get(marker, NO_LAYER)
            box.blockSignals(True)
            box.clear()
            box.addItems([NO_LAYER, *names])
            box.setCurrentText(keep)
            box.blockSignals(False)
        self._on_channel_changed()

    def _on_channel_changed(self, text: str = "") -> None:
        """Remember the chosen layers; take the pixel size from a newly chosen DCX layer's scale."""
        self._chosen = {marker: self._layer(box.currentText()) for marker, box in self.channel_boxes.items()}
        layer = self._chosen["dcx"]
        # Only when the DCX layer changes, so that a pixel size typed by hand survives layers
        # being added (the result layers of a count, say).
        if layer is None or layer is self._pixel_size_from:
            return
        self._pixel_size_from = layer
        if "pixel_size_um" in layer.metadata and layer.metadata["pixel_size_um"] is None:
            self.pixel_size.setValue(0.0)  # the reader found none in the file: the user must say
        else:
            self.pixel_size.setValue(float(layer.scale[-1]))

    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def chosen_layers(self) -> dict[str, Any]:
        """Marker -> the image layer chosen for it."""
        chosen = {}
        for marker, box in self.channel_boxes.items():
            layer = self._layer(box.currentText())
            if layer is not None:
                chosen[marker] = layer
        return chosen

    def set_channel(self, marker: str, layer_name: str) -> None:
        """Choose the image layer of a marker (``NO_LAYER`` for none)."""
        self.channel_boxes[marker].setCurrentText(layer_name)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Models (*.safetensors *.pth *.pt);;All (*)")
        if path:
            self.model_box.setCurrentText(path)

    # ------------------------------------------------------------------ running

    def request(self) -> CountRequest:
        """What Run would count, from the current choices.

        Raises
        ------
        ValueError
            A required marker has no layer, the layers differ in size, the
            pixel size is unknown, or two markers share a layer.
        """
        chosen = self.chosen_layers()
        names = [layer.name for layer in chosen.values()]
        if len(set(names)) < len(names):
            raise ValueError("two markers are set to the same layer")
        if self.pixel_size.value() <= 0:
            raise ValueError("the pixel size is unknown: give it in µm")
        mosaics = [layer.name for layer in chosen.values() if layer.multiscale]
        if mosaics:
            raise ValueError(f"{', '.join(mosaics)}: a whole-section mosaic; count it with `dcxcount count`, which "
                             "finds the dentate gyrus and counts it in tiles, then open the results folder")
        dcx = chosen.get("dcx")
        source = (dcx.metadata.get("path") or dcx.name) if dcx is not None else "napari"
        return CountRequest(images={m: layer.data for m, layer in chosen.items()},
                            pixel_size_um=self.pixel_size.value(), model=self.model_box.currentText().strip(),
                            source=str(source))

    @property
    def running(self) -> bool:
        """Whether a count is under way."""
        return self.task.running

    @property
    def result(self) -> SectionResult | None:
        """The last finished count."""
        return self.task.result

    @property
    def error(self) -> BaseException | None:
        """Why the last run ended without a result."""
        return self.task.error

    def run(self) -> FunctionWorker | None:
        """Start counting the chosen layers in a thread worker.

        Returns
        -------
        superqt.utils.FunctionWorker or None
            The started worker, or None when the choices are incomplete (the
            status line says why) or a count is already running.
        """
        if self.running:
            return None
        try:
            request = self.request()
        except ValueError as error:
            self.task.set_status(f"Cannot count: {error}.")
            return None
        dcx = self.chosen_layers()["dcx"]
        place = {"scale": tuple(dcx.scale[-2:]), "translate": tuple(dcx.translate[-2:]),
                 "units": tuple(str(u) for u in dcx.units[-2:]) if hasattr(dcx, "units") else None}

        def done(result: SectionResult) -> None:
            self.show_result(result, **place)
            counts = ", ".join(f"{MARKER_NAMES.get(m, m)} {result.summary.get(f'{m}_count', 0)}"
                               for m in result.labels)
            self.task.set_status(f"Counted: {counts}.")

        def failed(error: BaseException) -> None:
            from napari.utils.notifications import show_error

            show_error(f"dcxcount: {error}")

        worker = self.task.start(request.run, done=done, failed=failed, finished=lambda: self._set_running(False),
                                 cancelled="Cancelled; nothing was added.")
        self._set_running(True)
        return worker

    def cancel(self) -> None:
        """Ask the running count to stop at its next step; no result layer is then added."""
        self.task.cancel()

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        for box in (*self.channel_boxes.values(), self.model_box, self.pixel_size):
            box.setEnabled(not running)

    # ------------------------------------------------------------------ results

    def show_result(self, result: SectionResult, *, scale: tuple[float, float],
                    translate: tuple[float, float] = (0.0, 0.0), units: tuple[str, str] | None = None) -> list[Any]:
        """Add a counted section's layers to the viewer and its summary to the table.

        Layers of an earlier count with the same names are replaced, so
        counting again does not pile up copies.

        Parameters
        ----------
        result : dcxcount.pipeline.SectionResult
        scale, translate : tuple of float
            Of the image layers the section was counted from.
        units : tuple of str, optional
            Their units, where napari has layer units.

        Returns
        -------
        list of napari layers
            The layers added.
        """
        added = []
        for data, kwargs, layer_type in result_layer_data(result, scale=scale, translate=translate, units=units):
            old = self._layer(kwargs["name"])
            if old is not None:
                self.viewer.layers.remove(old)
            added.append(getattr(self.viewer, f"add_{layer_type}")(data, **kwargs))
        self.show_summary(result.summary)
        return added

    def show_summary(self, summary: dict) -> None:
        """Fill the table with the core's per-section counts and shares."""
        rows = summary_rows(summary)
        self.table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)  # a long value is cut in the cell
                if column:
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                self.table.setItem(row, column, item)

    def table_values(self) -> dict[str, tuple[str, str]]:
        """The table as shown: quantity -> (value, share)."""
        return {self.table.item(r, 0).text(): (self.table.item(r, 1).text(), self.table.item(r, 2).text())
                for r in range(self.table.rowCount())}

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        """Stop a running count when the widget closes."""
        self.cancel()
        super().closeEvent(event)
