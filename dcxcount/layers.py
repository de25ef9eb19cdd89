"""The dentate gyrus frame: granule cell layer, its two borders and layer depth.

The granule cell layer (GCL) is where nuclei are packed densely, so it is
found as the region where segmented nuclei cover most of the tissue. The C of
the GCL encloses the hilus: the part of the GCL's convex hull that is not GCL.
GCL border pixels facing the hilus form the subgranular (SGZ) line; the others
face the molecular layer (ML). Layer depth is 0 on the SGZ line and 1 on the
ML border (BIOLOGY.md), from the two borders' distance transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import measure, morphology

__all__ = ["LayerFrame", "NoGCLFoundError", "find_layer_frame"]


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


def find_layer_frame(nuclei: np.ndarray, *, pixel_size_um: float, smooth_um: float = 8.0,
                     min_nuclear_fraction: float = 0.25, min_gcl_area_mm2: float = 0.005,
                     max_hole_area_um2: float = 2000.0, min_hilus_fraction: float = 0.1) -> LayerFrame:
    """Find the GCL and the layer frame from a label image (or mask) of nuclei.

    Parameters
    ----------
    nuclei : (Y, X) array
        Segmented NeuN (or DAPI) nuclei; any non-zero pixel is nucleus.
    pixel_size_um : float
    smooth_um : float
        Gaussian sigma of the nuclear coverage map; about one nucleus radius
        bridges the gaps between packed nuclei without blurring the borders.
    min_nuclear_fraction : float
        Coverage above which tissue is GCL. Packed granule nuclei cover 0.5-0.7
        of the GCL; scattered hilar and ML cells far less.
    min_gcl_area_mm2 : float
        Smaller dense patches are not a GCL.
    max_hole_area_um2 : float
        Holes up to this size (DCX+ somata, vessels) are filled; the hilus is not a hole.
    min_hilus_fraction : float
        The region the band encloses must cover at least this fraction of the
        band's area to count as a hilus.

    Raises
    ------
    NoGCLFoundError
        When no dense band of nuclei of at least ``min_gcl_area_mm2`` exists.
    """
    px_area_mm2 = (pixel_size_um / 1000.0) ** 2
    coverage = ndi.gaussian_filter((nuclei > 0).astype(np.float32), smooth_um / pixel_size_um)
    dense = coverage > min_nuclear_fraction
    components = measure.label(dense)
    if components.max() == 0:
        raise NoGCLFoundError(f"no region where nuclei cover more than {min_nuclear_fraction:.0%} of the tissue")
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes * px_area_mm2 >= min_gcl_area_mm2
    if not keep.any():
        raise NoGCLFoundError(f"the densest band of nuclei covers {sizes.max() * px_area_mm2:.4f} mm^2, "
                              f"less than min_gcl_area_mm2={min_gcl_area_mm2}")
    gcl = keep[components]
    gcl = morphology.remove_small_holes(gcl, max_size=int(max_hole_area_um2 / pixel_size_um**2))

    hull_rest = measure.label(morphology.convex_hull_image(gcl) & ~gcl)
    hilus_area = np.bincount(hull_rest.ravel())[1:]
    # A convex blob still leaves pixel slivers between itself and its hull;
    # a real hilus is a sizeable fraction of the GCL.
    if not len(hilus_area) or hilus_area.max() < min_hilus_fraction * gcl.sum():
        raise NoGCLFoundError("the dense band of nuclei encloses no hilus (it is not C- or V-shaped)")
    hilus = hull_rest == np.argmax(hilus_area) + 1

    border = gcl & ~ndi.binary_erosion(gcl, border_value=0)
    hilus_border = border & ndi.binary_dilation(hilus)
    ml_border = border & ~hilus_border
    to_hilus = ndi.distance_transform_edt(~hilus_border)
    to_ml = ndi.distance_transform_edt(~ml_border)
    thickness_px = float(np.median((to_hilus + to_ml)[gcl]))
    depth = np.where(gcl, to_hilus / np.maximum(to_hilus + to_ml, 1e-6),
                     np.where(hilus, -to_hilus / thickness_px, 1 + to_ml / thickness_px))
    # SGZ length = area of a thin strip along the hilus border / its width. The
    # C's end caps also face the hilus but are thinner than three quarters of the
    # band, so they are left out.
    strip_px = max(2.0, 0.1 * thickness_px)
    strip = gcl & (to_hilus < strip_px) & (to_ml > 0.75 * thickness_px)
    return LayerFrame(gcl=gcl, hilus=hilus, depth=depth.astype(np.float32), pixel_size_um=pixel_size_um,
                      gcl_area_mm2=float(gcl.sum() * px_area_mm2),
                      sgz_length_mm=float(strip.sum() / strip_px * pixel_size_um / 1000),
                      thickness_um=thickness_px * pixel_size_um)
