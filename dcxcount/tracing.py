"""Tracing each DCX+ cell's processes in the DCX channel, and deciding which soma owns each stretch.

Tracing
    Processes are ridges of the DCX signal (Sato tubeness filter with a
    noise-adaptive hysteresis threshold, on an image whose somata are flattened
    to about the brightness of the processes), skeletonised together with
    slightly grown somata. The ridge response dips where a process forks or
    fades for a moment, which breaks the skeleton there: each free tip is joined
    by a straight line to the nearest other piece of process skeleton ahead of
    it (within ``max_gap_um`` and ``max_gap_turn_deg`` of its heading), two free
    tips facing each other across up to ``max_facing_gap_um``, and a piece that
    reaches no soma to the soma its tip points at (its root faded next to the
    bright soma). skan
    turns the skeleton into a pixel graph in which every soma is then one node,
    and the rest is cut into *branches*: runs of pixels between branch points
    (junctions), somata and tips.
Spurs
    Skeletons of noisy masks grow 1-2 px side branches. Terminal branches
    shorter than ``min_branch_um`` are pruned, repeatedly, so that a blunt tip's
    little fork goes and its stem stays, before any tip, branch point or primary
    process is counted; the root of a process at its soma is never a tip.
Ownership
    A process belongs to the soma it grows out of, not to every soma it touches,
    so each cell's processes are followed outwards from its soma rather than
    shared out by distance. A root is a branch leaving the soma pointing away from
    its centre (one running along the soma's edge is passing by); a root too
    short to have a direction of its own roots the junction it leads to. At a junction
    the walk goes on into every branch within ``max_turn_deg`` of its heading (a
    fork), but not into a branch that merely continues another one in a straight
    line (another cell's process crossing or passing), so a neighbour's process
    that brushes this one is neither taken nor taken from it. Two processes
    crossing at a shallow angle fuse into one branch between two junctions
    (shorter than ``max_fused_um``); at the far one the walk keeps its heading
    from before the fused stretch and does not take the branch that continues
    the process that joined it at the near one. Where a process
    runs into another soma it goes on across it only in a straight line to a
    branch on the far side; that branch is then the passing process's alone
    unless it leaves the soma's centre just as straight, in which case both cells
    keep it; a soma is left by the branches attached to it and by those leaving
    a junction it roots. A root hidden under a touching neighbour (outlines
    touching, or joined by a very short run of skeleton) is found the same way
    from the cell's own centre. A branch that joins two somata with no way on is
    the whole of the one walk that reached it (the other end is no root), or of
    the cell with no other process when the other has one; otherwise it is split
    at its midpoint. Stretches reached from no soma are not counted.
Ownership strategy
    The walk above is :func:`walk_ownership`. :func:`trace_processes` takes any
    callable of the same signature instead (``ownership=``), so that a
    benchmark can resolve ownership another way (e.g. with a synthetic
    section's truth) without touching this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
from skan.csr import skeleton_to_csgraph
from skimage import draw, filters, measure, morphology, segmentation

from .gcl import LayerFrame

__all__ = ["TracingSettings", "Tracing", "CellTrace", "SomaGraph", "Trace", "Ownership", "trace_processes",
           "walk_ownership"]


@dataclass(frozen=True)
class TracingSettings:
    """Every setting of the tracing (recorded in settings.json and in the resume fingerprint).

    Attributes
    ----------
        ridge_sigma_um : float
            Scale of the tubeness filter: about a dendrite's imaged half-width or more.
        ridge_low_sd, ridge_high_sd : float
            Hysteresis thresholds of the ridge response, in robust standard
            deviations above its median, so they adapt to each section's noise.
        soma_clip_percentile : float
            Somata are flattened to this percentile of the intensity outside them
            before the ridge filter, about the brightness of the processes, so that
            a soma's bright edge does not drown the root of a process leaving it.
        min_process_area_um2 : float
            Smaller isolated ridge fragments are noise.
        soma_reach_um : float
            Processes starting this close to a soma's edge touch it.
        max_gap_um, max_gap_turn_deg : float
            The tubeness response dips where a process forks or fades for a moment,
            so the skeleton breaks there; a free tip is joined to the nearest other
            piece of process skeleton at most this far ahead of it and this far off
            its heading.
        max_facing_gap_um : float
            Two free tips facing each other (each within ``max_gap_turn_deg`` of the
            line between them) are one process fading for a stretch, joined across
            a gap up to this long.
        min_branch_um : float
            Terminal branches shorter than this, from their tip to the branch point
            or soma they hang from, are skeleton spurs and are pruned.
        heading_um : float
            Stretch of skeleton over which a branch's direction is taken; junctions
            closer together than half of it are one junction.
        max_fused_um : float
            Longest stretch over which two processes crossing at a shallow angle or
            running side by side fuse into one skeleton branch (a few um of contact
            over the sine of the crossing angle).
        max_turn_deg : float
            Largest turn a process takes at a junction (a fork's branches, a bend).
        max_through_turn_deg : float
            Largest turn of a process running straight across a soma or a crossing.
        max_root_turn_deg : float
            A root points away from its soma's centre by at most this angle.
        tie_cosine : float
            How much straighter (in cosine) a process running across a soma must be
            than one growing out of that soma's centre to be the passing cell's alone.
    """

    ridge_sigma_um: float = 1.25
    ridge_low_sd: float = 2.5
    ridge_high_sd: float = 5.0
    soma_clip_percentile: float = 97.0
    min_process_area_um2: float = 4.0
    soma_reach_um: float = 1.5
    min_branch_um: float = 3.0
    max_gap_um: float = 6.0
    max_gap_turn_deg: float = 30.0
    max_facing_gap_um: float = 10.0
    heading_um: float = 8.0
    max_fused_um: float = 15.0
    max_turn_deg: float = 60.0
    max_through_turn_deg: float = 30.0
    max_root_turn_deg: float = 45.0
    tie_cosine: float = 0.05


@dataclass
class CellTrace:
    """One cell's traced processes as a graph: the soma and the process nodes its walks reached.

    Attributes
    ----------
    nodes : 1-D int array
        Node indices into the section's :class:`SomaGraph`, the soma first.
    adjacency : sparse matrix
        Edge lengths (um) among ``nodes``, with the joins the cell's processes make over other somata.
    along : sparse matrix
        The same without those joins: the skeleton itself.
    distance_um : 1-D array
        Path length from the soma's edge to each node.
    """

    nodes: np.ndarray
    adjacency: sparse.csr_matrix
    along: sparse.csr_matrix
    distance_um: np.ndarray


@dataclass
class Tracing:
    """A section's traced processes.

    Attributes
    ----------
    labels : 1-D int array
        The soma labels (``cell_id``), sorted; ``cells`` and ``centroids`` follow them.
    centroids : (N, 2) array
        Soma centroids, px (y, x).
    graph : SomaGraph
        The skeleton as a graph.
    traces : list of Trace
        What each cell's walk reached (the ownership strategy's answer).
    cells : list of CellTrace or None
        Each cell's reached process graph; None where it has no process.
    image : (Y, X) int32 array
        Each traced process pixel holds the ``cell_id`` of its cell (a pixel two
        cells share, the higher one); what the section folder saves as ``processes.tif``.
    """

    labels: np.ndarray
    centroids: np.ndarray
    graph: SomaGraph
    traces: list[Trace]
    cells: list[CellTrace | None]
    image: np.ndarray


Ownership = Callable[["SomaGraph", TracingSettings], list["Trace"]]
"""Decides which skeleton nodes each soma owns: ``ownership(graph, settings) -> traces``, one per soma."""


def walk_ownership(graph: SomaGraph, settings: TracingSettings) -> list[Trace]:
    """The documented walk (module docstring, "Ownership"): each soma's processes followed outwards."""
    return graph.trace_cells(heading_um=settings.heading_um, max_fused_um=settings.max_fused_um,
                             max_turn_deg=settings.max_turn_deg, max_through_turn_deg=settings.max_through_turn_deg,
                             max_root_turn_deg=settings.max_root_turn_deg, tie_cosine=settings.tie_cosine)


