"""Reviewing a counted study in a real viewer: open, correct, save, summarize; blinded review."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_dcxcount._results import BLINDING_KEY_FILE, ReviewSession
from napari_dcxcount._review import REVIEW_KEYS, ReviewWidget


def _wait(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.task.running, timeout=timeout)
    assert widget.task.error is None, widget.task.error


def _sheet(out) -> pd.DataFrame:
    return pd.DataFrame(json.loads((out / "settings.json").read_text())["samplesheet"])


def test_the_reader_opens_a_results_folder_and_a_section_folder(make_napari_viewer, counted_study):
    from napari_dcxcount._reader import napari_get_reader, napari_get_results_reader

    key = _sheet(counted_study)["_key"].iloc[0]
    section = counted_study / "sections" / key
    assert napari_get_results_reader(str(counted_study)) is not None
    assert napari_get_results_reader(str(section)) is not None
    assert napari_get_results_reader(str(counted_study / "sections")) is None
    assert napari_get_reader(str(counted_study)) is None  # the TIFF reader leaves folders alone

    viewer = make_napari_viewer()
    viewer.open(str(section), plugin="napari-dcxcount")
    names = [layer.name for layer in viewer.layers]
    assert names == ["DCX", "NeuN", "GCL", "dcx labels", "neun labels", "processes", "cells"]
    cells = pd.read_csv(section / "cells.csv")
    points = viewer.layers["cells"]
    assert list(points.features.columns) == list(cells.columns) and len(points.data) == len(cells)
    import tifffile

    assert np.array_equal(viewer.layers["dcx labels"].data, tifffile.imread(section / "labels_dcx.tif"))
    assert viewer.layers["GCL"].shape_type[0] == "polygon"
    assert tuple(viewer.layers["dcx labels"].scale) == (1.0, 1.0)
    # The study folder opens the first section the review shows (the most doubtful calls first).
    viewer.layers.clear()
    viewer.open(str(counted_study), plugin="napari-dcxcount")
    first = ReviewSession(counted_study).order[0]
    assert viewer.layers["cells"].metadata["section_key"] == first


def test_delete_a_label_set_a_stage_save_and_summarize(make_napari_viewer, qtbot, study_copy):
    from dcxcount.cli import main

    out = study_copy
    viewer = make_napari_viewer()
    widget = ReviewWidget(viewer, folder=out)
    viewer.window.add_dock_widget(widget)
    session = widget.session
    key = session.key
    entries = session.study.entries
    # Failed sections first, then the most doubtful calls.
    assert [entries[k].doubtful for k in session.order] == sorted((e.doubtful for e in entries.values()),
                                                                  reverse=True)
    before = pd.read_csv(out / "sections.csv").set_index("animal")
    row = _sheet(out).set_index("_key").loc[key]
    dcx_before = int(before[before["section"] == row["section"]].loc[row["animal"], "dcx_count"])

    # The review keys are bound on the viewer.
    for letter in REVIEW_KEYS:
        assert letter.upper() in {str(k) for k in viewer.keymap}, letter

    # j: the first doubtful call, centred and selected.
    widget.command("next_cell")
    marker, doubtful = widget.selected_cell()
    cell = session.cell(doubtful)
    assert marker == "dcx" and bool(cell["stage_doubtful"])
    assert np.allclose(widget.camera.center[-2:], (cell["y_um"], cell["x_um"]))
    new_stage = "A" if cell["stage"] != "A" else "F"

    # Delete another counted DCX cell's label in the Labels layer.
    cells = viewer.layers["cells"].features
    counted = cells[(cells["marker"] == "dcx") & cells["counted"].astype(bool) & (cells["cell_id"] != doubtful)]
    deleted = int(counted["cell_id"].iloc[0])
    labels = viewer.layers["dcx labels"]
    data = labels.data
    data[data == deleted] = 0
    labels.data = data

    # The key's command: stage, recount through the core (colours and table follow).
    widget.command(f"stage_{new_stage}")
    _wait(qtbot, widget)
    points = viewer.layers["cells"].features
    shown = points[(points["marker"] == "dcx") & (points["cell_id"] == doubtful)].iloc[0]
    assert shown["stage"] == new_stage and shown["stage_source"] == "person"
    assert deleted not in set(points.loc[points["marker"] == "dcx", "cell_id"])
    assert widget.summary_table.item(0, 1).text() == str(dcx_before - 1)
    corrections = {widget.corrections_table.item(r, 0).text(): widget.corrections_table.item(r, 2).text()
                   for r in range(widget.corrections_table.rowCount())}
    assert corrections[f"cell {doubtful} stage"].startswith(session.who)
    assert "dcx labels" in corrections

    widget.command("save")
    _wait(qtbot, widget)
    saved = json.loads((out / "sections" / key / "corrections.json").read_text())
    assert saved["stages"][0]["cell_id"] == doubtful and saved["labels"][0]["marker"] == "dcx"

    assert main(["summarize", str(out)]) == 0
    after = pd.read_csv(out / "sections.csv")
    after = after[(after["animal"] == row["animal"]) & (after["section"] == row["section"])].iloc[0]
    assert int(after["dcx_count"]) == dcx_before - 1
    study_cells = pd.read_csv(out / "cells.csv")
    mine = study_cells[(study_cells["animal"] == row["animal"]) & (study_cells["section"] == row["section"])
                       & (study_cells["marker"] == "dcx")]
    call = mine[mine["cell_id"] == doubtful].iloc[0]
    assert call["stage"] == new_stage and call["stage_source"] == "person"
    assert deleted not in set(mine["cell_id"])


def test_leaving_a_section_with_unsaved_changes_asks_twice(make_napari_viewer, qtbot, study_copy):
    widget = ReviewWidget(make_napari_viewer(), folder=study_copy)
    first = widget.session.key
    widget.command("next_cell")
    widget.command("exclude_cell")
    _wait(qtbot, widget)
    widget.command("next_section")
    assert widget.session.key == first and "unsaved" in widget.task.status.text()
    widget.command("next_section")
    assert widget.session.key != first


def _texts(widget, viewer) -> list[str]:
    """Everything a blinded reviewer can read: layer names and metadata, features, title, labels, tables."""
    from qtpy.QtWidgets import QLabel, QLineEdit, QTableWidget

    texts = [viewer.title]
    for layer in viewer.layers:
        texts += [layer.name, repr(layer.metadata), str(getattr(layer.source, "path", "") or "")]
        features = getattr(layer, "features", None)
        if features is not None and len(features.columns):
            texts += [str(c) for c in features.columns] + [str(v) for v in features.to_numpy().ravel()]
    for label in widget.findChildren(QLabel):
        texts.append(label.text())
    for table in widget.findChildren(QTableWidget):
        if table.isVisible() or table is not widget.key_table:
            texts += [table.item(r, c).text() for r in range(table.rowCount()) for c in range(table.columnCount())
                      if table.item(r, c) is not None]
    texts += [edit.text() for edit in widget.findChildren(QLineEdit) if edit is not widget.folder_edit]
    return texts


def test_blinded_review_hides_animals_and_groups_until_it_ends(make_napari_viewer, qtbot, study_copy):
    out = study_copy
    sheet = _sheet(out)
    secrets = set(sheet["animal"]) | set(sheet["group"])
    viewer = make_napari_viewer()
    # A layer opened by name before the review is removed when a blinded review opens.
    viewer.open(str(out / "sections" / sheet["_key"].iloc[0]), plugin="napari-dcxcount")
    widget = ReviewWidget(viewer, blinded=True, seed=3)
    viewer.window.add_dock_widget(widget, name="dcxcount: Review")
    widget.blinded_box.setChecked(True)
    widget.open(out)
    assert widget.session.order == ReviewSession(out, blinded=True, seed=3).order  # seeded
    seen_codes = []
    for _ in range(len(sheet)):
        widget.command("next_cell")
        if widget._cells:
            widget.command("stage_B")
            _wait(qtbot, widget)
        texts = _texts(widget, viewer)
        leaks = sorted({secret for secret in secrets for text in texts if secret in text})
        assert not leaks, f"{leaks} shown in blinded review of {widget.session.title()}"
        assert "blinded" in viewer.title and widget.session.title() in viewer.title
        seen_codes.append(widget.session.title())
        if widget._cells:
            widget.command("save")
            _wait(qtbot, widget)
        widget.command("next_section")
    assert sorted(seen_codes) == [f"section {i}" for i in range(1, len(sheet) + 1)]
    assert not (out / BLINDING_KEY_FILE).exists()

    key = widget.end_review()
    assert (out / BLINDING_KEY_FILE).exists()
    written = pd.read_csv(out / BLINDING_KEY_FILE)
    assert set(written["animal"]) == set(sheet["animal"]) and set(written["group"]) == set(sheet["group"])
    assert list(written["code"]) == list(key["code"])
    shown = {widget.key_table.item(r, 1).text() for r in range(widget.key_table.rowCount())}
    assert shown == set(sheet["animal"])


@pytest.mark.parametrize("blinded", [False, True])
def test_a_failed_or_unreadable_section_is_listed_first_and_named_blinded(study_copy, blinded):
    out = study_copy
    key = _sheet(out)["_key"].iloc[-1]
    record = json.loads((out / "sections" / key / "result.json").read_text())
    record["status"] = f"error: {_sheet(out)['path'].iloc[-1]}: something went wrong"
    (out / "sections" / key / "result.json").write_text(json.dumps(record))
    session = ReviewSession(out, blinded=blinded)
    if not blinded:
        assert session.order[0] == key
    loaded = session.go(session.order.index(key))
    assert loaded.result is None and "not counted" in loaded.error
    text = session.redact(loaded.error)
    assert (session.study.entries[key].animal in text) is (not blinded)


def test_an_edited_gcl_is_recounted_recorded_and_saved(make_napari_viewer, qtbot, study_copy):
    viewer = make_napari_viewer()
    widget = ReviewWidget(viewer, folder=study_copy)
    key = widget.session.key
    before = widget.session.current.result.summary["gcl_area_mm2"]
    gcl = viewer.layers["GCL"]
    # Move the outline 4 px towards the hilus side's opposite: a redrawn border.
    gcl.data = [np.asarray(polygon) + [0.0, 4.0] for polygon in gcl.data]
    widget.command("update")
    _wait(qtbot, widget)
    result = widget.session.current.result
    assert result.summary["gcl_source"] == "edited"
    assert result.summary["gcl_area_mm2"] != pytest.approx(before, rel=1e-6)
    rows = [widget.corrections_table.item(r, 0).text() for r in range(widget.corrections_table.rowCount())]
    assert "GCL" in rows
    widget.command("save")
    _wait(qtbot, widget)
    saved = json.loads((study_copy / "sections" / key / "corrections.json").read_text())
    assert saved["gcl"]["who"] == widget.session.who
    record = json.loads((study_copy / "sections" / key / "result.json").read_text())
    assert record["gcl_source"] == "edited"


def test_the_review_keys_work_on_the_canvas(make_napari_viewer, qtbot, study_copy):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    widget = ReviewWidget(viewer, folder=study_copy)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_J)
    assert widget._cell_index == 0
    qtbot.keyClick(canvas, Qt.Key.Key_J)
    assert widget._cell_index == 1
    qtbot.keyClick(canvas, Qt.Key.Key_K)
    assert widget._cell_index == 0
    # With the cells layer selected its own A, P and S (add, select) would come first: the review
    # binds its keys on the layer too.
    assert viewer.layers.selection.active is viewer.layers["cells"]
    qtbot.keyClick(canvas, Qt.Key.Key_A)
    assert widget.session.current.corrections.stages[widget._cells[0]][0] == "A"
    assert viewer.layers["cells"].mode == "pan_zoom"
    qtbot.waitUntil(lambda: not widget.task.running, timeout=60_000)
    widget.close()
    assert "J" not in {str(k) for k in viewer.keymap}  # closing the widget unbinds its keys


# A fresh process, as a user starts napari: the canvas (and, under software OpenGL, the
# system's LLVM) is loaded before the core imports torch. The other tests import the core first.
_FRESH_VIEWER = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=True)
QApplication.processEvents()
assert "torch" not in sys.modules
from napari_dcxcount._review import ReviewWidget
widget = ReviewWidget(viewer, folder=sys.argv[1])
widget.command("next_cell")
widget.command("stage_B")
deadline = time.monotonic() + 240
while widget.task.running and time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.05)
assert widget.task.error is None, widget.task.error
print("stage_by_person", widget.session.current.result.summary["stage_by_person"])
viewer.close()
"""


