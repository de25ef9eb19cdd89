"""Study-wide actions of the viewer, without Qt: fine-tune on a study's corrections, recount, compare raters.

- :func:`fine_tune_study` fine-tunes the study's DCX model on its corrected
  sections (:func:`dcxcount.finetune.study_sections`,
  :func:`dcxcount.finetune.fine_tune`) and keeps the model and its card in
  the study (``OUT/models/``);
- :func:`recount_study` counts the study again with that model
  (:func:`dcxcount.batch.run_study`), keeping every person's correction;
- :func:`agreement_rows` and :func:`animal_rows` lay
  :func:`dcxcount.agreement.compare_studies` out as tables.

The figures are the core's; nothing here trains, scores or compares by itself.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._compat import keep_triton_from_system_llvm

if TYPE_CHECKING:
    from dcxcount.agreement import Agreement
    from dcxcount.batch import StudyResult
    from dcxcount.progress import CancelToken, ProgressCallback

__all__ = ["FineTuned", "MODELS_FOLDER", "base_model_path", "fine_tune_study", "recount_study", "agreement_rows",
           "animal_rows"]

MODELS_FOLDER = "models"
"""Fine-tuned models live in ``OUT/models/``, beside the study they learnt from."""


@dataclass(frozen=True)
class FineTuned:
    """A model fine-tuned on a study's corrected sections.

    Attributes
    ----------
    path : Path
        The model (``OUT/models/dcx_<UTC time>.safetensors``); its card is the
        ``.json`` beside it.
    before, after : dict
        :func:`dcxcount.segment.training.score_model` on the held-out
        corrected sections with the base model and with the new one
        (``f1``, ``precision``, ``recall``, ``ap50``, ...).
    n_train, n_val : int
        Corrected sections trained on and held out.
    base : Path
        The model it started from.
    """

    path: Path
    before: dict
    after: dict
    n_train: int
    n_val: int
    base: Path


def base_model_path(out_dir: str | os.PathLike) -> Path:
    """The DCX model the study was counted with, as a file to start fine-tuning from.

    The study's DCX model (``marker_models["dcx"]``, else ``model``) when it
    is a specialist file; the bundled DCX specialist otherwise (Cellpose-SAM
    is not fine-tuned here).
    """
    keep_triton_from_system_llvm()
    from dcxcount.batch import plan_from_results
    from dcxcount.segment import bundled_model_path

    settings = plan_from_results(out_dir).settings
    name = settings.count.marker_models.get("dcx", settings.count.model)
    path = Path(os.path.expanduser(name))
    return path if path.suffix == ".safetensors" and path.is_file() else bundled_model_path("dcx")


def fine_tune_study(out_dir: str | os.PathLike, *, steps: int = 300, val_fraction: float = 0.2, seed: int = 0,
                    progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> FineTuned:
    """Fine-tune the study's DCX model on its corrected sections and save it, with its card, in the study.

    Parameters
    ----------
    out_dir : path
        A counted study in which a person corrected at least two sections
        (:func:`dcxcount.finetune.study_sections`: those holding corrections).
    steps, val_fraction, seed
        As for :func:`dcxcount.finetune.fine_tune` (whole sections held out).
    progress, cancel
        :mod:`dcxcount.progress`; cancel is checked between training steps.

    Raises
    ------
    dcxcount.segment.training.TrainingDataError
        Fewer than two corrected sections, or the study cannot be read.
    dcxcount.progress.Cancelled
    """
    keep_triton_from_system_llvm()
    from dcxcount.finetune import fine_tune, study_sections
    from dcxcount.segment import load_specialist, save_specialist

    out_dir = Path(out_dir)
    sections = study_sections(out_dir, kind="dcx")
    base = base_model_path(out_dir)
    run = fine_tune(sections, base=load_specialist(base), base_path=base, val_fraction=val_fraction, steps=steps,
                    seed=seed, progress=progress, cancel=cancel)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = save_specialist(run.model, out_dir / MODELS_FOLDER / f"dcx_{stamp}.safetensors")
    return FineTuned(path=path, before=dict(run.before or {}), after=dict(run.after or {}),
                     n_train=len(run.train_sections), n_val=len(run.val_sections), base=base)


def recount_study(out_dir: str | os.PathLike, *, dcx_model: str | os.PathLike,
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> StudyResult:
    """Count the study again with another DCX model, keeping every person's correction.

    The samplesheet and settings come from ``OUT/settings.json``, with
    ``marker_models["dcx"]`` set to `dcx_model`. Sections without
    corrections are segmented again with the new model; corrected ones keep
    their corrected labels and are traced, staged and tabled again
    (:func:`dcxcount.batch.run_study` without ``recount``).
    """
    keep_triton_from_system_llvm()
    from dcxcount.batch import plan_from_results, run_study

    plan = plan_from_results(out_dir)
    count = replace(plan.settings.count, marker_models={**plan.settings.count.marker_models, "dcx": str(dcx_model)})
    return run_study(replace(plan, settings=replace(plan.settings, count=count)), progress=progress, cancel=cancel)


def _figure(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def agreement_rows(agreement: Agreement) -> list[tuple[str, str, str]]:
    """The pooled figures of a comparison as (quantity, value, note) rows.

    Detection F1 with its matched and unmatched objects, Cohen's kappa on
    stages and on stage groups with the cells rated by both and the observed
    agreement (and why a kappa is undefined), the counts of both raters and
    the core's notes.
    """
    s = agreement.summary()
    rows = [
        ("sections compared", str(s["n_sections"]), ""),
        (f"{s['marker'].upper()} detection F1", _figure(s["f1"]),
         f"{s['matched']} matched, {s['only_a']} only A, {s['only_b']} only B (IoU >= {s['min_iou']})"),
        ("counted by A", str(s["count_a"]), ""),
        ("counted by B", str(s["count_b"]), f"B - A = {s['count_b'] - s['count_a']}"),
    ]
    for label, kappa in (("kappa, stages A-F", s["stages"]), ("kappa, stage groups", s["stage_groups"])):
        note = kappa["note"] or f"{kappa['n']} cells rated by both, agreement {_figure(kappa['observed_agreement'])}"
        rows.append((label, _figure(kappa["kappa"]), note))
    rows += [("note", "", note) for note in s["notes"]]
    return rows


def animal_rows(agreement: Agreement) -> list[tuple[str, ...]]:
    """Per-animal counts of both raters and their difference, as table rows."""
    columns = ["animal", "group", "n_sections", "count_a", "count_b", "difference", "pct_difference", "f1"]
    table = agreement.animals
    return [tuple(_figure(row.get(c), 2 if c == "pct_difference" else 3) if isinstance(row.get(c), float)
                  else str(row.get(c, "")) for c in columns) for row in table.to_dict("records")]
