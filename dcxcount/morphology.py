"""DCX+ cell morphology: processes traced from the DCX channel, features and stages A-F.

Processes are ridges of the DCX signal (Sato tubeness filter), skeletonised
together with the segmented somata. Every skeleton pixel belongs to the soma
nearest to it *along the skeleton* (multi-source Dijkstra on skan's pixel
graph), so a process that brushes a neighbour's soma stays with the soma it
grows from. Features are measured on each cell's skeleton with skan and the
layer frame, then staged by :class:`StagingRules` (Pluempe et al. 2006,
BIOLOGY.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix, csgraph
from skan.csr import skeleton_to_csgraph
from skimage import filters, measure, morphology, segmentation

from .layers import LayerFrame

__all__ = ["STAGE_GROUPS", "StagingRules", "process_features", "stage_cells"]

STAGE_GROUPS = {"A": "proliferative", "B": "proliferative", "C": "intermediate",
                "D": "intermediate", "E": "postmitotic", "F": "postmitotic"}

FEATURE_COLUMNS = ("process_length_um", "longest_path_um", "n_primary", "n_branch_points",
                   "n_branch_points_ml", "n_tips", "n_tips_ml", "max_depth", "process_angle_deg")


@dataclass(frozen=True)
class StagingRules:
    """Thresholds of the stage rules; the defaults are BIOLOGY.md's typical cut-offs.

    Attributes
    ----------
    stub_um : float
        A: longest path from the soma shorter than this.
    short_fraction : float
        B: longest path shorter than this fraction of the GCL thickness...
    radial_max_angle_deg : float
        ...or main process more than this far from the radial direction (tangential).
    ml_depth : float
        Layer depth of the GCL/ML border; processes beyond it reach the ML.
    """

    stub_um: float = 10.0
    short_fraction: float = 0.5
    radial_max_angle_deg: float = 45.0
    ml_depth: float = 1.0


def process_features(dcx: np.ndarray, somata: np.ndarray, frame: LayerFrame, *,
                     ridge_sigma_um: float = 1.0, ridge_low_sd: float = 3.0, ridge_high_sd: float = 6.0,
                     min_process_area_um2: float = 4.0, soma_reach_um: float = 1.5) -> pd.DataFrame:
    """Trace the processes of every DCX soma and measure them.

    Parameters
    ----------
    dcx : (Y, X) array
        DCX channel.
    somata : (Y, X) int array
        Segmented DCX somata.
    frame : LayerFrame
        The section's layer frame (depth and radial direction).
    ridge_sigma_um : float
        Scale of the tubeness filter: about half a dendrite's width.
    ridge_low_sd, ridge_high_sd : float
        Hysteresis thresholds of the ridge response, in robust standard
        deviations above its median, so they adapt to each section's noise.
    min_process_area_um2 : float
        Smaller isolated ridge fragments are noise.
    soma_reach_um : float
        Processes starting this close to a soma's edge belong to it.

    Returns
    -------
    pandas.DataFrame
        Indexed by soma label; columns ``FEATURE_COLUMNS``. Lengths in um;
        ``max_depth`` is the deepest layer depth of soma or processes;
        ``process_angle_deg`` the angle (0-90) between the line from soma to the
        farthest process point and the local radial direction.
    """
    px = frame.pixel_size_um
    image = np.asarray(dcx, np.float32)
    ridges = filters.sato(image, sigmas=[ridge_sigma_um / px], black_ridges=False)
    # Noise statistics from imaged pixels only: zero-padded mosaic borders or
    # masked background would otherwise collapse the spread to 0.
    flat = ndi.maximum_filter(image, 3) == ndi.minimum_filter(image, 3)
    imaged = ridges[~flat] if (~flat).any() else ridges.ravel()
    median = np.median(imaged)
    spread = 1.4826 * np.median(np.abs(imaged - median)) + 1e-12
    # Hysteresis keeps a faint stretch of dendrite when it continues a clear one.
    processes = filters.apply_hysteresis_threshold(ridges, median + ridge_low_sd * spread,
                                                   median + ridge_high_sd * spread)
    processes = morphology.remove_small_objects(processes, max_size=int(min_process_area_um2 / px**2))
    # The tubeness response dips where a thin process meets its bright soma;
    # a slightly grown soma bridges that gap.
    grown = segmentation.expand_labels(somata, distance=soma_reach_um / px)
    skeleton = morphology.skeletonize(processes | (grown > 0))

    graph, coords = skeleton_to_csgraph(skeleton, spacing=px)
    coords = np.stack(coords, axis=1).astype(int)
    node_soma = grown[coords[:, 0], coords[:, 1]]
    sources = np.flatnonzero(node_soma > 0)
    labels = np.unique(somata[somata > 0])
    features = pd.DataFrame(0.0, index=pd.Index(labels, name="cell_id"), columns=list(FEATURE_COLUMNS))
    if len(labels) == 0:
        return features
    dy, dx = frame.radial_direction()
    centroids = {p.label: p.centroid for p in measure.regionprops(somata)}
    for label, (cy, cx) in centroids.items():
        features.loc[label, "max_depth"] = frame.depth[int(round(cy)), int(round(cx))]
    if len(sources) == 0:
        return features

    distance, _, nearest = csgraph.dijkstra(graph, directed=False, indices=sources,
                                            min_only=True, return_predecessors=True)
    owner = np.where(np.isfinite(distance), node_soma[np.maximum(nearest, 0)], 0)
    owner[nearest < 0] = 0
    outside = (node_soma == 0) & (owner > 0)
    rows, cols = graph.nonzero()
    upper = rows < cols
    rows, cols, weights = rows[upper], cols[upper], np.asarray(graph[rows[upper], cols[upper]]).ravel()
    degree = np.bincount(np.concatenate([rows, cols]), minlength=len(coords))

    for label in labels:
        mine = outside & (owner == label)
        if not mine.any():
            continue
        nodes = np.flatnonzero(mine)
        node_depth = frame.depth[coords[nodes, 0], coords[nodes, 1]]
        inside_edges = mine[rows] & mine[cols]
        touching = (mine[rows] | mine[cols]) & (owner[rows] == label) & (owner[cols] == label)
        n_primary, _ = csgraph.connected_components(
            _subgraph(rows[inside_edges], cols[inside_edges], nodes), directed=False)
        tips = nodes[degree[nodes] == 1]
        junction_mask = np.zeros(skeleton.shape, bool)
        junctions = nodes[degree[nodes] >= 3]
        junction_mask[coords[junctions, 0], coords[junctions, 1]] = True
        junction_labels, n_junctions = ndi.label(junction_mask, structure=np.ones((3, 3)))
        ml_junctions = np.unique(junction_labels[junction_mask & (frame.depth > 1.0)])
        far = nodes[np.argmax(distance[nodes])]
        cy, cx = centroids[label]
        vy, vx = coords[far, 0] - cy, coords[far, 1] - cx
        ry, rx = dy[int(round(cy)), int(round(cx))], dx[int(round(cy)), int(round(cx))]
        cosine = abs(vy * ry + vx * rx) / (np.hypot(vy, vx) + 1e-12)
        features.loc[label, list(FEATURE_COLUMNS)] = [
            float(weights[touching].sum()),
            float(distance[nodes].max()),
            n_primary,
            n_junctions,
            len(ml_junctions[ml_junctions > 0]),
            len(tips),
            int((frame.depth[coords[tips, 0], coords[tips, 1]] > 1.0).sum()),
            max(features.loc[label, "max_depth"], float(node_depth.max())),
            float(np.degrees(np.arccos(np.clip(cosine, 0, 1)))),
        ]
    return features


def _subgraph(rows: np.ndarray, cols: np.ndarray, nodes: np.ndarray) -> coo_matrix:
    """The graph of the edges (rows, cols) renumbered onto ``nodes`` (sorted)."""
    r, c = np.searchsorted(nodes, rows), np.searchsorted(nodes, cols)
    return coo_matrix((np.ones(len(r)), (r, c)), shape=(len(nodes), len(nodes)))


def stage_cells(features: pd.DataFrame, *, gcl_thickness_um: float,
                rules: StagingRules = StagingRules()) -> pd.DataFrame:
    """Stage A-F and stage group for each cell from its process features."""
    length = features["longest_path_um"]
    reaches_ml = features["max_depth"] > rules.ml_depth
    branches_ml = features["n_branch_points_ml"]
    tangential = features["process_angle_deg"] > rules.radial_max_angle_deg
    short = length < rules.short_fraction * gcl_thickness_um
    stage = np.select(
        [length < rules.stub_um,
         reaches_ml & ((branches_ml >= 2) | (features["n_tips_ml"] >= 3)),
         reaches_ml & (branches_ml == 1),
         reaches_ml,
         short | tangential],
        ["A", "F", "E", "D", "B"], default="C")
    out = pd.DataFrame({"stage": stage}, index=features.index)
    out["stage_group"] = out["stage"].map(STAGE_GROUPS)
    return out
