"""Estimates, group statistics and the BrdU read-outs against numbers worked out by hand.

A made-up study of 6 animals in two groups (below); every expected value was
computed by hand, and the working is in the comments next to it. The animal is
the unit: group statistics are over animals, never sections.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcxcount.estimators import animals_table
from dcxcount.groups import GROUP_COLUMNS, group_metrics, groups_table, stage_shares

_NAN = math.nan


def _section(animal, group, section, *, dcx=_NAN, stages=(_NAN,) * 6, neun=_NAN, dcx_neun=_NAN, gcl=_NAN,
             brdu=_NAN, brdu_dcx=_NAN, brdu_neun=_NAN, doubtful=_NAN, status="ok"):
    row = {"animal": animal, "group": group, "section": section, "status": status, "dcx_count": dcx,
           "neun_count": neun, "dcx_neun_count": dcx_neun, "gcl_area_mm2": gcl, "brdu_count": brdu,
           "brdu_dcx_count": brdu_dcx, "brdu_neun_dcxneg_count": brdu_neun, "stage_doubtful": doubtful}
    row.update({f"stage_{s}": n for s, n in zip("ABCDEF", stages)})
    return row


def _study() -> pd.DataFrame:
    rows = [
        # c1: three sections, DCX 10, 20, 30.
        _section("c1", "ctrl", 1, dcx=10, stages=(2, 2, 2, 2, 1, 1), neun=100, dcx_neun=1, gcl=0.1, brdu=5,
                 brdu_dcx=2, brdu_neun=1, doubtful=1),
        _section("c1", "ctrl", 2, dcx=20, stages=(4, 4, 4, 4, 2, 2), neun=100, dcx_neun=2, gcl=0.1, brdu=5,
                 brdu_dcx=1, brdu_neun=3, doubtful=2),
        _section("c1", "ctrl", 3, dcx=30, stages=(6, 6, 6, 6, 3, 3), neun=100, dcx_neun=3, gcl=0.1, brdu=10,
                 brdu_dcx=2, brdu_neun=6, doubtful=3),
        # c2: two sections (no CE).
        _section("c2", "ctrl", 1, dcx=20, stages=(4, 4, 4, 4, 2, 2), neun=100, dcx_neun=2, gcl=0.1, brdu=10,
                 brdu_dcx=5, brdu_neun=4, doubtful=2),
        _section("c2", "ctrl", 2, dcx=20, stages=(4, 4, 4, 4, 2, 2), neun=100, dcx_neun=2, gcl=0.1, brdu=10,
                 brdu_dcx=3, brdu_neun=6, doubtful=2),
        # r1, r2, r4: one counted section each; r2 has a failed one too; r3 only a failed one.
        _section("r1", "run", 1, dcx=30, stages=(0, 0, 10, 10, 5, 5), neun=100, dcx_neun=3, gcl=0.1, brdu=10,
                 brdu_dcx=6, brdu_neun=2, doubtful=0),
        _section("r2", "run", 1, dcx=60, stages=(0, 0, 20, 20, 10, 10), neun=100, dcx_neun=6, gcl=0.2, brdu=10,
                 brdu_dcx=4, brdu_neun=4, doubtful=3),
        _section("r2", "run", 2, status="error: r2_s2.tif: not a TIFF file"),
        _section("r3", "run", 1, status="no GCL found: too few nuclei"),
        _section("r4", "run", 1, dcx=90, stages=(0, 0, 30, 30, 15, 15), neun=100, dcx_neun=9, gcl=0.3, brdu=20,
                 brdu_dcx=10, brdu_neun=6, doubtful=9),
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def animals() -> pd.DataFrame:
    # Every 6th section, one hemisphere counted, 40 um sections.
    return animals_table(_study(), section_interval=6, hemispheres=1, thickness_um=40)


def _group_stat(groups: pd.DataFrame, group: str, metric: str) -> pd.Series:
    row = groups[(groups["group"] == group) & (groups["metric"] == metric)]
    assert len(row) == 1, (group, metric)
    return row.iloc[0]


def test_per_animal_estimates_match_the_hand_calculation(animals):
    a = animals.set_index("animal")
    c1 = a.loc["c1"]
    assert c1["n_sections"] == 3 and c1["n_failed"] == 0
    assert c1["dcx_count"] == 60  # 10 + 20 + 30
    # One hemisphere of every 6th section: 60 x 6 x 2 = 720.
    assert c1["estimated_total_dcx"] == 720
    assert c1["maturation_index"] == pytest.approx(0.2)  # (E 6 + F 6) / 60
    assert c1["pct_dcx_neun"] == pytest.approx(10.0)  # 100 x 6 / 60
    assert c1["pct_stage_doubtful"] == pytest.approx(10.0)  # 100 x (1 + 2 + 3) / 60
    assert c1["dcx_per_mm2_gcl"] == pytest.approx(200.0)  # 60 / 0.3 mm^2
    # Cavalieri: 0.3 mm^2 x 0.040 mm x 6 x 2 = 0.144 mm^3.
    assert c1["gcl_volume_mm3"] == pytest.approx(0.144)
    # Gundersen-Jensen, m = 1, Q = 10, 20, 30: A = 1400, B = 10*20 + 20*30 = 800, C = 10*30 = 300, noise = 60;
    # VAR_SURS = (3 (1400 - 60) - 4 * 800 + 300) / 240 = 1120 / 240 = 4.6667; CE = sqrt(64.6667) / 60 = 8.041559 / 60 = 0.134026.
    assert c1["ce_dcx"] == pytest.approx(0.134026, abs=1e-6)
    # c2 has two sections: the CE needs at least three, so it is blank.
    assert math.isnan(a.loc["c2", "ce_dcx"])
    assert a.loc["c2", "estimated_total_dcx"] == 480  # 40 x 12
    # r2: the failed section is not counted and is reported in n_failed.
    assert a.loc["r2", "n_sections"] == 1 and a.loc["r2", "n_failed"] == 1
    assert a.loc["r2", "estimated_total_dcx"] == 720  # 60 x 12
    # r3 has no counted section: no count, no estimate (not zero).
    assert a.loc["r3", "n_sections"] == 0 and pd.isna(a.loc["r3", "dcx_count"])
    assert pd.isna(a.loc["r3", "estimated_total_dcx"])


def test_brdu_readouts_match_the_hand_calculation(animals):
    a = animals.set_index("animal")
    # c1: BrdU+ 5 + 5 + 10 = 20; BrdU+DCX+ 2 + 1 + 2 = 5 -> 25 %; BrdU+NeuN+DCX- 1 + 3 + 6 = 10 -> 50 %.
    assert a.loc["c1", "pct_brdu_dcx"] == pytest.approx(25.0)
    assert a.loc["c1", "pct_brdu_neun_dcxneg"] == pytest.approx(50.0)
    # c2: BrdU+ 20; DCX+ 5 + 3 = 8 -> 40 %; NeuN+DCX- 4 + 6 = 10 -> 50 %. A ratio of sums, not a mean of ratios
    # (the sections' own shares, 50 % and 30 %, would also give 40 % here, but c1's would give 23.3 %).
    assert a.loc["c2", "pct_brdu_dcx"] == pytest.approx(40.0)
    assert a.loc["c2", "pct_brdu_neun_dcxneg"] == pytest.approx(50.0)
    assert a.loc["r1", "pct_brdu_dcx"] == pytest.approx(60.0)  # 6 / 10
    assert a.loc["r2", "pct_brdu_dcx"] == pytest.approx(40.0)  # 4 / 10
    assert a.loc["r4", "pct_brdu_dcx"] == pytest.approx(50.0)  # 10 / 20
    assert a.loc["r4", "pct_brdu_neun_dcxneg"] == pytest.approx(30.0)  # 6 / 20


def test_group_statistics_are_over_animals_and_match_the_hand_calculation(animals):
    groups = groups_table(animals)
    assert list(groups.columns) == list(GROUP_COLUMNS)
    assert list(dict.fromkeys(groups["group"])) == ["ctrl", "run"]  # order of first appearance

    # ctrl, estimated total DCX: 720 and 480 -> mean 600; SD = sqrt((120^2 + 120^2) / 1) = 169.706;
    # SEM = 169.706 / sqrt(2) = 120. Five sections, but n is 2 animals.
    total = _group_stat(groups, "ctrl", "estimated_total_dcx")
    assert (total["n_animals"], total["n_missing"]) == (2, 0)
    assert total["mean"] == pytest.approx(600.0)
    assert total["sd"] == pytest.approx(169.7056, abs=1e-4)
    assert total["sem"] == pytest.approx(120.0)

    # run: r1 360, r2 720, r4 1080; r3 has no value -> n 3, missing 1; mean 720;
    # SD = sqrt((360^2 + 0 + 360^2) / 2) = 360; SEM = 360 / sqrt(3) = 207.846.
    total = _group_stat(groups, "run", "estimated_total_dcx")
    assert (total["n_animals"], total["n_missing"]) == (3, 1)
    assert total["mean"] == pytest.approx(720.0)
    assert total["sd"] == pytest.approx(360.0)
    assert total["sem"] == pytest.approx(207.8461, abs=1e-4)

    # The seed study's read-out, per group. ctrl: 25 and 40 % -> mean 32.5, SD 10.6066, SEM 7.5.
    brdu = _group_stat(groups, "ctrl", "pct_brdu_dcx")
    assert (brdu["n_animals"], brdu["mean"], brdu["sem"]) == (2, pytest.approx(32.5), pytest.approx(7.5))
    assert brdu["sd"] == pytest.approx(10.6066, abs=1e-4)
    # run: 60, 40, 50 % -> mean 50, SD = sqrt((100 + 100 + 0) / 2) = 10, SEM = 10 / sqrt(3) = 5.7735.
    brdu = _group_stat(groups, "run", "pct_brdu_dcx")
    assert (brdu["n_animals"], brdu["mean"], brdu["sd"]) == (3, pytest.approx(50.0), pytest.approx(10.0))
    assert brdu["sem"] == pytest.approx(5.7735, abs=1e-4)
    # run, NeuN+DCX-: 20, 40, 30 % -> mean 30, SD 10.
    neun = _group_stat(groups, "run", "pct_brdu_neun_dcxneg")
    assert (neun["mean"], neun["sd"]) == (pytest.approx(30.0), pytest.approx(10.0))

    # The CE exists for c1 only: one animal, so no SD or SEM; c2 is counted as missing.
    ce = _group_stat(groups, "ctrl", "ce_dcx")
    assert (ce["n_animals"], ce["n_missing"]) == (1, 1)
    assert ce["mean"] == pytest.approx(0.134026, abs=1e-6)
    assert math.isnan(ce["sd"]) and math.isnan(ce["sem"])

    # Stage shares per animal, then per group: ctrl stage A is 12/60 = 20 % (c1) and 8/40 = 20 % (c2)... and
    # stage E 6/60 = 10 %, 4/40 = 10 %; run stage C is 1/3 of every animal's cells.
    assert _group_stat(groups, "ctrl", "pct_stage_A")["mean"] == pytest.approx(20.0)
    assert _group_stat(groups, "ctrl", "pct_stage_E")["sd"] == pytest.approx(0.0)
    assert _group_stat(groups, "run", "pct_stage_C")["mean"] == pytest.approx(100 / 3)
    assert _group_stat(groups, "run", "maturation_index")["mean"] == pytest.approx(1 / 3)


def test_the_metrics_are_measurements_not_settings(animals):
    metrics = group_metrics(animals)
    for setting in ("section_interval", "hemispheres", "thickness_um", "n_sections", "n_failed"):
        assert setting not in metrics
    for metric in ("dcx_count", "estimated_total_dcx", "dcx_per_mm2_gcl", "maturation_index", "pct_stage_doubtful",
                   "pct_brdu_dcx", "pct_brdu_neun_dcxneg", "ce_dcx", "gcl_volume_mm3", "pct_stage_F"):
        assert metric in metrics


def test_a_share_of_no_cells_is_missing_not_zero():
    animals = pd.DataFrame({"animal": ["a"], "group": ["g"], "dcx_count": [0],
                            **{f"stage_{s}": [0] for s in "ABCDEF"}})
    assert np.isnan(stage_shares(animals).to_numpy()).all()
    assert _group_stat(groups_table(animals), "g", "pct_stage_A")["n_missing"] == 1
