"""Accuracy of the whole pipeline against synthetic ground truth.

Sections are generated with seeds the training never drew (training draws its seeds from
``numpy.random.default_rng(0)``; these are 10_000 + i), counted with
:func:`dcxcount.pipeline.count_section`, and compared with the truth:

- detection F1 of DCX somata and NeuN nuclei (centroids matched within 5 um) and cellpose's
  average precision at IoU 0.5 on the label images;
- GCL mask IoU;
- stage (A-F) and stage-group accuracy on correctly detected DCX cells;
- DCX/NeuN co-label accuracy on correctly detected DCX cells.

Usage::

    python benchmarks/accuracy.py --sections 4 --size-px 1024 > docs/accuracy-table.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from dcxcount.io import Section
from dcxcount.metrics import Detection, average_precision, match_centroids
from dcxcount.pipeline import count_section
from dcxcount.synth import SynthParams, make_section


def evaluate(params: SynthParams) -> dict:
    truth = make_section(params)
    section = Section(path="synthetic", data=truth.image, channel_names=truth.channel_names,
                      pixel_size_um=params.pixel_size_um, pixel_size_source="synthetic", projection="none")
    started = time.perf_counter()
    result = count_section(section)
    row = {"seconds": time.perf_counter() - started}
    cells = result.cells
    for marker in ("dcx", "neun"):
        found = cells[cells["marker"] == marker]
        real = truth.cells[truth.cells["marker"] == marker]
        detection, pairs = match_centroids(found[["x_um", "y_um"]].to_numpy(), real[["x_um", "y_um"]].to_numpy(),
                                           max_distance_um=5.0)
        row[marker] = detection
        row[f"{marker}_ap50"] = average_precision(result.labels[marker], truth.labels[marker], iou=0.5)
        if marker == "dcx":
            matched = found.iloc[pairs[:, 0]].reset_index(drop=True)
            expected = real.iloc[pairs[:, 1]].reset_index(drop=True)
            keep = ~expected["truncated"].astype(bool)
            row["stage_pairs"] = pd.DataFrame({"truth": expected.loc[keep, "stage"], "found": matched.loc[keep, "stage"],
                                               "truth_group": expected.loc[keep, "stage_group"],
                                               "found_group": matched.loc[keep, "stage_group"]})
            row["colabel"] = (matched["neun_positive"].astype(bool) == expected["neun_positive"].astype(bool)).mean()
    row["gcl_iou"] = (result.frame.gcl & truth.gcl_mask).sum() / (result.frame.gcl | truth.gcl_mask).sum()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=3, help="sections per condition")
    parser.add_argument("--size-px", type=int, default=1024)
    parser.add_argument("--snr", type=float, nargs="+", default=[4.0, 8.0, 15.0])
    parser.add_argument("--pixel-size-um", type=float, nargs="+", default=[0.65])
    args = parser.parse_args()
    print("| pixel size (um) | SNR | DCX F1 | DCX AP@0.5 | NeuN F1 | NeuN AP@0.5 | GCL IoU | stage acc. | group acc. | DCX/NeuN co-label acc. | s/section |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for pixel_size_um in args.pixel_size_um:
        for snr in args.snr:
            rows = [evaluate(SynthParams(shape_px=(args.size_px, args.size_px), pixel_size_um=pixel_size_um,
                                         snr=snr, seed=10_000 + i)) for i in range(args.sections)]
            dcx = sum((r["dcx"] for r in rows), Detection(0, 0, 0))
            neun = sum((r["neun"] for r in rows), Detection(0, 0, 0))
            stages = pd.concat([r["stage_pairs"] for r in rows])
            print(f"| {pixel_size_um} | {snr:g} | {dcx.f1:.3f} | {np.mean([r['dcx_ap50'] for r in rows]):.3f} "
                  f"| {neun.f1:.3f} | {np.mean([r['neun_ap50'] for r in rows]):.3f} "
                  f"| {np.mean([r['gcl_iou'] for r in rows]):.3f} "
                  f"| {(stages['truth'] == stages['found']).mean():.3f} "
                  f"| {(stages['truth_group'] == stages['found_group']).mean():.3f} "
                  f"| {np.mean([r['colabel'] for r in rows]):.3f} "
                  f"| {np.mean([r['seconds'] for r in rows]):.1f} |", flush=True)


if __name__ == "__main__":
    main()
