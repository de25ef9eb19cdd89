"""The command line as a user runs it: real files in, tables out, errors named."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import tifffile

from dcxcount.checks import count_settings_problems, study_value_problems
from dcxcount.cli import for_terminal, main
from dcxcount.io import PixelSizeError, read_section
from dcxcount.metrics import match_centroids
from dcxcount.pipeline import CountSettings
from dcxcount.staging import StagingRules
from dcxcount.synth import make_section, read_truth

from .conftest import SMALL_SECTION
from .splits import BRDU_STUDY, EDU_STUDY

CELLS_COLUMNS = ["animal", "group", "section", "marker", "cell_id", "x_um", "y_um", "area_um2", "in_gcl",
                 "depth", "stage", "stage_group", "neun_positive"]
SECTIONS_COLUMNS = ["animal", "group", "section", "path", "status", "dcx_count", "neun_count",
                    "dcx_neun_count", "gcl_area_mm2"]
ANIMALS_COLUMNS = ["animal", "group", "n_sections", "dcx_count", "neun_count", "dcx_neun_count",
                   *(f"stage_{s}" for s in "ABCDEF"), "dcx_per_mm2_gcl", "estimated_total_dcx"]


def _tables(out):
    return (pd.read_csv(out / "cells.csv"), pd.read_csv(out / "sections.csv"), pd.read_csv(out / "animals.csv"))


def test_count_writes_the_contract_tables(counted_study):
    sheet, out, code = counted_study
    assert code == 0
    cells, sections, animals = _tables(out)
    assert set(CELLS_COLUMNS) <= set(cells.columns)
    assert set(SECTIONS_COLUMNS) <= set(sections.columns)
    assert set(ANIMALS_COLUMNS) <= set(animals.columns)
    assert len(sections) == 8 and (sections["status"] == "ok").all()
    assert len(animals) == 4 and set(animals["group"]) == {"saline", "ketamine"}
    dcx = cells[cells["marker"] == "dcx"]
    assert set(dcx["stage"]) <= set("ABCDEF")
    assert set(dcx["stage_group"]) <= {"proliferative", "intermediate", "postmitotic"}
    assert dcx["neun_positive"].isin([True, False]).all()
    assert cells.loc[cells["marker"] != "dcx", "stage"].isna().all()


def test_animal_counts_are_the_sums_of_their_sections(counted_study):
    _, out, _ = counted_study
    _, sections, animals = _tables(out)
    summed = sections.groupby("animal")[["dcx_count", "neun_count", "dcx_neun_count",
                                         *(f"stage_{s}" for s in "ABCDEF")]].sum()
    merged = animals.set_index("animal")
    for column in summed.columns:
        assert (merged.loc[summed.index, column] == summed[column]).all(), column
    assert (merged["n_sections"] == 2).all()
    # One hemisphere counted, every 6th section: estimate = count x 6 x 2.
    assert (merged["estimated_total_dcx"] == merged["dcx_count"] * 12).all()
    stages = merged[[f"stage_{s}" for s in "ABCDEF"]].sum(axis=1)
    assert (stages == merged["dcx_count"]).all()


def test_section_tables_agree_with_cells_table(counted_study):
    _, out, _ = counted_study
    cells, sections, _ = _tables(out)
    counted = cells[cells["counted"]]
    per_section = counted.groupby(["animal", "section", "marker"]).size().unstack(fill_value=0)
    merged = sections.set_index(["animal", "section"])
    assert (per_section["dcx"] == merged.loc[per_section.index, "dcx_count"]).all()
    assert (per_section["neun"] == merged.loc[per_section.index, "neun_count"]).all()


def _detection_against_truth(cells, sections) -> dict:
    """Detection per marker (DCX somata, NeuN nuclei) over all sections, centroids within 5 um."""
    totals = {}
    for row in sections.itertuples():
        truth = read_truth(row.path).cells
        found = cells[(cells["animal"] == row.animal) & (cells["section"] == row.section)]
        for marker in ("dcx", "neun"):
            detection, _ = match_centroids(found.loc[found["marker"] == marker, ["x_um", "y_um"]].to_numpy(),
                                           truth.loc[truth["marker"] == marker, ["x_um", "y_um"]].to_numpy(),
                                           max_distance_um=5.0)
            totals[marker] = totals[marker] + detection if marker in totals else detection
    return totals


# Measured on the frozen study (tests/splits.py STUDY; `python benchmarks/frozen_figures.py detection`):
# DCX F1 1.000 on 126 somata (every section 1.000), NeuN 0.9985 on 3331 nuclei (sections 0.997-1.000,
# SD 0.0009). Bars: DCX, two of the 126 somata missed (the sections did not vary); NeuN, the figure
# less twice the SD over sections. With every 20th soma dropped DCX F1 reads 0.963; with nuclei
# merged in pairs NeuN F1 0.442 (benchmarks/mutations.py).
DCX_F1_BAR = 0.99
NEUN_F1_BAR = 0.996


@pytest.mark.slow
def test_detection_f1_against_the_generators_truth(counted_study):
    """DCX somata and NeuN nuclei on sections never trained on (docs/validation.md, Segmentation)."""
    _, out, _ = counted_study
    totals = _detection_against_truth(*_tables(out)[:2])
    print({marker: round(d.f1, 4) for marker, d in totals.items()})
    assert totals["dcx"].true_positives + totals["dcx"].false_negatives >= 100
    assert totals["dcx"].f1 >= DCX_F1_BAR
    assert totals["neun"].f1 >= NEUN_F1_BAR


@pytest.mark.slow
def test_the_readmes_sample_study_command(tmp_path):
    """`dcxcount count sample_images/samplesheet.csv --out results`, as the README has it."""
    sheet = Path(__file__).resolve().parent.parent / "sample_images" / "samplesheet.csv"
    assert main(["count", str(sheet), "--out", str(tmp_path / "results")]) == 0
    cells, sections, animals = _tables(tmp_path / "results")
    assert len(sections) == 12 and (sections["status"] == "ok").all()
    assert len(animals) == 6 and set(animals["group"]) == {"saline", "ketamine"}
    totals = _detection_against_truth(cells, sections)
    assert totals["dcx"].f1 >= 0.95 and totals["neun"].f1 >= 0.95


def _write_ome(path, data, names, pixel_size_um=None):
    metadata = {"axes": "CYX", "Channel": {"Name": list(names)}}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    tifffile.imwrite(path, data, ome=True, metadata=metadata)


@pytest.fixture(scope="module")
def good_section(tmp_path_factory):
    section = make_section(SMALL_SECTION)
    return section


def _sheet(folder, rows):
    path = folder / "samplesheet.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_bad_section_is_reported_and_the_rest_is_counted(good_section, tmp_path, capsys):
    _write_ome(tmp_path / "good.ome.tif", good_section.image, good_section.channel_names, 0.65)
    _write_ome(tmp_path / "nopixel.ome.tif", good_section.image, good_section.channel_names)
    _write_ome(tmp_path / "nodcx.ome.tif", good_section.image[1:], good_section.channel_names[1:], 0.65)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    sheet = _sheet(tmp_path, [
        {"path": "good.ome.tif", "animal": "m1", "section": 1},
        {"path": "nopixel.ome.tif", "animal": "m1", "section": 2},
        {"path": "nodcx.ome.tif", "animal": "m1", "section": 3},
        {"path": "broken.tif", "animal": "m2", "section": 1},
        {"path": "missing.tif", "animal": "m2", "section": 2},
    ])
    code = main(["count", str(sheet), "--out", str(tmp_path / "out")])
    assert code == 1
    _, sections, animals = _tables(tmp_path / "out")
    by_path = sections.set_index(sections["path"].map(os.path.basename))["status"]
    assert by_path["good.ome.tif"] == "ok"
    # sections.csv names the setting; the terminal names the option (below).
    assert "nopixel.ome.tif" in by_path["nopixel.ome.tif"] and "`pixel_size_um`" in by_path["nopixel.ome.tif"]
    message = by_path["nodcx.ome.tif"]
    assert "'dcx'" in message and "nodcx.ome.tif" in message and "NeuN" in message and "DAPI" in message
    assert "broken.tif" in by_path["broken.tif"] and "missing.tif" in by_path["missing.tif"]
    m1 = animals.set_index("animal").loc["m1"]
    assert m1["n_sections"] == 1 and m1["n_failed"] == 2
    assert m1["dcx_count"] == sections.loc[sections["status"] == "ok", "dcx_count"].sum()
    err = capsys.readouterr().err
    assert "nopixel.ome.tif" in err and "--pixel-size-um" in err


def test_a_core_error_names_the_setting_and_the_command_line_names_its_option(good_section, tmp_path, capsys):
    """The core also serves Python and napari: it says `pixel_size_um`; ``dcxcount count`` says --pixel-size-um."""
    path = tmp_path / "nopixel.ome.tif"
    _write_ome(path, good_section.image, good_section.channel_names)
    with pytest.raises(PixelSizeError) as caught:
        read_section(path)
    assert "Set `pixel_size_um` (e.g. `pixel_size_um=0.65`)" in str(caught.value)
    assert not re.search(r"--[a-z]", str(caught.value))
    sheet = _sheet(tmp_path, [{"path": "nopixel.ome.tif", "animal": "m1"}])
    assert main(["count", str(sheet), "--out", str(tmp_path / "out")]) == 1
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dcxcount: m1 s")]
    assert len(said) == 1 and "Set --pixel-size-um (e.g. --pixel-size-um 0.65)" in said[0] and "`" not in said[0]
    status = pd.read_csv(tmp_path / "out" / "sections.csv")["status"][0]
    assert "`pixel_size_um`" in status and "--" not in status


def test_settings_problems_name_settings_and_the_command_line_turns_them_into_options():
    count = replace(CountSettings(), min_overlap_fraction=2.0, mean_thresholds={"dcx": float("inf"), "foo": 1.0},
                    marker_models={"bar": "cpsam"}, staging=replace(StagingRules(), stub_um=-1.0))
    problems = (study_value_problems(pixel_size_um=-1.0, section_interval=0, hemispheres=3, thickness_um=0.0)
                + count_settings_problems(count, markers={"dcx", "neun"}))
    assert not any(re.search(r"--[a-z]", problem) for problem in problems), problems
    assert [problem.split()[0] for problem in problems] == [
        "`pixel_size_um`", "`section_interval`", "`hemispheres`", "`thickness_um`", "`min_overlap_fraction`",
        "`mean_thresholds[foo]=...`:", "`marker_models[bar]=...`:", "`staging`:"]
    assert [for_terminal(problem).split()[0] for problem in problems] == [
        "--pixel-size-um", "--section-interval", "--hemispheres", "--thickness-um", "--min-overlap-fraction",
        "--signal-threshold", "--model", "--stage-rules:"]
    assert for_terminal(problems[5]).endswith("name its channel with --channel foo=INDEX_OR_NAME")


@pytest.mark.parametrize(("core", "terminal"), [
    ("set `pixel_size_um` (e.g. `pixel_size_um=0.65`)", "set --pixel-size-um (e.g. --pixel-size-um 0.65)"),
    ("`channels[dcx]=Cy 5`: no channel", "--channel dcx=Cy 5: no channel"),
    ("use fewer `workers`", "use fewer --workers"),
    ("`out_dir=/a b/c`: exists", "--out /a b/c: exists"),
    ("`sgz_hilus_um` must be", "sgz_hilus_um must be"),  # no option sets it: only the backticks go
    ('e.g. `python -c "import x"`, then', 'e.g. `python -c "import x"`, then'),  # code, not a setting
])
def test_for_terminal_puts_each_option_in_its_settings_place(core, terminal):
    assert for_terminal(core) == terminal


def test_pixel_size_and_channels_can_be_given(good_section, tmp_path):
    _write_ome(tmp_path / "plain.ome.tif", good_section.image[:2], ["Cy3", "Cy5"])
    sheet = _sheet(tmp_path, [{"path": "plain.ome.tif", "animal": "m1"}])
    code = main(["count", str(sheet), "--out", str(tmp_path / "out"), "--pixel-size-um", "0.65",
                 "--channel", "dcx=0", "--channel", "neun=Cy5"])
    assert code == 0
    _, sections, _ = _tables(tmp_path / "out")
    assert sections.loc[0, "status"] == "ok" and sections.loc[0, "dcx_count"] > 0
    assert sections.loc[0, "channels"] == "dcx=Cy3;neun=Cy5"


def test_positivity_thresholds_can_be_given(good_section, tmp_path, capsys):
    _write_ome(tmp_path / "s.ome.tif", good_section.image, good_section.channel_names, 0.65)
    sheet = _sheet(tmp_path, [{"path": "s.ome.tif", "animal": "m1"}])
    out = tmp_path / "out"
    assert main(["count", str(sheet), "--out", str(out), "--min-overlap-fraction", "0.8",
                 "--signal-threshold", "neun=off", "--signal-threshold", "dcx=auto"]) == 0
    cells, sections, _ = _tables(out)
    assert pd.isna(sections.loc[0, "neun_threshold"])  # off: no threshold (an empty cell, never inf)
    assert 0 < sections.loc[0, "dcx_threshold"] < float("inf")  # automatic, reported
    dcx = cells[cells["marker"] == "dcx"]
    assert (dcx["neun_positive"] == (dcx["neun_overlap"] >= 0.8)).all()
    neun = cells[cells["marker"] == "neun"]
    assert (neun["dcx_positive"] == ((neun["dcx_overlap"] >= 0.8)
                                     | (neun["dcx_mean"] >= sections.loc[0, "dcx_threshold"]))).all()
    capsys.readouterr()
    for bad in (["--min-overlap-fraction", "0"], ["--signal-threshold", "neun=bright"]):
        assert main(["count", str(sheet), "--out", str(out), *bad]) == 2
        assert bad[0] in capsys.readouterr().err


def test_stage_rules_can_be_given_and_the_settings_are_recorded(good_section, tmp_path, capsys):
    _write_ome(tmp_path / "s.ome.tif", good_section.image, good_section.channel_names, 0.65)
    sheet = _sheet(tmp_path, [{"path": "s.ome.tif", "animal": "m1"}])
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"stub_um": 1000}))  # every traced process is a stub
    out = tmp_path / "out"
    assert main(["count", str(sheet), "--out", str(out), "--stage-rules", str(rules)]) == 0
    cells, sections, _ = _tables(out)
    assert sections.loc[0, "dcx_count"] > 0 and sections.loc[0, "stage_A"] == sections.loc[0, "dcx_count"]
    assert set(cells.loc[cells["marker"] == "dcx", "stage"]) == {"A"}
    dcx = cells[cells["marker"] == "dcx"]
    doubtful = (dcx["process_shared_um"] > 6) | (dcx["somata_crossed"] > 0)
    assert (dcx["stage_doubtful"].astype(bool) == doubtful).all()
    assert sections.loc[0, "stage_doubtful"] == doubtful[dcx["counted"].astype(bool)].sum()
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["settings"]["count"]["staging"]["stub_um"] == 1000
    assert recorded["settings"]["count"]["staging"]["ml_depth"] == 1.0  # the rest keep their defaults
    assert recorded["dcxcount_version"]
    rules.write_text(json.dumps({"stub": 8}))
    capsys.readouterr()
    assert main(["count", str(sheet), "--out", str(out), "--stage-rules", str(rules)]) == 2
    assert re.search("rules.json.*unknown: stub", capsys.readouterr().err)


def test_rerun_resumes_and_recomputes_only_what_changed(good_section, tmp_path):
    for name in ("a", "b"):
        _write_ome(tmp_path / f"{name}.ome.tif", good_section.image, good_section.channel_names, 0.65)
    sheet = _sheet(tmp_path, [{"path": "a.ome.tif", "animal": "m1", "section": 1},
                              {"path": "b.ome.tif", "animal": "m1", "section": 2}])
    out = tmp_path / "out"
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    results = {k: out / "sections" / k / "result.json" for k in ("m1_s1", "m1_s2")}
    before = {k: p.stat().st_mtime_ns for k, p in results.items()}
    first = pd.read_csv(out / "animals.csv")

    time.sleep(0.01)
    _write_ome(tmp_path / "b.ome.tif", good_section.image, good_section.channel_names, 0.65)
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    assert results["m1_s1"].stat().st_mtime_ns == before["m1_s1"]   # untouched input: reused
    assert results["m1_s2"].stat().st_mtime_ns != before["m1_s2"]   # rewritten input: recounted
    pd.testing.assert_frame_equal(pd.read_csv(out / "animals.csv"), first)

    # A crash mid-section leaves no result.json: that section, and only it, is counted again.
    results["m1_s1"].unlink()
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    assert json.loads(results["m1_s1"].read_text())["status"] == "ok"


def test_cpsam_without_weights_stops_before_counting(small_study, tmp_path, monkeypatch, capsys):
    from cellpose import models

    from dcxcount.segment import load_engine

    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "no-models")
    load_engine.cache_clear()

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("cellpose was asked to load a model")

    monkeypatch.setattr(models, "CellposeModel", must_not_be_called)
    assert main(["count", str(small_study), "--out", str(tmp_path / "out"), "--model", "cpsam"]) == 2
    err = capsys.readouterr().err
    assert "Cellpose-SAM weights are not on this machine" in err and "Traceback" not in err
    assert "--model /path/to/cpsam_v2" in err
    assert not (tmp_path / "out").exists()


def test_synth_command_writes_a_study(tmp_path):
    assert main(["synth", str(tmp_path / "s"), "--animals-per-group", "1", "--sections-per-animal", "1",
                 "--size-px", "256", "--pixel-size-um", "1.0"]) == 0
    sheet = pd.read_csv(tmp_path / "s" / "samplesheet.csv")
    assert len(sheet) == 2
    for path in sheet["path"]:
        truth = read_truth(tmp_path / "s" / path)
        assert truth.labels["dcx"].shape == (256, 256)


@pytest.mark.slow
def test_sections_counted_in_threads_give_the_same_tables(counted_study, tmp_path):
    sheet, out, _ = counted_study
    assert main(["count", str(sheet), "--out", str(tmp_path / "threads"), "--workers", "2",
                 "--section-interval", "6", "--hemispheres", "1"]) == 0
    for name in ("sections.csv", "animals.csv"):
        serial = pd.read_csv(out / name).drop(columns=["seconds"], errors="ignore")
        parallel = pd.read_csv(tmp_path / "threads" / name).drop(columns=["seconds"], errors="ignore")
        pd.testing.assert_frame_equal(serial, parallel)


def test_model_can_be_chosen_per_marker(good_section, tmp_path, monkeypatch, capsys):
    """A per-marker model is used for that marker only: a missing one stops the run naming it."""
    import torch
    from cellpose import models

    from dcxcount.segment import load_engine, save_specialist
    from dcxcount.segment.network import FlowUNet
    from dcxcount.segment.specialist import SpecialistModel

    _write_ome(tmp_path / "a.ome.tif", good_section.image, good_section.channel_names, 0.65)
    sheet = _sheet(tmp_path, [{"path": "a.ome.tif", "animal": "m1"}])
    # A nuclear model that finds other objects than the bundled one: an untrained network.
    torch.manual_seed(0)
    untrained = save_specialist(SpecialistModel(net=FlowUNet(widths=(4, 8)).eval(), kind="nuclear",
                                                pixel_size_um=0.6), tmp_path / "untrained.safetensors")
    assert main(["count", str(sheet), "--out", str(tmp_path / "default")]) == 0
    assert main(["count", str(sheet), "--out", str(tmp_path / "out"), "--model", f"dapi={untrained}"]) == 0
    default = pd.read_csv(tmp_path / "default" / "sections.csv").iloc[0]
    chosen = pd.read_csv(tmp_path / "out" / "sections.csv").iloc[0]
    assert (chosen["dcx_count"], chosen["neun_count"]) == (default["dcx_count"], default["neun_count"])
    assert chosen["dapi_count"] != default["dapi_count"], "the DAPI model was not used"
    recorded = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert str(untrained) in json.dumps(recorded["settings"])
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "no-models")
    load_engine.cache_clear()
    assert main(["count", str(sheet), "--out", str(tmp_path / "out2"), "--model", "neun=cpsam"]) == 2
    assert "Cellpose-SAM" in capsys.readouterr().err


def analogue_read_outs(folder, analogue: str, seed: int) -> dict:
    """One animal, two 768^2 sections with BrdU or EdU, counted by ``dcxcount count``: its animal row,
    counted cells of the analogue, and the read-outs' errors in percentage points against the truth
    (cells in the GCL/SGZ)."""
    from dcxcount.synth import SynthParams, make_study

    sheet = make_study(folder / "s", groups=("saline",), animals_per_group=1, sections_per_animal=2,
                       base=SynthParams(shape_px=(768, 768), pixel_size_um=0.65,
                                        markers=("dcx", "neun", analogue), dcx_per_mm_sgz=200.0), seed=seed)
    assert main(["count", str(sheet), "--out", str(folder / "out")]) == 0
    cells, sections, animals = _tables(folder / "out")
    animal = animals.iloc[0]
    counted = cells[(cells["marker"] == analogue) & cells["counted"]]
    truth = pd.concat([read_truth(path).cells for path in sections["path"]])
    born = truth[(truth["marker"] == analogue) & truth["depth"].between(-10 / 70, 1)]
    dcx, neun = born["dcx_positive"].astype(bool), born["neun_positive"].astype(bool)
    errors = {"pct_dcx": animal[f"pct_{analogue}_dcx"] - 100 * dcx.mean(),
              "pct_neun_dcxneg": animal[f"pct_{analogue}_neun_dcxneg"] - 100 * (neun & ~dcx).mean()}
    return {"animal": animal, "counted": counted, "errors": errors, "n_true": len(born)}


# Errors of the two read-outs (% DCX+, % NeuN+DCX-) on the frozen seeds, measured by
# `python benchmarks/frozen_figures.py analogues`: BrdU 70401-70404 +2.2/+0.9, +2.4/-0.5, +4.3/+0.9,
# +0.6/-0.5 pp; EdU 70411-70414 +1.9/+1.0, +1.6/+1.9, -1.1/+1.0, -0.9/+5.2 pp (50-63 true cells per
# animal; SD over the seeds 0.8-2.0 pp). The test runs the first of each (at most 2.2 pp); the bar
# adds the largest SD.
READ_OUT_BAR_PP = 4.0


@pytest.mark.slow
@pytest.mark.parametrize(("analogue", "seed"), [("brdu", BRDU_STUDY), ("edu", EDU_STUDY)])
def test_thymidine_analogue_phenotypes_reach_the_animal_table(tmp_path, analogue, seed):
    """BrdU+ or EdU+ cells are split into DCX+ and NeuN+DCX- (the seed study's read-outs) per animal,
    end to end, and the read-outs agree with the truth."""
    result = analogue_read_outs(tmp_path, analogue, seed)
    animal, counted = result["animal"], result["counted"]
    assert animal[f"{analogue}_count"] == len(counted) > 0
    assert animal[f"{analogue}_dcx_count"] == counted["dcx_positive"].sum()
    assert animal[f"{analogue}_neun_dcxneg_count"] == (counted["neun_positive"] & ~counted["dcx_positive"]).sum()
    assert animal[f"pct_{analogue}_dcx"] == pytest.approx(
        100 * animal[f"{analogue}_dcx_count"] / animal[f"{analogue}_count"])
    assert counted["phenotype"].str.contains(f"{analogue}+", regex=False).all()
    print(analogue, seed, result["n_true"], {k: round(v, 2) for k, v in result["errors"].items()})
    assert all(abs(error) <= READ_OUT_BAR_PP for error in result["errors"].values()), result["errors"]


def test_detected_gcl_is_the_default_source(counted_study):
    _, out, _ = counted_study
    _, sections, _ = _tables(out)
    assert (sections["gcl_source"] == "detected").all()


@pytest.mark.slow
def test_a_users_outline_replaces_the_detected_gcl(tmp_path):
    """The section's true GCL, given as ROI set, GeoJSON and mask TIFF, is the GCL counted in;
    editing an outline recounts that section only; an outline without hilus fails naming the file."""
    import dataclasses

    import numpy as np
    import roifile
    from scipy import ndimage as ndi

    from dcxcount.gcl import frame_from_gcl
    from dcxcount.synth import write_section

    from .test_outlines import mask_rings, write_geojson, write_roi_zip

    section = make_section(dataclasses.replace(SMALL_SECTION, shape_px=(384, 384), seed=131))
    write_section(section, tmp_path / "s.ome.tif")  # its truth, s_truth/gcl.tif, is a mask as count writes it
    write_roi_zip(tmp_path / "gcl.zip", mask_rings(section.gcl_mask))
    write_geojson(tmp_path / "gcl.geojson", [[ring] for ring in mask_rings(section.gcl_mask)])
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    roifile.ImagejRoi.frompoints(np.stack([192 + 100 * np.cos(theta), 192 + 100 * np.sin(theta)], axis=1)).tofile(
        tmp_path / "blob.roi")
    outlines = {"m1_s1": "gcl.zip", "m1_s2": "gcl.geojson", "m1_s3": "s_truth/gcl.tif", "m2_s1": "blob.roi"}
    sheet = _sheet(tmp_path, [{"path": "s.ome.tif", "animal": key[:2], "section": int(key[-1]), "outline": outline}
                              for key, outline in outlines.items()])
    out = tmp_path / "out"
    assert main(["count", str(sheet), "--out", str(out)]) == 1
    _, sections, _ = _tables(out)
    sections.index = [f"{row.animal}_s{row.section}" for row in sections.itertuples()]
    assert list(sections["gcl_source"]) == [str(tmp_path / name) for name in outlines.values()][:3] + [np.nan]
    good = sections.loc[["m1_s1", "m1_s2", "m1_s3"]]
    assert (good["status"] == "ok").all()
    assert np.allclose(good["gcl_area_mm2"], section.info["gcl_area_mm2"], rtol=0.01)
    # The frame is the one frame_from_gcl gives the true mask: the same code as for a detected GCL.
    truth_frame = frame_from_gcl(section.gcl_mask, pixel_size_um=SMALL_SECTION.pixel_size_um)
    assert np.allclose(good["sgz_length_mm"], truth_frame.sgz_length_mm)
    assert np.allclose(good["gcl_thickness_um"], truth_frame.thickness_um)
    for key in good.index:
        assert np.array_equal(tifffile.imread(out / "sections" / key / "gcl.tif") > 0, section.gcl_mask)
    status = sections.loc["m2_s1", "status"]
    assert status.startswith("error: ") and "blob.roi" in status and "encloses no hilus" in status

    results = {key: out / "sections" / key / "result.json" for key in ("m1_s1", "m1_s2", "m1_s3")}
    before = {key: path.stat().st_mtime_ns for key, path in results.items()}
    thinner = ndi.binary_erosion(section.gcl_mask, iterations=3)
    write_geojson(tmp_path / "gcl.geojson", [[ring] for ring in mask_rings(thinner)])
    main(["count", str(sheet), "--out", str(out)])
    after = {key: path.stat().st_mtime_ns for key, path in results.items()}
    assert after["m1_s1"] == before["m1_s1"] and after["m1_s3"] == before["m1_s3"]
    assert after["m1_s2"] != before["m1_s2"]
    edited = json.loads(results["m1_s2"].read_text())
    assert edited["gcl_area_mm2"] == pytest.approx(thinner.sum() * 0.65**2 / 1e6)
