"""npe2 writers: labels to TIFF, cells to CSV, the GCL outline to GeoJSON and ImageJ ROI.

Each writes what the core reads back:

- a label TIFF is the ``labels_<marker>.tif`` of a results folder (int32,
  0 = background) with the pixel size in its TIFF resolution;
- a cells CSV has the columns of ``cells.csv`` (docs/output.md);
- a GeoJSON or ImageJ ROI outline is what the samplesheet's ``outline``
  column takes (:func:`dcxcount.outlines.read_outline`), so an edited GCL can
  be fed back to ``dcxcount count``.

Outline coordinates: napari puts integer coordinates on pixel centres,
ImageJ and QuPath on pixel corners (a pixel is inside when its centre is), so
vertices are shifted by half a pixel on the way out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_labels_tiff", "write_points_csv", "write_shapes_geojson", "write_shapes_roi",
           "shapes_to_rings"]

# napari (pixel centres) -> ImageJ / QuPath (pixel corners).
_CORNER_SHIFT = 0.5

# An ellipse drawn in napari is stored as its four bounding-box corners; outlined with this
# many vertices it stays within a hundredth of a pixel of the curve for a GCL-sized ellipse.
_ELLIPSE_VERTICES = 256


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer as an int32 TIFF, as ``labels_<marker>.tif`` in a results folder.

    Parameters
    ----------
    path : str
        The file to write (``.tif`` or ``.tiff``).
    data : array
        The label image (2D; values are ``cell_id``, 0 = background).
    meta : dict
        The layer's attributes; ``scale`` (um per pixel) goes into the TIFF
        resolution so that the core reads the pixel size back.

    Returns
    -------
    list of str
        The path written.
    """
    import tifffile

    labels = np.asarray(data)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError(f"{path}: label values must fit int32 (0 = background)")
    pixel_size_um = float(meta.get("scale", (1.0, 1.0))[-1])
    # Pixels per centimetre (ResolutionUnit 3, baseline TIFF): every reader knows it.
    tifffile.imwrite(path, labels.astype(np.int32), compression="zlib",
                     resolution=(1e4 / pixel_size_um, 1e4 / pixel_size_um), resolutionunit=3)
    return [path]


def write_points_csv(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Points layer of cells as a CSV with the columns of ``cells.csv``.

    Parameters
    ----------
    path : str
        The file to write (``.csv``).
    data : (N, 2) array
        Point positions (row, column) in pixels.
    meta : dict
        The layer's attributes: ``features`` (one row per point; the Count
        widget puts every ``cells.csv`` column there) and ``scale``.

    Returns
    -------
    list of str
        The path written.

    Notes
    -----
    A point without ``x_um`` / ``y_um`` (one added by hand, or a layer with
    no such features) gets them from its position times the scale.
    """
    import pandas as pd

    points = np.asarray(data, float).reshape(-1, 2)
    features = meta.get("features")
    table = pd.DataFrame(features).reset_index(drop=True) if features is not None else pd.DataFrame()
    if len(table) != len(points):
        table = table.reindex(range(len(points)))
    scale = np.asarray(meta.get("scale", (1.0, 1.0)), float)[-2:]
    for column, axis in (("x_um", 1), ("y_um", 0)):
        position = points[:, axis] * scale[axis]
        table[column] = table[column].fillna(pd.Series(position)) if column in table else position
    table.to_csv(path, index=False)
    return [path]


def shapes_to_rings(data: list[np.ndarray], shape_types: list[str] | None) -> list[np.ndarray]:
    """Shapes layer data as closed polygon rings in napari's (row, column) pixel coordinates.

    Parameters
    ----------
    data : list of (N, 2) arrays
        The layer's shapes.
    shape_types : list of str, optional
        Each shape's type; polygons, rectangles and ellipses enclose an area.

    Returns
    -------
    list of (N, 2) arrays
        One ring per shape, last vertex not repeated.

    Raises
    ------
    ValueError
        A line or path, which outlines no area (the core refuses them too).
    """
    shape_types = list(shape_types or ["polygon"] * len(data))
    rings = []
    for vertices, kind in zip(data, shape_types):
        vertices = np.asarray(vertices, float)[:, -2:]
        if kind in ("line", "path"):
            raise ValueError(f"a {kind} outlines no area: draw the GCL as a polygon, rectangle or ellipse")
        if kind == "ellipse":
            centre = vertices.mean(axis=0)
            radii = np.abs(vertices - centre).max(axis=0)
            angle = np.linspace(0, 2 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
            vertices = centre + np.stack([radii[0] * np.sin(angle), radii[1] * np.cos(angle)], axis=1)
        rings.append(vertices)
    if not rings:
        raise ValueError("the Shapes layer holds no shape")
    return rings


def write_shapes_geojson(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Shapes layer (the GCL) as GeoJSON polygons, as QuPath exports annotations.

    Parameters
    ----------
    path : str
        The file to write (``.geojson`` or ``.json``).
    data : list of arrays
        The shapes, (row, column) in pixels.
    meta : dict
        The layer's attributes (``shape_type``).

    Returns
    -------
    list of str
        The path written. One Polygon feature per shape, coordinates (x, y)
        in image pixels with integers on pixel corners, rings closed.
    """
    features = []
    for ring in shapes_to_rings(list(data), meta.get("shape_type")):
        xy = ring[:, ::-1] + _CORNER_SHIFT
        closed = np.vstack([xy, xy[:1]])
        features.append({"type": "Feature", "properties": {"name": "GCL", "objectType": "annotation"},
                         "geometry": {"type": "Polygon", "coordinates": [closed.tolist()]}})
    Path(path).write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return [path]


def write_shapes_roi(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Shapes layer (the GCL) as ImageJ polygon ROIs.

    Parameters
    ----------
    path : str
        ``.roi`` for a single shape, ``.zip`` (a ROI Manager set) for any number.
    data : list of arrays
        The shapes, (row, column) in pixels.
    meta : dict
        The layer's attributes (``shape_type``).

    Returns
    -------
    list of str
        The path written. Vertices keep their sub-pixel positions (ImageJ's
        sub-pixel polygon coordinates), integers on pixel corners.

    Raises
    ------
    ValueError
        Several shapes and a ``.roi`` path (one ROI per ``.roi`` file).
    """
    import roifile

    rings = shapes_to_rings(list(data), meta.get("shape_type"))
    rois = []
    for number, ring in enumerate(rings, start=1):
        roi = roifile.ImagejRoi.frompoints(ring[:, ::-1] + _CORNER_SHIFT, name=f"GCL-{number}")
        roi.roitype = roifile.ROI_TYPE.POLYGON  # frompoints makes a freehand ROI; a GCL is a polygon
        rois.append(roi)
    if path.lower().endswith(".zip"):
        Path(path).unlink(missing_ok=True)  # roiwrite appends to an existing set
        roifile.roiwrite(path, rois)
    elif len(rois) == 1:
        rois[0].tofile(path)
    else:
        raise ValueError(f"{path}: {len(rois)} shapes do not fit one .roi file; save as .zip (a ROI set)")
    return [path]
