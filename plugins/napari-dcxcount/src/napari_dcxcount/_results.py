"""A dcxcount results folder in napari, without Qt: open it, show a section, review and correct it.

The reader (:func:`._reader.napari_get_results_reader`) and the Review widget
(:mod:`._review`) both go through here, so a section looks the same however
it was opened, and the same as a section counted in the viewer: its layers
come from :func:`._model.result_layer_data`.

- :class:`Study` reads ``OUT/settings.json`` (the samplesheet rows, the
  study's settings) and each section's ``result.json``;
- :func:`load_study_section` reads one section back (its image through the
  core's reader, its saved labels, GCL, processes and cells through
  :func:`dcxcount.section_folder.load_section`);
- :class:`ReviewSession` is the review: the order of sections (doubtful and
  failed first, or shuffled when blinded), the doubtful cells of a section, a
  person's stage calls and exclusions as
  :class:`dcxcount.corrections.Corrections`, the recount through
  :func:`dcxcount.pipeline.count_section` (from the edited labels and GCL,
  never segmenting), the save through
  :func:`dcxcount.section_folder.save_section`, and the blinding key.

Every count, stage and share comes from the core; the plugin only decides
what is shown and in which order.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._compat import keep_triton_from_system_llvm
from ._model import LayerData, result_layer_data

if TYPE_CHECKING:
    import pandas as pd

    from dcxcount.batch import StudySettings
    from dcxcount.corrections import Corrections
    from dcxcount.io import Section
    from dcxcount.pipeline import CountSettings, SectionResult
    from dcxcount.progress import CancelToken, ProgressCallback
    from dcxcount.section_folder import SavedSection

__all__ = ["ResultsFolderError", "SectionEntry", "Study", "StudySection", "ReviewSession", "find_results",
           "is_results_folder", "load_study_section", "study_section_layers", "mask_from_polygons",
           "BLINDING_KEY_FILE"]

BLINDING_KEY_FILE = "blinding_key.csv"
"""Written into the results folder when a blinded review ends, and only then."""

# Entries of result.json that are the batch's bookkeeping, not the section's figures.
_BOOKKEEPING = ("fingerprint", "key", "files", "format_version", "warnings", "traceback", "seconds", "status")


class ResultsFolderError(ValueError):
    """A folder that is not a dcxcount results folder or section folder; the message names it."""


def is_results_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a study's results folder or one section folder of it (no image is read).

    A results folder holds ``settings.json`` and ``sections/``; a section
    folder holds ``result.json``. napari asks this of every folder it opens,
    so it only looks at file names.
    """
    folder = Path(path)
    if folder.is_file() and folder.name in ("settings.json", "result.json"):
        folder = folder.parent
    return folder.is_dir() and (((folder / "settings.json").is_file() and (folder / "sections").is_dir())
                                or (folder / "result.json").is_file())


def find_results(path: str | os.PathLike) -> tuple[Path, str | None]:
    """The study folder of `path` and, when `path` is one section folder, that section's key.

    Parameters
    ----------
    path : path
        ``OUT``, ``OUT/settings.json``, ``OUT/sections/<key>`` or its ``result.json``.

    Raises
    ------
    ResultsFolderError
        Not a results folder, or a section folder outside a study (its image's
        path is only in the study's ``settings.json``).
    """
    folder = Path(path)
    if folder.is_file() and folder.name in ("settings.json", "result.json"):
        folder = folder.parent
    if (folder / "settings.json").is_file() and (folder / "sections").is_dir():
        return folder, None
    if (folder / "result.json").is_file():
        study = folder.parent.parent
        if folder.parent.name == "sections" and (study / "settings.json").is_file():
            return study, folder.name
        raise ResultsFolderError(f"{folder}: a section folder outside a results folder; open it inside the "
                                 "study's folder (OUT/sections/<key>), whose settings.json says where its image is")
    raise ResultsFolderError(f"{folder}: not a dcxcount results folder (no settings.json and sections/) nor a "
                             "section folder (no result.json)")


