"""Agreement between two raters who reviewed copies of one counted study.

Two people start from the same automatic count and correct it independently
(delete, add or split labels, override stages). `compare_studies` says how far
their corrected results agree:

- detection: the counted objects of rater A and rater B are paired one to one
  by the intersection over union (IoU) of their masks, and F1 = 2 x matched /
  (n_A + n_B);
- stages: unweighted Cohen's kappa on the stages A-F, and on the stage groups
  (proliferative, intermediate, postmitotic), over the matched cells;
- counts: each animal's count by B minus A's, and as a percentage of A's.

Only a results folder's own files are read: ``sections.csv`` (which sections
there are, and whether each was counted) and, per section,
``sections/<key>/labels_<marker>.tif`` and ``sections/<key>/cells.csv``
(columns ``marker``, ``cell_id``, ``counted`` and ``stage``). A label's value is
its ``cell_id``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import cohen_kappa_score

from .batch import section_key, strict_json
from .metrics import Detection
from .progress import CancelToken, ProgressCallback, report
from .vocabulary import GROUP_NAMES, STAGE_GROUPS, STAGES

__all__ = ["StudyMismatchError", "Kappa", "Agreement", "compare_studies", "match_masks", "stage_kappa"]


class StudyMismatchError(ValueError):
    """The two folders are not comparable copies of one counted study.

    Raised for a folder that is not a results folder, a file a section needs that
    is missing or unreadable, sections that differ between the two folders, a
    section counted in one and failed in the other, or a section whose label
    image and cells table disagree. The message names the folder or file and the
    problem; ``folder`` is the folder (or file) at fault.
    """

    def __init__(self, folder: str | os.PathLike[str], problem: str):
        self.folder = Path(folder)
        self.problem = problem
        super().__init__(f"{folder}: {problem}")


@dataclass(frozen=True)
class Kappa:
    """Unweighted Cohen's kappa of two raters' categories for the same cells.

    Attributes
    ----------
    value : float
        Cohen's kappa, (p_o - p_e) / (1 - p_e); NaN when undefined (``reason``).
    n : int
        Cells rated by both.
    observed_agreement : float
        p_o, the share of those cells given the same category (NaN for none).
    reason : str or None
        Why ``value`` is NaN; None when it is defined.
    """

    value: float
    n: int
    observed_agreement: float
    reason: str | None = None


@dataclass(frozen=True)
class Agreement:
    """Agreement of rater A's and rater B's copies of one study.

    Attributes
    ----------
    folder_a, folder_b : Path
        The two results folders.
    marker : str
        The marker compared (``dcx``).
    min_iou : float
        Objects of A and B pair when their masks' IoU reaches this.
    sections : DataFrame
        One row per section: ``animal, group, section, key, status, n_a, n_b,
        matched, only_a, only_b, f1``, and for stages and stage groups the
        cells rated by both (``n_stage``, ``n_group``), their observed agreement
        (``stage_agreement``, ``group_agreement``), the kappa (``stage_kappa``,
        ``group_kappa``) and why it is undefined (``stage_kappa_note``,
        ``group_kappa_note``). A section that failed in both copies has
        ``status`` other than ``ok`` and no figures.
    animals : DataFrame
        One row per animal: ``animal, group, n_sections, count_a, count_b,
        difference`` (B minus A), ``pct_difference`` (100 x difference / count_a;
        NaN when A counted none), ``matched, f1``. Counts are the counted
        objects of the animal's sections in both copies.
    detection : Detection
        Matched objects (``true_positives``), objects only A has
        (``false_negatives``) and only B has (``false_positives``), pooled over
        the study's sections.
    stages, groups : Kappa
        Kappa over every matched cell of the study.
    notes : tuple of str
        What the reader should know, e.g. that a copy's ``sections.csv`` counts
        differ from its section folders (its study tables are older).
    """

    folder_a: Path
    folder_b: Path
    marker: str
    min_iou: float
    sections: pd.DataFrame
    animals: pd.DataFrame
    detection: Detection
    stages: Kappa
    groups: Kappa
    notes: tuple[str, ...] = field(default=())

    @property
    def f1(self) -> float:
        """Pooled detection F1: 2 x matched / (n_A + n_B) over all sections."""
        return self.detection.f1

    def summary(self) -> dict:
        """The pooled figures and settings as a strict-JSON-ready dictionary (NaN as None)."""
        d = self.detection
        return strict_json({
            "folder_a": str(self.folder_a), "folder_b": str(self.folder_b), "marker": self.marker,
            "min_iou": self.min_iou, "kappa": "Cohen's kappa, unweighted",
            "n_sections": int((self.sections["status"] == "ok").sum()),
            "n_a": d.true_positives + d.false_negatives, "n_b": d.true_positives + d.false_positives,
            "matched": d.true_positives, "only_a": d.false_negatives, "only_b": d.false_positives, "f1": d.f1,
            "stages": _kappa_record(self.stages), "stage_groups": _kappa_record(self.groups),
            "count_a": int(self.animals["count_a"].sum()), "count_b": int(self.animals["count_b"].sum()),
            "notes": list(self.notes),
        })


def _kappa_record(kappa: Kappa) -> dict:
    return {"kappa": kappa.value, "n": kappa.n, "observed_agreement": kappa.observed_agreement,
            "note": kappa.reason}


def match_masks(labels_a: np.ndarray, labels_b: np.ndarray, *,
                min_iou: float = 0.5) -> tuple[Detection, np.ndarray]:
    """Optimal one-to-one matching of two label images' objects by mask IoU.

    Pairs whose intersection over union reaches ``min_iou`` are candidates; of
    these, the assignment with the largest total IoU is kept (for ``min_iou``
    above 0.5 each object has at most one candidate anyway).

    Parameters
    ----------
    labels_a, labels_b : (Y, X) int arrays
        Label images of the same shape, 0 background.
    min_iou : float, keyword-only
        In (0, 1].

    Returns
    -------
    detection : Detection
        ``true_positives`` matched pairs; ``false_negatives`` objects only in
        ``labels_a``, ``false_positives`` objects only in ``labels_b``.
    pairs : (K, 2) int array
        Label values (a, b) of the matched pairs, in increasing order of a.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    a = np.asarray(labels_a).astype(np.int64, copy=False)
    b = np.asarray(labels_b).astype(np.int64, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"label images differ in shape: {a.shape} and {b.shape}")
    ids_a, area_a = np.unique(a[a > 0], return_counts=True)
    ids_b, area_b = np.unique(b[b > 0], return_counts=True)
    pairs = np.zeros((0, 2), np.int64)
    both = (a > 0) & (b > 0)
    if both.any():
        stride = np.int64(b.max()) + 1
        codes, overlap = np.unique(a[both] * stride + b[both], return_counts=True)
        pair_a, pair_b = np.divmod(codes, stride)
        row = np.searchsorted(ids_a, pair_a)
        col = np.searchsorted(ids_b, pair_b)
        iou = overlap / (area_a[row] + area_b[col] - overlap)
        keep = iou >= min_iou
        if keep.any():
            # Only objects with a candidate enter the assignment, which keeps it small.
            rows, row_index = np.unique(row[keep], return_inverse=True)
            cols, col_index = np.unique(col[keep], return_inverse=True)
            gain = np.zeros((len(rows), len(cols)))
            gain[row_index, col_index] = iou[keep]
            r, c = linear_sum_assignment(gain, maximize=True)
            good = gain[r, c] >= min_iou
            pairs = np.stack([ids_a[rows[r[good]]], ids_b[cols[c[good]]]], axis=1)
            pairs = pairs[np.argsort(pairs[:, 0])]
    tp = len(pairs)
    return Detection(tp, len(ids_b) - tp, len(ids_a) - tp), pairs


