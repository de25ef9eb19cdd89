"""The ``dcxcount`` command line: ``count``, ``synth`` and ``train``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

from .appearance import FAMILIES

__all__ = ["main", "EXIT_OK", "EXIT_SECTIONS_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERNAL_ERROR"]

EXIT_OK = 0
"""Every section was counted."""
EXIT_SECTIONS_FAILED = 1
"""Some sections failed (each is listed with its reason); the tables were written."""
EXIT_BAD_INPUT = 2
"""The samplesheet or an option is wrong: nothing was counted."""
EXIT_INTERNAL_ERROR = 3
"""dcxcount itself failed (a bug, or the results could not be written)."""

EXIT_STATUSES = """\
exit status:
  0  every section was counted
  1  some sections failed (each is listed with its reason); the tables were written
  2  the samplesheet or an option is wrong: nothing was counted
  3  internal error (a bug, or the tables could not be written)
"""


class OptionError(Exception):
    """A command-line value that cannot be used; the message is one line per problem, naming the option."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (not the usage text first) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _whole_at_least(lowest: int):
    """argparse type: a whole number >= ``lowest``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {lowest}, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {lowest}, got {text!r}")
        return value
    return parse


def _number_in(low: float, high: float = math.inf):
    """argparse type: a finite number in (``low``, ``high``]."""
    wanted = f"a number > {low:g}" if high == math.inf else f"a number in ({low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low < value <= high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse


_positive_number = _number_in(0)
_fraction = _number_in(0, 1)


def _progress_bar(description: str):
    """A ``progress(fraction, message)`` callback (:mod:`dcxcount.progress`) drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = None

    def progress(fraction: float, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=100, desc=description, unit="%", file=sys.stderr, dynamic_ncols=True,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}")
        bar.set_postfix_str(for_terminal(message), refresh=False)
        bar.update(round(100 * fraction) - bar.n)
        if fraction >= 1.0:
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
            raise OptionError(f"--channel expects MARKER=NAME_OR_INDEX, got '{value}'")
        overrides[marker.strip().lower()] = channel.strip()
    return overrides


def _model_choice(values: list[str]) -> tuple[str, dict[str, str]]:
    """``--model NAME`` sets the default engine, ``--model MARKER=NAME`` one marker's."""
    default, per_marker = "specialist", {}
    for value in values:
        marker, sep, name = value.partition("=")
        if sep:
            if not marker.strip() or not name.strip():
                raise OptionError(f"--model expects NAME_OR_PATH or MARKER=NAME_OR_PATH, got '{value}'")
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
        if sep and marker and setting == "auto":
            thresholds.pop(marker, None)  # absent means automatic; _unknown_markers checks the name
            continue
        try:
            number = math.inf if setting == "off" else float(setting)
        except ValueError:
            number = math.nan
        # "inf" and "nan" parse as floats; only "off" may switch the criterion off.
        if not sep or not marker or not (math.isfinite(number) or setting == "off"):
            raise OptionError(f"--signal-threshold expects MARKER=NUMBER, MARKER=auto or MARKER=off, got '{value}'")
        thresholds[marker] = number
    return thresholds


