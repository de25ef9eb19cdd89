"""Counting a study: every samplesheet row, resumable, in-process or on Dask.

Each section's result is written to ``OUT/sections/<key>/`` (labels, GCL mask,
cells table and a ``result.json`` holding the status and a fingerprint of the
input file and settings) as soon as it is done. The study tables are then
rebuilt from those folders, so an interrupted run loses at most the section in
flight, a failed section never costs the others, and a re-run only recomputes
sections whose input or settings changed (or that failed).

Nothing a section does can stop the batch: whatever it raises (a MemoryError
too) becomes that section's status, its traceback is kept in its
``result.json``, and the other sections go on, in this process or on Dask.
Everything that can be checked without counting (samplesheet, settings,
markers named in options, the results folder) is checked first, by
:func:`plan_study`, so that a bad setting costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .checks import SettingsError, count_settings_problems, study_value_problems
from .corrections import Corrections
from .estimators import animals_table
from .gcl import NoGCLFoundError
from .hashing import file_sha256, file_version_sha256
from .io import Section, read_section
from .memory import available_cpus, available_memory_bytes
from .mosaic import MOSAIC_COLUMNS, count_mosaic_section, needs_mosaic, read_mosaic_box
from .pipeline import CountSettings, SectionResult, count_section
from .progress import Cancelled, CancelToken, ProgressCallback, report, sub_progress
from .provenance import now_iso
from .samplesheet import SamplesheetError, read_samplesheet
from .section_folder import (
    FORMAT_VERSION,
    SectionFolderError,
    load_section,
    read_record,
    save_section,
    saved_edits,
    strict_json,
    write_json,
)
from .segment import model_file
from .staging import StagingRules
from .study_outputs import write_study_outputs
from .thread_hooks import ThreadScopedHook
from .tracing import TracingSettings
from .vocabulary import KNOWN_MARKERS, STAGES, kind_of_marker

__all__ = ["StudySettings", "StudyResult", "StudyPlan", "SettingsError", "plan_study", "plan_from_results",
           "run_study", "recount_section", "count_study",
           "section_key", "row_settings", "strict_json", "summarize_study", "corrected_notices"]

NoticeCallback = Callable[[str], None]
"""Called with each thing the user should know before the count starts (one line)."""

# Columns that hold counts: whole numbers even when some sections have none.
_COUNT_COLUMNS = re.compile(r".*_count|stage_[A-F]|stage_doubtful|nonfinite_px")

# At most this many warnings are kept per section: a warning raised per cell
# would otherwise fill result.json.
_MAX_WARNINGS = 20


@dataclass(frozen=True)
class StudySettings:
    """Study-wide settings; samplesheet columns override them per row."""

    count: CountSettings = CountSettings()
    pixel_size_um: float | None = None
    section_interval: int = 6
    hemispheres: int = 2
    thickness_um: float | None = None

    @classmethod
    def from_record(cls, record: dict) -> StudySettings:
        """The settings settings.json records (its ``settings`` entry), as written by a count."""
        count = dict(record["count"])
        # Written before the tracing settings were recorded: those runs used the defaults.
        count["tracing"] = TracingSettings(**count.get("tracing", {}))
        count["staging"] = StagingRules(**count["staging"])
        count["phenotype_markers"] = tuple(count["phenotype_markers"])
        count["mean_thresholds"] = {marker: math.inf if value == "off" else value
                                    for marker, value in count["mean_thresholds"].items()}
        known = {f.name for f in fields(CountSettings)}
        study = {key: value for key, value in record.items() if key != "count"}
        return cls(count=CountSettings(**{k: v for k, v in count.items() if k in known}), **study)


@dataclass
class StudyResult:
    cells: pd.DataFrame
    sections: pd.DataFrame
    animals: pd.DataFrame
    groups: pd.DataFrame | None = None  # groups.csv (dcxcount.groups)

    @property
    def n_failed(self) -> int:
        return int((self.sections["status"] != "ok").sum())


@dataclass
class StudyPlan:
    """A checked study, ready to count.

    Attributes
    ----------
    sheet : DataFrame
        The samplesheet as :func:`dcxcount.samplesheet.read_samplesheet` returns it,
        plus ``_key``: each row's results folder under ``out_dir/sections``
        (:func:`section_key`).
    settings : StudySettings
    out_dir : Path
    notices : list of str
        What the user should be told before counting starts: images listed on
        more than one row, saved results that are damaged and will be counted
        again.
    markers : frozenset of str
        The markers the run can count: the known ones and those given a
        channel in the settings or the samplesheet.
    corrected : dict
        Section folder key -> what a person corrected in it (in words): what a
        recount from the image would discard.
    """

    sheet: pd.DataFrame
    settings: StudySettings
    out_dir: Path
    notices: list[str]
    markers: frozenset[str] = frozenset()
    corrected: dict[str, str] = field(default_factory=dict)
    samplesheet: str | None = None  # recorded with its digest in run.json

    @property
    def rows(self) -> list[dict]:
        return self.sheet.to_dict("records")


# Names Windows reserves, with or without an extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_PLAIN = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,119}")


def section_key(row: Mapping) -> str:
    """Folder name of a section's results: one per (animal, section), on every file system.

    ``<animal>_s<section>`` (e.g. ``m1_s3``) when that is plain: lower-case
    ASCII letters, digits, ``.``, ``_`` and ``-``, at most 120 characters.
    Otherwise the characters other than those become ``_`` and ``~`` plus ten
    hex digits of a hash of the exact animal and section are appended, e.g.
    ``WT_1_s3~1373abf995`` for animal ``WT 1``.

    Why this is injective, also where case is ignored (macOS, Windows): a plain
    key spells out its animal and section (the section, a number, contains no
    ``_s``, so the last ``_s`` splits them) and is lower case; any other key
    contains ``~``, which a plain key never does, and differs from every other
    by its hash. :func:`plan_study` still checks every sheet for collisions.
    """
    section = _section_text(row["section"])
    raw = f"{row['animal']}_s{section}"
    if _PLAIN.fullmatch(raw) and raw.split(".")[0] not in _RESERVED:
        return raw
    digest = hashlib.sha256(json.dumps([str(row["animal"]), section]).encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:80].lstrip(".")
    return f"{readable}~{digest}"


def _section_text(section: object) -> str:
    """A section number as a key spells it: ``3`` (never ``3.0``), ``2.5``."""
    try:
        number = float(section)
    except (TypeError, ValueError):
        return str(section)
    return str(int(number)) if number.is_integer() else repr(number)


def row_settings(row: dict, settings: StudySettings) -> tuple[CountSettings, float | None]:
    """A row's count settings and pixel size: the study's, with the row's ``channel_*`` and ``pixel_size_um``."""
    channels = dict(settings.count.channels)
    for column, value in row.items():
        if column.startswith("channel_") and isinstance(value, str) and value.strip():
            channels[column.removeprefix("channel_")] = value.strip()
    pixel = row.get("pixel_size_um")
    pixel = float(pixel) if pixel is not None and not pd.isna(pixel) else settings.pixel_size_um
    return replace(settings.count, channels=channels), pixel


