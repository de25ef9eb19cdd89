"""Tests for dcxcount.io: reading sections and matching channels to markers."""

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from dcxcount.io import PixelSizeError, Section, SectionReadError, match_channels, read_section
from dcxcount.vocabulary import KNOWN_MARKERS

FIX = re.escape("Set `pixel_size_um` (e.g. `pixel_size_um=0.65`)")


def _ome(path: Path, data, *, axes, names=None, **sizes) -> Path:
    metadata = {"axes": axes, **sizes}
    if names is not None:
        metadata["Channel"] = {"Name": names}
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    return path


def _imagej(path: Path, data, *, axes, size_um=0.65, unit="um", labels=None) -> Path:
    metadata = {"axes": axes}
    if unit is not None:
        metadata["unit"] = unit
    if labels is not None:
        metadata["Labels"] = labels
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / size_um, 1 / size_um), metadata=metadata
    )
    return path


def _section(names, path="s.tif") -> Section:
    data = np.zeros((len(names), 2, 2), np.uint8)
    return Section(Path(path), data, tuple(names), 0.5, "override", "none")


# --- read_section: layouts, dtypes, channel names ---------------------------------


def test_ome_cyx_keeps_dtype_names_and_pixel_size(tmp_path):
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = _ome(
        tmp_path / "a.ome.tif", data, axes="CYX", names=["DCX", "NeuN", "DAPI"],
        PhysicalSizeX=0.5, PhysicalSizeY=0.5,
    )
    section = read_section(path)
    assert section.path == path
    assert section.data.shape == (3, 4, 5)
    assert section.data.dtype == np.uint16
    np.testing.assert_array_equal(section.data, data)
    assert section.channel_names == ("DCX", "NeuN", "DAPI")
    assert section.pixel_size_um == pytest.approx(0.5)
    assert section.pixel_size_source == "ome"
    assert section.projection == "none"


def test_ome_pixel_size_in_nanometres(tmp_path):
    path = _ome(
        tmp_path / "nm.ome.tif", np.ones((4, 5), np.uint8), axes="YX", names=["DCX"],
        PhysicalSizeX=325, PhysicalSizeXUnit="nm", PhysicalSizeY=325, PhysicalSizeYUnit="nm",
    )
    section = read_section(path)
    assert section.data.shape == (1, 4, 5)
    assert section.channel_names == ("DCX",)
    assert section.pixel_size_um == pytest.approx(0.325)


def test_ome_zcyx_with_singleton_t_is_max_projected(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((1, 4, 2, 6, 7), dtype=np.float32)
    path = _ome(
        tmp_path / "z.ome.tif", data, axes="TZCYX", names=["DCX", "DAPI"],
        PhysicalSizeX=0.5, PhysicalSizeY=0.5,
    )
    section = read_section(path)
    assert section.data.dtype == np.float32
    np.testing.assert_array_equal(section.data, data[0].max(axis=0))
    assert section.projection == "max of 4 z-planes"
    assert section.channel_names == ("DCX", "DAPI")


def test_imagej_cyx_labels_and_resolution(tmp_path):
    data = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = _imagej(tmp_path / "ij.tif", data, axes="CYX", labels=["DCX", "NeuN", "DAPI"])
    section = read_section(path)
    np.testing.assert_array_equal(section.data, data)
    assert section.channel_names == ("DCX", "NeuN", "DAPI")
    assert section.pixel_size_um == pytest.approx(0.65)
    assert section.pixel_size_source == "imagej"


def test_imagej_single_label_is_the_whole_name(tmp_path):
    """tifffile gives one ImageJ label as a string: it is the name, not a list of its letters."""
    data = np.arange(4 * 5, dtype=np.uint16).reshape(1, 4, 5)
    path = _imagej(tmp_path / "one.tif", data, axes="CYX", labels=["DCX"])
    assert read_section(path).channel_names == ("DCX",)


def test_imagej_zcyx_projects_and_names_channels_from_first_plane(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 60000, (12, 2, 4, 5), dtype=np.uint16)
    # ImageJ labels planes in CZT order: channel varies fastest.
    labels = [f"{name} z{z}" if z else name for z in range(12) for name in ("DCX", "NeuN")]
    path = _imagej(tmp_path / "zc.tif", data, axes="ZCYX", labels=labels)
    section = read_section(path)
    assert section.data.shape == (2, 4, 5)
    assert section.data.dtype == np.uint16
    np.testing.assert_array_equal(section.data, data.max(axis=0))
    assert section.projection == "max of 12 z-planes"
    assert section.channel_names == ("DCX", "NeuN")


def test_imagej_zyx_single_channel(tmp_path):
    data = np.zeros((3, 4, 5), np.float32)
    data[1, 2, 3] = 7.5
    path = _imagej(tmp_path / "zyx.tif", data, axes="ZYX", unit="micron", size_um=0.5)
    section = read_section(path)
    assert section.data.shape == (1, 4, 5)
    assert section.data[0, 2, 3] == 7.5
    assert section.channel_names == ("C0",)
    assert section.projection == "max of 3 z-planes"
    assert section.pixel_size_um == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("unit", "size_um"), [("\\u00B5m", 0.65), ("micron", 0.65), ("nm", 0.65e-3), ("mm", 650.0)]
)
def test_imagej_unit_spellings(tmp_path, unit, size_um):
    # The tag stores 1/0.65 pixels per unit whatever the unit is.
    path = _imagej(tmp_path / "u.tif", np.zeros((4, 5), np.uint8), axes="YX", unit=unit)
    assert read_section(path).pixel_size_um == pytest.approx(size_um)


