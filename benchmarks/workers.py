"""Throughput of ``dcxcount count --workers N`` against one worker, on this machine.

Method: a synthetic study of sections that take over 5 s each (1448 x 1448 px, DCX
and NeuN) is counted by the command line, as a user runs it, into a fresh results
folder per run: ``--workers 1`` (in one process, torch using every core) and
``--workers N`` (N Dask worker processes, each with cores // N threads). The runs
alternate, ``--rounds`` times, so that load from other jobs on a shared machine
falls on both alike; the figures are ratios within a round. Wall time is the
command's, start to end (process start, model loading and the Dask cluster's
start included); peak memory is the largest summed resident set of the command's
process tree, sampled every 0.2 s.

Also run, for comparison, what dcxcount did before it shared the cores out:
``--workers N`` with every worker running as many compute threads as there are
cores (``OMP_NUM_THREADS`` etc. set to the core count, as HPC modules often do,
and dcxcount's own split switched off), i.e. N x cores threads on the cores.

CPU time is the summed user + system time of the command's process tree: a
figure of the work done, which load from other jobs changes far less than
the wall time. Sections per CPU-minute alike in both configurations means
parallel counting wastes no work; the wall-time ratio then depends on the cores
the run actually got.

    .venv/bin/python benchmarks/workers.py --json workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from dcxcount.synth import SynthParams, make_study


def _run(command: list[str], *, env: dict[str, str]) -> dict:
    started = time.perf_counter()
    process = psutil.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak, cpu = 0, {}
    while process.poll() is None:
        rss = 0
        for p in [process, *_children(process)]:
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    times = p.cpu_times()
                    # Each process's own time only: a worker's is also added to its parent's children_*
                    # times when it ends, which would count it twice.
                    cpu[p.pid] = times.user + times.system
            except psutil.Error:
                pass
        peak = max(peak, rss)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    out = process.stdout.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}: {out}")
    return {"wall_s": round(wall, 1), "cpu_s": round(sum(cpu.values()), 1), "peak_rss_mb": round(peak / 2**20)}


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size-px", type=int, default=1448)
    parser.add_argument("--sections", type=int, default=8, help="sections in the study (even)")
    parser.add_argument("--folder", type=Path, help="keep the study here (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="dcxcount-workers-"))
    sheet = folder / "study" / "samplesheet.csv"
    if not sheet.exists():
        make_study(folder / "study", groups=("a", "b"), animals_per_group=args.sections // 4, sections_per_animal=2,
                   base=SynthParams(shape_px=(args.size_px,) * 2, pixel_size_um=0.65, markers=("dcx", "neun")),
                   seed=14_005, truth=False)
    cores = len(os.sched_getaffinity(0))
    dcxcount = str(Path(sys.executable).with_name("dcxcount"))
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
    oversubscribed = {**base_env, **{k: str(cores) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    configs = {"1 worker": (1, base_env), f"{args.workers} workers": (args.workers, base_env),
               f"{args.workers} workers, {cores} threads each": (args.workers, oversubscribed)}
    # The last one without dcxcount's split of the cores between workers (batch._worker_threads).
    unsplit = [sys.executable, "-c", "import contextlib, sys; import dcxcount.batch as b; "
               "b._worker_threads = lambda workers: contextlib.nullcontext(); from dcxcount.cli import main; "
               "sys.exit(main(sys.argv[1:]))"]
    rounds = []
    for round_ in range(args.rounds):
        found = {"load_average_before": [round(x, 1) for x in os.getloadavg()]}
        for name, (workers, env) in configs.items():
            out = folder / f"out-{round_}-{workers}-{len(found)}"
            shutil.rmtree(out, ignore_errors=True)
            program = unsplit if env is oversubscribed else [dcxcount]
            found[name] = _run([*program, "count", str(sheet), "--out", str(out), "--workers", str(workers),
                                "--section-interval", "6", "--hemispheres", "2"], env=env)
            found[name]["sections_per_min"] = round(60 * args.sections / found[name]["wall_s"], 2)
            found[name]["sections_per_cpu_min"] = round(60 * args.sections / found[name]["cpu_s"], 2)
            print(round_, name, found[name], flush=True)
        one = found["1 worker"]["wall_s"]
        found["speedup"] = {name: round(one / found[name]["wall_s"], 2) for name in configs}
        found["efficiency"] = {name: round(one / found[name]["wall_s"] / configs[name][0], 2) for name in configs}
        print(round_, "speedup", found["speedup"], "efficiency", found["efficiency"], flush=True)
        rounds.append(found)
    result = {"cores": cores, "sections": args.sections, "size_px": args.size_px, "rounds": rounds}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
