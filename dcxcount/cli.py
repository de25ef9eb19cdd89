"""The ``dcxcount`` command line: ``count``, ``synth`` and ``train``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _progress_bar(description: str):
    """A ``progress(done, total, message)`` callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="section" if description == "count" else "step",
                       file=sys.stderr, dynamic_ncols=True)
        bar.set_postfix_str(message, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def _channel_overrides(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        marker, sep, channel = value.partition("=")
        if not sep or not marker.strip() or not channel.strip():
            raise SystemExit(f"dcxcount: --channel expects MARKER=NAME_OR_INDEX, got '{value}'")
        overrides[marker.strip().lower()] = channel.strip()
    return overrides


def _count(args: argparse.Namespace) -> int:
    from .batch import StudySettings, count_study
    from .pipeline import CountSettings
    from .segment import ModelNotAvailableError, kind_of_marker, load_engine
    from .study import SamplesheetError

    count = CountSettings(model=args.model, channels=_channel_overrides(args.channel))
    try:
        # Fail before the batch starts when the model itself is missing.
        for kind in {kind_of_marker(m) for m in ("dcx", "neun")}:
            load_engine(args.model, kind=kind)
    except ModelNotAvailableError as error:
        print(f"dcxcount: {error}", file=sys.stderr)
        return 2
    settings = StudySettings(count=count, pixel_size_um=args.pixel_size_um,
                             section_interval=args.section_interval, hemispheres=args.hemispheres,
                             thickness_um=args.thickness_um)
    started = time.perf_counter()
    try:
        result = count_study(args.samplesheet, out_dir=args.out, settings=settings, workers=args.workers,
                             scheduler=args.scheduler, progress=_progress_bar("count"))
    except SamplesheetError as error:
        print(f"dcxcount: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    for row in result.sections.itertuples():
        if row.status != "ok":
            print(f"dcxcount: {row.path}: {row.status}", file=sys.stderr)
    n = len(result.sections)
    print(f"counted {n - result.n_failed}/{n} sections of {len(result.animals)} animals in {elapsed:.1f} s; "
          f"tables in {Path(args.out).resolve()}")
    return 1 if result.n_failed else 0


def _synth(args: argparse.Namespace) -> int:
    from .synth import SynthParams, make_study

    base = SynthParams(shape_px=(args.size_px, args.size_px), pixel_size_um=args.pixel_size_um,
                       markers=tuple(args.markers.split(",")), snr=args.snr,
                       dcx_per_mm_sgz=args.dcx_per_mm_sgz)
    sheet = make_study(args.out, animals_per_group=args.animals_per_group,
                       sections_per_animal=args.sections_per_animal, base=base, seed=args.seed,
                       truth=not args.no_truth)
    print(f"wrote {sheet}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from .segment import load_specialist, save_specialist
    from .segment.training import synthetic_samples, train_specialist

    torch.set_num_threads(args.threads)
    base = load_specialist(args.base) if args.base else None
    started = time.perf_counter()
    samples = synthetic_samples(kind=args.kind, n_sections=args.sections, size_px=args.size_px, seed=args.seed)
    model = train_specialist(samples, kind=args.kind, base=base, n_steps=args.steps, seed=args.seed,
                             progress=_progress_bar("train"))
    model.info.update({
        "command": "dcxcount train " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        "training_data": f"{args.sections} synthetic sections of {args.size_px}^2 px "
                         f"(dcxcount.segment.training.synthetic_samples, seed {args.seed})",
        "base_model": str(args.base) if args.base else None,
        "steps": args.steps,
        "train_seconds": round(time.perf_counter() - started, 1),
    })
    path = save_specialist(model, args.out)
    print(f"wrote {path} (final loss {model.info['final_loss']:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcxcount", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    count = commands.add_parser("count", help="count every section of a samplesheet")
    count.add_argument("samplesheet", type=Path, help="CSV with columns path, animal[, group, section, ...]")
    count.add_argument("--out", type=Path, required=True, help="results folder")
    count.add_argument("--channel", action="append", default=[], metavar="MARKER=NAME_OR_INDEX",
                       help="which channel holds a marker (dcx, neun, dapi, brdu, edu); repeatable")
    count.add_argument("--model", default="specialist",
                       help="'specialist' (bundled, default), 'cpsam' (Cellpose-SAM) or a model file")
    count.add_argument("--pixel-size-um", type=float, help="pixel size, overriding the files' own")
    count.add_argument("--workers", type=int, default=1, help="sections counted in parallel (Dask)")
    count.add_argument("--scheduler", help="address of a Dask scheduler to run on")
    count.add_argument("--section-interval", type=int, default=6, help="every k-th section was counted")
    count.add_argument("--hemispheres", type=int, choices=(1, 2), default=2,
                       help="hemispheres counted per section (estimates double one)")
    count.add_argument("--thickness-um", type=float, help="section thickness, for the GCL volume")
    count.set_defaults(run=_count)

    synth = commands.add_parser("synth", help="write a synthetic study with ground truth")
    synth.add_argument("out", type=Path)
    synth.add_argument("--animals-per-group", type=int, default=3)
    synth.add_argument("--sections-per-animal", type=int, default=2)
    synth.add_argument("--size-px", type=int, default=1024)
    synth.add_argument("--pixel-size-um", type=float, default=0.65)
    synth.add_argument("--markers", default="dcx,neun,dapi", help="channels, comma-separated")
    synth.add_argument("--snr", type=float, default=8.0, help="cell signal over background noise")
    synth.add_argument("--dcx-per-mm-sgz", type=float, default=60.0, help="DCX+ cells per mm of SGZ")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--no-truth", action="store_true", help="write only images and samplesheet")
    synth.set_defaults(run=_synth)

    train = commands.add_parser("train", help="train a specialist model on synthetic sections")
    train.add_argument("--kind", choices=("dcx", "nuclear"), required=True)
    train.add_argument("--out", type=Path, required=True, help="model file (.safetensors)")
    train.add_argument("--from", dest="base", type=Path, help="fine-tune this specialist model")
    train.add_argument("--sections", type=int, default=24)
    train.add_argument("--size-px", type=int, default=512)
    train.add_argument("--steps", type=int, default=1500)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=2)
    train.set_defaults(run=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
