"""Tests for dcxcount.finetune: a counted study's corrected sections as training pairs, and a fine-tune on them."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dcxcount.corrections import Corrections
from dcxcount.finetune import fine_tune, study_sections
from dcxcount.progress import Cancelled, CancelToken
from dcxcount.section_folder import write_json
from dcxcount.segment import bundled_model_path, load_specialist
from dcxcount.segment.training import TrainingDataError


@pytest.fixture
def corrected(study_copy):
    """A copy of the counted study in which a person erased the largest DCX label of two sections."""
    _, copy = study_copy
    keys = sorted(p.name for p in (copy / "sections").iterdir())[:2]
    for key in keys:
        path = copy / "sections" / key / "labels_dcx.tif"
        labels = tifffile.imread(path)
        labels[labels == np.bincount(labels.ravel())[1:].argmax() + 1] = 0
        tifffile.imwrite(path, labels)
    return copy, keys


def test_the_corrected_sections_of_a_study_become_training_pairs(corrected):
    out, keys = corrected
    # A third section corrected only in a stage call still holds the model's own masks.
    staged_only = sorted(p.name for p in (out / "sections").iterdir())[2]
    write_json(out / "sections" / staged_only / "corrections.json", Corrections().set_stage(1, "C").to_record())
    sections = study_sections(out, kind="dcx")
    assert [s.name for s in sections] == keys  # only those with corrected DCX labels, by default
    for section in sections:
        assert section.markers == ("dcx",)
        np.testing.assert_array_equal(section.samples[0].labels,
                                      tifffile.imread(out / "sections" / section.name / "labels_dcx.tif"))
    nuclear = study_sections(out, kind="nuclear", keys=keys[:1])
    assert nuclear[0].markers == ("dapi", "neun")


def test_fine_tuning_on_a_study_scores_held_out_sections_and_can_be_cancelled(corrected):
    out, keys = corrected
    sections = study_sections(out, kind="dcx")
    base = load_specialist(bundled_model_path("dcx"))
    run = fine_tune(sections, base=base, base_path=bundled_model_path("dcx"), steps=2, batch_size=2, val_fraction=0.5)
    assert len(run.train_sections) == len(run.val_sections) == 1
    assert run.model.info["validation"]["before"]["n_true"] == run.after["n_true"] > 0
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        fine_tune(sections, base=base, base_path=bundled_model_path("dcx"), steps=2, batch_size=2, cancel=token)


def test_a_folder_that_is_not_a_study_is_refused(tmp_path):
    with pytest.raises(TrainingDataError, match=f"{tmp_path}: not a counted study's results folder"):
        study_sections(tmp_path, kind="dcx")