def _content_digest(path: str | os.PathLike, *, cached: bool) -> str | None:
    """SHA-256 of a file's bytes; None when it cannot be read (the count then reports why).

    ``cached`` hashes each file version once per process (model files, read for
    every section); an outline is small and may be re-saved within one mtime
    tick with the same size, so it is hashed afresh.
    """
    try:
        if not cached:
            return file_sha256(path)
        stat = os.stat(path)
        return file_version_sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None


def _model_digests(count: CountSettings, markers: list[str]) -> dict[str, str | None]:
    """Marker -> SHA-256 of the model file that segments it (a retrained model changes every result)."""
    digests = {}
    for marker in markers:
        path = model_file(count.marker_models.get(marker, count.model), kind=kind_of_marker(marker))
        digests[marker] = None if path is None else _content_digest(path, cached=True)
    return digests


def _fingerprint(row: dict, count: CountSettings, pixel_size_um: float | None, outline: str | None) -> str:
    """What decides a section's result: dcxcount's version, the image, every setting, the models, the outline."""
    path = row["path"]
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    # An outline is small and may be re-saved within one mtime tick: its content is hashed.
    payload = {"path": os.path.abspath(path), "size": stat.st_size if stat else None,
               "mtime_ns": stat.st_mtime_ns if stat else None, "pixel_size_um": pixel_size_um,
               "animal": str(row["animal"]), "section": _section_text(row["section"]),
               "outline": {"path": outline, "sha256": _content_digest(outline, cached=False)} if outline else None,
               "settings": asdict(count), "models": _model_digests(count, ["dcx", "neun", "dapi", "brdu", "edu",
                                                                            *count.channels]),
               "dcxcount_version": __version__, "format_version": FORMAT_VERSION}
    dg = row.get("dg")
    if isinstance(dg, str) and dg.strip():  # which DG of a mosaic (added only when given: other results stay valid)
        payload["dg"] = dg.strip().lower()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class _SectionLines(logging.Handler):
    """Warning-level log lines, each kept by the section counted in the thread that logged it."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if (into := _captured.current()) is not None:
            into.append(f"{record.name}: {record.getMessage()}")


def _capture_section_lines() -> Callable[[], None]:
    """Send every warning and warning-level log line to the section counted in its thread; returns the undo."""
    catcher = warnings.catch_warnings()  # restores the filters and showwarning on exit
    catcher.__enter__()
    warnings.simplefilter("always")
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if (into := _captured.current()) is None:  # raised outside any section: as usual
            shown(message, category, filename, lineno, file, line)
        else:
            into.append(f"{category.__name__}: {message}")

    warnings.showwarning = show
    handler = _SectionLines()
    logging.getLogger().addHandler(handler)

    def undo() -> None:
        logging.getLogger().removeHandler(handler)
        catcher.__exit__(None, None, None)

    return undo


_captured: ThreadScopedHook[list[str]] = ThreadScopedHook(_capture_section_lines)
"""``with _captured(notes):`` numpy's RuntimeWarnings, tifffile's and cellpose's log lines go to ``notes``.

