"""Detection accuracy against ground truth: centroid matching, F1, AP and DCX soma errors.

Besides matching objects (`match_centroids`, `detection_scores`, `average_precision`),
two measures name the errors a DCX soma segmentation makes on new looks: a soma cut
into pieces (`soma_split_rate`) and a piece of process taken for a soma
(`false_somata_on_processes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from cellpose import metrics as cellpose_metrics
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from skimage.measure import regionprops_table

__all__ = ["Detection", "match_centroids", "label_centroids_um", "detection_scores", "average_precision",
           "soma_split_rate", "false_somata_on_processes"]


@dataclass(frozen=True)
class Detection:
    """Counts of a one-to-one matching between predicted and true objects.

    ``precision``, ``recall`` and ``f1`` follow from the counts (NaN where their
    denominator is 0); detections add up count by count, to pool sections.
    """

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

    def __add__(self, other: Detection) -> Detection:
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
    """Centroids of the objects of a label image, in um.

    Parameters
    ----------
    labels : (Y, X) int array
        Label image (0 is background).
    pixel_size_um : float, keyword-only

    Returns
    -------
    (N, 2) float array
        ``(x_um, y_um)`` per object in increasing label order: column and row
        times the pixel size (the convention of the cells tables).
    """
    if not labels.any():
        return np.zeros((0, 2))
    props = regionprops_table(labels, properties=("centroid",))
    return np.stack([props["centroid-1"], props["centroid-0"]], axis=1) * pixel_size_um


def detection_scores(predicted: np.ndarray, truth: np.ndarray, *, pixel_size_um: float,
                     max_distance_um: float = 5.0) -> Detection:
    """Centroid-matched detection counts between two label images.

    Parameters
    ----------
    predicted, truth : (Y, X) int arrays
        Label images of the detected and the true objects.
    pixel_size_um : float, keyword-only
    max_distance_um : float, keyword-only
        Centroids farther apart never match (`match_centroids`).

    Returns
    -------
    Detection
    """
    detection, _ = match_centroids(label_centroids_um(predicted, pixel_size_um=pixel_size_um),
                                   label_centroids_um(truth, pixel_size_um=pixel_size_um),
                                   max_distance_um=max_distance_um)
    return detection


def average_precision(predicted: np.ndarray, truth: np.ndarray, *, iou: float = 0.5) -> float:
    """Cellpose's average precision at one IoU threshold.

    Parameters
    ----------
    predicted, truth : (Y, X) int arrays
        Label images of the detected and the true objects.
    iou : float, keyword-only
        Objects pair when their intersection over union reaches this.

    Returns
    -------
    float
        Matched pairs / (pairs + unmatched predicted + unmatched true objects).
    """
    ap, _, _, _ = cellpose_metrics.average_precision([truth.astype(np.int32)],
                                                     [predicted.astype(np.int32)], threshold=[iou])
    return float(ap[0, 0])


def _pieces_inside(predicted: np.ndarray, truth: np.ndarray, *,
                   min_inside_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (predicted label, true label) where the true object holds enough of the predicted one.

    A predicted object belongs to a true one when at least ``min_inside_fraction`` of
    its pixels lie in it (with a fraction above 0.5 an object belongs to at most one).
    """
    predicted = np.asarray(predicted).astype(np.int64, copy=False)
    truth = np.asarray(truth).astype(np.int64, copy=False)
    if predicted.shape != truth.shape:
        raise ValueError(f"label images differ in shape: {predicted.shape} and {truth.shape}")
    both = (predicted > 0) & (truth > 0)
    if not both.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    stride = np.int64(truth.max()) + 1
    pairs, overlap = np.unique(predicted[both] * stride + truth[both], return_counts=True)
    ids_predicted, ids_truth = np.divmod(pairs, stride)
    area = np.bincount(predicted.ravel())[ids_predicted]
    keep = overlap >= min_inside_fraction * area
    return ids_predicted[keep], ids_truth[keep]