def trace_processes(dcx: np.ndarray, somata: np.ndarray, frame: LayerFrame, *,
                    settings: TracingSettings = TracingSettings(),
                    ownership: Ownership = walk_ownership) -> Tracing:
    """Trace the processes of every DCX soma.

    Parameters
    ----------
    dcx : (Y, X) array
        DCX channel.
    somata : (Y, X) int array
        DCX somata, computed or corrected; a label's value is its ``cell_id``.
    frame : LayerFrame
        The section's layer frame (its pixel size).
    settings : TracingSettings
    ownership : callable
        Who owns each stretch of skeleton (default :func:`walk_ownership`).

    Returns
    -------
    Tracing
    """
    s = settings
    px = frame.pixel_size_um
    labels = np.unique(somata[somata > 0])
    traced = np.zeros(somata.shape, np.int32)
    if len(labels) == 0:
        return Tracing(labels=labels, centroids=np.zeros((0, 2)), graph=None, traces=[], cells=[], image=traced)
    centroids = np.array([p.centroid for p in measure.regionprops(somata)])

    # The tubeness response dips where a thin process meets its bright soma;
    # a slightly grown soma bridges that gap, and somata flattened to the
    # brightness of the processes around them narrow it.
    grown = segmentation.expand_labels(somata, distance=s.soma_reach_um / px)
    image = np.asarray(dcx, np.float32)
    ceiling = np.percentile(image[grown == 0], s.soma_clip_percentile) if (grown == 0).any() else np.inf
    image = np.where(grown > 0, np.minimum(image, ceiling), image)
    processes = _ridge_mask(image, pixel_size_um=px, sigma_um=s.ridge_sigma_um,
                            low_sd=s.ridge_low_sd, high_sd=s.ridge_high_sd, min_area_um2=s.min_process_area_um2)
    skeleton = morphology.skeletonize(processes | (grown > 0))
    skeleton = _bridge_gaps(skeleton, grown > 0, pixel_size_um=px, max_gap_um=s.max_gap_um,
                            max_gap_turn_deg=s.max_gap_turn_deg, max_facing_gap_um=s.max_facing_gap_um,
                            heading_um=s.heading_um)
    graph = SomaGraph.from_skeleton(skeleton, grown, labels=labels, centroids=centroids, pixel_size_um=px)
    # The tubeness filter also answers to a soma's rim, out to about two filter
    # scales, and the skeleton of that halo sticks out of the soma like a stub.
    graph.prune_spurs(min_branch_um=s.min_branch_um, min_root_um=s.min_branch_um + 2 * s.ridge_sigma_um)
    traces = ownership(graph, s)
    cells: list[CellTrace | None] = []
    for k, trace in enumerate(traces):
        cells.append(None)
        if len(trace.nodes) == 0:
            continue
        local, sub, along = graph.cell_graph(k, trace)
        distance = csgraph.dijkstra(sub, directed=False, indices=0)
        reached = np.isfinite(distance)
        if reached.sum() < 2:
            continue
        cells[k] = CellTrace(nodes=local[reached], adjacency=sub[reached][:, reached],
                             along=along[reached][:, reached], distance_um=distance[reached])
        traced[tuple(graph.coords[local[reached][1:]].astype(int).T)] = labels[k]
    return Tracing(labels=labels, centroids=centroids, graph=graph, traces=traces, cells=cells, image=traced)


