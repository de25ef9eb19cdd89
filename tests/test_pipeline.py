"""Tests for dcxcount.pipeline's public steps: each takes the previous one's output, computed or corrected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from dcxcount import pipeline
from dcxcount.corrections import Corrections
from dcxcount.io import Section
from dcxcount.pipeline import UnusableImageError, count_section
from dcxcount.progress import Cancelled, CancelToken
from dcxcount.synth import make_section

from .conftest import SMALL_SECTION


@pytest.fixture(scope="module")
def synth():
    return make_section(SMALL_SECTION)


@pytest.fixture(scope="module")
def section(synth):
    return Section(data=synth.image, channel_names=tuple(synth.params.markers), pixel_size_um=synth.pixel_size_um,
                   path="synthetic.tif", pixel_size_source="synthetic", projection="none")


@pytest.fixture(scope="module")
def counted(section):
    return count_section(section)


def test_an_edited_gcl_in_memory_gives_the_tables_of_the_same_mask_as_an_outline_file(section, counted, tmp_path):
    gcl = ndi.binary_erosion(counted.frame.gcl, iterations=3)  # a person tightens the GCL's borders
    outline = tmp_path / "gcl.tif"
    tifffile.imwrite(outline, gcl.astype(np.uint8))
    labels = counted.labels
    from_memory = count_section(section, gcl_mask=gcl, labels=labels)
    from_file = count_section(section, gcl_outline=outline, labels=labels)
    pd.testing.assert_frame_equal(from_memory.cells, from_file.cells)
    differ = {k for k in from_file.summary if from_file.summary[k] != from_memory.summary[k]
              and not (pd.isna(from_file.summary[k]) and pd.isna(from_memory.summary[k]))}
    assert differ == {"gcl_source"}
    assert (from_memory.summary["gcl_source"], from_file.summary["gcl_source"]) == ("mask", str(outline))
    assert from_memory.summary["gcl_area_mm2"] < counted.summary["gcl_area_mm2"]


def test_given_labels_are_not_segmented_again_and_give_the_same_result(section, counted, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("segmented")

    monkeypatch.setattr(pipeline, "load_engine", refuse)
    again = count_section(section, labels=counted.labels, gcl_mask=counted.frame.gcl)
    pd.testing.assert_frame_equal(again.cells, counted.cells)
    np.testing.assert_array_equal(again.processes, counted.processes)


def test_the_traced_processes_belong_to_counted_cells(counted):
    dcx = set(counted.cells.loc[counted.cells["marker"] == "dcx", "cell_id"])
    traced = set(np.unique(counted.processes)) - {0}
    assert traced and traced <= dcx
    # A traced cell has process length; a cell with length shows in the image unless every one of
    # its pixels is shared with a higher cell_id (the image keeps one label per pixel).
    lengths = counted.cells[counted.cells["marker"] == "dcx"].set_index("cell_id")["process_length_um"]
    with_length = set(lengths[lengths > 0].index)
    assert traced <= with_length and len(traced) >= 0.9 * len(with_length)


def test_a_person_s_stage_wins_and_is_marked(section, counted):
    dcx = counted.cells[counted.cells["marker"] == "dcx"].set_index("cell_id")
    cell = int(dcx.index[0])
    stage = "A" if dcx.loc[cell, "stage"] != "A" else "F"
    again = count_section(section, labels=counted.labels, gcl_mask=counted.frame.gcl,
                          corrections=Corrections().set_stage(cell, stage))
    staged = again.cells[again.cells["marker"] == "dcx"].set_index("cell_id")
    assert (staged.loc[cell, "stage"], staged.loc[cell, "stage_source"]) == (stage, "person")
    assert staged.loc[cell, "stage_group"] == {"A": "proliferative", "F": "postmitotic"}[stage]
    assert (staged.drop(index=cell)["stage_source"] == "rules").all()
    assert again.summary["stage_by_person"] == int(bool(staged.loc[cell, "counted"]))


def test_cancel_stops_a_section_between_steps(section):
    token, steps = CancelToken(), []

    def progress(fraction, message):
        steps.append(message)
        if message == "segment neun":
            token.cancel()

    with pytest.raises(Cancelled):
        count_section(section, progress=progress, cancel=token)
    assert steps == ["segment dcx", "segment neun"]  # the DAPI segmentation and every later step never ran


def test_progress_runs_forward_to_one(section, counted):
    seen = []
    count_section(section, labels=counted.labels, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [m for _, m in seen] == ["layer frame", "trace processes", "stages", "co-labels and tables", "done"]


def test_labels_that_do_not_fit_the_image_are_refused_naming_the_file(section, counted):
    with pytest.raises(UnusableImageError, match=r"synthetic.tif: the dcx labels are a int32 image of \(10, 10\)"):
        count_section(section, labels={"dcx": np.zeros((10, 10), np.int32)})
    with pytest.raises(UnusableImageError, match="synthetic.tif: the GCL mask is"):
        count_section(section, gcl_mask=np.ones((10, 10), bool))
