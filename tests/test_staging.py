"""Tests for dcxcount.staging: the stage rules and the stages they give.

Two kinds of ground truth:

* a hand-written features table for the stage rules, with rows inside each rule and on
  each threshold, and the stage margins they give;
* synthetic sections (dcxcount.synth) with their true somata and a frame from the true
  NeuN labels, held to the stage and group accuracy measured on them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcxcount.features import process_features
from dcxcount.gcl import find_layer_frame
from dcxcount.io import Section
from dcxcount.metrics import match_centroids
from dcxcount.pipeline import count_section
from dcxcount.staging import StagingRules, stage_cells
from dcxcount.synth import SynthParams, make_section
from dcxcount.vocabulary import STAGE_GROUPS

from .splits import STAGING, STAGING_TRUE_SOMATA

# --------------------------------------------------------------------------- stage rules

T = 70.0  # GCL thickness for the table: short < 35 um


def table(*rows) -> pd.DataFrame:
    """Rows of (name, longest_path_um, max_depth, angle_deg, n_branch_points_ml, n_tips_ml)."""
    records = []
    for name, length, depth, angle, branches, tips in rows:
        records.append({"cell_id": name, "process_length_um": length, "longest_path_um": length,
                        "n_primary": 1, "n_branch_points": branches, "n_branch_points_ml": branches,
                        "n_tips": max(tips, 1), "n_tips_ml": tips, "max_depth": depth,
                        "process_angle_deg": angle, "process_shared_um": 0.0, "somata_crossed": 0})
    return pd.DataFrame(records).set_index("cell_id")


CLEAR = table(
    ("A", 4.0, 0.1, 30.0, 0, 0),
    ("B", 20.0, 0.2, 70.0, 0, 0),
    ("C", 45.0, 0.7, 10.0, 0, 0),
    ("D", 90.0, 1.6, 5.0, 0, 1),
    ("E", 110.0, 1.7, 8.0, 1, 2),
    ("F", 130.0, 1.9, 6.0, 3, 5),
)


def test_clear_rows_get_their_stage_and_group():
    out = stage_cells(CLEAR, gcl_thickness_um=T)
    assert list(out.index) == list(CLEAR.index)
    assert list(out["stage"]) == ["A", "B", "C", "D", "E", "F"]
    assert list(out["stage_group"]) == ["proliferative", "proliferative", "intermediate",
                                        "intermediate", "postmitotic", "postmitotic"]
    assert all(STAGE_GROUPS[s] == g for s, g in zip(out["stage"], out["stage_group"]))


def test_default_rules_are_the_biology_cutoffs():
    rules = StagingRules()
    assert (rules.stub_um, rules.short_fraction, rules.radial_max_angle_deg, rules.ml_depth) == (10.0, 0.5, 45.0, 1.0)
    assert (rules.inner_gcl_depth, rules.f_min_branch_points, rules.f_min_tips) == (0.4, 2, 3)


# (row, expected stage, why): every comparison in stage_cells is strict, so a value right
# on a threshold falls on the side of the larger stage.
EDGES = [
    (("L=stub", 10.0, 0.3, 10.0, 0, 0), "B", "L == stub_um is not a stub (<); 10 < 35 is short"),
    (("L<stub", 9.99, 0.3, 10.0, 0, 0), "A", "just under stub_um"),
    (("L=short", 35.0, 0.3, 10.0, 0, 0), "C", "L == 0.5 * thickness is not short (<)"),
    (("L<short", 34.9, 0.3, 10.0, 0, 0), "B", "just under half the thickness, in the inner GCL"),
    (("d=inner", 20.0, 0.4, 10.0, 0, 0), "C", "short, but d == inner_gcl_depth is not shallow (<)"),
    (("d<inner", 20.0, 0.399, 10.0, 0, 0), "B", "short and just inside the inner GCL"),
    (("angle=max", 50.0, 0.7, 45.0, 0, 0), "C", "45 deg is still radial (>)"),
    (("angle>max", 50.0, 0.7, 45.1, 0, 0), "B", "just tangential"),
    (("depth=1", 60.0, 1.0, 10.0, 0, 0), "C", "d == 1 does not reach the ML (>)"),
    (("depth>1", 60.0, 1.001, 10.0, 0, 0), "D", "just into the ML"),
    (("2 branches", 100.0, 1.5, 10.0, 2, 2), "F", "two branch points in the ML"),
    (("1 branch 3 tips", 100.0, 1.5, 10.0, 1, 3), "F", "three tips in the ML make F even with one fork"),
    (("1 branch 2 tips", 100.0, 1.5, 10.0, 1, 2), "E", "one fork, two tips"),
    (("stub in ML", 5.0, 1.5, 10.0, 2, 3), "A", "the stub rule comes first, whatever the depth"),
    (("short tangential in ML", 20.0, 1.2, 80.0, 0, 1), "D",
     "reaching the ML outranks short/tangential (a soma near the ML border)"),
    (("short radial in inner GCL", 25.0, 0.3, 5.0, 0, 0), "B", "short and shallow wins over radial"),
    (("short radial deep in GCL", 25.0, 0.8, 5.0, 0, 0), "C",
     "a radial process reaching d = 0.8 runs into the GCL however short (synth C from a deep soma)"),
]


@pytest.mark.parametrize("row,expected,why", EDGES, ids=[e[0][0] for e in EDGES])
def test_threshold_rows(row, expected, why):
    assert stage_cells(table(row), gcl_thickness_um=T)["stage"].iloc[0] == expected, why


@pytest.mark.parametrize("rules,row,default,custom", [
    (StagingRules(stub_um=25.0), ("x", 20.0, 0.3, 70.0, 0, 0), "B", "A"),
    (StagingRules(short_fraction=0.25), ("x", 20.0, 0.3, 10.0, 0, 0), "B", "C"),
    (StagingRules(inner_gcl_depth=0.6), ("x", 20.0, 0.5, 10.0, 0, 0), "C", "B"),
    (StagingRules(radial_max_angle_deg=30.0), ("x", 50.0, 0.7, 40.0, 0, 0), "C", "B"),
    (StagingRules(ml_depth=1.5), ("x", 80.0, 1.3, 10.0, 0, 1), "D", "C"),
    (StagingRules(ml_depth=1.5), ("x", 80.0, 1.3, 10.0, 1, 2), "E", "C"),
    (StagingRules(f_min_branch_points=3), ("x", 100.0, 1.5, 10.0, 2, 2), "F", "E"),
    (StagingRules(f_min_tips=4), ("x", 100.0, 1.5, 10.0, 1, 3), "F", "E"),
])
def test_custom_rules_change_the_outcome(rules, row, default, custom):
    features = table(row)
    assert stage_cells(features, gcl_thickness_um=T)["stage"].iloc[0] == default
    assert stage_cells(features, gcl_thickness_um=T, rules=rules)["stage"].iloc[0] == custom


def test_gcl_thickness_scales_the_short_rule():
    features = table(("x", 40.0, 0.35, 10.0, 0, 0))
    assert stage_cells(features, gcl_thickness_um=70.0)["stage"].iloc[0] == "C"
    assert stage_cells(features, gcl_thickness_um=100.0)["stage"].iloc[0] == "B"


def test_stage_margin_is_the_distance_to_the_nearest_deciding_threshold():
    out = stage_cells(CLEAR, gcl_thickness_um=T)
    assert list(out.columns) == ["stage", "stage_group", "stage_margin", "stage_doubtful"]
    margin = out["stage_margin"]
    assert margin["A"] == pytest.approx(0.6)  # L = 4 against stub_um = 10
    # B: tangential by (70 - 45) / 45; every earlier rule fails by more (stub by 1.0,
    # the ML by 0.8 thickness) and the short-and-shallow part is irrelevant to an "or".
    assert margin["B"] == pytest.approx(25 / 45)
    # C: nearest is the ML border (d = 0.7, 0.3 away), before angle (35/45) and stub (3.5).
    assert margin["C"] == pytest.approx(0.3)
    # F: branch points 3 against 2 are (3 - 1.5) / 2 = 0.75 away, tips 5 against 3 are
    # (5 - 2.5) / 3; either makes F, so the farther counts; the ML is 0.9 away.
    assert margin["F"] == pytest.approx(2.5 / 3)
    assert (margin >= 0).all()


@pytest.mark.parametrize("row", [e[0] for e in EDGES if "=" in e[0][0]], ids=lambda r: r[0])
def test_stage_margin_is_zero_on_a_border(row):
    assert stage_cells(table(row), gcl_thickness_um=T)["stage_margin"].iloc[0] == 0


def test_stage_margin_grows_away_from_the_border():
    lengths = [36.0, 45.0, 55.0]  # radial, d = 0.3: C, ever farther from short (35 um)
    margins = stage_cells(table(*[(f"L{x}", x, 0.3, 10.0, 0, 0) for x in lengths]), gcl_thickness_um=T)
    assert list(margins["stage"]) == ["C"] * 3
    assert margins["stage_margin"].is_monotonic_increasing
    one_fork = stage_cells(table(("E", 100.0, 1.5, 10.0, 1, 2)), gcl_thickness_um=T)["stage_margin"].iloc[0]
    assert one_fork == pytest.approx(1 / 6)  # one tip short of F's three


def test_calls_on_processes_of_doubtful_ownership_are_flagged():
    rows = table(*[(name, 45.0, 0.7, 10.0, 0, 0) for name in ("clear", "shared", "crossed", "little")])
    rows.loc["shared", "process_shared_um"] = 12.0
    rows.loc["crossed", "somata_crossed"] = 1
    rows.loc["little", "process_shared_um"] = 4.0  # a crossing's few um, under the default 6
    out = stage_cells(rows, gcl_thickness_um=T)
    assert list(out["stage_doubtful"]) == [False, True, True, False]
    assert list(out["stage"]) == ["C"] * 4  # the flag never changes a stage
    strict = stage_cells(rows, gcl_thickness_um=T, rules=StagingRules(doubtful_shared_um=3.0))
    assert list(strict["stage_doubtful"]) == [False, True, True, True]


# --------------------------------------------------------------------------- synthetic sections

SYNTH = dict(shape_px=(512, 512), pixel_size_um=0.65, dcx_per_mm_sgz=150.0)
GROUPS = ("proliferative", "intermediate", "postmitotic")


def _staged(seeds):
    """Per seed: truth rows (untruncated DCX cells), features and stages (true somata,
    frame from the true NeuN labels)."""
    out = {}
    for seed in seeds:
        section = make_section(SynthParams(seed=seed, **SYNTH))
        frame = find_layer_frame(section.labels["neun"], pixel_size_um=section.pixel_size_um)
        features = process_features(section.image[0], section.labels["dcx"], frame)
        stages = stage_cells(features, gcl_thickness_um=frame.thickness_um)
        truth = section.cells[section.cells["marker"] == "dcx"].set_index("cell_id")
        truth = truth[~truth["truncated"].astype(bool)]
        out[seed] = (section, truth, features, stages)
    return out


@pytest.fixture(scope="module")
def staged():
    """Dev seeds 0-2: the rule checks against the generator's own features."""
    return _staged((0, 1, 2))