def test_the_review_widget_loads_the_core_after_the_canvas(counted_study, tmp_path):
    import shutil
    import subprocess
    import sys

    out = shutil.copytree(counted_study, tmp_path / "out")
    done = subprocess.run([sys.executable, "-c", _FRESH_VIEWER, str(out)], capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stage_by_person 1" in done.stdout


@pytest.mark.slow
def test_a_section_counted_in_a_mosaic_is_reviewed_in_its_box(tmp_path):
    """A section too large to count whole is counted in a box around its DG (dcxcount.mosaic): its labels,
    GCL and image in the review are the box's, and the recount is the core's recount in that box."""
    from dcxcount.cli import main
    from dcxcount.mosaic import write_mosaic
    from dcxcount.synth import SynthParams, make_section
    from dcxcount.synth_mosaic import MosaicScene, place_sections

    shape = (2000, 2000)
    section = make_section(SynthParams(shape_px=(1536, 1536), pixel_size_um=0.65, markers=("dcx", "neun"), seed=3))
    scene = MosaicScene(shape=shape, pixel_size_um=0.65,
                        sections=place_sections([section], shape=shape, centres=[(0.5, 0.5)]))
    path = write_mosaic(tmp_path / "m1.ome.tif", scene.read, shape=shape, channel_names=scene.channel_names,
                        dtype=np.uint16, pixel_size_um=0.65)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"path,animal,group,section\n{path},m1,saline,1\n")
    out = tmp_path / "out"
    # The whole image needs about 0.88 GB to count: under 0.8 GB it is counted as a mosaic.
    assert main(["count", str(sheet), "--out", str(out), "--max-memory-gb", "0.8"]) == 0
    before = pd.read_csv(out / "sections.csv").iloc[0]
    assert before["mosaic_level"] == 0

    session = ReviewSession(out)
    loaded = session.go(0)
    assert not loaded.error and loaded.section.data.shape[-2:] == loaded.result.labels["dcx"].shape
    cells = loaded.result.cells
    deleted = int(cells.loc[(cells["marker"] == "dcx") & cells["counted"].astype(bool), "cell_id"].iloc[0])
    labels = {m: np.array(a) for m, a in loaded.result.labels.items()}
    labels["dcx"][labels["dcx"] == deleted] = 0
    session.save(session.recount(labels=labels))
    assert main(["summarize", str(out)]) == 0
    after = pd.read_csv(out / "sections.csv").iloc[0]
    assert after["dcx_count"] == before["dcx_count"] - 1
    assert after["box_x_um"] == pytest.approx(before["box_x_um"]) and after["mosaic_level"] == 0
