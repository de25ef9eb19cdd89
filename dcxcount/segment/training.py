"""Training the specialist flow network.

Training pairs are images with label images of the objects to find. Flow
targets come from cellpose (:func:`cellpose.dynamics.labels_to_flows`), so
what the network learns is exactly what cellpose's mask reconstruction undoes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from cellpose import dynamics

from .network import FlowUNet
from .rescale import nearest_resize, normalize_image, resize_image
from .specialist import SpecialistModel

__all__ = ["TrainingSample", "prepare_sample", "train_specialist", "synthetic_samples", "ProgressCallback"]

ProgressCallback = Callable[[int, int, str], None]
"""Called as ``progress(done, total, message)``."""


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
                     progress: ProgressCallback | None = None) -> SpecialistModel:
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
    progress : callable, optional
        ``progress(step, n_steps, message)`` after each step.

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
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate,
                                                   total_steps=n_steps, pct_start=0.1)
    recent: list[float] = []
    for step in range(1, n_steps + 1):
        images, targets = _batch(prepared, batch_size=batch_size, crop_px=crop_px, rng=rng)
        loss = _loss(net(images.to(memory_format=torch.channels_last)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        if progress is not None:
            progress(step, n_steps, f"loss {np.mean(recent):.3f}")
    net.eval()
    return SpecialistModel(net=net, kind=kind, pixel_size_um=model_pixel_size_um,
                           info={"final_loss": float(np.mean(recent))})


def synthetic_samples(*, kind: str, n_sections: int, size_px: int = 512, seed: int = 0) -> list[TrainingSample]:
    """Training samples from synthetic sections that vary what real images vary.

    Each section draws its pixel size, signal-to-noise, haze, illumination
    gradient, blur and cell density at random, so the model is not fitted to
    one microscope. ``kind`` "dcx" gives the DCX channel with soma labels;
    "nuclear" gives the NeuN, DAPI and BrdU channels with their nuclei.
    """
    from ..synth import SynthParams, make_section

    rng = np.random.default_rng(seed)
    samples = []
    for index in range(n_sections):
        params = SynthParams(
            shape_px=(size_px, size_px),
            pixel_size_um=float(rng.uniform(0.45, 0.8)),
            markers=("dcx", "neun", "dapi", "brdu"),
            snr=float(rng.uniform(3.0, 15.0)),
            haze=float(rng.uniform(0.0, 0.6)),
            gradient=float(rng.uniform(0.0, 0.5)),
            psf_sigma_um=float(rng.uniform(0.3, 0.8)),
            background=float(rng.uniform(50, 400)),
            dcx_per_mm_sgz=float(rng.uniform(100, 300)),
            cluster_fraction=float(rng.uniform(0.2, 0.6)),
            dcx_neun_fraction=float(rng.uniform(0.1, 0.5)),
            seed=int(rng.integers(2**31)) + index,
        )
        section = make_section(params)
        markers = ["dcx"] if kind == "dcx" else ["neun", "dapi", "brdu"]
        for marker in markers:
            channel = params.markers.index(marker)
            samples.append(TrainingSample(image=section.image[channel], labels=section.labels[marker],
                                          pixel_size_um=params.pixel_size_um))
    return samples
