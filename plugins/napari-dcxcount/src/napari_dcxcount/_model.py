"""What the Count widget does, without Qt or a viewer.

The widget (:mod:`._widget`) only collects choices and shows results; the
steps in between live here so that they can be tested headless and reused:

- :func:`marker_of_layer_name` and :func:`guess_markers` map image layers to markers;
- :class:`CountRequest` turns the chosen layers into the core's
  :class:`~dcxcount.io.Section` and :class:`~dcxcount.pipeline.CountSettings`,
  and :meth:`CountRequest.run` counts it with
  :func:`dcxcount.pipeline.count_section`;
- :func:`result_layer_data` turns a :class:`~dcxcount.pipeline.SectionResult`
  into napari layer data (labels, GCL shapes, processes, cells as points);
- :func:`summary_rows` lays the core's per-section summary out as a table.

The plugin computes no count, stage or co-label itself: every number comes
from the core. :func:`result_layer_data` and :func:`summary_rows` take a
``SectionResult`` and nothing else, so a reader of a results folder (which
will load a saved section as a ``SectionResult``) can show it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._compat import keep_triton_from_system_llvm

if TYPE_CHECKING:  # the core imports torch; keep it out of napari's start-up
    import pandas as pd

    from dcxcount.io import Section
    from dcxcount.pipeline import CountSettings, SectionResult
    from dcxcount.progress import CancelToken, ProgressCallback

__all__ = [
    "MARKERS",
    "MARKER_NAMES",
    "MARKER_COLORMAPS",
    "STAGE_COLORS",
    "MODELS",
    "LayerData",
    "CountRequest",
    "marker_of_layer_name",
    "guess_markers",
    "gcl_polygons",
    "result_layer_data",
    "summary_rows",
]

# The core's vocabulary (dcxcount.vocabulary.KNOWN_MARKERS), repeated here so that the reader
# and napari's menus do not import the core (and torch) to draw a layer list;
# tests/test_model.py checks the two agree.
MARKERS: tuple[str, ...] = ("dcx", "neun", "dapi", "brdu", "edu")
"""Markers the plugin recognises by name, in the core's order."""

MARKER_NAMES: dict[str, str] = {"dcx": "DCX", "neun": "NeuN", "dapi": "DAPI", "brdu": "BrdU", "edu": "EdU"}
"""How a marker is spelled in layer names (as the sample files name their channels)."""

# The colours of the field's figures: DCX green, NeuN magenta (so a DCX+NeuN+ cell reads
# white in additive blending), DAPI blue, the thymidine analogues red and yellow.
MARKER_COLORMAPS: dict[str, str] = {"dcx": "green", "neun": "magenta", "dapi": "blue", "brdu": "red",
                                    "edu": "yellow"}

# Stages A-F from cool (proliferative) to warm (postmitotic), so that a section's maturation
# reads at a glance; nuclei (no stage) are drawn in their marker's colour, faint.
STAGE_COLORS: dict[str, str] = {"A": "#4575b4", "B": "#91bfdb", "C": "#e0f3f8", "D": "#fee090",
                                "E": "#fc8d59", "F": "#d73027"}
_NUCLEUS_ALPHA = 0.35

MODELS: tuple[str, ...] = ("specialist", "cpsam")
"""Engines offered by name (a model file path is accepted too): the bundled specialist
models, which run on a laptop CPU, and cellpose's Cellpose-SAM."""

LayerData = tuple[Any, dict[str, Any], str]
"""napari's layer data tuple: (data, layer keyword arguments, layer type)."""


def _words(name: str) -> list[str]:
    """Lower-case runs of letters and digits: "NeuN (sample) [1]" -> ["neun", "sample", "1"]."""
    return re.findall(r"[a-z0-9]+", name.lower())


def marker_of_layer_name(name: str) -> str | None:
    """The marker a layer's name says it shows, if any.

    Parameters
    ----------
    name : str
        A layer name such as ``"DCX"``, ``"neun [1]"`` or ``"dg_01 DAPI"``.

    Returns
    -------
    str or None
        The first of :data:`MARKERS` that is a whole word of `name` (case and
        punctuation ignored, as the core matches channel names), else None.
    """
    words = _words(name)
    hits = [marker for marker in MARKERS if marker in words]
    return hits[0] if len(hits) == 1 else None


