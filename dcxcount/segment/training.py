"""Training the specialist flow network, from scratch or by fine-tuning.

Training pairs are images with label images of the objects to find. Flow
targets come from cellpose (:func:`cellpose.dynamics.labels_to_flows`), so
what the network learns is exactly what cellpose's mask reconstruction undoes.

Two sources of pairs: synthetic sections (:func:`synthetic_samples`, how the
bundled models are made) and a folder of a lab's corrected sections
(:func:`read_labelled_sections`), split by section into training and
validation (:func:`split_sections`) and scored before and after fine-tuning
(:func:`score_model`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import tifffile
import torch
from cellpose import dynamics

from ..appearance import FAMILIES, sample_params
from ..io import SectionReadError, match_channels, read_section
from ..metrics import Detection, average_precision, detection_scores
from ..progress import CancelToken, ProgressCallback, report
from ..vocabulary import KNOWN_MARKERS
from .engines import kind_of_marker
from .network import FlowUNet
from .rescale import nearest_resize, normalize_image, resize_image
from .specialist import SpecialistModel

__all__ = ["TrainingSample", "prepare_sample", "train_specialist", "synthetic_samples", "LabelledSection", "TrainingDataError", "read_labelled_sections", "split_sections", "score_model",
           "labelled_section", "FINE_TUNE_STEPS", "FINE_TUNE_LEARNING_RATE"]

FINE_TUNE_STEPS = 300
"""Default steps when starting from a trained model: minutes on 2 CPU cores,
and on the test's shifted domain 80 steps already gave the whole gain."""

FINE_TUNE_LEARNING_RATE = 5e-4
"""Default peak learning rate when fine-tuning, a quarter of the from-scratch
rate, so the base model's features are adjusted rather than overwritten."""

# NAME_labels_MARKER.tif(f); the name may itself contain underscores.
_LABEL_FILE = re.compile(r"^(?P<name>.+)_labels_(?P<marker>[A-Za-z0-9]+)\.tiff?$", re.IGNORECASE)
_IMAGE_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff")


@dataclass(frozen=True)
class TrainingSample:
    """One image channel and the labels of the objects a model should find in it."""

    image: np.ndarray
    labels: np.ndarray
    pixel_size_um: float


@dataclass(frozen=True)
class _Prepared:
    image: np.ndarray      # (Y, X) normalised, at the model's pixel size
    target: np.ndarray     # (3, Y, X): 5 * dY, 5 * dX, cell (0/1)


def prepare_sample(sample: TrainingSample, *, model_pixel_size_um: float) -> _Prepared:
    """Normalise, rescale to the model's pixel size and compute flow targets."""
    scale = sample.pixel_size_um / model_pixel_size_um
    image = resize_image(normalize_image(sample.image), scale=scale)
    labels = nearest_resize(sample.labels, shape=image.shape)
    flows = dynamics.labels_to_flows([labels.astype(np.int32)])[0]
    target = np.stack([5 * flows[2], 5 * flows[3], (flows[0] > 0).astype(np.float32)])
    return _Prepared(image=image.astype(np.float32), target=target.astype(np.float32))


def _augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
    """Random dihedral transform (flows rotate with the image) and intensity change."""
    if rng.random() < 0.5:  # mirror X: the X flow changes sign
        image, target = image[:, ::-1], target[:, :, ::-1] * np.array([1, -1, 1])[:, None, None]
    if rng.random() < 0.5:  # mirror Y
        image, target = image[::-1], target[:, ::-1] * np.array([-1, 1, 1])[:, None, None]
    if rng.random() < 0.5:  # transpose: Y and X swap, flows too
        image, target = image.T, target[[1, 0, 2]].transpose(0, 2, 1)
    # Real sections differ in exposure, offset, contrast and noise from any
    # training set; the network must not rely on absolute levels.
    gain = math.exp(rng.uniform(-0.7, 0.7))
    offset = rng.uniform(-0.15, 0.15)
    image = image * gain + offset
    if rng.random() < 0.5:
        image = image + rng.normal(0, rng.uniform(0, 0.08), image.shape)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(target, np.float32)


