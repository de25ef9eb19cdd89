"""The Count widget in a real viewer: sample -> Run -> result layers and table; Cancel adds nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import QTimer

from napari_dcxcount._widget import NO_LAYER, CountWidget

# The core's own bar for the README's sample study (tests/test_cli.py,
# test_the_readmes_sample_study_command): DCX detection F1 >= 0.95, centroids within 5 um.
DCX_F1_BAR = 0.95
# Counted DCX+ cells may differ from the truth's counted ones by this share (at least 2 cells):
# the GCL border, found from the nuclei, places a few SGZ cells on either side of the
# truth's 10 um limit (measured on the sample: 28 counted, 26 in the truth).
COUNT_TOLERANCE = 0.1


@pytest.fixture
def viewer_with_sample(make_napari_viewer, sample_path):
    viewer = make_napari_viewer()
    viewer.open(str(sample_path), plugin="napari-dcxcount")
    return viewer


def _wait(qtbot, widget, timeout=180_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def test_the_widget_fills_channels_and_pixel_size_from_the_layers(viewer_with_sample):
    widget = CountWidget(viewer_with_sample)
    assert widget.channel_boxes["dcx"].currentText() == "DCX"
    assert widget.channel_boxes["neun"].currentText() == "NeuN"
    assert widget.channel_boxes["dapi"].currentText() == NO_LAYER
    assert widget.pixel_size.value() == pytest.approx(0.65)
    # A renamed layer stays chosen; a removed one is dropped.
    viewer_with_sample.layers["NeuN"].name = "nuclei"
    assert widget.channel_boxes["neun"].currentText() == "nuclei"
    viewer_with_sample.layers.remove("nuclei")
    assert widget.channel_boxes["neun"].currentText() == NO_LAYER
    assert widget.run() is None and "NeuN or DAPI" in widget.status.text()


def test_count_the_sample_section(viewer_with_sample, qtbot, truth):
    from dcxcount.metrics import match_centroids

    viewer = viewer_with_sample
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget)
    messages = []
    widget.task.relay.progressed.connect(lambda fraction, message: messages.append((fraction, message)))
    # The viewer stays responsive: the GUI thread's event loop runs while the core counts.
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.running))
    timer.start(20)
    worker = widget.run()
    assert worker is not None and widget.running and not widget.run_button.isEnabled()
    _wait(qtbot, widget)
    timer.stop()
    assert sum(ticks) >= 5, f"the event loop ran {sum(ticks)} times during the count"
    assert widget.error is None, widget.error
    result = widget.result
    assert result is not None and widget.progress_bar.value() == widget.progress_bar.maximum()
    fractions = [f for f, _ in messages]
    assert len(messages) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0

    names = [layer.name for layer in viewer.layers]
    assert names == ["DCX", "NeuN", "GCL", "dcx labels", "neun labels", "processes", "cells"]
    assert np.array_equal(viewer.layers["dcx labels"].data, result.labels["dcx"])
    assert tuple(viewer.layers["dcx labels"].scale) == (0.65, 0.65)
    points = viewer.layers["cells"]
    assert list(points.features.columns) == list(result.cells.columns)
    assert len(points.data) == len(result.cells)
    assert viewer.layers["GCL"].shape_type[0] == "polygon"

    # Against the sample's ground truth.
    cells, true = result.cells, truth.cells
    found = cells.loc[cells["marker"] == "dcx", ["x_um", "y_um"]].to_numpy()
    real = true.loc[true["marker"] == "dcx", ["x_um", "y_um"]].to_numpy()
    detection, _ = match_centroids(found, real, max_distance_um=5.0)
    true_dcx = true[(true["marker"] == "dcx") & true["depth"].between(-10 / truth.params.gcl_thickness_um, 1)]
    print(f"DCX detection F1 {detection.f1:.3f}; counted {result.summary['dcx_count']} vs truth {len(true_dcx)}")
    assert detection.f1 >= DCX_F1_BAR
    assert abs(result.summary["dcx_count"] - len(true_dcx)) <= max(2, COUNT_TOLERANCE * len(true_dcx))

    table = widget.table_values()
    assert table["DCX+ counted"][0] == str(result.summary["dcx_count"])
    assert table["NeuN+ counted"][0] == str(result.summary["neun_count"])
    assert table["stage A"] == (str(result.summary["stage_A"]),
                                f"{100 * result.summary['stage_A'] / result.summary['dcx_count']:.1f} %")
    assert "Counted: DCX" in widget.status.text()

    # Counting again replaces the result layers instead of adding copies.
    widget.model_box.setCurrentText("specialist")
    widget.run()
    _wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == names


def test_cancel_stops_a_run_and_adds_nothing(viewer_with_sample, qtbot):
    from dcxcount.progress import Cancelled

    viewer = viewer_with_sample
    widget = CountWidget(viewer)
    before = [layer.name for layer in viewer.layers]
    # Cancel as soon as the core reports its first step, from the GUI thread as the button does.
    widget.task.relay.progressed.connect(lambda fraction, message: widget.cancel_button.click())
    widget.run()
    assert widget.cancel_button.isEnabled()
    _wait(qtbot, widget)
    assert isinstance(widget.error, Cancelled)
    assert widget.result is None
    assert [layer.name for layer in viewer.layers] == before
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_cancel_before_the_first_step(viewer_with_sample, qtbot):
    from dcxcount.progress import Cancelled

    widget = CountWidget(viewer_with_sample)
    widget.run()
    widget.cancel()
    _wait(qtbot, widget)
    assert isinstance(widget.error, Cancelled) and len(viewer_with_sample.layers) == 2


def test_a_failing_count_reports_and_adds_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 100, (40, 40)).astype(np.uint16), name="DCX", scale=(0.65, 0.65))
    viewer.add_image(rng.integers(0, 100, (40, 40)).astype(np.uint16), name="NeuN", scale=(0.65, 0.65))
    widget = CountWidget(viewer)
    widget.run()
    _wait(qtbot, widget)
    assert widget.result is None and widget.error is not None
    assert "Failed" in widget.status.text() and "too small" in widget.status.text().lower()
    assert len(viewer.layers) == 2


def test_the_points_features_are_the_cells_table(viewer_with_sample, qtbot, tmp_path):
    """The cells layer saved with the plugin's writer is cells.csv."""
    viewer = viewer_with_sample
    widget = CountWidget(viewer)
    widget.run()
    _wait(qtbot, widget)
    viewer.layers.selection = {viewer.layers["cells"]}
    viewer.layers.save(str(tmp_path / "cells.csv"), selected=True, plugin="napari-dcxcount")
    widget.result.cells.to_csv(tmp_path / "expected.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cells.csv"), pd.read_csv(tmp_path / "expected.csv"))