def _stage_rules(path: Path | None):
    """``--stage-rules FILE.json``: an object with any of :class:`StagingRules`' fields, each in its range."""
    from dataclasses import fields

    from .checks import staging_problems
    from .staging import StagingRules

    if path is None:
        return StagingRules()
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise OptionError(f"--stage-rules {path}: cannot read the stage rules ({reason})") from error
    known = [field.name for field in fields(StagingRules)]
    unknown = sorted(set(values) - set(known)) if isinstance(values, dict) else None
    if unknown is None or unknown:
        raise OptionError(f"--stage-rules {path}: the stage rules must be a JSON object with keys among "
                          f"{', '.join(known)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    rules = StagingRules(**values)
    problems = staging_problems(rules)
    if problems:
        raise OptionError("\n".join(f"--stage-rules {path}: {problem}" for problem in problems))
    return rules


def _unknown_markers(args: argparse.Namespace, markers: frozenset[str]) -> list[str]:
    """``--signal-threshold MARKER=auto`` for a marker the run does not count: said, as for a number."""
    problems = []
    for value in args.signal_threshold:
        marker = value.partition("=")[0].strip().lower()
        if marker not in markers:
            problems.append(f"--signal-threshold {value}: this run counts no marker {marker!r} (it counts "
                            f"{', '.join(sorted(markers))}); name its channel with --channel {marker}=INDEX_OR_NAME")
    return list(dict.fromkeys(problems))


SETTING_OPTIONS = {
    "pixel_size_um": "--pixel-size-um",
    "channels": "--channel",
    "model": "--model",
    "marker_models": "--model",
    "workers": "--workers",
    "scheduler": "--scheduler",
    "out_dir": "--out",
    "min_overlap_fraction": "--min-overlap-fraction",
    "mean_thresholds": "--signal-threshold",
    "staging": "--stage-rules",
    "section_interval": "--section-interval",
    "hemispheres": "--hemispheres",
    "thickness_um": "--thickness-um",
    "kind": "--kind",
}
"""Each setting the core names in its messages (a keyword or settings field) and the option that sets it.

The core names settings, never options: it also serves the napari plugin and
Python callers. :func:`for_terminal` puts the option in the setting's place."""

# How the core writes a setting in a message: `name`, `name=VALUE` or `name[KEY]=VALUE`.
_SETTING = re.compile(r"`(?P<name>[A-Za-z_]\w*)(?:\[(?P<key>[^\]`]+)\])?(?:=(?P<value>[^`]*))?`")


def for_terminal(message: object) -> str:
    """A core message as the command line says it: each setting in backticks becomes its option.

    "`pixel_size_um`" becomes "--pixel-size-um", "`pixel_size_um=0.65`"
    "--pixel-size-um 0.65" and "`channels[dcx]=0`" "--channel dcx=0"; a setting
    without an option (:data:`SETTING_OPTIONS`) only loses its backticks.
    """
    def option(match: re.Match) -> str:
        name, key, value = match.group("name", "key", "value")
        flag = SETTING_OPTIONS.get(name)
        if flag is None:
            return match[0][1:-1]
        if key is not None:
            return f"{flag} {key}" + ("" if value is None else f"={value}")
        return flag if value is None else f"{flag} {value}"

    return _SETTING.sub(option, str(message))


def _say(message: object) -> None:
    """One line per line of ``message`` on stderr, each starting with ``dcxcount:``; settings named as options.

    Every message the command line prints passes here, so a core message
    (an error, a notice, a section's status) shows the options of
    :data:`SETTING_OPTIONS` where the core names a setting.
    """
    for line in for_terminal(message).splitlines():
        print(f"dcxcount: {line}", file=sys.stderr)


def _default_notes(args: argparse.Namespace, sheet) -> list[str]:
    """The defaults that change the estimated totals, where a row uses them (they are not given)."""
    notes = []
    defaults = _study_defaults()
    if args.section_interval is None and sheet["section_interval"].isna().any():
        notes.append(f"note: --section-interval not given: the estimated totals assume every "
                     f"{defaults.section_interval}th section was counted "
                     f"(--section-interval {defaults.section_interval})")
    if args.hemispheres is None and sheet["hemispheres"].isna().any():
        notes.append(f"note: --hemispheres not given: the estimated totals assume both hemispheres were counted "
                     f"in each section (--hemispheres {defaults.hemispheres})")
    return notes


def _failure_line(row) -> str:
    """A failed section in one line: which section, and its status (which names the file once)."""
    where = f"{row.animal} s{row.section}"
    return f"{where}: {row.status}" if str(row.path) in row.status else f"{where} ({row.path}): {row.status}"


def _study_defaults():
    """The study settings' defaults, read from the dataclass so that the CLI never restates them."""
    from .batch import StudySettings

    return StudySettings()


@contextlib.contextmanager
def _memory_limit(gigabytes: float):
    """``DCXCOUNT_MEMORY_LIMIT`` for the run (read wherever a section is counted, Dask workers included), then as before."""
    from .memory import LIMIT_VARIABLE

    before = os.environ.get(LIMIT_VARIABLE)
    os.environ[LIMIT_VARIABLE] = f"{gigabytes}GB"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LIMIT_VARIABLE, None)
        else:
            os.environ[LIMIT_VARIABLE] = before


