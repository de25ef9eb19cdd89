"""Counting a study: every samplesheet row, resumable, in-process or on Dask.

Each section's result is written to ``OUT/sections/<key>/`` (labels, GCL mask,
cells table and a ``result.json`` holding the status and a fingerprint of the
input file and settings) as soon as it is done. The study tables are then
rebuilt from those folders, so an interrupted run loses at most the section in
flight, a failed section never costs the others, and a re-run only recomputes
sections whose input or settings changed (or that failed).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from . import __version__
from .io import read_section
from .layers import NoGCLFoundError
from .pipeline import CountSettings, count_section
from .study import STAGES, animals_table, read_samplesheet

__all__ = ["StudySettings", "StudyResult", "count_study", "section_key"]

ProgressCallback = Callable[[int, int, str], None]
"""Called as ``progress(done, total, message)``."""


@dataclass(frozen=True)
class StudySettings:
    """Study-wide settings; samplesheet columns override them per row."""

    count: CountSettings = CountSettings()
    pixel_size_um: float | None = None
    section_interval: int = 6
    hemispheres: int = 2
    thickness_um: float | None = None


@dataclass
class StudyResult:
    cells: pd.DataFrame
    sections: pd.DataFrame
    animals: pd.DataFrame

    @property
    def n_failed(self) -> int:
        return int((self.sections["status"] != "ok").sum())


def section_key(row: dict) -> str:
    """Folder name of a section's results: animal and section, filesystem-safe."""
    raw = f"{row['animal']}_s{row['section']}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)


def _row_settings(row: dict, settings: StudySettings) -> tuple[CountSettings, float | None]:
    channels = dict(settings.count.channels)
    for column, value in row.items():
        if column.startswith("channel_") and isinstance(value, str) and value.strip():
            channels[column.removeprefix("channel_")] = value.strip()
    pixel = row.get("pixel_size_um")
    pixel = float(pixel) if pixel is not None and not pd.isna(pixel) else settings.pixel_size_um
    return replace(settings.count, channels=channels), pixel


