"""The cellpose engine's success path: a cellpose 4 model file through dcxcount's checks,
cellpose's own loading and ``CellposeModel.eval``, to masks and a counted section.

Cellpose-SAM's weights (1.2 GB) are not on the test machine, and a ViT-L with random
weights finds nothing. So the test writes a small cellpose 4 model file (tensors only:
cellpose's ``W2`` readout and an ``encoder.`` weight, as cellpose 4 saves them) and gives
cellpose, in place of its CPSAM class, a small fixed network of the same interface
(``vit.BaseModel``: ``load_model`` reading the file weights-only, ``forward`` returning
flows and cell probability): the cell probability is the image's brightness, the flows the
gradient of the image smoothed at the object size, which points to each bright blob's
centre. Everything else is the real code: dcxcount's file check and weights-only loads,
``CellposeModel``'s construction and ``eval`` (normalisation, rescaling by the diameter
dcxcount computes from the pixel size, tiling, flow following, mask filtering) and
dcxcount's pipeline around it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import torch.nn.functional as F
from skimage.draw import disk

from dcxcount.cli import main
from dcxcount.metrics import detection_scores
from dcxcount.segment import load_engine
from dcxcount.segment.engines import CellposeEngine


class FixedFlowNet(__import__("cellpose.vit", fromlist=["BaseModel"]).BaseModel):
    """Cellpose's network interface, with flows from the smoothed image instead of a ViT."""

    def __init__(self, *args, dtype=torch.float32, **kwargs):
        super().__init__(dtype=dtype)
        self.encoder = torch.nn.Module()
        self.encoder.gain = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.W2 = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.loaded_from = None

    def load_model(self, path, device, strict=False):
        super().load_model(path, device, strict=True)  # cellpose's own loading, every key must fit
        self.loaded_from = str(path)

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, x):
        image = x[:, :1].float()
        # Cellpose rescales objects to 30 px; a Gaussian of sigma 6 px blurs each into one hill.
        radius = 18
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-t**2 / (2 * 6.0**2))
        g = g / g.sum()
        smooth = F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
        smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))
        dy = torch.zeros_like(smooth)
        dx = torch.zeros_like(smooth)
        dy[:, :, 1:-1] = (smooth[:, :, 2:] - smooth[:, :, :-2]) / 2
        dx[:, :, :, 1:-1] = (smooth[:, :, :, 2:] - smooth[:, :, :, :-2]) / 2
        norm = torch.sqrt(dy**2 + dx**2) + 1e-6
        gain = 1.0 + self.encoder.gain  # the file's weight takes part (0 in the test's file)
        cellprob = gain * 12.0 * (image - 0.5)
        out = torch.cat([5 * dy / norm, 5 * dx / norm, cellprob], dim=1)
        return out, torch.zeros((x.shape[0], 256))


def _blobs(shape=(400, 400), pixel_size_um=0.65, diameter_um=9.0, spacing_um=25.0):
    """Bright disks of ``diameter_um`` on a dim background, and their labels."""
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, np.int32)
    step, radius = spacing_um / pixel_size_um, diameter_um / pixel_size_um / 2
    label = 1
    for y in np.arange(step / 2, shape[0] - radius, step):
        for x in np.arange(step / 2, shape[1] - radius, step):
            rr, cc = disk((y, x), radius, shape=shape)
            labels[rr, cc] = label
            label += 1
    image = np.where(labels > 0, 1000.0, 100.0) + rng.normal(0, 20, shape)
    return image.astype(np.float32), labels


@pytest.fixture()
def cellpose_file(tmp_path, monkeypatch):
    """A cellpose 4 model file, and cellpose made to build the fixed network for it."""
    from cellpose import models

    path = tmp_path / "tiny_cp4"
    torch.save(FixedFlowNet().state_dict(), path)  # tensors only, as cellpose saves
    monkeypatch.setattr(models, "CPSAM", FixedFlowNet)
    load_engine.cache_clear()
    from dcxcount.segment import engines

    engines._cellpose_model.cache_clear()
    yield path
    load_engine.cache_clear()
    engines._cellpose_model.cache_clear()


def test_a_cellpose_model_file_segments_through_cellpose(cellpose_file):
    engine = load_engine(str(cellpose_file), kind="nuclear")
    assert isinstance(engine, CellposeEngine)
    image, truth = _blobs()
    masks = engine.segment(image, pixel_size_um=0.65)
    assert masks.dtype == np.int32 and masks.shape == image.shape
    score = detection_scores(masks, truth, pixel_size_um=0.65, max_distance_um=3.0)
    assert score.recall == 1.0 and score.precision == 1.0, score
    # Each mask is its blob: cellpose was told the nuclei's 9 um as a diameter in pixels.
    sizes = np.bincount(masks.ravel())[1:]
    true_size = np.bincount(truth.ravel())[1:].mean()
    assert np.all(np.abs(sizes / true_size - 1) < 0.35), (sizes.min(), sizes.max(), true_size)


def test_the_diameter_follows_the_pixel_size(cellpose_file, monkeypatch):
    from cellpose import models

    seen = []
    original = models.CellposeModel.eval

    def spy(self, x, **kwargs):
        seen.append(kwargs["diameter"])
        return original(self, x, **kwargs)

    monkeypatch.setattr(models.CellposeModel, "eval", spy)
    for kind, pixel_size_um, image in (("nuclear", 0.65, _blobs()[0]),
                                       ("dcx", 0.5, _blobs(pixel_size_um=0.5, diameter_um=10)[0])):
        load_engine(str(cellpose_file), kind=kind).segment(image, pixel_size_um=pixel_size_um)
    assert seen == [pytest.approx(9 / 0.65), pytest.approx(10 / 0.5)]


def test_a_cellpose_model_counts_a_marker_end_to_end(cellpose_file, tmp_path):
    """``dcxcount count --model dapi=FILE``: the DAPI nuclei come from the cellpose model."""
    image, truth = _blobs((512, 512))
    from dcxcount.synth import SynthParams, make_section

    section = make_section(SynthParams(shape_px=(512, 512), pixel_size_um=0.65, markers=("dcx", "neun", "dapi"),
                                       seed=70_421))
    data = section.image.copy()
    data[2] = np.clip(image, 0, 65535).astype(data.dtype)  # DAPI: the blobs, so the count is known
    tifffile.imwrite(tmp_path / "s.ome.tif", data, ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["DCX", "NeuN", "DAPI"]},
                               "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
    pd.DataFrame([{"path": "s.ome.tif", "animal": "m1"}]).to_csv(tmp_path / "sheet.csv", index=False)
    out = tmp_path / "out"
    assert main(["count", str(tmp_path / "sheet.csv"), "--out", str(out), "--model", f"dapi={cellpose_file}"]) == 0
    dapi = tifffile.imread(out / "sections" / "m1_s1" / "labels_dapi.tif")
    score = detection_scores(dapi, truth, pixel_size_um=0.65, max_distance_um=3.0)
    assert score.f1 == 1.0, score
    cells = pd.read_csv(out / "cells.csv")
    assert (cells["marker"] == "dapi").sum() == truth.max()
