"""Measures of each DCX+ cell's traced processes: length, branching, depth, direction, ownership doubt.

:func:`measure_processes` turns a :class:`~dcxcount.tracing.Tracing` into the
feature table the stage rules (:mod:`dcxcount.staging`) read;
:func:`process_features` traces and measures in one call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from .gcl import LayerFrame
from .tracing import Ownership, Tracing, TracingSettings, trace_processes, walk_ownership

__all__ = ["FEATURE_COLUMNS", "measure_processes", "process_features"]

FEATURE_COLUMNS = ("process_length_um", "longest_path_um", "n_primary", "n_branch_points",
                   "n_branch_points_ml", "n_tips", "n_tips_ml", "max_depth", "process_angle_deg",
                   "process_shared_um", "somata_crossed")


def measure_processes(tracing: Tracing, *, frame: LayerFrame, ml_depth: float) -> pd.DataFrame:
    """Measure every cell's traced processes.

    Parameters
    ----------
    tracing : Tracing
        From :func:`dcxcount.tracing.trace_processes`.
    frame : LayerFrame
        The section's layer frame (depth and radial direction).
    ml_depth : float
        Layer depth beyond which branch points and tips count as in the ML: the
        stage rules' ``StagingRules.ml_depth``. Recorded in ``attrs["ml_depth"]``.

    Returns
    -------
    features : pandas.DataFrame
        Indexed by soma label; columns ``FEATURE_COLUMNS``. Lengths in um along
        the skeleton, from the soma's edge: ``process_length_um`` all of the
        cell's processes, ``longest_path_um`` to its farthest point; ``n_primary``
        the processes leaving the soma; ``n_branch_points`` and ``n_tips`` after
        spur pruning, ``*_ml`` those beyond ``ml_depth``; ``max_depth`` the deepest
        layer depth of soma centre or processes; ``process_angle_deg`` the angle
        (0-90) between the line from the soma centre to the farthest process point
        and the local radial direction. Two measures of how much the ownership of
        the processes is in doubt, not used by the stage rules:
        ``process_shared_um``, the length of the cell's processes that another
        cell's trace also holds (fused or merging processes, shared crossings of
        a soma), and ``somata_crossed``, how often its processes run across another
        soma (a root hidden under a touching neighbour counts too).
    """
    labels, centroids, graph = tracing.labels, tracing.centroids, tracing.graph
    features = pd.DataFrame(0.0, index=pd.Index(labels, name="cell_id"), columns=list(FEATURE_COLUMNS))
    features.attrs["ml_depth"] = ml_depth
    if len(labels) == 0:
        return features
    soma_depth = frame.depth[tuple(np.round(centroids).astype(int).T)]
    features["max_depth"] = soma_depth
    dy, dx = frame.radial_direction()
    claims = np.bincount(np.concatenate([trace.nodes for trace in tracing.traces]).astype(int),
                         minlength=graph.n_nodes)
    for k, (trace, cell) in enumerate(zip(tracing.traces, tracing.cells)):
        if cell is None:
            continue
        local, sub, along, distance = cell.nodes, cell.adjacency, cell.along, cell.distance_um
        rows, cols = sparse.triu(sub).nonzero()
        degree = np.diff(sub.indptr)
        node_depth = frame.depth[tuple(graph.coords[local[1:]].astype(int).T)]
        tips = np.flatnonzero(degree[1:] == 1)
        # A fork in a 1 px skeleton is often a cluster of 2-3 adjacent degree-3 pixels.
        junction = np.concatenate([[False], degree[1:] >= 3])
        both = junction[rows] & junction[cols]
        _, cluster = csgraph.connected_components(
            sparse.coo_matrix((np.ones(both.sum()), (rows[both], cols[both])), shape=sub.shape), directed=False)
        junction_clusters = np.unique(cluster[junction])
        deepest = pd.Series(np.concatenate([[-np.inf], node_depth])[junction]).groupby(cluster[junction]).max()
        n_primary, _ = csgraph.connected_components(sub[1:][:, 1:], directed=False)
        far = local[np.argmax(distance)]
        cy, cx = centroids[k]
        vy, vx = graph.coords[far] - centroids[k]
        ry, rx = dy[int(round(cy)), int(round(cx))], dx[int(round(cy)), int(round(cx))]
        cosine = abs(vy * ry + vx * rx) / (np.hypot(vy, vx) + 1e-12)
        length = np.asarray(sub[rows, cols]).ravel()
        # Along the skeleton only: a join across another soma is no stretch two cells hold.
        a, b = sparse.triu(along).nonzero()
        shared = claims[local] >= 2
        features.iloc[k] = [
            float(length.sum()),
            float(distance.max()),
            n_primary,
            len(junction_clusters),
            int((deepest > ml_depth).sum()),
            len(tips),
            int((node_depth[tips] > ml_depth).sum()),
            max(float(soma_depth[k]), float(node_depth.max())),
            float(np.degrees(np.arccos(np.clip(cosine, 0, 1)))),
            float(np.asarray(along[a, b]).ravel()[shared[a] & shared[b]].sum()),
            len(trace.through),
        ]
    return features


def process_features(dcx: np.ndarray, somata: np.ndarray, frame: LayerFrame, *,
                     tracing: TracingSettings = TracingSettings(), ml_depth: float = 1.0,
                     ownership: Ownership = walk_ownership) -> pd.DataFrame:
    """Trace the processes of every DCX soma and measure them.

    :func:`dcxcount.tracing.trace_processes` then :func:`measure_processes`;
    see those for the parameters.
    """
    traced = trace_processes(dcx, somata, frame, settings=tracing, ownership=ownership)
    return measure_processes(traced, frame=frame, ml_depth=ml_depth)
