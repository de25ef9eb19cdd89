"""Take the user guide's screenshots from a real viewer (run under Xvfb on a machine without a screen).

    xvfb-run -a .venv/bin/python plugins/napari-dcxcount/tools/screenshot.py docs/images

Writes ``plugin_count.jpg`` (the window after counting the sample section: image,
GCL outline, labels, processes, cells coloured by stage, the Count widget with its
table) and ``plugin_open.jpg`` (the sample section as the reader opens it). JPEG,
because a window of dark image pixels is ten times smaller so and reads the same.

Then, on the sample study (``sample_images/samplesheet.csv``, counted into a
temporary folder with ``dcxcount count``): ``plugin_review.jpg`` (the Review
widget on a doubtful call, after a stage was set), ``plugin_review_blinded.jpg``
(the same study blinded), ``plugin_finetune.jpg`` (the Fine-tune widget after
fine-tuning on two corrected sections, 20 steps) and ``plugin_agreement.jpg``
(the Agreement widget on the study and a corrected copy).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["main"]


def _save(viewer, path: Path) -> None:
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False)).convert("RGB").save(path, quality=88)


def main(out: str) -> None:
    """Open the sample, count it with the widget and save the screenshots into `out`."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dcxcount._sample_data import SAMPLE_PATH
    from napari_dcxcount._widget import CountWidget

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(SAMPLE_PATH), plugin="napari-dcxcount")
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)  # napari >= 0.9
    (overlays.scale_bar if overlays is not None else viewer.scale_bar).visible = True
    viewer.reset_view()
    QApplication.processEvents()
    _save(viewer, folder / "plugin_open.jpg")

    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget, name="dcxcount: Count", area="right")
    widget.run()
    deadline = time.monotonic() + 600
    while widget.running and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if widget.result is None:
        raise SystemExit(f"counting failed: {widget.error}")
    for name in ("neun labels",):
        viewer.layers[name].visible = False  # the nuclei hide the DCX cells at this zoom
    viewer.layers.selection = {viewer.layers["cells"]}
    QApplication.processEvents()
    _save(viewer, folder / "plugin_count.jpg")
    viewer.close()


def _dock(viewer, widget, name: str, width: int = 470) -> None:
    """Dock `widget` on the right at `width` px, leaving the canvas most of the window."""
    from qtpy.QtCore import Qt

    dock = viewer.window.add_dock_widget(widget, name=name, area="right")
    viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)


def _wait(widget, seconds: float = 900) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while widget.task.running and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if widget.task.error is not None:
        raise SystemExit(f"failed: {widget.task.error}")


def _correct(session, index: int, *, stage: str) -> None:
    """Erase one counted DCX label and set one stage in a section, as a reviewer would, and save."""
    import numpy as np

    loaded = session.go(index)
    cells = loaded.result.cells
    counted = cells[(cells["marker"] == "dcx") & cells["counted"].astype(bool)]
    labels = {m: np.array(a) for m, a in loaded.result.labels.items()}
    labels["dcx"][labels["dcx"] == int(counted["cell_id"].iloc[-1])] = 0
    session.set_stage(int(counted["cell_id"].iloc[0]), stage)
    session.save(session.recount(labels=labels))


def study_shots(out: str) -> None:
    """Count the sample study, then screenshot review, blinded review, fine-tune and agreement into `out`."""
    import shutil
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    from dcxcount.cli import main as dcxcount
    from napari_dcxcount._results import ReviewSession
    from napari_dcxcount._review import ReviewWidget
    from napari_dcxcount._study_widgets import AgreementWidget, FineTuneWidget

    folder = Path(out)
    sheet = Path(__file__).resolve().parents[3] / "sample_images" / "samplesheet.csv"
    work = Path(tempfile.mkdtemp(prefix="dcxcount_shots_"))
    study = work / "study"
    if dcxcount(["count", str(sheet), "--out", str(study), "--hemispheres", "2"]) != 0:
        raise SystemExit("counting the sample study failed")
    rater_a = Path(shutil.copytree(study, work / "study_rater_a"))
    rater_b = Path(shutil.copytree(study, work / "study_rater_b"))

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    review = ReviewWidget(viewer, folder=study)
    _dock(viewer, review, "dcxcount: Review")
    for layer in ("neun labels", "NeuN"):
        viewer.layers[layer].visible = False  # the nuclei hide the DCX cells at this zoom
    review.command("next_cell")
    review.command("stage_C")
    _wait(review)
    QApplication.processEvents()
    _save(viewer, folder / "plugin_review.jpg")
    viewer.close()

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    blinded = ReviewWidget(viewer, folder=study, blinded=True, seed=7)
    _dock(viewer, blinded, "dcxcount: Review")
    for layer in ("neun labels", "NeuN"):
        viewer.layers[layer].visible = False
    blinded.command("next_cell")
    QApplication.processEvents()
    _save(viewer, folder / "plugin_review_blinded.jpg")
    viewer.close()

    session = ReviewSession(study)
    for index, stage in ((0, "C"), (1, "D"), (2, "E")):
        _correct(session, index, stage=stage)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(study / "sections" / session.order[0]), plugin="napari-dcxcount")  # a corrected section
    viewer.layers["neun labels"].visible = viewer.layers["NeuN"].visible = False
    tune = FineTuneWidget(viewer, folder=study, steps=20)
    _dock(viewer, tune, "dcxcount: Fine-tune")
    tune.fine_tune()
    _wait(tune)
    QApplication.processEvents()
    _save(viewer, folder / "plugin_finetune.jpg")
    viewer.close()

    _correct(ReviewSession(rater_b), 0, stage="A")
    dcxcount(["summarize", str(rater_b)])
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(rater_b / "sections" / ReviewSession(rater_b).order[0]), plugin="napari-dcxcount")
    viewer.layers["neun labels"].visible = viewer.layers["NeuN"].visible = False
    agree = AgreementWidget(viewer, folder_a=rater_a, folder_b=rater_b)
    _dock(viewer, agree, "dcxcount: Agreement", 560)
    agree.compare()
    _wait(agree)
    QApplication.processEvents()
    _save(viewer, folder / "plugin_agreement.jpg")
    viewer.close()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "docs/images"
    if "--study-only" not in sys.argv:
        main(target)
    study_shots(target)
