"""Throughput of ``--workers N`` against one worker, on this machine.

Method: a synthetic study of sections that take over 5 s each on one core
(1448 x 1448 px, DCX and NeuN, 0.65 um) is counted with :func:`dcxcount.batch.run_study`
into a fresh results folder per run, in this one process after a warm-up section
(so that every run finds the models loaded, as the sections of a long study do):

- **1 worker, 1 core**: ``workers=1`` with torch and BLAS held to one thread:
  the "one worker" of the target (N workers on N cores >= 0.8 x N of its throughput);
- **serial**: ``workers=1`` as a user runs it, torch on every core: ``--workers N``
  must never be slower than this;
- **N workers**: ``workers=N``, N sections at once in threads, ``cores // N``
  compute threads each.

The runs alternate, ``--rounds`` times, so that load from other jobs falls on all
alike; the figures are ratios within a round. CPU time is this process's user +
system time. Then, for memory, the command line is run once with ``--workers 1``
and once with ``--workers N`` in fresh processes, and the peak resident memory of
each is sampled every 0.2 s (process start and model loading included).

    .venv/bin/python benchmarks/workers.py --json benchmarks/results/workers.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

from dcxcount.batch import StudySettings, _compute_threads, plan_study, run_study
from dcxcount.io import read_section
from dcxcount.memory import available_cpus
from dcxcount.pipeline import count_section
from dcxcount.synth import SynthParams, make_study


def _timed(sheet: Path, out: Path, *, workers: int, settings: StudySettings) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    plan = plan_study(sheet, out_dir=out, settings=settings)
    started, cpu = time.perf_counter(), time.process_time()
    result = run_study(plan, workers=workers)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if result.n_failed:
        raise RuntimeError(f"{out}: {result.n_failed} sections failed")
    n = len(result.sections)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "sections_per_min": round(60 * n / wall, 2),
            "dcx_count": int(result.sections["dcx_count"].sum())}


def _peak_rss(command: list[str]) -> dict:
    """Wall time and the peak summed resident memory of a command's process tree."""
    started = time.perf_counter()
    process = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        rss = 0
        for p in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
        peak = max(peak, rss)
        time.sleep(0.2)
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}")
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size-px", type=int, default=1448)
    parser.add_argument("--sections", type=int, default=16, help="sections in the study (a multiple of 4)")
    parser.add_argument("--folder", type=Path, help="keep the study here (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="dcxcount-workers-"))
    sheet = folder / "study" / "samplesheet.csv"
    if not sheet.exists():
        make_study(folder / "study", groups=("a", "b"), animals_per_group=args.sections // 4, sections_per_animal=2,
                   base=SynthParams(shape_px=(args.size_px,) * 2, pixel_size_um=0.65, markers=("dcx", "neun")),
                   seed=14_005, truth=False)
    settings = StudySettings(section_interval=6, hemispheres=2)
    first = next((folder / "study").rglob("*.tif"))
    count_section(read_section(first))  # warm-up: models loaded, as for every section of a long study but the first
    cores = available_cpus() or 1
    # One worker on one core: the pools held to one thread, as each of `cores` workers would have them.
    one_core = functools.partial(_compute_threads, cores)
    configs = {"1 worker, 1 core": (1, one_core), "serial": (1, contextlib.nullcontext),
               f"{args.workers} workers": (args.workers, contextlib.nullcontext)}
    rounds = []
    for round_ in range(args.rounds):
        found = {"load_average_before": [round(x, 1) for x in os.getloadavg()]}
        for name, (workers, limits) in configs.items():
            with limits():
                found[name] = _timed(sheet, folder / f"out-{workers}-{len(found)}", workers=workers,
                                     settings=settings)
            print(round_, name, found[name], flush=True)
        one, serial, many = (found[name]["sections_per_min"] for name in configs)
        found["efficiency_vs_one_core"] = round(many / (args.workers * one), 2)
        found["speedup_vs_serial"] = round(many / serial, 2)
        print(round_, "efficiency", found["efficiency_vs_one_core"], "speed-up over serial",
              found["speedup_vs_serial"], flush=True)
        rounds.append(found)
    dcxcount = str(Path(sys.executable).with_name("dcxcount"))
    memory = {f"--workers {n}": _peak_rss([dcxcount, "count", str(sheet), "--out", str(folder / f"cli-{n}"),
                                           "--workers", str(n), "--section-interval", "6", "--hemispheres", "2"])
              for n in (1, args.workers)}
    print("command line", memory, flush=True)
    result = {"cores": cores, "sections": args.sections, "size_px": args.size_px, "torch": torch.__version__,
              "rounds": rounds, "command_line": memory}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
