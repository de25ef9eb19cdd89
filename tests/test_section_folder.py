"""Tests for dcxcount.section_folder: the saved section round-trips, edits are found, damage is named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from dcxcount.corrections import Corrections, Edit
from dcxcount.io import Section
from dcxcount.pipeline import count_section
from dcxcount.section_folder import FORMAT_VERSION, SectionFolderError, load_section, save_section, saved_edits
from dcxcount.synth import make_section

from .conftest import SMALL_SECTION

EDIT = Edit("rater 1", "2026-11-30T12:00:00+00:00")


@pytest.fixture(scope="module")
def counted():
    synth = make_section(SMALL_SECTION)
    section = Section(data=synth.image, channel_names=tuple(synth.params.markers),
                      pixel_size_um=synth.pixel_size_um, path="synthetic.tif",
                      pixel_size_source="synthetic", projection="none")
    return count_section(section, corrections=Corrections().set_stage(1, "C", edit=EDIT))


def test_a_saved_section_reads_back_as_it_was(counted, tmp_path):
    record = save_section(tmp_path, counted, record={"key": "m1_s1"})
    assert (record["format_version"], record["status"], record["key"]) == (FORMAT_VERSION, "ok", "m1_s1")
    saved = load_section(tmp_path)
    assert saved.changed == [] and not saved.has_person_edits or saved.corrections
    for marker, labels in counted.labels.items():
        np.testing.assert_array_equal(saved.labels[marker], labels)
    np.testing.assert_array_equal(saved.gcl, counted.frame.gcl)
    np.testing.assert_array_equal(saved.processes, counted.processes)
    pd.testing.assert_frame_equal(saved.cells, pd.read_csv(tmp_path / "cells.csv"))
    assert saved.corrections == counted.corrections
    assert json.loads((tmp_path / "result.json").read_text())["dcx_count"] == counted.summary["dcx_count"]


def test_edits_made_outside_dcxcount_are_found_and_dated(counted, tmp_path):
    save_section(tmp_path, counted)
    assert saved_edits(tmp_path) == "1 stage call set by hand"
    labels = tifffile.imread(tmp_path / "labels_dcx.tif")
    labels[labels == labels.max()] = 0
    tifffile.imwrite(tmp_path / "labels_dcx.tif", labels)
    saved = load_section(tmp_path)
    assert saved.changed == ["labels_dcx.tif"] and saved.has_person_edits
    corrections = saved.corrections_with_changes()
    assert corrections.labels["dcx"].who == "unknown" and corrections.labels["dcx"].when[:4] == "2026"
    assert saved_edits(tmp_path) == "dcx labels edited, 1 stage call set by hand"


@pytest.mark.parametrize("deleted, edits", [
    ("cells.csv", "1 stage call set by hand"),  # a table is rebuilt from the labels: no edit of its own
    ("labels_dcx.tif", "dcx labels edited, 1 stage call set by hand"),  # deleting a marker's labels is an edit
])
def test_a_deleted_file_is_judged_without_reading_it(counted, tmp_path, deleted, edits):
    save_section(tmp_path, counted)
    (tmp_path / deleted).unlink()
    assert saved_edits(tmp_path) == edits


@pytest.mark.parametrize("damage, message", [
    ("no result", "no complete result"),
    ("failed", "the section was not counted: error: broken"),
    ("newer", f"written in format {FORMAT_VERSION + 1} by a newer dcxcount"),
    ("no labels", "a saved file is missing or damaged"),
    ("bad corrections", "corrections.json: cannot be read"),
])
def test_a_folder_that_cannot_be_read_back_is_named(counted, tmp_path, damage, message):
    save_section(tmp_path, counted)
    record = json.loads((tmp_path / "result.json").read_text())
    if damage == "no result":
        (tmp_path / "result.json").unlink()
    elif damage == "failed":
        (tmp_path / "result.json").write_text(json.dumps({**record, "status": "error: broken"}))
    elif damage == "newer":
        (tmp_path / "result.json").write_text(json.dumps({**record, "format_version": FORMAT_VERSION + 1}))
    elif damage == "no labels":
        (tmp_path / "gcl.tif").unlink()
    else:
        (tmp_path / "corrections.json").write_text('{"stages": [{"cell_id": 1, "stage": "G", "who": "x", "when": ""}]}')
    with pytest.raises(SectionFolderError, match=message) as error:
        load_section(tmp_path)
    assert str(tmp_path) in str(error.value)
