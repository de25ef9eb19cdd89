"""The ``dcxcount`` command line: ``count``, ``synth`` and ``train``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from .appearance import FAMILIES

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


def _families(value: str) -> tuple[str, ...]:
    """``--families``: 'all', 'none' or a comma-separated list of appearance families."""
    if value.strip().lower() in ("all", ""):
        return FAMILIES
    if value.strip().lower() == "none":
        return ()
    chosen = tuple(part.strip().lower() for part in value.split(","))
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    return chosen


def _channel_overrides(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        marker, sep, channel = value.partition("=")
        if not sep or not marker.strip() or not channel.strip():
            raise SystemExit(f"dcxcount: --channel expects MARKER=NAME_OR_INDEX, got '{value}'")
        overrides[marker.strip().lower()] = channel.strip()
    return overrides


def _model_choice(values: list[str]) -> tuple[str, dict[str, str]]:
    """``--model NAME`` sets the default engine, ``--model MARKER=NAME`` one marker's."""
    default, per_marker = "specialist", {}
    for value in values:
        marker, sep, name = value.partition("=")
        if sep:
            per_marker[marker.strip().lower()] = name.strip()
        else:
            default = value.strip()
    return default, per_marker


def _signal_thresholds(values: list[str], defaults: dict[str, float]) -> dict[str, float]:
    """``--signal-threshold MARKER=VALUE``: a number (raw intensity), ``auto`` (per section) or ``off``."""
    thresholds = dict(defaults)
    for value in values:
        marker, sep, setting = value.partition("=")
        marker, setting = marker.strip().lower(), setting.strip().lower()
        if setting == "auto":
            thresholds.pop(marker, None)
            continue
        try:
            thresholds[marker] = float("inf") if setting == "off" else float(setting)
        except ValueError:
            sep = ""
        if not sep or not marker:
            raise SystemExit(f"dcxcount: --signal-threshold expects MARKER=NUMBER, MARKER=auto or MARKER=off, "
                             f"got '{value}'")
    return thresholds


