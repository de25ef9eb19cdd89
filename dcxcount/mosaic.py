"""Whole-section mosaics: lazy reading, finding the dentate gyrus, tiled counting in bounded memory.

A slide scanner's whole coronal section (20,000-40,000 px a side) does not fit
the in-memory pipeline: read whole and counted whole it needs ~80 bytes per
pixel (docs/reliability.md, "Memory"), and the dentate gyrus (DG) is a few
percent of it. A mosaic is therefore counted in three steps:

1. **Lazy reading** (:func:`open_mosaic`): a tiled or pyramidal (OME-)TIFF
   through tifffile's zarr store (``series.aszarr(level=...)``), or an
   OME-Zarr through zarr itself. Only the chunks a window touches are
   decoded. Each pyramid level's pixel size follows from its shape, and a
   level is chosen by pixel size (:func:`choose_level`).
2. **Finding the DG** (:func:`find_dentate_gyri`) on a level of about 2.5 um
   per pixel: nucleus-like pixels of the nuclear channel, then the densely
   covered region (:func:`dcxcount.gcl.gcl_from_nuclei`, as on a full-size
   section) whose shape encloses a hilus (the C of the GCL,
   :func:`dcxcount.gcl.frame_from_gcl`). A section holds 0, 1 or 2 DG
   (hemispheres); each becomes a :class:`DentateRegion`, a box with a margin
   around its GCL. A person can instead give the GCL as an outline
   (:func:`region_from_outline`).
3. **Tiled segmentation with seam-safe stitching** (:func:`segment_tiled`) of
   each region: tiles with an overlap on every side are segmented on their
   own (through Dask, as many at once as the memory budget allows), and each
   object is kept once, by the tile whose core (the tile without its overlap)
   holds its centroid. As long as the overlap is wider than an object and
   the network's context, the owning tile sees the whole object with full
   context, so no object is split at a seam or counted twice. The layer
   frame, the process tracing, staging and co-labelling then run once on the
   stitched labels of the whole region (:func:`count_region`), so GCL and DCX
   traces that cross tile borders are never cut either.

Intensities are normalised once per region (the percentiles the specialist
model's own normalisation would take on the region), not per tile, so a tile
of empty hilus is not stretched to look like a packed GCL.

``dcxcount count`` takes this path (:func:`count_mosaic_section`) for a pyramid
(OME-TIFF with SubIFDs or series levels) or an OME-Zarr that would not fit in
the memory a section may use (``--max-memory-gb``); a single-level image that
large stays refused from its header, since finding its DG would decode it
whole (:func:`count_mosaic` still takes it). A section with two DG counts the
one its ``dg`` samplesheet column names, or the outlined one; a person's
corrections are recounted in the same box (:func:`read_mosaic_box`, then
:func:`dcxcount.batch.recount_section`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import measure, segmentation

from .gcl import NoGCLFoundError, frame_from_gcl, gcl_from_nuclei
from .io import Section, SectionReadError, section_from_arrays
from .memory import MODEL_PIXEL_SIZE_UM, available_cpus, available_memory_bytes, count_memory_bytes, format_bytes
from .pipeline import CountSettings, SectionResult, count_section
from .progress import CancelToken, ProgressCallback, report, sub_progress
from .segment import load_engine
from .thread_hooks import carried
from .vocabulary import kind_of_marker

__all__ = ["MosaicError", "MosaicLevel", "Mosaic", "DentateRegion", "Tile", "MosaicCount", "open_mosaic",
           "is_mosaic", "needs_mosaic", "choose_level", "read_downsampled", "find_dentate_gyri",
           "region_from_outline", "tile_grid", "segment_tiled", "count_region", "count_mosaic",
           "count_mosaic_section", "DETECTION_PIXEL_SIZE_UM", "DEFAULT_TILE_PX", "DEFAULT_OVERLAP_PX",
           "DEFAULT_MARGIN_UM", "write_mosaic", "read_mosaic_box", "MOSAIC_COLUMNS"]

DETECTION_PIXEL_SIZE_UM = 2.5
"""Pixel size the DG is looked for at: a 9 um nucleus is ~4 px, a 70 um GCL ~28 px thick."""

DEFAULT_TILE_PX = 2048
"""Tile core (stride) in pixels of the counted level: ~0.6 GB per tile for two markers at 0.6 um."""

DEFAULT_OVERLAP_PX = 64
"""Overlap on each side of a tile: > the largest soma (12 um ~ 20 px) plus the network's 32 px context."""

DEFAULT_MARGIN_UM = 150.0
"""Tissue kept around a DG's GCL: the SGZ band, DCX processes into the ML, and the hilus's hull."""

# A chunk larger than this is not "lazy": reading one window decodes it whole.
_MAX_CHUNK_BYTES = 256e6
# Strips read while downsampling: about this many bytes at a time.
_STRIP_BYTES = 64e6
# Smallest GCL (mm^2) taken for a DG on the downsampled level: a mouse DG section's GCL is 0.1-0.3 mm^2.
_MIN_DG_GCL_MM2 = 0.03


class MosaicError(SectionReadError):
    """A mosaic that cannot be counted as asked; the message names the file and what to do."""


@dataclass(frozen=True, eq=False)
class MosaicLevel:
    """One pyramid level, read lazily.

    Attributes
    ----------
    array : zarr.Array
        The level's pixels (nothing is decoded until indexed).
    axes : str
        One letter per axis of ``array`` (e.g. ``"CYX"``, ``"YXS"``, ``"TCZYX"``).
    pixel_size_um : float
    """

    array: object
    axes: str
    pixel_size_um: float

    @property
    def shape_yx(self) -> tuple[int, int]:
        """(rows, columns)."""
        shape = dict(zip(self.axes, self.array.shape))
        return int(shape["Y"]), int(shape["X"])


