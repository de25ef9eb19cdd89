"""The dentate gyrus frame: granule cell layer, its two borders and layer depth.

The granule cell layer (GCL) is where cell bodies are packed densely, so it is
found as the region where segmented nuclei (and DCX somata, which fill the
subgranular zone where NeuN+ nuclei are sparse) cover most of the tissue
(:func:`gcl_from_nuclei`). Any GCL mask, found or drawn by a person, then gives
the frame (:func:`frame_from_gcl`): the C of the GCL encloses the hilus, the
part of the GCL's convex hull that is not GCL. GCL border pixels facing the
hilus form the subgranular (SGZ) line; the others face the molecular layer
(ML). Layer depth is 0 on the SGZ line and 1 on the ML border (docs/biology.md),
from the two borders' distance transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage import measure, morphology

__all__ = ["LayerFrame", "NoGCLFoundError", "find_layer_frame", "frame_from_gcl", "gcl_from_nuclei"]


class NoGCLFoundError(ValueError):
    """No granule cell layer could be found in a section."""


@dataclass(frozen=True)
class LayerFrame:
    """A section's GCL and layer-depth map.

    Attributes
    ----------
    gcl : (Y, X) bool
        Granule cell layer mask.
    hilus : (Y, X) bool
        The region the GCL encloses.
    depth : (Y, X) float32
        0 at the hilus/GCL border, 1 at the GCL/ML border, < 0 in the hilus,
        > 1 beyond the GCL (outside the GCL, in units of the median GCL thickness).
    pixel_size_um : float
    gcl_area_mm2, sgz_length_mm, thickness_um : float
        GCL area, length of the hilus-side border and median GCL thickness.
    """

    gcl: np.ndarray
    hilus: np.ndarray
    depth: np.ndarray
    pixel_size_um: float
    gcl_area_mm2: float
    sgz_length_mm: float
    thickness_um: float

    def sample(self, x_um: np.ndarray, y_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth and in-GCL flag at points given in um from the image origin."""
        rows = np.clip(np.round(np.asarray(y_um) / self.pixel_size_um).astype(int), 0, self.gcl.shape[0] - 1)
        cols = np.clip(np.round(np.asarray(x_um) / self.pixel_size_um).astype(int), 0, self.gcl.shape[1] - 1)
        return self.depth[rows, cols], self.gcl[rows, cols]

    def radial_direction(self, *, smooth_um: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
        """Unit (dy, dx) maps of the local radial direction, the gradient of depth."""
        smooth = ndi.gaussian_filter(self.depth, smooth_um / self.pixel_size_um)
        dy, dx = np.gradient(smooth)
        norm = np.hypot(dy, dx) + 1e-12
        return dy / norm, dx / norm

    def sgz_band(self, *, hilus_side_um: float = 10.0, gcl_side_um: float = 20.0) -> np.ndarray:
        """SGZ band: from ``hilus_side_um`` into the hilus to ``gcl_side_um`` into the GCL."""
        return (self.depth >= -hilus_side_um / self.thickness_um) & (self.depth <= gcl_side_um / self.thickness_um)


def gcl_from_nuclei(nuclei: np.ndarray, *, pixel_size_um: float, somata: np.ndarray | None = None,
                    smooth_um: float = 8.0, min_nuclear_fraction: float = 0.3, min_gcl_area_mm2: float = 0.005,
                    max_hole_area_um2: float = 2000.0) -> np.ndarray:
    """Find the GCL as the region densely covered by nuclei.

    Parameters
    ----------
    nuclei : (Y, X) array
        Segmented NeuN (or DAPI) nuclei; any non-zero pixel is nucleus.
    pixel_size_um : float
    somata : (Y, X) array, optional
        Segmented DCX somata, counted as cover too: they crowd the subgranular
        zone, where NeuN+ granule nuclei are sparse, and without them the
        GCL's hilus-side border falls 3-5 um inside the layer.
    smooth_um : float
        Gaussian sigma of the coverage map; about one nucleus radius
        bridges the gaps between packed nuclei without blurring the borders.
    min_nuclear_fraction : float
        Coverage above which tissue is GCL: about half the cover inside the
        layer, where packed granule nuclei and DCX somata cover 0.5-0.7 of the
        tissue; scattered hilar and ML cells cover far less.
    min_gcl_area_mm2 : float
        Smaller dense patches are not a GCL.
    max_hole_area_um2 : float
        Holes up to this size (DCX+ somata, vessels) are filled; the hilus is not a hole.

    Returns
    -------
    (Y, X) bool
        The GCL mask.

    Raises
    ------
    NoGCLFoundError
        When no dense band of nuclei of at least ``min_gcl_area_mm2`` exists.
    """
    px_area_mm2 = (pixel_size_um / 1000.0) ** 2
    cover = nuclei > 0
    if somata is not None:
        cover |= somata > 0
    coverage = ndi.gaussian_filter(cover.astype(np.float32), smooth_um / pixel_size_um)
    components = measure.label(coverage > min_nuclear_fraction)
    if components.max() == 0:
        raise NoGCLFoundError(f"no region where nuclei cover more than {min_nuclear_fraction:.0%} of the tissue")
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes * px_area_mm2 >= min_gcl_area_mm2
    if not keep.any():
        raise NoGCLFoundError(f"the densest band of nuclei covers {sizes.max() * px_area_mm2:.4f} mm^2, "
                              f"less than min_gcl_area_mm2={min_gcl_area_mm2}")
    return morphology.remove_small_holes(keep[components], max_size=int(max_hole_area_um2 / pixel_size_um**2))


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """The pixels whose centres lie in the convex hull of a mask's pixels.

    The region :func:`skimage.morphology.convex_hull_image` finds, up to pixels
    whose centre lies on the hull's edge. That function (like
    :func:`skimage.draw.polygon`) tests every pixel against the polygon, over a
    second for a 2048^2 section; a convex region is instead one run of columns
    per row, bounded by the hull's half-planes.
    """
    rows, cols = np.nonzero(mask & ~ndi.binary_erosion(mask))  # the hull's corners lie on the outline
    # The pixels' edge midpoints, as convex_hull_image takes them.
    corners = np.concatenate([np.stack([rows + dr, cols + dc], axis=1)
                              for dr, dc in ((-0.5, 0), (0.5, 0), (0, -0.5), (0, 0.5))])
    # Inside where a * row + b * col + c <= 0 for every facet (a, b, c).
    a, b, c = ConvexHull(corners).equations.T
    r = np.arange(mask.shape[0], dtype=float)[:, None]
    with np.errstate(divide="ignore"):
        bound = -(a * r + c) / b
    first = np.max(bound, axis=1, where=b < 0, initial=-np.inf)
    last = np.min(bound, axis=1, where=b > 0, initial=np.inf)
    # Facets along a row (b = 0) bound the rows, not the columns.
    first[(r[:, 0] < corners[:, 0].min()) | (r[:, 0] > corners[:, 0].max())] = np.inf
    col = np.arange(mask.shape[1])
    return (col >= first[:, None] - 1e-9) & (col <= last[:, None] + 1e-9)


def _hilus(gcl: np.ndarray, *, min_hilus_fraction: float) -> np.ndarray:
    """The largest region the GCL encloses: its convex hull minus the GCL."""
    rest = measure.label(_convex_hull(gcl) & ~gcl)
    areas = np.bincount(rest.ravel())[1:]
    # A convex blob still leaves pixel slivers between itself and its hull;
    # a real hilus is a sizeable fraction of the GCL.
    if not len(areas) or areas.max() < min_hilus_fraction * gcl.sum():
        raise NoGCLFoundError("the GCL encloses no hilus (it is not C- or V-shaped)")
    return rest == np.argmax(areas) + 1


def _border_length_px(region: np.ndarray, along: np.ndarray, *, smooth_px: float) -> float:
    """Length (in pixels) of the outline of ``region``, smoothed, where it runs through ``along``.

    The outline is the 0.5 iso-line of the region's mask blurred by a Gaussian
    of ``smooth_px``: raggedness below that scale does not add length. The blur
    runs on a grid a quarter of its sigma coarse, which keeps the line smooth
    and costs a fraction of blurring every pixel.
    """
    step = max(1, int(smooth_px / 4))
    coarse = measure.block_reduce(region.astype(np.float32), step, np.mean)
    blurred = ndi.gaussian_filter(coarse, smooth_px / step)
    length = 0.0
    for contour in measure.find_contours(blurred, 0.5):
        points = contour * step + (step - 1) / 2  # block centres in full-size pixels
        rows, cols = np.rint(points).astype(int).T
        inside = along[np.minimum(rows, along.shape[0] - 1), np.minimum(cols, along.shape[1] - 1)]
        steps = np.hypot(*np.diff(points, axis=0).T)
        length += float(steps[inside[:-1] & inside[1:]].sum())
    return length


def frame_from_gcl(gcl: np.ndarray, *, pixel_size_um: float, min_hilus_fraction: float = 0.1,
                   sgz_smooth_um: float = 20.0) -> LayerFrame:
    """The layer frame of a GCL mask, found or drawn.

    Parameters
    ----------
    gcl : (Y, X) bool
        Granule cell layer mask.
    pixel_size_um : float
    min_hilus_fraction : float
        The region the GCL encloses must cover at least this fraction of the
        GCL's area to count as a hilus.
    sgz_smooth_um : float
        The SGZ length is measured along the hilus's outline, smoothed by a
        Gaussian of this sigma (about two nuclei), where it runs along the GCL:
        dents left by somata and bumps added by hilar cells at the border do not
        lengthen it, while the C's curvature (radius of 100 um and more) is
        kept. The hilus, not the GCL, is smoothed, as it stays wide where a
        thin GCL would blur away.

    Raises
    ------
    NoGCLFoundError
        When the GCL encloses no hilus.
    """
    gcl = np.asarray(gcl, bool)
    hilus = _hilus(gcl, min_hilus_fraction=min_hilus_fraction)
    border = gcl & ~ndi.binary_erosion(gcl, border_value=0)
    hilus_border = border & ndi.binary_dilation(hilus)
    ml_border = border & ~hilus_border
    to_hilus = ndi.distance_transform_edt(~hilus_border)
    to_ml = ndi.distance_transform_edt(~ml_border)
    # Border pixels lie half a pixel inside each border.
    thickness_px = float(np.median((to_hilus + to_ml)[gcl])) + 1.0
    depth = np.where(gcl, to_hilus / np.maximum(to_hilus + to_ml, 1e-6),
                     np.where(hilus, -to_hilus / thickness_px, 1 + to_ml / thickness_px))
    # Along the GCL (not across the C's mouth). The C's end caps also face the
    # hilus but are thinner than three quarters of the band, so they are not SGZ.
    smooth_px = sgz_smooth_um / pixel_size_um
    sgz_side = (to_hilus < smooth_px) & (to_hilus < to_ml) & (to_ml > 0.75 * thickness_px)
    sgz_px = _border_length_px(hilus, sgz_side, smooth_px=smooth_px)
    return LayerFrame(gcl=gcl, hilus=hilus, depth=depth.astype(np.float32), pixel_size_um=pixel_size_um,
                      gcl_area_mm2=float(gcl.sum() * (pixel_size_um / 1000.0) ** 2),
                      sgz_length_mm=sgz_px * pixel_size_um / 1000, thickness_um=thickness_px * pixel_size_um)


def find_layer_frame(nuclei: np.ndarray, *, pixel_size_um: float,
                     somata: np.ndarray | None = None) -> LayerFrame:
    """The GCL and layer frame from segmented nuclei and DCX somata, with default settings.

    :func:`gcl_from_nuclei`, then :func:`frame_from_gcl`; call those two to change their settings.

    Raises
    ------
    NoGCLFoundError
        When no dense band of nuclei exists or it encloses no hilus.
    """
    gcl = gcl_from_nuclei(nuclei, pixel_size_um=pixel_size_um, somata=somata)
    return frame_from_gcl(gcl, pixel_size_um=pixel_size_um)
