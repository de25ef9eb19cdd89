"""Detection accuracy against ground truth: centroid matching, F1 and AP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cellpose import metrics as cellpose_metrics
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from skimage.measure import regionprops_table

__all__ = ["Detection", "match_centroids", "label_centroids_um", "detection_scores", "average_precision"]


@dataclass(frozen=True)
class Detection:
    """Counts of a one-to-one matching between predicted and true objects."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else float("nan")

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else float("nan")

    @property
    def f1(self) -> float:
        total = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / total if total else float("nan")

    def __add__(self, other: "Detection") -> "Detection":
        return Detection(self.true_positives + other.true_positives,
                         self.false_positives + other.false_positives,
                         self.false_negatives + other.false_negatives)


def match_centroids(predicted_um: np.ndarray, true_um: np.ndarray, *,
                    max_distance_um: float) -> tuple[Detection, np.ndarray]:
    """Optimal one-to-one matching of centroids closer than ``max_distance_um``.

    Parameters
    ----------
    predicted_um, true_um : (N, 2) and (M, 2) arrays
        Centroids in um.
    max_distance_um : float
        Pairs farther apart never match.

    Returns
    -------
    detection : Detection
    pairs : (K, 2) int array
        Indices (predicted, true) of the matched pairs.
    """
    predicted_um = np.asarray(predicted_um, float).reshape(-1, 2)
    true_um = np.asarray(true_um, float).reshape(-1, 2)
    pairs = np.zeros((0, 2), int)
    if len(predicted_um) and len(true_um):
        near = cKDTree(predicted_um).sparse_distance_matrix(
            cKDTree(true_um), max_distance_um, output_type="coo_matrix")
        if near.nnz:
            # Only objects with a candidate enter the assignment, which keeps it small.
            rows, row_index = np.unique(near.row, return_inverse=True)
            cols, col_index = np.unique(near.col, return_inverse=True)
            cost = np.full((len(rows), len(cols)), 1e9)
            cost[row_index, col_index] = near.data
            r, c = linear_sum_assignment(cost)
            keep = cost[r, c] <= max_distance_um
            pairs = np.stack([rows[r[keep]], cols[c[keep]]], axis=1)
    tp = len(pairs)
    return Detection(tp, len(predicted_um) - tp, len(true_um) - tp), pairs


def label_centroids_um(labels: np.ndarray, *, pixel_size_um: float) -> np.ndarray:
    """(N, 2) centroids (x_um, y_um) of the objects of a label image."""
    if not labels.any():
        return np.zeros((0, 2))
    props = regionprops_table(labels, properties=("centroid",))
    return np.stack([props["centroid-1"], props["centroid-0"]], axis=1) * pixel_size_um


def detection_scores(predicted: np.ndarray, truth: np.ndarray, *, pixel_size_um: float,
                     max_distance_um: float = 5.0) -> Detection:
    """Centroid-matched detection counts between two label images."""
    detection, _ = match_centroids(label_centroids_um(predicted, pixel_size_um=pixel_size_um),
                                   label_centroids_um(truth, pixel_size_um=pixel_size_um),
                                   max_distance_um=max_distance_um)
    return detection


def average_precision(predicted: np.ndarray, truth: np.ndarray, *, iou: float = 0.5) -> float:
    """Cellpose's average precision at one IoU threshold."""
    ap, _, _, _ = cellpose_metrics.average_precision([truth.astype(np.int32)],
                                                     [predicted.astype(np.int32)], threshold=[iou])
    return float(ap[0, 0])
