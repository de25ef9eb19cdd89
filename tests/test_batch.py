"""Tests for dcxcount.batch: corrections survive summarize and count, cancel, resume.

The study is the session's small counted study (tests/conftest.py), copied per test so
that each test edits its own folders.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from dcxcount import pipeline
from dcxcount.batch import StudySettings, plan_study, run_study
from dcxcount.cli import main
from dcxcount.corrections import Corrections, Edit
from dcxcount.progress import Cancelled, CancelToken
from dcxcount.section_folder import load_section, write_json


@pytest.fixture
def no_segmentation(monkeypatch):
    """Every call of a segmentation engine, recorded; none is expected."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a segmentation engine was loaded")

    monkeypatch.setattr(pipeline, "load_engine", refuse)
    return calls


def _first_counted_dcx(folder) -> int:
    cells = pd.read_csv(folder / "cells.csv")
    dcx = cells[(cells["marker"] == "dcx") & cells["counted"]]
    return int(dcx["cell_id"].iloc[0])


def _dcx_counts(out, key) -> tuple[int, int]:
    """The DCX count of the section in folder ``key`` and of its animal, from the study tables."""
    row = next(r for r in json.loads((out / "settings.json").read_text())["samplesheet"] if r["_key"] == key)
    sections = pd.read_csv(out / "sections.csv")
    animals = pd.read_csv(out / "animals.csv").set_index("animal")
    section = sections[(sections["animal"] == row["animal"]) & (sections["section"] == row["section"])]
    assert len(section) == 1
    return int(section["dcx_count"].iloc[0]), int(animals.loc[row["animal"], "dcx_count"])


def test_a_deleted_label_lowers_the_counts_by_one_without_segmenting(study_copy, no_segmentation, capsys):
    sheet, out = study_copy
    key = sorted(p.name for p in (out / "sections").iterdir())[0]
    folder = out / "sections" / key
    before = _dcx_counts(out, key)
    cell = _first_counted_dcx(folder)
    labels = tifffile.imread(folder / "labels_dcx.tif")
    labels[labels == cell] = 0
    tifffile.imwrite(folder / "labels_dcx.tif", labels, compression="zlib")

    assert main(["summarize", str(out)]) == 0
    assert no_segmentation == []
    after = _dcx_counts(out, key)
    assert after == tuple(n - 1 for n in before)
    cells = pd.read_csv(folder / "cells.csv")
    assert cell not in set(cells.loc[cells["marker"] == "dcx", "cell_id"])
    saved = load_section(folder)
    assert saved.changed == [] and "dcx" in saved.corrections.labels  # the edit is on record, who unknown
    assert saved.corrections.labels["dcx"].who == "unknown"

    # A new count keeps the edit: nothing is segmented, the counts stay one lower.
    capsys.readouterr()
    assert main(["count", str(sheet), "--out", str(out), "--section-interval", "6", "--hemispheres", "1"]) == 0
    assert no_segmentation == []
    assert _dcx_counts(out, key) == after
    assert "holds a person's corrections (dcx labels edited)" in capsys.readouterr().err


def test_a_stage_set_by_a_person_survives_summarize_and_count(study_copy, no_segmentation):
    sheet, out = study_copy
    key = sorted(p.name for p in (out / "sections").iterdir())[1]
    folder = out / "sections" / key
    cells = pd.read_csv(folder / "cells.csv")
    dcx = cells[(cells["marker"] == "dcx") & cells["counted"]].iloc[0]
    new_stage = "F" if dcx["stage"] != "F" else "A"
    corrections = Corrections().set_stage(int(dcx["cell_id"]), new_stage, edit=Edit("rater 1", "2026-11-30T12:00:00+00:00"))
    write_json(folder / "corrections.json", corrections.to_record())

    assert main(["summarize", str(out)]) == 0
    for command in (["summarize", str(out)],
                    ["count", str(sheet), "--out", str(out), "--section-interval", "6", "--hemispheres", "1"]):
        assert main(command) == 0
        cells = pd.read_csv(folder / "cells.csv").set_index(["marker", "cell_id"])
        row = cells.loc[("dcx", int(dcx["cell_id"]))]
        assert (row["stage"], row["stage_source"]) == (new_stage, "person")
        assert (cells.loc["dcx", "stage_source"] == "person").sum() == 1
        record = json.loads((folder / "result.json").read_text())
        assert record["stage_by_person"] == 1
        assert record[f"stage_{new_stage}"] == int((cells.loc["dcx"].query("counted")["stage"] == new_stage).sum())
    assert no_segmentation == []
    assert load_section(folder).corrections.stages[int(dcx["cell_id"])] == (
        new_stage, Edit("rater 1", "2026-11-30T12:00:00+00:00"))