def stage_kappa(calls_a: pd.Series | np.ndarray, calls_b: pd.Series | np.ndarray, *,
                categories: tuple[str, ...]) -> Kappa:
    """Unweighted Cohen's kappa of two raters' calls on the same cells.

    Parameters
    ----------
    calls_a, calls_b : sequences of str, same length
        Rater A's and rater B's category per cell (e.g. the stages A-F); a cell
        either rater left without one of ``categories`` is left out.
    categories : tuple of str, keyword-only
        The categories (all count, used or not).

    Returns
    -------
    Kappa
        NaN with a reason when no cell was rated by both, or when both raters
        gave every cell the same single category (chance agreement is then 1
        and kappa is 0/0).
    """
    a = pd.Series(np.asarray(calls_a, dtype=object))
    b = pd.Series(np.asarray(calls_b, dtype=object))
    if len(a) != len(b):
        raise ValueError(f"the raters' calls differ in length: {len(a)} and {len(b)}")
    rated = a.isin(categories).to_numpy() & b.isin(categories).to_numpy()
    a, b = a[rated].astype(str), b[rated].astype(str)
    n = int(rated.sum())
    if n == 0:
        return Kappa(math.nan, 0, math.nan, "no cell rated by both raters")
    observed = float((a.to_numpy() == b.to_numpy()).mean())
    used = set(a) | set(b)
    if len(used) == 1:
        return Kappa(math.nan, n, observed,
                     f"both raters called all {n} cells {used.pop()}: chance agreement is 1, kappa undefined")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(a.to_numpy(), b.to_numpy(), labels=list(categories)))
    return Kappa(value, n, observed)


