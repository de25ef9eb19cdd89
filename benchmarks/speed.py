"""Speed and memory of one section's count, and the ratio to Cellpose-SAM on the same CPU.

Run from the repository root (results are recorded in docs/benchmarks.md)::

    .venv/bin/python benchmarks/speed.py --json speed.json

What it measures, on synthetic sections with DCX and NeuN (:func:`dcxcount.synth.make_section`,
0.65 um pixels, the generator's default density), with ``torch.set_num_threads(--threads)``:

1. **Pipeline time per stage**: :func:`dcxcount.pipeline.count_section` after a warm-up call
   on a small section (first-call costs of torch and numba are reported apart), median of
   ``--repeats`` calls per size, split by the step names ``count_section`` reports, with the
   process CPU time beside the wall time (CPU time > wall time means both cores were busy;
   CPU time much below wall time means other processes took the cores).
2. **Cost against area**: the same at ``--sizes`` (default 1024, 1448 and 2048 px: area x1, x2,
   x4), as seconds per megapixel.
3. **Ratio to Cellpose-SAM**: cellpose 4's network (``cellpose.vit.CPSAM``, ViT-L) with random
   weights (its compute does not depend on the values, and nothing is downloaded), float32 on
   the CPU, called through ``CellposeModel.eval`` exactly as dcxcount's ``cpsam`` engine calls
   it (same image, object diameter from the pixel size, 256 px tiles, batches of 8), for DCX
   and NeuN. A tile takes tens of seconds on 2 cores, so the network runs on the first
   ``--cpsam-tiles`` tiles only; the others return zeros and their time is extrapolated per
   tile from the measured ones (the report says how many tiles were run). The ratio compares Cellpose-SAM's network time alone with dcxcount's whole
   pipeline, so it understates the gap.
4. **Peak memory**: a fresh subprocess per size counts one section and reports its peak
   resident set (``VmHWM``), and the baseline after imports, reading and model loading.
5. **End to end**: ``dcxcount.batch.count_study`` (what ``dcxcount count`` runs) on a one-row
   samplesheet of the largest section written as OME-TIFF: reading, counting, writing the
   section's label images and the three tables, in the same warm process.
6. **The flow check**: cellpose's flow-consistency check (``flow_threshold=0.4``) against none
   (dcxcount's default for its own models) on the largest section: masks removed, AP at IoU 0.5
   against the generator's truth both ways, and the time the check costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcxcount.batch import count_study
from dcxcount.io import Section
from dcxcount.metrics import average_precision
from dcxcount.pipeline import count_section
from dcxcount.segment import load_engine
from dcxcount.segment.rescale import nearest_resize
from dcxcount.segment.specialist import OBJECT_DIAMETER_UM, masks_from_flows
from dcxcount.synth import SynthParams, make_section, write_section

PIXEL_SIZE_UM = 0.65
MARKERS = {"dcx": ("dcx", 0), "neun": ("nuclear", 1)}  # marker -> (object kind, channel)


def synthetic_section(size_px: int, *, seed: int = 1):
    """A DCX + NeuN section and its truth."""
    truth = make_section(SynthParams(shape_px=(size_px, size_px), pixel_size_um=PIXEL_SIZE_UM,
                                     markers=("dcx", "neun"), seed=seed))
    section = Section(path=Path(f"synthetic-{size_px}px"), data=truth.image, channel_names=truth.channel_names,
                      pixel_size_um=PIXEL_SIZE_UM, pixel_size_source="synthetic", projection="none")
    return section, truth


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def time_count(section: Section) -> dict:
    """Wall seconds of each step and of the whole call, and the process CPU seconds."""
    marks = []
    cpu, started = cpu_seconds(), time.perf_counter()
    count_section(section, progress=lambda fraction, name: marks.append((name, time.perf_counter())))
    ended = time.perf_counter()
    steps = {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}
    return {"total_s": ended - started, "cpu_s": cpu_seconds() - cpu, "steps_s": steps}


def median_of(runs: list[dict]) -> dict:
    steps = {name: statistics.median(run["steps_s"][name] for run in runs) for name in runs[0]["steps_s"]}
    return {"total_s": statistics.median(r["total_s"] for r in runs),
            "cpu_s": statistics.median(r["cpu_s"] for r in runs), "steps_s": steps, "repeats": len(runs)}


# ---------------------------------------------------------------------------- Cellpose-SAM


class _FirstTiles(torch.nn.Module):
    """Runs the wrapped network on the first ``n_real`` tiles it is given and answers zeros for the rest."""

    def __init__(self, net: torch.nn.Module, n_real: int) -> None:
        super().__init__()
        self.net, self.n_real = net, n_real
        self.tiles, self.tiles_run, self.seconds_run = 0, 0, 0.0

    @property
    def device(self) -> torch.device:
        return self.net.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    def forward(self, x: torch.Tensor):
        flows = torch.zeros((len(x), 3, *x.shape[-2:]), dtype=x.dtype)
        n_run = min(len(x), self.n_real - self.tiles_run)
        if n_run > 0:
            started = time.perf_counter()
            flows[:n_run] = self.net(x[:n_run])[0]
            self.seconds_run += time.perf_counter() - started
            self.tiles_run += n_run
        self.tiles += len(x)
        return flows, torch.zeros((len(x), 256), dtype=x.dtype)


def cpsam_network_seconds(image: np.ndarray, *, kind: str, net: torch.nn.Module, n_tiles: int) -> dict:
    """Cellpose-SAM's network time on ``image`` through ``CellposeModel.eval``, extrapolated per tile."""
    from cellpose import models

    wrapped = _FirstTiles(net, n_tiles)
    # CellposeModel.__init__ would look for (and download) the weights; eval only needs these.
    model = models.CellposeModel.__new__(models.CellposeModel)
    model.net, model.backbone, model.device, model.gpu = wrapped, "sam_vitl", torch.device("cpu"), False
    diameter_px = OBJECT_DIAMETER_UM[kind] / PIXEL_SIZE_UM  # what dcxcount's cpsam engine passes
    started = time.perf_counter()
    model.eval(np.asarray(image, np.float32), diameter=diameter_px, batch_size=8, compute_masks=False)
    rest_s = time.perf_counter() - started - wrapped.seconds_run
    per_tile = wrapped.seconds_run / wrapped.tiles_run
    return {"tiles": wrapped.tiles, "tiles_run": wrapped.tiles_run, "seconds_per_tile": per_tile,
            "network_s": per_tile * wrapped.tiles, "rest_of_eval_s": rest_s}