def guess_markers(layer_names: Iterable[str], *,
                  layer_markers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Assign image layers to markers, each marker at most one layer.

    Parameters
    ----------
    layer_names : iterable of str
        Names of the viewer's image layers, in the layer list's order.
    layer_markers : mapping, optional
        Layer name -> marker known for sure (the reader records it in the
        layer's metadata); it wins over a guess from the name.

    Returns
    -------
    dict
        Marker -> layer name; markers no layer shows are left out. Where
        several layers name the same marker, the first keeps it, so that a
        second copy of an image does not silently replace the first.
    """
    layer_markers = dict(layer_markers or {})
    chosen: dict[str, str] = {}
    for name in layer_names:
        marker = layer_markers.get(name) or marker_of_layer_name(name)
        if marker is not None and marker not in chosen:
            chosen[marker] = name
    return chosen


@dataclass(frozen=True)
class CountRequest:
    """One section to count, as chosen in the widget.

    Attributes
    ----------
    images : dict
        Marker -> 2D image (Y, X), all of one shape. DCX and NeuN or DAPI are
        required (the GCL is found from the nuclei).
    pixel_size_um : float
        Pixel size in micrometres (the layers' scale).
    model : str
        ``"specialist"``, ``"cpsam"`` or a path to a model file.
    source : str
        Where the image came from (a file path or a layer name), to name the
        section in the core's messages.
    """

    images: dict[str, np.ndarray]
    pixel_size_um: float
    model: str = "specialist"
    source: str = "napari"
    channel_order: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if "dcx" not in self.images:
            raise ValueError("choose the DCX image layer")
        if not {"neun", "dapi"} & set(self.images):
            raise ValueError("choose a NeuN or DAPI image layer: the GCL is found from the nuclei")
        shapes = {marker: np.shape(image) for marker, image in self.images.items()}
        if any(len(shape) != 2 for shape in shapes.values()):
            raise ValueError(f"each channel must be one 2D plane (Y, X); got shapes {shapes}")
        if len(set(shapes.values())) > 1:
            raise ValueError(f"the channels differ in size: {shapes}")
        if not (np.isfinite(self.pixel_size_um) and self.pixel_size_um > 0):
            raise ValueError(f"the pixel size must be a positive number of um, got {self.pixel_size_um!r}")
        # The core's markers in its own order, then any other name.
        order = [m for m in MARKERS if m in self.images] + [m for m in self.images if m not in MARKERS]
        object.__setattr__(self, "channel_order", tuple(order))

    def section(self) -> Section:
        """The chosen layers as the core's section: one channel per marker, named by it.

        Returns
        -------
        dcxcount.io.Section
            Channels in :attr:`channel_order`, named by marker, so that the
            core finds each marker's channel by name as it does in a file.
        """
        from dcxcount.io import section_from_arrays

        # napari may hold a lazy (dask) array; the core needs the pixels. The core cleans them as
        # it cleans a file's (NaN and infinite pixels masked), so a layer counts as its file would.
        data = np.stack([np.asarray(self.images[marker]) for marker in self.channel_order])
        return section_from_arrays(data, channel_names=self.channel_order, pixel_size_um=float(self.pixel_size_um),
                                   path=self.source)

    def settings(self) -> CountSettings:
        """The core's settings: the chosen model, each marker's channel by index."""
        keep_triton_from_system_llvm()
        from dcxcount.pipeline import CountSettings

        return CountSettings(model=self.model, channels={m: i for i, m in enumerate(self.channel_order)})

    def run(self, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> SectionResult:
        """Count the section with :func:`dcxcount.pipeline.count_section`.

        Parameters
        ----------
        progress : callable, optional
            ``progress(fraction, message)``, as the core calls it.
        cancel : dcxcount.progress.CancelToken, optional
            When cancelled, the core raises :class:`dcxcount.progress.Cancelled`
            at its next step.

        Returns
        -------
        dcxcount.pipeline.SectionResult
        """
        keep_triton_from_system_llvm()
        from dcxcount.pipeline import count_section

        return count_section(self.section(), settings=self.settings(), progress=progress, cancel=cancel)


def gcl_polygons(mask: np.ndarray, *, tolerance_px: float = 0.5) -> list[np.ndarray]:
    """Outline a GCL mask as polygons for a napari Shapes layer.

    Parameters
    ----------
    mask : (Y, X) bool array
        The GCL (``SectionResult.frame.gcl``).
    tolerance_px : float
        Vertices closer than this to the straight line between their
        neighbours are dropped (:func:`skimage.measure.approximate_polygon`),
        which keeps the outline within half a pixel of the mask with a fifth
        of the vertices, so that it stays light to edit.

    Returns
    -------
    list of (N, 2) float arrays
        One closed polygon (last vertex not repeated) per piece of the GCL,
        vertices as (row, column) at pixel centres, napari's convention. Holes
        in the mask are left out: a napari polygon cannot have one.
    """
    from skimage import measure

    # Padding closes contours that run into the image border.
    padded = np.pad(np.asarray(mask, bool), 1).astype(np.float32)
    polygons = []
    for contour in measure.find_contours(padded, 0.5, positive_orientation="high"):
        rows, cols = contour[:, 0], contour[:, 1]
        # Shoelace area in (column, row) axes: with positive_orientation="high", the outer
        # boundary of a piece of the mask has a negative sign, a hole a positive one.
        signed = 0.5 * np.sum(cols * np.roll(rows, -1) - np.roll(cols, -1) * rows)
        if signed >= 0:
            continue
        ring = measure.approximate_polygon(contour - 1.0, tolerance=tolerance_px)
        polygons.append(ring[:-1] if np.allclose(ring[0], ring[-1]) else ring)
    return polygons


def _rgba(color: str, alpha: float = 1.0) -> np.ndarray:
    """A colour name or #hex as RGBA in 0-1."""
    from vispy.color import Color  # napari's own colour parser comes with vispy

    rgba = np.array(Color(color).rgba, float)
    rgba[3] = alpha
    return rgba


def _cell_colors(cells: pd.DataFrame) -> np.ndarray:
    """(N, 4) face colours: DCX cells by stage, nuclei faint in their marker's colour."""
    colors = np.tile(_rgba("white", _NUCLEUS_ALPHA), (len(cells), 1))
    stages = cells["stage"] if "stage" in cells else [None] * len(cells)
    for row, (marker, stage) in enumerate(zip(cells["marker"], stages)):
        if isinstance(stage, str) and stage in STAGE_COLORS:
            colors[row] = _rgba(STAGE_COLORS[stage])
        elif marker in MARKER_COLORMAPS:
            colors[row] = _rgba(MARKER_COLORMAPS[marker], _NUCLEUS_ALPHA)
    return colors


def result_layer_data(result: SectionResult, *, scale: tuple[float, float],
                      translate: tuple[float, float] = (0.0, 0.0),
                      units: tuple[str, str] | None = None) -> list[LayerData]:
    """napari layers showing a counted section.

    Parameters
    ----------
    result : dcxcount.pipeline.SectionResult
        What :func:`dcxcount.pipeline.count_section` returned.
    scale, translate : tuple of float
        The image layers' (row, column) scale (um per pixel) and offset, so
        that the results lie on the image.
    units : tuple of str, optional
        The image layers' units (napari >= 0.6 has them; layers of one
        viewer must agree for the scale bar to use them).

    Returns
    -------
    list of (data, kwargs, layer type)
        In drawing order: the GCL outline (Shapes ``"GCL"``), one Labels layer
        per marker (``"dcx labels"``, ``"neun labels"``, ...; values are the
        ``cell_id`` of ``cells.csv``), the traced processes (Labels
        ``"processes"``; value = the DCX cell's ``cell_id``, so a cell and its
        processes share a colour) and the cells (Points ``"cells"``) with every
        ``cells.csv`` column as features, DCX cells coloured by stage.
    """
    common = {"scale": tuple(scale), "translate": tuple(translate), **({"units": tuple(units)} if units else {})}
    pixel_size_um = float(scale[-1])
    layers: list[LayerData] = [
        (gcl_polygons(result.frame.gcl),
         {**common, "name": "GCL", "shape_type": "polygon", "edge_color": "yellow",
          "face_color": [1.0, 1.0, 0.0, 0.0], "edge_width": 2.0, "opacity": 0.8,
          "metadata": {"dcxcount": "gcl"}},
         "shapes"),
    ]
    for marker, labels in result.labels.items():
        layers.append((labels, {**common, "name": f"{marker} labels", "opacity": 0.5,
                                "metadata": {"dcxcount": "labels", "marker": marker}}, "labels"))
    layers.append((result.processes, {**common, "name": "processes", "opacity": 0.9,
                                      "metadata": {"dcxcount": "processes"}}, "labels"))
    cells = result.cells.reset_index(drop=True)
    # Positions back to pixels: x_um is the centroid's column times the pixel size (docs/output.md).
    points = cells[["y_um", "x_um"]].to_numpy(float) / pixel_size_um
    # Features as plain objects: napari's feature table does not take pandas' string dtype.
    features = cells.astype({c: object for c in cells.columns if str(cells[c].dtype) in ("str", "string")})
    layers.append((points, {**common, "name": "cells", "features": features,
                            "face_color": _cell_colors(cells), "border_width": 0.0,
                            "size": 6.0 / pixel_size_um, "opacity": 0.8, "metadata": {"dcxcount": "cells"}},
                   "points"))
    return layers


def _number(value: Any) -> str:
    """A summary value as the table shows it: whole numbers plain, others to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not np.isfinite(number):
            return "off" if np.isinf(number) else ""  # an infinite threshold is the core's "off"
        return str(int(number)) if number.is_integer() else f"{number:.4g}"
    return str(value)


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The core's section summary as table rows.

    Parameters
    ----------
    summary : mapping
        ``SectionResult.summary`` (one row of ``sections.csv``).

    Returns
    -------
    list of (quantity, value, share) strings
        Counts per marker and co-label; stages A-F and stage groups with
        their share of the counted DCX+ cells; the phenotype shares
        (``pct_*``, already percentages in the core); the layer measures;
        then every other summary entry, so nothing the core reports is hidden.
    """
    rows: list[tuple[str, str, str]] = []
    shown: set[str] = set()

    def add(key: str, label: str, share: str = "") -> None:
        if key in summary:
            rows.append((label, _number(summary[key]), share))
            shown.add(key)

    counts = [k for k in summary if k.endswith("_count") and k.split("_")[0] in MARKERS and k.count("_") == 1]
    for key in counts:
        add(key, f"{MARKER_NAMES.get(key.split('_')[0], key)}+ counted")
    add("dcx_neun_count", "DCX+NeuN+ counted")
    add("dcx_per_mm2_gcl", "DCX+ per mm² GCL")
    add("stage_doubtful", "DCX+ stage doubtful")
    dcx = summary.get("dcx_count") or 0

    def share(n: float) -> str:
        # A share of the core's counts, for reading only; sections.csv has the counts.
        return f"{100 * n / dcx:.1f} %" if dcx else ""

    stages = ("A", "B", "C", "D", "E", "F")
    for stage in stages:
        add(f"stage_{stage}", f"stage {stage}", share(summary.get(f"stage_{stage}", 0)))
    for group, members in (("proliferative (A-B)", "AB"), ("intermediate (C-D)", "CD"), ("postmitotic (E-F)", "EF")):
        if all(f"stage_{s}" in summary for s in members):
            n = sum(summary[f"stage_{s}"] for s in members)
            rows.append((group, str(int(n)), share(n)))
    add("maturation_index", "maturation index (E+F)/DCX+")
    for key in summary:
        if key.startswith("pct_"):  # the core's phenotype shares, already in per cent
            value = summary[key]
            rows.append((key[4:].replace("_", " "), "", "" if value is None or not np.isfinite(value)
                         else f"{float(value):.1f} %"))
            shown.add(key)
    for key, label in (("gcl_area_mm2", "GCL area (mm²)"), ("sgz_length_mm", "SGZ length (mm)"),
                       ("gcl_thickness_um", "GCL thickness (µm)"), ("gcl_source", "GCL from"),
                       ("pixel_size_um", "pixel size (µm)"), ("channels", "channels")):
        add(key, label)
    for key in summary:
        if key not in shown:
            add(key, key)
    return rows
