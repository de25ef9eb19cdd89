"""Properties of the section reader over generated files: axes, metadata and non-finite pixels.

For any order of z-planes, channels and singleton time points before Y and X,
in OME-TIFF or ImageJ form, with channel names, a pixel size in any length
unit and NaN or infinite pixels anywhere, the reader returns the z-projected
(C, Y, X) image, every pixel finite, the names and the pixel size the file
holds, and counts the pixels it had to mask.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dcxcount.io import read_section

_NAME_CHARACTERS = st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x2FF)
channel_names = st.text(_NAME_CHARACTERS, min_size=1, max_size=8)
UNITS_UM = {"µm": 1.0, "nm": 1e-3, "mm": 1e3}


@st.composite
def stacks(draw) -> tuple[np.ndarray, str]:
    """Pixels and their axes: a subset of T (size 1), Z and C in any order, then Y and X."""
    leading = [axis for axis in draw(st.permutations("TZC")) if draw(st.booleans())]
    sizes = {"T": 1, "Z": draw(st.integers(1, 3)), "C": draw(st.integers(1, 3)),
             # One row or column is fine, but tifffile writes an ImageJ image one pixel wide as a row.
             "Y": draw(st.integers(2, 7)), "X": draw(st.integers(2, 7))}
    axes = "".join(leading) + "YX"
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    if dtype == np.float32:
        elements = st.floats(-1e3, 1e3, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])
    else:
        elements = st.integers(0, np.iinfo(dtype).max)
    data = draw(arrays(dtype, [sizes[axis] for axis in axes], elements=elements))
    return data, axes


def _as_zcyx(data: np.ndarray, axes: str) -> np.ndarray:
    for axis in "ZC":
        if axis not in axes:
            data, axes = data[np.newaxis], axis + axes
    if "T" in axes:
        data, axes = data.take(0, axis=axes.index("T")), axes.replace("T", "")
    return data.transpose([axes.index(axis) for axis in "ZCYX"])


def _expected(data: np.ndarray, axes: str) -> tuple[np.ndarray, int]:
    """The (C, Y, X) image the reader must return, and how many (Y, X) positions it must mask."""
    stack = _as_zcyx(data, axes)
    if stack.dtype.kind != "f":
        return stack.max(axis=0), 0
    stack = np.where(np.isinf(stack), np.nan, stack).astype(np.float32)
    masked = int((~np.isfinite(stack)).any(axis=(0, 1)).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN positions: filled below
        image = np.nanmax(stack, axis=0)
    for channel in image:
        finite = channel[np.isfinite(channel)]
        channel[~np.isfinite(channel)] = np.median(finite) if finite.size else 0.0
    return image, masked


def _write(path: Path, data: np.ndarray, axes: str, *, names: list[str], pixel_size_um: float, unit: str,
           imagej: bool) -> None:
    size_in_unit = pixel_size_um / UNITS_UM[unit]
    if imagej:
        # ImageJ hyperstacks are TZCYX with every axis present.
        stack = _as_zcyx(data, axes)
        tifffile_kwargs = dict(imagej=True, resolution=(1 / size_in_unit, 1 / size_in_unit),
                               metadata={"axes": "ZCYX", "unit": "nm" if unit == "nm" else "micron"
                                         if unit == "µm" else "mm", "Labels": names * stack.shape[0]})
        _imwrite(path, stack, **tifffile_kwargs)
    else:
        metadata = {"axes": axes, "PhysicalSizeX": size_in_unit, "PhysicalSizeY": size_in_unit,
                    "PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit, "Channel": {"Name": names}}
        _imwrite(path, data, ome=True, metadata=metadata)


def _imwrite(path: Path, data: np.ndarray, **kwargs) -> None:
    import tifffile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile's notes on odd shapes and ImageJ's missing dtypes
        # Without it tifffile takes a last axis of 3 or 4 for RGB samples.
        tifffile.imwrite(path, data, photometric="minisblack", **kwargs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), names=st.lists(channel_names, min_size=3, max_size=3, unique_by=str.casefold),
       pixel_size_um=st.floats(0.05, 5.0), unit=st.sampled_from(sorted(UNITS_UM)), imagej=st.booleans())
def test_any_axes_order_metadata_and_bad_pixels_read_back(stack, names, pixel_size_um, unit, imagej):
    data, axes = stack
    n_channels = data.shape[axes.index("C")] if "C" in axes else 1
    expected, masked = _expected(data, axes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("s.tif" if imagej else "s.ome.tif")
        _write(path, data, axes, names=names[:n_channels], pixel_size_um=pixel_size_um, unit=unit, imagej=imagej)
        section = read_section(path)
    assert section.data.shape == expected.shape
    assert np.isfinite(section.data).all()
    np.testing.assert_array_equal(section.data, expected)
    assert section.data.dtype == (np.float32 if data.dtype.kind == "f" else data.dtype)
    assert section.nonfinite_px == masked
    assert section.channel_names == tuple(names[:n_channels])
    assert abs(section.pixel_size_um - pixel_size_um) <= 1e-5 * pixel_size_um
    n_z = data.shape[axes.index("Z")] if "Z" in axes else 1
    assert section.projection == ("none" if n_z == 1 else f"max of {n_z} z-planes")