@dataclass(eq=False)
class Mosaic:
    """An image opened lazily: its levels, channel names and pixel size.

    Use as a context manager (or call :meth:`close`) to close the file.

    Attributes
    ----------
    path : Path
    levels : list of MosaicLevel
        Finest first.
    channel_names : tuple of str
    pixel_size_source : str
        ``"ome"``, ``"imagej"``, ``"tiff-resolution"``, ``"ome-zarr"`` or ``"override"``.
    dtype : numpy.dtype
    """

    path: Path
    levels: list[MosaicLevel]
    channel_names: tuple[str, ...]
    pixel_size_source: str
    dtype: np.dtype
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def pixel_size_um(self) -> float:
        """Pixel size of the finest level."""
        return self.levels[0].pixel_size_um

    @property
    def shape_yx(self) -> tuple[int, int]:
        """(rows, columns) of the finest level."""
        return self.levels[0].shape_yx

    def read(self, level: int, rows: slice, cols: slice) -> np.ndarray:
        """A window of every channel of one level as a (C, h, w) array.

        Z-planes are projected by maximum (NaN-skipping for floats), RGB
        samples are channels, and non-finite pixels are NaN: callers decide
        what they become.
        """
        lvl = self.levels[level]
        index, kept = [], ""
        for axis, size in zip(lvl.axes, lvl.array.shape):
            if axis == "Y":
                index.append(rows)
            elif axis == "X":
                index.append(cols)
            elif axis in "CSZ" and size > 1:
                index.append(slice(None))
            else:
                index.append(0)  # singleton T (or C, Z); other sizes were refused on opening
                continue
            kept += axis
        data = np.asarray(lvl.array[tuple(index)])
        for axis in "ZCS":
            if axis not in kept:
                data, kept = data[np.newaxis], axis + kept
        data = data.transpose([kept.index(a) for a in "ZCSYX"])
        if data.shape[0] > 1:
            data = np.fmax.reduce(data, axis=0) if data.dtype.kind == "f" else data.max(axis=0)
        else:
            data = data[0]
        data = data.reshape(-1, *data.shape[-2:])
        if data.dtype.kind == "f":
            data = data.astype(np.float32, copy=False)
            data[np.isinf(data)] = np.nan
        return data

    def close(self) -> None:
        """Close the file (the levels cannot be read afterwards)."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Mosaic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, eq=False)
class DentateRegion:
    """A dentate gyrus found on a downsampled level (or outlined by a person), and the box counted around it.

    Attributes
    ----------
    index : int
        1, 2, ... from left to right.
    side : str
        ``"left"`` or ``"right"`` half of the image (its GCL's centre), ``"only"`` when one was found.
    box_px : (y0, y1, x0, x1)
        The counted box in pixels of the finest level: the GCL's bounding box plus the margin.
    gcl_box_px : (y0, y1, x0, x1)
        The GCL's bounding box in pixels of the finest level.
    gcl_area_mm2 : float
        GCL area as found on the downsampled level.
    gcl : (h, w) bool array
        The GCL on the downsampled level, within ``box_px`` (``gcl_pixel_size_um`` per pixel).
    gcl_pixel_size_um : float
    source : str
        ``"detected"`` or the outline file's path.
    """

    index: int
    side: str
    box_px: tuple[int, int, int, int]
    gcl_box_px: tuple[int, int, int, int]
    gcl_area_mm2: float
    gcl: np.ndarray
    gcl_pixel_size_um: float
    source: str = "detected"

    def describe(self, pixel_size_um: float) -> str:
        """The region in words: which, where (um from the image's top left) and how large."""
        y0, y1, x0, x1 = self.gcl_box_px
        return (f"DG {self.index} ({self.side}): GCL x {x0 * pixel_size_um:.0f}-{x1 * pixel_size_um:.0f} um, "
                f"y {y0 * pixel_size_um:.0f}-{y1 * pixel_size_um:.0f} um, ~{self.gcl_area_mm2:.2f} mm^2")


@dataclass(frozen=True)
class Tile:
    """One tile: its core (owned pixels) and its window (core plus overlap, clipped to the image).

    Both are (y0, y1, x0, x1), half-open, in pixels of the tiled image.
    """

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]


@dataclass
class MosaicCount:
    """Every region of a mosaic counted.

    Attributes
    ----------
    regions : list of DentateRegion
    results : list of SectionResult
        One per region, in the same order; labels, frame and coordinates are
        those of the region's box (``summary`` holds its origin).
    level : int
        The pyramid level counted.
    pixel_size_um : float
        That level's pixel size.
    """

    regions: list[DentateRegion]
    results: list[SectionResult]
    level: int
    pixel_size_um: float


# --------------------------------------------------------------------------- reading


def is_mosaic(path: str | PathLike[str]) -> bool:
    """True for an OME-Zarr folder and for a TIFF with a pyramid (more than one level)."""
    path = Path(path)
    if path.is_dir():
        return (path / "zarr.json").is_file() or (path / ".zattrs").is_file() or (path / ".zgroup").is_file()
    if not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.series) and len(tif.series[0].levels) > 1
    except Exception:  # not a TIFF, damaged: read_section reports why
        return False


def needs_mosaic(path: str | PathLike[str], *, memory_limit_bytes: int | None,
                 pixel_size_um: float | None = None) -> bool:
    """Whether a file must be counted as a mosaic: OME-Zarr, or a pyramid too large to count whole.

    A pyramidal TIFF that fits is counted whole, as any section: the tiled
    path is for what would not fit, and a section counted whole is the
    reference it is checked against.

    Parameters
    ----------
    path : path
    memory_limit_bytes : int or None
        What one section may use (:func:`dcxcount.memory.available_memory_bytes`); None: no limit.
    pixel_size_um : float, optional
        Overrides the file's (only the estimate uses it here).
    """
    path = Path(path)
    if path.is_dir():
        return is_mosaic(path)
    if memory_limit_bytes is None or not path.is_file():
        return False
    try:
        with open_mosaic(path, pixel_size_um=pixel_size_um or 1.0) as mosaic:
            level = mosaic.levels[0]
            height, width = level.shape_yx
            sizes = dict(zip(level.axes, level.array.shape))
            channels = max(1, sizes.get("C", 1) * sizes.get("S", 1))
            need = count_memory_bytes(planes=sizes.get("Z", 1), channels=channels, height=height, width=width,
                                      itemsize=mosaic.dtype.itemsize,
                                      pixel_size_um=pixel_size_um or _header_pixel_size(path) or MODEL_PIXEL_SIZE_UM)
            chunk = math.prod(level.array.chunks) * mosaic.dtype.itemsize
    except Exception:  # unreadable, no pixel size, odd axes: read_section gives the reason
        return False
    # Without a coarser level, finding the DG would decode the whole image first (a minute and more for
    # 30,000^2 px): such a file is refused from its header as before, and count_mosaic still takes it.
    return need > memory_limit_bytes and chunk <= _MAX_CHUNK_BYTES and len(mosaic.levels) > 1


def _header_pixel_size(path: Path) -> float | None:
    try:
        with open_mosaic(path) as mosaic:
            return mosaic.pixel_size_um
    except SectionReadError:
        return None


def open_mosaic(path: str | PathLike[str], *, pixel_size_um: float | None = None) -> Mosaic:
    """Open a TIFF/OME-TIFF (tiled, pyramidal or not) or an OME-Zarr lazily.

    Parameters
    ----------
    path : path
        A TIFF file, or an OME-Zarr folder (NGFF 0.4 ``.zattrs`` or 0.5 ``zarr.json``).
    pixel_size_um : float, optional
        Pixel size of the finest level, replacing the file's.

    Returns
    -------
    Mosaic

    Raises
    ------
    SectionReadError
        When the file cannot be read, has no pixel size (and none is given),
        or has axes other than channels, z-planes and a single time point.
    """
    path = Path(path)
    if not path.exists():
        raise SectionReadError(f"{path}: no such file.")
    try:
        import zarr  # noqa: F401  (tifffile's aszarr needs it)
    except ImportError as error:
        raise SectionReadError(f"{path}: reading mosaics needs the zarr package (pip install zarr)") from error
    if path.is_dir():
        return _open_ome_zarr(path, pixel_size_um=pixel_size_um)
    return _open_tiff(path, pixel_size_um=pixel_size_um)


def _check_mosaic_axes(path: Path, axes: str, shape: Sequence[int]) -> None:
    for axis, size in zip(axes, shape):
        if size != 1 and axis not in "ZCSYX":
            raise SectionReadError(f"{path}: cannot count axis {axis!r} of size {size} (axes {axes}, shape "
                                   f"{tuple(shape)}); only channels, z-planes, Y and X are supported.")


