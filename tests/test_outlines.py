"""Tests for dcxcount.outlines: a person's GCL outline read from ROI, GeoJSON and TIFF files.

Ground truth is a C drawn analytically (an annulus arc with its inner and outer radius,
span and pixel size known), so areas and lengths are known without any detection.
The CLI path (samplesheet ``outline`` column, ``gcl_source``, recounting) is tested in
tests/test_cli.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import roifile
import tifffile
from skimage import draw, measure

from dcxcount.outlines import OutlineError, outline_frame, read_outline

SHAPE = (300, 320)
CY, CX, R_IN, R_OUT = 150.0, 160.0, 60.0, 110.0
HALF_SPAN = math.radians(120)


def c_ring(*, cx: float = CX, cy: float = CY) -> np.ndarray:
    """(x, y) vertices of a C: the outer arc one way, the inner arc back."""
    theta = np.linspace(-HALF_SPAN, HALF_SPAN, 200) + math.pi  # the C opens towards +x
    outer = np.stack([cx + R_OUT * np.cos(theta), cy + R_OUT * np.sin(theta)], axis=1)
    inner = np.stack([cx + R_IN * np.cos(theta[::-1]), cy + R_IN * np.sin(theta[::-1])], axis=1)
    return np.concatenate([outer, inner])


def reference_mask(rings: list[np.ndarray], shape=SHAPE) -> np.ndarray:
    """skimage's polygon fill at pixel centres (ImageJ puts them at +0.5), XOR over rings."""
    mask = np.zeros(shape, bool)
    for ring in rings:
        part = np.zeros(shape, bool)
        part[draw.polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape=shape)] = True
        mask ^= part
    return mask


