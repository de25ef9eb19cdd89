"""Tests for dcxcount.corrections: a person's corrections, recorded with who and when."""

from __future__ import annotations

import json

import pytest

from dcxcount.corrections import Corrections, CorrectionsError, Edit, now_edit

EDIT = Edit("rater 1", "2026-11-30T12:00:00+00:00")


def test_corrections_round_trip_and_refuse_unknown_stages():
    corrections = (Corrections().set_stage(3, "E", edit=EDIT).exclude("neun", 7, edit=EDIT)
                   .edited_labels("dcx", edit=EDIT).edited_gcl(edit=EDIT))
    assert Corrections.from_record(json.loads(json.dumps(corrections.to_record()))) == corrections
    assert corrections.describe() == "dcx labels edited, GCL edited, 1 stage call set by hand, 1 object excluded"
    assert not Corrections() and corrections
    with pytest.raises(CorrectionsError, match="stage 'G' is not one of A, B, C, D, E, F"):
        Corrections().set_stage(1, "G")


def test_an_edit_made_now_names_its_author_and_utc_time():
    edit = now_edit("rater 2")
    assert edit.who == "rater 2" and edit.when.endswith("+00:00")


def test_a_damaged_record_is_refused():
    with pytest.raises(CorrectionsError, match="lacks a field"):
        Corrections.from_record({"stages": [{"cell_id": 1, "stage": "A"}]})