def _batch(prepared: Sequence[_Prepared], *, batch_size: int, crop_px: int,
           rng: np.random.Generator, foreground_share: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = [], []
    for _ in range(batch_size):
        sample = prepared[rng.integers(len(prepared))]
        height, width = sample.image.shape
        cells = np.flatnonzero(sample.target[2].ravel())
        if len(cells) and rng.random() < foreground_share:
            # Sparse objects (DCX somata) would be absent from most uniform crops.
            cy, cx = divmod(int(cells[rng.integers(len(cells))]), width)
            y0 = int(np.clip(cy - rng.integers(crop_px), 0, max(height - crop_px, 0)))
            x0 = int(np.clip(cx - rng.integers(crop_px), 0, max(width - crop_px, 0)))
        else:
            y0 = rng.integers(0, max(height - crop_px, 0) + 1)
            x0 = rng.integers(0, max(width - crop_px, 0) + 1)
        image = sample.image[y0:y0 + crop_px, x0:x0 + crop_px]
        target = sample.target[:, y0:y0 + crop_px, x0:x0 + crop_px]
        pad = ((0, crop_px - image.shape[0]), (0, crop_px - image.shape[1]))
        image = np.pad(image, pad)
        target = np.pad(target, ((0, 0), *pad))
        image, target = _augment(image, target, rng)
        images.append(image)
        targets.append(target)
    return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(targets))


def _loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # cellpose's own objective: flow MSE (halved) + cell-probability BCE.
    flow = torch.nn.functional.mse_loss(prediction[:, :2], target[:, :2]) / 2
    cell = torch.nn.functional.binary_cross_entropy_with_logits(prediction[:, 2], target[:, 2])
    return flow + cell


