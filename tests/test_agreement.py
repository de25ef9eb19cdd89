"""`dcxcount agree`: two raters' copies of one study, built by hand so every figure is known exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import tifffile

from dcxcount.agreement import StudyMismatchError, compare_studies, match_masks, stage_kappa
from dcxcount.cli import EXIT_BAD_INPUT, EXIT_OK, main
from dcxcount.vocabulary import STAGE_GROUPS, STAGES

SHAPE = (32, 64)

# Rater A's and rater B's objects per section: cell_id -> (row, column, height, width, stage, counted).
# Section m1_s1 (animal m1, saline): A counts 4 cells. B deletes cell 4, keeps 1 and 3 as they are
# (renumbered 7 and 9), trims a column off cell 2 (renumbered 8: 12 of A's 16 px, IoU 0.75) and calls
# it D instead of C. Cell 5 is not counted in either copy, cell 10 (B only) neither: both are ignored.
#   n_A 4, n_B 3, matched 3: F1 = 2 x 3 / (4 + 3) = 6/7.
#   stages over the 3 pairs, A: A C E, B: A D E. p_o = 2/3; p_e = (1x1 [A] + 1x1 [E]) / 9 = 2/9;
#   kappa = (2/3 - 2/9) / (1 - 2/9) = 4/7. Groups: P I Po in both: kappa 1.
# Section m2_s1 (animal m2, ketamine): A counts 3 cells. B splits cell 1 (8 px wide) into a 5 px wide
# part (IoU 20/32 = 0.625, matched) and a 3 px wide part (IoU 0.375, unmatched), adds cell 5, and calls
# A's F cell D.
#   n_A 3, n_B 5, matched 3: F1 = 6/8 = 0.75.
#   stages, A: B D F, B: B D D. p_o = 2/3; p_e = (1x1 [B] + 1x2 [D]) / 9 = 1/3; kappa = (1/3) / (2/3) = 1/2.
#   groups, A: P I Po, B: P I I. p_o = 2/3; p_e = (1x1 [P] + 1x2 [I]) / 9 = 1/3; kappa = 1/2.
# Pooled over the study: n_A 7, n_B 8, matched 6: F1 = 12/15 = 0.8.
#   stages, A: A C E B D F, B: A D E B D D. p_o = 4/6; marginals A: one of each stage, B: A1 B1 D3 E1;
#   p_e = (1 + 1 + 3 + 1) / 36 = 1/6; kappa = (2/3 - 1/6) / (5/6) = 3/5.
#   groups, A: P I Po P I Po, B: P I Po P I I. p_o = 5/6; marginals A: P2 I2 Po2, B: P2 I3 Po1;
#   p_e = (4 + 6 + 2) / 36 = 1/3; kappa = (5/6 - 1/3) / (2/3) = 3/4.
# Per animal (B - A): m1 4 -> 3, -1 (-25 %); m2 3 -> 5, +2 (+66.7 %).
RATER_A = {
    "m1_s1": {1: (2, 2, 4, 4, "A", True), 2: (2, 10, 4, 4, "C", True), 3: (2, 18, 4, 4, "E", True),
              4: (2, 26, 4, 4, "F", True), 5: (20, 2, 4, 4, "B", False)},
    "m2_s1": {1: (2, 2, 4, 8, "B", True), 2: (2, 14, 4, 4, "D", True), 3: (2, 22, 4, 4, "F", True)},
}
RATER_B = {
    "m1_s1": {7: (2, 2, 4, 4, "A", True), 8: (2, 10, 4, 3, "D", True), 9: (2, 18, 4, 4, "E", True),
              5: (20, 2, 4, 4, "B", False), 10: (20, 20, 4, 4, "C", False)},
    "m2_s1": {1: (2, 2, 4, 5, "B", True), 4: (2, 7, 4, 3, "B", True), 2: (2, 14, 4, 4, "D", True),
              3: (2, 22, 4, 4, "D", True), 5: (20, 30, 4, 4, "C", True)},
}
SECTIONS = [("m1", "saline", 1, "m1_s1"), ("m2", "ketamine", 1, "m2_s1")]


def _write_study(out, cells_by_section, *, sections=SECTIONS, status=None):
    """A results folder as `dcxcount count` writes it, reduced to the files `compare_studies` reads."""
    rows = []
    for animal, group, section, key in sections:
        cells = cells_by_section[key]
        folder = out / "sections" / key
        folder.mkdir(parents=True)
        labels = np.zeros(SHAPE, np.int32)
        table = []
        for cell_id, (y, x, h, w, stage, counted) in cells.items():
            labels[y:y + h, x:x + w] = cell_id
            table.append({"marker": "dcx", "cell_id": cell_id, "x_um": x + w / 2, "y_um": y + h / 2,
                          "counted": counted, "stage": stage, "stage_group": STAGE_GROUPS[stage]})
        # A nucleus with a cell_id that DCX also uses: another marker's rows must be ignored.
        table.append({"marker": "neun", "cell_id": 1, "x_um": 3.0, "y_um": 3.0, "counted": True})
        tifffile.imwrite(folder / "labels_dcx.tif", labels)
        pd.DataFrame(table).to_csv(folder / "cells.csv", index=False)
        state = (status or {}).get(key, "ok")
        rows.append({"animal": animal, "group": group, "section": section, "path": f"{key}.tif", "status": state,
                     "dcx_count": sum(c[5] for c in cells.values()) if state == "ok" else None})
    pd.DataFrame(rows).to_csv(out / "sections.csv", index=False)
    return out


@pytest.fixture
def raters(tmp_path):
    return _write_study(tmp_path / "a", RATER_A), _write_study(tmp_path / "b", RATER_B)


def test_agree_writes_the_figures_computed_by_hand(raters, tmp_path, capsys):
    a, b = raters
    out = tmp_path / "agreement"
    assert main(["agree", str(a), str(b), "--out", str(out)]) == EXIT_OK
    sections = pd.read_csv(out / "agreement_sections.csv").set_index("key")
    m1, m2 = sections.loc["m1_s1"], sections.loc["m2_s1"]
    assert (m1["n_a"], m1["n_b"], m1["matched"], m1["only_a"], m1["only_b"]) == (4, 3, 3, 1, 0)
    assert m1["f1"] == pytest.approx(6 / 7)
    assert m1["stage_kappa"] == pytest.approx(4 / 7) and m1["n_stage"] == 3
    assert m1["stage_agreement"] == pytest.approx(2 / 3)
    assert m1["group_kappa"] == pytest.approx(1.0)
    assert (m2["n_a"], m2["n_b"], m2["matched"], m2["only_a"], m2["only_b"]) == (3, 5, 3, 0, 2)
    assert m2["f1"] == pytest.approx(0.75)
    assert m2["stage_kappa"] == pytest.approx(0.5) and m2["group_kappa"] == pytest.approx(0.5)

    summary = json.loads((out / "agreement.json").read_text())
    assert (summary["n_a"], summary["n_b"], summary["matched"]) == (7, 8, 6)
    assert summary["f1"] == pytest.approx(0.8)
    assert summary["stages"]["kappa"] == pytest.approx(3 / 5) and summary["stages"]["n"] == 6
    assert summary["stages"]["observed_agreement"] == pytest.approx(4 / 6)
    assert summary["stage_groups"]["kappa"] == pytest.approx(3 / 4)
    assert "unweighted" in summary["kappa"]

    animals = pd.read_csv(out / "agreement_animals.csv").set_index("animal")
    assert animals.loc["m1", ["count_a", "count_b", "difference"]].tolist() == [4, 3, -1]
    assert animals.loc["m1", "pct_difference"] == pytest.approx(-25.0)
    assert animals.loc["m2", ["count_a", "count_b", "difference"]].tolist() == [3, 5, 2]
    assert animals.loc["m2", "pct_difference"] == pytest.approx(200 / 3)
    assert animals.loc["m2", "group"] == "ketamine"

    printed = capsys.readouterr().out
    assert "detection F1 0.800" in printed and "kappa 0.600 (unweighted)" in printed
    assert "m1 (saline): 4 -> 3, -1 (-25.0 %)" in printed


def test_identical_copies_agree_fully_and_write_into_out_b(raters):
    a, _ = raters
    assert main(["agree", str(a), str(a)]) == EXIT_OK
    summary = json.loads((a / "agreement.json").read_text())
    assert summary["f1"] == 1.0 and summary["stages"]["kappa"] == 1.0 and summary["stage_groups"]["kappa"] == 1.0
    assert summary["matched"] == 7 and summary["only_a"] == summary["only_b"] == 0
    animals = pd.read_csv(a / "agreement_animals.csv")
    assert (animals["difference"] == 0).all() and (animals["pct_difference"] == 0).all()


def test_progress_after_each_section_and_a_cancel_stops_the_comparison(raters):
    from dcxcount.agreement import compare_studies
    from dcxcount.progress import Cancelled, CancelToken

    a, b = raters
    seen = []
    compare_studies(a, b, progress=lambda fraction, message: seen.append(fraction))
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 1 and len(seen) >= 2
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        compare_studies(a, b, cancel=token)


def test_a_different_study_is_refused_naming_the_folder(tmp_path, capsys):
    a = _write_study(tmp_path / "a", RATER_A)
    b = _write_study(tmp_path / "b", RATER_B, sections=SECTIONS[:1])
    with pytest.raises(StudyMismatchError, match="m2_s1") as caught:
        compare_studies(a, b)
    assert caught.value.folder == b and isinstance(caught.value, ValueError)
    assert main(["agree", str(a), str(b)]) == EXIT_BAD_INPUT
    said = capsys.readouterr().err
    assert str(b) in said and "m2_s1" in said
    assert not (b / "agreement.json").exists()


def test_a_section_failed_in_one_copy_is_refused(tmp_path):
    a = _write_study(tmp_path / "a", RATER_A)
    b = _write_study(tmp_path / "b", RATER_B, status={"m2_s1": "error: m2_s1.tif: cannot read"})
    with pytest.raises(StudyMismatchError, match="m2_s1 failed here") as caught:
        compare_studies(a, b)
    assert caught.value.folder == b


def test_a_missing_label_image_or_an_outdated_cells_table_is_named(raters):
    a, b = raters
    (b / "sections" / "m2_s1" / "labels_dcx.tif").unlink()
    with pytest.raises(StudyMismatchError, match="labels_dcx.tif: missing"):
        compare_studies(a, b)
    # A label painted into the image without a row in cells.csv: the table is older than the labels.
    labels = tifffile.imread(a / "sections" / "m1_s1" / "labels_dcx.tif")
    labels[28:30, 60:62] = 99
    tifffile.imwrite(a / "sections" / "m1_s1" / "labels_dcx.tif", labels)
    with pytest.raises(StudyMismatchError, match="label.s. 99 of labels_dcx.tif have no row") as caught:
        compare_studies(a, a)
    assert caught.value.folder == a / "sections" / "m1_s1" / "cells.csv"


def test_not_a_results_folder(tmp_path, raters):
    a, _ = raters
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyMismatchError, match="no sections.csv"):
        compare_studies(a, tmp_path / "empty")


def test_a_study_table_older_than_its_sections_is_noted(raters):
    a, b = raters
    sheet = pd.read_csv(b / "sections.csv")
    sheet.loc[0, "dcx_count"] = 4  # as counted, before rater B deleted a cell
    sheet.to_csv(b / "sections.csv", index=False)
    found = compare_studies(a, b)
    assert found.f1 == pytest.approx(0.8)
    assert len(found.notes) == 1 and "m1_s1" in found.notes[0] and str(b) in found.notes[0]


def test_kappa_is_nan_with_a_reason_when_undefined():
    same = stage_kappa(["A", "A", "A"], ["A", "A", "A"], categories=STAGES)
    assert math.isnan(same.value) and same.n == 3 and same.observed_agreement == 1.0
    assert "chance agreement is 1" in same.reason
    none = stage_kappa(["A", None], [None, "B"], categories=STAGES)
    assert math.isnan(none.value) and none.n == 0 and "no cell" in none.reason
    # Each rater used one stage, but not the same: p_o = 0, p_e = 0, kappa 0 (defined).
    apart = stage_kappa(["B", "B"], ["C", "C"], categories=STAGES)
    assert apart.value == 0.0 and apart.reason is None


def test_mask_matching_is_one_to_one_at_the_iou_threshold():
    a = np.zeros((4, 8), int)
    a[:, :8] = 1
    halves = np.zeros((4, 8), int)
    halves[:, :4], halves[:, 4:] = 3, 4
    detection, pairs = match_masks(a, halves, min_iou=0.5)
    # Both halves reach IoU 0.5 exactly; one object of A pairs with one of them only.
    assert (detection.true_positives, detection.false_negatives, detection.false_positives) == (1, 0, 1)
    assert pairs.shape == (1, 2) and pairs[0, 0] == 1
    detection, _ = match_masks(a, halves, min_iou=0.6)
    assert detection.true_positives == 0 and detection.f1 == 0.0