@pytest.fixture(scope="module")
def staged_frozen():
    """The frozen test split's sections for the accuracy figures (tests/splits.py)."""
    return _staged(STAGING_TRUE_SOMATA)


def confusion(truth: pd.Series, predicted: pd.Series, labels) -> pd.DataFrame:
    return pd.crosstab(pd.Categorical(truth, labels), pd.Categorical(predicted, labels),
                       rownames=["true"], colnames=["found"], dropna=False)


def test_synthetic_staging_is_better_than_chance(staged):
    true_groups, found_groups = [], []
    for _seed, (section, truth, features, stages) in staged.items():
        labels = np.unique(section.labels["dcx"])
        assert list(features.index) == list(labels[labels > 0])
        assert stages["stage"].isin(list("ABCDEF")).all()
        found = stages.loc[truth.index]
        true_groups.append(truth["stage_group"])
        found_groups.append(found["stage_group"])
    true_groups, found_groups = pd.concat(true_groups), pd.concat(found_groups)
    accuracy = (true_groups == found_groups).mean()
    # Chance: the agreement of independent labellings with the same marginals.
    chance = sum((true_groups == g).mean() * (found_groups == g).mean() for g in GROUPS)
    majority = true_groups.value_counts(normalize=True).max()
    print(f"pooled group accuracy {accuracy:.2f}, chance {chance:.2f}, majority {majority:.2f}")
    assert accuracy > chance + 0.2
    assert accuracy > majority + 0.2


