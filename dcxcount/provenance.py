"""``run.json``: what ran, on what, with what, so that a reviewer can audit and re-run a study.

``settings.json`` stays what ``dcxcount summarize`` rebuilds from; ``run.json``
beside it records the run itself: the versions of dcxcount and the libraries
that decide the numbers, the SHA-256 of every model and input file, every
setting, when it ran, on how many CPUs, and the exact command. A later
``dcxcount summarize`` (after corrections) appends itself under
``"summaries"``, so the record also says when the tables were last rebuilt.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from . import __version__
from .hashing import file_version_sha256
from .memory import available_cpus
from .section_folder import write_json
from .segment import model_file
from .vocabulary import KNOWN_MARKERS, kind_of_marker

__all__ = ["RUN_FILE", "LIBRARIES", "now_iso", "versions", "file_record", "model_records", "run_record",
           "write_run_record", "append_summary", "command_to_rerun", "known_digests", "read_run_record"]

RUN_FILE = "run.json"
"""The provenance record's name in a results folder."""

LIBRARIES = ("cellpose", "torch", "numpy", "scipy", "pandas", "scikit-image", "tifffile", "skan", "dask",
             "distributed", "openpyxl")
"""Distributions whose versions are recorded: those that compute, read or write the numbers."""


def now_iso() -> str:
    """The current time, UTC, ISO 8601 to the millisecond."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def versions() -> dict[str, str | None]:
    """dcxcount's, Python's and each of :data:`LIBRARIES`' version (None when not installed).

    Read from the installed distributions' metadata, so torch is not imported
    just to ask its version.
    """
    found: dict[str, str | None] = {"dcxcount": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def file_record(path: str | os.PathLike, *, known: Mapping[tuple, str] | None = None) -> dict:
    """``{"path", "size_bytes", "mtime_ns", "sha256"}`` of a file; ``error`` instead when it cannot be read.

    ``known`` maps (path, size, mtime_ns) to a digest already computed (a
    previous run.json's): a resumed run of hundreds of large images then reads
    only the files that changed.
    """
    absolute = os.path.abspath(path)
    try:
        stat = os.stat(absolute)
        key = (absolute, stat.st_size, stat.st_mtime_ns)
        digest = (known or {}).get(key) or file_version_sha256(*key)
        return {"path": absolute, "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    except OSError as error:
        return {"path": absolute, "size_bytes": None, "sha256": None, "error": error.strerror or str(error)}


def known_digests(record: Mapping | None) -> dict[tuple, str]:
    """(path, size, mtime_ns) -> SHA-256 of every input a run.json recorded, for :func:`file_record`."""
    known = {}
    for entry in (record or {}).get("inputs") or []:
        for item in (entry.get(k) for k in ("image", "outline")):
            if isinstance(item, Mapping) and item.get("sha256") and item.get("mtime_ns") is not None:
                known[(item["path"], item["size_bytes"], item["mtime_ns"])] = item["sha256"]
    return known


def model_records(*, model: str, marker_models: Mapping[str, str], markers: Iterable[str]) -> dict[str, dict]:
    """Marker -> the model that segments it: its name, file and that file's SHA-256.

    Cellpose-SAM weights that are not on this machine have no file (``path``
    None); such a run fails before counting, so its record is never a result's.
    """
    records = {}
    for marker in dict.fromkeys(markers):
        name = marker_models.get(marker, model)
        path = model_file(name, kind=kind_of_marker(marker))
        records[marker] = {"model": name, **(file_record(path) if path is not None else
                                              {"path": None, "size_bytes": None, "sha256": None})}
    return records


def run_record(*, sheet: Sequence[Mapping], settings: Mapping, count_settings: Mapping, samplesheet: str | None,
               command: Sequence[str] | None, cwd: str, started: str, finished: str, mode: str, workers: int,
               scheduler: str | None, previous: Mapping | None = None) -> dict:
    """The provenance record of one count (see the module's docstring and docs/output.md).

    Parameters
    ----------
    sheet : sequence of mappings
        The samplesheet rows as counted (absolute ``path``, optional ``outline``,
        ``_key``).
    settings : mapping
        Every setting, as settings.json records them.
    count_settings : mapping
        ``settings["count"]``: its ``model``, ``marker_models`` and ``channels``
        name the model files.
    samplesheet : str, optional
        The samplesheet file, recorded with its digest.
    command : sequence of str, optional
        The command line that ran (``["dcxcount", "count", ...]``); None when
        the study was counted from Python.
    cwd : str
        The working folder the command ran in (its relative paths start there).
    started, finished : str
        ISO 8601 times.
    mode : str
        "count" or "recount".
    workers : int
    scheduler : str, optional
    previous : mapping, optional
        The results folder's earlier run.json: digests of unchanged inputs are taken from it.
    """
    markers = [*KNOWN_MARKERS, *count_settings.get("channels", {}),
               *(str(c).removeprefix("channel_") for row in sheet for c in row if str(c).startswith("channel_"))]
    known = known_digests(previous)
    inputs = []
    for row in sheet:
        entry = {"key": row.get("_key"), "animal": row.get("animal"), "section": row.get("section"),
                 "image": file_record(row["path"], known=known)}
        if row.get("outline"):
            entry["outline"] = file_record(row["outline"], known=known)
        inputs.append(entry)
    return {
        "dcxcount_version": __version__,
        "mode": mode,
        "command": list(command) if command is not None else None,
        "command_line": _shell_join(command) if command is not None else None,
        "cwd": cwd,
        "started": started,
        "finished": finished,
        "host": {"cpu_count": os.cpu_count(), "cpus_available": available_cpus(), "platform": platform.platform(),
                 "python_executable": sys.executable},
        "workers": workers,
        "scheduler": scheduler,
        "versions": versions(),
        "models": model_records(model=count_settings.get("model", "specialist"),
                                marker_models=count_settings.get("marker_models", {}), markers=markers),
        "samplesheet": file_record(samplesheet) if samplesheet else None,
        "inputs": inputs,
        "settings": dict(settings),
        "summaries": [],
    }


def read_run_record(out_dir: str | os.PathLike) -> dict | None:
    """A results folder's run.json, or None when there is none or it is damaged."""
    try:
        record = json.loads((Path(out_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_run_record(out_dir: str | os.PathLike, record: Mapping) -> Path:
    """Write ``run.json``; returns its path."""
    path = Path(out_dir) / RUN_FILE
    write_json(path, record)
    return path


def append_summary(out_dir: str | os.PathLike, *, command: Sequence[str] | None, started: str,
                   finished: str) -> Path:
    """Add one ``dcxcount summarize`` run to ``run.json``'s ``"summaries"`` (a record of it alone if none)."""
    path = Path(out_dir) / RUN_FILE
    record = read_run_record(out_dir)
    if record is None:
        # Counted before run.json existed, or damaged: what is known now is still worth keeping.
        record = {"dcxcount_version": __version__, "mode": None, "command": None, "summaries": []}
    record.setdefault("summaries", []).append({
        "command": list(command) if command is not None else None,
        "command_line": _shell_join(command) if command is not None else None,
        "cwd": os.getcwd(), "started": started, "finished": finished, "versions": versions()})
    write_json(path, record)
    return path


def command_to_rerun(record: Mapping, *, out_dir: str | os.PathLike) -> list[str]:
    """The recorded command with its ``--out`` folder replaced: the same study, counted afresh elsewhere.

    Raises
    ------
    ValueError
        The record holds no command (the study was counted from Python).
    """
    command = record.get("command")
    if not command:
        raise ValueError("run.json holds no command: the study was counted from Python, not the command line")
    command = list(command)
    for i, part in enumerate(command):
        if part == "--out" and i + 1 < len(command):
            command[i + 1] = str(out_dir)
            return command
        if part.startswith("--out="):
            command[i] = f"--out={out_dir}"
            return command
    raise ValueError("the recorded command has no --out")


def _shell_join(command: Sequence[str]) -> str:
    import shlex

    return shlex.join([str(part) for part in command])