def _content_digest(path: str) -> str | None:
    """SHA-256 of a file's bytes; None when it cannot be read (the count then reports why)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _fingerprint(path: str, count: CountSettings, pixel_size_um: float | None, outline: str | None) -> str:
    stat = os.stat(path) if os.path.exists(path) else None
    # An outline is small and may be re-saved within one mtime tick: its content is hashed.
    payload = {"path": os.path.abspath(path), "size": stat.st_size if stat else None,
               "mtime_ns": stat.st_mtime_ns if stat else None, "pixel_size_um": pixel_size_um,
               "outline": {"path": outline, "sha256": _content_digest(outline)} if outline else None,
               "settings": asdict(count), "version": 2}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _process_row(row: dict, settings: StudySettings, out_dir: str) -> dict:
    """Count one samplesheet row into its folder; never raises for bad input."""
    count, pixel = _row_settings(row, settings)
    outline = row.get("outline") or None
    folder = Path(out_dir) / "sections" / section_key(row)
    fingerprint = _fingerprint(row["path"], count, pixel, outline)
    done = folder / "result.json"
    if done.is_file():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == fingerprint and previous.get("status") == "ok":
            return previous
    started = time.perf_counter()
    result = {"fingerprint": fingerprint, "key": section_key(row)}
    try:
        section = read_section(row["path"], pixel_size_um=pixel)
        counted = count_section(section, settings=count, gcl_outline=outline)
    except (ValueError, OSError, NoGCLFoundError) as error:
        kind = "no GCL found" if isinstance(error, NoGCLFoundError) else "error"
        result.update(status=f"{kind}: {error}")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for marker, labels in counted.labels.items():
            tifffile.imwrite(folder / f"labels_{marker}.tif", labels.astype(np.int32), compression="zlib")
        tifffile.imwrite(folder / "gcl.tif", counted.frame.gcl.astype(np.uint8), compression="zlib")
        counted.cells.to_csv(folder / "cells.csv", index=False)
        result.update(status="ok", **counted.summary)
    result["seconds"] = round(time.perf_counter() - started, 2)
    folder.mkdir(parents=True, exist_ok=True)
    # Written last and atomically: a section with result.json is complete.
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(done)
    return result


def _run_rows(rows: list[dict], settings: StudySettings, out_dir: Path, *, workers: int,
              scheduler: str | None, progress: ProgressCallback) -> Iterable[dict]:
    total = len(rows)
    if workers <= 1 and scheduler is None:
        for done, row in enumerate(rows, 1):
            result = _process_row(row, settings, str(out_dir))
            progress(done, total, f"{row['animal']} s{row['section']}: {result['status'][:40]}")
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                  processes=True, dashboard_address=None)
    with Client(scheduler or cluster) as client:
        futures = client.map(_process_row, rows, settings=settings, out_dir=str(out_dir), pure=False)
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            progress(done, total, f"{result['key']}: {result['status'][:40]}")
    if cluster is not None:
        cluster.close()


def count_study(samplesheet: str | os.PathLike, *, out_dir: str | os.PathLike,
                settings: StudySettings = StudySettings(), workers: int = 1,
                scheduler: str | None = None,
                progress: ProgressCallback | None = None) -> StudyResult:
    """Count every section of a samplesheet and write the study tables.

    Parameters
    ----------
    samplesheet : path
        CSV with ``path`` and ``animal`` (see :func:`dcxcount.study.read_samplesheet`).
    out_dir : path
        Results folder: ``cells.csv``, ``sections.csv``, ``animals.csv`` and ``sections/``.
    settings : StudySettings
    workers : int
        Sections counted in parallel on a local Dask cluster (1: in this process).
    scheduler : str, optional
        Address of a running Dask scheduler to send the sections to instead.
    progress : callable, optional
        ``progress(done, total, message)`` after each section.

    Returns
    -------
    StudyResult
        The three tables; ``n_failed`` sections have a status other than ``ok``.
    """
    sheet = read_samplesheet(samplesheet)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sheet.to_dict("records")
    _run_rows(rows, settings, out_dir, workers=workers, scheduler=scheduler,
              progress=progress or (lambda done, total, message: None))
    return _write_tables(sheet, settings, out_dir)


def _write_tables(sheet: pd.DataFrame, settings: StudySettings, out_dir: Path) -> StudyResult:
    identity = ["animal", "group", "section", "path"]
    section_rows, cell_tables = [], []
    for row in sheet.to_dict("records"):
        folder = out_dir / "sections" / section_key(row)
        result = json.loads((folder / "result.json").read_text())
        summary = {k: row[k] for k in identity}
        summary.update({k: v for k, v in result.items() if k not in ("fingerprint", "key")})
        for column in ("section_interval", "hemispheres", "thickness_um"):
            if column in row and not pd.isna(row[column]):
                summary[column] = row[column]
        section_rows.append(summary)
        if result["status"] == "ok":
            cells = pd.read_csv(folder / "cells.csv")
            cells.insert(0, "section", row["section"])
            cells.insert(0, "group", row["group"])
            cells.insert(0, "animal", row["animal"])
            cell_tables.append(cells)
    sections = pd.DataFrame(section_rows)
    for column in ["dcx_count", "neun_count", "dcx_neun_count", "gcl_area_mm2",
                   *(f"stage_{s}" for s in STAGES), "stage_doubtful"]:
        if column not in sections:
            sections[column] = np.nan
    front = identity + ["status", "dcx_count", "neun_count", "dcx_neun_count", "gcl_area_mm2"]
    sections = sections[front + [c for c in sections.columns if c not in front]]
    cells = pd.concat(cell_tables, ignore_index=True) if cell_tables else pd.DataFrame(
        columns=["animal", "group", "section", "marker", "cell_id"])
    animals = animals_table(sections, section_interval=settings.section_interval,
                            hemispheres=settings.hemispheres, thickness_um=settings.thickness_um)
    cells.to_csv(out_dir / "cells.csv", index=False)
    sections.to_csv(out_dir / "sections.csv", index=False)
    animals.to_csv(out_dir / "animals.csv", index=False)
    # What a methods section (and a reviewer) needs to reproduce the tables.
    record = {"dcxcount_version": __version__, "settings": asdict(settings)}
    (out_dir / "settings.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return StudyResult(cells=cells, sections=sections, animals=animals)
