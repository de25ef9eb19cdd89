"""Writers write what reads back equal: labels TIFF, cells CSV, GCL GeoJSON and ImageJ ROI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import roifile
import tifffile

from napari_dcxcount._model import result_layer_data
from napari_dcxcount._writer import (
    write_labels_tiff,
    write_points_csv,
    write_shapes_geojson,
    write_shapes_roi,
)


@pytest.fixture(scope="module")
def layers(counted):
    _, result = counted
    return {kw["name"]: (data, kw) for data, kw, _ in result_layer_data(result, scale=(0.65, 0.65))}


def test_labels_tiff_reads_back_equal_with_its_pixel_size(layers, tmp_path):
    from dcxcount.io import read_section

    data, kw = layers["dcx labels"]
    path = str(tmp_path / "labels_dcx.tif")
    assert write_labels_tiff(path, data, kw) == [path]
    back = tifffile.imread(path)
    assert back.dtype == np.int32 and np.array_equal(back, data)
    assert read_section(path).pixel_size_um == pytest.approx(0.65)


def test_cells_csv_reads_back_as_cells_csv(counted, layers, tmp_path):
    _, result = counted
    data, kw = layers["cells"]
    path = str(tmp_path / "cells.csv")
    write_points_csv(path, data, kw)
    expected = tmp_path / "expected.csv"
    result.cells.to_csv(expected, index=False)  # as `dcxcount count` writes cells.csv
    pd.testing.assert_frame_equal(pd.read_csv(path), pd.read_csv(expected))


def test_cells_csv_gives_a_hand_added_point_its_position(tmp_path):
    features = pd.DataFrame({"marker": ["dcx", None], "x_um": [1.3, np.nan], "y_um": [2.6, np.nan]})
    path = str(tmp_path / "cells.csv")
    write_points_csv(path, np.array([[4.0, 2.0], [10.0, 20.0]]), {"features": features, "scale": (0.65, 0.65)})
    back = pd.read_csv(path)
    assert back["x_um"].tolist() == pytest.approx([1.3, 13.0]) and back["y_um"].tolist() == pytest.approx([2.6, 6.5])


def _mask(outline, shape):
    from dcxcount.outlines import read_outline

    return read_outline(outline, shape=shape)


def test_gcl_geojson_reads_back_equal_and_the_core_takes_it(counted, layers, tmp_path):
    _, result = counted
    data, kw = layers["GCL"]
    path = str(tmp_path / "gcl.geojson")
    write_shapes_geojson(path, data, {"shape_type": ["polygon"] * len(data)})
    features = json.loads((tmp_path / "gcl.geojson").read_text())["features"]
    assert len(features) == len(data)
    for feature, ring in zip(features, data):
        xy = np.array(feature["geometry"]["coordinates"][0])
        assert np.allclose(xy[0], xy[-1])
        assert np.allclose(xy[:-1, ::-1] - 0.5, ring)
    gcl = result.frame.gcl
    mask = _mask(path, gcl.shape)
    assert (mask != gcl).sum() / gcl.sum() < 0.01


@pytest.mark.parametrize("suffix", [".roi", ".zip"])
def test_gcl_imagej_roi_reads_back_equal_and_the_core_takes_it(counted, layers, tmp_path, suffix):
    _, result = counted
    data, kw = layers["GCL"]
    path = str(tmp_path / f"gcl{suffix}")
    write_shapes_roi(path, data, {"shape_type": ["polygon"] * len(data)})
    rois = roifile.ImagejRoi.fromfile(path)
    rois = rois if isinstance(rois, list) else [rois]
    assert len(rois) == len(data)
    for roi, ring in zip(rois, data):
        assert np.allclose(roi.coordinates()[:, ::-1] - 0.5, ring, atol=1e-3)
    gcl = result.frame.gcl
    assert (_mask(path, gcl.shape) != gcl).sum() / gcl.sum() < 0.01


def test_an_ellipse_is_written_as_a_polygon_and_a_line_is_refused(tmp_path):
    ellipse = np.array([[10.0, 10.0], [10.0, 50.0], [30.0, 50.0], [30.0, 10.0]])
    path = str(tmp_path / "gcl.geojson")
    write_shapes_geojson(path, [ellipse], {"shape_type": ["ellipse"]})
    mask = _mask(path, (64, 64))
    assert abs(mask.sum() - np.pi * 10 * 20) < 15
    with pytest.raises(ValueError, match="no area"):
        write_shapes_roi(str(tmp_path / "gcl.roi"), [ellipse[:2]], {"shape_type": ["line"]})


def test_napari_saves_layers_through_the_plugins_writers(make_napari_viewer, counted, tmp_path):
    _, result = counted
    viewer = make_napari_viewer()
    for data, kw, kind in result_layer_data(result, scale=(0.65, 0.65)):
        getattr(viewer, f"add_{kind}")(data, **kw)
    written = {}
    for name, filename in (("dcx labels", "labels_dcx.tif"), ("cells", "cells.csv"), ("GCL", "gcl.geojson"),
                           ("GCL", "gcl.zip")):
        viewer.layers.selection = {viewer.layers[name]}
        written[filename] = viewer.layers.save(str(tmp_path / filename), selected=True, plugin="napari-dcxcount")
    assert all(paths for paths in written.values()), written
    assert np.array_equal(tifffile.imread(tmp_path / "labels_dcx.tif"), result.labels["dcx"])
    assert len(pd.read_csv(tmp_path / "cells.csv")) == len(result.cells)
    assert (_mask(str(tmp_path / "gcl.zip"), result.frame.gcl.shape) != result.frame.gcl).mean() < 0.01