They would otherwise be printed between the progress bar and the results,
with no section named; they are kept in the section's result.json instead.
Sections counted in threads at once each keep their own
(:class:`dcxcount.thread_hooks.ThreadScopedHook`).
"""


def _name_path(message: str, *paths: str) -> str:
    """The message, starting with the image's path unless it already names one of ``paths``."""
    return message if any(path and path in message for path in paths) else f"{paths[0]}: {message}"


def _failure(row: dict, error: BaseException) -> str:
    """A section's status for an error the count did not expect: what happened, one line."""
    path = row["path"]
    if isinstance(error, MemoryError):
        return (f"error: {path}: ran out of memory while counting it (MemoryError); count it with fewer "
                "`workers`, on a machine with more memory, or split it into tiles")
    what = str(error).splitlines()[0] if str(error) else ""
    return (f"error: {path}: internal error ({type(error).__name__}{': ' + what if what else ''}); the "
            "traceback is in the section's result.json, please report it")


def _count_row(row: dict, settings: StudySettings, folder: Path, notes: list[str], *, mode: str,
               progress: ProgressCallback | None, cancel: CancelToken | None, sections_at_once: int) -> dict:
    """Count one row into its folder, or return its saved result when nothing that decides it changed.

    A section holding a person's edits is recounted from its saved labels and
    GCL (never segmented) unless ``mode`` is "recount"; in "summarize" mode no
    section is ever segmented.
    """
    count, pixel = row_settings(row, settings)
    outline = row.get("outline") or None
    fingerprint = _fingerprint(row, count, pixel, outline)
    previous = read_record(folder)
    saved = None
    if previous is not None and previous["status"] == "ok":
        with contextlib.suppress(SectionFolderError):  # damaged: counted again (summarize: reported)
            saved = load_section(folder)
    if (saved is not None and previous.get("fingerprint") == fingerprint and not saved.changed
            and not (mode == "recount" and saved.has_person_edits)):
        return {**previous, "_reused": True}
    keep = saved is not None and (mode == "summarize" or (mode == "count" and saved.has_person_edits))
    if mode == "summarize" and not keep:
        status = (previous or {}).get("status", "")
        return {**(previous or {}), "_reused": True, "status": status if status and status != "ok" else
                f"error: {folder}: no complete saved result to summarize; count the section first"}
    result = {"fingerprint": fingerprint, "key": row["_key"]}
    try:
        limit = available_memory_bytes(sections_at_once=sections_at_once)
        # Counted as a mosaic once, recounted as one: its saved labels are those of the mosaic's box.
        mosaic = "mosaic_level" in previous if keep else needs_mosaic(row["path"], memory_limit_bytes=limit,
                                                                      pixel_size_um=pixel)
        if mosaic and not keep:
            # Too large to count whole, but stored in chunks (pyramidal TIFF, OME-Zarr): its dentate
            # gyrus is found on a coarse level and counted in tiles (dcxcount.mosaic).
            # Its tiles one at a time when other sections share the cores (each already has its share).
            counted = count_mosaic_section(row["path"], settings=count, pixel_size_um=pixel,
                                           dentate_gyrus=row.get("dg"), gcl_outline=outline, max_memory_bytes=limit,
                                           workers=1 if sections_at_once > 1 else None, progress=progress,
                                           cancel=cancel)
        else:
            section = (read_mosaic_box(row["path"], previous, pixel_size_um=pixel) if mosaic else
                       read_section(row["path"], pixel_size_um=pixel, memory_limit_bytes=limit))
            notes.extend(section.notes)
            counted = (recount_section(section, record=previous, labels=saved.labels, gcl_mask=saved.gcl,
                                       corrections=saved.corrections_with_changes(), settings=count,
                                       progress=progress, cancel=cancel) if keep else
                       count_section(section, settings=count, gcl_outline=outline, progress=progress, cancel=cancel))
    except NoGCLFoundError as error:
        result["status"] = f"no GCL found: {error}"
    except (ValueError, OSError) as error:
        result["status"] = f"error: {_name_path(str(error), row['path'], outline or '')}"
    else:
        if not keep:
            # The folder's old content may go: without a result.json a save cut short is counted again.
            (folder / "result.json").unlink(missing_ok=True)
        return save_section(folder, counted, record=result)
    if keep:
        # A failed recount must not hide a person's edits from the next run: the saved result stays.
        result["_keep_saved"] = True
    return result