@dataclass(frozen=True)
class SectionEntry:
    """One row of a study, as the review lists it.

    Attributes
    ----------
    key : str
        Its folder under ``OUT/sections``.
    animal, group, section
        From the samplesheet (hidden in blinded review).
    path : str
        The section's image.
    row : dict
        The samplesheet row as ``settings.json`` records it.
    status : str
        ``ok`` or why the section failed (from its ``result.json``).
    doubtful : int
        The section's doubtful stage calls (``stage_doubtful`` of its result).
    """

    key: str
    animal: str
    group: str
    section: Any
    path: str
    row: dict
    status: str
    doubtful: int

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    @property
    def name(self) -> str:
        """``animal s<section>``, as the core's messages name a section."""
        section = self.section
        if isinstance(section, float) and section.is_integer():
            section = int(section)
        return f"{self.animal} s{section}"


@dataclass
class Study:
    """A counted study's results folder.

    Attributes
    ----------
    out_dir : Path
    record : dict
        ``settings.json``.
    entries : dict
        Section key -> :class:`SectionEntry`, in samplesheet order.
    """

    out_dir: Path
    record: dict
    entries: dict[str, SectionEntry]

    @classmethod
    def open(cls, path: str | os.PathLike) -> Study:
        """Read ``settings.json`` and every section's ``result.json`` (no image, no label).

        Raises
        ------
        ResultsFolderError
            As :func:`find_results`, or ``settings.json`` is damaged.
        """
        keep_triton_from_system_llvm()  # before the core's first import in this process (see _compat)
        from dcxcount.section_folder import read_record

        out_dir, _ = find_results(path)
        try:
            record = json.loads((out_dir / "settings.json").read_text(encoding="utf-8"))
            rows = list(record["samplesheet"])
            record["settings"]["count"]  # noqa: B018 (checks the entry is there)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ResultsFolderError(f"{out_dir}/settings.json: not a counted study's settings ({error!r})") from error
        entries = {}
        for row in rows:
            saved = read_record(out_dir / "sections" / row["_key"]) or {"status": "not counted"}
            doubtful = saved.get("stage_doubtful")
            entries[row["_key"]] = SectionEntry(
                key=row["_key"], animal=str(row["animal"]), group=str(row.get("group") or ""),
                section=row.get("section"), path=str(row["path"]), row=row, status=str(saved["status"]),
                doubtful=int(doubtful) if isinstance(doubtful, (int, float)) and np.isfinite(doubtful) else 0)
        return cls(out_dir=out_dir, record=record, entries=entries)

    @property
    def settings(self) -> StudySettings:
        """The study's settings (``StudySettings.from_record`` of ``settings.json``)."""
        keep_triton_from_system_llvm()
        from dcxcount.batch import StudySettings

        return StudySettings.from_record(self.record["settings"])

    def row_settings(self, key: str) -> tuple[CountSettings, float | None]:
        """A section's count settings and pixel size, as the batch counts it (:func:`dcxcount.batch.row_settings`)."""
        from dcxcount.batch import row_settings

        return row_settings(self.entries[key].row, self.settings)

    def folder(self, key: str) -> Path:
        return self.out_dir / "sections" / key


@dataclass
class StudySection:
    """One section of a study read back for the viewer.

    Attributes
    ----------
    entry : SectionEntry
    section : dcxcount.io.Section or None
        The image as the core reads it (None when it cannot be read; ``error`` says why).
    settings : dcxcount.pipeline.CountSettings
    saved : dcxcount.section_folder.SavedSection or None
        None for a failed section.
    result : dcxcount.pipeline.SectionResult or None
        The saved result as a ``SectionResult``, for :func:`._model.result_layer_data`.
    error : str
        Why the image or the saved result could not be read ("" when both were).
    """

    entry: SectionEntry
    section: Section | None
    settings: CountSettings
    saved: SavedSection | None
    result: SectionResult | None
    error: str = ""