def test_synthetic_stage_and_group_accuracy(staged_frozen):
    # True somata, frame from the true NeuN labels, untruncated cells. Measured on the frozen
    # seeds 70211-70216 (192 cells): stage 0.562, 0.441, 0.542, 0.719, 0.484, 0.590 (pooled 0.557,
    # SD over seeds 0.10), group 0.781, 0.588, 0.583, 0.875, 0.677, 0.692 (pooled 0.703, SD 0.11).
    # Bars: each seed just under the worst seed; pooled, the figure less the SD over seeds over
    # sqrt(6). On the dev seeds 0-2, where the tracing was built: stage 0.62, 0.59, 0.67, group
    # 0.69, 0.88, 0.80 (pooled 0.79); before gap joins
    # and fused crossings: stage 0.62, 0.50, 0.60 (pooled 0.57), group 0.66, 0.78, 0.70
    # (pooled 0.71); before short roots, soma flattening and bridged somata: stage 0.59,
    # 0.47, 0.60, group 0.62, 0.75, 0.67; before process ownership, spur pruning and the
    # B/C rule: stage 0.26, group 0.51.
    # Most misses are processes lost at their root: too faint to trace, or hidden where
    # they run over a neighbour's soma (calls of A); see the per-seed confusion printed.
    truths, founds = [], []
    for seed, (_, truth, _, stages) in staged_frozen.items():
        found = stages.loc[truth.index]
        stage_accuracy = (found["stage"] == truth["stage"]).mean()
        group_accuracy = (found["stage_group"] == truth["stage_group"]).mean()
        print(f"\nseed {seed}: n={len(truth)}, stage accuracy {stage_accuracy:.2f}, "
              f"group accuracy {group_accuracy:.2f}")
        print(confusion(truth["stage"], found["stage"], list("ABCDEF")))
        assert stage_accuracy >= 0.42 and group_accuracy >= 0.56
        truths.append(truth)
        founds.append(found)
    truth, found = pd.concat(truths), pd.concat(founds)
    assert (found["stage"].to_numpy() == truth["stage"].to_numpy()).mean() >= 0.52
    assert (found["stage_group"].to_numpy() == truth["stage_group"].to_numpy()).mean() >= 0.66