def test_rgb_samples_become_red_green_blue(tmp_path):
    data = np.zeros((4, 5, 3), np.uint8)
    data[..., 1] = 200
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(
        path, data, photometric="rgb", resolution=(1e4 / 0.5, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
    )
    section = read_section(path)
    assert section.data.shape == (3, 4, 5)
    assert section.data.dtype == np.uint8
    assert section.channel_names == ("red", "green", "blue")
    assert section.data[1].min() == 200 and section.data[[0, 2]].max() == 0
    assert section.pixel_size_um == pytest.approx(0.5)
    assert section.pixel_size_source == "tiff-resolution"


def test_plain_cyx_without_names_gets_generic_names(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(
        path, np.zeros((2, 4, 5), np.uint16), photometric="minisblack",
        metadata={"axes": "CYX"}, resolution=(1e4 / 0.65, 1e4 / 0.65),
        resolutionunit="CENTIMETER",
    )
    section = read_section(path)
    assert section.channel_names == ("C0", "C1")
    assert section.pixel_size_um == pytest.approx(0.65)


# --- read_section: pixel size ------------------------------------------------------


def test_override_wins_over_missing_pixel_size(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.float32))
    section = read_section(path, pixel_size_um=0.8)
    assert section.pixel_size_um == 0.8
    assert section.pixel_size_source == "override"


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_override_must_be_positive(tmp_path, bad):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8))
    with pytest.raises(SectionReadError, match="plain.tif.*positive"):
        read_section(path, pixel_size_um=bad)


def test_missing_pixel_size_names_file_and_fix(tmp_path):
    path = tmp_path / "nosize.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8))
    with pytest.raises(PixelSizeError, match=f"nosize.tif: no pixel size found.*{FIX}") as caught:
        read_section(path)
    assert isinstance(caught.value, SectionReadError) and "--" not in str(caught.value)


def test_72_dpi_inch_resolution_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8), resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(SectionReadError, match=f"dpi.tif: no pixel size.*{FIX}"):
        read_section(path)


@pytest.mark.parametrize("unit", ["pixel", None])
def test_imagej_uncalibrated_is_missing(tmp_path, unit):
    path = _imagej(tmp_path / "ij.tif", np.zeros((4, 5), np.uint8), axes="YX", unit=unit)
    with pytest.raises(SectionReadError, match=f"ij.tif: no pixel size.*{FIX}"):
        read_section(path)


def test_pixel_size_x_vs_y_contradiction(tmp_path):
    path = _ome(
        tmp_path / "xy.ome.tif", np.zeros((4, 5), np.uint8), axes="YX",
        PhysicalSizeX=0.5, PhysicalSizeY=0.6,
    )
    with pytest.raises(SectionReadError, match=f"xy.ome.tif: contradictory.*0.5.*0.6.*{FIX}"):
        read_section(path)


def test_pixel_size_ome_vs_tiff_tag_contradiction(tmp_path):
    path = tmp_path / "both.ome.tif"
    tifffile.imwrite(
        path, np.zeros((4, 5), np.uint8), ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        resolution=(1e4 / 0.65, 1e4 / 0.65), resolutionunit="CENTIMETER",
    )
    with pytest.raises(SectionReadError, match=f"both.ome.tif: contradictory.*0.5.*0.65.*{FIX}"):
        read_section(path)
    # An explicit pixel size settles it.
    assert read_section(path, pixel_size_um=0.5).pixel_size_um == 0.5


def test_pixel_size_ome_and_tiff_tag_agreeing(tmp_path):
    path = tmp_path / "agree.ome.tif"
    tifffile.imwrite(
        path, np.zeros((4, 5), np.uint8), ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        resolution=(1e4 / 0.502, 1e4 / 0.502), resolutionunit="CENTIMETER",
    )
    section = read_section(path)
    assert section.pixel_size_um == 0.5
    assert section.pixel_size_source == "ome"


# --- read_section: unreadable files -------------------------------------------------