def _saved_as_result(saved: SavedSection, *, pixel_size_um: float) -> SectionResult:
    """A saved section as the core's ``SectionResult`` (the layer frame rebuilt from the saved GCL)."""
    keep_triton_from_system_llvm()
    from dcxcount.gcl import frame_from_gcl
    from dcxcount.pipeline import SectionResult

    summary = {k: v for k, v in saved.record.items() if k not in _BOOKKEEPING}
    return SectionResult(cells=saved.cells, summary=summary, labels=saved.labels,
                         frame=frame_from_gcl(saved.gcl, pixel_size_um=pixel_size_um), processes=saved.processes,
                         corrections=saved.corrections)


def load_study_section(study: Study, key: str) -> StudySection:
    """Read one section of a study: its image (through the core's reader) and its saved result.

    A section that failed, or whose image moved, still comes back: what could
    be read is there and ``error`` says what could not.
    """
    keep_triton_from_system_llvm()
    from dcxcount.io import SectionReadError, read_section
    from dcxcount.mosaic import read_mosaic_box
    from dcxcount.section_folder import SectionFolderError, load_section

    entry = study.entries[key]
    settings, pixel_size_um = study.row_settings(key)
    errors = []
    saved = result = section = None
    if entry.failed:
        errors.append(f"the section was not counted: {entry.status}")
    else:
        try:
            saved = load_section(study.folder(key))
        except SectionFolderError as error:
            errors.append(str(error))
    try:
        if saved is not None and _is_mosaic_record(saved.record):
            section = read_mosaic_box(entry.path, saved.record, pixel_size_um=pixel_size_um)
        else:
            section = read_section(entry.path, pixel_size_um=pixel_size_um)
    except (SectionReadError, OSError, ValueError) as error:  # MosaicError is a ValueError
        errors.append(str(error))
    if saved is not None:
        px = section.pixel_size_um if section is not None else float(saved.record.get("pixel_size_um") or 1.0)
        result = _saved_as_result(saved, pixel_size_um=px)
    return StudySection(entry=entry, section=section, settings=settings, saved=saved, result=result,
                        error="; ".join(errors))


def _is_mosaic_record(record: dict) -> bool:
    """Whether a saved section was counted in a box of a mosaic (dcxcount.mosaic): its files are the box's."""
    return "mosaic_level" in record


def study_section_layers(loaded: StudySection, *, blinded: bool = False) -> list[LayerData]:
    """napari layers of a study's section: its image, then its result as a count in the viewer shows it.

    Parameters
    ----------
    loaded : StudySection
    blinded : bool
        Leave the image's path out of the layers' metadata (its file name
        usually names the animal).

    Returns
    -------
    list of (data, kwargs, layer type)
        One image layer per channel (:func:`._reader.section_image_layers`),
        then :func:`._model.result_layer_data` of the saved result (GCL as an
        editable Shapes layer, Labels per marker, processes, cells as Points
        with every ``cells.csv`` column as features). Label images are copies,
        so that edits in the viewer can be told from what was saved.
    """
    from ._reader import _units_kwargs, section_image_layers

    layers: list[LayerData] = []
    if loaded.section is not None:
        layers += section_image_layers(loaded.section, path=None if blinded else loaded.entry.path)
        px = loaded.section.pixel_size_um
    elif loaded.result is not None:
        px = float(loaded.result.summary.get("pixel_size_um") or 1.0)
    if loaded.result is not None:
        units = _units_kwargs().get("units")
        for data, kwargs, kind in result_layer_data(loaded.result, scale=(px, px), units=units):
            if kind == "labels":
                data = np.array(data, copy=True)  # edits must not reach the saved copy we compare with
            layers.append((data, kwargs, kind))
    return layers


def mask_from_polygons(polygons: list[np.ndarray], *, shape: tuple[int, int]) -> np.ndarray:
    """The GCL mask a Shapes layer's polygons enclose (their union), in pixels.

    Parameters
    ----------
    polygons : list of (N, 2) arrays
        Vertices as (row, column) in the image's pixels (a Shapes layer's
        ``data`` when it has the image's scale).
    shape : (Y, X)
    """
    from skimage.draw import polygon2mask

    mask = np.zeros(shape, bool)
    for polygon in polygons:
        polygon = np.asarray(polygon, float)[:, -2:]
        if len(polygon) >= 3:
            mask |= polygon2mask(shape, polygon)
    return mask


