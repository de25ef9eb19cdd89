"""A counted section's folder: the versioned format a person's corrections live in.

One folder per section (``OUT/sections/<key>/``, docs/output.md)::

    labels_<marker>.tif   label image per marker; a label's value is the cell_id in cells.csv
    gcl.tif               GCL mask (1 inside)
    processes.tif         traced DCX processes; a pixel's value is the cell_id of its cell
    cells.csv             one row per object
    corrections.json      a person's corrections, each with who and when
    result.json           status, format_version, the section's counts, and a
                          SHA-256 of every file above as it was saved

``result.json`` is written last, so a folder with one is complete. The
digests tell which files a person (or another program) changed since the
folder was saved: :func:`load_section` reports them in
:attr:`SavedSection.changed`, and a recount keeps such edits.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from .corrections import Corrections, CorrectionsError, Edit
from .hashing import file_sha256
from .pipeline import SectionResult

__all__ = ["FORMAT_VERSION", "SavedSection", "SectionFolderError", "save_section", "load_section", "read_record",
           "saved_edits", "write_json", "strict_json"]

FORMAT_VERSION = 4
"""Version of the folder's format. 4: processes.tif, corrections.json, file digests, ``stage_source``
and ``excluded`` in cells.csv. 3: strict JSON with ``nonfinite_px``."""

_CORRECTIONS = "corrections.json"
_RESULT = "result.json"


class SectionFolderError(ValueError):
    """A section folder that cannot be read back: missing or damaged files, a newer format, a failed count."""


@dataclass
class SavedSection:
    """A section folder read back.

    Attributes
    ----------
    folder : Path
    record : dict
        ``result.json``: status, counts, format_version, file digests, fingerprint.
    labels : dict
        Marker -> label image.
    gcl : (Y, X) bool array
    processes : (Y, X) int32 array
    cells : DataFrame
    corrections : Corrections
    changed : list of str
        Files whose content differs from what was saved (edited since).
    """

    folder: Path
    record: dict
    labels: dict[str, np.ndarray]
    gcl: np.ndarray
    processes: np.ndarray
    cells: pd.DataFrame
    corrections: Corrections
    changed: list[str]

    @property
    def has_person_edits(self) -> bool:
        """Whether a recount from the image would discard something a person did."""
        return bool(self.corrections) or any(name.startswith("labels_") or name == "gcl.tif"
                                             for name in self.changed)

    def corrections_with_changes(self, *, who: str = "unknown") -> Corrections:
        """The corrections, plus an :class:`Edit` for each label image or GCL changed outside dcxcount.

        Such an edit is dated by the file's modification time; its author is unknown.
        """
        return _with_file_edits(self.corrections, self.folder, self.changed, who=who)


def _with_file_edits(corrections: Corrections, folder: Path, changed: list[str], *, who: str) -> Corrections:
    """``corrections`` plus an :class:`Edit` (dated by the file) for each changed label image or GCL not on record."""
    for name in changed:
        marker = name.removeprefix("labels_").removesuffix(".tif")
        if name.startswith("labels_") and marker not in corrections.labels:
            corrections = corrections.edited_labels(marker, edit=Edit(who, _mtime_iso(folder / name)))
        elif name == "gcl.tif" and corrections.gcl is None:
            corrections = corrections.edited_gcl(edit=Edit(who, _mtime_iso(folder / name)))
    return corrections


def _read_corrections(folder: Path) -> Corrections:
    """A folder's corrections.json (none: no corrections); raises OSError, ValueError or CorrectionsError."""
    path = folder / _CORRECTIONS
    return Corrections.from_record(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else Corrections()


def _changed_files(folder: Path, files: dict) -> list[str]:
    """Saved files whose content differs from their recorded digest, and label images added since."""
    changed = sorted(name for name, digest in files.items() if _digest(folder / name) != digest)
    if files:  # a label image added by hand (a marker with no digest) is an edit too
        changed += sorted(path.name for path in folder.glob("labels_*.tif") if path.name not in files)
    return changed


def _mtime_iso(path: Path) -> str:
    """When ``path`` was last written; now, for a file a person deleted (its own time is gone)."""
    try:
        stamp = path.stat().st_mtime
    except FileNotFoundError:
        stamp = time.time()
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


def strict_json(value: object) -> object:
    """``value`` with every non-finite float made ``None`` and numpy scalars made Python ones.

    Python's json writes NaN and Infinity, which are not JSON: strict readers
    (R's jsonlite, JavaScript, jq) reject the whole file.
    """
    if isinstance(value, Mapping):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def write_json(path: Path, value: object) -> None:
    """Write strict JSON atomically and durably: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(strict_json(value), indent=1, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _digest(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def save_section(folder: str | os.PathLike, result: SectionResult, *, record: Mapping | None = None) -> dict:
    """Write a counted section's folder.

    Parameters
    ----------
    folder : path
        Created if needed. Label images of markers the result does not hold are removed.
    result : SectionResult
        From :func:`dcxcount.pipeline.count_section`; its ``corrections`` are saved too.
    record : dict, optional
        More entries for ``result.json`` (the batch's fingerprint, key, timing).

    Returns
    -------
    dict
        What was written to ``result.json``.

    Notes
    -----
    ``result.json`` is written last. A save cut short leaves an older one
    whose digests no longer match, so the half-written files are treated as
    edits and kept, never silently replaced; remove ``result.json`` first
    when the folder's old content may be discarded.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("labels_*.tif"):
        if stale.name.removeprefix("labels_").removesuffix(".tif") not in result.labels:
            stale.unlink()
    for marker, labels in result.labels.items():
        tifffile.imwrite(folder / f"labels_{marker}.tif", np.asarray(labels, np.int32), compression="zlib")
    tifffile.imwrite(folder / "gcl.tif", result.frame.gcl.astype(np.uint8), compression="zlib")
    tifffile.imwrite(folder / "processes.tif", np.asarray(result.processes, np.int32), compression="zlib")
    result.cells.to_csv(folder / "cells.csv", index=False)
    write_json(folder / _CORRECTIONS, result.corrections.to_record())
    names = [f"labels_{marker}.tif" for marker in result.labels] + ["gcl.tif", "processes.tif", "cells.csv",
                                                                    _CORRECTIONS]
    out = {**dict(record or {}), "status": "ok", "format_version": FORMAT_VERSION, **result.summary,
           "files": {name: _digest(folder / name) for name in names}}
    out = strict_json(out)
    write_json(folder / _RESULT, out)
    return out


def read_record(folder: str | os.PathLike) -> dict | None:
    """A section's ``result.json``, or None when there is none or it is damaged (empty, cut short, not an object)."""
    try:
        record = json.loads((Path(folder) / _RESULT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("status"), str) else None


def saved_edits(folder: str | os.PathLike) -> str:
    """What a recount from the image would discard in a saved section, in words ("" when nothing).

    Reads ``result.json`` and ``corrections.json`` and hashes the saved files,
    without decoding any image, so a study's folders can be checked before a run.
    """
    folder = Path(folder)
    record = read_record(folder)
    if record is None or record["status"] != "ok":
        return ""
    try:
        corrections = _read_corrections(folder)
    except (OSError, ValueError, CorrectionsError):
        corrections = Corrections()
    changed = _changed_files(folder, record.get("files") or {})
    return _with_file_edits(corrections, folder, changed, who="unknown").describe()


def load_section(folder: str | os.PathLike) -> SavedSection:
    """Read a counted section's folder back.

    Raises
    ------
    SectionFolderError
        No complete result (``result.json`` missing or damaged), the section
        failed, the folder is of a newer format than this dcxcount reads, or a
        file it lists is missing or unreadable. The message names the folder.
    """
    folder = Path(folder)
    record = read_record(folder)
    if record is None:
        raise SectionFolderError(f"{folder}: no complete result (result.json is missing or damaged)")
    if record["status"] != "ok":
        raise SectionFolderError(f"{folder}: the section was not counted: {record['status']}")
    version = record.get("format_version", 3)
    if version > FORMAT_VERSION:
        raise SectionFolderError(f"{folder}: written in format {version} by a newer dcxcount; this one reads up "
                                 f"to {FORMAT_VERSION}")
    files = record.get("files") or {}
    try:
        labels = {path.name.removeprefix("labels_").removesuffix(".tif"): tifffile.imread(path).astype(np.int32)
                  for path in sorted(folder.glob("labels_*.tif"))}
        gcl = tifffile.imread(folder / "gcl.tif").astype(bool)
        processes = (tifffile.imread(folder / "processes.tif").astype(np.int32)
                     if (folder / "processes.tif").exists() else np.zeros(gcl.shape, np.int32))
        cells = pd.read_csv(folder / "cells.csv")
    except (OSError, ValueError) as error:  # tifffile and pandas raise ValueErrors for damaged files
        raise SectionFolderError(f"{folder}: a saved file is missing or damaged ({error})") from error
    try:
        corrections = _read_corrections(folder)
    except (OSError, ValueError, CorrectionsError) as error:
        raise SectionFolderError(f"{folder / _CORRECTIONS}: cannot be read ({error})") from error
    return SavedSection(folder=folder, record=record, labels=labels, gcl=gcl, processes=processes, cells=cells,
                        corrections=corrections, changed=_changed_files(folder, files))
