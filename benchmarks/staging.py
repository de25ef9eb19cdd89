"""Accuracy of DCX maturation staging (A-F) on held-out synthetic sections.

Sections (DCX + NeuN, seeds 101, 102, ... by default; training never draws these) are counted
with :func:`dcxcount.pipeline.count_section`, the path users run. Detected DCX somata
are matched to the true ones (centroids within 5 um) and the stages of the matched
cells whose processes lie whole in the image are compared, per DCX density and pooled:
stage accuracy over A-F, group accuracy over proliferative (A-B), intermediate (C-D)
and postmitotic (E-F), and the 6x6 confusion matrix (rows true, columns found). The
accuracies are also given apart for "crowded" cells, whose true processes meet another
cell's in the 2D image (running over another soma near their root, or fused with or
ending on another cell's process), and for the clear rest; and apart for the cells that
the tracing itself marks as doubtful (cells.csv's ``stage_doubtful``: ``process_shared_um`` >
6 um or ``somata_crossed`` > 0), which users can see in their own data.

With ``--figure`` it also writes a grid of example cells: one row per found stage
A-F, 220 um crops of the DCX channel with the cell's traced processes in red, other
cells' in blue, its soma outlined in yellow, the GCL's borders in cyan (the molecular
layer lies beyond the outer one) and a green (stage right) or red (wrong) frame.

With ``--cache DIR`` each section's segmentation and layer frame are kept in DIR, and
later runs only trace and stage again (about 4x faster; for work on the tracing).
Delete DIR when segmentation or the frame change.

Usage::

    python benchmarks/staging.py --sections 4 --density 60 150
    python benchmarks/staging.py --first-seed 201 --sections 12 --density 60   # the dev seeds
    python benchmarks/staging.py --sections 4 --density 60 --figure docs/images/stages.jpg
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from skimage import segmentation

from dcxcount.features import process_features
from dcxcount.io import Section
from dcxcount.metrics import match_centroids
from dcxcount.pipeline import SectionResult, count_section
from dcxcount.staging import stage_cells
from dcxcount.synth import SynthParams, SynthSection, make_section
from dcxcount.tracing import Ownership, trace_processes, walk_ownership
from dcxcount.vocabulary import STAGE_GROUPS

STAGES = list("ABCDEF")
GROUPS = ["proliferative", "intermediate", "postmitotic"]


def held_out_section(*, seed: int, size_px: int, pixel_size_um: float, dcx_per_mm_sgz: float) -> SynthSection:
    """A DCX + NeuN synthetic section the bundled models never saw."""
    return make_section(SynthParams(shape_px=(size_px, size_px), pixel_size_um=pixel_size_um,
                                    markers=("dcx", "neun"), dcx_per_mm_sgz=dcx_per_mm_sgz, seed=seed))


def count_synthetic(synth: SynthSection) -> SectionResult:
    """Count a synthetic section through the pipeline."""
    section = Section(path="synthetic", data=synth.image, channel_names=synth.channel_names,
                      pixel_size_um=synth.pixel_size_um, pixel_size_source="synthetic", projection="none")
    return count_section(section)


def counted(*, seed: int, size_px: int, pixel_size_um: float, dcx_per_mm_sgz: float,
            cache: Path | None) -> tuple[SynthSection, SectionResult]:
    """A held-out section and its count; from ``cache`` when there, traced and staged again."""
    path = None if cache is None else cache / f"seed{seed}_{size_px}px_{pixel_size_um:g}um_{dcx_per_mm_sgz:g}.pkl"
    if path is None or not path.exists():
        synth = held_out_section(seed=seed, size_px=size_px, pixel_size_um=pixel_size_um,
                                 dcx_per_mm_sgz=dcx_per_mm_sgz)
        result = count_synthetic(synth)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps((synth, result)))
        return synth, result
    synth, result = pickle.loads(path.read_bytes())
    return synth, restaged(synth, result)


def restaged(synth: SynthSection, result: SectionResult, *, ownership: Ownership = walk_ownership) -> SectionResult:
    """``result`` with its DCX cells' processes traced and staged again (the segmentation kept)."""
    dcx = synth.image[synth.params.markers.index("dcx")]
    features = process_features(dcx, result.labels["dcx"], result.frame, ownership=ownership)
    staged = features.join(stage_cells(features, gcl_thickness_um=result.frame.thickness_um))
    cells = result.cells.copy()
    rows = cells["marker"] == "dcx"
    for column in staged.columns:
        cells.loc[rows, column] = staged[column].reindex(cells.loc[rows, "cell_id"]).to_numpy()
    return dataclasses.replace(result, cells=cells)