def _truth_features(section, truth: pd.DataFrame) -> pd.DataFrame:
    """The synth's own truth as a features table; the angle from the soma centre to the
    process vertex farthest from it, against the true depth gradient."""
    ps = section.pixel_size_um
    gy, gx = np.gradient(section.depth.astype(float))
    angles = {}
    for cid, row in truth.iterrows():
        pts = section.processes.loc[section.processes["cell_id"] == cid, ["x_um", "y_um"]].to_numpy()
        if len(pts) == 0:
            angles[cid] = 0.0
            continue
        offsets = pts - [row["x_um"], row["y_um"]]
        vx, vy = offsets[np.argmax(np.hypot(offsets[:, 0], offsets[:, 1]))]
        r, c = int(round(row["y_um"] / ps)), int(round(row["x_um"] / ps))
        cosine = abs(vx * gx[r, c] + vy * gy[r, c]) / (math.hypot(vx, vy) * math.hypot(gx[r, c], gy[r, c]))
        angles[cid] = math.degrees(math.acos(min(cosine, 1.0)))
    reaches = truth["max_depth"] > 1
    return pd.DataFrame({
        "longest_path_um": truth["longest_path_um"], "max_depth": truth["max_depth"],
        "n_branch_points_ml": truth["n_branch_points_ml"].astype(float),
        "n_tips_ml": np.where(reaches, truth["n_tips"].astype(float), 0.0),
        "process_angle_deg": pd.Series(angles), "process_shared_um": 0.0, "somata_crossed": 0})