def recount_section(section: Section, *, record: Mapping, labels: Mapping[str, np.ndarray], gcl_mask: np.ndarray,
                    corrections: Corrections, settings: CountSettings = CountSettings(),
                    progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> SectionResult:
    """A counted section traced, staged and tabled again from its saved (corrected) labels and GCL; never segmented.

    Parameters
    ----------
    section : dcxcount.io.Section
        Its image: the file read whole, or for a section counted as a mosaic
        the box it was counted in (:func:`dcxcount.mosaic.read_mosaic_box`).
    record : dict
        Its saved ``result.json``: where the GCL came from and, for a mosaic,
        where the box lies are carried over to the new result.
    labels, gcl_mask, corrections
        The saved label images and GCL, edited or not, and every correction
        (:meth:`dcxcount.section_folder.SavedSection.corrections_with_changes`).
    settings, progress, cancel
        As for :func:`dcxcount.pipeline.count_section`.
    """
    counted = count_section(section, settings=settings, labels=labels, gcl_mask=gcl_mask, corrections=corrections,
                            progress=progress, cancel=cancel)
    counted.summary["gcl_source"] = "edited" if corrections.gcl else record.get("gcl_source", "mask")
    counted.summary.update({column: record[column] for column in MOSAIC_COLUMNS if column in record})
    return counted


def _process_row(row: dict, settings: StudySettings, out_dir: str, *, mode: str = "count",
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 sections_at_once: int = 1) -> dict:
    """Count one samplesheet row into its folder; never raises (but for Cancelled, KeyboardInterrupt, SystemExit).

    ``sections_at_once``: sections counted at the same time in this process, which share its free memory.
    """
    folder = Path(out_dir) / "sections" / row["_key"]
    started = time.perf_counter()
    notes: list[str] = []
    try:
        with _captured(notes):
            result = _count_row(row, settings, folder, notes, mode=mode, progress=progress, cancel=cancel,
                                sections_at_once=sections_at_once)
    except Cancelled:
        raise
    except Exception as error:  # MemoryError included: one section must never cost the batch
        result = {"fingerprint": None, "key": row["_key"], "status": _failure(row, error),
                  "traceback": traceback.format_exc()}
    if result.pop("_reused", False):
        return result
    keep_saved = result.pop("_keep_saved", False)
    result["seconds"] = round(time.perf_counter() - started, 2)
    if notes:
        result["warnings"] = list(dict.fromkeys(notes))[:_MAX_WARNINGS]
    result = strict_json(result)
    if keep_saved:
        return result
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Written last: a section with result.json is complete.
        write_json(folder / "result.json", result)
    except OSError as error:
        result["status"] = f"error: {folder}: cannot save the result ({error.strerror or error})"
    return result


def plan_study(samplesheet: str | os.PathLike, *, out_dir: str | os.PathLike,
               settings: StudySettings = StudySettings()) -> StudyPlan:
    """Read and check a study without counting anything.

    Parameters
    ----------
    samplesheet : path
        CSV or .xlsx samplesheet (see :func:`dcxcount.samplesheet.read_samplesheet`).
    out_dir : path
        Results folder; checked here, created when counting starts.
    settings : StudySettings

    Returns
    -------
    StudyPlan

    Raises
    ------
    dcxcount.samplesheet.SamplesheetError
        The samplesheet cannot be counted (each problem on its own line).
    SettingsError
        A setting is out of range, an option names a marker the run does not
        count, the memory limit is not a size, or the results folder cannot
        be created or written to (each problem on its own line).
    """
    sheet = read_samplesheet(samplesheet)
    markers = {*KNOWN_MARKERS, *settings.count.channels,
               *(c.removeprefix("channel_") for c in sheet.columns if c.startswith("channel_"))}
    problems = study_value_problems(pixel_size_um=settings.pixel_size_um,
                                    section_interval=settings.section_interval,
                                    hemispheres=settings.hemispheres, thickness_um=settings.thickness_um)
    problems += count_settings_problems(settings.count, markers=markers)
    try:
        available_memory_bytes()
    except ValueError as error:
        problems.append(str(error))
    if problems:
        raise SettingsError("\n".join(problems))
    sheet = sheet.assign(_key=[section_key(row) for row in sheet.to_dict("records")])
    _check_keys(sheet, samplesheet)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    notices = _duplicate_images(sheet) + _damaged_results(sheet, out_dir)
    corrected = {key: edits for key in sheet["_key"] if (edits := saved_edits(out_dir / "sections" / key))}
    return StudyPlan(sheet=sheet, settings=settings, out_dir=out_dir, notices=notices, markers=frozenset(markers),
                     corrected=corrected, samplesheet=os.path.abspath(samplesheet))


def _check_out_dir(out_dir: Path) -> None:
    """The results folder must be a folder this process can write in, or be creatable (it is not created here)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingsError(f"`out_dir={out_dir}`: exists and is not a folder")
    existing = out_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SettingsError(f"`out_dir={out_dir}`: cannot create it inside {existing}, which is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(f"`out_dir={out_dir}`: {existing} is not writable")


def _check_keys(sheet: pd.DataFrame, samplesheet: str | os.PathLike) -> None:
    """Two rows must never share a results folder, even where the file system ignores case."""
    first: dict[str, int] = {}
    problems = []
    for row, key in zip(sheet["row"], sheet["_key"]):
        folded = key.casefold()
        if folded in first:
            problems.append(f"{samplesheet}, row {row}: its results folder {key!r} is that of row {first[folded]}; "
                            "rename the animal")
        first.setdefault(folded, row)
    if problems:
        raise SamplesheetError("\n".join(problems))


def _image_identity(path: str) -> object:
    """Same file, however it is spelled (symlink, ``..``, hard link)."""
    try:
        stat = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (stat.st_dev, stat.st_ino)


def _duplicate_images(sheet: pd.DataFrame) -> list[str]:
    first: dict[object, tuple[int, str]] = {}
    notices = []
    for row, animal, section, path in zip(sheet["row"], sheet["animal"], sheet["section"], sheet["path"]):
        identity = _image_identity(path)
        if identity in first:
            other_row, other = first[identity]
            notices.append(f"row {row} ({animal} s{_section_text(section)}) lists the same image as row {other_row} "
                           f"({other}): {path}; both rows are counted")
        else:
            first[identity] = (row, f"{animal} s{_section_text(section)}")
    return notices


def _damaged_results(sheet: pd.DataFrame, out_dir: Path) -> list[str]:
    notices = []
    for animal, section, key in zip(sheet["animal"], sheet["section"], sheet["_key"]):
        saved = out_dir / "sections" / key / "result.json"
        if saved.exists() and read_record(saved.parent) is None:
            notices.append(f"{animal} s{_section_text(section)}: the saved result {saved} is empty or damaged "
                           "(a run stopped while writing it?); the section is counted again")
    return notices


def run_study(plan: StudyPlan, *, workers: int = 1, scheduler: str | None = None, recount: bool = False,
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
              command: Sequence[str] | None = None) -> StudyResult:
    """Count every section of a checked study and write the study tables.

    Parameters
    ----------
    plan : StudyPlan
        From :func:`plan_study`.
    workers : int
        Sections counted at the same time, in threads of this process that
        share the models and the cores (1: one after another).
    scheduler : str, optional
        Address of a running Dask scheduler to send the sections to instead.
    recount : bool
        Count sections that hold a person's corrections (``plan.corrected``)
        again from their images, discarding the corrections. By default they
        are recounted from their saved labels and GCL, keeping every correction.
    progress : callable, optional
        ``progress(fraction, message)`` (:mod:`dcxcount.progress`): within each
        section when they are counted one at a time, else after each section.
    cancel : CancelToken, optional
        Checked between sections and between a section's steps; what was saved
        stays, and the next run goes on from there.
    command : sequence of str, optional
        The command line that started the run (``["dcxcount", "count", ...]``),
        recorded in run.json so that the run can be repeated.

    Returns
    -------
    StudyResult
        The study tables; ``n_failed`` sections have a status other than ``ok``.

    Raises
    ------
    SettingsError
        When the Dask scheduler cannot be reached (nothing is counted then).
    dcxcount.progress.Cancelled
        When ``cancel`` was cancelled (the study tables are not rewritten).
    """
    return _run(plan, mode="recount" if recount else "count", workers=workers, scheduler=scheduler,
                progress=progress, cancel=cancel, command=command)


def _run(plan: StudyPlan, *, mode: str, workers: int, scheduler: str | None, progress: ProgressCallback | None,
         cancel: CancelToken | None, command: Sequence[str] | None = None) -> StudyResult:
    run = {"mode": mode, "workers": workers, "scheduler": scheduler, "command": command, "started": now_iso()}
    rows = plan.rows
    (plan.out_dir / "sections").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    if workers <= 1 and scheduler is None:
        for done, row in enumerate(rows):
            name = f"{row['animal']} s{_section_text(row['section'])}"
            part = sub_progress(progress, done / len(rows), (done + 1) / len(rows), prefix=f"{name}: ")
            report(progress, cancel, done / len(rows), f"{name}: start")
            results[row["_key"]] = result = _process_row(row, plan.settings, str(plan.out_dir), mode=mode,
                                                         progress=part, cancel=cancel)
            report(progress, None, (done + 1) / len(rows), f"{name}: {result['status'][:40]}")
    else:
        _run_parallel(rows, plan.settings, plan.out_dir, workers=workers, scheduler=scheduler, progress=progress,
                      cancel=cancel, results=results, process=functools.partial(_process_row, mode=mode))
    return _write_tables(plan, results, run=run)


def _run_parallel(rows: list[dict], settings: StudySettings, out_dir: Path, *, workers: int, scheduler: str | None,
                  progress: ProgressCallback | None, results: dict[str, dict], cancel: CancelToken | None = None,
                  process: Callable[..., dict] = _process_row) -> None:
    """Map ``process`` over the rows: in ``workers`` threads of this process, or on the Dask cluster at ``scheduler``.

    Threads, not processes, on one machine: the models are loaded once and
    shared, no process has to start, and sections overlap well because
    torch, numpy and scipy release the GIL in their heavy steps. Each thread
    gets ``cores // workers`` compute threads (docs/benchmarks.md has the
    figures). On a cluster a future that fails (a worker that died) fails only
    its row.
    """
    from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed

    with contextlib.ExitStack() as stack:  # the threads or the cluster connection end however the loop ends
        if scheduler is None:
            stop = CancelToken(parent=cancel)  # stops the sections in flight on Ctrl-C or an error here
            stack.enter_context(_compute_threads(workers))
            executor = ThreadPoolExecutor(workers, thread_name_prefix="dcxcount-section")
            task = functools.partial(process, cancel=stop, sections_at_once=workers)
        else:
            from dask.distributed import Client

            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except (OSError, TimeoutError) as error:
                raise SettingsError(f"`scheduler={scheduler}`: cannot connect to the Dask scheduler ({error})") \
                    from error
            stop, executor, task = None, client.get_executor(pure=False), process
        futures = {executor.submit(task, row, settings, str(out_dir)): row for row in rows}
        stack.callback(executor.shutdown, wait=True)
        stack.callback(lambda: [future.cancel() for future in futures])
        if stop is not None:
            stack.callback(stop.cancel)  # first of all: a section in flight stops at its next step
        for done, future in enumerate(as_completed(futures), 1):
            row = futures[future]
            folder = out_dir / "sections" / row["_key"]
            try:
                result = future.result()
            except (Cancelled, CancelledError) as error:
                raise Cancelled("cancelled") from error
            except Exception as error:  # the worker died (out of memory, killed) or the task was lost
                result = {"fingerprint": None, "key": row["_key"], "status": _worker_failure(row, error)}
                if not saved_edits(folder):  # a person's edits stay findable by the next run
                    with contextlib.suppress(OSError):
                        folder.mkdir(parents=True, exist_ok=True)
                        write_json(folder / "result.json", result)
            results[row["_key"]] = result
            report(progress, cancel, done / len(rows),
                   f"{row['animal']} s{_section_text(row['section'])}: {result['status'][:40]}")


@contextlib.contextmanager
def _compute_threads(workers: int):
    """Torch's and the BLAS libraries' thread pools sized ``cores // workers`` (at least 1) inside, as before after.

    ``workers`` sections counted at once must not run ``workers`` x cores
    compute threads: with 2 threads for each of 2 sections on 2 cores a study
    took 1.2-2.2x as long as one section at a time (docs/benchmarks.md). The
    pools are process-wide, so this also overrides an ``OMP_NUM_THREADS`` the
    shell sets (HPC modules often set it to the node's cores).
    """
    import torch
    from threadpoolctl import threadpool_limits

    share = max(1, (available_cpus() or 1) // max(1, workers))
    before = torch.get_num_threads()
    torch.set_num_threads(share)
    try:
        with threadpool_limits(limits=share):
            yield share
    finally:
        torch.set_num_threads(before)


def summarize_study(out_dir: str | os.PathLike, *, progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None, command: Sequence[str] | None = None) -> StudyResult:
    """Rebuild every section's tables from its saved labels, GCL and corrections, then the study tables.

    Nothing is segmented. A section whose saved files changed since they were
    written (a label erased, a GCL redrawn, a stage set in corrections.json) is
    traced, staged and co-labelled again from them; the others are read back.
    The study's samplesheet and settings come from ``out_dir/settings.json``.

    Parameters
    ----------
    out_dir : path
        A results folder written by :func:`run_study`.
    progress, cancel, command
        As for :func:`run_study`; the command is appended to run.json's
        ``summaries``.

    Raises
    ------
    SettingsError
        ``out_dir`` holds no readable settings.json of a counted study.
    """
    return _run(plan_from_results(out_dir), mode="summarize", workers=1, scheduler=None, progress=progress,
                cancel=cancel, command=command)


def plan_from_results(out_dir: str | os.PathLike) -> StudyPlan:
    """The plan of a counted study, read back from its ``settings.json``: its samplesheet rows and settings.

    For a run over the same sections (:func:`summarize_study`, or :func:`run_study`
    with changed settings, e.g. another model); ``corrected`` lists the sections
    that hold a person's edits.

    Raises
    ------
    SettingsError
        ``out_dir`` holds no readable settings.json of a counted study.
    """
    out_dir = Path(out_dir)
    try:
        record = json.loads((out_dir / "settings.json").read_text(encoding="utf-8"))
        settings = StudySettings.from_record(record["settings"])
        sheet = pd.DataFrame(record["samplesheet"])
        keys = sheet["_key"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SettingsError(f"{out_dir}: not a counted study's results folder (its settings.json is missing or "
                            f"damaged: {error!r})") from error
    corrected = {key: edits for key in keys if (edits := saved_edits(out_dir / "sections" / key))}
    return StudyPlan(sheet=sheet, settings=settings, out_dir=out_dir, notices=[], corrected=corrected)


def _worker_failure(row: dict, error: BaseException) -> str:
    what = str(error).splitlines()[0] if str(error) else ""
    return (f"error: {row['path']}: the Dask worker counting it failed ({type(error).__name__}"
            f"{': ' + what if what else ''}); often it ran out of memory: give the cluster's workers more memory")


def count_study(samplesheet: str | os.PathLike, *, out_dir: str | os.PathLike,
                settings: StudySettings = StudySettings(), workers: int = 1,
                scheduler: str | None = None, recount: bool = False, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None, notify: NoticeCallback | None = None,
                command: Sequence[str] | None = None) -> StudyResult:
    """Count every section of a samplesheet and write the study tables.

    :func:`plan_study` (every check, nothing counted) then :func:`run_study`.

    Parameters
    ----------
    samplesheet : path
        CSV or .xlsx with ``path`` and ``animal`` (see :func:`dcxcount.samplesheet.read_samplesheet`).
    out_dir : path
        Results folder: ``cells.csv``, ``sections.csv``, ``animals.csv`` and ``sections/``.
    settings : StudySettings
    workers : int
        Sections counted at the same time, in threads of this process that
        share the models and the cores (1: one after another).
    scheduler : str, optional
        Address of a running Dask scheduler to send the sections to instead.
    recount, progress, cancel
        As for :func:`run_study`.
    notify : callable, optional
        Called with each notice of the plan (duplicate images, damaged saved
        results, sections holding a person's corrections); by default they
        are issued as warnings.
    command : sequence of str, optional
        As for :func:`run_study`.

    Returns
    -------
    StudyResult
        The three tables; ``n_failed`` sections have a status other than ``ok``.

    Raises
    ------
    dcxcount.samplesheet.SamplesheetError, SettingsError
        Before any section is counted (see :func:`plan_study`).
    """
    plan = plan_study(samplesheet, out_dir=out_dir, settings=settings)
    for notice in plan.notices + corrected_notices(plan, recount=recount):
        if notify is None:
            warnings.warn(notice, stacklevel=2)
        else:
            notify(notice)
    return run_study(plan, workers=workers, scheduler=scheduler, recount=recount, progress=progress, cancel=cancel,
                     command=command)


def corrected_notices(plan: StudyPlan, *, recount: bool) -> list[str]:
    """One line per section holding a person's corrections: kept, or what a recount discards."""
    names = {key: f"{animal} s{_section_text(section)}"
             for key, animal, section in zip(plan.sheet["_key"], plan.sheet["animal"], plan.sheet["section"])}
    if recount:
        return [f"{names[key]}: recounted from its image, discarding a person's corrections ({edits})"
                for key, edits in plan.corrected.items()]
    return [f"{names[key]}: holds a person's corrections ({edits}); they are kept and the section is recounted "
            "from its saved labels" for key, edits in plan.corrected.items()]


def _saved_cells(folder: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(folder / "cells.csv")
    except (OSError, ValueError):  # pandas' parser errors are ValueErrors
        return None


def _write_tables(plan: StudyPlan, results: dict[str, dict], *, run: dict | None = None) -> StudyResult:
    identity = ["animal", "group", "section", "path"]
    section_rows, cell_tables = [], []
    for row in plan.rows:
        folder = plan.out_dir / "sections" / row["_key"]
        result = results.get(row["_key"]) or read_record(folder) or {
            "status": f"error: {row['path']}: no result was saved; run the command again to count it"}
        summary = {k: row[k] for k in identity}
        summary.update({k: v for k, v in result.items()
                        if k not in ("fingerprint", "key", "warnings", "traceback", "files", "format_version")})
        for column in ("section_interval", "hemispheres", "thickness_um"):
            if column in row and not pd.isna(row[column]):
                summary[column] = row[column]
        if result["status"] == "ok":
            cells = _saved_cells(folder)
            if cells is None:
                # Deleted or damaged since it was counted: say so, and count it again next time.
                summary = {k: row[k] for k in identity}
                summary["status"] = (f"error: {folder / 'cells.csv'}: the saved cells table is missing or damaged; "
                                     "the section is counted again on the next run")
                with contextlib.suppress(OSError):
                    (folder / "result.json").unlink()
            else:
                cells.insert(0, "section", row["section"])
                cells.insert(0, "group", row["group"])
                cells.insert(0, "animal", row["animal"])
                cell_tables.append(cells)
        section_rows.append(summary)
    sections = pd.DataFrame(section_rows)
    for column in ["dcx_count", "neun_count", "dcx_neun_count", "gcl_area_mm2",
                   *(f"stage_{s}" for s in STAGES), "stage_doubtful"]:
        if column not in sections:
            sections[column] = np.nan
    sections = _whole_counts(sections)
    front = identity + ["status", "dcx_count", "neun_count", "dcx_neun_count", "gcl_area_mm2"]
    sections = sections[front + [c for c in sections.columns if c not in front]]
    cells = pd.concat(cell_tables, ignore_index=True) if cell_tables else pd.DataFrame(
        columns=["animal", "group", "section", "marker", "cell_id"])
    animals = animals_table(sections, section_interval=plan.settings.section_interval,
                            hemispheres=plan.settings.hemispheres, thickness_um=plan.settings.thickness_um)
    for name, table in (("cells", cells), ("sections", sections), ("animals", animals)):
        _finite(table).to_csv(plan.out_dir / f"{name}.csv", index=False)
    # What a methods section (and a reviewer) needs to reproduce the tables.
    record = {"dcxcount_version": __version__, "format_version": FORMAT_VERSION,
              "settings": _settings_record(plan.settings),
              "samplesheet": strict_json(plan.sheet.astype(object).where(plan.sheet.notna(), None).to_dict("records"))}
    write_json(plan.out_dir / "settings.json", record)
    # groups.csv, results.xlsx, report.html and run.json: after the tables, which they never hold back.
    groups = write_study_outputs(plan, sections=_finite(sections), animals=_finite(animals), record=record, run=run)
    return StudyResult(cells=cells, sections=sections, animals=animals, groups=groups)


def _whole_counts(sections: pd.DataFrame) -> pd.DataFrame:
    """Count columns as nullable integers: a failed section's empty cell must not turn 27 into 27.0."""
    for column in sections.columns:
        if not _COUNT_COLUMNS.fullmatch(str(column)):
            continue
        values = pd.to_numeric(sections[column], errors="coerce").astype("float64")
        known = values.dropna()
        if (known == known.round()).all():
            sections[column] = values.astype("Int64")
    return sections


def _finite(table: pd.DataFrame) -> pd.DataFrame:
    """Infinities as empty cells: ``inf`` in a table is not a measurement, and some readers choke on it."""
    floats = table.select_dtypes("float").columns
    return table.assign(**{c: table[c].replace([np.inf, -np.inf], np.nan) for c in floats}) if len(floats) else table


def _settings_record(settings: StudySettings) -> dict:
    """The settings as settings.json records them: a signal threshold switched off reads "off", not Infinity."""
    record = asdict(settings)
    record["count"]["mean_thresholds"] = {
        marker: "off" if value == math.inf else value for marker, value in settings.count.mean_thresholds.items()}
    return record