def _ridge_mask(image: np.ndarray, *, pixel_size_um: float, sigma_um: float, low_sd: float, high_sd: float,
                min_area_um2: float) -> np.ndarray:
    """Pixels on a bright tubular ridge (a process), by a noise-adaptive hysteresis threshold."""
    ridges = filters.sato(image, sigmas=[sigma_um / pixel_size_um], black_ridges=False)
    # Noise statistics from imaged pixels only: zero-padded mosaic borders or
    # masked background would otherwise collapse the spread to 0.
    flat = ndi.maximum_filter(image, 3) == ndi.minimum_filter(image, 3)
    imaged = ridges[~flat] if (~flat).any() else ridges.ravel()
    median = np.median(imaged)
    spread = 1.4826 * np.median(np.abs(imaged - median)) + 1e-12
    # Hysteresis keeps a faint stretch of dendrite when it continues a clear one.
    mask = filters.apply_hysteresis_threshold(ridges, median + low_sd * spread, median + high_sd * spread)
    return morphology.remove_small_objects(mask, max_size=int(min_area_um2 / pixel_size_um**2))


def _bridge_gaps(skeleton: np.ndarray, soma: np.ndarray, *, pixel_size_um: float, max_gap_um: float,
                 max_gap_turn_deg: float, max_facing_gap_um: float, heading_um: float) -> np.ndarray:
    """The skeleton with each free tip joined by a straight line to the nearest other
    piece of process skeleton ahead of it, within ``max_gap_um`` and ``max_gap_turn_deg``
    of the tip's heading (taken over ``heading_um``); two free tips that face each
    other within that angle are joined across up to ``max_facing_gap_um``.

    Only pieces joined to the tip's own neither along the skeleton nor through a
    soma count: one that is joined already is a bend, a loop or a neighbour's
    process, and a join would only make a short cut.
    """
    process = skeleton & ~soma
    if not process.any():
        return skeleton
    pieces, _ = ndi.label(skeleton | soma, structure=np.ones((3, 3)))
    pixel_graph, pixel_coords = skeleton_to_csgraph(process, spacing=pixel_size_um)
    coords = np.stack(pixel_coords, axis=1).astype(int)
    # A tip touching a soma is a process's root, not a free end.
    near_soma = ndi.binary_dilation(soma, structure=np.ones((3, 3)))
    tips = np.flatnonzero((np.diff(pixel_graph.indptr) == 1) & ~near_soma[tuple(coords.T)])
    if len(tips) == 0:
        return skeleton
    # Heading of each tip: from the farthest pixel of its own branch within heading_um.
    distance, _, source = csgraph.dijkstra(pixel_graph, directed=False, indices=tips, limit=heading_um,
                                           min_only=True, return_predecessors=True)
    reached = np.flatnonzero(np.isfinite(distance) & (source >= 0))
    order = np.lexsort((distance[reached], source[reached]))
    last = np.r_[source[reached][order][1:] != source[reached][order][:-1], True]
    far = dict(zip(source[reached][order][last].tolist(), reached[order][last].tolist()))
    # A tip of a piece too short to have a heading is noise more often than a process.
    tips = np.array([t for t in tips.tolist() if distance[far.get(t, t)] >= 0.5 * heading_um], int)
    if len(tips) == 0:
        return skeleton
    heading = np.array([_unit((coords[t] - coords[far[t]]).astype(float)) for t in tips.tolist()])
    piece = pieces[tuple(coords[tips].T)]
    cos_max = np.cos(np.radians(max_gap_turn_deg))
    out = skeleton.copy()

    # A process ending at a soma more often ends there, or runs under it, than has
    # its root there (a faint root is bridged by soma_reach_um), so somata are
    # targets only of pieces that reach no soma at all: their root faded where
    # the ridge filter meets a bright soma.
    targets = np.argwhere(process)
    rim = np.argwhere(soma & ~ndi.binary_erosion(soma))
    rooted = np.zeros(pieces.max() + 1, bool)
    rooted[pieces[soma]] = True
    tree, rim_tree = cKDTree(targets), cKDTree(rim) if len(rim) else None
    reach_px = max_gap_um / pixel_size_um
    for tip, direction, own in zip(tips.tolist(), heading, piece.tolist()):
        near = np.asarray(tree.query_ball_point(coords[tip], reach_px), int)
        candidates = targets[near[pieces[tuple(targets[near].T)] != own]]
        if rim_tree is not None and not rooted[own]:
            candidates = np.concatenate([candidates, rim[rim_tree.query_ball_point(coords[tip], reach_px)]])
        offset = candidates - coords[tip]
        length = np.linalg.norm(offset, axis=1)
        ahead = offset @ direction > cos_max * length
        if ahead.any():
            goal = candidates[ahead][np.argmin(length[ahead])]
            out[draw.line(*coords[tip], *goal)] = True

    # A process fading for a stretch leaves two free tips facing each other.
    for i, j in cKDTree(coords[tips]).query_pairs(max_facing_gap_um / pixel_size_um, output_type="ndarray"):
        line = _unit((coords[tips[j]] - coords[tips[i]]).astype(float))
        if piece[i] != piece[j] and heading[i] @ line > cos_max and -(heading[j] @ line) > cos_max:
            out[draw.line(*coords[tips[i]], *coords[tips[j]])] = True
    return morphology.skeletonize(out)


