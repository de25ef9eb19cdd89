"""Counting a whole-section mosaic: time, peak memory and counts against the truth (docs/benchmarks.md).

A synthetic 20,000 x 15,000 px two-channel (DCX, NeuN) coronal section at
0.65 um: one dentate gyrus (``dcxcount.synth.make_section``, 2048^2 px, with
its truth) set into textured tissue with scattered NeuN+ nuclei on a dark
slide (``dcxcount.synth_mosaic.MosaicScene``), written as a tiled, pyramidal
OME-TIFF (512 px tiles, levels 1/4 and 1/16) window by window
(``dcxcount.mosaic.write_mosaic``), never whole in memory.

Each step runs in a fresh process, so its peak resident memory
(``ru_maxrss``) is its own:

1. ``write``: draw and write the mosaic (time).
2. ``count``: ``count_mosaic`` on the file: find the DG on the 2.6 um level,
   count its box in tiles (time, peak memory, counts against the truth).
3. ``ratio``: in one process, alternately, count the 2048^2 crop where the DG
   was placed (read from the mosaic, counted whole by ``count_section``) and
   the whole mosaic (``count_mosaic``), twice each after a warm-up; the ratio
   of their medians is the cost of finding and counting the DG in a whole
   section against counting a crop of it. Both share the CPU's load, so the
   ratio holds on a shared machine where the seconds do not.

Run::

    .venv/bin/python benchmarks/mosaic.py --json mosaic.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (15000, 20000)  # rows, columns: 9.75 x 13 mm at 0.65 um
PIXEL_SIZE_UM = 0.65
DG_PX = 2048
DG_CENTRE = (0.42, 0.31)  # fractions of rows and columns: one hemisphere's DG


def _section():
    from dcxcount.synth import SynthParams, make_section

    return make_section(SynthParams(shape_px=(DG_PX, DG_PX), pixel_size_um=PIXEL_SIZE_UM, markers=("dcx", "neun"),
                                    seed=7))


def _scene(section):
    from dcxcount.synth_mosaic import MosaicScene, place_sections

    return MosaicScene(shape=SHAPE, pixel_size_um=PIXEL_SIZE_UM,
                       sections=place_sections([section], shape=SHAPE, centres=[DG_CENTRE]))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _truth_counts(section) -> dict[str, int]:
    """What the pipeline should count: objects in the GCL or the SGZ up to 10 um into the hilus."""
    cells = section.cells
    counted = (cells["depth"] >= -10.0 / section.params.gcl_thickness_um) & (cells["depth"] <= 1.0)
    return {f"{m}_count": int((counted & (cells["marker"] == m)).sum()) for m in ("dcx", "neun")}


def _write(path: Path) -> dict:
    from dcxcount.mosaic import write_mosaic

    started = time.perf_counter()
    section = _section()
    scene = _scene(section)
    _, top, left = scene.sections[0]
    write_mosaic(path, scene.read, shape=SHAPE, channel_names=scene.channel_names, dtype=np.uint16,
                 pixel_size_um=PIXEL_SIZE_UM, scratch=path.parent)
    return {"seconds": time.perf_counter() - started, "file_mb": path.stat().st_size / 1e6, "top": top, "left": left,
            "truth": _truth_counts(section), "peak_rss_mb": _peak_rss_mb()}


def _count(path: Path, tile_px: int) -> dict:
    import torch

    from dcxcount.mosaic import count_mosaic, find_dentate_gyri, open_mosaic
    from dcxcount.segment import load_engine

    torch.set_num_threads(2)
    load_engine("specialist", kind="dcx")
    load_engine("specialist", kind="nuclear")
    before = _peak_rss_mb()
    started = time.perf_counter()
    with open_mosaic(path) as mosaic:
        find_dentate_gyri(mosaic, channel=1)
    finding = time.perf_counter() - started
    started = time.perf_counter()
    counted = count_mosaic(path, tile_px=tile_px)
    seconds = time.perf_counter() - started
    summaries = [{k: v for k, v in r.summary.items() if isinstance(v, (int, float, str))} for r in counted.results]
    return {"tile_px": tile_px, "seconds": seconds, "finding_seconds": finding, "peak_rss_mb": _peak_rss_mb(),
            "rss_before_mb": before,
            "regions": [r.describe(PIXEL_SIZE_UM) for r in counted.regions], "summaries": summaries}


def _ratio(path: Path, top: int, left: int, repeats: int) -> dict:
    import torch

    from dcxcount.io import section_from_arrays
    from dcxcount.mosaic import count_mosaic, open_mosaic
    from dcxcount.pipeline import count_section

    torch.set_num_threads(2)
    with open_mosaic(path) as mosaic:
        crop = mosaic.read(0, slice(top, top + DG_PX), slice(left, left + DG_PX))
    section = section_from_arrays(crop, channel_names=("DCX", "NeuN"), pixel_size_um=PIXEL_SIZE_UM, path=path)
    count_section(section)  # warm-up: torch's kernels, numba's compiled code
    crop_s, mosaic_s, counts = [], [], {}
    for _ in range(repeats):
        started = time.perf_counter()
        whole = count_section(section)
        crop_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        tiled = count_mosaic(path)
        mosaic_s.append(time.perf_counter() - started)
        counts = {"crop": {k: whole.summary[k] for k in ("dcx_count", "neun_count", "dcx_neun_count")},
                  "mosaic": {k: tiled.results[0].summary[k] for k in ("dcx_count", "neun_count", "dcx_neun_count")}}
    return {"crop_seconds": crop_s, "mosaic_seconds": mosaic_s,
            "ratio": statistics.median(mosaic_s) / statistics.median(crop_s), "counts": counts}


def _child(step: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", step, *args], check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--folder", type=Path, help="keep the mosaic here (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls of each in the ratio step")
    parser.add_argument("--reuse", action="store_true", help="reuse the mosaic already in --folder")
    parser.add_argument("--skip-ratio", action="store_true", help="leave out the timed comparison with a crop")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, path, *rest = args.child
        result = {"write": lambda: _write(Path(path)), "count": lambda: _count(Path(path), int(rest[0])),
                  "ratio": lambda: _ratio(Path(path), int(rest[0]), int(rest[1]), int(rest[2]))}[step]()
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "section.ome.tif"
        if args.reuse and path.is_file() and path.with_suffix(".json").is_file():
            written = json.loads(path.with_suffix(".json").read_text())
        else:
            written = _child("write", str(path))
            path.with_suffix(".json").write_text(json.dumps(written))
        results = {"shape": SHAPE, "pixel_size_um": PIXEL_SIZE_UM, "write": written}
        print("write", json.dumps(results["write"]), flush=True)
        results["count"] = _child("count", str(path), "2048")
        print("count", json.dumps(results["count"]), flush=True)
        # The same box in 512 px tiles (4 x 4 of them per marker): the counts must not move.
        results["count_512"] = _child("count", str(path), "512")
        print("count_512", json.dumps(results["count_512"]), flush=True)
        write = results["write"]
        if args.skip_ratio:
            results["ratio"] = None
        else:
            results["ratio"] = _child("ratio", str(path), str(write["top"]), str(write["left"]), str(args.repeats))
            print("ratio", json.dumps(results["ratio"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