def staged_pairs(synth: SynthSection, result: SectionResult, *, max_distance_um: float = 5.0) -> pd.DataFrame:
    """Found and true stage of every detected DCX cell matched to an untruncated true one."""
    found = result.cells[result.cells["marker"] == "dcx"].reset_index(drop=True)
    real = synth.cells[synth.cells["marker"] == "dcx"].reset_index(drop=True)
    _, pairs = match_centroids(found[["x_um", "y_um"]].to_numpy(), real[["x_um", "y_um"]].to_numpy(),
                               max_distance_um=max_distance_um)
    matched, expected = found.iloc[pairs[:, 0]].reset_index(drop=True), real.iloc[pairs[:, 1]].reset_index(drop=True)
    whole = ~expected["truncated"].astype(bool)
    pairs = pd.DataFrame({"cell_id": matched["cell_id"], "x_um": matched["x_um"], "y_um": matched["y_um"],
                          "truth": expected["stage"], "found": matched["stage"],
                          "crowded": crowded(synth, expected["cell_id"].to_numpy()),
                          "doubtful": matched["stage_doubtful"].astype(bool)})
    return pairs[whole].reset_index(drop=True)


def crowded(synth: SynthSection, cell_ids: np.ndarray, *, contact_um: float = 1.5, stretch_um: float = 4.0,
            first_um: float = 15.0, over_fraction: float = 0.2) -> np.ndarray:
    """Whether each true DCX cell's processes meet other cells' in the 2D image.

    Crowded: more than ``over_fraction`` of its primaries' first ``first_um`` lies over
    another soma, or a stretch longer than ``stretch_um`` of any of its processes runs
    within ``contact_um`` of another cell's process (fused or merging, not a crossing).
    """
    step_um = 0.25
    parts = []
    for (cell, branch), points in synth.processes.groupby(["cell_id", "branch"]):
        xy = points[["x_um", "y_um"]].to_numpy()
        along = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
        s = np.arange(0.0, along[-1], step_um)
        parts.append(pd.DataFrame({"cell": cell, "branch": branch, "primary": points["parent"].iloc[0] == -1,
                                   "s": s, "x": np.interp(s, along, xy[:, 0]), "y": np.interp(s, along, xy[:, 1])}))
    if not parts:
        return np.zeros(len(cell_ids), bool)
    samples = pd.concat(parts, ignore_index=True)
    xy = samples[["x", "y"]].to_numpy()
    owner = samples["cell"].to_numpy()
    near = cKDTree(xy).query_ball_point(xy, contact_um)
    touching = np.array([(owner[hits] != cell).any() for hits, cell in zip(near, owner)])
    somata = synth.labels["dcx"]
    pixel = np.clip(np.round(xy[:, ::-1] / synth.pixel_size_um).astype(int), 0, np.array(somata.shape) - 1)
    under = somata[tuple(pixel.T)]
    over = (under > 0) & (under != owner)
    out = []
    for cell in cell_ids:
        mine = (owner == cell)
        first = mine & samples["primary"].to_numpy() & (samples["s"].to_numpy() <= first_um)
        positions = np.flatnonzero(mine)
        longest = 0
        for _, index in samples[mine].groupby("branch").indices.items():
            rows = positions[index]
            run = np.diff(np.r_[0, touching[rows].astype(int), 0])
            starts, ends = np.flatnonzero(run == 1), np.flatnonzero(run == -1)
            longest = max(longest, int((ends - starts).max()) if len(starts) else 0)
        out.append((first.any() and over[first].mean() > over_fraction) or longest * step_um > stretch_um)
    return np.array(out, bool)


def accuracies(pairs: pd.DataFrame) -> tuple[float, float]:
    """Stage (A-F) and stage-group accuracy."""
    stage = float((pairs["truth"] == pairs["found"]).mean())
    group = float((pairs["truth"].map(STAGE_GROUPS) == pairs["found"].map(STAGE_GROUPS)).mean())
    return stage, group


def confusion(pairs: pd.DataFrame) -> pd.DataFrame:
    """6x6 counts, rows true stage, columns found stage."""
    return pd.crosstab(pd.Categorical(pairs["truth"], STAGES), pd.Categorical(pairs["found"], STAGES),
                       rownames=["true"], colnames=["found"], dropna=False)


def example_crops(synth: SynthSection, result: SectionResult, pairs: pd.DataFrame, *, per_stage: int,
                  half_um: float = 110.0) -> dict[str, list[np.ndarray]]:
    """RGB crops of the first ``per_stage`` matched cells of each found stage.

    ``half_um`` is wide enough for a soma in the SGZ and its dendrites' branches
    in the molecular layer (a GCL is 60-80 um thick), which tell D, E and F apart.
    """
    dcx = synth.image[0].astype(float)
    somata = result.labels["dcx"]
    skeleton = trace_processes(dcx, somata, result.frame).image
    px, half = synth.pixel_size_um, int(round(half_um / synth.pixel_size_um))
    crops: dict[str, list[np.ndarray]] = {stage: [] for stage in STAGES}
    for row in pairs.itertuples():
        if len(crops[row.found]) >= per_stage:
            continue
        r, c = int(round(row.y_um / px)), int(round(row.x_um / px))
        if min(r, c) < half or max(r, c) + half >= min(dcx.shape):
            continue  # whole crops only, so the grid stays regular
        window = np.s_[r - half:r + half, c - half:c + half]
        crops[row.found].append(_overlay(dcx[window], skeleton[window], somata[window], result.frame.gcl[window],
                                         row.cell_id, right=row.truth == row.found))
    return crops