class SomaGraph:
    """The skeleton as a graph: process pixels are nodes ``0 .. n_process - 1``; soma
    ``k`` (of the sorted labels) is the single node ``n_process + k``, placed at its
    centroid. Edges are stored once each, ``rows < cols``, with their length in um,
    so an edge to a soma always has the soma in ``cols``. ``touching`` lists the
    pairs of somata whose grown outlines touch, both ways round; ``soma_radius``
    is each soma's equivalent radius in px.
    """

    def __init__(self, coords: np.ndarray, n_process: int, edges: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                 touching: np.ndarray, soma_radius: np.ndarray, pixel_size_um: float) -> None:
        self.coords, self.n_process, self.pixel_size_um = coords, n_process, pixel_size_um
        self.rows, self.cols, self.weights = edges
        self.touching, self.soma_radius = touching, soma_radius
        self._adjacency: sparse.csr_matrix | None = None

    @classmethod
    def from_skeleton(cls, skeleton: np.ndarray, grown: np.ndarray, *, labels: np.ndarray,
                      centroids: np.ndarray, pixel_size_um: float) -> SomaGraph:
        """Build the graph; ``grown`` labels the skeleton pixels that are soma."""
        soma_radius = np.sqrt(np.bincount(np.searchsorted(labels, grown[grown > 0]), minlength=len(labels)) / np.pi)
        pairs = np.concatenate([np.stack([a[(a > 0) & (b > 0) & (a != b)], b[(a > 0) & (b > 0) & (a != b)]])
                                for a, b in ((grown[:, :-1], grown[:, 1:]), (grown[:-1], grown[1:]))], axis=1)
        pairs = np.searchsorted(labels, pairs)
        touching = np.unique(np.concatenate([pairs, pairs[::-1]], axis=1), axis=1)
        somata = dict(touching=touching, soma_radius=soma_radius, pixel_size_um=pixel_size_um)
        if not skeleton.any():
            return cls(centroids.astype(float), 0, (np.zeros(0, int), np.zeros(0, int), np.zeros(0)), **somata)

        pixel_graph, pixel_coords = skeleton_to_csgraph(skeleton, spacing=pixel_size_um)
        pixel_coords = np.stack(pixel_coords, axis=1).astype(int)
        upper = sparse.triu(pixel_graph).tocoo()
        r, c, w = upper.row, upper.col, upper.data
        (ry, rx), (cy, cx) = pixel_coords[r].T, pixel_coords[c].T
        # skan links all 8 neighbours, so a staircase corner makes a triangle and
        # a false degree-3 pixel; drop the diagonal where an L-path exists.
        diagonal = (ry != cy) & (rx != cx)
        keep = ~(diagonal & (skeleton[ry, cx] | skeleton[cy, rx]))
        r, c, w = r[keep], c[keep], w[keep]

        soma_label = grown[tuple(pixel_coords.T)]
        is_process = soma_label == 0
        n_process = int(is_process.sum())
        node = np.where(is_process, np.cumsum(is_process) - 1, n_process + np.searchsorted(labels, soma_label))
        u, v = node[r], node[c]
        u, v = np.minimum(u, v), np.maximum(u, v)
        # The skeleton inside a soma is no process, nor is a link between two touching somata.
        keep = (u != v) & (u < n_process)
        u, v, w = u[keep], v[keep], w[keep]
        # Several soma pixels can touch one process pixel: keep the shortest link.
        order = np.lexsort((w, v, u))
        u, v, w = u[order], v[order], w[order]
        first = np.ones(len(u), bool)
        first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        coords = np.concatenate([pixel_coords[is_process], centroids]).astype(float)
        return cls(coords, n_process, (u[first], v[first], w[first]), **somata)

    @property
    def n_nodes(self) -> int:
        return len(self.coords)

    def degree(self) -> np.ndarray:
        """Skeleton neighbours per node, a soma counting as one."""
        return np.bincount(np.concatenate([self.rows, self.cols]), minlength=self.n_nodes)

    def adjacency(self) -> sparse.csr_matrix:
        """Symmetric matrix of edge lengths (um)."""
        if self._adjacency is None:
            self._adjacency = sparse.csr_matrix(
                (np.r_[self.weights, self.weights], (np.r_[self.rows, self.cols], np.r_[self.cols, self.rows])),
                shape=(self.n_nodes, self.n_nodes))
        return self._adjacency

    def components(self, mask: np.ndarray) -> np.ndarray:
        """Component of every node over the edges joining two ``mask`` nodes."""
        inside = mask[self.rows] & mask[self.cols]
        return csgraph.connected_components(sparse.coo_matrix(
            (np.ones(inside.sum()), (self.rows[inside], self.cols[inside])),
            shape=(self.n_nodes, self.n_nodes)), directed=False)[1]

    def prune_spurs(self, *, min_branch_um: float, min_root_um: float, max_rounds: int = 5) -> None:
        """Remove terminal branches shorter than ``min_branch_um`` from tip to branch
        point, or than ``min_root_um`` from tip to soma."""
        for _ in range(max_rounds):
            degree = self.degree()
            # Chains: process nodes that are neither branch points nor soma; each
            # connected run of them is one branch between its two ends.
            chain = (np.arange(self.n_nodes) < self.n_process) & (degree <= 2)
            run = self.components(chain)
            n_runs = run.max() + 1
            inside = chain[self.rows] & chain[self.cols]
            tips = np.bincount(run[chain & (degree == 1)], minlength=n_runs)
            attach = chain[self.rows] ^ chain[self.cols]
            attach_run = run[np.where(chain[self.rows], self.rows, self.cols)[attach]]
            n_attach = np.bincount(attach_run, minlength=n_runs)
            to_soma = np.bincount(attach_run, self.cols[attach] >= self.n_process, minlength=n_runs) > 0
            length = (np.bincount(run[self.rows[inside]], self.weights[inside], minlength=n_runs)
                      + np.bincount(attach_run, self.weights[attach], minlength=n_runs))
            spur = (tips == 1) & (n_attach == 1) & (length < np.where(to_soma, min_root_um, min_branch_um))
            # Isolated pixels (degree 0) are left over by earlier rounds.
            drop = chain & (spur[run] | (degree == 0))
            if not drop.any():
                return
            keep_node = ~drop
            new = np.cumsum(keep_node) - 1
            keep = keep_node[self.rows] & keep_node[self.cols]
            self.rows, self.cols, self.weights = new[self.rows[keep]], new[self.cols[keep]], self.weights[keep]
            self.n_process -= int(drop[: self.n_process].sum())
            self.coords = self.coords[keep_node]
            self._adjacency = None

    def cell_graph(self, soma: int, trace: Trace) -> tuple[np.ndarray, sparse.csr_matrix, sparse.csr_matrix]:
        """The soma and its process nodes (``local``, soma first), their adjacency
        with the joins the cell's processes make over other somata, and without."""
        local = np.concatenate([[self.n_process + soma], trace.nodes])
        sub = along = self.adjacency()[local][:, local]
        if trace.through:
            a, b, w = (np.array(column) for column in zip(*trace.through))
            position = np.full(self.n_nodes, -1)
            position[local] = np.arange(len(local))
            a, b = position[a], position[b]
            ok = (a >= 0) & (b >= 0)
            a, b, w = a[ok], b[ok], w[ok]
            sub = sub + sparse.csr_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=sub.shape)
        return local, sub, along

    def trace_cells(self, *, heading_um: float, max_fused_um: float, max_turn_deg: float,
                    max_through_turn_deg: float, max_root_turn_deg: float, tie_cosine: float) -> list[Trace]:
        """Follow every soma's processes outwards (see the module docstring)."""
        branches = _Branches(self, heading_um=heading_um, max_fused_um=max_fused_um)
        cos_max = float(np.cos(np.radians(max_turn_deg)))
        cos_through = float(np.cos(np.radians(max_through_turn_deg)))
        cos_root = float(np.cos(np.radians(max_root_turn_deg)))
        n_soma = self.n_nodes - self.n_process
        # A first pass finds the processes that run over a soma; the ends they use
        # there are then no roots of that soma's own.
        claimed: set[int] = set()
        for soma in range(n_soma):
            claimed |= branches.walk(soma, cos_max=cos_max, cos_through=cos_through, cos_root=cos_root,
                                     tie_cosine=tie_cosine, skip=set()).claims
        traces = [branches.walk(soma, cos_max=cos_max, cos_through=cos_through, cos_root=cos_root,
                                tie_cosine=tie_cosine, skip=claimed)
                  for soma in range(n_soma)]
        branches.share_runs(traces)
        return traces