def test_closing_the_widget_cancels_its_count(viewer_with_sample, qtbot):
    from dcxcount.progress import Cancelled

    widget = CountWidget(viewer_with_sample)
    widget.run()
    widget.close()
    _wait(qtbot, widget)
    assert isinstance(widget.error, Cancelled) and len(viewer_with_sample.layers) == 2


def test_a_file_without_pixel_size_asks_for_it_and_keeps_what_was_typed(make_napari_viewer, sample_path, tmp_path,
                                                                        qtbot):
    import tifffile

    path = tmp_path / "no_pixel_size.tif"
    data = tifffile.imread(sample_path)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["DCX", "NeuN"]}})
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="pixel size"):
        viewer.open(str(path), plugin="napari-dcxcount")
    widget = CountWidget(viewer)
    assert widget.pixel_size.value() == 0 and widget.pixel_size.text() == "unknown"
    assert widget.run() is None and "pixel size" in widget.status.text()
    widget.pixel_size.setValue(0.65)
    widget.run()
    _wait(qtbot, widget)
    assert widget.result is not None and widget.result.summary["pixel_size_um"] == 0.65
    # The layers are in pixels, and so are the results; the typed size stays.
    assert tuple(viewer.layers["dcx labels"].scale) == (1.0, 1.0)
    assert widget.pixel_size.value() == 0.65