def _stage_rules(path: Path | None):
    """``--stage-rules FILE.json``: an object with any of :class:`StagingRules`' fields."""
    from dataclasses import fields

    from .morphology import StagingRules

    if path is None:
        return StagingRules()
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"dcxcount: {path}: cannot read the stage rules ({error})")
    known = [field.name for field in fields(StagingRules)]
    unknown = sorted(set(values) - set(known)) if isinstance(values, dict) else None
    if unknown is None or unknown:
        raise SystemExit(f"dcxcount: {path}: the stage rules must be a JSON object with keys among "
                         f"{', '.join(known)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return StagingRules(**values)


def _count(args: argparse.Namespace) -> int:
    from .batch import StudySettings, count_study
    from .pipeline import CountSettings
    from .segment import ModelNotAvailableError, kind_of_marker, load_engine
    from .study import SamplesheetError

    default_model, marker_models = _model_choice(args.model)
    defaults = CountSettings()
    overlap = defaults.min_overlap_fraction if args.min_overlap_fraction is None else args.min_overlap_fraction
    if not 0 < overlap <= 1:
        raise SystemExit(f"dcxcount: --min-overlap-fraction must be in (0, 1], got {overlap}")
    count = CountSettings(model=default_model, marker_models=marker_models,
                          channels=_channel_overrides(args.channel), min_overlap_fraction=overlap,
                          mean_thresholds=_signal_thresholds(args.signal_threshold, defaults.mean_thresholds),
                          staging=_stage_rules(args.stage_rules))
    try:
        # Fail before the batch starts when a model itself is missing.
        for marker in ("dcx", "neun", *marker_models):
            load_engine(marker_models.get(marker, default_model), kind=kind_of_marker(marker))
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
                       truth=not args.no_truth, families=args.families, split=args.split)
    print(f"wrote {sheet}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from .io import SectionReadError
    from .segment import bundled_model_path, load_specialist, save_specialist
    from .segment.training import (FINE_TUNE_LEARNING_RATE, FINE_TUNE_STEPS, TrainingDataError, file_sha256,
                                   read_labelled_sections, score_model, split_sections, synthetic_samples,
                                   train_specialist)

    def fail(message: str) -> int:
        print(f"dcxcount: {message}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.data is not None and args.base is None:
        return fail("--data fine-tunes a model: add --from specialist (the bundled model) or --from MODEL")
    if args.base == "specialist" and args.kind is None:
        return fail("--from specialist needs --kind dcx or --kind nuclear (which bundled model)")
    if args.base == "specialist":
        base_path = bundled_model_path(args.kind)
    else:
        base_path = Path(args.base) if args.base else None
    try:
        base = load_specialist(base_path) if base_path else None
    except (OSError, ValueError) as error:
        return fail(str(error))
    kind = args.kind or (base.kind if base else None)
    if kind is None:
        return fail("--kind dcx or --kind nuclear is needed to train a new model (without --from)")
    # Fine-tuning starts from learnt features: fewer, gentler steps than training from random weights.
    steps = args.steps or (FINE_TUNE_STEPS if base else 1500)
    learning_rate = args.learning_rate or (FINE_TUNE_LEARNING_RATE if base else 2e-3)
    # Rebuilt from the parsed settings, defaults filled in, so the card shows a
    # command that reproduces the model even when main() was called with a list.
    command = ["dcxcount", "train", "--out", str(args.out), "--kind", kind]
    if args.base:
        command += ["--from", args.base]
    if args.data is not None:
        command += ["--data", str(args.data), "--val-fraction", f"{args.val_fraction:g}"]
        command += [part for channel in args.channel for part in ("--channel", channel)]
        command += ["--pixel-size-um", f"{args.pixel_size_um:g}"] if args.pixel_size_um else []
    else:
        command += ["--sections", str(args.sections), "--size-px", str(args.size_px),
                    "--families", ",".join(args.families) or "none"]
    command += ["--steps", str(steps), "--batch-size", str(args.batch_size), "--learning-rate", f"{learning_rate:g}",
                "--seed", str(args.seed)]
    info = {
        "command": shlex.join(command),
        "base_model": {"path": str(base_path), "sha256": file_sha256(base_path)} if base else None,
        "steps": steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "learning_rate": learning_rate,
    }
    if args.data is not None:
        try:
            sections = read_labelled_sections(args.data, kind=kind, pixel_size_um=args.pixel_size_um,
                                              channels=_channel_overrides(args.channel))
            train, validation = split_sections(sections, val_fraction=args.val_fraction, seed=args.seed)
        except (TrainingDataError, SectionReadError) as error:
            return fail(str(error))
        print(f"{len(sections)} labelled sections in {args.data}: {len(train)} to train on, "
              f"{len(validation)} to validate on ({', '.join(s.name for s in validation)})", file=sys.stderr)
        before = score_model(base, validation)
        samples = [sample for section in train for sample in section.samples]
        info.update({
            "training_data": {"folder": str(Path(args.data).resolve()),
                              "files": [{"file": path.name, "sha256": file_sha256(path)}
                                        for section in sections for path in section.files]},
            "n_train_sections": len(train),
            "n_val_sections": len(validation),
            "train_sections": [s.name for s in train],
            "val_sections": [s.name for s in validation],
        })
    else:
        samples = synthetic_samples(kind=kind, n_sections=args.sections, size_px=args.size_px, seed=args.seed,
                                    families=args.families)
        info["training_data"] = (f"{args.sections} synthetic sections of {args.size_px}^2 px "
                                 f"(dcxcount.segment.training.synthetic_samples, seed {args.seed}), appearance "
                                 f"families randomised: {', '.join(args.families) or 'none (plain look)'}")
    # A lab's few corrected sections give noisy batch statistics (keep the base's); many
    # synthetic sections of new looks need them re-estimated.
    model = train_specialist(samples, kind=kind, base=base, n_steps=steps, batch_size=args.batch_size,
                             learning_rate=learning_rate, seed=args.seed, progress=_progress_bar("train"),
                             freeze_batchnorm=base is not None and args.data is not None)
    if args.data is not None:
        after = score_model(model, validation)
        info["validation"] = {"max_distance_um": 5.0, "before": before, "after": after}
        for marker in after["by_marker"]:
            was, now = before["by_marker"][marker], after["by_marker"][marker]
            print(f"validation {marker}: F1 {was['f1']} -> {now['f1']}, AP@0.5 {was['ap50']} -> {now['ap50']} "
                  f"({now['n_true']} objects in {len(validation)} sections)")
    info["train_seconds"] = round(time.perf_counter() - started, 1)
    model.info.update(info)
    path = save_specialist(model, args.out)
    print(f"wrote {path} and its model card {path.with_suffix('.json').name} "
          f"(final loss {model.info['final_loss']:.3f}, {info['train_seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcxcount", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    count = commands.add_parser("count", help="count every section of a samplesheet")
    count.add_argument("samplesheet", type=Path,
                       help="CSV with columns path, animal[, group, section, outline, ...]; outline: a GCL "
                            "drawn by hand (ImageJ .roi/.zip, GeoJSON or mask TIFF) replacing the detected one")
    count.add_argument("--out", type=Path, required=True, help="results folder")
    count.add_argument("--channel", action="append", default=[], metavar="MARKER=NAME_OR_INDEX",
                       help="which channel holds a marker (dcx, neun, dapi, brdu, edu); repeatable")
    count.add_argument("--model", action="append", default=[], metavar="[MARKER=]NAME_OR_PATH",
                       help="'specialist' (bundled, default), 'cpsam' (Cellpose-SAM) or a model file; "
                            "MARKER=... chooses for one marker (e.g. --model neun=cpsam); repeatable")
    count.add_argument("--pixel-size-um", type=float, help="pixel size, overriding the files' own")
    count.add_argument("--workers", type=int, default=1, help="sections counted in parallel (Dask)")
    count.add_argument("--scheduler", help="address of a Dask scheduler to run on")
    count.add_argument("--section-interval", type=int, default=6, help="every k-th section was counted")
    count.add_argument("--hemispheres", type=int, choices=(1, 2), default=2,
                       help="hemispheres counted per section (estimates double one)")
    count.add_argument("--thickness-um", type=float, help="section thickness, for the GCL volume")
    count.add_argument("--min-overlap-fraction", type=float,
                       help="an object is positive for another marker when one of that marker's objects covers "
                            "at least this fraction of the smaller of the two (default 0.5)")
    count.add_argument("--signal-threshold", action="append", default=[], metavar="MARKER=NUMBER|auto|off",
                       help="... or when that marker's mean signal over it reaches this threshold (raw intensity); "
                            "auto: per section from its background and its objects' brightness (the default, "
                            "reported as <marker>_threshold in sections.csv; off for dcx unless asked); repeatable")
    count.add_argument("--stage-rules", type=Path, metavar="FILE.json",
                       help="thresholds of the stage rules A-F replacing the defaults, e.g. "
                            '{"stub_um": 8, "radial_max_angle_deg": 40} (see docs/validation.md)')
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
    synth.add_argument("--families", type=_families, default=(), metavar="LIST",
                       help="appearance families each section draws at random (docs/validation.md): comma-"
                            f"separated from {','.join(FAMILIES)}, or 'all'; default none (the plain look)")
    synth.add_argument("--split", choices=("train", "test"), default="train",
                       help="draw those families' knobs from their training ranges or their held-out bands")
    synth.set_defaults(run=_synth)

    data_format = """\
fine-tuning data (--data DIR), the files `dcxcount count` writes, corrected:
  DIR/NAME.tif or DIR/NAME.ome.tif   a section image (channel names and pixel size
                                     from the file, or --channel / --pixel-size-um)
  DIR/NAME_labels_MARKER.tif         its corrected labels for MARKER (dcx, neun, dapi,
                                     brdu, edu): integers, one per object, 0 background,
                                     the image's Y x X shape (as count's
                                     OUT/sections/<key>/labels_MARKER.tif)
--kind dcx learns dcx labels, --kind nuclear those of every nuclear marker. Whole
sections are held out for validation (--val-fraction, at least one); detection F1
before and after is printed and stored in the model card.

examples:
  dcxcount train --from specialist --kind dcx --data corrected/ --out lab_dcx.safetensors
  dcxcount train --kind dcx --out specialist_dcx.safetensors --sections 24 --steps 1500
"""
    train = commands.add_parser(
        "train", help="train a specialist model on synthetic sections, or fine-tune one on corrected sections",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=data_format)
    train.add_argument("--out", type=Path, required=True, help="new model file (.safetensors); "
                                                                "its model card is written beside it (.json)")
    train.add_argument("--from", dest="base", metavar="MODEL",
                       help="start from this specialist model file, or 'specialist' for the bundled one")
    train.add_argument("--data", type=Path, metavar="DIR",
                       help="fine-tune on the corrected sections in DIR (format below); needs --from")
    train.add_argument("--kind", choices=("dcx", "nuclear"),
                       help="objects to learn: dcx somata or nuclei (default: the --from model's kind)")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of the --data sections held out for validation (at least one)")
    train.add_argument("--channel", action="append", default=[], metavar="MARKER=NAME_OR_INDEX",
                       help="which channel of the --data images holds a marker; repeatable")
    train.add_argument("--pixel-size-um", type=float, help="pixel size of the --data images, overriding the files'")
    train.add_argument("--steps", type=int,
                       help="optimisation steps (default 300 with --from, 1500 from scratch)")
    train.add_argument("--batch-size", type=int, default=8,
                       help="128 px crops per step; time per step grows with it")
    train.add_argument("--learning-rate", type=float,
                       help="peak learning rate (default 5e-4 with --from, 2e-3 from scratch)")
    train.add_argument("--sections", type=int, default=24, help="synthetic sections (without --data)")
    train.add_argument("--size-px", type=int, default=512, help="synthetic section size (without --data)")
    train.add_argument("--families", type=_families, default=FAMILIES, metavar="LIST",
                       help="appearance families randomised in the synthetic sections (without --data): comma-"
                            f"separated from {','.join(FAMILIES)}; 'all' (default) or 'none' (the plain look)")
    train.add_argument("--seed", type=int, default=0, help="seeds the training and the validation split")
    train.add_argument("--threads", type=int, default=2)
    train.set_defaults(run=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