@dataclass
class _Current:
    """The section under review and what the person changed in it since it was read or saved."""

    loaded: StudySection
    corrections: Corrections
    result: SectionResult | None
    labels: dict[str, np.ndarray]  # as last saved: edits are told by comparison
    gcl: np.ndarray | None
    changed: bool = False  # corrections made since the last save


@dataclass
class ReviewSession:
    """Reviewing a study section by section, as a person does it in the viewer (no Qt).

    Parameters
    ----------
    out_dir : path
        The results folder.
    blinded : bool
        Hide animal and group names: sections are named ``section 1`` ...
        ``section N`` in a seeded random order, and the key (code -> animal,
        group, section) is only given by :meth:`end_review`.
    seed : int
        Seeds the blinded order.
    who : str, optional
        Who reviews (default: the logged-in user), recorded with each correction.

    Attributes
    ----------
    study : Study
    order : list of str
        Section keys in review order: failed sections first, then by
        doubtful stage calls, most first (not blinded); shuffled (blinded).
    """

    out_dir: str | os.PathLike
    blinded: bool = False
    seed: int = 0
    who: str | None = None
    study: Study = field(init=False)
    order: list[str] = field(init=False)
    index: int = field(init=False, default=-1)
    ended: bool = field(init=False, default=False)
    current: _Current | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        keep_triton_from_system_llvm()
        self.study = Study.open(self.out_dir)
        keys = list(self.study.entries)
        if self.blinded:
            # The order must not follow the samplesheet (often sorted by group) nor the doubtful
            # calls (which follow the density, so the group).
            random.Random(self.seed).shuffle(keys)
        else:
            entries = self.study.entries
            keys.sort(key=lambda k: (not entries[k].failed, -entries[k].doubtful))
        self.order = keys
        if self.who is None:
            from dcxcount.corrections import now_edit

            self.who = now_edit().who

    # ------------------------------------------------------------------ naming

    def code(self, key: str) -> str:
        """``section i``: the section's blinded name (its place in the blinded order)."""
        return f"section {self.order.index(key) + 1}"

    def title(self, key: str | None = None) -> str:
        """What the viewer calls a section: ``section i`` when blinded, else ``animal s<section>``."""
        key = key if key is not None else self.key
        if key is None:
            return ""
        return self.code(key) if self.blinded and not self.ended else self.study.entries[key].name

    def redact(self, text: str) -> str:
        """`text` with every animal, group, image path and folder name replaced, while blinded.

        The core's messages name the file (whose name usually names the
        animal); a blinded reviewer must not read them.
        """
        if not self.blinded or self.ended:
            return text
        secrets: dict[str, str] = {}
        for key, entry in self.study.entries.items():
            for secret in (entry.animal, entry.group, Path(entry.path).name):
                secrets.setdefault(secret, "(hidden)")
            secrets[entry.path] = secrets[key] = self.code(key)
        # Longest first, so that a path is replaced whole before the animal name inside it.
        for secret in sorted(set(secrets) - {""}, key=len, reverse=True):
            text = text.replace(secret, secrets[secret])
        return text

    @property
    def key(self) -> str | None:
        return self.order[self.index] if 0 <= self.index < len(self.order) else None

    def listing(self) -> list[tuple[str, str, int]]:
        """(name, status, doubtful calls) per section, in review order; blinded: no status text naming files."""
        rows = []
        for key in self.order:
            entry = self.study.entries[key]
            status = entry.status if not self.blinded else ("ok" if not entry.failed else "failed")
            rows.append((self.title(key), status, entry.doubtful))
        return rows

    # ------------------------------------------------------------------ moving

    def go(self, index: int) -> StudySection:
        """Read the section at place `index` of the review order (wrapping around)."""
        self.index = index % len(self.order)
        loaded = load_study_section(self.study, self.order[self.index])
        saved = loaded.saved
        corrections = saved.corrections_with_changes(who="unknown") if saved is not None else None
        if corrections is None:
            from dcxcount.corrections import Corrections

            corrections = Corrections()
        self.current = _Current(loaded=loaded, corrections=corrections, result=loaded.result,
                                labels={m: np.array(a, copy=True) for m, a in (saved.labels if saved else {}).items()},
                                gcl=None if saved is None else saved.gcl.copy())
        return loaded

    def next(self) -> StudySection:
        return self.go(self.index + 1)

    def previous(self) -> StudySection:
        return self.go(self.index - 1)

    # ------------------------------------------------------------------ cells

    def _require(self) -> _Current:
        if self.current is None or self.current.result is None:
            raise ResultsFolderError("no counted section is open" if self.current is None else
                                     f"{self.title()} has no counted result to correct "
                                     f"({self.current.loaded.error})")
        return self.current

    def doubtful_cells(self) -> list[int]:
        """``cell_id`` of the section's counted DCX cells whose stage call is doubtful (``stage_doubtful``), in order."""
        if self.current is None or self.current.result is None:
            return []
        cells = self.current.result.cells
        dcx = cells[(cells["marker"] == "dcx") & cells["stage_doubtful"].fillna(False).astype(bool)]
        if "counted" in dcx:
            # Cells outside the counted region do not change a count: the summary's stage_doubtful
            # leaves them out, and so does the review.
            dcx = dcx[dcx["counted"].fillna(False).astype(bool)]
        return [int(c) for c in dcx["cell_id"]]

    def cell(self, cell_id: int, *, marker: str = "dcx") -> pd.Series:
        """A cell's row of the current result's ``cells.csv``."""
        cells = self._require().result.cells
        rows = cells[(cells["marker"] == marker) & (cells["cell_id"] == int(cell_id))]
        if rows.empty:
            raise KeyError(f"no {marker} cell {cell_id} in {self.title()}")
        return rows.iloc[0]

    def set_stage(self, cell_id: int, stage: str) -> Corrections:
        """Record the person's stage call for one DCX cell (who: the reviewer, when: now)."""
        from dcxcount.corrections import now_edit

        current = self._require()
        self.cell(cell_id)  # a cell of this section, or KeyError
        current.corrections = current.corrections.set_stage(int(cell_id), stage.upper(), edit=now_edit(self.who))
        current.changed = True
        return current.corrections

    def exclude(self, cell_id: int, *, marker: str = "dcx") -> Corrections:
        """Exclude one object from the counts (it stays in the labels and in cells.csv, marked)."""
        from dcxcount.corrections import now_edit

        current = self._require()
        self.cell(cell_id, marker=marker)
        current.corrections = current.corrections.exclude(marker, int(cell_id), edit=now_edit(self.who))
        current.changed = True
        return current.corrections

    def corrections_rows(self) -> list[tuple[str, str, str]]:
        """The current section's corrections as (what, value, who and when) rows, for the widget's table."""
        if self.current is None:
            return []
        c = self.current.corrections
        rows = [(f"cell {cell_id} stage", stage, f"{edit.who} {edit.when}")
                for cell_id, (stage, edit) in sorted(c.stages.items())]
        rows += [(f"{marker} {cell_id}", "excluded", f"{edit.who} {edit.when}")
                 for (marker, cell_id), edit in sorted(c.excluded.items())]
        rows += [(f"{marker} labels", "edited", f"{edit.who} {edit.when}") for marker, edit in sorted(c.labels.items())]
        if c.gcl is not None:
            rows.append(("GCL", "edited", f"{c.gcl.who} {c.gcl.when}"))
        return rows

    # ------------------------------------------------------------------ recount and save

    def edits(self, *, labels: dict[str, np.ndarray], gcl_mask: np.ndarray | None) -> Corrections:
        """The corrections plus a record of each label image (and the GCL) that differs from what was saved."""
        from dcxcount.corrections import now_edit

        current = self._require()
        corrections = current.corrections
        for marker, image in labels.items():
            if marker in current.labels and not np.array_equal(np.asarray(image), current.labels[marker]):
                corrections = corrections.edited_labels(marker, edit=now_edit(self.who))
        if gcl_mask is not None and current.gcl is not None and not np.array_equal(gcl_mask, current.gcl):
            corrections = corrections.edited_gcl(edit=now_edit(self.who))
        return corrections

    def has_unsaved_changes(self, *, labels: dict[str, np.ndarray], gcl_mask: np.ndarray | None) -> bool:
        """Whether a save would write something new (a correction, an edited label image or GCL)."""
        if self.current is None or self.current.result is None:
            return False
        return self.current.changed or self.edits(labels=labels, gcl_mask=gcl_mask) != self.current.corrections

    def recount(self, *, labels: dict[str, np.ndarray], gcl_mask: np.ndarray | None = None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> SectionResult:
        """Recount the section from the (edited) labels and GCL with the corrections, through the core.

        :func:`dcxcount.batch.recount_section`, as ``dcxcount summarize`` does:
        tracing, staging, co-labels and tables again from every marker's labels
        and the GCL mask, no segmentation. Label images and a GCL that differ from what was saved
        are recorded as corrections (who: the reviewer).

        Parameters
        ----------
        labels : dict
            Marker -> label image (the Labels layers' data).
        gcl_mask : (Y, X) bool array, optional
            An edited GCL; None keeps the saved one.
        progress, cancel
            As for :func:`dcxcount.pipeline.count_section`.

        Returns
        -------
        dcxcount.pipeline.SectionResult
            Also kept as the current result (the next save writes it).
        """
        keep_triton_from_system_llvm()
        from dcxcount.batch import recount_section

        current = self._require()
        if current.loaded.section is None:
            raise ResultsFolderError(f"{self.title()}: the image cannot be read, so it cannot be recounted "
                                     f"({current.loaded.error})")
        corrections = self.edits(labels=labels, gcl_mask=gcl_mask)
        # The section is the image, or for a mosaic the box it was counted in (as the batch recounts it).
        result = recount_section(current.loaded.section,
                                 record=current.loaded.saved.record if current.loaded.saved is not None else {},
                                 labels={m: np.asarray(a, np.int32) for m, a in labels.items()},
                                 gcl_mask=gcl_mask if gcl_mask is not None else current.gcl, corrections=corrections,
                                 settings=current.loaded.settings, progress=progress, cancel=cancel)
        current.corrections = corrections
        current.result = result
        current.changed = True
        return result

    def save(self, result: SectionResult | None = None) -> dict:
        """Write the section folder so that ``dcxcount summarize`` reads the corrections as the batch's own.

        The previous ``result.json``'s fingerprint and key are kept: the
        section's image and settings did not change, so a later ``dcxcount
        count`` or ``summarize`` takes the folder as up to date rather than
        as edited by hand.

        Returns
        -------
        dict
            What was written to ``result.json``.
        """
        keep_triton_from_system_llvm()
        from dcxcount.section_folder import save_section

        current = self._require()
        result = result if result is not None else current.result
        saved = current.loaded.saved
        previous = saved.record if saved is not None else {}
        record = {k: previous[k] for k in ("fingerprint", "key", "warnings") if k in previous}
        written = save_section(self.study.folder(current.loaded.entry.key), result, record=record)
        current.labels = {m: np.array(a, copy=True) for m, a in result.labels.items()}
        current.gcl = result.frame.gcl.copy()
        current.result = result
        current.changed = False
        # The listing's doubtful count follows the saved result.
        entry = current.loaded.entry
        self.study.entries[entry.key] = replace(entry, doubtful=int(written.get("stage_doubtful") or 0))
        return written

    # ------------------------------------------------------------------ end

    def end_review(self) -> pd.DataFrame:
        """End the review and reveal the blinding key.

        Returns
        -------
        DataFrame
            ``code, animal, group, section, key`` per section in review order.
            When blinded, it is also written to ``OUT/blinding_key.csv`` (only
            now, so that the key is not on disk while a person reviews).
        """
        import pandas as pd

        entries = self.study.entries
        key = pd.DataFrame([{"code": self.code(k), "animal": entries[k].animal, "group": entries[k].group,
                             "section": entries[k].section, "key": k} for k in self.order])
        if self.blinded:
            key.to_csv(self.study.out_dir / BLINDING_KEY_FILE, index=False)
        self.ended = True
        return key