def _count(args: argparse.Namespace) -> int:
    if getattr(args, "max_memory_gb", None) is not None:
        with _memory_limit(args.max_memory_gb):
            return _count(argparse.Namespace(**{**vars(args), "max_memory_gb": None}))
    from .batch import SettingsError, StudySettings, corrected_notices, plan_study, run_study
    from .samplesheet import SamplesheetError
    from .segment import ModelNotAvailableError, kind_of_marker, load_engine

    default_model, marker_models = _model_choice(args.model)
    defaults = StudySettings()
    overlap = (defaults.count.min_overlap_fraction if args.min_overlap_fraction is None
               else args.min_overlap_fraction)
    count = replace(defaults.count, model=default_model, marker_models=marker_models,
                    channels=_channel_overrides(args.channel), min_overlap_fraction=overlap,
                    mean_thresholds=_signal_thresholds(args.signal_threshold, defaults.count.mean_thresholds),
                    staging=_stage_rules(args.stage_rules))
    settings = replace(defaults, count=count, pixel_size_um=args.pixel_size_um, thickness_um=args.thickness_um,
                       section_interval=(defaults.section_interval if args.section_interval is None
                                         else args.section_interval),
                       hemispheres=defaults.hemispheres if args.hemispheres is None else args.hemispheres)
    try:
        plan = plan_study(args.samplesheet, out_dir=args.out, settings=settings)
        unknown = _unknown_markers(args, plan.markers)
        if unknown:
            raise SettingsError("\n".join(unknown))
    except (SamplesheetError, SettingsError) as error:
        _say(error)
        return EXIT_BAD_INPUT
    try:
        # Fail before the batch starts when a model itself is missing or is not a model.
        for marker in ("dcx", "neun", *marker_models):
            load_engine(marker_models.get(marker, default_model), kind=kind_of_marker(marker))
    except ModelNotAvailableError as error:
        _say(f"--model: {error}")
        return EXIT_BAD_INPUT
    for note in _default_notes(args, plan.sheet):
        _say(note)
    for notice in plan.notices:
        _say(f"note: {notice}")
    for notice in corrected_notices(plan, recount=args.recount):
        _say(f"note: {notice}" if args.recount else f"note: {notice} (--recount counts it from its image and "
             "discards them)")
    started = time.perf_counter()
    try:
        result = run_study(plan, workers=args.workers, scheduler=args.scheduler, recount=args.recount,
                           progress=_progress_bar("count"), command=args.command_line)
    except SettingsError as error:  # the Dask scheduler could not be reached: nothing was counted
        _say(error)
        return EXIT_BAD_INPUT
    return _report_study(result, out=args.out, verb="counted", seconds=time.perf_counter() - started)


def _report_study(result, *, out: Path, verb: str, seconds: float) -> int:
    """Failed sections on stderr, one line of totals on stdout; the exit status."""
    for row in result.sections.itertuples():
        if row.status != "ok":
            _say(_failure_line(row))
    n = len(result.sections)
    print(f"{verb} {n - result.n_failed}/{n} sections of {len(result.animals)} animals in {seconds:.1f} s; "
          f"tables in {Path(out).resolve()}" + ("; open report.html there" if result.groups is not None else ""))
    return EXIT_SECTIONS_FAILED if result.n_failed else EXIT_OK