def train_specialist(samples: Sequence[TrainingSample], *, kind: str,
                     model_pixel_size_um: float = 0.6,
                     widths: tuple[int, ...] = (12, 24, 48, 96),
                     base: SpecialistModel | None = None,
                     n_steps: int = 1500, batch_size: int = 8, crop_px: int = 128,
                     learning_rate: float = 2e-3, seed: int = 0,
                     freeze_batchnorm: bool | None = None,
                     progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> SpecialistModel:
    """Train (or fine-tune, given ``base``) a specialist model.

    Parameters
    ----------
    samples : sequence of TrainingSample
        Images with their label images; any pixel size.
    kind : str
        "dcx" or "nuclear"; recorded in the model.
    model_pixel_size_um : float
        Pixel size the network works at (ignored when fine-tuning: the base's is kept).
    widths : tuple of int
        Network widths for a new model (ignored when fine-tuning).
    base : SpecialistModel, optional
        Start from this model's weights instead of random ones.
    n_steps, batch_size, crop_px, learning_rate, seed
        Optimisation settings: AdamW with cosine decay over ``n_steps`` steps
        of ``batch_size`` random ``crop_px`` crops.
    freeze_batchnorm : bool, optional
        Keep the BatchNorm running statistics (and use them in training) instead
        of re-estimating them from the batches. Default: frozen when fine-tuning.
    progress, cancel
        ``progress(fraction, message)`` after each step; ``cancel`` checked
        before each (:mod:`dcxcount.progress`).

    Returns
    -------
    SpecialistModel
        The trained model; ``info["final_loss"]`` holds the mean loss of the last 50 steps.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if base is not None:
        model_pixel_size_um = base.pixel_size_um
        net = FlowUNet(widths=base.net.widths)
        net.load_state_dict(base.net.state_dict())
    else:
        net = FlowUNet(widths=widths)
    prepared = [prepare_sample(s, model_pixel_size_um=model_pixel_size_um) for s in samples]
    if not prepared:
        raise ValueError("no training samples")
    net = net.to(memory_format=torch.channels_last).train()
    if freeze_batchnorm is None:
        freeze_batchnorm = base is not None
    if freeze_batchnorm:
        # Batches drawn from a few sections give noisy statistics that would
        # replace the base's running averages, and training on batch statistics
        # while inference uses running ones lets the two drift apart.
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate,
                                                   total_steps=n_steps, pct_start=0.1)
    recent: list[float] = []
    for step in range(1, n_steps + 1):
        report(None, cancel, 0.0, "")
        images, targets = _batch(prepared, batch_size=batch_size, crop_px=crop_px, rng=rng)
        loss = _loss(net(images.to(memory_format=torch.channels_last)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        report(progress, None, step / n_steps, f"loss {np.mean(recent):.3f}")
    net.eval()
    return SpecialistModel(net=net, kind=kind, pixel_size_um=model_pixel_size_um,
                           info={"final_loss": float(np.mean(recent))})


def synthetic_samples(*, kind: str, n_sections: int, size_px: int = 512, seed: int = 0,
                      families: Sequence[str] = FAMILIES) -> list[TrainingSample]:
    """Training samples from synthetic sections that vary what real images vary.

    Each section draws its cell density, clustering and share of DCX+NeuN+ cells,
    and the knobs of every appearance family in ``families`` from their training
    ranges (`dcxcount.appearance`, never from the held-out bands), so the model is
    not fitted to one way of drawing a cell or one microscope. Families left out
    keep the plain look: that is how a leave-one-family-out model is trained.
    ``kind`` "dcx" gives the DCX channel with soma labels; "nuclear" gives the
    NeuN, DAPI and BrdU channels with their nuclei.
    """
    from ..synth import SynthParams, make_section

    rng = np.random.default_rng(seed)
    samples = []
    for index in range(n_sections):
        base = SynthParams(
            shape_px=(size_px, size_px),
            markers=("dcx", "neun", "dapi", "brdu"),
            dcx_per_mm_sgz=float(rng.uniform(60, 300)),
            cluster_fraction=float(rng.uniform(0.2, 0.6)),
            dcx_neun_fraction=float(rng.uniform(0.1, 0.5)),
            seed=int(rng.integers(2**31)) + index,
        )
        params = sample_params(base, rng, families=families, split="train")
        section = make_section(params)
        markers = ["dcx"] if kind == "dcx" else ["neun", "dapi", "brdu"]
        for marker in markers:
            channel = params.markers.index(marker)
            samples.append(TrainingSample(image=section.image[channel], labels=section.labels[marker],
                                          pixel_size_um=params.pixel_size_um))
    return samples


class TrainingDataError(ValueError):
    """A training folder that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class LabelledSection:
    """One corrected section of a training folder.

    Attributes
    ----------
    name : str
        The section image's file name without its TIFF suffix.
    files : tuple of Path
        The section image, then its label images.
    markers : tuple of str
        Marker of each label image, in ``files[1:]`` order.
    samples : tuple of TrainingSample
        One per marker: that marker's channel with its labels.
    """

    name: str
    files: tuple[Path, ...]
    markers: tuple[str, ...]
    samples: tuple[TrainingSample, ...]


def read_labelled_sections(folder: str | PathLike[str], *, kind: str, pixel_size_um: float | None = None,
                           channels: Mapping[str, str | int] | None = None) -> list[LabelledSection]:
    """Read a folder of section images with corrected label images.

    For each section image ``NAME.tif`` (or ``NAME.ome.tif``) the folder holds
    ``NAME_labels_MARKER.tif``: one integer label per object, 0 for background,
    at the image's Y, X shape (what ``dcxcount count`` writes as
    ``sections/<key>/labels_MARKER.tif``). Images without label files are not
    training data and are ignored.

    Parameters
    ----------
    folder : str or path-like
        The training folder (not searched recursively).
    kind : str
        "dcx" reads ``dcx`` labels; "nuclear" reads those of every nuclear
        marker (neun, dapi, brdu, edu) present.
    pixel_size_um : float, optional
        Pixel size replacing the images' own.
    channels : mapping, optional
        Marker to channel index or name, e.g. ``{"dcx": 0}``.

    Returns
    -------
    list of LabelledSection
        Sorted by name.

    Raises
    ------
    TrainingDataError
        If the folder holds no image with labels of this kind, a label file has
        no image, names an unknown marker or one the image has no channel for,
        differs from its image in shape, or holds anything but integer labels.
    SectionReadError
        If a section image cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"{folder}: no such training folder")
    wanted = {m for m in KNOWN_MARKERS if kind_of_marker(m) == kind}
    by_name: dict[str, dict[str, Path]] = {}
    other_markers: set[str] = set()
    for path in sorted(folder.iterdir()):
        match = _LABEL_FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        marker = match["marker"].lower()
        if marker not in KNOWN_MARKERS:
            raise TrainingDataError(
                f"{path}: unknown marker {marker!r} in the file name; label files are named "
                f"NAME_labels_MARKER.tif with MARKER one of {', '.join(KNOWN_MARKERS)}")
        if marker in wanted:
            by_name.setdefault(match["name"], {})[marker] = path
        else:
            other_markers.add(marker)
    if not by_name:
        found = (f"; it has label files for {', '.join(sorted(other_markers))} only (`kind="
                 f"{kind_of_marker(min(other_markers))}`?)" if other_markers else "")
        raise TrainingDataError(
            f"{folder}: no training pairs for `kind={kind}`: expected section images NAME.tif or "
            f"NAME.ome.tif with label images NAME_labels_MARKER.tif beside them (MARKER "
            f"{' or '.join(sorted(wanted))}){found}")
    return [_read_labelled_section(folder, name, by_name[name], pixel_size_um=pixel_size_um,
                                   channels=channels) for name in sorted(by_name)]


def _read_labelled_section(folder: Path, name: str, label_paths: Mapping[str, Path], *,
                           pixel_size_um: float | None,
                           channels: Mapping[str, str | int] | None) -> LabelledSection:
    candidates = [folder / f"{name}{suffix}" for suffix in _IMAGE_SUFFIXES]
    image_path = next((path for path in candidates if path.is_file()), None)
    first_label = next(iter(label_paths.values()))
    if image_path is None:
        raise TrainingDataError(
            f"{first_label}: no section image for these labels; expected {name}.tif or {name}.ome.tif "
            f"in {folder}")
    return labelled_section(image_path, label_paths, name=name, pixel_size_um=pixel_size_um, channels=channels)


def labelled_section(image_path: str | PathLike[str], label_paths: Mapping[str, Path], *, name: str,
                     pixel_size_um: float | None = None,
                     channels: Mapping[str, str | int] | None = None) -> LabelledSection:
    """One section image with its (corrected) label images as training pairs.

    Parameters
    ----------
    image_path : path
        The section image.
    label_paths : dict
        Marker -> label image file (the image's Y x X shape).
    name : str
        What the section is called in the model card and the validation split.
    pixel_size_um : float, optional
        Overrides the file's pixel size.
    channels : dict, optional
        Marker -> channel index or name overrides.

    Raises
    ------
    TrainingDataError
        A marker's channel is missing or a label image does not fit.
    """
    image_path = Path(image_path)
    section = read_section(image_path, pixel_size_um=pixel_size_um)
    markers = tuple(label_paths)
    try:
        indices = match_channels(section, markers=markers, overrides=channels)
    except SectionReadError as error:
        raise TrainingDataError(
            f"{', '.join(map(str, label_paths.values()))}: labels for a marker whose channel the section "
            f"image lacks. {error}") from error
    # Copies, so that the section's other channels are freed once read.
    samples = tuple(
        TrainingSample(image=section.data[indices[marker]].copy(),
                       labels=_read_labels(label_paths[marker], image_path=image_path,
                                           shape=section.data.shape[1:]),
                       pixel_size_um=section.pixel_size_um)
        for marker in markers)
    return LabelledSection(name=name, files=(image_path, *label_paths.values()), markers=markers,
                           samples=samples)


def _read_labels(path: Path, *, image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        labels = np.squeeze(tifffile.imread(path))
    except Exception as error:  # tifffile raises many types on files that are not TIFFs
        raise TrainingDataError(f"{path}: cannot read as TIFF ({type(error).__name__}: {error})") from error
    if labels.ndim != 2:
        raise TrainingDataError(f"{path}: expected one 2-D label image, got an array of shape {labels.shape}")
    if labels.shape != tuple(shape):
        raise TrainingDataError(
            f"{path}: labels are {labels.shape[0]} x {labels.shape[1]} px but the section image "
            f"{image_path.name} is {shape[0]} x {shape[1]} px")
    if labels.dtype == bool:
        raise TrainingDataError(
            f"{path}: a binary mask cannot separate touching objects; save a label image instead "
            "(one whole-number id per object, 0 for background)")
    # Whole-valued floats are accepted because some tools save label images as float32.
    fractional = labels[np.mod(labels, 1) != 0] if labels.dtype.kind == "f" else labels[:0]
    if labels.dtype.kind not in "iuf" or fractional.size:
        example = f" such as {fractional.flat[0]:g}" if fractional.size else ""
        raise TrainingDataError(
            f"{path}: labels must be whole numbers (one id per object, 0 for background), "
            f"got {labels.dtype} values{example}")
    if labels.min() < 0 or labels.max() > np.iinfo(np.int32).max:
        raise TrainingDataError(f"{path}: label ids must lie in 0 to 2^31 - 1")
    return labels.astype(np.int32)


def split_sections(sections: Sequence[LabelledSection], *, val_fraction: float,
                   seed: int) -> tuple[list[LabelledSection], list[LabelledSection]]:
    """Seeded split into training and validation sections, at least one of each.

    Whole sections are held out, never crops of a training section, so the
    validation score measures how the model does on sections it has not seen.
    The split depends only on the section names, ``val_fraction`` and ``seed``.

    Returns
    -------
    train, validation : list of LabelledSection
        Both sorted by name.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"the validation fraction must lie between 0 and 1, got {val_fraction}")
    if len(sections) < 2:
        names = ", ".join(s.name for s in sections) or "none"
        raise TrainingDataError(
            f"fine-tuning needs at least 2 labelled sections, one to train on and one to validate on; "
            f"found {len(sections)} ({names})")
    n_val = min(max(1, round(val_fraction * len(sections))), len(sections) - 1)
    ordered = sorted(sections, key=lambda s: s.name)
    held_out = set(np.random.default_rng(seed).permutation(len(ordered))[:n_val].tolist())
    train = [s for i, s in enumerate(ordered) if i not in held_out]
    validation = [s for i, s in enumerate(ordered) if i in held_out]
    return train, validation


def score_model(model: SpecialistModel, sections: Sequence[LabelledSection], *,
                max_distance_um: float = 5.0) -> dict:
    """Detection F1 and AP at IoU 0.5 of ``model`` on labelled sections.

    Objects match one to one when their centroids lie within
    ``max_distance_um`` (:func:`dcxcount.metrics.detection_scores`); counts are
    pooled over sections, AP (:func:`dcxcount.metrics.average_precision`) is
    the mean over label images.

    Returns
    -------
    dict
        ``f1``, ``precision``, ``recall``, ``ap50``, ``n_true``, ``n_found``
        over all markers, and the same per marker under ``by_marker``.
    """
    detections: dict[str, Detection] = {}
    aps: dict[str, list[float]] = {}
    for section in sections:
        for marker, sample in zip(section.markers, section.samples):
            masks = model.segment(sample.image, pixel_size_um=sample.pixel_size_um)
            detection = detection_scores(masks, sample.labels, pixel_size_um=sample.pixel_size_um,
                                         max_distance_um=max_distance_um)
            detections[marker] = detections.get(marker, Detection(0, 0, 0)) + detection
            aps.setdefault(marker, []).append(average_precision(masks, sample.labels))
    scores = _scores(sum(detections.values(), Detection(0, 0, 0)), [a for v in aps.values() for a in v])
    scores["by_marker"] = {marker: _scores(detections[marker], aps[marker]) for marker in detections}
    return scores


def _scores(detection: Detection, aps: Sequence[float]) -> dict:
    # NaN (nothing to find and nothing found) becomes null in the JSON card.
    def number(value: float) -> float | None:
        return round(float(value), 4) if math.isfinite(value) else None

    return {"f1": number(detection.f1), "precision": number(detection.precision),
            "recall": number(detection.recall),
            "ap50": number(float(np.nanmean(aps))) if np.isfinite(aps).any() else None,
            "n_true": detection.true_positives + detection.false_negatives,
            "n_found": detection.true_positives + detection.false_positives}