def _open_tiff(path: Path, *, pixel_size_um: float | None) -> Mosaic:
    import tifffile
    import zarr

    # The private helpers of io read the same metadata as read_section does,
    # so a mosaic's pixel size and channel names are found the same way.
    from .io import _channel_names, _file_pixel_size, _parse_ome

    try:
        tif = tifffile.TiffFile(path)
    except Exception as error:
        raise SectionReadError(f"{path}: cannot read as TIFF ({type(error).__name__}: {error}).") from error
    try:
        if not tif.series:
            raise SectionReadError(f"{path}: the TIFF file holds no image.")
        series = tif.series[0]
        ome = _parse_ome(tif.ome_metadata) if tif.is_ome else None
        imagej = tif.imagej_metadata if tif.is_imagej else None
        if pixel_size_um is None:
            size_um, source = _file_pixel_size(path, ome, imagej, series.keyframe)
        else:
            size_um, source = float(pixel_size_um), "override"
        levels = []
        width0 = None
        for index, level in enumerate(series.levels):
            axes = level.axes
            _check_mosaic_axes(path, axes, level.shape)
            array = zarr.open(series.aszarr(level=index), mode="r")
            width = dict(zip(axes, level.shape))["X"]
            width0 = width0 or width
            levels.append(MosaicLevel(array=array, axes=axes, pixel_size_um=size_um * width0 / width))
        sizes = dict(zip(series.axes, series.shape))
        is_rgb = series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB
        names = _channel_names(ome, imagej, n_c=sizes.get("C", 1), n_s=sizes.get("S", 1), is_rgb=is_rgb)
        return Mosaic(path=path, levels=levels, channel_names=names, pixel_size_source=source,
                      dtype=np.dtype(series.dtype), _closers=[tif.close])
    except SectionReadError:
        tif.close()
        raise
    except Exception as error:
        tif.close()
        raise SectionReadError(f"{path}: cannot read as a tiled TIFF ({type(error).__name__}: {error}).") from error


_UM_PER_ZARR_UNIT = {"micrometer": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0, "nanometer": 1e-3, "nm": 1e-3,
                     "millimeter": 1e3, "mm": 1e3}


