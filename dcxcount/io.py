"""Read one brain section from a TIFF, OME-TIFF or ImageJ hyperstack.

A section comes back as a (C, Y, X) array in the file's own dtype, with its
channel names and its pixel size in micrometres. Z-stacks are projected by
maximum over Z. Every way a file can be unusable for counting (not a TIFF, a
time series, no pixel size, a marker with no channel) raises
:class:`SectionReadError` with a message that names the file and the fix, so
a caller can show it as is and move on to the next section. The fix names a
setting by its Python name in backticks (`pixel_size_um`); the command line
shows its option there instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import tifffile

from .memory import count_memory_bytes, format_bytes
from .thread_hooks import ThreadScopedHook

__all__ = ["Section", "SectionReadError", "section_from_arrays", "PixelSizeError", "read_section", "match_channels"]


_PIXEL_SIZE_FIX = (
    "Set `pixel_size_um` (e.g. `pixel_size_um=0.65`) "
    "or add a pixel_size_um column to the samplesheet."
)

# Length units as OME, ImageJ and people spell them, in micrometres. "pixel" and
# "inch" are deliberately absent: ImageJ labels an uncalibrated image "pixel",
# and "inch" comes from 72-dpi defaults, neither of which is a microscope scale.
_UM_PER_UNIT = {
    **dict.fromkeys(
        ("um", "µm", "μm", "\\u00b5m", "micron", "microns", "micrometer", "micrometre"), 1.0
    ),
    **dict.fromkeys(("nm", "nanometer", "nanometre"), 1e-3),
    **dict.fromkeys(("mm", "millimeter", "millimetre"), 1e3),
    **dict.fromkeys(("cm", "centimeter", "centimetre"), 1e4),
    **dict.fromkeys(("m", "meter", "metre"), 1e6),
}

# Baseline TIFF ResolutionUnit values that are lengths; tifffile also knows 4
# (mm) and 5 (um). NONE (1) and INCH (2) are what scanners and image editors
# write by default, so they say nothing about the microscope.
_UM_PER_RESUNIT = {3: 1e4, 4: 1e3, 5: 1.0}

# Fraction by which two pixel sizes may differ and still count as the same.
_PIXEL_SIZE_RTOL = 0.01


class SectionReadError(ValueError):
    """Raised for an unreadable section; the message names the file and how to fix it."""


class PixelSizeError(SectionReadError):
    """The file has no usable pixel size (none, or contradictory ones); giving ``pixel_size_um`` fixes it."""


@dataclass(frozen=True, eq=False)
class Section:
    """One section as read from disk.

    Attributes
    ----------
    path : Path
        The file the section was read from, as given.
    data : numpy.ndarray
        Image of shape (C, Y, X) in the file's dtype (uint8, uint16, float32, ...).
    channel_names : tuple of str
        One name per channel, from the file's metadata, else ``"red"``,
        ``"green"``, ``"blue"`` for RGB, else ``"C0"``, ``"C1"``, ...
    pixel_size_um : float
        Edge length of a (square) pixel in micrometres.
    pixel_size_source : str
        Where the pixel size came from: ``"ome"``, ``"imagej"``,
        ``"tiff-resolution"`` or ``"override"``.
    projection : str
        ``"none"``, or how a z-stack was flattened, e.g. ``"max of 12 z-planes"``.
    nonfinite_px : int
        Pixels (Y, X positions) where any channel or z-plane held NaN or an
        infinity. They are set to their channel's median so that they neither
        form objects nor void the section.
    empty_channels : tuple of str
        Channels without a single finite pixel.
    notes : tuple of str
        What tifffile reported about the file while reading it (kept out of
        the terminal, recorded with the section's result).
    """

    # eq=False: comparing or hashing sections field by field would compare
    # whole arrays, which numpy refuses to turn into one bool.
    path: Path
    data: np.ndarray
    channel_names: tuple[str, ...]
    pixel_size_um: float
    pixel_size_source: str
    projection: str
    nonfinite_px: int = 0
    empty_channels: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def read_section(path: str | PathLike[str], *, pixel_size_um: float | None = None,
                 memory_limit_bytes: int | None = None) -> Section:
    """Read the first image series of a TIFF file as one section.

    Parameters
    ----------
    path : str or path-like
        TIFF, OME-TIFF or ImageJ hyperstack. Supported axes are YX, CYX, YXS
        (RGB), ZYX and ZCYX; singleton axes (e.g. T=1) are ignored and S
        (samples) are treated as channels.
    pixel_size_um : float, optional
        Pixel size in micrometres that replaces whatever the file says.
    memory_limit_bytes : int, optional
        Memory (bytes) that reading and counting the section may take. The
        need is estimated from the file's header
        (:func:`dcxcount.memory.count_memory_bytes`) before any pixel is read,
        and a larger image is refused.

    Returns
    -------
    Section
        The image as (C, Y, X), z-stacks projected by maximum over Z. Float
        images come back as float32 (float64 files too: halving the memory
        costs nothing in intensity precision), with non-finite pixels set to
        their channel's median and counted in ``nonfinite_px``.

    Raises
    ------
    SectionReadError
        If the file is missing, cannot be opened as a TIFF, is damaged or cut
        short, is empty, is a time series or has axes that are neither
        channels nor z-planes, has no pixel size (and none is passed), has
        contradictory pixel sizes, would need more than `memory_limit_bytes`,
        or if `pixel_size_um` is not a positive number.
    """
    path = Path(path)
    if pixel_size_um is not None and not (
        math.isfinite(pixel_size_um) and pixel_size_um > 0
    ):
        raise SectionReadError(
            f"{path}: pixel size override must be a positive number of micrometres, "
            f"got {pixel_size_um!r}."
        )
    if not path.exists():
        raise SectionReadError(f"{path}: no such file.")
    if path.is_dir():
        raise SectionReadError(f"{path}: is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise SectionReadError(f"{path}: the file is empty (0 bytes); copy or export it again.")
    notes: list[str] = []
    try:
        with _tifffile_log(notes) as damage, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise SectionReadError(f"{path}: the TIFF file holds no image.")
            series = tif.series[0]
            _check_complete(path, tif, series, damage)
            axes = series.get_axes(squeeze=False)
            shape = tuple(series.get_shape(squeeze=False))
            if 0 in shape:
                raise SectionReadError(f"{path}: the image is empty (shape {shape}).")
            _check_axes(path, series.axes, tuple(series.shape))
            ome = _parse_ome(tif.ome_metadata) if tif.is_ome else None
            imagej = tif.imagej_metadata if tif.is_imagej else None
            is_rgb = series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB
            # Settle the pixel size before decoding pixels, so a study of large
            # stacks with no calibration fails fast.
            if pixel_size_um is None:
                size_um, source = _file_pixel_size(path, ome, imagej, series.keyframe)
            else:
                size_um, source = float(pixel_size_um), "override"
            if memory_limit_bytes is not None:
                _check_memory(path, axes, shape, series.dtype, pixel_size_um=size_um,
                              limit_bytes=memory_limit_bytes)
            data = series.asarray().reshape(shape)
    except SectionReadError:
        raise
    except MemoryError as exc:
        raise SectionReadError(f"{path}: not enough memory to read the image ({exc or 'MemoryError'}).") from exc
    except Exception as exc:
        # tifffile and its codecs raise many types on corrupt or odd files
        # (OSError, ValueError, KeyError, struct.error, ...); the user needs
        # the file name and the reason, not a traceback into tifffile.
        raise SectionReadError(f"{path}: cannot read as TIFF ({_reason(exc, path)}).") from exc

    data = _to_zcsyx(data, axes)
    n_z, n_c, n_s = data.shape[:3]
    nonfinite_px = 0
    if data.dtype.kind == "f":
        # float64 doubles every later copy for no precision an intensity needs.
        data = data.astype(np.float32, copy=False)
        nonfinite_px = _nonfinite_positions(data)
    projection = "none"
    if n_z > 1:
        # fmax skips NaN, so one bad plane does not void a pixel the others image.
        data = np.fmax.reduce(data, axis=0) if data.dtype.kind == "f" else data.max(axis=0)
        projection = f"max of {n_z} z-planes"
    else:
        data = data[0]
    data = np.ascontiguousarray(data.reshape(n_c * n_s, *data.shape[-2:]))
    names = _channel_names(ome, imagej, n_c=n_c, n_s=n_s, is_rgb=is_rgb)
    empty = _mask_nonfinite(data, names) if nonfinite_px else ()
    return Section(
        path=path,
        data=data,
        channel_names=names,
        pixel_size_um=size_um,
        pixel_size_source=source,
        projection=projection,
        nonfinite_px=nonfinite_px,
        empty_channels=empty,
        notes=tuple(dict.fromkeys(notes)),
    )


def section_from_arrays(data: np.ndarray, *, channel_names: Sequence[str], pixel_size_um: float,
                        path: str | PathLike[str] = "(in memory)") -> Section:
    """A section from channels in memory (napari layers, a script's arrays), cleaned as :func:`read_section` does.

    Parameters
    ----------
    data : (C, Y, X) or (Y, X) array
        The channels; a float copy has its NaN and infinite pixels set to the channel's median.
    channel_names : sequence of str
        One name per channel (a marker name finds its channel without being told).
    pixel_size_um : float
    path : path, optional
        What messages call the section.

    Raises
    ------
    SectionReadError
        ``data`` is not 2-D or 3-D, or ``channel_names`` does not name every channel.
    """
    data = np.asarray(data)
    data = data[None] if data.ndim == 2 else data
    if data.ndim != 3 or len(channel_names) != data.shape[0]:
        raise SectionReadError(f"{path}: expected (C, Y, X) channels with one name each; got an array of shape "
                               f"{data.shape} and {len(channel_names)} name(s)")
    nonfinite_px, empty = 0, ()
    if data.dtype.kind == "f":
        data = data.astype(np.float32, copy=True)
        nonfinite_px = _nonfinite_positions(data)
        empty = _mask_nonfinite(data, tuple(channel_names)) if nonfinite_px else ()
    return Section(path=Path(path), data=np.ascontiguousarray(data), channel_names=tuple(channel_names),
                   pixel_size_um=float(pixel_size_um), pixel_size_source="given", projection="none",
                   nonfinite_px=nonfinite_px, empty_channels=empty)


@contextlib.contextmanager
def _tifffile_log(notes: list[str]) -> Iterator[list[str]]:
    """Keep tifffile's log off the terminal: every message goes to ``notes``, errors also to the list yielded.

    tifffile logs what it works around (a bad tag, a page it cannot reach)
    instead of raising; with no logging configured Python prints those lines
    on stderr, between the progress bar and the results. An error among them
    means part of the file could not be read.
    """
    errors: list[str] = []
    with _tifffile_reads((notes, errors)):  # threads reading at once each keep their own lines
        yield errors


class _TifffileLines(logging.Handler):
    """tifffile's log lines, each kept by the read of the thread that logged it."""

    def emit(self, record: logging.LogRecord) -> None:
        read = _tifffile_reads.current()
        if read is None:  # a thread that is not reading a section: on to the handlers it would reach
            logging.getLogger().callHandlers(record)
            return
        notes, errors = read
        message = record.getMessage()
        notes.append(f"tifffile: {message}")
        if record.levelno >= logging.ERROR:
            errors.append(message)


def _quiet_tifffile() -> Callable[[], None]:
    """Route tifffile's log to :class:`_TifffileLines` only; returns what puts it back."""
    logger, handler = logging.getLogger("tifffile"), _TifffileLines()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.propagate = propagate

    return restore


_tifffile_reads: ThreadScopedHook[tuple[list[str], list[str]]] = ThreadScopedHook(_quiet_tifffile)


def _check_complete(path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries,
                    damage: list[str]) -> None:
    """Refuse a file whose structure tifffile had to skip parts of, or whose pixel data runs past its end.

    A file cut short by an interrupted copy may still open: tifffile drops
    the pages (channels, z-planes) and tags (the OME header) it cannot reach
    and serves the rest, which would be counted as a different image.
    """
    size = tif.filehandle.size
    if damage:
        raise SectionReadError(
            f"{path}: the file is damaged or cut short ({size} bytes; parts of its structure point elsewhere); "
            "copy or export it again."
        )
    end = 0
    for page in series.pages:
        if page is None:
            raise SectionReadError(f"{path}: the file is damaged or cut short (a page is missing); "
                                   "copy or export it again.")
        end = max([end, *(offset + count for offset, count in zip(page.dataoffsets, page.databytecounts) if count)])
    if end > size:
        raise SectionReadError(
            f"{path}: the file is cut short: it has {size} bytes but its pixels run to byte {end}; "
            "copy or export it again."
        )


def _check_memory(path: Path, axes: str, shape: tuple[int, ...], dtype: np.dtype, *, pixel_size_um: float,
                  limit_bytes: int) -> None:
    """Refuse, from the header alone, an image whose count would not fit in ``limit_bytes``."""
    sizes = dict(zip(axes, shape))
    height, width = sizes.get("Y", 1), sizes.get("X", 1)
    planes = sizes.get("Z", 1)
    channels = max(1, math.prod(shape) // (planes * height * width))
    need = count_memory_bytes(planes=planes, channels=channels, height=height, width=width,
                              itemsize=np.dtype(dtype).itemsize, pixel_size_um=pixel_size_um)
    if need > limit_bytes:
        stack = f", {planes} z-planes" if planes > 1 else ""
        raise SectionReadError(
            f"{path}: too large to count here: {width} x {height} px, {channels} channels{stack}, "
            f"{np.dtype(dtype).name} ({format_bytes(math.prod(shape) * np.dtype(dtype).itemsize)} of pixels) "
            f"needs about {format_bytes(need)} of memory, and {format_bytes(limit_bytes)} is available. Count it on "
            "a machine with more memory, with fewer `workers`, or split the section into tiles."
        )


def _reason(error: BaseException, path: Path) -> str:
    """An exception in a few words, without the path the message already starts with."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).replace(f"'{path}'", "the file").replace(str(path), "the file").strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _nonfinite_positions(data: np.ndarray) -> int:
    """Count (Y, X) positions holding NaN or an infinity in any plane or channel; infinities become NaN.

    Infinities are made NaN so that the projection and the median skip them
    like NaN; a plane at a time keeps the extra memory at one bool image.
    """
    bad = np.zeros(data.shape[-2:], bool)
    for index in np.ndindex(data.shape[:-2]):
        plane = data[index]  # a view: reshaping a transposed stack could copy it
        nonfinite = ~np.isfinite(plane)
        if nonfinite.any():
            plane[np.isinf(plane)] = np.nan
            bad |= nonfinite
    return int(bad.sum())


def _mask_nonfinite(data: np.ndarray, names: tuple[str, ...]) -> tuple[str, ...]:
    """Set each channel's NaN pixels to the median of its finite ones; return the channels with none."""
    empty = []
    for name, channel in zip(names, data):
        nonfinite = np.isnan(channel)
        if not nonfinite.any():
            continue
        finite = channel[~nonfinite]
        if finite.size == 0:
            empty.append(name)
        # The median is the channel's background in a fluorescence image: no
        # object forms there and the background estimates are not shifted.
        channel[nonfinite] = np.median(finite) if finite.size else 0.0
    return tuple(empty)


def match_channels(
    section: Section,
    *,
    markers: Sequence[str],
    overrides: Mapping[str, str | int] | None = None,
) -> dict[str, int]:
    """Find the channel index of each marker.

    Parameters
    ----------
    section : Section
        A section from :func:`read_section`.
    markers : sequence of str
        Marker names such as ``"dcx"`` or ``"neun"``; custom names are allowed.
    overrides : mapping of str to str or int, optional
        Marker to channel index (an int or a string of digits) or channel name,
        e.g. ``{"dcx": 0, "neun": "Cy5"}``. Overrides for markers
        not in `markers` are ignored, so one set of overrides can serve sections
        that are counted for different markers.

    Returns
    -------
    dict of str to int
        Marker to channel index, in the order of `markers`.

    Raises
    ------
    SectionReadError
        If a marker has no channel, matches several channels, an override
        names no channel of the section, or two markers share a channel.

    Notes
    -----
    Names match case-insensitively and ignoring anything but letters and
    digits, so "NeuN", "NEUN " and "Neu-N" all match ``neun``.
    """
    overrides = dict(overrides or {})
    names = section.channel_names
    found: dict[str, int] = {}
    for marker in markers:
        if marker in overrides:
            index = _resolve_override(section, marker, overrides[marker])
        else:
            hits = _matching_channels(names, marker)
            if not hits:
                raise SectionReadError(
                    f"{section.path}: no channel for marker {marker!r}; channels are "
                    f"{list(names)}. Name it with `channels[{marker}]=INDEX_OR_NAME`."
                )
            if len(hits) > 1:
                raise SectionReadError(
                    f"{section.path}: marker {marker!r} matches channels {hits} of "
                    f"{list(names)}. Name it with `channels[{marker}]=INDEX_OR_NAME`."
                )
            index = hits[0]
        for other, other_index in found.items():
            if other_index == index:
                raise SectionReadError(
                    f"{section.path}: markers {other!r} and {marker!r} both resolve to "
                    f"channel {index} ({names[index]!r}); channels are {list(names)}. "
                    f"Name them with `channels[MARKER]=INDEX_OR_NAME`."
                )
        found[marker] = index
    return found


def _check_axes(path: Path, axes: str, shape: tuple[int, ...]) -> None:
    """Refuse axes other than channels and z-planes; tifffile has squeezed singletons."""
    for axis, size in zip(axes, shape):
        if size == 1 or axis in "ZCSYX":
            continue
        if axis == "T":
            raise SectionReadError(
                f"{path}: a time series (axes {axes}, shape {shape}, T={size}) is not "
                "one section. Save each time point as its own file."
            )
        raise SectionReadError(
            f"{path}: cannot tell what axis {axis!r} of size {size} is (axes {axes}, "
            f"shape {shape}); only channels (C, S) and z-planes (Z) are supported. "
            "Save the section as OME-TIFF or an ImageJ hyperstack with axes such as "
            "CYX or ZCYX."
        )


def _to_zcsyx(data: np.ndarray, axes: str) -> np.ndarray:
    """Drop singleton axes and order the rest as (Z, C, S, Y, X)."""
    # Y and X stay even at size 1, so a one-row image keeps two dimensions.
    keep = [i for i, (a, n) in enumerate(zip(axes, data.shape)) if n != 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    for axis in "ZCS":
        if axis not in axes:
            data = data[np.newaxis]
            axes = axis + axes
    return data.transpose([axes.index(a) for a in "ZCSYX"])


def _parse_ome(xml: str | None) -> ET.Element | None:
    """Return the first image's ``Pixels`` element, or None if there is none."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        # A broken OME header should not lose the image: fall back to the
        # ImageJ/TIFF tags as if the file were a plain TIFF.
        return None
    # Match on the local name because the namespace changes with each OME
    # schema version (2013-06, 2015-01, 2016-06, ...).
    for element in root.iter():
        if _local_name(element.tag) == "Pixels":
            return element
    return None


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _channel_names(
    ome: ET.Element | None,
    imagej: dict | None,
    *,
    n_c: int,
    n_s: int,
    is_rgb: bool,
) -> tuple[str, ...]:
    n_channels = n_c * n_s
    stored: list[str] = []
    if ome is not None:
        stored = [
            (ch.get("Name") or "").strip()
            for ch in ome
            if _local_name(ch.tag) == "Channel"
        ]
        # An RGB OME image has one Channel element with SamplesPerPixel=3,
        # whose single name cannot label three channels.
        if len(stored) != n_channels:
            stored = []
    elif imagej is not None and n_s == 1:
        labels = imagej.get("Labels") or []
        if isinstance(labels, str):
            labels = [labels]  # tifffile gives one label as a string, not a list of one
        # ImageJ labels every plane in CZT order with C fastest, so the first
        # n_c labels are the channels of the first z-plane.
        if len(labels) >= n_c:
            stored = [(label or "").strip() for label in labels[:n_c]]
    if is_rgb and n_c == 1 and n_s in (3, 4):
        defaults = ["red", "green", "blue", "alpha"][:n_s]
    else:
        defaults = [f"C{i}" for i in range(n_channels)]
    if not stored:
        return tuple(defaults)
    return tuple(name or default for name, default in zip(stored, defaults))


def _file_pixel_size(
    path: Path,
    ome: ET.Element | None,
    imagej: dict | None,
    page: tifffile.TiffPage | tifffile.TiffFrame,
) -> tuple[float, str]:
    ome_xy = _ome_pixel_size(ome)
    tag_xy, tag_source = _tag_pixel_size(imagej, page)
    for xy, what in ((ome_xy, "OME PhysicalSizeX/PhysicalSizeY"), (tag_xy, "resolution tags")):
        if xy is not None and not math.isclose(*xy, rel_tol=_PIXEL_SIZE_RTOL):
            raise PixelSizeError(
                f"{path}: contradictory pixel size: {what} give {xy[0]:g} um in X "
                f"but {xy[1]:g} um in Y. {_PIXEL_SIZE_FIX}"
            )
    if ome_xy is not None and tag_xy is not None:
        if not math.isclose(ome_xy[0], tag_xy[0], rel_tol=_PIXEL_SIZE_RTOL):
            raise PixelSizeError(
                f"{path}: contradictory pixel size: OME PhysicalSizeX is {ome_xy[0]:g} um "
                f"but the TIFF resolution tags give {tag_xy[0]:g} um. {_PIXEL_SIZE_FIX}"
            )
    if ome_xy is not None:
        return ome_xy[0], "ome"
    if tag_xy is not None:
        return tag_xy[0], tag_source
    raise PixelSizeError(
        f"{path}: no pixel size found (no OME PhysicalSizeX, no ImageJ/TIFF resolution "
        f"in a length unit). {_PIXEL_SIZE_FIX}"
    )


def _um_per_unit(unit: object) -> float | None:
    if not isinstance(unit, str):
        return None
    return _UM_PER_UNIT.get(unit.strip().lower())


def _ome_pixel_size(pixels: ET.Element | None) -> tuple[float, float] | None:
    if pixels is None:
        return None
    sizes = []
    for axis in "XY":
        value = pixels.get(f"PhysicalSize{axis}")
        # OME's default unit is the micrometre.
        factor = _um_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        try:
            size = float(value) * factor if value is not None and factor else None
        except ValueError:
            size = None
        sizes.append(size if size is not None and size > 0 else None)
    x, y = sizes
    if x is None and y is None:
        return None
    # One given axis is taken to mean square pixels.
    return (x or y, y or x)


def _tag_pixel_size(
    imagej: dict | None, page: tifffile.TiffPage | tifffile.TiffFrame
) -> tuple[tuple[float, float] | None, str]:
    if imagej is not None and "unit" in imagej:
        factor, source = _um_per_unit(imagej["unit"]), "imagej"
    else:
        factor, source = _UM_PER_RESUNIT.get(int(page.resolutionunit)), "tiff-resolution"
    if factor is None:
        return None, source
    sizes = []
    for name in ("XResolution", "YResolution"):
        tag = page.tags.get(name)
        if tag is None:
            return None, source
        numerator, denominator = tag.value
        # The tags count pixels per unit, so the pixel size is their inverse.
        if numerator <= 0 or denominator <= 0:
            return None, source
        sizes.append(denominator / numerator * factor)
    return (sizes[0], sizes[1]), source


def _matching_channels(names: Sequence[str], wanted: str) -> list[int]:
    key = _name_key(wanted)
    return [i for i, name in enumerate(names) if key and _name_key(name) == key]


def _name_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def _resolve_override(section: Section, marker: str, value: str | int) -> int:
    names = section.channel_names
    where = f"{section.path}: `channels[{marker}]={value}`"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SectionReadError(f"{where}: expected a channel index or name.")
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        value = int(value.strip())
    if isinstance(value, int):
        if not 0 <= value < len(names):
            raise SectionReadError(
                f"{where}: no channel {value}; the file has {len(names)} channels "
                f"{list(names)} (indices 0 to {len(names) - 1})."
            )
        return value
    # An exact name wins over a loose match, so "DAPI" still works on a file
    # that also has a channel called "dapi ".
    exact = [i for i, name in enumerate(names) if name == value]
    hits = exact or _matching_channels(names, value)
    if len(hits) != 1:
        problem = "no channel named" if not hits else "several channels named"
        raise SectionReadError(
            f"{where}: {problem} {value!r} for marker {marker!r}; channels are "
            f"{list(names)}. Use an index instead, e.g. `channels[{marker}]=0`."
        )
    return hits[0]