def mask_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Outline(s) of a mask as (x, y) rings in ImageJ/QuPath pixel coordinates."""
    contours = measure.find_contours(np.pad(mask, 1).astype(float), 0.5)
    return [contour[:, ::-1] - 1 + 0.5 for contour in contours]


def write_roi_zip(path, rings: list[np.ndarray]) -> None:
    roifile.roiwrite(path, [roifile.ImagejRoi.frompoints(ring, name=f"gcl{i}") for i, ring in enumerate(rings)],
                     mode="w")


def write_geojson(path, polygons: list[list[np.ndarray]]) -> None:
    """A FeatureCollection as QuPath exports it: one Polygon feature per [outer, *holes]."""
    features = [{"type": "Feature", "properties": {"objectType": "annotation"},
                 "geometry": {"type": "Polygon", "coordinates": [ring.tolist() for ring in rings]}}
                for rings in polygons]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


C_AREA = (R_OUT**2 - R_IN**2) * HALF_SPAN  # px^2


# --------------------------------------------------------------------------- each format


def test_roi_file_fills_the_polygon_at_pixel_centres(tmp_path):
    ring = c_ring()
    roifile.ImagejRoi.frompoints(ring).tofile(tmp_path / "gcl.roi")
    mask = read_outline(tmp_path / "gcl.roi", shape=SHAPE)
    assert np.array_equal(mask, reference_mask([ring]))
    assert mask.sum() == pytest.approx(C_AREA, rel=0.01)


def test_roi_set_is_the_union_of_its_rois(tmp_path):
    left, right = c_ring(), c_ring(cx=CX + 30)
    write_roi_zip(tmp_path / "set.zip", [left, right])
    mask = read_outline(tmp_path / "set.zip", shape=SHAPE)
    assert np.array_equal(mask, reference_mask([left]) | reference_mask([right]))


def test_rectangle_and_oval_rois_are_areas(tmp_path):
    roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, top=10, left=20, bottom=40, right=70).tofile(tmp_path / "r.roi")
    assert read_outline(tmp_path / "r.roi", shape=SHAPE).sum() == 30 * 50
    roifile.ImagejRoi(roitype=roifile.ROI_TYPE.OVAL, top=10, left=20, bottom=110, right=120).tofile(tmp_path / "o.roi")
    assert read_outline(tmp_path / "o.roi", shape=SHAPE).sum() == pytest.approx(math.pi * 50**2, rel=0.03)


def test_geojson_polygons_with_holes_as_qupath_writes_them(tmp_path):
    ring = c_ring()
    hole = np.array([[60.0, 140.0], [75.0, 140.0], [75.0, 160.0], [60.0, 160.0], [60.0, 140.0]])
    square = np.array([[250.0, 20.0], [290.0, 20.0], [290.0, 60.0], [250.0, 60.0], [250.0, 20.0]])
    write_geojson(tmp_path / "gcl.geojson", [[ring, hole], [square]])
    mask = read_outline(tmp_path / "gcl.geojson", shape=SHAPE)
    assert np.array_equal(mask, reference_mask([ring, hole]) | reference_mask([square]))
    assert not mask[150, 67] and mask[150, 80]  # the hole is cut out, the band around it kept
    assert mask.sum() == pytest.approx(C_AREA - 15 * 20 + 40 * 40, rel=0.01)


def test_geojson_multipolygon_feature_list(tmp_path):
    # Older QuPath versions export a bare list of features.
    ring, square = c_ring(), np.array([[250.0, 20.0], [290.0, 20.0], [290.0, 60.0], [250.0, 60.0]])
    feature = {"type": "Feature", "geometry": {"type": "MultiPolygon",
                                               "coordinates": [[ring.tolist()], [square.tolist()]]}}
    (tmp_path / "gcl.json").write_text(json.dumps([feature]))
    mask = read_outline(tmp_path / "gcl.json", shape=SHAPE)
    assert np.array_equal(mask, reference_mask([ring]) | reference_mask([square]))


def test_mask_tiff_is_read_as_is(tmp_path):
    mask = reference_mask([c_ring()])
    tifffile.imwrite(tmp_path / "gcl.tif", (mask * 255).astype(np.uint8)[None])  # a singleton plane is fine
    assert np.array_equal(read_outline(tmp_path / "gcl.tif", shape=SHAPE), mask)


def test_mask_outline_round_trip_is_exact(tmp_path):
    # A mask's traced outline, saved as ROIs or GeoJSON, gives the mask back pixel for pixel.
    mask = reference_mask([c_ring()]) | reference_mask([c_ring(cx=CX + 40, cy=CY + 20)])
    write_roi_zip(tmp_path / "m.zip", mask_rings(mask))
    write_geojson(tmp_path / "m.geojson", [[ring] for ring in mask_rings(mask)])
    assert np.array_equal(read_outline(tmp_path / "m.zip", shape=SHAPE), mask)
    assert np.array_equal(read_outline(tmp_path / "m.geojson", shape=SHAPE), mask)


def test_outline_frame_measures_the_outlined_c(tmp_path):
    roifile.ImagejRoi.frompoints(c_ring()).tofile(tmp_path / "gcl.roi")
    frame = outline_frame(tmp_path / "gcl.roi", shape=SHAPE, pixel_size_um=0.5)
    assert frame.gcl_area_mm2 == pytest.approx(C_AREA * 0.25 / 1e6, rel=0.01)
    # Measured: 50.0 um thick (25 um exactly); the SGZ the inner arc (125.7 um) less the ends, 117.6 um.
    assert frame.thickness_um == pytest.approx((R_OUT - R_IN) * 0.5, rel=0.05)
    assert frame.sgz_length_mm * 1000 == pytest.approx(R_IN * 2 * HALF_SPAN * 0.5, rel=0.1)
    assert frame.hilus[int(CY), int(CX)]


# --------------------------------------------------------------------------- errors name the file and the problem


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(OutlineError, match=r"nope\.roi: outline file not found"):
        read_outline(tmp_path / "nope.roi", shape=SHAPE)
    (tmp_path / "gcl.png").write_bytes(b"x")
    with pytest.raises(OutlineError, match=r"gcl\.png: unknown outline format '\.png'.*\.roi.*GeoJSON.*TIFF"):
        read_outline(tmp_path / "gcl.png", shape=SHAPE)


@pytest.mark.parametrize("name, content, problem", [
    ("bad.roi", b"not a roi at all", "cannot read the outline"),
    ("bad.zip", b"PK not a zip", "cannot read the outline"),
    ("bad.tif", b"II*\x00 not a tiff", "cannot read the outline"),
    ("bad.geojson", b"{not json", "not a GeoJSON file"),
])
def test_unreadable_files(tmp_path, name, content, problem):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(OutlineError, match=rf"{name}: {problem}"):
        read_outline(tmp_path / name, shape=SHAPE)


def test_mask_of_the_wrong_shape(tmp_path):
    tifffile.imwrite(tmp_path / "gcl.tif", np.ones((100, 200), np.uint8))
    with pytest.raises(OutlineError, match=r"gcl\.tif: the mask is 200 x 100 px but the section is 320 x 300 px"):
        read_outline(tmp_path / "gcl.tif", shape=SHAPE)
    tifffile.imwrite(tmp_path / "stack.tif", np.ones((2, *SHAPE), np.uint8))
    with pytest.raises(OutlineError, match=r"stack\.tif: not a 2-D mask"):
        read_outline(tmp_path / "stack.tif", shape=SHAPE)


def test_outlines_without_area(tmp_path):
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros(SHAPE, np.uint8))
    with pytest.raises(OutlineError, match=r"empty\.tif: the mask has no non-zero \(GCL\) pixel"):
        read_outline(tmp_path / "empty.tif", shape=SHAPE)
    roifile.ImagejRoi(roitype=roifile.ROI_TYPE.LINE, x1=10, y1=10, x2=200, y2=100, name="sgz").tofile(
        tmp_path / "line.roi")
    with pytest.raises(OutlineError, match=r"line\.roi: ROI 'sgz' is a line ROI; outline the GCL with a polygon"):
        read_outline(tmp_path / "line.roi", shape=SHAPE)
    roifile.ImagejRoi.frompoints(np.array([[10.0, 10.0], [100.0, 50.0], [190.0, 90.0]])).tofile(
        tmp_path / "flat.roi")
    with pytest.raises(OutlineError, match=r"flat\.roi: the outline encloses no area"):
        read_outline(tmp_path / "flat.roi", shape=SHAPE)
    (tmp_path / "points.geojson").write_text(json.dumps(
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10, 10]}}))
    with pytest.raises(OutlineError, match=r"points\.geojson: a Point geometry outlines no area"):
        read_outline(tmp_path / "points.geojson", shape=SHAPE)


def test_outline_outside_the_image(tmp_path):
    # Drawn on a larger image, or at another scale.
    roifile.ImagejRoi.frompoints(c_ring(cx=CX + 1000, cy=CY + 800)).tofile(tmp_path / "far.roi")
    with pytest.raises(OutlineError, match=r"far\.roi: the outline \(x 1050-1215, y 840-1060 px\) covers no pixel "
                                           r"of the 320 x 300 px image"):
        read_outline(tmp_path / "far.roi", shape=SHAPE)


def test_outline_partly_outside_is_clipped(tmp_path):
    ring = c_ring(cx=CX - 100)
    roifile.ImagejRoi.frompoints(ring).tofile(tmp_path / "edge.roi")
    mask = read_outline(tmp_path / "edge.roi", shape=SHAPE)
    assert np.array_equal(mask, reference_mask([ring]))
    assert 0 < mask.sum() < C_AREA


def test_outline_without_hilus(tmp_path):
    theta = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    disk = np.stack([CX + 80 * np.cos(theta), CY + 80 * np.sin(theta)], axis=1)
    roifile.ImagejRoi.frompoints(disk).tofile(tmp_path / "blob.roi")
    with pytest.raises(OutlineError, match=r"blob\.roi: the GCL encloses no hilus"):
        outline_frame(tmp_path / "blob.roi", shape=SHAPE, pixel_size_um=0.5)