def cpsam(section: Section, *, n_tiles: int) -> dict:
    from cellpose.vit import CPSAM

    torch.manual_seed(0)
    net = CPSAM(dtype=torch.float32).eval()
    with torch.inference_mode():
        net(torch.zeros((1, 3, 256, 256)))  # warm-up: first-call costs are not per tile
    out = {"parameters_millions": sum(p.numel() for p in net.parameters()) / 1e6}
    for marker, (kind, channel) in MARKERS.items():
        out[marker] = cpsam_network_seconds(section.data[channel], kind=kind, net=net, n_tiles=n_tiles)
    out["network_s"] = sum(out[m]["network_s"] for m in MARKERS)
    return out


# ---------------------------------------------------------------------------- memory


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would carry the parent's over a fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def memory_probe(size_px: int) -> None:
    """In a fresh process: count one section, print peak memory as JSON."""
    section, _ = synthetic_section(size_px)
    for kind, _ in MARKERS.values():
        load_engine("specialist", kind=kind)
    baseline = peak_rss_mb()
    count_section(section)
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak_rss_mb()}))


def measure_memory(size_px: int, threads: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--memory-probe", str(size_px), "--threads", str(threads)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- end to end


def end_to_end_seconds(truth) -> float:
    """Wall seconds of ``count_study`` on one section file: read, count, write."""
    with tempfile.TemporaryDirectory() as folder:
        image = write_section(truth, Path(folder) / "section.ome.tif", truth=False)
        sheet = Path(folder) / "samplesheet.csv"
        sheet.write_text(f"path,animal\n{image.name},m1\n")
        started = time.perf_counter()
        count_study(sheet, out_dir=Path(folder) / "out")
        return time.perf_counter() - started


# ---------------------------------------------------------------------------- flow check


def flow_check(section: Section, truth) -> dict:
    out = {}
    for marker, (kind, channel) in MARKERS.items():
        model = load_engine("specialist", kind=kind)
        flows = model.predict(section.data[channel], pixel_size_um=section.pixel_size_um)
        kwargs = {"min_area_px": 15.0 / model.pixel_size_um**2, "diameter_px": OBJECT_DIAMETER_UM[kind] / model.pixel_size_um}
        row = {}
        for threshold in (0.0, 0.4):
            started = time.perf_counter()
            masks = masks_from_flows(flows, flow_threshold=threshold, **kwargs)
            seconds = time.perf_counter() - started
            masks = nearest_resize(masks, shape=section.data.shape[1:])
            row[str(threshold)] = {"masks": int(masks.max()), "seconds": seconds,
                                   "ap50": average_precision(truth.labels[marker], masks)}
        out[marker] = row
    return out


# ---------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "load_average_start": os.getloadavg()}


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"torch {results['machine']['torch']} with {results['machine']['torch_threads']} threads; "
             f"load average at start {results['machine']['load_average_start'][0]:.1f}, "
             f"at end {results['load_average_end'][0]:.1f}.", "",
             f"First call (torch/numba warm-up, 512 px): {results['warmup_s']:.1f} s", ""]
    sizes = results["sizes"]
    steps = list(next(iter(sizes.values()))["steps_s"])
    lines += ["| size (px) | megapixels | " + " | ".join(steps) + " | total (s) | CPU (s) | s per MP | peak RSS (MB) | of it before counting (MB) |",
              "|---" * (len(steps) + 7) + "|"]
    for size, row in sizes.items():
        mp = int(size) ** 2 / 1e6
        cells = " | ".join(f"{row['steps_s'][s]:.2f}" for s in steps)
        memory = row["memory"]
        lines.append(f"| {size} | {mp:.2f} | {cells} | {row['total_s']:.1f} | {row['cpu_s']:.1f} | "
                     f"{row['total_s'] / mp:.2f} | {memory['peak_mb']:.0f} | {memory['baseline_mb']:.0f} |")
    lines += ["", f"End to end (`count_study` on the {max(sizes, key=int)} px section as OME-TIFF: read, count, "
              f"write labels and tables): {results['end_to_end_s']:.1f} s"]
    if "cpsam" in results:
        c = results["cpsam"]
        largest = sizes[max(sizes, key=int)]
        lines += ["", f"Cellpose-SAM ({c['parameters_millions']:.0f} M parameters, random weights) on the "
                  f"{max(sizes, key=int)} px section:"]
        for marker in MARKERS:
            m = c[marker]
            lines.append(f"- {marker}: {m['tiles']} tiles of 256 px, {m['tiles_run']} run, "
                         f"{m['seconds_per_tile']:.2f} s per tile -> network {m['network_s']:.0f} s "
                         f"(+ {m['rest_of_eval_s']:.1f} s of eval's own pre/post-processing)")
        lines.append(f"- network time, both markers: {c['network_s']:.0f} s; dcxcount whole pipeline "
                     f"{largest['total_s']:.1f} s: **{c['network_s'] / largest['total_s']:.0f}x**")
    if "flow_check" in results:
        lines += ["", "Cellpose's flow check (flow_threshold 0.4) vs none, on the largest section:"]
        for marker, row in results["flow_check"].items():
            off, on = row["0.0"], row["0.4"]
            lines.append(f"- {marker}: {off['masks']} masks without, {on['masks']} with; AP50 {off['ap50']:.4f} vs "
                         f"{on['ap50']:.4f}; mask step {off['seconds']:.2f} s vs {on['seconds']:.2f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 1448, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpsam-tiles", type=int, default=3, help="Cellpose-SAM tiles actually run per marker")
    parser.add_argument("--skip-cpsam", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return

    results = {"machine": machine(), "sizes": {}}
    started = time.perf_counter()
    count_section(synthetic_section(512, seed=0)[0])
    results["warmup_s"] = time.perf_counter() - started
    for size in args.sizes:
        section, truth = synthetic_section(size)
        row = median_of([time_count(section) for _ in range(args.repeats)])
        row["memory"] = measure_memory(size, args.threads)
        results["sizes"][str(size)] = row
        print(f"{size} px: {row['total_s']:.1f} s", file=sys.stderr, flush=True)
    results["end_to_end_s"] = end_to_end_seconds(truth)
    results["flow_check"] = flow_check(section, truth)
    if not args.skip_cpsam:
        results["cpsam"] = cpsam(section, n_tiles=args.cpsam_tiles)
    results["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
