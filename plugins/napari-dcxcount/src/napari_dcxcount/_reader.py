"""Open a section (TIFF, OME-TIFF, ImageJ hyperstack) as one image layer per channel.

The file is read by the core (:func:`dcxcount.io.read_section`), so napari
shows exactly what ``dcxcount count`` counts: the same axes, the same z
maximum projection, the same channel names and pixel size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ._compat import keep_triton_from_system_llvm
from ._model import MARKER_COLORMAPS, MARKER_NAMES, MARKERS, LayerData

__all__ = ["SUFFIXES", "napari_get_reader", "napari_get_results_reader", "read_section_layers",
           "section_image_layers", "mosaic_image_layers", "contrast_limits"]

SUFFIXES = (".tif", ".tiff")
"""File endings the reader takes (``.ome.tif`` and ``.ome.tiff`` end so too)."""

# Percentiles for the display range: the dim end just above the background, the bright end
# below the few saturated or hot pixels that would otherwise flatten every cell to black.
_LOW_PERCENTILE, _HIGH_PERCENTILE = 0.5, 99.8


def napari_get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """npe2 reader contribution: the reader function if `path` is a TIFF file.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open. A list is taken when every entry is
        a TIFF file (each becomes its own set of layers).

    Returns
    -------
    callable or None
        :func:`read_paths`, or None so that napari tries another reader.
    """
    paths = [path] if isinstance(path, (str, PathLike)) else list(path)
    if not paths or not all(str(p).lower().endswith(SUFFIXES) and not Path(p).is_dir() for p in paths):
        return None
    return read_paths


def napari_get_results_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """npe2 reader contribution: the reader function if `path` is a dcxcount results or section folder.

    Parameters
    ----------
    path : str or list of str
        A folder written by ``dcxcount count --out`` (``settings.json`` and
        ``sections/``), one of its section folders (``result.json``), or either
        JSON file.

    Returns
    -------
    callable or None
        :func:`read_results`, or None so that napari tries another reader.
    """
    from ._results import is_results_folder

    paths = [path] if isinstance(path, (str, PathLike)) else list(path)
    if len(paths) != 1 or not is_results_folder(paths[0]):
        return None
    return read_results


def read_results(path: str | Sequence[str]) -> list[LayerData]:
    """Layers of a counted section: the image, its labels, GCL, processes and cells.

    A section folder opens that section; a study's folder opens the first
    section the review would show (failed ones first, then the one with the
    most doubtful stage calls). The Review widget (*Plugins > dcxcount >
    Review*) steps through the others.

    Raises
    ------
    napari_dcxcount._results.ResultsFolderError
        The folder is not a results folder, or a section folder outside one.
    """
    from ._results import ReviewSession, find_results, study_section_layers

    path = path if isinstance(path, (str, PathLike)) else path[0]
    out_dir, key = find_results(path)
    session = ReviewSession(out_dir)
    loaded = session.go(session.order.index(key) if key is not None else 0)
    if loaded.error:
        warnings.warn(f"{session.title()}: {loaded.error}", stacklevel=2)
    layers = study_section_layers(loaded)
    for _, kwargs, _ in layers:
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "results": str(out_dir), "section_key": loaded.entry.key}
    return layers


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """Layers of one or several section files (see :func:`read_section_layers`)."""
    paths = [path] if isinstance(path, (str, PathLike)) else list(path)
    return [layer for p in paths for layer in read_section_layers(path=p)]


def contrast_limits(image: np.ndarray) -> tuple[float, float]:
    """Display range of one channel from its 0.5th and 99.8th percentiles.

    Parameters
    ----------
    image : array
        One channel.

    Returns
    -------
    (low, high) : tuple of float
        ``high > low`` even for a flat channel, as napari requires.
    """
    finite = np.asarray(image)
    # A sample of the pixels is enough for two percentiles and keeps a large tile fast.
    step = max(1, finite.size // 2_000_000)
    values = finite.ravel()[::step]
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, [_LOW_PERCENTILE, _HIGH_PERCENTILE]))
    if high <= low:
        high = low + 1.0
    return low, high


def _channel_markers(section: Any) -> dict[int, str]:
    """Channel index -> marker, for the channels whose name the core matches to a known marker."""
    from dcxcount.io import SectionReadError, match_channels

    found: dict[int, str] = {}
    for marker in MARKERS:
        try:
            # The core's own name rule (case, spaces and punctuation ignored), one marker at a
            # time so that a missing marker only means "not this one".
            index = match_channels(section, markers=[marker])[marker]
        except SectionReadError:
            continue
        found.setdefault(index, marker)
    return found


def _units_kwargs() -> dict[str, Any]:
    """``units`` for layers where napari has them (layer units came after napari 0.5.0)."""
    import inspect

    from napari.layers import Image

    return {"units": ("um", "um")} if "units" in inspect.signature(Image.__init__).parameters else {}


def read_section_layers(*, path: str | PathLike[str], pixel_size_um: float | None = None) -> list[LayerData]:
    """Read a section file into one napari image layer per channel.

    Parameters
    ----------
    path : str or path-like
        TIFF, OME-TIFF or ImageJ hyperstack (YX, CYX, RGB, ZYX or ZCYX; a
        z-stack is maximum-projected, as the core counts it).
    pixel_size_um : float, optional
        Pixel size that replaces the file's.

    Returns
    -------
    list of (data, kwargs, "image")
        One layer per channel, named after its marker when the channel's name
        is a known one (``DCX``, ``NeuN``, ``DAPI``, ``BrdU``, ``EdU``), else
        after the channel; scaled in micrometres; contrast limits from the
        channel's percentiles; coloured per marker and blended additively.
        Each layer's metadata holds ``marker``, ``pixel_size_um``, ``path``
        and ``channel`` for the Count widget.

    Raises
    ------
    dcxcount.io.SectionReadError
        The file cannot be read as a section (the message names the file and the fix).

    Warns
    -----
    UserWarning
        The file has no usable pixel size: the layers are shown in pixels and
        the Count widget asks for the pixel size.
    """
    from dcxcount.io import SectionReadError, read_section

    keep_triton_from_system_llvm()  # dcxcount.mosaic imports the core's torch (see _compat)
    from dcxcount.mosaic import is_mosaic

    if is_mosaic(path):
        return mosaic_image_layers(path=path, pixel_size_um=pixel_size_um)
    pixel_size_known = True
    try:
        section = read_section(path, pixel_size_um=pixel_size_um)
    except SectionReadError as error:
        # The core refuses to guess a pixel size; a viewer can still show the image. Read it
        # again with a stand-in size: if that works the pixel size was the only problem, and
        # the layers stay in pixels with the size left for the user to give.
        try:
            section = read_section(path, pixel_size_um=1.0)
        except SectionReadError:
            raise error from None
        pixel_size_known = False
        warnings.warn(f"{error} The image is shown in pixels; give the pixel size in the Count widget.",
                      stacklevel=2)

    return section_image_layers(section, path=str(path), pixel_size_known=pixel_size_known)


def section_image_layers(section: Any, *, path: str | None, pixel_size_known: bool = True) -> list[LayerData]:
    """One image layer per channel of a section the core has read.

    Parameters
    ----------
    section : dcxcount.io.Section
        From :func:`dcxcount.io.read_section`.
    path : str or None
        Recorded in each layer's metadata (the Count widget names the
        section by it); None leaves it out, as blinded review must.
    pixel_size_known : bool
        False when the pixel size was a stand-in: the layers are then in pixels.

    Returns
    -------
    list of (data, kwargs, "image")
        As :func:`read_section_layers` describes.
    """
    markers = _channel_markers(section)
    scale = (section.pixel_size_um,) * 2 if pixel_size_known else (1.0, 1.0)
    units = _units_kwargs() if pixel_size_known else {}
    layers: list[LayerData] = []
    for index, channel in enumerate(section.channel_names):
        marker = markers.get(index)
        image = section.data[index]
        metadata = {"marker": marker, "channel": str(channel),
                    "pixel_size_um": section.pixel_size_um if pixel_size_known else None,
                    "projection": section.projection}
        if path is not None:
            metadata["path"] = path
        layers.append((image, {
            "name": MARKER_NAMES[marker] if marker else str(channel),
            "scale": scale,
            **units,
            "contrast_limits": contrast_limits(image),
            "colormap": MARKER_COLORMAPS.get(marker, "gray"),
            "blending": "additive",
            "metadata": metadata,
        }, "image"))
    return layers


def mosaic_image_layers(*, path: str | PathLike[str], pixel_size_um: float | None = None) -> list[LayerData]:
    """A pyramidal (whole-section) TIFF as multiscale image layers, read lazily as napari pans and zooms.

    The file is opened by the core (:func:`dcxcount.mosaic.open_mosaic`) and
    each pyramid level becomes one level of a napari multiscale layer (dask
    arrays over the file's own zarr store), so a 40,000 px slide opens in
    seconds and only the tiles on screen are decoded. Names, colours and
    contrast limits come from the coarsest level, as for a whole section.
    The file stays open while the layers exist.

    Parameters
    ----------
    path : path
        A tiled, pyramidal OME-TIFF (``dcxcount.mosaic.is_mosaic``).
    pixel_size_um : float, optional
        Pixel size of the finest level, replacing the file's.
    """
    from dcxcount.io import section_from_arrays
    from dcxcount.mosaic import open_mosaic

    mosaic = open_mosaic(path, pixel_size_um=pixel_size_um)
    coarsest = len(mosaic.levels) - 1
    preview = section_from_arrays(mosaic.read(coarsest, slice(None), slice(None)), channel_names=mosaic.channel_names,
                                  pixel_size_um=mosaic.levels[coarsest].pixel_size_um, path=str(path))
    layers = section_image_layers(preview, path=str(path))
    for index, (_, kwargs, _) in enumerate(layers):
        pyramid = [_lazy_channel(level, index) for level in mosaic.levels]
        kwargs.update(multiscale=True, scale=(mosaic.pixel_size_um,) * 2)
        kwargs["metadata"].update(pixel_size_um=mosaic.pixel_size_um, mosaic=True, levels=len(pyramid))
        layers[index] = (pyramid, kwargs, "image")
    return layers


def _lazy_channel(level: Any, channel: int) -> Any:
    """One channel of one pyramid level as a 2-D dask array (z-planes max-projected, lazily)."""
    import dask.array as da

    data = da.from_zarr(level.array)
    index: list[Any] = []
    channel_axis = next((a for a in "CS" if dict(zip(level.axes, level.array.shape)).get(a, 1) > 1), None)
    for axis in level.axes:
        if axis in "YXZ":
            index.append(slice(None))
        else:
            index.append(channel if axis == channel_axis else 0)
    data = data[tuple(index)]
    if "Z" in level.axes:
        data = data.max(axis=[a for a in level.axes if a in "YXZ"].index("Z"))
    return data