def _summarize(args: argparse.Namespace) -> int:
    from .batch import SettingsError, summarize_study

    started = time.perf_counter()
    try:
        result = summarize_study(args.out, progress=_progress_bar("summarize"), command=args.command_line)
    except SettingsError as error:
        _say(error)
        return EXIT_BAD_INPUT
    return _report_study(result, out=args.out, verb="summarized", seconds=time.perf_counter() - started)


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

    from .finetune import SCRATCH_LEARNING_RATE, SCRATCH_STEPS, fine_tune, train_on_synthetic
    from .io import SectionReadError
    from .segment import bundled_model_path, load_specialist, save_specialist
    from .segment.training import FINE_TUNE_LEARNING_RATE, FINE_TUNE_STEPS, TrainingDataError, read_labelled_sections

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.data is not None and args.base is None:
        return _fail("--data fine-tunes a model: add --from specialist (the bundled model) or --from MODEL")
    if args.base == "specialist" and args.kind is None:
        return _fail("--from specialist needs --kind dcx or --kind nuclear (which bundled model)")
    if args.base == "specialist":
        base_path = bundled_model_path(args.kind)
    else:
        base_path = Path(args.base) if args.base else None
    try:
        base = load_specialist(base_path) if base_path else None
    except (OSError, ValueError) as error:
        return _fail(str(error))
    kind = args.kind or (base.kind if base else None)
    if kind is None:
        return _fail("--kind dcx or --kind nuclear is needed to train a new model (without --from)")
    # Fine-tuning starts from learnt features: fewer, gentler steps than training from random weights.
    steps = args.steps or (FINE_TUNE_STEPS if base else SCRATCH_STEPS)
    learning_rate = args.learning_rate or (FINE_TUNE_LEARNING_RATE if base else SCRATCH_LEARNING_RATE)
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
    optimisation = dict(steps=steps, batch_size=args.batch_size, learning_rate=learning_rate, seed=args.seed,
                        progress=_progress_bar("train"))
    if args.data is not None:
        try:
            sections = read_labelled_sections(args.data, kind=kind, pixel_size_um=args.pixel_size_um,
                                              channels=_channel_overrides(args.channel))
            run = fine_tune(sections, base=base, base_path=base_path, val_fraction=args.val_fraction, **optimisation)
        except (TrainingDataError, SectionReadError) as error:
            return _fail(str(error))
        print(f"{len(sections)} labelled sections in {args.data}: {len(run.train_sections)} trained on, "
              f"{len(run.val_sections)} validated on ({', '.join(run.val_sections)})", file=sys.stderr)
        for marker in run.after["by_marker"]:
            was, now = run.before["by_marker"][marker], run.after["by_marker"][marker]
            print(f"validation {marker}: F1 {was['f1']} -> {now['f1']}, AP@0.5 {was['ap50']} -> {now['ap50']} "
                  f"({now['n_true']} objects in {len(run.val_sections)} sections)")
    else:
        run = train_on_synthetic(kind=kind, base=base, base_path=base_path, n_sections=args.sections,
                                 size_px=args.size_px, families=args.families, **optimisation)
    model = run.model
    model.info.update(command=shlex.join(command), train_seconds=round(time.perf_counter() - started, 1))
    path = save_specialist(model, args.out)
    print(f"wrote {path} and its model card {path.with_suffix('.json').name} "
          f"(final loss {model.info['final_loss']:.3f}, {model.info['train_seconds']:.0f} s)")
    return 0


