"""The widget's Qt-free model: layer names to markers, the request, result layers, the table."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon as fill_polygon

from napari_dcxcount._model import (
    MARKERS,
    CountRequest,
    gcl_polygons,
    guess_markers,
    marker_of_layer_name,
    result_layer_data,
    summary_rows,
)


def test_markers_are_the_cores():
    from dcxcount.vocabulary import KNOWN_MARKERS

    assert MARKERS == KNOWN_MARKERS


@pytest.mark.parametrize(("name", "marker"), [("DCX", "dcx"), ("NeuN", "neun"), ("neun [1]", "neun"),
                                              ("dg_01 DAPI", "dapi"), ("BrdU", "brdu"), ("EdU", "edu"),
                                              ("Cy5", None), ("DCX NeuN merge", None), ("dcxcount", None)])
def test_marker_of_layer_name(name, marker):
    assert marker_of_layer_name(name) == marker


def test_guess_markers_first_layer_wins_and_metadata_beats_the_name():
    assert guess_markers(["DCX", "NeuN", "DCX [1]", "Cy5"]) == {"dcx": "DCX", "neun": "NeuN"}
    assert guess_markers(["DCX", "Cy5"], layer_markers={"Cy5": "neun"}) == {"dcx": "DCX", "neun": "Cy5"}


def test_request_refuses_what_the_core_cannot_count():
    image = np.zeros((50, 50), np.uint16)
    with pytest.raises(ValueError, match="DCX"):
        CountRequest(images={"neun": image}, pixel_size_um=0.65)
    with pytest.raises(ValueError, match="NeuN or DAPI"):
        CountRequest(images={"dcx": image}, pixel_size_um=0.65)
    with pytest.raises(ValueError, match="differ in size"):
        CountRequest(images={"dcx": image, "neun": image[:40]}, pixel_size_um=0.65)
    with pytest.raises(ValueError, match="2D"):
        CountRequest(images={"dcx": image[None], "neun": image[None]}, pixel_size_um=0.65)
    with pytest.raises(ValueError, match="pixel size"):
        CountRequest(images={"dcx": image, "neun": image}, pixel_size_um=0.0)


def test_request_names_channels_by_marker_in_the_cores_order():
    image = np.arange(2500, dtype=np.uint16).reshape(50, 50)
    request = CountRequest(images={"neun": image + 1, "dcx": image}, pixel_size_um=0.65, model="cpsam")
    section = request.section()
    assert section.channel_names == ("dcx", "neun")
    assert np.array_equal(section.data[0], image) and np.array_equal(section.data[1], image + 1)
    assert section.pixel_size_um == 0.65
    settings = request.settings()
    assert settings.model == "cpsam" and settings.channels == {"dcx": 0, "neun": 1}


def test_gcl_polygons_outline_the_mask():
    """A C-shaped mask with a hole and a piece cut by the border: the outer outlines fill it back."""
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(yy - 100, xx - 100)
    mask = (r > 40) & (r < 80) & ~((xx > 100) & (abs(yy - 100) < 30))
    mask[95:99, 50:54] = False  # a hole (left out: napari polygons have none)
    mask[:15, :30] = True  # a piece on the border
    polygons = gcl_polygons(mask)
    assert len(polygons) == 2
    filled = np.zeros_like(mask)
    for ring in polygons:
        rr, cc = fill_polygon(ring[:, 0], ring[:, 1], mask.shape)
        filled[rr, cc] ^= True
    holes_filled = mask.copy()
    holes_filled[95:99, 50:54] = True
    assert (filled != holes_filled).sum() / holes_filled.sum() < 0.01


def test_result_layers_and_table(counted):
    _, result = counted
    layers = result_layer_data(result, scale=(0.65, 0.65))
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["GCL", "dcx labels", "neun labels", "processes", "cells"]
    points, kw, kind = layers[-1]
    assert kind == "points" and len(points) == len(result.cells)
    assert list(kw["features"].columns) == list(result.cells.columns)
    dcx = (result.cells["marker"] == "dcx").to_numpy()
    # DCX cells are opaque (stage colours), nuclei faint.
    assert (kw["face_color"][dcx, 3] == 1).all() and (kw["face_color"][~dcx, 3] < 1).all()
    # A DCX point lies on its own label.
    labels = result.labels["dcx"]
    rows = np.round(points[dcx]).astype(int)
    on_label = labels[rows[:, 0], rows[:, 1]] == result.cells.loc[dcx, "cell_id"].to_numpy()
    assert on_label.mean() > 0.9

    table = {label: (value, share) for label, value, share in summary_rows(result.summary)}
    assert table["DCX+ counted"][0] == str(result.summary["dcx_count"])
    assert table["NeuN+ counted"][0] == str(result.summary["neun_count"])
    n_dcx = result.summary["dcx_count"]
    assert table["stage A"] == (str(result.summary["stage_A"]), f"{100 * result.summary['stage_A'] / n_dcx:.1f} %")
    shares = [float(table[f"stage {s}"][1].rstrip(" %")) for s in "ABCDEF"]
    assert sum(shares) == pytest.approx(100, abs=0.5)
    # Every summary entry is somewhere in the table.
    assert len(summary_rows(result.summary)) >= len(result.summary)