def _overlay(image: np.ndarray, skeleton: np.ndarray, somata: np.ndarray, gcl: np.ndarray, cell_id: int, *,
             right: bool) -> np.ndarray:
    low, high = np.percentile(image, [1, 99.5])
    rgb = np.repeat(np.clip((image - low) / (high - low + 1e-12), 0, 1)[..., None], 3, axis=2)
    rgb[segmentation.find_boundaries(gcl, mode="inner")] = (0.0, 0.75, 0.75)
    rgb[(skeleton > 0) & (skeleton != cell_id)] = (0.2, 0.45, 1.0)
    rgb[skeleton == cell_id] = (1.0, 0.15, 0.15)
    rgb[segmentation.find_boundaries(somata == cell_id, mode="outer")] = (1.0, 1.0, 0.0)
    frame = (0.1, 0.8, 0.1) if right else (0.9, 0.1, 0.1)
    rgb[:3], rgb[-3:], rgb[:, :3], rgb[:, -3:] = frame, frame, frame, frame
    return rgb


def stage_figure(crops: dict[str, list[np.ndarray]], *, per_stage: int) -> np.ndarray:
    """One row per stage A-F, ``per_stage`` crops wide (blank where a stage had fewer), uint8."""
    size = next(c for row in crops.values() for c in row).shape
    gap = 6
    rows = []
    for stage in STAGES:
        cells = crops[stage] + [np.ones(size)] * (per_stage - len(crops[stage]))
        rows.append(np.concatenate([np.pad(c, ((gap, gap), (gap, gap), (0, 0)), constant_values=1) for c in cells],
                                   axis=1))
    return (np.concatenate(rows, axis=0) * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=4, help="sections per density")
    parser.add_argument("--first-seed", type=int, default=101,
                        help="seeds FIRST, FIRST + 1, ...; 70201 on are the frozen test split (tests/splits.py), "
                             "101 on and 201 on dev seeds")
    parser.add_argument("--size-px", type=int, default=768)
    parser.add_argument("--pixel-size-um", type=float, default=0.65)
    parser.add_argument("--density", type=float, nargs="+", default=[SynthParams().dcx_per_mm_sgz, 150.0],
                        help="DCX cells per mm SGZ (the generator's default and a dense case)")
    parser.add_argument("--cache", type=Path, help="keep segmentations here; later runs only trace and stage again")
    parser.add_argument("--figure", help="write the example-cell grid (PNG) here")
    parser.add_argument("--per-stage", type=int, default=3, help="example cells per stage in the figure")
    args = parser.parse_args()

    everything, crops = [], {stage: [] for stage in STAGES}
    for density in args.density:
        pooled = []
        for seed in range(args.first_seed, args.first_seed + args.sections):
            started = time.perf_counter()
            synth, result = counted(seed=seed, size_px=args.size_px, pixel_size_um=args.pixel_size_um,
                                    dcx_per_mm_sgz=density, cache=args.cache)
            pairs = staged_pairs(synth, result)
            stage, group = accuracies(pairs)
            print(f"density {density:g}/mm, seed {seed}: {len(pairs)} cells, stage {stage:.3f}, group {group:.3f}, "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            pooled.append(pairs)
            if args.figure:
                for found, more in example_crops(synth, result, pairs, per_stage=args.per_stage).items():
                    crops[found] += more[: args.per_stage - len(crops[found])]
        pooled = pd.concat(pooled, ignore_index=True)
        everything.append(pooled)
        _report(f"density {density:g} DCX cells per mm SGZ", pooled)
    if len(everything) > 1:
        _report("all densities", pd.concat(everything, ignore_index=True))
    if args.figure:
        iio.imwrite(args.figure, stage_figure(crops, per_stage=args.per_stage))
        print(f"wrote {args.figure}")


def _report(title: str, pairs: pd.DataFrame) -> None:
    stage, group = accuracies(pairs)
    print(f"\n{title}: {len(pairs)} matched cells, stage accuracy {stage:.3f}, group accuracy {group:.3f}")
    for name, part in (("clear (true processes meeting no neighbour's)", pairs[~pairs["crowded"]]),
                       ("crowded (true processes meeting a neighbour's)", pairs[pairs["crowded"]]),
                       ("traced, not doubtful", pairs[~pairs["doubtful"]]),
                       ("traced, doubtful (stage_doubtful: processes shared or a soma crossed)",
                        pairs[pairs["doubtful"]])):
        if len(part):
            print(f"  {name}: {len(part)} cells, stage {{:.3f}}, group {{:.3f}}".format(*accuracies(part)))
    print(confusion(pairs).to_string())


if __name__ == "__main__":
    main()