@dataclass
class Trace:
    """One cell's share of the skeleton: its process nodes, the joins it makes over
    other somata (node pairs and their length in um), the ends it claims there,
    and the runs it reached that end at another soma (run, the end it came in by)."""

    nodes: np.ndarray
    through: list[tuple[int, int, float]]
    claims: set[int]
    halves: list[tuple[int, int]]



class _Branches:
    """The process skeleton cut into branches: runs of pixels between branch points
    (junctions: clusters of pixels with 3 or more neighbours), somata and tips.

    Each branch has up to two *ends*, each attached to a junction or a soma, with
    the direction leaving that attachment along the branch.
    """

    def __init__(self, graph: SomaGraph, *, heading_um: float, max_fused_um: float) -> None:
        self.graph, self.heading_um, self.max_fused_um = graph, heading_um, max_fused_um
        n_process, rows, cols = graph.n_process, graph.rows, graph.cols
        degree = graph.degree()
        is_process = np.arange(graph.n_nodes) < n_process
        junction = is_process & (degree >= 3)
        # Two processes crossing at a shallow angle make two branch points joined by
        # a stub; a stub shorter than half a heading is part of one junction.
        chain = is_process & ~junction
        run = graph.components(chain)
        link = chain[rows] ^ chain[cols]
        link_run = run[np.where(chain[rows], rows, cols)[link]]
        to_junction = np.bincount(link_run, (np.where(chain[rows], cols, rows)[link] < n_process), graph.n_nodes)
        n_links = np.bincount(link_run, minlength=graph.n_nodes)
        inside = chain[rows] & chain[cols]
        length = np.bincount(run[rows[inside]], graph.weights[inside], minlength=graph.n_nodes)
        stub = (n_links == 2) & (to_junction == 2) & (length < 0.5 * heading_um)
        junction |= chain & stub[run]
        chain = is_process & ~junction
        self.run = graph.components(chain)
        self.junction_of = graph.components(junction)
        n_junctions = self.junction_of.max() + 1
        junction_size = np.bincount(self.junction_of[junction], minlength=n_junctions)
        self.junction_centre = np.stack([np.bincount(self.junction_of[junction], graph.coords[junction, i],
                                                     n_junctions) for i in (0, 1)], axis=1) \
            / np.maximum(junction_size, 1)[:, None]

        # Ends: a chain pixel linked to a junction pixel or a soma. A target is a
        # junction id, or -1 - soma for a soma.
        attach = chain[rows] ^ chain[cols]
        end_node = np.where(chain[rows], rows, cols)[attach]
        other = np.where(chain[rows], cols, rows)[attach]
        target = np.where(other < n_process, self.junction_of[other], -1 - (other - n_process))
        key = np.unique(np.stack([end_node, target]), axis=1)
        self.end_node, self.end_target = key
        self.end_run = self.run[self.end_node]
        self.end_position = np.where((self.end_target >= 0)[:, None],
                                     self.junction_centre[np.maximum(self.end_target, 0)],
                                     graph.coords[self.end_node])
        inside = chain[rows] & chain[cols]
        self.run_length = np.bincount(self.run[rows[inside]], graph.weights[inside], minlength=graph.n_nodes)
        # Direction of each end: along its branch, from a third of heading_um out
        # (the skeleton kinks where it meets a junction) to the farthest pixel within
        # heading_um, each pixel counting for the nearer end of its branch.
        chain_graph = graph.adjacency()[chain][:, chain]
        chain_index = np.flatnonzero(chain)
        position = np.searchsorted(chain_index, self.end_node)
        sources = np.unique(position)
        distance, _, source = csgraph.dijkstra(chain_graph, directed=False, indices=sources, limit=heading_um,
                                               min_only=True, return_predecessors=True)
        reached = np.flatnonzero(np.isfinite(distance))
        near, far = np.full(len(chain_index), -1), np.full(len(chain_index), -1)
        for pick, rank in ((far, distance[reached]), (near, -np.abs(distance[reached] - heading_um / 3))):
            order = np.lexsort((rank, source[reached]))
            last = np.r_[source[reached][order][1:] != source[reached][order][:-1], True][: len(reached)]
            pick[source[reached][order][last]] = reached[order][last]
        far_point = graph.coords[chain_index[far[position]]]
        near_point = np.where((near[position] == far[position])[:, None], self.end_position,
                              graph.coords[chain_index[near[position]]])
        direction = far_point - near_point
        self.end_direction = direction / (np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12)
        # Nearest end of every chain pixel, to split a branch that joins two somata.
        _, _, nearest = csgraph.dijkstra(chain_graph, directed=False, indices=sources, min_only=True,
                                         return_predecessors=True)
        self.nearest_end_node = np.where(nearest >= 0, chain_index[np.maximum(nearest, 0)], -1)
        self.chain_index = chain_index

        order = np.argsort(self.end_run, kind="stable")
        self.ends_of_run = np.split(order, np.searchsorted(self.end_run[order], np.arange(1, graph.n_nodes)))
        order = np.argsort(self.end_target, kind="stable")
        targets, starts = np.unique(self.end_target[order], return_index=True)
        self._ends_at = dict(zip(targets.tolist(), np.split(order, starts[1:])))
        counts = np.bincount(self.run[chain_index], minlength=graph.n_nodes)
        self.run_nodes = np.split(chain_index[np.argsort(self.run[chain_index], kind="stable")],
                                  np.cumsum(counts)[:-1])
        self.junction_nodes = np.split(np.flatnonzero(junction)[np.argsort(self.junction_of[junction], kind="stable")],
                                       np.cumsum(junction_size)[:-1])

        # A junction touching a soma roots the junction's branches there; so does one
        # joined to it by a run too short to have a direction of its own (the run
        # is then part of the root). Rows: junction, soma, run (-1: none). Two
        # somata joined by such a run touch, like somata whose outlines touch.
        direct = junction[rows] & (cols >= n_process)
        roots = [np.stack([self.junction_of[rows[direct]], cols[direct] - n_process, np.full(direct.sum(), -1)])]
        bridges = [np.zeros((2, 0), int)]
        for end in np.flatnonzero(self.end_target < 0):
            run = self.end_run[end]
            if self.run_length[run] < 0.5 * heading_um:
                for other in self.ends_of_run[run]:
                    if self.end_target[other] >= 0:
                        roots.append(np.array([[self.end_target[other]], [-1 - self.end_target[end]], [run]]))
                    elif other != end:
                        bridges.append(-1 - np.array([[self.end_target[end]], [self.end_target[other]]]))
        self.soma_junctions = np.concatenate(roots, axis=1)
        self.touching = np.unique(np.concatenate([graph.touching, *bridges], axis=1), axis=1)

    def ends_at(self, target: int) -> np.ndarray:
        """The ends attached to junction ``target`` (>= 0) or soma ``-1 - target``."""
        return self._ends_at.get(target, np.zeros(0, int))

    def _leave_junction(self, junction: int, arrival: int, heading: np.ndarray, *, behind: list[int],
                        cos_max: float, cos_through: float) -> list[int]:
        """The branches a walk arriving at ``junction`` along ``heading`` goes on into.

        Only branches within the allowed turn, and not one that continues another
        branch of the junction in a straight line (another process crossing this
        one), unless it is the straightest way on and turns less than a crossing.
        ``behind`` are the branches of the junction before, when the walk came
        from there over a stretch short enough to be two processes fused; one
        continuing them in a straight line is the other process leaving again,
        and counts as a crossing.
        """
        others = np.array([e for e in self.ends_at(junction) if e != arrival], int)
        if len(others) == 0:
            return []
        directions = self.end_direction[others]
        alignment = directions @ heading
        forward = alignment > cos_max
        if not forward.any():
            return []
        crossing = ((directions @ directions.T) < -cos_through).any(axis=1)
        if behind:
            crossing |= ((directions @ self.end_direction[behind].T) < -cos_through).any(axis=1)
        keep = forward & ~crossing
        # Joining a straight line through the junction (a process arriving at the
        # side of another's) goes on along it only on a nearly straight course.
        best = int(np.argmax(alignment))
        keep[best] = alignment[best] > (cos_through if crossing[best] else cos_max)
        return [int(e) for e in others[keep]]

    def _exits(self, soma: int) -> list[int]:
        """The ends by which a process can leave ``soma``: those attached to it, and
        those leaving a junction that the soma roots (where the skeleton meets a
        soma through a run too short to have a direction, the way on starts at
        the junction)."""
        ends = self.ends_at(-1 - soma).tolist()
        for junction in self.soma_junctions[0, self.soma_junctions[1] == soma]:
            ends += [e for e in self.ends_at(junction).tolist()
                     if self.run_length[self.end_run[e]] >= 0.5 * self.heading_um]
        return ends

    def _across(self, soma: int, start: np.ndarray, heading: np.ndarray | None, *, arrival: int, cos_through: float,
                tie_cosine: float) -> tuple[int, bool]:
        """Where a process reaching ``soma`` at ``start`` along ``heading`` (or hidden
        under it from ``start`` on) leaves it again: the end of ``soma`` on a straight
        course from ``start``, or -1. Such an end is the passing process's alone
        (exclusive) when it lines up with the course better, by ``tie_cosine``, than
        with a process growing out of ``soma``'s centre; near a tie both share it.
        """
        centre = self.graph.coords[self.graph.n_process + soma]
        best, best_score, best_own = -1, cos_through, 1.0
        for end in self._exits(soma):
            chord = _unit(self.end_position[end] - start)
            if end == arrival or chord @ (centre - start) <= 0:
                continue
            score = min(chord @ self.end_direction[end], 1.0 if heading is None else chord @ heading)
            own = _unit(self.end_position[end] - centre) @ self.end_direction[end]
            if score > best_score and score > own - tie_cosine:
                best, best_score, best_own = end, score, own
        return best, best >= 0 and best_score > best_own + tie_cosine

    def walk(self, soma: int, *, cos_max: float, cos_through: float, cos_root: float, tie_cosine: float,
             skip: set[int]) -> Trace:
        """The branches reached from ``soma`` without turning by more than the
        allowed angle at a junction, and across other somata in a straight line."""
        graph = self.graph
        centre = graph.coords[graph.n_process + soma]
        # To walk: (end, heading, the end by which the walk arrived at that end's
        # junction, or -1 where it starts at a soma).
        stack = []
        # A process leaves its soma pointing away from the soma's centre; one that
        # only runs along the soma's edge is passing by.
        for end in self.ends_at(-1 - soma):
            if end not in skip and _unit(self.end_position[end] - centre) @ self.end_direction[end] > cos_root:
                stack.append((end, self.end_direction[end], -1))
        seen_runs, junctions, halves, through, claims = set(), set(), [], [], set()
        # A process can be hidden where it leaves its soma by a touching neighbour
        # and show only on that neighbour's far side.
        for neighbour in self.touching[1, self.touching[0] == soma]:
            end, exclusive = self._across(neighbour, centre, None, arrival=-1, cos_through=cos_through,
                                          tie_cosine=tie_cosine)
            if end >= 0:
                stack.append((end, self.end_direction[end], -1))
                gap_px = np.linalg.norm(self.end_position[end] - centre) - graph.soma_radius[soma]
                through.append((graph.n_process + soma, self.end_node[end], max(gap_px, 1.0) * graph.pixel_size_um))
                if exclusive:
                    claims.add(end)
        for junction, _, root_run in self.soma_junctions[:, self.soma_junctions[1] == soma].T:
            heading = _unit(self.junction_centre[junction] - centre)
            leaving = [(end, self.end_direction[end], -1) for end in self.ends_at(junction)
                       if self.end_direction[end] @ heading > cos_root]
            if leaving:
                junctions.add(junction)
                seen_runs.add(root_run)
                stack += leaving
        while stack:
            end, heading, came_in = stack.pop()
            run = self.end_run[end]
            if run in seen_runs:
                continue
            seen_runs.add(run)
            partner = [e for e in self.ends_of_run[run] if e != end]
            if not partner:
                continue  # the branch ends in a tip
            arrival = partner[0]
            # A short branch (a link between two close junctions) has no direction
            # of its own; the heading carries over it.
            if self.run_length[run] >= 0.5 * self.heading_um:
                heading = -self.end_direction[arrival]
            target = self.end_target[arrival]
            if target >= 0:
                junctions.add(target)
                # Two processes crossing at a shallow angle, or touching for a stretch,
                # fuse into one skeleton branch between the junction where the other
                # joins and the one where it leaves again; its way on there is no
                # fork of this process. Along the fused branch the skeleton runs
                # between the two courses, so this process keeps the heading it had
                # before the other joined.
                behind = []
                if came_in >= 0 and self.run_length[run] < self.max_fused_um:
                    behind = [e for e in self.ends_at(self.end_target[end]) if e not in (end, came_in)]
                    if behind:
                        heading = -self.end_direction[came_in]
                stack += [(e, self.end_direction[e], arrival) for e in
                          self._leave_junction(target, arrival, heading, behind=behind, cos_max=cos_max,
                                               cos_through=cos_through)]
                continue
            other_soma = -1 - target
            if other_soma == soma:
                continue
            best, exclusive = self._across(other_soma, self.end_position[arrival], heading, arrival=arrival,
                                           cos_through=cos_through, tie_cosine=tie_cosine)
            if best < 0:
                halves.append((run, self.end_node[end]))
                seen_runs.discard(run)
                continue
            through.append((self.end_node[arrival], self.end_node[best],
                            np.linalg.norm(self.end_position[best] - self.end_position[arrival]) * graph.pixel_size_um))
            if exclusive:
                claims |= {arrival, best}
            stack.append((best, self.end_direction[best], -1))
        seen_runs.discard(-1)
        parts = [self.run_nodes[r] for r in seen_runs] + [self.junction_nodes[j] for j in junctions]
        nodes = np.unique(np.concatenate(parts)) if parts else np.zeros(0, int)
        return Trace(nodes, through, claims, halves)

    def share_runs(self, traces: list[Trace]) -> None:
        """Give out the runs that join two somata among the walks that reached them.

        A run only one of its somata walks into (the other's end of it does not
        point away from that soma's centre, so it is no root there) is that walk's
        whole, unless another walk went along it across a soma. So is a run
        between a soma with other processes and one without: a cell with a
        process elsewhere rarely sends a second one into its neighbour, while a
        B cell's tangential process often ends at the next soma along the SGZ.
        Otherwise each cell gets the half nearer to it.
        """
        walkers: dict[int, list[tuple[int, int]]] = {}
        for k, trace in enumerate(traces):
            for run, near in trace.halves:
                walkers.setdefault(run, []).append((k, near))
        # Whether a cell has other processes is judged on its walk, before any sharing.
        walked = [len(trace.nodes) > 0 for trace in traces]
        # A run that another walk went along (a process crossing that soma) is no root's alone.
        held = set(np.unique(self.run[np.concatenate([trace.nodes for trace in traces]).astype(int)]).tolist())
        for run, ends in walkers.items():
            nodes = self.run_nodes[run]
            busy = [walked[k] for k, _ in ends]
            for (k, near), elsewhere in zip(ends, busy):
                if len(ends) == 1 and run not in held:
                    part = nodes
                elif len(ends) == 2 and sum(busy) == 1:
                    part = np.zeros(0, int) if elsewhere else nodes
                else:
                    part = nodes[self.nearest_end_node[np.searchsorted(self.chain_index, nodes)] == near]
                traces[k].nodes = np.union1d(traces[k].nodes, part)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / (np.linalg.norm(vector) + 1e-12)
