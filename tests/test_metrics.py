"""dcxcount.metrics on small hand-made label images and point sets with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dcxcount.metrics import (
    Detection,
    average_precision,
    detection_scores,
    false_somata_on_processes,
    label_centroids_um,
    match_centroids,
    soma_split_rate,
)


def _square(labels: np.ndarray, value: int, row: int, col: int, size: int) -> None:
    labels[row:row + size, col:col + size] = value


# --------------------------------------------------------------------------- Detection


def test_detection_scores_from_counts():
    d = Detection(true_positives=6, false_positives=2, false_negatives=4)
    assert d.precision == 0.75
    assert d.recall == 0.6
    assert d.f1 == pytest.approx(2 * 6 / (12 + 2 + 4))


def test_detection_without_objects_is_nan_not_an_error():
    empty = Detection(0, 0, 0)
    assert math.isnan(empty.precision) and math.isnan(empty.recall) and math.isnan(empty.f1)
    assert Detection(0, 3, 0).precision == 0.0
    assert math.isnan(Detection(0, 3, 0).recall)


def test_detections_add_up():
    assert Detection(1, 2, 3) + Detection(10, 20, 30) == Detection(11, 22, 33)


# --------------------------------------------------------------------------- match_centroids


def test_matching_is_optimal_not_greedy():
    # Greedy nearest-first would pair p0 with t1 (0.9 um) and leave p1 (1.2 um from t1,
    # 6 um from t0) unmatched; the optimal matching pairs both.
    predicted = np.array([[0.0, 0.0], [2.1, 0.0]])
    true = np.array([[-3.5, 0.0], [0.9, 0.0]])
    detection, pairs = match_centroids(predicted, true, max_distance_um=4.0)
    assert detection == Detection(2, 0, 0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0), (1, 1)]


def test_matching_respects_the_distance_and_is_one_to_one():
    predicted = np.array([[0.0, 0.0], [0.5, 0.0], [20.0, 20.0]])
    true = np.array([[0.2, 0.0], [30.0, 0.0]])
    detection, pairs = match_centroids(predicted, true, max_distance_um=5.0)
    assert detection == Detection(true_positives=1, false_positives=2, false_negatives=1)
    assert pairs.tolist() == [[0, 0]]
    # Exactly at the distance still matches.
    detection, _ = match_centroids([[0.0, 0.0]], [[3.0, 4.0]], max_distance_um=5.0)
    assert detection == Detection(1, 0, 0)


def test_matching_with_nothing_on_one_side():
    detection, pairs = match_centroids(np.zeros((0, 2)), [[1.0, 1.0], [5.0, 5.0]], max_distance_um=5.0)
    assert detection == Detection(0, 0, 2) and pairs.shape == (0, 2)
    detection, pairs = match_centroids([[1.0, 1.0]], np.zeros((0, 2)), max_distance_um=5.0)
    assert detection == Detection(0, 1, 0) and pairs.shape == (0, 2)


# --------------------------------------------------------------------------- label images


def test_label_centroids_are_x_y_in_um():
    labels = np.zeros((10, 20), int)
    _square(labels, 1, row=2, col=10, size=3)  # centre row 3, column 11
    _square(labels, 2, row=6, col=0, size=2)   # centre row 6.5, column 0.5
    assert label_centroids_um(labels, pixel_size_um=0.5).tolist() == [[5.5, 1.5], [0.25, 3.25]]
    assert label_centroids_um(np.zeros((4, 4), int), pixel_size_um=0.5).shape == (0, 2)


def test_detection_scores_between_label_images():
    truth = np.zeros((40, 40), int)
    _square(truth, 1, 2, 2, 6)
    _square(truth, 2, 20, 20, 6)
    _square(truth, 3, 30, 2, 6)
    found = np.zeros((40, 40), int)
    _square(found, 7, 3, 3, 6)     # 1 px off soma 1: matched
    _square(found, 8, 20, 30, 6)   # 10 px (5 um) right of soma 2: within 5 um
    _square(found, 9, 2, 30, 6)    # nothing there
    assert detection_scores(found, truth, pixel_size_um=0.5) == Detection(2, 1, 1)
    assert detection_scores(found, truth, pixel_size_um=0.5, max_distance_um=4.9) == Detection(1, 2, 2)


def test_average_precision_at_iou():
    truth = np.zeros((30, 30), int)
    _square(truth, 1, 0, 0, 10)
    _square(truth, 2, 15, 15, 10)
    assert average_precision(truth, truth) == 1.0
    found = np.zeros((30, 30), int)
    _square(found, 1, 0, 0, 10)   # exact
    _square(found, 2, 20, 20, 10)  # IoU 25 / 175 with soma 2
    # cellpose's AP = TP / (TP + FP + FN) = 1 / 3
    assert average_precision(found, truth, iou=0.5) == pytest.approx(1 / 3)
    assert average_precision(found, truth, iou=0.1) == pytest.approx(1.0)


# --------------------------------------------------------------------------- soma_split_rate


def test_a_soma_cut_in_two_is_split_and_a_whole_one_is_not():
    truth = np.zeros((20, 40), int)
    _square(truth, 1, 0, 0, 10)
    _square(truth, 2, 0, 20, 10)
    found = np.zeros_like(truth)
    found[0:10, 0:5] = 1    # two halves of soma 1
    found[0:10, 5:10] = 2
    found[0:10, 20:30] = 3  # soma 2 whole
    assert soma_split_rate(found, truth) == 0.5


def test_a_piece_mostly_outside_the_soma_does_not_count_toward_it():
    truth = np.zeros((20, 40), int)
    _square(truth, 1, 0, 0, 10)
    found = np.zeros_like(truth)
    found[0:10, 0:8] = 1    # most of the soma
    found[0:10, 8:14] = 2   # 20 px inside, 40 px outside: a third inside
    assert soma_split_rate(found, truth) == 0.0
    found[0:10, 12:14] = 0  # now 20 of 40 px inside: exactly half counts
    assert soma_split_rate(found, truth) == 1.0
    assert soma_split_rate(found, truth, min_inside_fraction=0.6) == 0.0


def test_a_merge_of_two_somata_is_no_split():
    truth = np.zeros((10, 20), int)
    truth[:, 0:10] = 1
    truth[:, 10:20] = 2
    found = np.zeros_like(truth)
    found[:, 2:18] = 1
    assert soma_split_rate(found, truth) == 0.0


def test_split_rate_counts_three_pieces_once_and_is_nan_without_somata():
    truth = np.zeros((10, 30), int)
    truth[:, 0:9] = 5
    truth[:, 20:30] = 9
    found = np.zeros_like(truth)
    found[:, 0:3], found[:, 3:6], found[:, 6:9] = 1, 2, 3
    assert soma_split_rate(found, truth) == 0.5
    assert math.isnan(soma_split_rate(found, np.zeros_like(truth)))
    assert soma_split_rate(np.zeros_like(truth), truth) == 0.0


def test_split_rate_needs_label_images_of_one_shape():
    with pytest.raises(ValueError, match="shape"):
        soma_split_rate(np.zeros((4, 4), int), np.ones((4, 5), int))


# --------------------------------------------------------------------------- false_somata_on_processes


def _scene():
    """One true soma at rows/cols 0-9 and its process running right along row 5 (x from 5 to 60 um at 1 um/px)."""
    truth = np.zeros((40, 80), int)
    _square(truth, 1, 0, 0, 10)
    processes = pd.DataFrame({"cell_id": [1, 1, 1, 1], "branch": [0, 0, 1, 1], "parent": [-1, -1, 0, 0],
                              "x_um": [5.0, 60.0, 30.0, 30.0], "y_um": [5.0, 5.0, 5.0, 35.0]})
    # Branch 1 leaves the primary at x = 30 um and runs down to y = 35 um.
    return truth, processes


def test_false_somata_on_a_process_are_counted():
    truth, processes = _scene()
    found = np.zeros_like(truth)
    _square(found, 1, 0, 0, 10)     # the soma: matched
    _square(found, 2, 4, 40, 3)     # centroid (41, 5): on the primary
    _square(found, 3, 20, 30, 3)    # centroid (31, 21): 1 um from branch 1
    _square(found, 4, 20, 34, 3)    # centroid (35, 21): 5 um from branch 1
    _square(found, 5, 30, 70, 3)    # far from everything
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=1.0) == 2
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=1.0, max_distance_um=5.0) == 3
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=1.0, max_distance_um=0.5) == 1


def test_a_matched_soma_on_its_process_or_a_soma_piece_is_no_false_soma():
    truth, processes = _scene()
    found = np.zeros_like(truth)
    found[0:10, 0:6] = 1    # most of the soma, matched (centroid 2 um from the true one)
    found[0:10, 6:10] = 2   # the rest: unmatched, wholly inside the soma, on the process root
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=1.0) == 0
    assert soma_split_rate(found, truth) == 1.0


def test_an_unmatched_object_near_a_soma_but_off_the_process_is_not_counted():
    truth, processes = _scene()
    found = np.zeros_like(truth)
    _square(found, 1, 20, 5, 3)   # centroid (6, 21): 16 um below the primary
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=1.0) == 0


def test_pixel_size_scales_the_distances():
    truth, processes = _scene()
    found = np.zeros_like(truth)
    _square(found, 1, 0, 0, 10)
    _square(found, 2, 20, 60, 3)  # centroid (61, 21) px
    # At 0.5 um/px the centroid is (30.5, 10.5) um: 0.5 um from branch 1 (x = 30 um).
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=0.5) == 1
    assert false_somata_on_processes(found, truth, processes, pixel_size_um=1.0) == 0


def test_false_somata_without_objects_or_processes():
    truth, processes = _scene()
    assert false_somata_on_processes(np.zeros_like(truth), truth, processes, pixel_size_um=1.0) == 0
    found = np.zeros_like(truth)
    _square(found, 1, 4, 40, 3)
    empty = processes.iloc[:0]
    assert false_somata_on_processes(found, truth, empty, pixel_size_um=1.0) == 0
    # A branch of one vertex is a point.
    point = pd.DataFrame({"cell_id": [3], "branch": [0], "parent": [-1], "x_um": [41.0], "y_um": [6.0]})
    assert false_somata_on_processes(found, truth, point, pixel_size_um=1.0) == 1