def _study_sections(folder: Path) -> pd.DataFrame:
    """sections.csv's identity and status columns, plus each section's folder key."""
    if not folder.is_dir():
        raise StudyMismatchError(folder, "no such folder")
    table_path = folder / "sections.csv"
    try:
        table = pd.read_csv(table_path, dtype={"animal": str, "group": str, "section": str, "status": str},
                            keep_default_na=False)
    except FileNotFoundError:
        raise StudyMismatchError(folder, "not a dcxcount results folder (it has no sections.csv)") from None
    except (OSError, ValueError) as error:
        raise StudyMismatchError(table_path, f"cannot read the sections table ({error})") from None
    missing = [c for c in ("animal", "group", "section", "status") if c not in table]
    if missing:
        raise StudyMismatchError(table_path, f"the sections table lacks the column(s) {', '.join(missing)}")
    table["key"] = [section_key(row) for row in table.to_dict("records")]
    if table["key"].duplicated().any():
        twice = table.loc[table["key"].duplicated(), "key"].iloc[0]
        raise StudyMismatchError(table_path, f"section {twice} is listed twice")
    return table.set_index("key", drop=False)


def _describe(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _same_study(table_a: pd.DataFrame, table_b: pd.DataFrame, folder_a: Path, folder_b: Path) -> None:
    only_a = sorted(set(table_a.index) - set(table_b.index))
    only_b = sorted(set(table_b.index) - set(table_a.index))
    if only_a or only_b:
        said = []
        if only_a:
            said.append(f"sections only in {folder_a}: {_describe(only_a)}")
        if only_b:
            said.append(f"sections only in {folder_b}: {_describe(only_b)}")
        raise StudyMismatchError(folder_b, f"not a copy of the study in {folder_a}; " + "; ".join(said))
    groups = table_a["group"].ne(table_b.loc[table_a.index, "group"])
    if groups.any():
        key = groups[groups].index[0]
        raise StudyMismatchError(folder_b, f"section {key} is in group {table_b.at[key, 'group']!r} here but "
                                           f"{table_a.at[key, 'group']!r} in {folder_a}")
    for key in table_a.index:
        ok_a, ok_b = table_a.at[key, "status"] == "ok", table_b.at[key, "status"] == "ok"
        if ok_a != ok_b:
            failed, counted = (folder_a, folder_b) if ok_b else (folder_b, folder_a)
            status = (table_a if ok_b else table_b).at[key, "status"]
            raise StudyMismatchError(failed, f"section {key} failed here ({status}) but was counted in {counted}; "
                                             "agreement needs it counted in both")


def _counted_labels(folder: Path, key: str, marker: str) -> tuple[np.ndarray, pd.DataFrame]:
    """A section's label image with only its counted objects, and their stages by cell_id."""
    section = folder / "sections" / key
    labels_path, cells_path = section / f"labels_{marker}.tif", section / "cells.csv"
    for path in (labels_path, cells_path):
        if not path.is_file():
            raise StudyMismatchError(path, "missing; the section is listed as counted")
    try:
        labels = np.asarray(tifffile.imread(labels_path))
    except (OSError, ValueError) as error:
        raise StudyMismatchError(labels_path, f"cannot read the label image ({error})") from None
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise StudyMismatchError(labels_path, f"not a label image (shape {labels.shape}, type {labels.dtype})")
    try:
        cells = pd.read_csv(cells_path, usecols=lambda c: c in ("marker", "cell_id", "counted", "stage"),
                            dtype={"marker": str, "stage": str})
    except (OSError, ValueError) as error:
        raise StudyMismatchError(cells_path, f"cannot read the cells table ({error})") from None
    missing = [c for c in ("marker", "cell_id", "counted") if c not in cells]
    if missing:
        raise StudyMismatchError(cells_path, f"the cells table lacks the column(s) {', '.join(missing)}")
    cells = cells[cells["marker"] == marker]
    ids = pd.to_numeric(cells["cell_id"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any() or ids.duplicated().any():
        raise StudyMismatchError(cells_path, f"the {marker} rows' cell_id values are not distinct whole numbers")
    cells = cells.assign(cell_id=ids.astype(np.int64),
                         counted=cells["counted"].astype(str).str.strip().str.lower().isin(("true", "1", "1.0")))
    present = np.unique(labels)
    present = present[present > 0]
    unlisted = np.setdiff1d(present, cells["cell_id"].to_numpy())
    absent = np.setdiff1d(cells["cell_id"].to_numpy(), present)
    if len(unlisted) or len(absent):
        said = []
        if len(unlisted):
            said.append(f"label(s) {_describe([str(i) for i in unlisted])} of {labels_path.name} have no row")
        if len(absent):
            said.append(f"cell_id(s) {_describe([str(i) for i in absent])} have no pixels in {labels_path.name}")
        raise StudyMismatchError(cells_path, f"the {marker} rows disagree with the label image: "
                                             + "; ".join(said) + " (the table is older than the labels)")
    counted = cells[cells["counted"]]
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[counted["cell_id"].to_numpy()] = True
    stages = counted.set_index("cell_id")["stage"] if "stage" in counted else pd.Series(
        np.nan, index=counted["cell_id"], dtype=object)
    return np.where(keep[labels], labels, 0), stages


def _stale_counts(table: pd.DataFrame, counts: dict[str, int], folder: Path, marker: str) -> list[str]:
    """Sections whose count in sections.csv differs from the counted objects in their folder."""
    column = f"{marker}_count"
    if column not in table:
        return []
    listed = pd.to_numeric(table[column], errors="coerce")
    stale = [key for key, n in counts.items() if not pd.isna(listed[key]) and int(listed[key]) != n]
    if not stale:
        return []
    return [f"{folder}: sections.csv's {column} differs from the counted cells in the folder of "
            f"{_describe(stale)}; the study tables are older than the section folders, and the agreement uses "
            f"the section folders"]


def compare_studies(out_a: str | os.PathLike[str], out_b: str | os.PathLike[str], *, marker: str = "dcx",
                    min_iou: float = 0.5, progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> Agreement:
    """Compare two raters' reviewed copies of one counted study.

    Parameters
    ----------
    out_a, out_b : path
        Results folders written by ``dcxcount count`` (and corrected), one per
        rater: rater A and rater B. B minus A is reported.
    marker : str, keyword-only
        The marker whose objects are compared (``dcx``; stages exist for DCX
        only, so kappa is NaN, with its reason, for another marker).
    min_iou : float, keyword-only
        Counted objects of A and B pair when the intersection over union of
        their masks reaches this; in (0, 1].
    progress, cancel : keyword-only, optional
        ``progress(fraction, message)`` after each section; ``cancel`` is
        checked between sections (:mod:`dcxcount.progress`).

    Returns
    -------
    Agreement
        Per-section and per-animal tables, and the pooled detection and kappas.

    Raises
    ------
    StudyMismatchError
        When a folder is not a results folder, the two hold different
        sections, a section was counted in one and failed in the other, or a
        counted section's label image or cells table is missing, unreadable or
        inconsistent. The message names the folder or file.
    ValueError
        When ``min_iou`` is outside (0, 1].
    dcxcount.progress.Cancelled
        When ``cancel`` was cancelled.

    Notes
    -----
    Only counted objects (``counted`` true in the section's ``cells.csv``) are
    compared. Kappa is unweighted: a stage A called F disagrees as much as one
    called B. Stage groups are derived from the stages
    (:data:`dcxcount.vocabulary.STAGE_GROUPS`). A section that failed in both
    copies is listed with its status and no figures.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    folder_a, folder_b = Path(out_a), Path(out_b)
    table_a, table_b = _study_sections(folder_a), _study_sections(folder_b)
    _same_study(table_a, table_b, folder_a, folder_b)
    rows, stage_pairs = [], []
    counts_a, counts_b = {}, {}
    for done, (key, info) in enumerate(table_a.iterrows()):
        report(progress, cancel, done / len(table_a), f"{info['animal']} s{info['section']}")
        row = {"animal": info["animal"], "group": info["group"], "section": info["section"], "key": key,
               "status": info["status"]}
        if info["status"] != "ok":
            rows.append(row)
            continue
        labels_a, stages_a = _counted_labels(folder_a, key, marker)
        labels_b, stages_b = _counted_labels(folder_b, key, marker)
        if labels_a.shape != labels_b.shape:
            raise StudyMismatchError(folder_b / "sections" / key / f"labels_{marker}.tif",
                                     f"{labels_b.shape[1]} x {labels_b.shape[0]} px, but "
                                     f"{labels_a.shape[1]} x {labels_a.shape[0]} px in {folder_a}")
        detection, pairs = match_masks(labels_a, labels_b, min_iou=min_iou)
        counts_a[key], counts_b[key] = len(stages_a), len(stages_b)
        matched = pd.DataFrame({"animal": info["animal"], "key": key,
                                "stage_a": stages_a.reindex(pairs[:, 0]).to_numpy(),
                                "stage_b": stages_b.reindex(pairs[:, 1]).to_numpy()})
        stage_pairs.append(matched)
        row.update(_section_figures(detection, matched, marker))
        rows.append(row)
    report(progress, cancel, 1.0, "compared")
    sections = pd.DataFrame(rows)
    for column in ("n_a", "n_b", "matched", "only_a", "only_b", "n_stage", "n_group"):
        if column not in sections:
            sections[column] = np.nan
        sections[column] = sections[column].astype("Int64")
    matched = pd.concat(stage_pairs, ignore_index=True) if stage_pairs else pd.DataFrame(
        columns=["animal", "key", "stage_a", "stage_b"])
    ok = sections[sections["status"] == "ok"]
    detection = Detection(int(ok["matched"].sum()), int(ok["only_b"].sum()), int(ok["only_a"].sum()))
    stages, groups = _kappas(matched, marker)
    notes = _stale_counts(table_a, counts_a, folder_a, marker) + _stale_counts(table_b, counts_b, folder_b, marker)
    return Agreement(folder_a=folder_a, folder_b=folder_b, marker=marker, min_iou=float(min_iou),
                     sections=sections, animals=_animal_table(sections), detection=detection,
                     stages=stages, groups=groups, notes=tuple(notes))


def _kappas(matched: pd.DataFrame, marker: str) -> tuple[Kappa, Kappa]:
    if marker != "dcx":
        reason = f"{marker} objects have no stages"
        return Kappa(math.nan, 0, math.nan, reason), Kappa(math.nan, 0, math.nan, reason)
    groups_a, groups_b = matched["stage_a"].map(STAGE_GROUPS), matched["stage_b"].map(STAGE_GROUPS)
    return (stage_kappa(matched["stage_a"], matched["stage_b"], categories=STAGES),
            stage_kappa(groups_a, groups_b, categories=GROUP_NAMES))


def _section_figures(detection: Detection, matched: pd.DataFrame, marker: str) -> dict:
    stages, groups = _kappas(matched, marker)
    return {"n_a": detection.true_positives + detection.false_negatives,
            "n_b": detection.true_positives + detection.false_positives,
            "matched": detection.true_positives, "only_a": detection.false_negatives,
            "only_b": detection.false_positives, "f1": detection.f1,
            "n_stage": stages.n, "stage_agreement": stages.observed_agreement, "stage_kappa": stages.value,
            "stage_kappa_note": stages.reason or "",
            "n_group": groups.n, "group_agreement": groups.observed_agreement, "group_kappa": groups.value,
            "group_kappa_note": groups.reason or ""}


def _animal_table(sections: pd.DataFrame) -> pd.DataFrame:
    ok = sections[sections["status"] == "ok"]
    per_animal = ok.groupby(["animal", "group"], sort=False).agg(
        n_sections=("key", "size"), count_a=("n_a", "sum"), count_b=("n_b", "sum"),
        matched=("matched", "sum")).reset_index()
    count_a = per_animal["count_a"].astype(float)
    per_animal["difference"] = per_animal["count_b"] - per_animal["count_a"]
    per_animal["pct_difference"] = np.where(count_a > 0, 100 * per_animal["difference"] / count_a.where(count_a > 0),
                                            np.nan)
    total = (per_animal["count_a"] + per_animal["count_b"]).astype(float)
    per_animal["f1"] = np.where(total > 0, 2 * per_animal["matched"] / total.where(total > 0), np.nan)
    return per_animal[["animal", "group", "n_sections", "count_a", "count_b", "difference", "pct_difference",
                       "matched", "f1"]]