def _fail(message: str) -> int:
    _say(message)
    return EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    defaults = _study_defaults()
    parser = _Parser(prog="dcxcount", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    count = commands.add_parser(
        "count", help="count every section of a samplesheet", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every setting is checked before the first section is counted.\n\n" + EXIT_STATUSES)
    count.add_argument("samplesheet", type=Path,
                       help="CSV (comma, semicolon or tab; UTF-8, Windows-1252 or Latin-1) or .xlsx with columns "
                            "path, animal[, group, section, outline, ...]; outline: a GCL drawn by hand (ImageJ "
                            ".roi/.zip, GeoJSON or mask TIFF) replacing the detected one")
    count.add_argument("--out", type=Path, required=True, help="results folder")
    count.add_argument("--channel", action="append", default=[], metavar="MARKER=NAME_OR_INDEX",
                       help="which channel holds a marker (dcx, neun, dapi, brdu, edu); repeatable")
    count.add_argument("--model", action="append", default=[], metavar="[MARKER=]NAME_OR_PATH",
                       help="'specialist' (bundled, default), 'cpsam' (Cellpose-SAM) or a model file; "
                            "MARKER=... chooses for one marker (e.g. --model neun=cpsam); repeatable")
    count.add_argument("--pixel-size-um", type=_positive_number, help="pixel size, overriding the files' own")
    count.add_argument("--workers", type=_whole_at_least(1), default=1,
                       help="sections counted at once, in threads sharing the models and the cores "
                            "(2 on 2 cores: 1.3-1.4x the sections per minute of 1)")
    count.add_argument("--scheduler", help="address of a Dask scheduler to run on")
    count.add_argument("--max-memory-gb", type=_positive_number, metavar="GB",
                       help="memory one section may use (default: what is free). A larger section stored in tiles "
                            "(pyramidal OME-TIFF, OME-Zarr) is counted around its dentate gyrus, tile by tile "
                            "(a `dg` column picks left or right); any other is refused")
    count.add_argument("--section-interval", type=_whole_at_least(1), metavar="K",
                       help=f"every K-th section was counted; the estimated totals scale with it (default "
                            f"{defaults.section_interval}, said when used; a samplesheet column overrides it)")
    count.add_argument("--hemispheres", type=int, choices=(1, 2),
                       help=f"hemispheres counted per section; the estimated totals double one (default "
                            f"{defaults.hemispheres}, said when used; a samplesheet column overrides it)")
    count.add_argument("--thickness-um", type=_positive_number, help="section thickness, for the GCL volume")
    count.add_argument("--min-overlap-fraction", type=_fraction,
                       help="an object is positive for another marker when one of that marker's objects covers "
                            f"at least this fraction of the smaller of the two (default "
                            f"{defaults.count.min_overlap_fraction:g})")
    count.add_argument("--signal-threshold", action="append", default=[], metavar="MARKER=NUMBER|auto|off",
                       help="... or when that marker's mean signal over it reaches this threshold (raw intensity); "
                            "auto: per section from its background and its objects' brightness (the default, "
                            "reported as <marker>_threshold in sections.csv; off for dcx unless asked); repeatable")
    count.add_argument("--stage-rules", type=Path, metavar="FILE.json",
                       help="thresholds of the stage rules A-F replacing the defaults, e.g. "
                            '{"stub_um": 8, "radial_max_angle_deg": 40} (see docs/validation.md)')
    count.add_argument("--recount", action="store_true",
                       help="count sections that hold a person's corrections again from their images, discarding "
                            "the corrections (by default they are kept: such sections are recounted from their "
                            "saved labels and GCL)")
    count.set_defaults(run=_count)

    summarize = commands.add_parser(
        "summarize", help="rebuild the tables of a counted study from its saved (corrected) labels, never segmenting",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Sections whose labels_<marker>.tif, gcl.tif or corrections.json changed since they were saved are "
               "traced,\nstaged and co-labelled again from them; a person's stage calls are kept "
               "(stage_source=person).\n\n" + EXIT_STATUSES)
    summarize.add_argument("out", type=Path, metavar="OUT", help="results folder of `dcxcount count`")
    summarize.set_defaults(run=_summarize)

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

    agree = commands.add_parser(
        "agree", help="agreement between two raters' reviewed copies of one counted study",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes agreement_sections.csv, agreement_animals.csv and agreement.json (docs/output.md).\n\n"
               "exit status:\n  0  the agreement was written\n  2  the folders are not two copies of one "
               "counted study, or an option is wrong: nothing was written\n  3  internal error\n")
    agree.add_argument("out_a", type=Path, metavar="OUT_A", help="rater A's results folder (dcxcount count --out)")
    agree.add_argument("out_b", type=Path, metavar="OUT_B", help="rater B's copy of the same study; B - A is reported")
    agree.add_argument("--out", type=Path, help="folder for the agreement tables (default: OUT_B)")
    agree.add_argument("--marker", default="dcx", help="marker whose counted objects are compared (default dcx)")
    agree.add_argument("--min-iou", type=_fraction, default=0.5,
                       help="objects of A and B match when their masks' intersection over union reaches this "
                            "(default 0.5)")
    agree.set_defaults(run=_agree)
    return parser


def _agree(args: argparse.Namespace) -> int:
    """``dcxcount agree``: detection F1, Cohen's kappa on stages and per-animal count differences."""
    from .agreement import StudyMismatchError, compare_studies

    try:
        found = compare_studies(args.out_a, args.out_b, marker=args.marker.strip().lower(), min_iou=args.min_iou)
    except StudyMismatchError as error:
        _say(error)
        return EXIT_BAD_INPUT
    out = args.out or args.out_b
    out.mkdir(parents=True, exist_ok=True)
    found.sections.to_csv(out / "agreement_sections.csv", index=False)
    found.animals.to_csv(out / "agreement_animals.csv", index=False)
    summary = found.summary()
    (out / "agreement.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")

    def kappa_line(name: str, kappa) -> str:
        if kappa.reason:
            return f"{name}: kappa undefined ({kappa.reason})"
        return (f"{name}: Cohen's kappa {kappa.value:.3f} (unweighted), same call for "
                f"{100 * kappa.observed_agreement:.1f} % of {kappa.n} matched cells")

    d = found.detection
    print(f"rater A: {found.folder_a}\nrater B: {found.folder_b}\n{found.marker}, {summary['n_sections']} sections, "
          f"objects matched at IoU >= {found.min_iou:g}")
    print(f"detection F1 {d.f1:.3f}: {d.true_positives} matched, {d.false_negatives} only in A, "
          f"{d.false_positives} only in B")
    if found.marker == "dcx":
        print(kappa_line("stages A-F", found.stages))
        print(kappa_line("stage groups", found.groups))
    print(f"{found.marker} count per animal, B - A:")
    for row in found.animals.itertuples():
        pct = "" if math.isnan(row.pct_difference) else f" ({row.pct_difference:+.1f} %)"
        print(f"  {row.animal} ({row.group}): {row.count_a} -> {row.count_b}, {row.difference:+d}{pct}")
    for note in found.notes:
        _say(f"note: {note}")
    print(f"wrote agreement_sections.csv, agreement_animals.csv and agreement.json in {out.resolve()}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see :data:`EXIT_STATUSES`).

    No traceback reaches the terminal: a wrong option or samplesheet is one
    line per problem (status 2); an unexpected error is one line naming a file
    that holds its traceback, for a bug report (status 3). Set
    ``DCXCOUNT_DEBUG=1`` to get the traceback raised instead.
    """
    try:
        args = build_parser().parse_args(argv)
        # Exactly as typed (relative paths and all), for run.json: with its cwd it repeats the run.
        args.command_line = ["dcxcount", *(sys.argv[1:] if argv is None else argv)]
    except SystemExit as stop:  # --help, or a wrong option (already said in one line)
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    try:
        return args.run(args)
    except OptionError as error:
        _say(error)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say("interrupted; run the same command again to resume (finished sections are kept)")
        return 130
    except Exception as error:
        if os.environ.get("DCXCOUNT_DEBUG"):
            raise
        return _internal_error(error)


def _internal_error(error: Exception) -> int:
    """Say what failed in one line, keep the traceback in a file for the bug report."""
    what = str(error).splitlines()[0] if str(error) else ""
    report = "".join(traceback.format_exception(error))
    try:
        with tempfile.NamedTemporaryFile("w", prefix="dcxcount-error-", suffix=".txt", delete=False) as handle:
            handle.write(" ".join(sys.argv) + "\n\n" + report)
        where = f"; the traceback is in {handle.name}"
    except OSError:
        where = ""
    if isinstance(error, OSError):  # a full disk or a lost network drive, not a bug
        _say(f"cannot continue: {error.strerror or error}"
             f"{' (' + error.filename + ')' if isinstance(error.filename, str) else ''}{where}")
    else:
        _say(f"internal error ({type(error).__name__}{': ' + what if what else ''}); this is a bug, please report "
             f"it{where}")
    return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
