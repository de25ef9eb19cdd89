"""How far DCX staging could go with perfect process ownership (a truth oracle).

Staging errors have two sources: the skeleton (a process too faint for the ridge
filter, or hidden where it runs over another soma, is not there to trace) and
ownership (which soma's walk holds a stretch of skeleton that two cells' processes
share in the 2D image). This benchmark measures the second one's share. On the
held-out sections of ``benchmarks/staging.py``, with the same segmentation, skeleton,
walks and stage rules, it replaces the outcome of the ownership step
(the ownership strategy, `dcxcount.tracing.Ownership`) by the generator's truth in two ways:

contested
    every skeleton pixel that two or more cells' walks hold goes only to the cell
    whose true process lies there, when that cell is one of them;
pruned
    every pixel whose true process is another cell's is taken from a cell's trace.

Neither adds skeleton that no walk reached, and a pixel within ``tolerance_um`` of
two cells' true processes (a crossing, a fused stretch) stays as traced. The gain
over the traced figures is the most that a better ownership rule can give.

It also asks whether the geometry of the skeleton tells the owner of a contested
stretch (a run of skeleton between junctions held by two or more walks): how often
the holder with the shorter path from its soma, or the straighter one (least
turning, summed every 6 um), is the true owner. 50 % is a coin.

Usage::

    python benchmarks/staging_ceiling.py --first-seed 201 --sections 12 --density 60 --cache /tmp/staging
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import csgraph
from skimage import draw
from staging import accuracies, counted, restaged, staged_pairs

from dcxcount import tracing
from dcxcount.synth import SynthSection

ORACLES = ("traced", "contested", "pruned")


def true_owners(synth: SynthSection, *, tolerance_um: float) -> np.ndarray:
    """Per pixel: the true DCX cell whose process lies within ``tolerance_um``, 0 for
    none, -1 for more than one."""
    shape, px = synth.labels["dcx"].shape, synth.pixel_size_um
    owner, count = np.zeros(shape, np.int64), np.zeros(shape, np.int32)
    disc = ndi.generate_binary_structure(2, 1)
    for cell, points in synth.processes.groupby("cell_id"):
        mask = np.zeros(shape, bool)
        for _, branch in points.groupby("branch"):
            yx = np.round(branch[["y_um", "x_um"]].to_numpy() / px).astype(int)
            for (y0, x0), (y1, x1) in zip(yx[:-1], yx[1:]):
                rr, cc = draw.line(y0, x0, y1, x1)
                inside = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
                mask[rr[inside], cc[inside]] = True
        mask = ndi.binary_dilation(mask, disc, iterations=max(1, round(tolerance_um / px)))
        owner[mask], count[mask] = cell, count[mask] + 1
    owner[count > 1] = -1
    return owner


def soma_truth(synth: SynthSection, somata: np.ndarray) -> np.ndarray:
    """The true cell under each segmented soma (sorted labels), by majority; 0 for none."""
    truth = synth.labels["dcx"]
    out = []
    for label in np.unique(somata[somata > 0]):
        under = truth[(somata == label) & (truth > 0)]
        out.append(np.bincount(under).argmax() if len(under) else 0)
    return np.array(out, np.int64)


def _oracle_trace(oracle: str, owner: np.ndarray, cells: np.ndarray, cues: list[dict]):
    """An ownership strategy (:data:`dcxcount.tracing.Ownership`) that resolves ownership with the truth."""

    def traced(graph, settings):
        traces = tracing.walk_ownership(graph, settings)
        node_owner = owner[tuple(graph.coords[: graph.n_process].astype(int).T)]
        if oracle == "traced":
            cues.extend(_contested_cues(graph, traces, node_owner, cells, settings))
            return traces
        # Nodes that their true owner's walk holds too (so two or more walks hold them).
        owner_holds = np.zeros(graph.n_process, bool)
        for k, trace in enumerate(traces):
            nodes = trace.nodes.astype(int)
            owner_holds[nodes[node_owner[nodes] == cells[k]]] = True
        for k, trace in enumerate(traces):
            nodes = trace.nodes.astype(int)
            other = (node_owner[nodes] > 0) & (node_owner[nodes] != cells[k])
            if oracle == "contested":
                other &= owner_holds[nodes]
            trace.nodes = trace.nodes[~other]
        return traces

    return traced


def _contested_cues(graph, traces, node_owner: np.ndarray, cells: np.ndarray,
                    settings: tracing.TracingSettings) -> list[dict]:
    """For each run held by two or more walks whose true owner is one of them: does the
    holder with the shorter path, or the straighter one, own it?"""
    branches = tracing._Branches(graph, heading_um=settings.heading_um, max_fused_um=settings.max_fused_um)
    paths = {}
    for k, trace in enumerate(traces):
        if len(trace.nodes):
            local, sub, _ = graph.cell_graph(k, trace)
            distance, previous = csgraph.dijkstra(sub, directed=False, indices=0, return_predecessors=True)
            paths[k] = (local, distance, previous)
    held: dict[int, list[int]] = {}
    for k, trace in enumerate(traces):
        for run in np.unique(branches.run[trace.nodes.astype(int)]).tolist():
            held.setdefault(run, []).append(k)
    rows = []
    for run, ks in held.items():
        nodes = branches.run_nodes[run]
        owners = node_owner[nodes][node_owner[nodes] > 0]
        if len(ks) < 2 or len(owners) == 0:
            continue
        owner = np.bincount(owners).argmax()
        if owner not in cells[ks]:
            continue
        length, turning = [], []
        for k in ks:
            local, distance, previous = paths[k]
            position = np.flatnonzero(np.isin(local, nodes))
            i = position[np.argmin(distance[position])]
            length.append(distance[i])
            route = []
            while i >= 0:
                route.append(graph.coords[local[i]])
                i = previous[i]
            turning.append(_turning(np.array(route[::-1]), step_px=6.0 / graph.pixel_size_um))
        rows.append({"shorter": cells[ks[int(np.argmin(length))]] == owner,
                     "straighter": cells[ks[int(np.argmin(turning))]] == owner})
    return rows


def _turning(route: np.ndarray, *, step_px: float) -> float:
    """Summed absolute change of direction (radians) along ``route``, resampled every ``step_px``."""
    along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(route, axis=0), axis=1))]
    s = np.arange(0.0, along[-1] + 1e-9, step_px)
    if len(s) < 3:
        return 0.0
    steps = np.diff(np.stack([np.interp(s, along, route[:, i]) for i in (0, 1)], axis=1), axis=0)
    angle = np.arctan2(steps[:, 0], steps[:, 1])
    return float(np.abs((np.diff(angle) + np.pi) % (2 * np.pi) - np.pi).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--density", type=float, nargs="+", default=[60.0, 150.0])
    parser.add_argument("--tolerance-um", type=float, default=2.0,
                        help="skeleton this close to a true process belongs to it")
    parser.add_argument("--cache", type=Path, help="as in benchmarks/staging.py")
    args = parser.parse_args()

    for density in args.density:
        pairs: dict[str, list[pd.DataFrame]] = {oracle: [] for oracle in ORACLES}
        cues: list[dict] = []
        for seed in range(args.first_seed, args.first_seed + args.sections):
            synth, result = counted(seed=seed, size_px=768, pixel_size_um=0.65, dcx_per_mm_sgz=density,
                                    cache=args.cache)
            owner = true_owners(synth, tolerance_um=args.tolerance_um)
            cells = soma_truth(synth, result.labels["dcx"])
            for oracle in ORACLES:
                restaged_by = restaged(synth, result, ownership=_oracle_trace(oracle, owner, cells, cues))
                pairs[oracle].append(staged_pairs(synth, restaged_by))
        print(f"\ndensity {density:g}/mm, seeds {args.first_seed}-{args.first_seed + args.sections - 1}:")
        for oracle in ORACLES:
            pooled = pd.concat(pairs[oracle], ignore_index=True)
            stage, group = accuracies(pooled)
            print(f"  {oracle:9s} {len(pooled)} cells: stage {stage:.3f}, group {group:.3f}")
        cues = pd.DataFrame(cues)
        if len(cues):
            print(f"  {len(cues)} contested runs: the holder with the shorter path owns {cues['shorter'].mean():.2f}, "
                  f"the straighter one {cues['straighter'].mean():.2f}")


if __name__ == "__main__":
    main()