def soma_split_rate(predicted: np.ndarray, truth: np.ndarray, *, min_inside_fraction: float = 0.5) -> float:
    """Share of true somata that the segmentation cut into two or more objects.

    A detected object counts toward a true soma when at least
    ``min_inside_fraction`` of its pixels lie in that soma; a true soma is *split*
    when two or more detected objects count toward it. An object spilling over two
    somata counts toward neither unless half of it lies in one, so merged
    neighbours are not splits.

    Parameters
    ----------
    predicted, truth : (Y, X) int arrays
        Label images (0 is background) of the detected and the true somata.
    min_inside_fraction : float, keyword-only
        Share of a detected object's pixels that must lie in a true soma for it to
        count toward that soma (0.5: at least half).

    Returns
    -------
    float
        Split true somata over all true somata; NaN when ``truth`` has none.

    Examples
    --------
    >>> truth = np.zeros((4, 8), int); truth[:, :4] = 1; truth[:, 4:] = 2
    >>> found = np.zeros((4, 8), int); found[:, :2] = 1; found[:, 2:4] = 2; found[:, 4:] = 3
    >>> soma_split_rate(found, truth)
    0.5
    """
    true_ids = np.unique(truth)
    true_ids = true_ids[true_ids > 0]
    if not len(true_ids):
        return float("nan")
    _, owners = _pieces_inside(predicted, truth, min_inside_fraction=min_inside_fraction)
    pieces = np.bincount(owners, minlength=int(true_ids.max()) + 1)[true_ids]
    return float((pieces >= 2).sum() / len(true_ids))


def _distance_to_polylines(points: np.ndarray, processes: pd.DataFrame) -> np.ndarray:
    """Distance (um) from each point to the nearest segment of any process polyline."""
    if len(processes) == 0:
        return np.full(len(points), np.inf)
    ordered = processes.reset_index(drop=True)
    xy = ordered[["x_um", "y_um"]].to_numpy(float)
    keys = ordered[["cell_id", "branch"]].to_numpy()
    same = (keys[1:] == keys[:-1]).all(axis=1)
    # Segments join consecutive vertices of one branch; a branch of one vertex is a point.
    starts = np.concatenate([xy[:-1][same], xy])
    ends = np.concatenate([xy[1:][same], xy])
    direction = ends - starts
    length2 = np.maximum((direction**2).sum(axis=1), 1e-12)
    out = np.empty(len(points))
    for i, point in enumerate(points):
        t = np.clip(((point - starts) * direction).sum(axis=1) / length2, 0.0, 1.0)
        nearest = starts + t[:, None] * direction
        out[i] = np.sqrt(((nearest - point) ** 2).sum(axis=1).min())
    return out


def false_somata_on_processes(predicted: np.ndarray, truth: np.ndarray, processes: pd.DataFrame, *,
                              pixel_size_um: float, max_distance_um: float = 2.0,
                              match_distance_um: float = 5.0, min_inside_fraction: float = 0.5) -> int:
    """Number of detected DCX objects that are no soma but lie on a DCX process.

    A detected object *matches no true soma* when the one-to-one centroid matching
    of `match_centroids` (within ``match_distance_um``) leaves it unpaired and less
    than ``min_inside_fraction`` of its pixels lie in any one true soma (a piece of a
    split soma is counted by `soma_split_rate` instead). Such an object is a false
    soma on a process when its centroid lies within ``max_distance_um`` of a true
    process polyline: a varicosity, growth cone or bright stretch of dendrite taken
    for a cell body. Divide by the SGZ length for a rate per mm.

    Parameters
    ----------
    predicted, truth : (Y, X) int arrays
        Label images of the detected and the true DCX somata.
    processes : DataFrame
        The true process polylines, one row per vertex in drawing order, with
        columns ``cell_id, branch, x_um, y_um`` (`dcxcount.synth.SynthSection.processes`);
        consecutive vertices of one ``(cell_id, branch)`` are joined by straight lines.
    pixel_size_um : float, keyword-only
        Pixel size of both label images (``x_um`` is column x pixel size).
    max_distance_um : float, keyword-only
        Largest distance of the object's centroid from a process polyline.
    match_distance_um : float, keyword-only
        Centroids closer than this may pair with a true soma (5 um, as for F1).
    min_inside_fraction : float, keyword-only
        Share of its pixels inside one true soma that makes an object a soma piece.

    Returns
    -------
    int
        The number of such objects.
    """
    labels = np.unique(predicted)
    labels = labels[labels > 0]
    if not len(labels):
        return 0
    centroids = label_centroids_um(predicted, pixel_size_um=pixel_size_um)
    _, pairs = match_centroids(centroids, label_centroids_um(truth, pixel_size_um=pixel_size_um),
                               max_distance_um=match_distance_um)
    unmatched = np.ones(len(labels), bool)
    unmatched[pairs[:, 0]] = False
    inside, _ = _pieces_inside(predicted, truth, min_inside_fraction=min_inside_fraction)
    unmatched &= ~np.isin(labels, inside)
    if not unmatched.any():
        return 0
    distance = _distance_to_polylines(centroids[unmatched], processes)
    return int((distance <= max_distance_um).sum())
