"""The layer frame from the true labels of synthetic sections, against the generator's truth.

Prints per seed the figures docs/validation.md gives under "Layer frame" and that
tests/test_gcl.py asserts: GCL IoU, area error, median |depth error|, median radial
angle, thickness error, SGZ length error. The tests' bars come from this script run on
the frozen test split (tests/splits.py):

    python benchmarks/gcl.py                                  # tests.splits.LAYERS, 512^2 px, 1 um
    python benchmarks/gcl.py --seeds 70111 70112 --size-px 768 --pixel-size-um 0.65
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcxcount.gcl import find_layer_frame  # noqa: E402
from dcxcount.synth import SynthParams, make_section  # noqa: E402


def measure(seed: int, *, size_px: int = 512, pixel_size_um: float = 1.0) -> dict[str, float]:
    section = make_section(SynthParams(shape_px=(size_px, size_px), pixel_size_um=pixel_size_um, seed=seed))
    ps = pixel_size_um
    frame = find_layer_frame(section.labels["neun"], pixel_size_um=ps, somata=section.labels["dcx"])
    truth = section.gcl_mask
    iou = (frame.gcl & truth).sum() / (frame.gcl | truth).sum()
    depth_error = np.abs(frame.depth - section.depth)[truth]
    cx, cy = section.info["centre_um"]
    phi0 = math.radians(section.info["orientation_deg"])
    half = math.radians(section.info["span_deg"]) / 2
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]] * ps
    inspan = np.abs(np.angle(np.exp(1j * (np.arctan2(yy - cy, xx - cx) - phi0)))) <= half
    dy, dx = frame.radial_direction()
    ty, tx = np.gradient(section.depth.astype(float))
    middle = truth & (section.depth > 0.2) & (section.depth < 0.8) & inspan
    cosine = (dy * ty + dx * tx)[middle] / np.hypot(ty, tx)[middle]
    angle = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    true_thickness = float(np.median(ps / np.hypot(ty, tx)[truth]))
    return {
        "iou": float(iou),
        "area_error": frame.gcl_area_mm2 / section.info["gcl_area_mm2"] - 1,
        "depth_error_median": float(np.median(depth_error)),
        "depth_error_p90": float(np.percentile(depth_error, 90)),
        "angle_median_deg": float(np.median(angle)),
        "angle_p90_deg": float(np.percentile(angle, 90)),
        "thickness_error": frame.thickness_um / true_thickness - 1,
        "thickness_um": frame.thickness_um,
        "true_thickness_um": true_thickness,
        "sgz_error": frame.sgz_length_mm * 1000 / section.info["sgz_length_um"] - 1,
    }


def main(argv: list[str] | None = None) -> None:
    from tests.splits import LAYERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(LAYERS))
    parser.add_argument("--size-px", type=int, default=512)
    parser.add_argument("--pixel-size-um", type=float, default=1.0)
    args = parser.parse_args(argv)
    rows = {seed: measure(seed, size_px=args.size_px, pixel_size_um=args.pixel_size_um) for seed in args.seeds}
    keys = list(next(iter(rows.values())))
    print("seed " + " ".join(f"{k:>18}" for k in keys))
    for seed, row in rows.items():
        print(f"{seed} " + " ".join(f"{row[k]:18.4f}" for k in keys), flush=True)
    for name, fn in (("min", np.min), ("max", np.max), ("mean", np.mean), ("sd", np.std)):
        print(f"{name:>4} " + " ".join(f"{fn([r[k] for r in rows.values()]):18.4f}" for k in keys))


if __name__ == "__main__":
    main()
