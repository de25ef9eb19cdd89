"""Making a specialist model: fine-tuning on a lab's corrected sections, or training on synthetic ones.

The two workflows the CLI's ``dcxcount train`` and the napari plugin run.
Each returns the model with its model card (``model.info``): where it started
from, what it learnt on (with file hashes), the optimisation settings and,
when fine-tuning, detection scores on held-out corrected sections before and
after.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .appearance import FAMILIES
from .hashing import file_sha256
from .progress import CancelToken, ProgressCallback
from .section_folder import SectionFolderError, load_section, read_record, saved_edits
from .segment.specialist import SpecialistModel
from .segment.training import (
    FINE_TUNE_LEARNING_RATE,
    FINE_TUNE_STEPS,
    LabelledSection,
    TrainingDataError,
    labelled_section,
    score_model,
    split_sections,
    synthetic_samples,
    train_specialist,
)
from .vocabulary import kind_of_marker

__all__ = ["TrainingRun", "fine_tune", "train_on_synthetic", "study_sections", "SCRATCH_STEPS", "SCRATCH_LEARNING_RATE"]

SCRATCH_STEPS = 1500
"""Default steps when training from random weights."""

SCRATCH_LEARNING_RATE = 2e-3
"""Default peak learning rate when training from random weights."""


@dataclass
class TrainingRun:
    """A trained model and how it scored.

    Attributes
    ----------
    model : SpecialistModel
        With its card in ``info``.
    train_sections, val_sections : list of str
        Names of the corrected sections trained and validated on (empty for synthetic training).
    before, after : dict or None
        :func:`dcxcount.segment.training.score_model` on the validation sections,
        with the base model and with the new one (None for synthetic training).
    """

    model: SpecialistModel
    train_sections: list[str]
    val_sections: list[str]
    before: dict | None = None
    after: dict | None = None


def fine_tune(sections: Sequence[LabelledSection], *, base: SpecialistModel, base_path: str | Path,
              val_fraction: float = 0.2, steps: int = FINE_TUNE_STEPS, batch_size: int = 8,
              learning_rate: float = FINE_TUNE_LEARNING_RATE, seed: int = 0,
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> TrainingRun:
    """Fine-tune ``base`` on corrected sections, holding whole sections out to score it.

    Parameters
    ----------
    sections : sequence of LabelledSection
        Corrected sections (:func:`dcxcount.segment.training.read_labelled_sections`).
    base : SpecialistModel
        The model to start from.
    base_path : path
        Its file, hashed into the model card.
    val_fraction : float
        Share of the sections held out for validation (at least one).
    steps, batch_size, learning_rate, seed
        Optimisation settings (see :func:`dcxcount.segment.training.train_specialist`).
    progress, cancel
        See :mod:`dcxcount.progress`; cancel is checked between steps.

    Raises
    ------
    dcxcount.segment.training.TrainingDataError
        Fewer than two sections.
    dcxcount.progress.Cancelled
    """
    started = time.perf_counter()
    train, validation = split_sections(sections, val_fraction=val_fraction, seed=seed)
    before = score_model(base, validation)
    # A lab's few corrected sections give noisy batch statistics: the base's are kept.
    model = train_specialist([sample for section in train for sample in section.samples], kind=base.kind, base=base,
                             n_steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                             freeze_batchnorm=True, progress=progress, cancel=cancel)
    after = score_model(model, validation)
    model.info.update(_card(base=base, base_path=base_path, steps=steps, batch_size=batch_size, seed=seed,
                            learning_rate=learning_rate, started=started))
    model.info.update({
        "training_data": {"folder": os.path.commonpath([str(p.parent.resolve()) for s in sections for p in s.files]),
                          "files": [{"file": path.name, "sha256": file_sha256(path)}
                                    for section in sections for path in section.files]},
        "n_train_sections": len(train), "n_val_sections": len(validation),
        "train_sections": [s.name for s in train], "val_sections": [s.name for s in validation],
        "validation": {"max_distance_um": 5.0, "before": before, "after": after},
    })
    return TrainingRun(model=model, train_sections=[s.name for s in train], val_sections=[s.name for s in validation],
                       before=before, after=after)


def train_on_synthetic(*, kind: str, base: SpecialistModel | None = None, base_path: str | Path | None = None,
                       n_sections: int = 24, size_px: int = 512, families: Sequence[str] = FAMILIES,
                       steps: int = SCRATCH_STEPS, batch_size: int = 8, learning_rate: float = SCRATCH_LEARNING_RATE,
                       seed: int = 0, progress: ProgressCallback | None = None,
                       cancel: CancelToken | None = None) -> TrainingRun:
    """Train a model (from random weights, or from ``base``) on synthetic sections of randomised looks.

    Parameters
    ----------
    kind : str
        "dcx" or "nuclear".
    base : SpecialistModel, optional
        Start from this model; its batch-norm statistics are re-estimated, as
        the synthetic looks differ from what it learnt on.
    base_path : path, optional
        ``base``'s file, hashed into the model card.
    n_sections, size_px, families
        The synthetic sections (:func:`dcxcount.segment.training.synthetic_samples`).
    steps, batch_size, learning_rate, seed
        Optimisation settings.
    progress, cancel
        See :mod:`dcxcount.progress`.
    """
    started = time.perf_counter()
    samples = synthetic_samples(kind=kind, n_sections=n_sections, size_px=size_px, seed=seed, families=families)
    model = train_specialist(samples, kind=kind, base=base, n_steps=steps, batch_size=batch_size,
                             learning_rate=learning_rate, seed=seed, freeze_batchnorm=False, progress=progress,
                             cancel=cancel)
    model.info.update(_card(base=base, base_path=base_path, steps=steps, batch_size=batch_size, seed=seed,
                            learning_rate=learning_rate, started=started))
    model.info["training_data"] = (f"{n_sections} synthetic sections of {size_px}^2 px "
                                   f"(dcxcount.segment.training.synthetic_samples, seed {seed}), appearance "
                                   f"families randomised: {', '.join(families) or 'none (plain look)'}")
    return TrainingRun(model=model, train_sections=[], val_sections=[])


def study_sections(out_dir: str | os.PathLike, *, kind: str,
                   keys: Sequence[str] | None = None) -> list[LabelledSection]:
    """A counted study's sections as training pairs: each image with its saved (corrected) labels.

    Parameters
    ----------
    out_dir : path
        A results folder of :func:`dcxcount.batch.run_study`.
    kind : str
        "dcx" (DCX labels) or "nuclear" (the labels of every nuclear marker).
    keys : sequence of str, optional
        Section folders to use; by default those in which a person corrected the labels of a
        marker of ``kind``: a section corrected only in its stages still holds the model's own
        masks, from which the model has nothing to learn.

    Raises
    ------
    dcxcount.segment.training.TrainingDataError
        ``out_dir`` is not a counted study, or a section named in ``keys`` has no saved result.
    """
    from .batch import StudySettings, row_settings

    out_dir = Path(out_dir)
    try:
        record = json.loads((out_dir / "settings.json").read_text(encoding="utf-8"))
        settings = StudySettings.from_record(record["settings"])
        rows = {row["_key"]: row for row in record["samplesheet"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainingDataError(f"{out_dir}: not a counted study's results folder ({error!r})") from error
    if keys is None:
        keys = [key for key in rows if _labels_corrected(out_dir / "sections" / key, kind=kind)]
    sections = []
    for key in keys:
        folder = out_dir / "sections" / key
        saved = read_record(folder)
        if key not in rows or saved is None or saved["status"] != "ok":
            raise TrainingDataError(f"{folder}: no counted section to learn from")
        count, pixel_size_um = row_settings(rows[key], settings)
        labels = {path.name.removeprefix("labels_").removesuffix(".tif"): path
                  for path in sorted(folder.glob("labels_*.tif"))}
        labels = {marker: path for marker, path in labels.items() if kind_of_marker(marker) == kind}
        if labels:
            sections.append(labelled_section(rows[key]["path"], labels, name=key, pixel_size_um=pixel_size_um,
                                             channels=count.channels))
    return sections


def _labels_corrected(folder: Path, *, kind: str) -> bool:
    if not saved_edits(folder):  # cheap: no image decoded
        return False
    try:
        edited = load_section(folder).corrections_with_changes().labels
    except SectionFolderError:
        return False
    return any(kind_of_marker(marker) == kind for marker in edited)


def _card(*, base: SpecialistModel | None, base_path: str | Path | None, steps: int, batch_size: int, seed: int,
          learning_rate: float, started: float) -> dict:
    return {
        "base_model": {"path": str(base_path), "sha256": file_sha256(base_path)} if base is not None else None,
        "steps": steps, "batch_size": batch_size, "seed": seed, "learning_rate": learning_rate,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
