"""Synthetic dentate gyrus sections with exact ground truth.

A section is built the way the tissue is: a C-shaped granule cell layer (GCL)
of densely packed NeuN+ nuclei, the hilus inside the C and the molecular layer
(ML) outside it; DCX+ cells at the subgranular zone (SGZ) with processes drawn
stage by stage (Pluempe et al. 2006, stages A-F); scattered neurons and glia;
optionally a BrdU/EdU channel. The objects are painted into label images
first and the fluorescence is derived from those labels, so the truth is the
pixels: every label is exactly an object a segmenter should find, and every
number in the cells table is measured from the labels or from the process
polylines that were drawn.

The image then goes through a simple microscope: point spread function blur,
out-of-focus haze, a smooth illumination gradient, shot noise, read noise and
a camera offset, at a chosen signal-to-noise ratio.

Truth files
-----------
``write_section(section, "dir/name.ome.tif")`` writes the image as OME-TIFF and,
with ``truth=True``, a folder ``dir/name_truth/`` beside it:

``labels.tif``
    (M, Y, X) int32, one plane per marker in ``params.markers`` order (the image's
    channel order); the plane names are the OME channel names (lower-case markers).
``gcl.tif``
    (Y, X) uint8, 1 inside the GCL.
``depth.tif``
    (Y, X) layer depth (float16 on disk, read back as float32): 0 at the hilus/GCL border, 1 at the GCL/ML border.
``cells.csv``
    The cells table (see `SynthSection`).
``processes.csv``
    The DCX process polylines: ``cell_id, branch, parent, x_um, y_um``, one row per
    vertex in drawing order; ``parent`` is the branch it grows from (-1 at the soma).
``params.json``
    The `SynthParams` the section was made with.
``info.json``
    Geometry facts: SGZ length and GCL area in the field of view, the C's centre,
    orientation, span, inner radius and thickness.

Object ids are shared between markers: a physical cell has one ``cell_id`` in every
label image it appears in (its DCX soma in ``labels["dcx"]``, its nucleus in
``labels["dapi"]``, ``labels["neun"]``, ``labels["brdu"]``), so rows of the cells
table with the same ``cell_id`` are the same cell seen through different markers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree

from .appearance import Appearance, sample_params
from .vocabulary import ANALOGUES, STAGE_GROUPS, STAGES

__all__ = ["SynthParams", "SynthSection", "make_section", "write_section", "read_truth", "make_study"]

_DISPLAY_NAMES = {"dcx": "DCX", "neun": "NeuN", "dapi": "DAPI", "brdu": "BrdU", "edu": "EdU"}

# Relative chance per stage A..F; immature cells cluster, mature ones carry NeuN.
_CLUSTER_WEIGHT = np.array([3.0, 3.0, 2.0, 1.0, 0.5, 0.5])
_NEUN_WEIGHT = np.array([0.1, 0.2, 0.5, 1.0, 2.0, 3.0])

_NUCLEUS_KINDS = ("dcx", "granule", "neuron", "glia")
_DCX, _GRANULE, _NEURON, _GLIA = range(4)

_STEP_UM = 1.0  # process growth step


@dataclass(frozen=True)
class SynthParams:
    """Everything that defines a synthetic section; equal params give equal sections.

    Parameters
    ----------
    shape_px : tuple of int
        Image height and width in pixels.
    pixel_size_um : float
        Pixel size.
    markers : tuple of str
        Channel order of the image: ``"dcx"``, ``"neun"``, ``"dapi"`` and at most one
        of ``"brdu"``, ``"edu"``.
    snr : float
        Mean object signal over the background noise sd, per channel (3 hard, 15 easy).
    gcl_thickness_um : float
        Mean GCL thickness.
    gcl_radius_um : float or None
        Mean inner radius of the C; None picks one from the field of view so the C
        fits, varied by section.
    dcx_per_mm_sgz : float
        Mean DCX+ cells per mm of SGZ in the field of view (the count is Poisson).
    stage_mix : tuple of float
        Relative frequencies of stages A..F.
    dcx_neun_fraction : float
        Share of DCX cells whose nucleus is NeuN+ (mature stages are favoured).
    cluster_fraction : float
        Share of DCX cells placed in clusters of 2-4 touching somata.
    scattered_neun_per_mm2 : float
        NeuN+ neurons in the hilus and ML.
    glia_per_mm2 : float
        DAPI+NeuN- nuclei, everywhere.
    brdu_fraction_dcx : float
        Share of DCX cells that are BrdU+ (or EdU+), when the panel has an analogue.
    brdu_neun_per_mm_sgz : float
        BrdU+NeuN+DCX- granule nuclei near the SGZ, per mm of SGZ.
    brdu_glia_per_mm2 : float
        BrdU+ glia.
    background : float
        Camera offset plus tissue background, in counts.
    haze : float
        Out-of-focus haze: share of the signal re-added after a wide blur.
    gradient : float
        Amplitude of the smooth illumination gradient (fraction of the mean).
    psf_sigma_um : float
        Sigma of the Gaussian point spread function.
    read_noise : float
        Camera read noise sd, in counts.
    seed : int
        Seed of everything random in the section.
    arc_span_deg : tuple of float
        Range of the C's angular span.
    shape_variation : float
        Relative smooth variation of radius and thickness along the C.
    ml_thickness_um : float
        Molecular layer thickness; beyond it lies other tissue (glia only).
    haze_sigma_um : float
        Sigma of the haze blur.
    dcx_neuropil : float
        Diffuse DCX background in GCL and ML, relative to a DCX soma.
    granule_axes_um : tuple of float
        Granule nucleus (major min, major max, minor min, minor max) diameters.
    dcx_soma_axes_um : tuple of float
        DCX soma (major min, major max, minor min, minor max) diameters.
    neuron_diameter_um : tuple of float
        Range of scattered neuron nucleus diameters.
    glia_diameter_um : tuple of float
        Range of glial nucleus diameters.
    dcx_soma_depth : tuple of float
        Range of DCX soma centre layer depths.
    granule_spacing : float
        Minimum granule centre distance as a fraction of the mean nucleus diameter.
    appearance : Appearance
        How somata, processes, nuclei, background and camera look beyond the plain
        drawing (`dcxcount.appearance`); the default is the plain look.
    """

    shape_px: tuple[int, int] = (1024, 1024)
    pixel_size_um: float = 0.5
    markers: tuple[str, ...] = ("dcx", "neun", "dapi")
    snr: float = 8.0
    gcl_thickness_um: float = 70.0
    gcl_radius_um: float | None = None
    dcx_per_mm_sgz: float = 60.0
    stage_mix: tuple[float, ...] = (0.15, 0.2, 0.2, 0.15, 0.15, 0.15)
    dcx_neun_fraction: float = 0.2
    cluster_fraction: float = 0.3
    scattered_neun_per_mm2: float = 150.0
    glia_per_mm2: float = 400.0
    brdu_fraction_dcx: float = 0.3
    brdu_neun_per_mm_sgz: float = 20.0
    brdu_glia_per_mm2: float = 30.0
    background: float = 100.0
    haze: float = 0.3
    gradient: float = 0.3
    psf_sigma_um: float = 0.4
    read_noise: float = 3.0
    seed: int = 0
    arc_span_deg: tuple[float, float] = (200.0, 260.0)
    shape_variation: float = 0.15
    ml_thickness_um: float = 120.0
    haze_sigma_um: float = 15.0
    dcx_neuropil: float = 0.05
    granule_axes_um: tuple[float, float, float, float] = (8.0, 10.0, 6.0, 8.0)
    dcx_soma_axes_um: tuple[float, float, float, float] = (8.0, 12.0, 6.0, 9.0)
    neuron_diameter_um: tuple[float, float] = (10.0, 14.0)
    glia_diameter_um: tuple[float, float] = (5.0, 7.0)
    dcx_soma_depth: tuple[float, float] = (-0.15, 0.35)
    granule_spacing: float = 0.8
    appearance: Appearance = Appearance()

    def __post_init__(self) -> None:
        unknown = [m for m in self.markers if m not in _DISPLAY_NAMES]
        if unknown:
            raise ValueError(f"unknown markers {unknown}; known: {sorted(_DISPLAY_NAMES)}")
        if len(set(self.markers)) != len(self.markers):
            raise ValueError(f"markers repeat: {self.markers}")
        if sum(m in ANALOGUES for m in self.markers) > 1:
            raise ValueError("a panel holds at most one thymidine analogue (brdu or edu)")
        if len(self.stage_mix) != 6 or min(self.stage_mix) < 0 or sum(self.stage_mix) <= 0:
            raise ValueError("stage_mix needs 6 non-negative weights (A..F) with a positive sum")
        for name in ("dcx_neun_fraction", "cluster_fraction", "brdu_fraction_dcx"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        if min(self.shape_px) < 16 or self.pixel_size_um <= 0 or self.snr <= 0:
            raise ValueError("shape_px must be >= 16 px, pixel_size_um and snr > 0")

    @property
    def analogue(self) -> str | None:
        """The thymidine analogue marker in the panel, if any."""
        return next((m for m in self.markers if m in ANALOGUES), None)


@dataclass
class SynthSection:
    """A synthetic section and its truth.

    Attributes
    ----------
    image : numpy.ndarray or None
        (C, Y, X) uint16 (uint8 when the look's bit depth is 8), channels in ``params.markers`` order (None when read back
        without the image).
    channel_names : tuple of str
        Display names ("DCX", "NeuN", "DAPI", "BrdU", "EdU").
    pixel_size_um : float
        Pixel size.
    labels : dict of str to numpy.ndarray
        Marker -> (Y, X) int32 labels of the objects a segmenter should find: DCX
        somata (no processes) for ``"dcx"``, NeuN+ nuclei for ``"neun"``, all nuclei
        for ``"dapi"``, analogue+ nuclei for ``"brdu"``/``"edu"``.
    cells : pandas.DataFrame
        One row per object per marker: ``marker, cell_id, cell_type, x_um, y_um,
        area_um2, in_gcl, depth, stage, stage_group, process_length_um,
        longest_path_um, max_depth, n_primary, n_branch_points_ml, n_tips,
        truncated, dcx_positive, neun_positive, brdu_positive, edu_positive,
        phenotype``. ``cell_id`` is the label value (shared by one cell's rows);
        ``cell_type`` is dcx, granule, neuron or glia; ``x_um``, ``y_um``, ``area_um2``,
        ``depth`` and ``in_gcl`` are measured on the label. Stage and process columns
        are filled on ``dcx`` rows only: lengths from the soma edge along the drawn
        polylines, ``max_depth`` the deepest layer depth of soma or processes,
        branch points and tips counted on the drawn tree, ``truncated`` when the
        processes were cut at the image border (only where no spot kept them whole).
        The ``*_positive`` flags are the cell's true co-labels; ``phenotype`` spells
        the panel's markers other than dapi, alphabetical, e.g. ``"brdu+dcx-neun+"``.
    gcl_mask : numpy.ndarray
        (Y, X) bool.
    depth : numpy.ndarray
        (Y, X) float32 layer depth: < 0 hilus, 0-1 GCL, > 1 ML.
    params : SynthParams
        What the section was made with.
    processes : pandas.DataFrame
        DCX process polylines, one row per vertex: ``cell_id, branch, parent, x_um,
        y_um``; ``parent`` is -1 for a primary process.
    info : dict
        Geometry facts: ``sgz_length_um``, ``gcl_area_mm2``, ``fov_area_mm2`` and the
        C's ``centre_um``, ``orientation_deg``, ``span_deg``, ``radius_um``,
        ``thickness_um``.
    """

    image: np.ndarray | None
    channel_names: tuple[str, ...]
    pixel_size_um: float
    labels: dict[str, np.ndarray]
    cells: pd.DataFrame
    gcl_mask: np.ndarray
    depth: np.ndarray
    params: SynthParams
    processes: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Arc:
    """The C-shaped GCL in micrometres: polar frame around ``(cx, cy)``.

    Radius and thickness vary along the C as ``1 + variation * h(theta)``, where
    ``h`` is a weighted sum of the first three harmonics, so the layer is smooth,
    periodic (no seam in the depth map) and never a perfect circle.
    """

    cx: float
    cy: float
    phi0: float  # direction of the C's back; the opening faces phi0 + pi
    half_span: float
    radius: float
    thickness: float
    variation: float
    in_weights: tuple[float, float, float]
    in_phases: tuple[float, float, float]
    th_weights: tuple[float, float, float]
    th_phases: tuple[float, float, float]

    def _harmonic(self, theta, weights, phases):
        return self.variation * sum(w * np.sin((k + 1) * theta + p) for k, (w, p) in enumerate(zip(weights, phases)))

    def _harmonic_slope(self, theta: float, weights, phases) -> float:
        return self.variation * sum(
            w * (k + 1) * math.cos((k + 1) * theta + p) for k, (w, p) in enumerate(zip(weights, phases))
        )

    def borders(self, theta):
        """Inner radius and thickness at relative angle ``theta``."""
        r_in = self.radius * (1 + self._harmonic(theta, self.in_weights, self.in_phases))
        thick = self.thickness * (1 + self._harmonic(theta, self.th_weights, self.th_phases))
        return r_in, thick

    def _polar(self, x, y):
        dx, dy = np.asarray(x, float) - self.cx, np.asarray(y, float) - self.cy
        return np.hypot(dx, dy), np.arctan2(dy, dx) - self.phi0

    def depth(self, x, y) -> np.ndarray:
        """Layer depth at points (um)."""
        r, theta = self._polar(x, y)
        r_in, thick = self.borders(theta)
        return (r - r_in) / thick

    def in_gcl(self, x, y) -> np.ndarray:
        """Whether points (um) lie in the GCL: the band within the span, with round ends."""
        r, theta = self._polar(x, y)
        r_in, thick = self.borders(theta)
        d = (r - r_in) / thick
        rel = np.angle(np.exp(1j * theta))
        inside = np.abs(rel) <= self.half_span
        for end in (-self.half_span, self.half_span):
            ex, ey = self.point(end, 0.5)
            _, end_thick = self.borders(end)
            inside |= np.hypot(np.asarray(x) - ex, np.asarray(y) - ey) <= end_thick / 2
        return inside & (d >= 0) & (d <= 1)

    def point(self, theta, d):
        """Position (um) of relative angle ``theta`` at layer depth ``d``."""
        r_in, thick = self.borders(theta)
        r = r_in + np.asarray(d) * thick
        angle = np.asarray(theta) + self.phi0
        return self.cx + r * np.cos(angle), self.cy + r * np.sin(angle)

    def radial(self, x: float, y: float) -> tuple[float, float]:
        """Unit gradient of the layer depth at one point: the outward radial direction."""
        dx, dy = x - self.cx, y - self.cy
        r = max(math.hypot(dx, dy), 1e-6)
        angle = math.atan2(dy, dx)
        theta = angle - self.phi0
        r_in, thick = self.borders(theta)
        d = (r - r_in) / thick
        r_in_slope = self.radius * self._harmonic_slope(theta, self.in_weights, self.in_phases)
        thick_slope = self.thickness * self._harmonic_slope(theta, self.th_weights, self.th_phases)
        g_r = 1 / thick
        g_t = -(r_in_slope + d * thick_slope) / (thick * r)
        ca, sa = math.cos(angle), math.sin(angle)
        gx, gy = g_r * ca - g_t * sa, g_r * sa + g_t * ca
        norm = math.hypot(gx, gy)
        return gx / norm, gy / norm


def _harmonic_weights(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Falling weights keep the outline smooth; normalising bounds it by `variation`.
    weights = rng.uniform(0.3, 1.0, 3) / np.arange(1, 4)
    weights /= weights.sum()
    return tuple(weights.tolist()), tuple(rng.uniform(0, 2 * np.pi, 3).tolist())


def _make_arc(params: SynthParams, rng: np.random.Generator) -> _Arc:
    height_um, width_um = ((n - 1) * params.pixel_size_um for n in params.shape_px)
    span = math.radians(rng.uniform(*params.arc_span_deg))
    thickness = params.gcl_thickness_um
    if params.gcl_radius_um is None:
        # Leave a margin of ML around the C so most dendrites stay in view.
        fov = min(height_um, width_um)
        fit = (fov / 2 - 0.13 * fov) / (1 + params.shape_variation) - thickness
        radius = max(fit, 0.8 * thickness) * rng.uniform(0.9, 1.1)
    else:
        radius = params.gcl_radius_um
    in_w, in_p = _harmonic_weights(rng)
    th_w, th_p = _harmonic_weights(rng)
    arc = _Arc(0.0, 0.0, rng.uniform(0, 2 * np.pi), span / 2, radius, thickness,
               params.shape_variation, in_w, in_p, th_w, th_p)
    # Centre the GCL's bounding box in the field, with a little jitter; a C much larger
    # than the field is instead centred on a stretch of its band, as a zoomed-in view.
    theta = np.linspace(-span / 2, span / 2, 256)
    xs, ys = np.concatenate([arc.point(theta, 0.0), arc.point(theta, 1.0)], axis=1)
    jitter = rng.uniform(-0.04, 0.04, 2) * min(height_um, width_um)
    if xs.max() - xs.min() > 1.5 * width_um or ys.max() - ys.min() > 1.5 * height_um:
        anchor_x, anchor_y = arc.point(rng.uniform(-0.7, 0.7) * span / 2, 0.5)
    else:
        anchor_x, anchor_y = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    return dataclasses.replace(arc, cx=width_um / 2 - anchor_x + jitter[0], cy=height_um / 2 - anchor_y + jitter[1])


@dataclass
class _Track:
    """The SGZ (depth 0) inside the field of view, for sampling by arc length."""

    theta: np.ndarray  # segment start angles
    dtheta: np.ndarray
    cumulative: np.ndarray  # arc length at each segment's end
    length_um: float

    def sample(self, rng: np.random.Generator) -> float:
        s = rng.uniform(0, self.length_um)
        i = int(np.searchsorted(self.cumulative, s))
        seg = self.cumulative[i] - (self.cumulative[i - 1] if i else 0.0)
        frac = 1 - (self.cumulative[i] - s) / seg
        return float(self.theta[i] + frac * self.dtheta[i])


def _sgz_track(arc: _Arc, extent_um: tuple[float, float], margin_um: float) -> _Track:
    theta = np.linspace(-arc.half_span, arc.half_span, 4096)
    x, y = arc.point(theta, 0.0)
    inside = (x >= margin_um) & (x <= extent_um[1] - margin_um) & (y >= margin_um) & (y <= extent_um[0] - margin_um)
    valid = inside[:-1] & inside[1:]
    seg = np.hypot(np.diff(x), np.diff(y))[valid]
    return _Track(theta[:-1][valid], np.diff(theta)[valid], np.cumsum(seg), float(seg.sum()))


# --------------------------------------------------------------------------- DCX cells


@dataclass
class _Branch:
    points: np.ndarray  # (n, 2) x, y in um, starting at the soma edge or a branch point
    parent: int
    start_path_um: float  # path length from the soma edge to this branch's start


@dataclass
class _Dcx:
    x: float
    y: float
    a: float  # semi-axes (um)
    b: float
    angle: float
    stage: int
    branches: list[_Branch] = field(default_factory=list)  # parents before children
    truncated: bool = False  # processes cut at the image border


def _ellipse_radius(a: float, b: float, angle: float, direction: float) -> float:
    """Distance from an ellipse's centre to its edge along ``direction`` (radians)."""
    t = direction - angle
    return a * b / math.hypot(b * math.cos(t), a * math.sin(t))


def _walk(arc: _Arc, start: tuple[float, float], alpha: float, *, length_um: float,
          rng: np.random.Generator, stop_depth: float | None = None, wiggle_deg: float = 7.0) -> np.ndarray:
    """Grow a wiggly polyline holding angle ``alpha`` (radians) to the local radial direction.

    The heading follows the layer's curvature (a radial process stays radial, a
    tangential one runs along the SGZ); the wiggle is a correlated random walk on
    that angle. Stops after ``length_um`` or on reaching ``stop_depth``.
    """
    n_steps = max(1, math.ceil(length_um / _STEP_UM))
    kicks = rng.normal(0.0, math.radians(wiggle_deg), n_steps)
    steps = np.full(n_steps, _STEP_UM)
    steps[-1] = length_um - _STEP_UM * (n_steps - 1)  # exact total length
    x, y = start
    points = [(x, y)]
    drift = 0.0
    for kick, step in zip(kicks, steps.tolist()):
        ux, uy = arc.radial(x, y)
        drift = 0.7 * drift + kick
        c, s = math.cos(alpha + drift), math.sin(alpha + drift)
        x += step * (ux * c - uy * s)
        y += step * (ux * s + uy * c)
        points.append((x, y))
        if stop_depth is not None and float(arc.depth(x, y)) >= stop_depth:
            break
    return np.asarray(points)


def _path_length(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum())


class _TreeBuilder:
    """Grows one DCX cell's processes and remembers the tree structure."""

    def __init__(self, arc: _Arc, cell: _Dcx, rng: np.random.Generator) -> None:
        self.arc, self.cell, self.rng = arc, cell, rng

    def primary(self, alpha: float, **walk: Any) -> int:
        ux, uy = self.arc.radial(self.cell.x, self.cell.y)
        heading = math.atan2(uy, ux) + alpha
        r = _ellipse_radius(self.cell.a, self.cell.b, self.cell.angle, heading)
        start = (self.cell.x + r * math.cos(heading), self.cell.y + r * math.sin(heading))
        return self._add(_walk(self.arc, start, alpha, rng=self.rng, **walk), parent=-1)

    def extend(self, branch: int, alpha: float, **walk: Any) -> None:
        """Continue a branch without branching (its polyline grows)."""
        b = self.cell.branches[branch]
        more = _walk(self.arc, tuple(b.points[-1]), alpha, rng=self.rng, **walk)
        b.points = np.concatenate([b.points, more[1:]])

    def split(self, branch: int, alphas: Sequence[float], lengths: Sequence[float]) -> list[int]:
        """Branch at the end of ``branch`` into children at the given angles."""
        end = tuple(self.cell.branches[branch].points[-1])
        return [self._add(_walk(self.arc, end, alpha, length_um=length, rng=self.rng), parent=branch)
                for alpha, length in zip(alphas, lengths)]

    def _add(self, points: np.ndarray, parent: int) -> int:
        start = 0.0
        if parent >= 0:
            p = self.cell.branches[parent]
            start = p.start_path_um + _path_length(p.points)
        self.cell.branches.append(_Branch(points, parent, start))
        return len(self.cell.branches) - 1

    def to_ml(self, alpha: float, ml_um: float) -> int:
        """A radial primary that crosses into the ML and runs ``ml_um`` there."""
        branch = self.primary(alpha, length_um=6 * self.arc.thickness, stop_depth=1.0)
        self.extend(branch, alpha + math.radians(self.rng.uniform(-10, 10)), length_um=ml_um)
        return branch


def _fan(rng: np.random.Generator, alpha: float, low_deg: float, high_deg: float) -> list[float]:
    """Two child angles spreading to either side of ``alpha``, capped so they keep climbing."""
    spread = np.radians(rng.uniform(low_deg, high_deg, 2))
    cap = math.radians(50)
    return [float(np.clip(alpha - spread[0], -cap, cap)), float(np.clip(alpha + spread[1], -cap, cap))]


def _grow_processes(arc: _Arc, cell: _Dcx, rng: np.random.Generator) -> None:
    """Draw the processes of one cell according to its stage (A-F)."""
    tree = _TreeBuilder(arc, cell, rng)
    u = rng.uniform
    stage = STAGES[cell.stage]
    if stage == "A":
        if u() < 0.5:
            tree.primary(u(-np.pi, np.pi), length_um=u(2.0, 5.5))
    elif stage == "B":
        side = rng.choice([-1.0, 1.0])
        for k in range(1 if u() < 0.5 else 2):
            # Tangential: 55-80 deg off radial, the second process on the other side.
            tree.primary(side * (-1) ** k * math.radians(u(55, 80)), length_um=u(10, 30))
    elif stage == "C":
        tree.primary(math.radians(u(-12, 12)), length_um=6 * arc.thickness, stop_depth=u(0.5, 0.9))
    elif stage == "D":
        tree.to_ml(math.radians(u(-12, 12)), u(20, 80))
    elif stage == "E":
        alpha = math.radians(u(-12, 12))
        trunk = tree.to_ml(alpha, u(5, 25))
        tree.split(trunk, _fan(rng, alpha, 15, 35), u(15, 60, 2))
    else:
        alpha = math.radians(u(-12, 12))
        trunk = tree.to_ml(alpha, u(3, 15))
        children = tree.split(trunk, _fan(rng, alpha, 15, 35), u(8, 25, 2))
        again = u(size=2) < 0.6
        again[rng.integers(2)] = True  # F needs a second branch order in the ML
        for child, split in zip(children, again):
            if split:
                child_alpha = _branch_alpha(arc, cell.branches[child].points)
                tree.split(child, _fan(rng, child_alpha, 10, 25), u(10, 45, 2))
        if u() < 0.35:
            side = rng.choice([-1.0, 1.0])
            tree.to_ml(alpha + side * math.radians(u(20, 35)), u(10, 40))


def _branch_alpha(arc: _Arc, points: np.ndarray) -> float:
    """Angle of a branch's last step to the local radial direction."""
    (x0, y0), (x1, y1) = points[-2], points[-1]
    ux, uy = arc.radial(x1, y1)
    return math.atan2(ux * (y1 - y0) - uy * (x1 - x0), ux * (x1 - x0) + uy * (y1 - y0))


def _tree_features(arc: _Arc, cell: _Dcx, soma_depth: float) -> dict[str, float | int]:
    """Truth morphology of one cell, measured on the polylines that were drawn."""
    children = np.bincount([b.parent + 1 for b in cell.branches], minlength=len(cell.branches) + 1)[1:]
    lengths = [_path_length(b.points) for b in cell.branches]
    depths = [float(arc.depth(*b.points.T).max()) for b in cell.branches]
    # A branch point is the end of a branch that splits.
    ml_points = [b for b, n in zip(cell.branches, children) if n >= 2 and float(arc.depth(*b.points[-1])) > 1]
    return {
        "process_length_um": float(sum(lengths)),
        "longest_path_um": max((b.start_path_um + n for b, n in zip(cell.branches, lengths)), default=0.0),
        "max_depth": max([soma_depth, *depths]),
        "n_primary": sum(b.parent == -1 for b in cell.branches),
        "n_branch_points_ml": len(ml_points),
        "n_tips": int(np.sum(children == 0)),
        "truncated": cell.truncated,
    }


def _cluster_sizes(n: int, rng: np.random.Generator, largest: int = 4) -> list[int]:
    """Split ``n`` clustered cells into clusters of 2 to ``largest`` (n >= 2)."""
    sizes, left = [], n
    while left:
        size = left if left <= largest else int(rng.integers(2, largest + 1))
        if left - size == 1:
            size -= 1
        sizes.append(size)
        left -= size
    return sizes


def _new_soma(arc: _Arc, params: SynthParams, stage: int, x: float, y: float, rng: np.random.Generator) -> _Dcx:
    major_lo, major_hi, minor_lo, minor_hi = params.dcx_soma_axes_um
    a = rng.uniform(major_lo, major_hi) / 2
    b = min(rng.uniform(minor_lo, minor_hi) / 2, 0.95 * a)
    ux, uy = arc.radial(x, y)
    # Immature somata lie along the SGZ, maturing ones turn towards their radial dendrite.
    angle = math.atan2(uy, ux) + (math.pi / 2 if stage < 2 else 0.0) + rng.normal(0, math.radians(15))
    return _Dcx(x, y, a, b, angle, stage)


def _soma_inside(cell: _Dcx, extent_um: tuple[float, float], margin_um: float) -> bool:
    lo = margin_um + cell.a
    return lo <= cell.x <= extent_um[1] - lo and lo <= cell.y <= extent_um[0] - lo


def _inside(points: np.ndarray, extent_um: tuple[float, float], margin_um: float) -> np.ndarray:
    return np.all((points >= margin_um) & (points <= np.array([extent_um[1], extent_um[0]]) - margin_um), axis=1)


def _truncate(cell: _Dcx, extent_um: tuple[float, float], margin_um: float) -> None:
    """Cut the processes where they leave the image, so the truth describes what is visible."""
    kept: list[_Branch] = []
    new_index: dict[int, int] = {}
    cut: set[int] = set()
    for i, branch in enumerate(cell.branches):
        if branch.parent != -1 and (branch.parent not in new_index or branch.parent in cut):
            continue
        outside = np.flatnonzero(~_inside(branch.points, extent_um, margin_um))
        end = int(outside[0]) if outside.size else len(branch.points)
        if end < 2:
            continue
        if end < len(branch.points):
            cut.add(i)
            cell.truncated = True
        parent = new_index.get(branch.parent, -1)
        kept.append(_Branch(branch.points[:end], parent, branch.start_path_um))
        new_index[i] = len(kept) - 1
    cell.truncated |= len(kept) < len(cell.branches)
    cell.branches = kept


def _place_unit(arc: _Arc, params: SynthParams, track: _Track, stages: Sequence[int], placed: list[_Dcx],
                extent_um: tuple[float, float], rng: np.random.Generator, tries: int = 10) -> list[_Dcx]:
    """Place one single cell or one cluster of touching somata along the SGZ; [] on failure.

    Prefers a spot where every process stays in the image; when none is found (small
    fields), takes the first free spot and cuts the processes at the border.
    """
    lo, hi = params.dcx_soma_depth
    margin = 2 * params.pixel_size_um
    fallback: list[_Dcx] = []
    for _ in range(tries):
        theta = track.sample(rng)
        depth = float(np.clip(rng.normal(0.08, 0.1), lo, hi))
        x, y = (float(v) for v in arc.point(theta, depth))
        cells = [_new_soma(arc, params, stages[0], x, y, rng)]
        ux, uy = arc.radial(x, y)
        side = rng.choice([-1.0, 1.0])
        tx, ty = -uy * side, ux * side
        for stage in stages[1:]:
            prev = cells[-1]
            # Step along the SGZ, then re-space so the two somata just touch.
            guess_x = prev.x + tx * 2 * prev.a + ux * rng.normal(0, 1.5)
            guess_y = prev.y + ty * 2 * prev.a + uy * rng.normal(0, 1.5)
            nxt = _new_soma(arc, params, stage, guess_x, guess_y, rng)
            direction = math.atan2(guess_y - prev.y, guess_x - prev.x)
            gap = 0.95 * (_ellipse_radius(prev.a, prev.b, prev.angle, direction)
                          + _ellipse_radius(nxt.a, nxt.b, nxt.angle, direction))
            nxt.x, nxt.y = prev.x + gap * math.cos(direction), prev.y + gap * math.sin(direction)
            cells.append(nxt)
        if not all(_soma_inside(c, extent_um, margin) for c in cells) or any(_too_close(c, placed) for c in cells):
            continue
        for cell in cells:
            _grow_processes(arc, cell, rng)
        if all(_inside(b.points, extent_um, margin).all() for c in cells for b in c.branches):
            return cells
        fallback = fallback or cells
    for cell in fallback:
        _truncate(cell, extent_um, margin)
    return fallback


def _too_close(cell: _Dcx, placed: list[_Dcx]) -> bool:
    if not placed:
        return False
    xy = np.array([[c.x, c.y] for c in placed])
    reach = np.array([c.a for c in placed]) + cell.a + 1.0
    return bool(np.any(np.hypot(xy[:, 0] - cell.x, xy[:, 1] - cell.y) < reach))


def _place_dcx(arc: _Arc, params: SynthParams, track: _Track, extent_um: tuple[float, float],
               rng: np.random.Generator) -> list[_Dcx]:
    n = int(rng.poisson(params.dcx_per_mm_sgz * track.length_um / 1000)) if track.length_um > 0 else 0
    mix = np.asarray(params.stage_mix, float)
    stages = rng.choice(6, size=n, p=mix / mix.sum())
    n_clustered = int(round(params.cluster_fraction * n))
    units: list[list[int]] = []
    if n_clustered >= 2:
        weights = _CLUSTER_WEIGHT[stages]
        clustered = rng.choice(n, size=n_clustered, replace=False, p=weights / weights.sum())
        start = 0
        for size in _cluster_sizes(n_clustered, rng, params.appearance.cluster_max):
            units.append([int(stages[i]) for i in clustered[start:start + size]])
            start += size
        singles = np.setdiff1d(np.arange(n), clustered)
    else:
        singles = np.arange(n)
    # Clusters first: they need the most room.
    units += [[int(stages[i])] for i in rng.permutation(singles)]
    placed: list[_Dcx] = []
    for unit in units:
        placed += _place_unit(arc, params, track, unit, placed, extent_um, rng)
    return placed


# --------------------------------------------------------------------------- nuclei


def _rsa(fixed_xy: np.ndarray, fixed_r: np.ndarray, xy: np.ndarray, r: np.ndarray, *, batch: int = 512) -> np.ndarray:
    """Random sequential adsorption: accept candidates in order unless they come closer
    than ``r_i + r_j`` to an earlier accepted one or a fixed object.

    Candidates are tested in batches against a KD-tree of everything accepted so far,
    then conflicts inside a batch are resolved in order, which gives exactly the
    sequential result at vectorised speed.
    """
    accepted = np.zeros(len(xy), bool)
    acc_xy, acc_r = [fixed_xy.reshape(-1, 2)], [fixed_r.ravel()]
    reach = fixed_r.max(initial=0) + r.max(initial=0)
    for start in range(0, len(xy), batch):
        bxy, br = xy[start:start + batch], r[start:start + batch]
        ok = np.ones(len(bxy), bool)
        pts, pr = np.concatenate(acc_xy), np.concatenate(acc_r)
        reach = max(reach, pr.max(initial=0) + br.max(initial=0))
        if len(pts):
            k = min(24, len(pts))
            dist, idx = cKDTree(pts).query(bxy, k=k, distance_upper_bound=reach)
            dist, idx = dist.reshape(len(bxy), k), idx.reshape(len(bxy), k)
            limit = br[:, None] + np.append(pr, 0.0)[idx]
            ok &= ~np.any(dist < limit, axis=1)
        sub = np.flatnonzero(ok)
        pairs = cKDTree(bxy[sub]).query_pairs(2 * br.max(initial=0), output_type="ndarray")
        i, j = sub[pairs[:, 0]], sub[pairs[:, 1]]
        i, j = np.minimum(i, j), np.maximum(i, j)
        close = np.hypot(*(bxy[i] - bxy[j]).T) < br[i] + br[j]
        i, j = i[close], j[close]
        for a, b in zip(*(v[np.lexsort((j, i))] for v in (i, j))):
            if ok[a]:
                ok[b] = False
        accepted[start:start + batch] = ok
        acc_xy.append(bxy[ok])
        acc_r.append(br[ok])
    return accepted


@dataclass
class _Nuclei:
    """Ellipses in micrometres, in drawing order."""

    kind: np.ndarray
    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    angle: np.ndarray

    def take(self, index: np.ndarray) -> _Nuclei:
        return _Nuclei(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    @staticmethod
    def concat(parts: Sequence[_Nuclei]) -> _Nuclei:
        return _Nuclei(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Nuclei)))