def test_rules_reproduce_synth_stages_from_true_features_except_c(staged):
    # Guards the rules against the generator: with the synth's own morphology, every
    # A, B, D, E and F cell gets its stage back (measured 100 % on seeds 0-5).
    for section, truth, _, _ in staged.values():
        found = stage_cells(_truth_features(section, truth), gcl_thickness_um=section.params.gcl_thickness_um)
        not_c = truth["stage"] != "C"
        assert (found.loc[not_c, "stage"] == truth.loc[not_c, "stage"]).all()


def test_rules_reproduce_synth_c_from_true_features(staged):
    # Synth C processes run radially from an SGZ soma to depth 0.5-0.9, 14-35 um: short
    # against half the GCL but deep into it, which the B rule no longer calls B.
    for section, truth, _, _ in staged.values():
        c = truth[truth["stage"] == "C"]
        found = stage_cells(_truth_features(section, c), gcl_thickness_um=section.params.gcl_thickness_um)
        assert (found["stage"] == "C").all(), found["stage"].value_counts().to_dict()


# --------------------------------------------------------------------------- the whole path


# Issue 4's bar is 0.85 (stage) and 0.93 (group). What the tracing reaches on the frozen
# test split (tests/splits.py STAGING, 70201-70208; `python benchmarks/staging.py --first-seed
# 70201 --sections 8`), with the models of issue 10: at the generator's default density 0.851
# and 0.903 (154 cells; per section stage 0.59-1.00, SD 0.13, group 0.65-1.00, SD 0.12); in dense
# sections (150 DCX cells per mm SGZ) 0.626 and 0.737 (361 cells; stage 0.44-0.81, SD 0.13, group
# 0.58-0.85, SD 0.09). Bars: the figure less the SD over sections over sqrt(8). The group bar
# is not met. (On the former held-out seeds 101-103, dev seeds now, with the earlier models:
# 0.86 / 0.88 and 0.68 / 0.82.)
@pytest.mark.slow
@pytest.mark.parametrize(("dcx_per_mm_sgz", "stage_reached", "group_reached"),
                         [(SynthParams().dcx_per_mm_sgz, 0.80, 0.86), (150.0, 0.58, 0.70)])
def test_staging_accuracy_on_detected_cells_of_held_out_sections(dcx_per_mm_sgz, stage_reached, group_reached):
    # Issue 4's measure: count_section on the frozen sections (768^2 px at 0.65 um), detected
    # somata matched to the true ones within 5 um, untruncated cells.
    # benchmarks/staging.py measures more sections (docs/validation.md, DCX staging).
    truths, founds = [], []
    for seed in STAGING:
        synth = make_section(SynthParams(shape_px=(768, 768), pixel_size_um=0.65, markers=("dcx", "neun"),
                                         dcx_per_mm_sgz=dcx_per_mm_sgz, seed=seed))
        section = Section(path="synthetic", data=synth.image, channel_names=synth.channel_names,
                          pixel_size_um=synth.pixel_size_um, pixel_size_source="synthetic", projection="none")
        cells = count_section(section).cells
        found = cells[cells["marker"] == "dcx"].reset_index(drop=True)
        real = synth.cells[synth.cells["marker"] == "dcx"].reset_index(drop=True)
        detection, pairs = match_centroids(found[["x_um", "y_um"]].to_numpy(), real[["x_um", "y_um"]].to_numpy(),
                                           max_distance_um=5.0)
        assert detection.recall > 0.9
        whole = ~real.loc[pairs[:, 1], "truncated"].astype(bool).to_numpy()
        truths.append(real.loc[pairs[whole, 1], "stage"].to_numpy())
        founds.append(found.loc[pairs[whole, 0], "stage"].to_numpy())
    truth, found = np.concatenate(truths), np.concatenate(founds)
    group = pd.Series(STAGE_GROUPS)
    stage_accuracy = (truth == found).mean()
    group_accuracy = (group[truth].to_numpy() == group[found].to_numpy()).mean()
    print(f"\n{len(truth)} cells: stage accuracy {stage_accuracy:.3f}, group accuracy {group_accuracy:.3f}")
    print(confusion(pd.Series(truth), pd.Series(found), list("ABCDEF")))
    assert len(truth) >= 150
    assert stage_accuracy >= stage_reached
    assert group_accuracy >= group_reached
