"""Tests for dcxcount.estimators: per-animal tables, estimates and the CE."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcxcount.estimators import animals_table, gundersen_jensen_ce, phenotype_percentages
from dcxcount.vocabulary import STAGES


def section_rows(*rows: dict) -> pd.DataFrame:
    """A per-section table; each row gives what matters, the rest is filled."""
    defaults = {
        "group": "g",
        "status": "ok",
        "dcx_count": 0,
        "neun_count": 0,
        "dcx_neun_count": 0,
        "gcl_area_mm2": 0.1,
        **{f"stage_{stage}": 0 for stage in STAGES},
    }
    return pd.DataFrame([{**defaults, **row} for row in rows])


def test_animal_counts_are_the_sums_of_their_ok_sections():
    sections = section_rows(
        {"animal": "m2", "section": 1, "dcx_count": 7, "neun_count": 70, "brdu_count": 2,
         "stage_A": 7},
        {"animal": "m1", "section": 1, "dcx_count": 10, "neun_count": 100, "dcx_neun_count": 2,
         "brdu_count": 1, "stage_E": 3, "stage_F": 2, "gcl_area_mm2": 0.2},
        {"animal": "m1", "section": 2, "dcx_count": 30, "neun_count": 300, "dcx_neun_count": 6,
         "brdu_count": 4, "stage_E": 1, "stage_F": 4, "gcl_area_mm2": 0.3},
        {"animal": "m1", "section": 3, "status": "unreadable TIFF", "dcx_count": np.nan,
         "neun_count": np.nan, "dcx_neun_count": np.nan, "brdu_count": np.nan,
         "gcl_area_mm2": np.nan},
    )

    table = animals_table(sections, section_interval=6, hemispheres=2).set_index("animal")

    assert list(table.index) == ["m2", "m1"]  # first appearance
    m1 = table.loc["m1"]
    assert (m1["n_sections"], m1["n_failed"]) == (2, 1)
    counts = ["dcx_count", "neun_count", "dcx_neun_count", "brdu_count"]
    assert list(m1[counts]) == [40, 400, 8, 5]
    assert (m1["stage_E"], m1["stage_F"]) == (4, 6)
    # the failed row's NaN made the input column float; the sums are whole again
    assert pd.api.types.is_integer_dtype(table["dcx_count"])
    assert m1["maturation_index"] == pytest.approx(10 / 40)
    assert m1["pct_dcx_neun"] == pytest.approx(100 * 8 / 40)
    assert m1["gcl_area_mm2"] == pytest.approx(0.5)
    assert m1["dcx_per_mm2_gcl"] == pytest.approx(40 / 0.5)
    assert m1["estimated_total_brdu"] == 5 * 6


def test_doubtful_stage_calls_are_summed_and_given_as_a_share_of_dcx_cells():
    sections = section_rows(
        {"animal": "m1", "section": 1, "dcx_count": 10, "stage_doubtful": 2},
        {"animal": "m1", "section": 2, "dcx_count": 30, "stage_doubtful": 4},
        {"animal": "m2", "section": 1, "dcx_count": 0, "stage_doubtful": 0},
    )
    table = animals_table(sections, section_interval=6, hemispheres=2).set_index("animal")
    assert table.loc["m1", "stage_doubtful"] == 6
    assert table.loc["m1", "pct_stage_doubtful"] == pytest.approx(100 * 6 / 40)
    assert np.isnan(table.loc["m2", "pct_stage_doubtful"])
    assert "stage_doubtful" not in animals_table(section_rows({"animal": "m1", "section": 1}),
                                                 section_interval=6, hemispheres=2)


def test_phenotype_shares_are_pooled_over_an_animals_sections():
    sections = section_rows(
        {"animal": "m1", "section": 1, "brdu_count": 10, "brdu_dcx_count": 6, "brdu_neun_dcxneg_count": 3,
         "brdu_dcx+neun-_count": 6, "brdu_dcx-neun+_count": 3, "brdu_dcx-neun-_count": 1},
        {"animal": "m1", "section": 2, "brdu_count": 30, "brdu_dcx_count": 6, "brdu_neun_dcxneg_count": 21,
         "brdu_dcx+neun-_count": 6, "brdu_dcx-neun+_count": 21, "brdu_dcx-neun-_count": 3},
        {"animal": "m2", "section": 1, "brdu_count": 0, "brdu_dcx_count": 0, "brdu_neun_dcxneg_count": 0,
         "brdu_dcx+neun-_count": 0, "brdu_dcx-neun+_count": 0, "brdu_dcx-neun-_count": 0},
    )

    table = animals_table(sections, section_interval=6, hemispheres=2).set_index("animal")

    m1 = table.loc["m1"]
    assert m1["brdu_dcx-neun+_count"] == 24
    # a ratio of sums (24 / 40), not a mean of the sections' shares (30 % and 70 %)
    assert m1["pct_brdu_dcx-neun+"] == pytest.approx(60.0)
    assert m1["pct_brdu_dcx-neun+"] == pytest.approx(m1["pct_brdu_neun_dcxneg"])
    assert m1["pct_brdu_dcx+neun-"] == pytest.approx(m1["pct_brdu_dcx"]) == pytest.approx(30.0)
    shares = [f"pct_brdu_dcx{d}neun{n}" for d in "+-" for n in "+-" if f"pct_brdu_dcx{d}neun{n}" in table]
    assert sum(m1[shares]) == pytest.approx(100.0)
    assert table.loc["m2", shares].isna().all()  # no BrdU+ cell: no share


def test_phenotype_shares_find_their_marker_when_names_share_a_prefix():
    counts = pd.DataFrame({"gfp_count": [4], "gfp_x_count": [10], "gfp_x_dcx+_count": [5], "gfp_dcx+_count": [1]})

    shares = phenotype_percentages(counts)

    assert list(shares.columns) == ["pct_gfp_x_dcx+", "pct_gfp_dcx+"]
    assert shares.loc[0, "pct_gfp_x_dcx+"] == 50.0 and shares.loc[0, "pct_gfp_dcx+"] == 25.0


@pytest.mark.parametrize(("hemispheres", "factor"), [(1, 2), (2, 1)])
def test_estimated_total_doubles_only_for_one_hemisphere(hemispheres, factor):
    sections = section_rows(
        {"animal": "m1", "section": 1, "dcx_count": 100, "neun_count": 1000},
        {"animal": "m1", "section": 2, "dcx_count": 50, "neun_count": 500},
    )

    animal = animals_table(sections, section_interval=6, hemispheres=hemispheres).iloc[0]

    assert animal["estimated_total_dcx"] == 150 * 6 * factor
    assert animal["estimated_total_neun"] == 1500 * 6 * factor
    assert (animal["section_interval"], animal["hemispheres"]) == (6, hemispheres)


def test_per_row_settings_override_the_keywords_for_their_animal():
    sections = section_rows(
        {"animal": "m1", "section": 1, "dcx_count": 10},
        {"animal": "m2", "section": 1, "dcx_count": 10, "section_interval": 8, "hemispheres": 2,
         "thickness_um": 30.0},
    )

    table = animals_table(sections, section_interval=6, hemispheres=1, thickness_um=40)
    table = table.set_index("animal")

    assert table.loc["m1", "estimated_total_dcx"] == 10 * 6 * 2
    assert table.loc["m2", "estimated_total_dcx"] == 10 * 8 * 1
    assert table.loc["m2", "thickness_um"] == 30.0


def test_rows_of_one_animal_that_disagree_on_a_setting_are_an_error():
    sections = section_rows(
        {"animal": "m1", "section": 1, "section_interval": 6},
        {"animal": "m1", "section": 2, "section_interval": 8},
    )
    with pytest.raises(ValueError, match="section_interval"):
        animals_table(sections, section_interval=6, hemispheres=1)


def test_bad_keyword_setting_is_an_error():
    with pytest.raises(ValueError, match="hemispheres"):
        animals_table(
            section_rows({"animal": "m1", "section": 1}), section_interval=6, hemispheres=3
        )


def test_cavalieri_volume_by_hand():
    sections = section_rows(
        {"animal": "m1", "section": 1, "gcl_area_mm2": 0.10},
        {"animal": "m1", "section": 2, "gcl_area_mm2": 0.15},
        {"animal": "m1", "section": 3, "gcl_area_mm2": 0.05},
    )

    with_thickness = animals_table(sections, section_interval=6, hemispheres=1, thickness_um=40)
    without = animals_table(sections, section_interval=6, hemispheres=1)

    # (0.10 + 0.15 + 0.05) mm^2 x 0.040 mm x 6 x 2 (one hemisphere) = 0.144 mm^3
    assert with_thickness.loc[0, "gcl_volume_mm3"] == pytest.approx(0.144)
    assert math.isnan(without.loc[0, "gcl_volume_mm3"])


def test_ce_uses_the_sections_in_rostro_caudal_order():
    by_section = {1: 5, 2: 20, 3: 40, 4: 30, 5: 5}
    file_order = [3, 1, 5, 2, 4]
    sections = section_rows(
        *({"animal": "m1", "section": s, "dcx_count": by_section[s]} for s in file_order)
    )

    ce = animals_table(sections, section_interval=6, hemispheres=1).loc[0, "ce_dcx"]

    assert ce == pytest.approx(gundersen_jensen_ce(list(by_section.values())))
    assert ce != pytest.approx(gundersen_jensen_ce([by_section[s] for s in file_order]))


def test_animal_without_an_ok_section():
    sections = section_rows(
        {"animal": "m1", "section": 1, "dcx_count": 10},
        {"animal": "m2", "section": 1, "status": "file not found", "dcx_count": np.nan},
        {"animal": "m2", "section": 2, "status": "no GCL found", "dcx_count": np.nan},
    )

    table = animals_table(sections, section_interval=6, hemispheres=1, thickness_um=40)
    m2 = table.set_index("animal").loc["m2"]

    assert (m2["n_sections"], m2["n_failed"]) == (0, 2)
    for column in ["dcx_count", "estimated_total_dcx", "maturation_index", "dcx_per_mm2_gcl",
                   "ce_dcx", "gcl_volume_mm3"]:
        assert pd.isna(m2[column]), column


def test_ce_by_hand():
    q = [5, 20, 40, 30, 5]
    # A = 25 + 400 + 1600 + 900 + 25          = 2950
    # B = 5*20 + 20*40 + 40*30 + 30*5         = 2250
    # C = 5*40 + 20*30 + 40*5                 = 1000
    # noise = sum Q                           = 100
    # 3 (A - noise) - 4 B + C = 8550 - 9000 + 1000 = 550
    # m = 1: VAR_SURS = 550 / 240;  CE = sqrt(100 + 550/240) / 100 = 0.10114
    # m = 0: VAR_SURS = 550 / 12;   CE = sqrt(100 + 550/12)  / 100 = 0.12076
    assert gundersen_jensen_ce(q) == pytest.approx(math.sqrt(100 + 550 / 240) / 100)
    assert gundersen_jensen_ce(q) == pytest.approx(0.10114, abs=1e-5)
    assert gundersen_jensen_ce(q, smoothness_m=0) == pytest.approx(0.12076, abs=1e-5)


def test_ce_negative_surs_term_counts_as_zero():
    # Q = 1,1,1,1: A = 4, B = 3, C = 2, noise = 4: 3 (4 - 4) - 12 + 2 < 0, so CE = sqrt(4) / 4
    assert gundersen_jensen_ce([1, 1, 1, 1]) == pytest.approx(0.5)


@pytest.mark.parametrize("counts", [[], [10], [10, 20], [0, 0, 0], [1, np.nan, 3]])
def test_ce_is_nan_when_undefined(counts):
    assert math.isnan(gundersen_jensen_ce(counts))


def test_ce_rejects_unknown_smoothness():
    with pytest.raises(ValueError, match="smoothness_m"):
        gundersen_jensen_ce([1, 2, 3], smoothness_m=2)