def _new_nuclei(rng: np.random.Generator, kind: int, xy: np.ndarray, major_um: tuple[float, float],
                minor_um: tuple[float, float]) -> _Nuclei:
    n = len(xy)
    a = rng.uniform(*major_um, n) / 2
    b = np.minimum(rng.uniform(*minor_um, n) / 2, a)
    return _Nuclei(np.full(n, kind), xy[:, 0], xy[:, 1], a, b, rng.uniform(0, np.pi, n))


def _place_nuclei(arc: _Arc, params: SynthParams, depth: np.ndarray, gcl: np.ndarray, dcx: list[_Dcx],
                  rng: np.random.Generator) -> _Nuclei:
    """Scattered neurons and glia, then granule nuclei packed into the GCL around the DCX somata."""
    ps = params.pixel_size_um
    height_um, width_um = ((n - 1) * ps for n in params.shape_px)
    fov_mm2 = height_um * width_um / 1e6

    xy = rng.uniform(0, 1, (rng.poisson(params.scattered_neun_per_mm2 * fov_mm2), 2)) * [width_um, height_um]
    d = arc.depth(*xy.T)
    ml_limit = 1 + params.ml_thickness_um / params.gcl_thickness_um
    xy = xy[((d < 0) | ((d > 1) & (d <= ml_limit))) & ~arc.in_gcl(*xy.T)]  # hilus and ML
    lo, hi = params.neuron_diameter_um
    neurons = _new_nuclei(rng, _NEURON, xy, (lo, hi * 1.1), (lo * 0.85, hi))

    xy = rng.uniform(0, 1, (rng.poisson(params.glia_per_mm2 * fov_mm2), 2)) * [width_um, height_um]
    lo, hi = params.glia_diameter_um
    glia = _new_nuclei(rng, _GLIA, xy, (lo, hi * 1.15), (lo * 0.8, hi))
    scattered = _Nuclei.concat([neurons, glia])
    scattered = scattered.take(rng.permutation(len(scattered.x)))

    # Granule centres stay half a nucleus inside the band so the nuclei fill it, not overflow it.
    major_lo, major_hi, minor_lo, minor_hi = params.granule_axes_um
    mean_diam = (major_lo + major_hi + minor_lo + minor_hi) / 4
    margin = mean_diam / 2 / params.gcl_thickness_um
    where = np.flatnonzero(gcl & (depth >= margin) & (depth <= 1 - margin))
    spacing = params.granule_spacing * mean_diam / 2
    # Enough attempts to come close to the packing limit of random sequential adsorption.
    n_tries = int(15 * where.size * ps * ps / (math.pi * spacing**2))
    pick = rng.choice(where, size=n_tries) if where.size else np.zeros(0, int)
    xy = (np.column_stack([pick % params.shape_px[1], pick // params.shape_px[1]])
          + rng.uniform(-0.5, 0.5, (len(pick), 2))) * ps
    granules = _new_nuclei(rng, _GRANULE, xy, (major_lo, major_hi), (minor_lo, minor_hi))

    nuclei = _Nuclei.concat([scattered, granules])
    # Elongated nuclei keep their area: the long axis grows as the short one shrinks.
    stretch = math.sqrt(params.appearance.nucleus_elongation)
    if stretch != 1:
        neuronal = (nuclei.kind == _GRANULE) | (nuclei.kind == _NEURON)
        nuclei.a[neuronal] *= stretch
        nuclei.b[neuronal] /= stretch
    # Exclusion radius: granule pairs keep `granule_spacing` x their mean diameter apart;
    # nothing intrudes far into a DCX soma (what little does is erased later).
    exclusion = np.where(nuclei.kind == _GRANULE, params.granule_spacing / 2, 0.45) * (nuclei.a + nuclei.b)
    fixed_xy = np.array([[c.x, c.y] for c in dcx]).reshape(-1, 2)
    fixed_r = np.array([c.a + 1.0 for c in dcx])
    return nuclei.take(_rsa(fixed_xy, fixed_r, np.column_stack([nuclei.x, nuclei.y]), exclusion))


# --------------------------------------------------------------------------- drawing


def _paint(labels: np.ndarray, value: int, x_px: float, y_px: float, a_px: float, b_px: float,
           angle: float, profile: np.ndarray | None = None, level: float = 1.0,
           wobble: np.ndarray | None = None, covered: np.ndarray | None = None) -> None:
    """Paint one ellipse into a local crop of ``labels`` (later paints own the pixels).

    With ``profile``, also write a rim-bright cytoplasm signal (``level`` times
    0.5-1.0 from centre to edge) into the same pixels. ``wobble`` (3 amplitudes,
    3 phases) bends the outline by the 1st-3rd harmonics (irregular, kidney shapes).
    ``covered`` records, per pixel, the label this paint overwrote.
    """
    h, w = labels.shape
    grow = 1 + (float(np.sum(wobble[:3])) if wobble is not None else 0.0)
    reach = math.ceil(a_px * grow) + 1
    y0, y1 = max(int(y_px) - reach, 0), min(int(y_px) + reach + 1, h)
    x0, x1 = max(int(x_px) - reach, 0), min(int(x_px) + reach + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy = np.arange(y0, y1)[:, None] - y_px
    xx = np.arange(x0, x1)[None, :] - x_px
    c, s = math.cos(angle), math.sin(angle)
    u, v = (xx * c + yy * s) / a_px, (yy * c - xx * s) / b_px
    rho2 = u**2 + v**2
    if wobble is not None:
        phi = np.arctan2(v, u)
        rho2 = rho2 / (1 + sum(wobble[k] * np.cos((k + 1) * phi + wobble[3 + k]) for k in range(3))) ** 2
    inside = rho2 <= 1
    if covered is not None:
        below = labels[y0:y1, x0:x1]
        covered[y0:y1, x0:x1][inside & (below > 0)] = below[inside & (below > 0)]
    labels[y0:y1, x0:x1][inside] = value
    if profile is not None:
        profile[y0:y1, x0:x1][inside] = level * (0.5 + 0.5 * rho2[inside])


def _splat(shape: tuple[int, int], xy_px: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bilinear accumulation of weighted points into an image (anti-aliased lines)."""
    h, w = shape
    x0, y0 = np.floor(xy_px[:, 0]).astype(int), np.floor(xy_px[:, 1]).astype(int)
    fx, fy = xy_px[:, 0] - x0, xy_px[:, 1] - y0
    out = np.zeros(h * w)
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out += np.bincount(yi[valid] * w + xi[valid], weights=(weights * wt)[valid], minlength=h * w)
    return out.reshape(shape)


def _draw_processes(shape: tuple[int, int], cells: list[_Dcx], levels: np.ndarray, ps: float, psf_sigma_um: float,
                    rng: np.random.Generator, look: Appearance, look_rng: np.random.Generator) -> np.ndarray:
    """DCX processes: primaries ~2 um thick, higher orders thinner, 30-70% of the soma's
    brightness once imaged, fading along their path; with the look's varicosities,
    growth cones and stretches out of the focal plane."""
    step_px = 0.25
    out = np.zeros(shape)
    blobs: list[tuple[float, float, float]] = []  # x_px, y_px, peak of swellings and growth cones
    has_child = {(id(cell), b.parent) for cell in cells for b in cell.branches}
    for primary, sigma_um in ((True, 0.6), (False, look.branch_width_um)):
        sigma_px = sigma_um / ps
        imaged_sigma_px = math.hypot(sigma_um, psf_sigma_um) / ps
        xy, weights = [], []
        for cell, level in zip(cells, levels):
            for index, branch in enumerate(cell.branches):
                if (branch.parent == -1) != primary:
                    continue
                seg = np.hypot(*np.diff(branch.points, axis=0).T)
                cum = np.concatenate([[0.0], np.cumsum(seg)])
                s = np.arange(0, cum[-1], step_px * ps)
                line = np.column_stack([np.interp(s, cum, branch.points[:, 0]),
                                        np.interp(s, cum, branch.points[:, 1])]) / ps
                xy.append(line)
                taper = 1 - look.process_taper * np.minimum((branch.start_path_um + s) / 150, 1)
                if look.focal_dropout > 0:
                    taper = taper * _in_focus(s.size, step_px * ps, look.focal_dropout, look_rng)
                # A line of this linear density peaks at `peak` after thickness and PSF blur.
                peak = level * rng.uniform(0.3, 0.7) * (1.0 if primary else look.branch_brightness)
                weights.append(peak * math.sqrt(2 * math.pi) * imaged_sigma_px * step_px * taper)
                if s.size:
                    n_swell = look_rng.poisson(look.varicosities_per_100um * cum[-1] / 100)
                    at = look_rng.integers(0, s.size, n_swell)
                    blobs += [(*line[k], peak * taper[k] * look_rng.uniform(1.2, 2.5)) for k in at]
                    if (id(cell), index) not in has_child and look_rng.random() < look.growth_cone_prob:
                        blobs.append((*line[-1], peak * taper[-1] * look_rng.uniform(1.5, 3.0)))
        if xy:
            out += ndimage.gaussian_filter(_splat(shape, np.concatenate(xy), np.concatenate(weights)), sigma_px)
    if blobs:
        blob_sigma_um = 0.9
        imaged = math.hypot(blob_sigma_um, psf_sigma_um) / ps
        points = np.array(blobs)
        out += ndimage.gaussian_filter(_splat(shape, points[:, :2], points[:, 2] * 2 * math.pi * imaged**2),
                                       blob_sigma_um / ps)
    return out


def _in_focus(n: int, step_um: float, share: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness along a process that leaves the focal plane on ``share`` of its length."""
    if n < 2:
        return np.ones(n)
    wander = ndimage.gaussian_filter1d(rng.standard_normal(n), 8.0 / step_um, mode="nearest")
    wander = (wander - wander.mean()) / (wander.std() or 1.0)
    cut = np.quantile(wander, share)
    return 0.12 + 0.88 / (1 + np.exp(-(wander - cut) / 0.15))


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise, zero mean, unit sd; wide filters run on a coarse grid."""
    factor = max(1, int(sigma_px // 3))
    coarse = (-(-shape[0] // factor), -(-shape[1] // factor))
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma_px / factor, mode="wrap")
    if factor > 1:
        noise = ndimage.zoom(noise, factor, order=1, grid_mode=True, mode="grid-wrap")[: shape[0], : shape[1]]
    return (noise - noise.mean()) / (noise.std() or 1.0)


def _wide_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with a wide sigma, done on a block-averaged image for speed."""
    factor = max(1, int(sigma_px // 3))
    h, w = image.shape
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.pad(image, ((0, hp - h), (0, wp - w)), mode="edge")
    small = padded.reshape(hp // factor, factor, wp // factor, factor).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / factor, mode="nearest")
    return ndimage.zoom(small, factor, order=1, grid_mode=True, mode="nearest")[:h, :w]


def _illumination(shape: tuple[int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """1 +- amplitude: a tilted plane plus an off-centre vignette, shared by all channels."""
    h, w = shape
    yy = np.linspace(-1, 1, h)[:, None]
    xx = np.linspace(-1, 1, w)[None, :]
    tilt = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(-0.5, 0.5, 2)
    shade = np.cos(tilt) * xx + np.sin(tilt) * yy - 0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2)
    shade -= shade.mean()
    return (1 + amplitude * shade / np.abs(shade).max()).astype(np.float32)


def _acquire(clean: np.ndarray, objects: np.ndarray, illumination: np.ndarray, params: SynthParams,
             rng: np.random.Generator, tissue: np.ndarray | None = None) -> np.ndarray:
    """Clean signal -> microscope -> camera counts at the requested SNR and bit depth.

    Counts = offset + gain * Poisson(photons) + read noise. Half of ``background``
    is camera offset, half tissue photons (scaled by ``tissue``: none in holes,
    double in folds); a per-channel gain gives each channel its own brightness
    without changing its SNR. The export then maps the counts to the look's bit
    depth (uint8 for 8 bits, else uint16) and clips its saturated share.
    """
    ps = params.pixel_size_um
    signal = ndimage.gaussian_filter(clean, params.psf_sigma_um / ps)
    if params.haze > 0:
        signal += params.haze * _wide_blur(clean, params.haze_sigma_um / ps)
    signal *= illumination
    gain = rng.uniform(1.0, 3.0)
    offset = params.background / 2
    tissue_photons = params.background / 2 / gain
    noise_sd = math.sqrt(gain * gain * tissue_photons + params.read_noise**2)
    mean_object = float(signal[objects].mean()) if objects.any() else 1.0
    photons_per_unit = params.snr * noise_sd / (gain * mean_object)
    background = tissue_photons * illumination
    if tissue is not None:
        background = background * np.where(tissue == 0, 0.15, tissue)  # mounting medium glows little
    photons = rng.poisson(np.maximum(signal * photons_per_unit, 0) + background)
    counts = offset + gain * photons + rng.normal(0.0, params.read_noise, clean.shape)
    return _export(counts, objects, params.appearance)


def _export(counts: np.ndarray, objects: np.ndarray, look: Appearance) -> np.ndarray:
    """Camera counts as a file stores them: scaled to the bit depth, the top share clipped."""
    top = 2**look.bit_depth - 1
    if look.saturation > 0 and objects.any():
        full = float(np.quantile(counts[objects], 1 - look.saturation))
    else:
        full = float(counts.max()) if look.bit_depth < 16 else 65535.0
    if look.bit_depth < 16:
        counts = counts * (top / max(full, 1.0))  # the export stretches the range to the bit depth
    else:
        counts = np.minimum(counts, full)
    return np.clip(np.rint(counts), 0, top).astype(np.uint8 if look.bit_depth == 8 else np.uint16)


def _autofluorescence(shape: tuple[int, int], ps: float, look: Appearance, rng: np.random.Generator) -> np.ndarray:
    """Blood vessels (tube walls) and lipofuscin puncta, in units of a typical object's signal.

    The same structures glow in every channel; callers scale the map per channel.
    """
    h, w = shape
    area_mm2 = h * w * ps * ps / 1e6
    out = np.zeros(shape)
    walls, lumen = [], []
    for _ in range(rng.poisson(look.vessels_per_mm2 * area_mm2)):
        n = int(rng.uniform(60, 300))  # 1 um steps
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, math.radians(3), n))
        path = np.column_stack([np.cumsum(np.cos(heading)), np.cumsum(np.sin(heading))]) / ps
        path += rng.uniform(0, 1, 2) * [w, h]
        normal = np.column_stack([-np.sin(heading), np.cos(heading)])
        radius_px, level = rng.uniform(2.5, 6.0) / ps, rng.uniform(0.15, 0.5)
        for side in (-1, 1):
            walls.append((path + side * radius_px * normal, np.full(n, level)))
        lumen.append((path, np.full(n, 0.3 * level)))
    for parts, sigma_um in ((walls, 1.0), (lumen, 2.0)):
        if parts:
            xy = np.concatenate([p for p, _ in parts])
            line_weight = np.concatenate([v for _, v in parts]) * math.sqrt(2 * math.pi) * sigma_um / ps
            out += ndimage.gaussian_filter(_splat(shape, xy, line_weight / ps), sigma_um / ps)
    n_groups = rng.poisson(look.lipofuscin_per_mm2 * area_mm2 / 2)
    if n_groups:
        # Lipofuscin sits in aggregates of 1-3 puncta under 2 um across: far smaller than any
        # nucleus (wider clusters read as small speckled nuclei and taught the nuclear model
        # to drop small BrdU+ glia and DCX nuclei).
        centres = rng.uniform(0, 1, (n_groups, 2)) * [w, h]
        sizes = rng.integers(1, 4, n_groups)
        xy = np.repeat(centres, sizes, axis=0) + rng.normal(0, 0.4 / ps, (int(sizes.sum()), 2))
        for sigma_um, pick in ((0.3, slice(0, None, 2)), (0.5, slice(1, None, 2))):
            peak = rng.lognormal(math.log(2.0), 0.4, len(xy[pick]))
            out += ndimage.gaussian_filter(_splat(shape, xy[pick], peak * 2 * math.pi * (sigma_um / ps) ** 2),
                                           sigma_um / ps)
    return out


def _tissue_damage(shape: tuple[int, int], ps: float, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Tissue map: 1 intact, 0 where there is none (beyond an edge, in a tear or a bubble), 1.8 in a fold."""
    h, w = shape
    tissue = np.ones(shape, np.float32)
    ys, xs = np.arange(h)[:, None] * ps, np.arange(w)[None, :] * ps
    extent = np.array([w, h]) * ps
    for _ in range(rng.poisson(amount)):
        kind = rng.choice(["edge", "tear", "fold", "bubble"])
        if kind == "bubble":
            cx, cy = rng.uniform(0, 1, 2) * extent
            tissue[np.hypot(xs - cx, ys - cy) < rng.uniform(15, 60)] = 0
            continue
        angle = rng.uniform(0, 2 * np.pi)
        nx, ny = math.cos(angle), math.sin(angle)
        cx, cy = rng.uniform(0.2, 0.8, 2) * extent
        along = (xs - cx) * -ny + (ys - cy) * nx
        across = (xs - cx) * nx + (ys - cy) * ny
        across = across + rng.uniform(2, 10) * np.sin(2 * np.pi * along / rng.uniform(80, 300) + rng.uniform(0, 6.3))
        if kind == "edge":
            # Beyond a wavy cut 5-25 % of the field from its far side in that direction.
            span = abs(nx) * extent[0] + abs(ny) * extent[1]
            tissue[across > across.max() - rng.uniform(0.05, 0.25) * span] = 0
        elif kind == "tear":
            half_length = rng.uniform(50, 250)
            tissue[(np.abs(across) < rng.uniform(1.5, 6)) & (np.abs(along) < half_length)] = 0
        else:
            tissue[(np.abs(across) < rng.uniform(5, 20)) & (tissue > 0)] = 1.8
    return tissue


# --------------------------------------------------------------------------- section


def _draw_labels(dcx: list[_Dcx], nuclei: _Nuclei, params: SynthParams, rng: np.random.Generator,
                 look_rng: np.random.Generator, tissue: np.ndarray | None):
    """Label images of DCX somata and of all nuclei, with the <50%-left objects dropped.

    Returns (soma labels, soma signal, nucleus labels, the nucleus hidden under each
    nucleus pixel (None unless the look makes overlaps glow), DCX brightness per cell,
    which DCX cells are kept). DCX cells own ids 1..n (soma and nucleus alike); other nuclei
    follow in drawing order. Where ``tissue`` is 0 there is no tissue and no object.
    """
    ps = params.pixel_size_um
    shape = params.shape_px
    look = params.appearance
    soma = np.zeros(shape, np.int32)
    soma_signal = np.zeros(shape, np.float32)
    levels = rng.lognormal(0.0, look.soma_brightness_sd, len(dcx))
    # The DCX nucleus sits inside its soma, a little off centre.
    shift = rng.uniform(-0.1, 0.1, (len(dcx), 2))
    for i, (cell, level) in enumerate(zip(dcx, levels), start=1):
        _paint(soma, i, cell.x / ps, cell.y / ps, cell.a / ps, cell.b / ps, cell.angle, soma_signal, level)

    nuc = np.zeros(shape, np.int32)
    # Where nuclei overlap, widefield adds the hidden one's light to the one on top.
    hidden = np.zeros(shape, np.int32) if look.nucleus_overlap_glow else None
    first = len(dcx) + 1
    irregular = look.nucleus_irregularity > 0
    for k in range(len(nuclei.x)):
        wobble = (np.concatenate([look_rng.uniform(0, look.nucleus_irregularity, 3) / [1, 2, 3],
                                  look_rng.uniform(0, 2 * np.pi, 3)]) if irregular else None)
        _paint(nuc, first + k, nuclei.x[k] / ps, nuclei.y[k] / ps, nuclei.a[k] / ps, nuclei.b[k] / ps,
               nuclei.angle[k], wobble=wobble, covered=hidden)
    nuc[soma > 0] = 0  # the DCX soma replaces what it covers
    dcx_nuclei = [(c.x + dx * c.b, c.y + dy * c.b, 0.6 * c.a, 0.65 * c.b, c.angle) for c, (dx, dy) in zip(dcx, shift)]
    dcx_nuclei = _soma_look(soma_signal, soma, dcx, dcx_nuclei, look, ps, look_rng)
    for i, (x, y, a, b, angle) in enumerate(dcx_nuclei, start=1):
        _paint(nuc, i, x / ps, y / ps, a / ps, b / ps, angle)
    if tissue is not None:
        for image in (soma, soma_signal, nuc):
            image[tissue == 0] = 0

    full_soma = np.array([math.pi * c.a * c.b for c in dcx]) / ps**2
    full_nuc = np.concatenate([[math.pi * a * b for _, _, a, b, _ in dcx_nuclei],
                               math.pi * nuclei.a * nuclei.b]) / ps**2
    soma_left = np.bincount(soma.ravel(), minlength=len(dcx) + 1)[1:] / np.maximum(full_soma, 1e-9)
    nuc_left = np.bincount(nuc.ravel(), minlength=len(full_nuc) + 1)[1:] / full_nuc
    keep_dcx = (soma_left >= 0.5) & (nuc_left[: len(dcx)] >= 0.5)
    keep_nuc = np.concatenate([[False], keep_dcx, nuc_left[len(dcx):] >= 0.5])
    keep_soma = np.concatenate([[False], keep_dcx])
    nuc[~keep_nuc[nuc]] = 0
    soma_signal[~keep_soma[soma]] = 0
    soma[~keep_soma[soma]] = 0
    if hidden is not None:
        hidden[(nuc <= len(dcx)) | ~keep_nuc[hidden]] = 0
    return soma, soma_signal, nuc, hidden, levels, keep_dcx


def _soma_look(signal: np.ndarray, soma: np.ndarray, dcx: list[_Dcx], nuclei_um: list[tuple[float, ...]],
               look: Appearance, ps: float, rng: np.random.Generator) -> list[tuple[float, ...]]:
    """Make DCX somata cytoplasmic: a darker nucleus, crescents, teardrops, granules.

    Works on ``signal`` in place; returns the DCX nuclei, moved to one side in crescents.
    """
    if not (look.soma_nucleus_contrast or look.soma_shape_mix or look.soma_granularity) or not dcx:
        return nuclei_um
    nuclei_um = list(nuclei_um)
    shaped = rng.random(len(dcx)) < look.soma_shape_mix
    crescent = shaped & (rng.random(len(dcx)) < 0.5)
    for i, cell in enumerate(dcx):
        x, y, a, b, angle = nuclei_um[i]
        contrast = look.soma_nucleus_contrast
        if crescent[i]:
            push = rng.uniform(0, 2 * np.pi)
            x, y = x + 0.3 * cell.b * math.cos(push), y + 0.3 * cell.b * math.sin(push)
            nuclei_um[i] = (x, y, a, b, angle)
            contrast = max(contrast, 0.75)
        reach = math.ceil(cell.a / ps) + 1
        y0, x0 = max(int(cell.y / ps) - reach, 0), max(int(cell.x / ps) - reach, 0)
        crop = (slice(y0, int(cell.y / ps) + reach + 1), slice(x0, int(cell.x / ps) + reach + 1))
        inside = soma[crop] == i + 1
        if not inside.any():
            continue
        yy = (np.arange(crop[0].start, crop[0].start + inside.shape[0])[:, None]) * ps
        xx = (np.arange(crop[1].start, crop[1].start + inside.shape[1])[None, :]) * ps
        c, s = math.cos(angle), math.sin(angle)
        rho = np.sqrt((((xx - x) * c + (yy - y) * s) / a) ** 2 + (((yy - y) * c - (xx - x) * s) / b) ** 2)
        factor = 1 - contrast * np.clip((1.15 - rho) / 0.3, 0, 1)
        if shaped[i] and not crescent[i]:
            # Teardrop: brightest where the main process leaves the soma.
            root = (math.atan2(*(cell.branches[0].points[0] - [cell.x, cell.y])[::-1]) if cell.branches
                    else rng.uniform(0, 2 * np.pi))
            factor = factor * (1 + 1.2 * np.maximum(np.cos(np.arctan2(yy - cell.y, xx - cell.x) - root), 0) ** 2)
        signal[crop][inside] *= factor[inside]
    if look.soma_granularity:
        grain = np.clip(1 + look.soma_granularity * _smooth_noise(soma.shape, 0.45 / ps, rng), 0.1, None)
        signal[soma > 0] *= grain[soma > 0]
    return nuclei_um


def _choose(rng: np.random.Generator, candidates: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    n = min(n, candidates.size)
    if n == 0:
        return np.zeros(0, candidates.dtype)
    p = None if weights is None else weights / weights.sum()
    return rng.choice(candidates, size=n, replace=False, p=p)


def _centroids(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count and centroid (row, column) of labels 1..n-1 (index = label)."""
    flat = labels.ravel()
    on = np.flatnonzero(flat)
    ids = flat[on]
    count = np.bincount(ids, minlength=n).astype(float)
    rows = np.bincount(ids, weights=on // labels.shape[1], minlength=n)
    cols = np.bincount(ids, weights=on % labels.shape[1], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, rows / count, cols / count


def make_section(params: SynthParams = SynthParams()) -> SynthSection:
    """Make one synthetic DG section with its ground truth.

    Parameters
    ----------
    params : SynthParams
        Section parameters, including the seed.

    Returns
    -------
    SynthSection
        The image, its labels, cells table, GCL mask, depth map and process polylines.
    """
    rng = np.random.default_rng(params.seed)
    # The look draws from its own stream, so the plain look leaves every section as it was.
    look_rng = np.random.default_rng([params.seed, 1])
    ps = params.pixel_size_um
    h, w = params.shape_px
    extent_um = ((h - 1) * ps, (w - 1) * ps)
    arc = _make_arc(params, rng)

    # Pixel (row i, column j) is the point (x = j * ps, y = i * ps).
    ys, xs = np.arange(h)[:, None] * ps, np.arange(w)[None, :] * ps
    depth = arc.depth(xs, ys).astype(np.float32)
    gcl = arc.in_gcl(xs, ys)

    track = _sgz_track(arc, extent_um, margin_um=0.0)
    placement_track = _sgz_track(arc, extent_um, margin_um=params.dcx_soma_axes_um[1])
    dcx = _place_dcx(arc, params, placement_track, extent_um, rng) if track.length_um else []
    nuclei = _place_nuclei(arc, params, depth, gcl, dcx, rng)
    tissue = (_tissue_damage(params.shape_px, ps, params.appearance.tissue_damage, look_rng)
              if params.appearance.tissue_damage else None)
    soma, soma_signal, nuc, hidden, dcx_levels, keep_dcx = _draw_labels(dcx, nuclei, params, rng, look_rng, tissue)
    n_dcx, n_ids = len(dcx), len(dcx) + len(nuclei.x) + 1

    kind = np.concatenate([[-1], np.full(n_dcx, _DCX), nuclei.kind])
    count, rows, cols = _centroids(nuc, n_ids)
    present = count > 0
    obj_depth = arc.depth(cols * ps, rows * ps)
    colabels = _assign_colabels(params, rng, kind, present, obj_depth, np.array([c.stage for c in dcx], int),
                                keep_dcx, track.length_um, extent_um)

    kept = [c for c, k in zip(dcx, keep_dcx) if k]
    clean = _clean_signals(params, rng, look_rng, kind, nuc, hidden, soma_signal, kept, dcx_levels[keep_dcx],
                           depth, colabels, tissue)
    labels = _marker_labels(params, soma, nuc, colabels)
    illumination = _illumination(params.shape_px, params.gradient, rng)
    image = np.stack([_acquire(clean[m], labels[m] > 0, illumination, params, rng, tissue) for m in params.markers])
    if tissue is not None:
        gcl = gcl & (tissue > 0)  # no layer where there is no tissue

    cells = _cells_table(params, arc, dcx, keep_dcx, soma, kind, count, rows, cols, colabels)
    return SynthSection(
        image=image,
        channel_names=tuple(_DISPLAY_NAMES[m] for m in params.markers),
        pixel_size_um=ps,
        labels=labels,
        cells=cells,
        gcl_mask=gcl,
        depth=depth,
        params=params,
        processes=_processes_table(dcx, keep_dcx),
        info=_info(arc, track, gcl, extent_um, ps),
    )


def _info(arc: _Arc, track: _Track, gcl: np.ndarray, extent_um: tuple[float, float], ps: float) -> dict[str, Any]:
    return {
        "sgz_length_um": track.length_um,
        "gcl_area_mm2": float(gcl.sum()) * ps * ps / 1e6,
        "fov_area_mm2": extent_um[0] * extent_um[1] / 1e6,
        "centre_um": [float(arc.cx), float(arc.cy)],
        "orientation_deg": math.degrees(arc.phi0) % 360,
        "span_deg": math.degrees(2 * arc.half_span),
        "radius_um": float(arc.radius),
        "thickness_um": float(arc.thickness),
    }


def _assign_colabels(params: SynthParams, rng: np.random.Generator, kind: np.ndarray, present: np.ndarray,
                     depth: np.ndarray, stages: np.ndarray, keep_dcx: np.ndarray, sgz_um: float,
                     extent_um: tuple[float, float]) -> dict[str, np.ndarray]:
    """Per-id (index = cell id) marker membership of every nucleus and DCX cell."""
    is_dcx = (kind == _DCX) & present
    neun = ((kind == _GRANULE) | (kind == _NEURON)) & present
    dcx_ids = np.flatnonzero(is_dcx)
    kept_stages = stages[keep_dcx]
    n_neun = round(params.dcx_neun_fraction * dcx_ids.size)
    neun[_choose(rng, dcx_ids, n_neun, _NEUN_WEIGHT[kept_stages])] = True

    brdu = np.zeros(kind.size, bool)
    if params.analogue:
        brdu[_choose(rng, dcx_ids, round(params.brdu_fraction_dcx * dcx_ids.size))] = True
        # Newborn mature granule cells sit near the SGZ.
        granules = np.flatnonzero((kind == _GRANULE) & present & (depth < 1))
        n_granule = rng.poisson(params.brdu_neun_per_mm_sgz * sgz_um / 1000)
        brdu[_choose(rng, granules, n_granule, np.exp(-np.clip(depth[granules], 0, 1) / 0.25))] = True
        glia = np.flatnonzero((kind == _GLIA) & present)
        brdu[_choose(rng, glia, rng.poisson(params.brdu_glia_per_mm2 * extent_um[0] * extent_um[1] / 1e6))] = True
    return {"dcx": is_dcx, "neun": neun, "brdu": brdu, "dapi": present.copy()}


def _clean_signals(params: SynthParams, rng: np.random.Generator, look_rng: np.random.Generator, kind: np.ndarray,
                   nuc: np.ndarray, hidden: np.ndarray | None, soma_signal: np.ndarray, dcx: list[_Dcx], dcx_levels: np.ndarray,
                   depth: np.ndarray, colabels: dict[str, np.ndarray],
                   tissue: np.ndarray | None) -> dict[str, np.ndarray]:
    """Noise-free fluorescence per marker, derived from the label images, with the
    look's nucleoli, NeuN cytoplasm, autofluorescence, tissue damage and bleed-through."""
    ps = params.pixel_size_um
    shape = params.shape_px
    look = params.appearance
    n = kind.size

    def per_object(level: dict[int, tuple[float, float]], member: np.ndarray) -> np.ndarray:
        # Lognormal brightness per object around a per-kind level.
        out = np.zeros(n)
        for k, (mean, sd) in level.items():
            sel = (kind == k) & member
            out[sel] = mean * rng.lognormal(0.0, sd, sel.sum())
        return out

    def texture(sigma_um: float, amount: float) -> np.ndarray:
        return np.clip(1 + amount * _smooth_noise(shape, sigma_um / ps, rng), 0.2, None)

    dapi_level = per_object({_GRANULE: (1.0, 0.2), _DCX: (0.9, 0.2), _NEURON: (0.7, 0.2), _GLIA: (1.4, 0.2)},
                            colabels["dapi"])
    neun_level = per_object({_GRANULE: (1.0, 0.25), _NEURON: (0.8, 0.35)}, colabels["neun"])
    # NeuN in a DCX cell's nucleus is weaker than in a mature granule cell.
    dcx_neun = (kind == _DCX) & colabels["neun"]
    neun_level[dcx_neun] = rng.uniform(0.25, 0.5, dcx_neun.sum())
    brdu_level = per_object({k: (1.0, 0.35) for k in range(4)}, colabels["brdu"])

    def stain(level: np.ndarray) -> np.ndarray:
        return level[nuc] if hidden is None else level[nuc] + look.nucleus_overlap_glow * level[hidden]

    clean = {
        "dapi": stain(dapi_level) * texture(0.7, look.chromatin),  # chromatin blobs
        "neun": stain(neun_level) * texture(1.0, look.chromatin / 2),
    }
    clean["brdu"] = stain(brdu_level) * texture(0.6, look.analogue_speckle)  # speckled incorporation
    if look.nucleoli:
        # Nucleoli exclude DAPI and dilute the analogue; NeuN dims a little there.
        on = np.flatnonzero(nuc.ravel())
        mean_area = on.size / max(np.unique(nuc.ravel()[on]).size, 1)
        spots = look_rng.choice(on, size=min(on.size, look_rng.poisson(look.nucleoli * on.size / mean_area)))
        sigma_px = 0.5 / ps
        dots = ndimage.gaussian_filter(_splat(shape, np.column_stack([spots % shape[1], spots // shape[1]]),
                                              np.full(spots.size, 2 * math.pi * sigma_px**2)), sigma_px)
        dots = np.clip(dots, 0, 1)
        for marker, depth_of_dip in (("dapi", 0.75), ("brdu", 0.5), ("neun", 0.3)):
            clean[marker] = clean[marker] * (1 - depth_of_dip * dots)
    if look.neun_cytoplasm:
        rim = ndimage.grey_dilation(neun_level[nuc], size=max(3, round(3.0 / ps) | 1))
        clean["neun"] = clean["neun"] + look.neun_cytoplasm * np.where(nuc == 0, rim, 0)
    clean["edu"] = clean["brdu"]
    ml_limit = 1 + params.ml_thickness_um / params.gcl_thickness_um
    region = 1 / (1 + np.exp(-(depth + 0.2) / 0.1)) / (1 + np.exp((depth - ml_limit) / 0.2))
    neuropil = params.dcx_neuropil * np.clip(1 + 0.5 * _smooth_noise(shape, 3 / ps, rng), 0, None) * region
    clean["dcx"] = (soma_signal + neuropil
                    + _draw_processes(shape, dcx, dcx_levels, ps, params.psf_sigma_um, rng, look, look_rng))
    clean = {m: clean[m] for m in params.markers}
    if look.vessels_per_mm2 or look.lipofuscin_per_mm2:
        glow = _autofluorescence(shape, ps, look, look_rng)
        for marker in clean:
            clean[marker] = clean[marker] + look_rng.uniform(0.5, 1.5) * glow
    if tissue is not None:
        clean = {m: v * tissue for m, v in clean.items()}
    if look.bleed_through:
        # Each dye leaks into the next channel's filter.
        order = list(params.markers)
        clean = {m: clean[m] + (look.bleed_through * clean[order[i - 1]] if i else 0) for i, m in enumerate(order)}
    return {m: v.astype(np.float32) for m, v in clean.items()}


def _marker_labels(params: SynthParams, soma: np.ndarray, nuc: np.ndarray,
                   colabels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    labels = {}
    for marker in params.markers:
        if marker == "dcx":
            labels[marker] = soma
        else:
            member = colabels["brdu" if marker in ANALOGUES else marker]
            labels[marker] = np.where(member[nuc], nuc, 0).astype(np.int32)
    return labels


def _cells_table(params: SynthParams, arc: _Arc, dcx: list[_Dcx], keep_dcx: np.ndarray, soma: np.ndarray,
                 kind: np.ndarray, count: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 colabels: dict[str, np.ndarray]) -> pd.DataFrame:
    ps = params.pixel_size_um
    analogue = params.analogue
    panel = sorted(m for m in params.markers if m != "dapi")
    flags = {"dcx": colabels["dcx"], "neun": colabels["neun"], "brdu": colabels["brdu"], "edu": colabels["brdu"]}

    def rows_for(marker: str, ids: np.ndarray, area: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> pd.DataFrame:
        x, y = cx[ids] * ps, cy[ids] * ps
        table = pd.DataFrame({
            "marker": marker,
            "cell_id": ids.astype(np.int64),
            "cell_type": [_NUCLEUS_KINDS[k] for k in kind[ids]],
            "x_um": x,
            "y_um": y,
            "area_um2": area[ids] * ps * ps,
            "in_gcl": arc.in_gcl(x, y),
            "depth": arc.depth(x, y),
        })
        table["dcx_positive"] = flags["dcx"][ids]
        table["neun_positive"] = flags["neun"][ids]
        table["brdu_positive"] = flags["brdu"][ids] & (analogue == "brdu")
        table["edu_positive"] = flags["brdu"][ids] & (analogue == "edu")
        table["phenotype"] = ["".join(f"{m}{'+' if flags[m][i] else '-'}" for m in panel) for i in ids]
        return table

    tables = []
    for marker in params.markers:
        if marker == "dcx":
            s_count, s_rows, s_cols = _centroids(soma, kind.size)
            ids = np.flatnonzero(s_count > 0)
            table = rows_for(marker, ids, s_count, s_rows, s_cols)
            kept = [c for c, k in zip(dcx, keep_dcx) if k]
            features = pd.DataFrame([_tree_features(arc, c, float(d)) for c, d in zip(kept, table["depth"])])
            table["stage"] = [STAGES[c.stage] for c in kept]
            table["stage_group"] = [STAGE_GROUPS[STAGES[c.stage]] for c in kept]
            for column in features:
                table[column] = features[column].to_numpy()
        else:
            member = colabels["brdu" if marker in ANALOGUES else marker]
            table = rows_for(marker, np.flatnonzero(member), count, rows, cols)
        tables.append(table)
    return _tidy(pd.concat(tables, ignore_index=True) if tables else pd.DataFrame())


_CELL_COLUMNS = {
    "marker": "str", "cell_id": "int64", "cell_type": "str", "x_um": "float64", "y_um": "float64",
    "area_um2": "float64", "in_gcl": "bool", "depth": "float64", "stage": "str", "stage_group": "str",
    "process_length_um": "float64", "longest_path_um": "float64", "max_depth": "float64",
    "n_primary": "Int64", "n_branch_points_ml": "Int64", "n_tips": "Int64", "truncated": "boolean",
    "dcx_positive": "bool", "neun_positive": "bool", "brdu_positive": "bool", "edu_positive": "bool",
    "phenotype": "str",
}


def _tidy(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order and dtypes; stage columns empty on non-DCX rows."""
    table = table.reindex(columns=list(_CELL_COLUMNS))
    for column in ("stage", "stage_group"):
        table[column] = [v if isinstance(v, str) else "" for v in table[column]]
    return table.astype(_CELL_COLUMNS)


def _processes_table(dcx: list[_Dcx], keep_dcx: np.ndarray) -> pd.DataFrame:
    parts = []
    for cell_id, (cell, keep) in enumerate(zip(dcx, keep_dcx), start=1):
        if not keep:
            continue
        for k, branch in enumerate(cell.branches):
            parts.append(pd.DataFrame({"cell_id": cell_id, "branch": k, "parent": branch.parent,
                                       "x_um": branch.points[:, 0], "y_um": branch.points[:, 1]}))
    columns = {"cell_id": "int64", "branch": "int64", "parent": "int64", "x_um": "float64", "y_um": "float64"}
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    return pd.concat(parts, ignore_index=True).astype(columns)


# --------------------------------------------------------------------------- files


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _truth_dir(image_path: Path) -> Path:
    return image_path.parent / f"{_stem(image_path)}_truth"


def _ome_metadata(names: Sequence[str], ps: float) -> dict[str, Any]:
    return {
        "axes": "CYX",
        "Channel": {"Name": list(names)},
        "PhysicalSizeX": ps,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": ps,
        "PhysicalSizeYUnit": "µm",
    }


def _write_ome(path: Path, data: np.ndarray, names: Sequence[str], ps: float) -> None:
    # No predictor: on shot-noisy counts and on label planes it makes zlib output
    # larger (3.2 vs 3.0 MB for a 1024 x 1024 x 3 section), not smaller.
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        metadata=_ome_metadata(names, ps),
        resolution=(1e4 / ps, 1e4 / ps),
        resolutionunit="CENTIMETER",
        compression="zlib",
    )


def write_section(section: SynthSection, path: str | Path, *, truth: bool = True) -> Path:
    """Write a section as OME-TIFF and, optionally, its truth folder beside it.

    Parameters
    ----------
    section : SynthSection
        The section (its image must be present).
    path : str or Path
        Image path, e.g. ``"dir/name.ome.tif"``; the truth goes to ``dir/name_truth/``.
    truth : bool
        Also write the truth folder (layout in the module docstring).

    Returns
    -------
    Path
        The image path.
    """
    path = Path(path)
    if section.image is None:
        raise ValueError("section has no image to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_ome(path, section.image, section.channel_names, section.pixel_size_um)
    if truth:
        folder = _truth_dir(path)
        folder.mkdir(exist_ok=True)
        markers = list(section.labels)
        planes = np.stack([section.labels[m] for m in markers]).astype(np.int32)
        _write_ome(folder / "labels.tif", planes, markers, section.pixel_size_um)
        tifffile.imwrite(folder / "gcl.tif", section.gcl_mask.astype(np.uint8), compression="zlib")
        # The floating-point predictor halves the smooth depth map.
        tifffile.imwrite(folder / "depth.tif", section.depth.astype(np.float16), compression="zlib", predictor=True)
        section.cells.to_csv(folder / "cells.csv", index=False)
        section.processes.to_csv(folder / "processes.csv", index=False)
        (folder / "params.json").write_text(json.dumps(dataclasses.asdict(section.params), indent=1))
        (folder / "info.json").write_text(json.dumps(section.info, indent=1))
    return path


def _params_from_dict(values: Mapping[str, Any]) -> SynthParams:
    fields = {f.name for f in dataclasses.fields(SynthParams)}
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
    if "appearance" in params:
        params["appearance"] = Appearance(**params["appearance"])
    return SynthParams(**params)


def read_truth(path: str | Path, *, image: bool = False) -> SynthSection:
    """Read a written section's truth back.

    Parameters
    ----------
    path : str or Path
        The image path given to `write_section`; its ``*_truth`` folder is read.
    image : bool
        Also read the image; otherwise ``image`` is None.

    Returns
    -------
    SynthSection
        Labels, cells, GCL mask, depth, processes, params and info as written.
    """
    path = Path(path)
    folder = _truth_dir(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no truth folder {folder} for {path}")
    params = _params_from_dict(json.loads((folder / "params.json").read_text()))
    with tifffile.TiffFile(folder / "labels.tif") as tif:
        planes = tif.asarray().reshape(-1, *params.shape_px)
        channels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]["Channel"]
    names = [c["Name"] for c in (channels if isinstance(channels, list) else [channels])]
    cells = pd.read_csv(folder / "cells.csv", dtype={"stage": str, "stage_group": str}, keep_default_na=False,
                        na_values={c: [""] for c in _CELL_COLUMNS if c not in ("stage", "stage_group")})
    return SynthSection(
        image=tifffile.imread(path) if image else None,
        channel_names=tuple(_DISPLAY_NAMES[m] for m in params.markers),
        pixel_size_um=params.pixel_size_um,
        labels={name: plane for name, plane in zip(names, planes)},
        cells=_tidy(cells),
        gcl_mask=tifffile.imread(folder / "gcl.tif").astype(bool),
        depth=tifffile.imread(folder / "depth.tif").astype(np.float32),
        params=params,
        processes=pd.read_csv(folder / "processes.csv"),
        info=json.loads((folder / "info.json").read_text()),
    )


# --------------------------------------------------------------------------- study


def _default_effects(group: str, base: SynthParams) -> dict[str, Any]:
    """Built-in group effects by name: ketamine raises neurogenesis and maturation."""
    if group.lower() == "ketamine":
        return {
            "dcx_per_mm_sgz": base.dcx_per_mm_sgz * 1.5,
            "stage_mix": (0.1, 0.15, 0.15, 0.15, 0.2, 0.25),
            "dcx_neun_fraction": min(1.0, base.dcx_neun_fraction * 1.5),
        }
    return {}


def make_study(
    out_dir: str | Path,
    *,
    groups: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("saline", "ketamine"),
    animals_per_group: int = 3,
    sections_per_animal: int = 2,
    base: SynthParams = SynthParams(),
    seed: int = 0,
    truth: bool = True,
    families: Sequence[str] = (),
    split: str = "train",
) -> Path:
    """Write a small synthetic study: sections, their truth and a samplesheet.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into.
    groups : mapping or sequence of str
        Group name -> `SynthParams` field overrides; or just names, which take the
        built-in effects (``"ketamine"``: 1.5x DCX density, more mature stages, more
        DCX+NeuN+; any other name: none).
    animals_per_group : int
        Animals per group, named ``{group}-{k}`` (k from 1).
    sections_per_animal : int
        Sections per animal, numbered from 1.
    base : SynthParams
        Parameters shared by all sections (its seed is ignored).
    seed : int
        Seed of the study; each section's seed and each animal's own level of
        neurogenesis (lognormal, sd 0.15) derive from it.
    truth : bool
        Write each section's truth folder.
    families : sequence of str
        Appearance families whose knobs each section draws anew
        (`dcxcount.appearance.sample_params`); none by default, so every section
        has ``base``'s look.
    split : {"train", "test"}
        Whether those knobs come from their training ranges or their held-out bands.

    Returns
    -------
    Path
        The samplesheet, ``out_dir/samplesheet.csv`` (columns ``path, animal, group,
        section``; paths relative to it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(groups, Mapping):
        groups = {name: _default_effects(name, base) for name in groups}
    rows = []
    for g, (group, overrides) in enumerate(groups.items()):
        group_params = dataclasses.replace(base, **overrides)
        for k in range(1, animals_per_group + 1):
            animal = f"{group}-{k}"
            animal_rng = np.random.default_rng([seed, g, k])
            level = group_params.dcx_per_mm_sgz * animal_rng.lognormal(0.0, 0.15)
            for s in range(1, sections_per_animal + 1):
                section_seed = int(np.random.SeedSequence([seed, g, k, s]).generate_state(1)[0])
                params = dataclasses.replace(group_params, dcx_per_mm_sgz=level, seed=section_seed)
                if families:
                    params = sample_params(params, np.random.default_rng([section_seed, 2]), families=families,
                                           split=split)
                name = f"{animal}_s{s:02d}.ome.tif"
                write_section(make_section(params), out_dir / name, truth=truth)
                rows.append({"path": name, "animal": animal, "group": group, "section": s})
    sheet = out_dir / "samplesheet.csv"
    pd.DataFrame(rows, columns=["path", "animal", "group", "section"]).to_csv(sheet, index=False)
    return sheet
