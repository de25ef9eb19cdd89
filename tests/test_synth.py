"""Tests for dcxcount.synth: synthetic sections and their ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage
from skimage.measure import regionprops

from dcxcount.synth import SynthParams, make_section, make_study, read_truth, write_section

# 384 um square: room for the whole C, many DCX cells, still fast.
SMALL = SynthParams(shape_px=(384, 384), pixel_size_um=1.0, dcx_per_mm_sgz=250.0, seed=7)


@pytest.fixture(scope="module")
def section():
    return make_section(SMALL)


@pytest.fixture(scope="module")
def brdu_section():
    return make_section(SynthParams(shape_px=(384, 384), pixel_size_um=1.0, dcx_per_mm_sgz=250.0,
                                    markers=("dcx", "neun", "dapi", "brdu"), seed=3))


def dcx_rows(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["marker"] == "dcx"]


def test_same_seed_gives_same_section(section):
    again = make_section(SMALL)
    assert np.array_equal(again.image, section.image)
    pd.testing.assert_frame_equal(again.cells, section.cells)
    other = make_section(SynthParams(shape_px=(384, 384), pixel_size_um=1.0, dcx_per_mm_sgz=250.0, seed=8))
    assert not np.array_equal(other.image, section.image)


def test_image_and_labels_have_the_promised_form(section):
    assert section.image.shape == (3, 384, 384)
    assert section.image.dtype == np.uint16
    assert section.channel_names == ("DCX", "NeuN", "DAPI")
    assert set(section.labels) == {"dcx", "neun", "dapi"}
    assert all(lab.dtype == np.int32 and lab.shape == (384, 384) for lab in section.labels.values())
    assert section.depth.dtype == np.float32 and section.gcl_mask.dtype == bool


def test_labels_match_cells_table(section):
    ps = section.pixel_size_um
    for marker, labels in section.labels.items():
        rows = section.cells[section.cells["marker"] == marker].set_index("cell_id")
        props = {p.label: p for p in regionprops(labels)}
        assert set(props) == set(rows.index), marker
        centroids = np.array([props[i].centroid for i in rows.index])
        assert np.abs(centroids[:, 1] * ps - rows["x_um"]).max() < ps
        assert np.abs(centroids[:, 0] * ps - rows["y_um"]).max() < ps
        assert np.allclose([props[i].area * ps * ps for i in rows.index], rows["area_um2"])
        # Depth and GCL membership agree with the maps at the centroid pixel.
        r, c = np.rint(centroids).astype(int).T
        assert np.abs(section.depth[r, c] - rows["depth"]).max() < 0.02
        # Rounding to a pixel may cross the GCL border, nowhere else.
        mismatch = section.gcl_mask[r, c] != rows["in_gcl"].to_numpy()
        near_border = ndimage.binary_dilation(section.gcl_mask) & ~ndimage.binary_erosion(section.gcl_mask)
        assert near_border[r[mismatch], c[mismatch]].all()


def test_one_cell_keeps_its_id_across_markers(section):
    dcx = dcx_rows(section.cells)
    soma, nuclei, neun = section.labels["dcx"], section.labels["dapi"], section.labels["neun"]
    for row in dcx.itertuples():
        nucleus = nuclei == row.cell_id
        assert nucleus.any() and np.all(soma[nucleus] == row.cell_id)  # the nucleus sits in its soma
        assert (neun == row.cell_id).any() == row.neun_positive
    dapi = section.cells[section.cells["marker"] == "dapi"]
    assert set(dapi.loc[dapi["dcx_positive"], "cell_id"]) == set(dcx["cell_id"])
    neun_rows = section.cells[section.cells["marker"] == "neun"]
    assert neun_rows["neun_positive"].all()


def test_gcl_is_a_dense_band_of_neun_nuclei(section):
    assert np.all((section.depth[section.gcl_mask] >= 0) & (section.depth[section.gcl_mask] <= 1))
    coverage = (section.labels["neun"][section.gcl_mask] > 0).mean()
    assert coverage > 0.5
    granules = section.cells[(section.cells["marker"] == "neun") & (section.cells["cell_type"] == "granule")]
    assert granules["in_gcl"].mean() > 0.95
    # Overlaps leave every nucleus at least half its drawn ellipse (>= pi * 3 * 4 / 2 um^2).
    assert granules["area_um2"].min() >= 0.5 * np.pi * 3 * 4 - 1
    assert granules["area_um2"].max() <= np.pi * 5 * 4 + 1


def test_dcx_somata_sit_at_the_sgz(section):
    dcx = dcx_rows(section.cells)
    assert len(dcx) >= 30
    assert dcx["depth"].between(-0.25, 0.45).all()
    assert dcx["depth"].median() < 0.2
    assert dcx["area_um2"].between(0.5 * np.pi * 3 * 4, np.pi * 6 * 4.5 + 2).all()


def test_stage_features_follow_the_stage_rules(section):
    dcx = dcx_rows(section.cells)
    dcx = dcx[~dcx["truncated"].astype(bool)]
    by = {stage: dcx[dcx["stage"] == stage] for stage in "ABCDEF"}
    assert all(len(rows) for rows in by.values()), dcx["stage"].value_counts()
    assert (by["A"]["longest_path_um"] < 6).all()
    assert by["A"]["longest_path_um"].max() < dcx.loc[dcx["stage"] != "A", "longest_path_um"].min()
    assert (by["B"]["max_depth"] < 1).all() and (by["B"]["longest_path_um"] >= 10).all()
    assert by["C"]["max_depth"].between(0.5, 1, inclusive="left").all()
    for stage in "DEF":
        assert (by[stage]["max_depth"] > 1).all()
    assert (by["D"]["n_branch_points_ml"] == 0).all() and (by["D"]["n_primary"] == 1).all()
    assert (by["E"]["n_branch_points_ml"] == 1).all() and (by["E"]["n_tips"] == 2).all()
    assert (by["F"]["n_branch_points_ml"] >= 2).all() and (by["F"]["n_tips"] >= 3).all()
    groups = dict(zip("ABCDEF", ["proliferative"] * 2 + ["intermediate"] * 2 + ["postmitotic"] * 2))
    assert (dcx["stage_group"] == dcx["stage"].map(groups)).all()


def test_process_polylines_match_the_truth_features(section):
    dcx = dcx_rows(section.cells).set_index("cell_id")
    procs = section.processes
    assert set(procs["cell_id"]) <= set(dcx.index)
    for (_cell_id, _), branch in procs.groupby(["cell_id", "branch"]):
        assert branch["x_um"].between(0, 383).all() and branch["y_um"].between(0, 383).all()
    lengths = procs.groupby(["cell_id", "branch"])[["x_um", "y_um"]].apply(
        lambda b: np.hypot(np.diff(b["x_um"]), np.diff(b["y_um"])).sum()).groupby("cell_id").sum()
    assert np.allclose(lengths, dcx.loc[lengths.index, "process_length_um"])
    primaries = procs[procs["parent"] == -1].groupby("cell_id")["branch"].nunique()
    assert (primaries == dcx.loc[primaries.index, "n_primary"]).all()


def test_processes_are_drawn_but_not_labelled(section):
    dcx_channel = section.image[0].astype(float)
    ps = section.pixel_size_um
    procs = section.processes
    on_process = np.zeros(dcx_channel.shape, bool)
    on_process[np.rint(procs["y_um"] / ps).astype(int), np.rint(procs["x_um"] / ps).astype(int)] = True
    assert (section.labels["dcx"][on_process] == 0).mean() > 0.9  # somata only in the labels
    elsewhere = ~ndimage.binary_dilation(on_process | (section.labels["dcx"] > 0), iterations=3)
    on_process &= section.labels["dcx"] == 0
    assert np.median(dcx_channel[on_process]) > np.percentile(dcx_channel[elsewhere], 75)


def test_dcx_neun_fraction_is_respected():
    params = SynthParams(shape_px=(640, 640), pixel_size_um=0.8, dcx_per_mm_sgz=300.0, dcx_neun_fraction=0.3,
                         seed=11)
    dcx = dcx_rows(make_section(params).cells)
    assert len(dcx) >= 60
    assert abs(dcx["neun_positive"].mean() - 0.3) < 0.02
    mature = dcx["stage"].isin(["E", "F"])
    assert dcx.loc[mature, "neun_positive"].mean() > dcx.loc[~mature, "neun_positive"].mean()


def test_snr_sets_the_contrast():
    def contrast(snr: float) -> float:
        s = make_section(SynthParams(shape_px=(256, 256), pixel_size_um=1.0, snr=snr, haze=0.0, gradient=0.0,
                                     seed=5))
        dapi, labels = s.image[2].astype(float), s.labels["dapi"]
        background = ~ndimage.binary_dilation(labels > 0, iterations=4)
        return (dapi[labels > 0].mean() - dapi[background].mean()) / dapi[background].std()

    low, high = contrast(4.0), contrast(12.0)
    assert 2.5 < low < 5.5
    assert 2.4 < high / low < 3.6


def test_brdu_truth_is_consistent(brdu_section):
    s = brdu_section
    cells = s.cells
    assert s.channel_names == ("DCX", "NeuN", "DAPI", "BrdU")
    brdu = cells[cells["marker"] == "brdu"]
    assert len(brdu) and brdu["brdu_positive"].all() and not cells["edu_positive"].any()
    # BrdU objects are nuclei: the same pixels as in the DAPI labels.
    both = s.labels["brdu"] > 0
    assert np.array_equal(s.labels["brdu"][both], s.labels["dapi"][both])
    dcx = dcx_rows(cells)
    assert dcx["brdu_positive"].sum() == round(0.3 * len(dcx))
    newborn = brdu[brdu["phenotype"] == "brdu+dcx-neun+"]
    assert len(newborn) and (newborn["cell_type"] == "granule").all() and (newborn["depth"] < 1).all()
    assert set(brdu["phenotype"]) <= {"brdu+dcx+neun+", "brdu+dcx+neun-", "brdu+dcx-neun+", "brdu+dcx-neun-"}
    # Every row of one cell tells the same co-labels.
    flags = cells.groupby("cell_id")[["dcx_positive", "neun_positive", "brdu_positive"]].nunique()
    assert (flags == 1).all().all()


def test_edu_panel_names_the_analogue():
    s = make_section(SynthParams(shape_px=(256, 256), pixel_size_um=1.0, markers=("dapi", "edu", "neun"), seed=2))
    assert s.channel_names == ("DAPI", "EdU", "NeuN")
    edu = s.cells[s.cells["marker"] == "edu"]
    assert len(edu) and edu["edu_positive"].all() and not s.cells["brdu_positive"].any()
    assert edu["phenotype"].str.startswith("edu+").all()
    assert "dcx" not in s.labels


@pytest.mark.parametrize(("markers", "reason"), [(("dcx", "gfp"), r"unknown markers \['gfp'\]"),
                                                 (("dcx", "dcx"), "markers repeat"),
                                                 (("brdu", "edu"), "at most one thymidine analogue")])
def test_bad_markers_are_refused(markers, reason):
    with pytest.raises(ValueError, match=reason):
        SynthParams(markers=markers)


def test_ome_tiff_round_trip(section, tmp_path):
    path = write_section(section, tmp_path / "sub" / "sec.ome.tif")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "CYX" and tif.series[0].dtype == np.uint16
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert [c["Name"] for c in pixels["Channel"]] == ["DCX", "NeuN", "DAPI"]
        assert pixels["PhysicalSizeX"] == pixels["PhysicalSizeY"] == section.pixel_size_um
        assert np.array_equal(tif.asarray(), section.image)
    assert path.stat().st_size < 0.8 * section.image.nbytes


def test_read_truth_round_trip(section, tmp_path):
    path = write_section(section, tmp_path / "sec.ome.tif")
    folder = tmp_path / "sec_truth"
    assert {p.name for p in folder.iterdir()} == {"labels.tif", "gcl.tif", "depth.tif", "cells.csv",
                                                  "processes.csv", "params.json", "info.json"}
    truth = read_truth(path)
    assert truth.image is None
    assert truth.params == section.params
    for marker, labels in section.labels.items():
        assert np.array_equal(truth.labels[marker], labels)
    assert np.array_equal(truth.gcl_mask, section.gcl_mask)
    # depth is stored as float16: ~3 significant digits survive the round trip.
    np.testing.assert_allclose(truth.depth, section.depth, rtol=1e-3, atol=1e-3)
    pd.testing.assert_frame_equal(truth.cells, section.cells)
    pd.testing.assert_frame_equal(truth.processes, section.processes)
    assert np.array_equal(read_truth(path, image=True).image, section.image)


def test_write_without_truth(section, tmp_path):
    write_section(section, tmp_path / "bare.ome.tif", truth=False)
    assert not (tmp_path / "bare_truth").exists()
    with pytest.raises(FileNotFoundError, match="no truth folder .*bare_truth"):
        read_truth(tmp_path / "bare.ome.tif")


def test_make_study_writes_sections_and_samplesheet(tmp_path):
    base = SynthParams(shape_px=(128, 128), pixel_size_um=2.0)
    sheet = make_study(tmp_path / "study", animals_per_group=2, sections_per_animal=2, base=base, seed=1)
    table = pd.read_csv(sheet)
    assert list(table.columns) == ["path", "animal", "group", "section"]
    assert len(table) == 8
    assert table.groupby("group")["animal"].nunique().to_dict() == {"ketamine": 2, "saline": 2}
    assert sorted(table["animal"].unique()) == ["ketamine-1", "ketamine-2", "saline-1", "saline-2"]
    assert "saline-1_s01.ome.tif" in set(table["path"])
    seeds, density = set(), {}
    for row in table.itertuples():
        image = sheet.parent / row.path
        assert image.is_file()
        params = json.loads((image.parent / row.path.replace(".ome.tif", "_truth") / "params.json").read_text())
        seeds.add(params["seed"])
        density.setdefault(row.group, []).append(params["dcx_per_mm_sgz"])
    assert len(seeds) == 8
    assert np.mean(density["ketamine"]) > np.mean(density["saline"])


def test_make_study_takes_explicit_group_overrides(tmp_path):
    base = SynthParams(shape_px=(96, 96), pixel_size_um=2.0)
    sheet = make_study(tmp_path, groups={"young": {"dcx_per_mm_sgz": 200.0}, "old": {"dcx_per_mm_sgz": 40.0}},
                       animals_per_group=1, sections_per_animal=1, base=base, truth=False)
    table = pd.read_csv(sheet)
    assert list(table["animal"]) == ["young-1", "old-1"]
    assert not any(p.name.endswith("_truth") for p in tmp_path.iterdir())