def test_recount_discards_corrections_and_says_so(study_copy, capsys):
    sheet, out = study_copy
    key = sorted(p.name for p in (out / "sections").iterdir())[0]
    folder = out / "sections" / key
    original = pd.read_csv(folder / "cells.csv")
    cell = _first_counted_dcx(folder)
    write_json(folder / "corrections.json", Corrections().exclude("dcx", cell).to_record())
    capsys.readouterr()
    assert main(["count", str(sheet), "--out", str(out), "--section-interval", "6", "--hemispheres", "1",
                 "--recount"]) == 0
    assert "recounted from its image, discarding a person's corrections (1 object excluded)" in capsys.readouterr().err
    assert not load_section(folder).corrections
    pd.testing.assert_frame_equal(pd.read_csv(folder / "cells.csv"), original)


def test_an_excluded_object_is_kept_but_not_counted(study_copy):
    sheet, out = study_copy
    key = sorted(p.name for p in (out / "sections").iterdir())[0]
    folder = out / "sections" / key
    count = json.loads((folder / "result.json").read_text())["dcx_count"]
    cell = _first_counted_dcx(folder)
    write_json(folder / "corrections.json", Corrections().exclude("dcx", cell).to_record())
    assert main(["summarize", str(out)]) == 0
    record = json.loads((folder / "result.json").read_text())
    assert (record["dcx_count"], record["excluded"]) == (count - 1, 1)
    row = pd.read_csv(folder / "cells.csv").set_index(["marker", "cell_id"]).loc[("dcx", cell)]
    assert bool(row["excluded"]) and not bool(row["counted"])


def test_summarize_of_an_untouched_study_reproduces_its_tables(study_copy, no_segmentation):
    sheet, out = study_copy
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in ("cells", "sections", "animals")}
    # Force every section to be traced and co-labelled again: a changed settings
    # fingerprint makes summarize rebuild from the saved labels.
    for folder in (out / "sections").iterdir():
        record = json.loads((folder / "result.json").read_text())
        write_json(folder / "result.json", {**record, "fingerprint": "stale"})
    assert main(["summarize", str(out)]) == 0
    assert no_segmentation == []
    for name, table in tables.items():
        again = pd.read_csv(out / f"{name}.csv")
        columns = [c for c in table.columns if c != "seconds"]
        pd.testing.assert_frame_equal(again[columns], table[columns], check_dtype=False)


def test_summarize_refuses_a_folder_that_is_not_a_counted_study(tmp_path, capsys):
    assert main(["summarize", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a counted study's results folder" in capsys.readouterr().err


def test_cancel_stops_the_batch_between_steps_and_a_rerun_resumes(small_study, tmp_path):
    plan = plan_study(small_study, out_dir=tmp_path / "out", settings=StudySettings())
    token, seen = CancelToken(), []
    second = f"{plan.rows[1]['animal']} s{plan.rows[1]['section']}: "

    def progress(fraction, message):
        seen.append((fraction, message))
        if message == second + "layer frame":
            token.cancel()  # during the second section, after its segmentation

    with pytest.raises(Cancelled):
        run_study(plan, progress=progress, cancel=token)
    done = sorted(p.name for p in (tmp_path / "out" / "sections").iterdir() if (p / "result.json").exists())
    assert done == [plan.rows[0]["_key"]]
    assert not (tmp_path / "out" / "sections.csv").exists()
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)  # fractions only go forward
    assert seen[-1][1] == second + "layer frame"  # nothing ran after the cancel
    result = run_study(plan_study(small_study, out_dir=tmp_path / "out", settings=StudySettings()))
    assert result.n_failed == 0 and len(result.sections) == len(plan.rows)


def test_summarize_reads_back_every_setting(study_copy):
    _, out = study_copy
    record = json.loads((out / "settings.json").read_text())
    settings = StudySettings.from_record(record["settings"])
    assert settings == StudySettings(section_interval=6, hemispheres=1)
    assert np.isinf(settings.count.mean_thresholds["dcx"])
    assert record["settings"]["count"]["tracing"]["ridge_sigma_um"] == 1.25


def test_a_counted_studys_plan_is_read_back_with_its_corrected_sections(study_copy):
    from dcxcount.batch import plan_from_results

    sheet, out = study_copy
    counted = plan_study(sheet, out_dir=out, settings=StudySettings(section_interval=6, hemispheres=1))
    key = sorted(p.name for p in (out / "sections").iterdir())[0]
    write_json(out / "sections" / key / "corrections.json",
               Corrections().set_stage(_first_counted_dcx(out / "sections" / key), "E",
                                       edit=Edit("rater 1", "2026-11-30T12:00:00+00:00")).to_record())
    plan = plan_from_results(out)
    assert plan.settings == counted.settings
    assert list(plan.sheet["_key"]) == list(counted.sheet["_key"])
    assert plan.corrected == {key: "1 stage call set by hand"}