def _open_ome_zarr(path: Path, *, pixel_size_um: float | None) -> Mosaic:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = group.attrs.asdict()
    except Exception as error:
        raise SectionReadError(f"{path}: cannot read as OME-Zarr ({type(error).__name__}: {error}).") from error
    attrs = attrs.get("ome", attrs)  # NGFF 0.5 nests everything under "ome"
    multiscales = attrs.get("multiscales")
    if not multiscales:
        raise SectionReadError(f"{path}: a zarr folder without OME 'multiscales' metadata; write it as OME-Zarr.")
    scale = multiscales[0]
    raw_axes = scale.get("axes") or ["t", "c", "z", "y", "x"][-len(group[scale["datasets"][0]["path"]].shape):]
    axes = "".join((a["name"] if isinstance(a, dict) else a).upper()[:1] for a in raw_axes)
    units = [a.get("unit") if isinstance(a, dict) else None for a in raw_axes]
    levels = []
    source = "override" if pixel_size_um is not None else "ome-zarr"
    for dataset in scale["datasets"]:
        array = group[dataset["path"]]
        _check_mosaic_axes(path, axes, array.shape)
        factors = [t.get("scale") for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"]
        x_at = axes.index("X")
        size = float(factors[0][x_at]) * _UM_PER_ZARR_UNIT.get(units[x_at] or "", 1.0) if factors else None
        levels.append((array, size))
    if pixel_size_um is None:
        if levels[0][1] is None or units[axes.index("X")] not in _UM_PER_ZARR_UNIT:
            raise SectionReadError(f"{path}: no pixel size found (no scale in a length unit in the OME-Zarr "
                                   "metadata). Set `pixel_size_um` (e.g. `pixel_size_um=0.65`).")
        pixel_size_um = levels[0][1]
    width0 = dict(zip(axes, levels[0][0].shape))["X"]
    mosaic_levels = [MosaicLevel(array=array, axes=axes,
                                 pixel_size_um=pixel_size_um * width0 / dict(zip(axes, array.shape))["X"])
                     for array, _ in levels]
    n_channels = dict(zip(axes, levels[0][0].shape)).get("C", 1)
    labels = [c.get("label") or "" for c in attrs.get("omero", {}).get("channels", [])]
    names = tuple(labels[i] if i < len(labels) and labels[i] else f"C{i}" for i in range(n_channels))
    return Mosaic(path=path, levels=mosaic_levels, channel_names=names, pixel_size_source=source,
                  dtype=np.dtype(levels[0][0].dtype))


def choose_level(mosaic: Mosaic, *, pixel_size_um: float, tolerance: float = 0.1) -> int:
    """The coarsest level whose pixels are no larger than ``pixel_size_um`` (within ``tolerance``), else the finest.

    Counting at a level coarser than the model's working pixel size would
    lose detail the model needs; a finer one only costs time, since the model
    resamples every image to its own pixel size anyway.
    """
    fine_enough = [i for i, level in enumerate(mosaic.levels)
                   if level.pixel_size_um <= pixel_size_um * (1 + tolerance)]
    return max(fine_enough, key=lambda i: mosaic.levels[i].pixel_size_um) if fine_enough else 0


def read_downsampled(mosaic: Mosaic, *, channel: int, pixel_size_um: float) -> tuple[np.ndarray, float]:
    """One channel at about ``pixel_size_um``, read strip by strip (never the whole fine level at once).

    The coarsest level at least that fine is read and block-averaged by the
    whole factor that brings it nearest ``pixel_size_um``.

    Returns
    -------
    image : (h, w) float32
    pixel_size_um : float
        The pixel size of ``image``.
    """
    index = choose_level(mosaic, pixel_size_um=pixel_size_um, tolerance=0.25)
    level = mosaic.levels[index]
    factor = max(1, int(round(pixel_size_um / level.pixel_size_um)))
    height, width = level.shape_yx
    out_h, out_w = height // factor, width // factor
    if out_h == 0 or out_w == 0:
        raise MosaicError(f"{mosaic.path}: the image is too small to look for a dentate gyrus at {pixel_size_um} um")
    channels = max(1, len(mosaic.channel_names))
    # Strips of whole chunk rows (a chunk is decoded whole however few of its rows are asked for) and of
    # whole blocks.
    chunk_rows = int(dict(zip(level.axes, level.array.chunks)).get("Y", 1))
    unit = chunk_rows * factor // math.gcd(chunk_rows, factor)
    rows_per_strip = max(1, int(_STRIP_BYTES / (width * channels * max(mosaic.dtype.itemsize, 4))) // unit) * unit
    out = np.empty((out_h, out_w), np.float32)
    for start in range(0, out_h * factor, rows_per_strip):
        stop = min(start + rows_per_strip, out_h * factor)
        strip = mosaic.read(index, slice(start, stop), slice(0, out_w * factor))[channel].astype(np.float32)
        blocks = strip.reshape((stop - start) // factor, factor, out_w, factor)
        # nanmean by hand: an all-NaN block stays NaN (0 / 0) without a warning, and np.errstate is
        # per thread, where silencing nanmean's warning would change the filters of every thread.
        with np.errstate(invalid="ignore"):
            out[start // factor:stop // factor] = (np.nansum(blocks, axis=(1, 3))
                                                   / np.sum(~np.isnan(blocks), axis=(1, 3)))
    return out, level.pixel_size_um * factor


# --------------------------------------------------------------------------- finding the dentate gyrus


def _opened_background(image: np.ndarray, *, pixel_size_um: float, opening_um: float,
                       grid_um: float = 10.0) -> np.ndarray:
    """A grey opening of ``image`` by a disk of ``opening_um`` diameter, computed on a ~``grid_um`` grid.

    A disk, not a square: a square cannot lie along a diagonal tissue edge,
    and the tissue's plateau there would stand out as a band as thick as a
    GCL. The blocks' minima first (an erosion on the fine grid), then the
    opening at the coarse grid, interpolated back: a few seconds for a whole
    section.
    """
    from skimage.morphology import disk

    height, width = image.shape
    step = max(1, int(round(grid_um / pixel_size_um)))
    rows, cols = -(-height // step), -(-width // step)
    padded = np.pad(image, ((0, rows * step - height), (0, cols * step - width)), mode="edge")
    low = padded.reshape(rows, step, cols, step).min(axis=(1, 3))
    footprint = disk(max(1, int(round(opening_um / 2 / (pixel_size_um * step)))))
    low = ndi.grey_dilation(ndi.grey_erosion(low, footprint=footprint, mode="nearest"), footprint=footprint,
                            mode="nearest")
    return ndi.zoom(low, step, order=1, mode="nearest", grid_mode=True)[:height, :width]


def _nucleus_like(image: np.ndarray, *, pixel_size_um: float, opening_um: float = 120.0,
                  min_snr: float = 3.0, min_contrast: float = 0.4) -> np.ndarray:
    """Pixels of a downsampled nuclear channel brighter than their surroundings: by ``min_snr`` noise deviations
    and by ``min_contrast`` of the contrast of the brightest nuclei (99.5th percentile).

    The surroundings are a grey opening by a disk of ``opening_um``
    (:func:`_opened_background`): wider than the GCL (50-80 um thick), so the
    layer stands out whole, while the tissue's plateau, its edge on the slide
    and its slow changes in brightness are background (a white top-hat).
    Downsampled, packed granule nuclei merge into one bright band while
    scattered nuclei stay specks; both are "nucleus-like" here, and their
    density (:func:`dcxcount.gcl.gcl_from_nuclei`) tells them apart.
    """
    finite = np.isfinite(image)
    fill = float(np.median(image[finite])) if finite.any() else 0.0
    image = np.where(finite, image, fill).astype(np.float32)
    rest = image - _opened_background(image, pixel_size_um=pixel_size_um, opening_um=opening_um)
    sample = rest[::max(1, rest.shape[0] // 1000), ::max(1, rest.shape[1] // 1000)]
    centre = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - centre)))
    # Half as bright as a bright nucleus (the pipeline's own signal rule), as
    # the tissue's edges and folds stand out by less; never within the noise.
    bright = float(np.percentile(sample, 99.5)) - centre
    return rest > centre + max(min_snr * noise, min_contrast * bright)


def find_dentate_gyri(mosaic: Mosaic, *, channel: int, pixel_size_um: float = DETECTION_PIXEL_SIZE_UM,
                      margin_um: float = DEFAULT_MARGIN_UM, max_regions: int = 2,
                      min_gcl_area_mm2: float = _MIN_DG_GCL_MM2) -> list[DentateRegion]:
    """The dentate gyri of a section, found on a downsampled nuclear channel.

    Nucleus-like pixels (:func:`_nucleus_like`) are the nuclei's cover;
    :func:`dcxcount.gcl.gcl_from_nuclei` finds the regions they cover densely
    (with the same coverage rule as on a full-size section); each such region
    whose shape encloses a hilus (a C, :func:`dcxcount.gcl.frame_from_gcl`) is
    a GCL. The largest ``max_regions`` are kept, left to right.

    Parameters
    ----------
    mosaic : Mosaic
    channel : int
        The nuclear channel (NeuN, else DAPI).
    pixel_size_um : float
        Pixel size to look at.
    margin_um : float
        Tissue kept around each GCL.
    max_regions : int
        A coronal section holds at most two (one per hemisphere).
    min_gcl_area_mm2 : float
        Smaller dense regions are not a GCL.

    Returns
    -------
    list of DentateRegion
        0, 1 or 2 regions (never more than ``max_regions``).
    """
    image, coarse_um = read_downsampled(mosaic, channel=channel, pixel_size_um=pixel_size_um)
    cover = _nucleus_like(image, pixel_size_um=coarse_um)
    try:
        dense = gcl_from_nuclei(cover, pixel_size_um=coarse_um, min_gcl_area_mm2=min_gcl_area_mm2,
                                smooth_um=max(8.0, 2 * coarse_um))
    except NoGCLFoundError:
        return []
    components = measure.label(dense)
    found = []
    for props in measure.regionprops(components):
        r0, c0, r1, c1 = props.bbox
        piece = np.pad(props.image, 2)
        try:
            frame_from_gcl(piece, pixel_size_um=coarse_um)
        except NoGCLFoundError:
            continue  # a dense band that encloses nothing: a pyramidal layer, a tear's edge, not a DG
        found.append((props.area, (r0, r1, c0, c1), props.image))
    found = sorted(found, key=lambda item: -item[0])[:max_regions]
    found.sort(key=lambda item: item[1][2] + item[1][3])  # left to right
    scale = coarse_um / mosaic.pixel_size_um
    height, width = mosaic.shape_yx
    margin_px = int(round(margin_um / mosaic.pixel_size_um))
    regions = []
    for index, (area, (r0, r1, c0, c1), gcl) in enumerate(found, 1):
        gcl_box = (int(r0 * scale), int(math.ceil(r1 * scale)), int(c0 * scale), int(math.ceil(c1 * scale)))
        box = (max(gcl_box[0] - margin_px, 0), min(gcl_box[1] + margin_px, height),
               max(gcl_box[2] - margin_px, 0), min(gcl_box[3] + margin_px, width))
        centre = (gcl_box[2] + gcl_box[3]) / 2
        side = "only" if len(found) == 1 else "left" if centre < width / 2 else "right"
        # The GCL within the counted box, on the coarse grid (cut to the box's coarse extent).
        coarse_box = (int(box[0] / scale), int(math.ceil(box[1] / scale)), int(box[2] / scale),
                      int(math.ceil(box[3] / scale)))
        in_box = np.zeros((coarse_box[1] - coarse_box[0], coarse_box[3] - coarse_box[2]), bool)
        in_box[r0 - coarse_box[0]:r1 - coarse_box[0], c0 - coarse_box[2]:c1 - coarse_box[2]] = gcl
        regions.append(DentateRegion(index=index, side=side, box_px=box, gcl_box_px=gcl_box,
                                     gcl_area_mm2=float(area * (coarse_um / 1000) ** 2), gcl=in_box,
                                     gcl_pixel_size_um=coarse_um))
    return regions


def region_from_outline(mosaic: Mosaic, outline: str | PathLike[str], *,
                        margin_um: float = DEFAULT_MARGIN_UM) -> DentateRegion:
    """A region from a person's GCL outline drawn on the whole mosaic (ImageJ ROI or ROI set, GeoJSON).

    Coordinates are pixels of the finest level, as QuPath and ImageJ save
    them for the full-resolution image. A mask TIFF is refused: it would be
    as large as the mosaic.

    Raises
    ------
    dcxcount.outlines.OutlineError
        When the outline cannot be read, encloses no area or lies outside the image.
    """
    from .outlines import OutlineError, _fill, _geojson_shapes, _roi_shapes

    path = Path(outline)
    suffix = path.suffix.lower()
    if suffix not in (".roi", ".zip", ".geojson", ".json"):
        raise OutlineError(f"{path}: a mosaic's outline must be an ImageJ ROI (.roi, .zip) or GeoJSON; a mask "
                           "TIFF would be as large as the mosaic")
    if not path.is_file():
        raise OutlineError(f"{path}: outline file not found")
    shapes = _roi_shapes(path) if suffix in (".roi", ".zip") else _geojson_shapes(path)
    points = np.concatenate([ring for rings in shapes for ring in rings])
    height, width = mosaic.shape_yx
    (x0, y0), (x1, y1) = np.floor(points.min(axis=0)).astype(int), np.ceil(points.max(axis=0)).astype(int)
    gcl_box = (max(y0, 0), min(y1 + 1, height), max(x0, 0), min(x1 + 1, width))
    if gcl_box[0] >= gcl_box[1] or gcl_box[2] >= gcl_box[3]:
        raise OutlineError(f"{path}: the outline (x {x0}-{x1}, y {y0}-{y1} px) lies outside the {width} x "
                           f"{height} px image")
    margin_px = int(round(margin_um / mosaic.pixel_size_um))
    box = (max(gcl_box[0] - margin_px, 0), min(gcl_box[1] + margin_px, height),
           max(gcl_box[2] - margin_px, 0), min(gcl_box[3] + margin_px, width))
    shifted = [[ring - np.array([box[2], box[0]]) for ring in rings] for rings in shapes]
    gcl = _fill(shifted, shape=(box[1] - box[0], box[3] - box[2]))
    if not gcl.any():
        raise OutlineError(f"{path}: the outline encloses no pixel")
    return DentateRegion(index=1, side="only", box_px=box, gcl_box_px=gcl_box,
                         gcl_area_mm2=float(gcl.sum() * (mosaic.pixel_size_um / 1000) ** 2), gcl=gcl,
                         gcl_pixel_size_um=mosaic.pixel_size_um, source=str(path))


# --------------------------------------------------------------------------- tiles and stitching


def tile_grid(shape: tuple[int, int], *, tile_px: int, overlap_px: int) -> list[Tile]:
    """Tiles covering an image: cores of ``tile_px`` (the last ones smaller) and windows ``overlap_px`` wider.

    The cores partition the image, so every pixel, and every centroid, has
    exactly one owner.
    """
    if tile_px < 1 or overlap_px < 0:
        raise ValueError(f"tile_px must be >= 1 and overlap_px >= 0, got {tile_px} and {overlap_px}")
    height, width = shape
    tiles = []
    for y0 in range(0, height, tile_px):
        for x0 in range(0, width, tile_px):
            y1, x1 = min(y0 + tile_px, height), min(x0 + tile_px, width)
            tiles.append(Tile(core=(y0, y1, x0, x1),
                              window=(max(y0 - overlap_px, 0), min(y1 + overlap_px, height),
                                      max(x0 - overlap_px, 0), min(x1 + overlap_px, width))))
    return tiles


def _window_labels(engine: object, window: np.ndarray, *, pixel_size_um: float) -> np.ndarray:
    """An engine's labels of one window, at the window's own resolution and normalisation."""
    return np.asarray(engine.segment(window, pixel_size_um=pixel_size_um), np.int32)


def _flow_labels(engine: object, window: np.ndarray) -> np.ndarray:
    """The specialist model's labels of one window of the region already normalised and resampled to its pixel size.

    :meth:`SpecialistModel.segment` without its normalisation and resampling,
    which are done once on the whole region: per window they would stretch
    each tile's contrast on its own and shift its resampling grid by a
    fraction of a pixel, so the same nucleus would come out differently in
    two tiles.
    """
    from .segment.specialist import OBJECT_DIAMETER_UM, _predict_tiled, masks_from_flows

    flows = _predict_tiled(engine._inference_net, window, tile_px=1024, overlap_px=32)
    return masks_from_flows(flows, min_area_px=15.0 / engine.pixel_size_um**2,
                            diameter_px=OBJECT_DIAMETER_UM[engine.kind] / engine.pixel_size_um)


def _owned_objects(labels: np.ndarray, tile: Tile, *, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The window's labels with only the objects whose centroid lies in the tile's core; and how many of those
    touch a window edge inside the image (cut off: the overlap is narrower than the object)."""
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(labels.shape, np.int32), 0
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    ids = flat[where]
    rows, cols = np.divmod(where, labels.shape[1])
    area = np.bincount(ids, minlength=n + 1).astype(float)
    present = area > 0
    area[~present] = 1.0
    wy0, _, wx0, _ = tile.window
    cy = np.bincount(ids, weights=rows, minlength=n + 1) / area + wy0
    cx = np.bincount(ids, weights=cols, minlength=n + 1) / area + wx0
    y0, y1, x0, x1 = tile.core
    # Half-open cores partition the image: a centroid exactly on a seam has one owner.
    owned = present & (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)
    owned[0] = False
    # Edges of the window that are not the image's: an owned object reaching one was cut by the window.
    cut = np.zeros(n + 1, bool)
    for edge, inside in ((labels[0], tile.window[0] > 0), (labels[-1], tile.window[1] < shape[0]),
                         (labels[:, 0], tile.window[2] > 0), (labels[:, -1], tile.window[3] < shape[1])):
        if inside:
            cut[edge] = True
    cut[0] = False
    keep = np.where(owned, np.arange(n + 1), 0).astype(np.int32)
    return keep[labels], int((owned & cut).sum())


def _default_tile_workers() -> int:
    """Tiles at once when not told: the cores over torch's threads per tile; 1 inside a Dask worker.

    Each tile's network already runs on torch's threads, so more tiles than
    cores / threads only make them wait for each other; a Dask worker counting
    one section of a study shares the cores with the other workers (and the
    batch asks for 1 when it counts several sections in threads).
    """
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        with contextlib.suppress(ValueError):
            distributed.get_worker()
            return 1
    import torch

    return max(1, (available_cpus() or 1) // max(1, torch.get_num_threads()))


def _parallel_tiles(*, tile_bytes: float, budget_bytes: float | None, workers: int | None) -> int:
    """How many tiles may be segmented at once: ``workers`` (or :func:`_default_tile_workers`) within the budget."""
    wanted = workers or _default_tile_workers()
    if budget_bytes is None:
        return max(1, wanted)
    return int(max(1, min(wanted, budget_bytes // max(tile_bytes, 1))))


@dataclass
class _Plan:
    """How one marker is tiled: the image the tiles cut (the channel, or its normalised and resampled copy),
    the function that segments a window of it, and the tiles."""

    image: np.ndarray
    segment: Callable[[np.ndarray], np.ndarray]
    tiles: list[Tile]
    scaled: bool


def _marker_plan(engine: object, channel: np.ndarray, *, pixel_size_um: float, tile_px: int,
                 overlap_px: int) -> _Plan:
    from .segment.rescale import normalize_image, resize_image
    from .segment.specialist import SpecialistModel

    if isinstance(engine, SpecialistModel):
        scale = pixel_size_um / engine.pixel_size_um
        scaled = resize_image(normalize_image(channel), scale=scale)
        engine._inference_net  # noqa: B018  built here once, not raced for by the tile threads
        tiles = tile_grid(scaled.shape, tile_px=max(1, round(tile_px * scale)),
                          overlap_px=round(overlap_px * scale))
        return _Plan(image=scaled, segment=functools.partial(_flow_labels, engine), tiles=tiles, scaled=True)
    return _Plan(image=channel, segment=functools.partial(_window_labels, engine, pixel_size_um=pixel_size_um),
                 tiles=tile_grid(channel.shape, tile_px=tile_px, overlap_px=overlap_px), scaled=False)


def segment_tiled(image: np.ndarray, *, engines: dict[str, object], pixel_size_um: float,
                  tile_px: int = DEFAULT_TILE_PX, overlap_px: int = DEFAULT_OVERLAP_PX,
                  max_memory_bytes: int | None = None, workers: int | None = None,
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                  stats: dict | None = None) -> dict[str, np.ndarray]:
    """Segment an image tile by tile and stitch the tiles seam-safely.

    Every tile is segmented on its own (as many at once as ``workers`` and
    the memory budget allow, through Dask's threaded scheduler), and each
    object is kept once, by the tile whose core holds its centroid.

    For the specialist model the channel is normalised and resampled to the
    model's pixel size once, as :meth:`SpecialistModel.segment` does, and the
    tiles cut that image; the stitched labels are resampled back. Any other
    engine is given the raw windows.

    Parameters
    ----------
    image : (C, Y, X) or (Y, X) array
        The channels, in the order of ``engines``.
    engines : dict
        Marker -> engine (anything with ``segment(image, *, pixel_size_um)``).
    pixel_size_um : float
    tile_px, overlap_px : int
        Tile core and the overlap added on every side, in pixels of
        ``image``. The overlap must be wider than the largest object plus the
        network's context (32 px): an owned object cut by its tile's window is
        counted in ``stats``.
    max_memory_bytes : int, optional
        Memory the tiles in flight may take together; one tile at a time when one needs more.
    workers : int, optional
        Tiles at once at most (default: the cores over torch's threads; 1 in a Dask worker).
    progress, cancel
        See :mod:`dcxcount.progress`; checked between batches of tiles.
    stats : dict, optional
        Filled with ``tiles``, ``parallel``, ``cut_objects`` and
        ``contested_px`` (pixels that owned objects of two neighbouring tiles
        both claimed; the tile stitched first keeps them).

    Returns
    -------
    dict
        Marker -> (Y, X) int32 labels, 1..N, each object once.
    """
    import dask

    image = np.asarray(image)
    image = image[None] if image.ndim == 2 else image
    shape = image.shape[-2:]
    markers = list(engines)
    if len(markers) != image.shape[0]:
        raise ValueError(f"{len(markers)} engines for {image.shape[0]} channels")
    plans = {marker: _marker_plan(engines[marker], image[i], pixel_size_um=pixel_size_um, tile_px=tile_px,
                                  overlap_px=overlap_px) for i, marker in enumerate(markers)}
    side = tile_px + 2 * overlap_px
    # One marker's tile at a time per task: the network on one window, flows, masks.
    tile_bytes = count_memory_bytes(planes=1, channels=1, height=side, width=side, itemsize=4,
                                    pixel_size_um=pixel_size_um) - count_memory_bytes(
        planes=1, channels=0, height=0, width=0, itemsize=4, pixel_size_um=pixel_size_um)
    parallel = _parallel_tiles(tile_bytes=tile_bytes, budget_bytes=max_memory_bytes, workers=workers)
    tasks = [(marker, tile) for marker in markers for tile in plans[marker].tiles]

    def one_tile(marker: str, tile: Tile) -> tuple[str, Tile, np.ndarray, int]:
        plan = plans[marker]
        wy0, wy1, wx0, wx1 = tile.window
        labels = plan.segment(np.ascontiguousarray(plan.image[wy0:wy1, wx0:wx1]))
        kept, cut = _owned_objects(labels, tile, shape=plan.image.shape)
        return marker, tile, kept, cut

    stitched = {marker: np.zeros(plans[marker].image.shape, np.int32) for marker in markers}
    next_id = dict.fromkeys(markers, 1)
    contested = cut_total = 0
    for start in range(0, len(tasks), parallel):
        report(progress, cancel, start / len(tasks), f"tiles {start + 1}-{min(start + parallel, len(tasks))} "
                                                     f"of {len(tasks)}")
        batch = tasks[start:start + parallel]
        if len(batch) == 1:
            done = [one_tile(*batch[0])]
        else:
            # carried: what a tile warns or logs stays the section's (dcxcount.thread_hooks).
            done = dask.compute(*[dask.delayed(carried(one_tile))(*task) for task in batch], scheduler="threads",
                                num_workers=parallel)
        for marker, tile, kept, cut in done:
            cut_total += cut
            ids, inverse = np.unique(kept, return_inverse=True)
            if ids[-1] == 0:
                continue
            # Fresh numbers, so objects of different tiles never share one.
            numbers = np.where(ids > 0, np.arange(len(ids)) - (ids[0] == 0) + next_id[marker], 0)
            relabelled = numbers.astype(np.int32)[inverse.reshape(kept.shape)]
            next_id[marker] += int((ids > 0).sum())
            wy0, wy1, wx0, wx1 = tile.window
            target = stitched[marker][wy0:wy1, wx0:wx1]
            free = target == 0
            contested += int(np.count_nonzero(~free & (relabelled > 0)))
            target[free] = relabelled[free]
    report(progress, cancel, 1.0, "tiles stitched")
    from .segment.rescale import nearest_resize

    for marker in markers:
        labels = stitched[marker]
        if plans[marker].scaled:
            labels = nearest_resize(labels, shape=shape)
        # An object whose every pixel a neighbour claimed first, or that the
        # resampling back dropped, leaves a gap in the numbering.
        stitched[marker] = segmentation.relabel_sequential(labels)[0].astype(np.int32)
    if stats is not None:
        stats.update(tiles=len(tasks), parallel=parallel, cut_objects=cut_total, contested_px=contested)
    return stitched


# --------------------------------------------------------------------------- counting


def _region_gcl(labels: dict[str, np.ndarray], region: DentateRegion, *, pixel_size_um: float) -> np.ndarray:
    """The GCL of a region's box: the found GCL's parts that the region's own (coarse or outlined) GCL overlaps.

    The box may reach into the other hemisphere's DG or a dense pyramidal
    layer; those are not this DG's GCL.
    """
    nuclei = labels["neun" if "neun" in labels else "dapi"]
    shape = nuclei.shape
    gcl = gcl_from_nuclei(nuclei, pixel_size_um=pixel_size_um, somata=labels.get("dcx"))
    rows = np.minimum((np.arange(shape[0]) * region.gcl.shape[0] / shape[0]).astype(int), region.gcl.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) * region.gcl.shape[1] / shape[1]).astype(int), region.gcl.shape[1] - 1)
    expected = region.gcl[np.ix_(rows, cols)]
    parts = measure.label(gcl)
    touching = np.unique(parts[expected & (parts > 0)])
    if len(touching) == 0:
        raise NoGCLFoundError(f"no GCL found in the box of {region.describe(pixel_size_um)}")
    return np.isin(parts, touching)


def count_region(mosaic: Mosaic, region: DentateRegion | None = None, *, settings: CountSettings = CountSettings(),
                 level: int | None = None, tile_px: int = DEFAULT_TILE_PX, overlap_px: int = DEFAULT_OVERLAP_PX,
                 max_memory_bytes: int | None = None, workers: int | None = None, gcl_mask: np.ndarray | None = None,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> SectionResult:
    """Count one region of a mosaic: tiled segmentation, then one frame/trace/stage/co-label pass.

    Parameters
    ----------
    mosaic : Mosaic
    region : DentateRegion, optional
        The box to count; None counts the whole image (the GCL then comes from
        the nuclei, as for any section).
    settings : CountSettings
    level : int, optional
        Pyramid level to count (default :func:`choose_level` at the model's pixel size).
    tile_px, overlap_px, max_memory_bytes, workers
        See :func:`segment_tiled`; ``max_memory_bytes`` also bounds the region itself.
    gcl_mask : (h, w) bool array, optional
        The GCL in the region's box at the counted level (replaces the detected one).
    progress, cancel
        See :mod:`dcxcount.progress`.

    Returns
    -------
    SectionResult
        In the box's coordinates; ``summary`` adds ``mosaic_level``, ``region``,
        ``region_side``, ``box_x_um``, ``box_y_um`` (the box's origin in the
        mosaic), ``box_width_px``, ``box_height_px``, ``tiles`` and ``tile_cut_objects``.

    Raises
    ------
    MosaicError
        When the region alone would not fit in ``max_memory_bytes``.
    dcxcount.gcl.NoGCLFoundError
        When the region holds no GCL.
    """
    from .pipeline import _markers_to_count

    level = choose_level(mosaic, pixel_size_um=MODEL_PIXEL_SIZE_UM) if level is None else level
    lvl = mosaic.levels[level]
    px = lvl.pixel_size_um
    scale = mosaic.pixel_size_um / px
    height, width = lvl.shape_yx
    if region is None:
        box = (0, height, 0, width)
    else:
        y0, y1, x0, x1 = region.box_px
        box = (int(y0 * scale), min(int(math.ceil(y1 * scale)), height), int(x0 * scale),
               min(int(math.ceil(x1 * scale)), width))
    box_h, box_w = box[1] - box[0], box[3] - box[2]
    n_channels = len(mosaic.channel_names)
    need = count_memory_bytes(planes=1, channels=n_channels, height=box_h, width=box_w,
                              itemsize=mosaic.dtype.itemsize, pixel_size_um=px)
    if max_memory_bytes is not None and need > max_memory_bytes:
        what = region.describe(mosaic.pixel_size_um) if region else "the whole image"
        raise MosaicError(f"{mosaic.path}: {what} is {box_w} x {box_h} px at {px:g} um and needs about "
                          f"{format_bytes(need)} to count, {format_bytes(max_memory_bytes)} is available; give "
                          "the GCL as an outline, or more memory (--max-memory-gb)")
    # The region's channels in memory (a DG box: tens of MB); the tiles read from them.
    data = mosaic.read(level, slice(box[0], box[1]), slice(box[2], box[3]))
    section = section_from_arrays(data, channel_names=mosaic.channel_names, pixel_size_um=px, path=mosaic.path)
    section = replace(section, pixel_size_source=mosaic.pixel_size_source)
    del data
    channel_index = _markers_to_count(section, settings)
    engines = {marker: load_engine(settings.marker_models.get(marker, settings.model), kind=kind_of_marker(marker))
               for marker in channel_index}
    order = list(channel_index.values())
    stats: dict = {}
    tile_budget = None if max_memory_bytes is None else max(max_memory_bytes - need, 0)
    labels = segment_tiled(section.data[order], engines=engines, pixel_size_um=px, tile_px=tile_px,
                           overlap_px=overlap_px, max_memory_bytes=tile_budget, workers=workers,
                           progress=sub_progress(progress, 0.0, 0.7), cancel=cancel, stats=stats)
    if gcl_mask is None and region is not None:
        if region.source == "detected":
            gcl_mask = _region_gcl(labels, region, pixel_size_um=px)
        else:
            rows = np.minimum((np.arange(box_h) * region.gcl.shape[0] / box_h).astype(int), region.gcl.shape[0] - 1)
            cols = np.minimum((np.arange(box_w) * region.gcl.shape[1] / box_w).astype(int), region.gcl.shape[1] - 1)
            gcl_mask = region.gcl[np.ix_(rows, cols)]
    result = count_section(section, settings=settings, labels=labels, gcl_mask=gcl_mask,
                           progress=sub_progress(progress, 0.7, 1.0), cancel=cancel)
    result.summary.update({
        "gcl_source": "detected" if region is None or region.source == "detected" else region.source,
        "mosaic_level": level,
        "region": region.index if region else 0,
        "region_side": region.side if region else "whole",
        "box_x_um": box[2] * px,
        "box_y_um": box[0] * px,
        "box_width_px": box_w,
        "box_height_px": box_h,
        "tiles": stats.get("tiles", 0),
        "tile_cut_objects": stats.get("cut_objects", 0),
    })
    return result


def _nuclear_channel(mosaic: Mosaic, settings: CountSettings) -> int:
    from .io import match_channels

    probe = Section(path=mosaic.path, data=np.zeros((len(mosaic.channel_names), 1, 1), np.uint8),
                    channel_names=mosaic.channel_names, pixel_size_um=mosaic.pixel_size_um,
                    pixel_size_source=mosaic.pixel_size_source, projection="none")
    names = {name.strip().lower() for name in mosaic.channel_names}
    marker = "neun" if "neun" in names or "neun" in settings.channels or "dapi" not in names else "dapi"
    return match_channels(probe, markers=[marker], overrides=settings.channels)[marker]


def count_mosaic(path: str | PathLike[str], *, settings: CountSettings = CountSettings(),
                 pixel_size_um: float | None = None, regions: Sequence[int] | None = None,
                 gcl_outline: str | PathLike[str] | None = None, margin_um: float = DEFAULT_MARGIN_UM,
                 tile_px: int = DEFAULT_TILE_PX, overlap_px: int = DEFAULT_OVERLAP_PX,
                 max_memory_bytes: int | None = None, workers: int | None = None,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> MosaicCount:
    """Find the dentate gyri of a mosaic and count each in its box.

    Parameters
    ----------
    path : path
        Tiled/pyramidal (OME-)TIFF or OME-Zarr.
    settings : CountSettings
    pixel_size_um : float, optional
        Replaces the file's pixel size (of the finest level).
    regions : sequence of int, optional
        Which found DG to count (1, 2 from left to right); default all.
    gcl_outline : path, optional
        A person's GCL outline (ROI or GeoJSON, in the finest level's pixels):
        the one region, instead of looking for the DG.
    margin_um, tile_px, overlap_px, workers
        See :func:`find_dentate_gyri` and :func:`segment_tiled`.
    max_memory_bytes : int, optional
        Default: what is available (:func:`dcxcount.memory.available_memory_bytes`).
    progress, cancel
        See :mod:`dcxcount.progress`.

    Raises
    ------
    dcxcount.gcl.NoGCLFoundError
        No DG found (or none of those asked for).
    """
    budget = available_memory_bytes() if max_memory_bytes is None else max_memory_bytes
    with open_mosaic(path, pixel_size_um=pixel_size_um) as mosaic:
        report(progress, cancel, 0.0, "finding the dentate gyrus")
        if gcl_outline is not None:
            found = [region_from_outline(mosaic, gcl_outline, margin_um=margin_um)]
        else:
            found = find_dentate_gyri(mosaic, channel=_nuclear_channel(mosaic, settings), margin_um=margin_um)
        chosen = [r for r in found if regions is None or r.index in regions]
        if not chosen:
            raise NoGCLFoundError(f"no dentate gyrus found on the downsampled nuclear channel of {mosaic.path}"
                                  if not found else f"{mosaic.path}: no DG {list(regions or [])}; found "
                                  + "; ".join(r.describe(mosaic.pixel_size_um) for r in found))
        level = choose_level(mosaic, pixel_size_um=MODEL_PIXEL_SIZE_UM)
        results = []
        for done, region in enumerate(chosen):
            part = sub_progress(progress, 0.05 + 0.95 * done / len(chosen), 0.05 + 0.95 * (done + 1) / len(chosen),
                                prefix=f"DG {region.index}: ")
            results.append(count_region(mosaic, region, settings=settings, level=level, tile_px=tile_px,
                                        overlap_px=overlap_px, max_memory_bytes=budget, workers=workers,
                                        progress=part, cancel=cancel))
        return MosaicCount(regions=chosen, results=results, level=level, pixel_size_um=mosaic.levels[level].pixel_size_um)


def count_mosaic_section(path: str | PathLike[str], *, settings: CountSettings = CountSettings(),
                         pixel_size_um: float | None = None, dentate_gyrus: object = None,
                         gcl_outline: str | PathLike[str] | None = None, max_memory_bytes: int | None = None,
                         workers: int | None = None, progress: ProgressCallback | None = None,
                         cancel: CancelToken | None = None) -> SectionResult:
    """One samplesheet row's mosaic counted as one section: its only DG, the one named, or the outlined one.

    Parameters
    ----------
    dentate_gyrus : int or str, optional
        Which DG when the section holds two: ``1``/``"left"`` or ``2``/``"right"``.
    (others as for :func:`count_mosaic`)

    Raises
    ------
    MosaicError
        Two DG were found and none was named.
    dcxcount.gcl.NoGCLFoundError
        None was found.
    """
    choice = None if dentate_gyrus is None or (isinstance(dentate_gyrus, float) and math.isnan(dentate_gyrus)) \
        else str(dentate_gyrus).strip().lower().removesuffix(".0")
    budget = available_memory_bytes() if max_memory_bytes is None else max_memory_bytes
    with open_mosaic(path, pixel_size_um=pixel_size_um) as mosaic:
        report(progress, cancel, 0.0, "finding the dentate gyrus")
        if gcl_outline is not None:
            region = region_from_outline(mosaic, gcl_outline)
        else:
            found = find_dentate_gyri(mosaic, channel=_nuclear_channel(mosaic, settings))
            if not found:
                raise NoGCLFoundError(f"no dentate gyrus found on the downsampled nuclear channel of {mosaic.path}")
            if choice:
                named = [r for r in found if choice in (str(r.index), r.side)]
                if not named:
                    raise MosaicError(f"{mosaic.path}: no DG '{dentate_gyrus}'; found " +
                                      "; ".join(r.describe(mosaic.pixel_size_um) for r in found))
                region = named[0]
            elif len(found) > 1:
                raise MosaicError(f"{mosaic.path}: {len(found)} dentate gyri found (" +
                                  "; ".join(r.describe(mosaic.pixel_size_um) for r in found) +
                                  "); say which to count in a `dg` samplesheet column (left or right), or give "
                                  "its GCL as an outline")
            else:
                region = found[0]
        return count_region(mosaic, region, settings=settings, max_memory_bytes=budget, workers=workers,
                            progress=sub_progress(progress, 0.05, 1.0), cancel=cancel)


MOSAIC_COLUMNS = ("mosaic_level", "region", "region_side", "box_x_um", "box_y_um", "box_width_px", "box_height_px",
                  "tiles", "tile_cut_objects")
"""The summary entries (sections.csv columns) of a section counted as a mosaic."""


def read_mosaic_box(path: str | PathLike[str], record: Mapping, *, pixel_size_um: float | None = None) -> Section:
    """The box of a mosaic a section was counted in, read as a section: its saved labels and GCL fit it.

    Parameters
    ----------
    path : path
        The mosaic.
    record : dict
        The section's saved result (``result.json``): its :data:`MOSAIC_COLUMNS` say where the box lies.
    pixel_size_um : float, optional
        Overrides the file's own pixel size, as when the section was counted.

    Raises
    ------
    MosaicError
        The record is not that of a mosaic section.
    """
    if any(column not in record for column in MOSAIC_COLUMNS):
        raise MosaicError(f"{path}: the saved result does not say where in the mosaic the section was counted; "
                          "count it again with --recount")
    with open_mosaic(path, pixel_size_um=pixel_size_um) as mosaic:
        level = int(record["mosaic_level"])
        px = mosaic.levels[level].pixel_size_um
        y0, x0 = int(round(record["box_y_um"] / px)), int(round(record["box_x_um"] / px))
        rows, cols = slice(y0, y0 + int(record["box_height_px"])), slice(x0, x0 + int(record["box_width_px"]))
        data = mosaic.read(level, rows, cols)
        return replace(section_from_arrays(data, channel_names=mosaic.channel_names, pixel_size_um=px,
                                           path=mosaic.path), pixel_size_source=mosaic.pixel_size_source)


def _iter_windows(shape: tuple[int, int], tile_px: int) -> Iterator[tuple[slice, slice]]:
    """Row-major windows of ``tile_px`` covering ``shape`` (a TIFF writer's tile order)."""
    for y0 in range(0, shape[0], tile_px):
        for x0 in range(0, shape[1], tile_px):
            yield slice(y0, min(y0 + tile_px, shape[0])), slice(x0, min(x0 + tile_px, shape[1]))


def write_mosaic(path: str | PathLike[str], read: Callable[[slice, slice], np.ndarray], *, shape: tuple[int, int],
                 channel_names: Sequence[str], dtype: np.dtype | type, pixel_size_um: float, tile_px: int = 512,
                 level_factor: int = 4, smallest_px: int = 256, scratch: str | PathLike[str] | None = None) -> Path:
    """Write a tiled, pyramidal OME-TIFF from a function that draws it window by window.

    ``read(rows, cols)`` is called once per tile of the finest level and
    returns its (C, h, w) pixels; it is never asked for the whole image.
    The finest level is kept in a scratch file on disk (not in memory) while
    the coarser levels (each ``level_factor`` smaller, block means, down to
    ``smallest_px`` a side) are computed strip by strip from it, then every
    level is written tile by tile as SubIFDs, as slide scanners' OME-TIFFs are.

    Parameters
    ----------
    path : path
        The OME-TIFF to write (BigTIFF, zlib).
    read : callable
    shape : (int, int)
        (rows, columns) of the finest level.
    channel_names : sequence of str
    dtype : numpy dtype
    pixel_size_um : float
        Of the finest level.
    tile_px : int
        TIFF tile side (a multiple of 16).
    level_factor, smallest_px : int
    scratch : path, optional
        Folder for the scratch files (default: the system's temporary folder).

    Returns
    -------
    Path
    """
    import tempfile

    import tifffile

    path = Path(path)
    n_channels = len(channel_names)
    dtype = np.dtype(dtype)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        levels = [np.lib.format.open_memmap(Path(tmp) / "0.npy", mode="w+", dtype=dtype,
                                            shape=(n_channels, *shape))]
        for rows, cols in _iter_windows(shape, tile_px):
            levels[0][:, rows, cols] = read(rows, cols)
        while min(levels[-1].shape[1:]) // level_factor >= smallest_px:
            fine = levels[-1]
            height, width = fine.shape[1] // level_factor, fine.shape[2] // level_factor
            coarse = np.lib.format.open_memmap(Path(tmp) / f"{len(levels)}.npy", mode="w+", dtype=dtype,
                                               shape=(n_channels, height, width))
            step = max(1, int(_STRIP_BYTES / (8 * fine.shape[2] * level_factor)))
            for start in range(0, height, step):
                stop = min(start + step, height)
                block = np.asarray(fine[:, start * level_factor:stop * level_factor, :width * level_factor],
                                   np.float64)
                block = block.reshape(n_channels, stop - start, level_factor, width, level_factor).mean(axis=(2, 4))
                coarse[:, start:stop] = np.round(block).astype(dtype) if dtype.kind in "ui" else block
            levels.append(coarse)

        def tiles(level: np.ndarray) -> Iterator[np.ndarray]:
            for channel in level:
                for rows, cols in _iter_windows(level.shape[1:], tile_px):
                    tile = np.zeros((tile_px, tile_px), dtype)  # edge tiles are padded to the tile size
                    part = channel[rows, cols]
                    tile[:part.shape[0], :part.shape[1]] = part
                    yield tile

        options = {"tile": (tile_px, tile_px), "compression": "zlib", "photometric": "minisblack"}
        metadata = {"axes": "CYX", "Channel": {"Name": list(channel_names)}, "PhysicalSizeX": pixel_size_um,
                    "PhysicalSizeXUnit": "µm", "PhysicalSizeY": pixel_size_um, "PhysicalSizeYUnit": "µm"}
        with tifffile.TiffWriter(path, bigtiff=True, ome=True) as writer:
            writer.write(tiles(levels[0]), shape=levels[0].shape, dtype=dtype, subifds=len(levels) - 1,
                         metadata=metadata, resolution=(1e4 / pixel_size_um, 1e4 / pixel_size_um),
                         resolutionunit="CENTIMETER", **options)
            for level in levels[1:]:
                writer.write(tiles(level), shape=level.shape, dtype=dtype, subfiletype=1, metadata=None, **options)
        del levels
    return path