def test_time_series_is_refused(tmp_path):
    path = _imagej(tmp_path / "movie.tif", np.zeros((2, 3, 4, 5), np.uint16), axes="TCYX")
    with pytest.raises(SectionReadError, match=r"movie.tif: a time series \(axes TCYX.*T=2"):
        read_section(path)


def test_unknown_axis_is_refused(tmp_path):
    path = tmp_path / "q.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    with pytest.raises(SectionReadError, match="q.tif: cannot tell what axis 'Q'.*QYX"):
        read_section(path, pixel_size_um=1.0)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("missing.tif", None, "no such file"), ("text.tif", b"hello", "cannot read as TIFF.*not a TIFF"),
     ("zero.tif", b"", "the file is empty")],
)
def test_unopenable_files(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SectionReadError, match=f"{name}: {reason}") as error:
        read_section(path, pixel_size_um=1.0)
    assert str(error.value).count(name) == 1  # the path once, not again in the reason


def test_empty_image(tmp_path):
    path = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(path, np.zeros((0, 5), np.uint8))
    with pytest.raises(SectionReadError, match="empty.tif: the image is empty"):
        read_section(path, pixel_size_um=1.0)


# --- match_channels -----------------------------------------------------------------


def test_known_markers():
    assert KNOWN_MARKERS == ("dcx", "neun", "dapi", "brdu", "edu")


def test_match_by_name_ignores_case_space_and_punctuation():
    section = _section(["DAPI", " NEUN ", "dcx", "Brd-U"])
    assert match_channels(section, markers=["dcx", "neun", "dapi", "brdu"]) == {
        "dcx": 2, "neun": 1, "dapi": 0, "brdu": 3,
    }


def test_overrides_by_index_digits_and_name():
    section = _section(["Cy3", "Cy5", "DAPI"])
    got = match_channels(
        section, markers=["dcx", "neun", "dapi"], overrides={"dcx": 0, "neun": "cy5", "edu": 9}
    )
    assert got == {"dcx": 0, "neun": 1, "dapi": 2}
    assert match_channels(section, markers=["dcx"], overrides={"dcx": "2"}) == {"dcx": 2}


def test_missing_marker_message():
    section = _section(["NeuN", "DAPI"], path="/data/s1.tif")
    expected = (
        "/data/s1.tif: no channel for marker 'dcx'; channels are ['NeuN', 'DAPI']. "
        "Name it with `channels[dcx]=INDEX_OR_NAME`."
    )
    with pytest.raises(SectionReadError, match=re.escape(expected)):
        match_channels(section, markers=["neun", "dcx"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [(5, r"no channel 5.*\['Cy3', 'DAPI'\]"), (-1, "no channel -1"),
     ("Cy7", r"no channel named 'Cy7' for marker 'dcx'.*\['Cy3', 'DAPI'\]")],
)
def test_bad_override(override, pattern):
    section = _section(["Cy3", "DAPI"], path="s2.tif")
    with pytest.raises(SectionReadError, match=f"s2.tif: {re.escape('`channels[dcx]=')}.*{pattern}"):
        match_channels(section, markers=["dcx"], overrides={"dcx": override})


def test_two_markers_on_one_channel():
    section = _section(["DCX", "DAPI"], path="s3.tif")
    with pytest.raises(SectionReadError, match="s3.tif: markers 'dcx' and 'neun'.*channel 0"):
        match_channels(section, markers=["dcx", "neun"], overrides={"neun": 0})


def test_ambiguous_names():
    section = _section(["DAPI", "dapi"], path="s4.tif")
    with pytest.raises(SectionReadError, match=r"s4.tif: marker 'dapi' matches channels \[0, 1\]"):
        match_channels(section, markers=["dapi"])
    # An exact override name picks one of them.
    assert match_channels(section, markers=["dapi"], overrides={"dapi": "dapi"}) == {"dapi": 1}


def test_read_then_match_end_to_end(tmp_path):
    path = _imagej(
        tmp_path / "e2e.tif", np.zeros((2, 4, 5), np.uint16), axes="CYX", labels=["NeuN", "DCX"]
    )
    assert match_channels(read_section(path), markers=["dcx", "neun"]) == {"dcx": 1, "neun": 0}


def test_a_section_from_arrays_is_cleaned_like_a_read_one():
    from dcxcount.io import section_from_arrays

    data = np.ones((2, 8, 8), np.float64)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    section = section_from_arrays(data, channel_names=("DCX", "NeuN"), pixel_size_um=0.5, path="layers")
    assert section.data.dtype == np.float32 and np.isfinite(section.data).all()
    assert (section.nonfinite_px, section.pixel_size_source) == (2, "given")
    assert np.isnan(data[0, 0, 0])  # the caller's array is left alone
    with pytest.raises(SectionReadError, match=r"layers: expected \(C, Y, X\) channels with one name each"):
        section_from_arrays(data, channel_names=("DCX",), pixel_size_um=0.5, path="layers")
