"""The reader: one scaled, coloured image layer per channel, named by marker."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_dcxcount._reader import contrast_limits, napari_get_reader, read_section_layers


def test_reader_takes_tiffs_only(sample_path, tmp_path):
    assert napari_get_reader(str(sample_path)) is not None
    assert napari_get_reader([str(sample_path), str(sample_path)]) is not None
    assert napari_get_reader(str(tmp_path / "image.png")) is None
    assert napari_get_reader(str(tmp_path)) is None


def test_sample_section_layers(sample_path):
    layers = read_section_layers(path=sample_path)
    raw = tifffile.imread(sample_path)
    assert [kw["name"] for _, kw, _ in layers] == ["DCX", "NeuN"]
    assert [kw["colormap"] for _, kw, _ in layers] == ["green", "magenta"]
    for (data, kw, kind), channel in zip(layers, raw):
        assert kind == "image"
        assert np.array_equal(data, channel)
        assert kw["scale"] == (0.65, 0.65)
        low, high = kw["contrast_limits"]
        assert channel.min() <= low < high <= channel.max()
        assert kw["metadata"]["pixel_size_um"] == 0.65 and kw["metadata"]["path"] == str(sample_path)
    assert [kw["metadata"]["marker"] for _, kw, _ in layers] == ["dcx", "neun"]


def test_unknown_channels_keep_their_names_and_a_file_without_pixel_size_opens_in_pixels(tmp_path):
    path = tmp_path / "plain.tif"
    data = np.random.default_rng(0).integers(0, 4000, (3, 64, 64), dtype=np.uint16)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["Cy5", "dcx", "DAPI"]}})
    with pytest.warns(UserWarning, match="pixel size"):
        layers = read_section_layers(path=path)
    assert [kw["name"] for _, kw, _ in layers] == ["Cy5", "DCX", "DAPI"]
    assert [kw["colormap"] for _, kw, _ in layers] == ["gray", "green", "blue"]
    assert all(kw["scale"] == (1.0, 1.0) and kw["metadata"]["pixel_size_um"] is None for _, kw, _ in layers)


def test_an_unreadable_file_says_why(tmp_path):
    from dcxcount.io import SectionReadError

    path = tmp_path / "broken.tif"
    path.write_bytes(b"not a tiff")
    with pytest.raises(SectionReadError, match="broken.tif"):
        read_section_layers(path=path)


def test_contrast_limits_of_a_flat_channel():
    assert contrast_limits(np.full((10, 10), 7, np.uint16)) == (7.0, 8.0)


def test_viewer_opens_a_section_through_the_plugin(make_napari_viewer, sample_path):
    viewer = make_napari_viewer()
    layers = viewer.open(str(sample_path), plugin="napari-dcxcount")
    assert [layer.name for layer in layers] == ["DCX", "NeuN"]
    assert tuple(viewer.layers["DCX"].scale) == (0.65, 0.65)


def test_a_whole_section_mosaic_opens_lazily_as_multiscale_layers(make_napari_viewer, tmp_path):
    from dcxcount.mosaic import write_mosaic

    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (2, 1100, 1300), dtype=np.uint16)
    path = write_mosaic(tmp_path / "slide.ome.tif", lambda rows, cols: data[:, rows, cols], shape=(1100, 1300),
                        channel_names=("DCX", "NeuN"), dtype=np.uint16, pixel_size_um=0.5, tile_px=256,
                        level_factor=2, smallest_px=200)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-dcxcount")
    assert [layer.name for layer in layers] == ["DCX", "NeuN"]
    dcx = viewer.layers["DCX"]
    assert dcx.multiscale and [level.shape for level in dcx.data] == [(1100, 1300), (550, 650), (275, 325)]
    assert tuple(dcx.scale) == (0.5, 0.5) and dcx.metadata["mosaic"]
    np.testing.assert_array_equal(np.asarray(dcx.data[0][300:620, 1000:]), data[0, 300:620, 1000:])
    np.testing.assert_array_equal(np.asarray(viewer.layers["NeuN"].data[0][:5, :5]), data[1, :5, :5])
