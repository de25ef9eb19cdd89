"""Segmentation: flows round trip, the specialist model file, engines, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cellpose import dynamics
from skimage.draw import ellipse

from dcxcount.metrics import average_precision, detection_scores
from dcxcount.segment import ModelNotAvailableError, load_engine, load_specialist, save_specialist
from dcxcount.segment.network import FlowUNet
from dcxcount.segment.rescale import nearest_resize, normalize_image, resize_image
from dcxcount.segment.specialist import SpecialistModel, masks_from_flows
from dcxcount.segment.training import TrainingSample, train_specialist


def _blobs(shape=(160, 160), spacing=20, radius=(7, 5)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    label = 1
    for y in range(spacing // 2, shape[0] - radius[0], spacing):
        for x in range(spacing // 2, shape[1] - radius[0], spacing):
            rr, cc = ellipse(y, x, *radius, shape=shape)
            labels[rr, cc] = label
            label += 1
    return labels


@pytest.mark.parametrize("flow_threshold", [0.0, 0.4])
def test_cellpose_mask_reconstruction_inverts_the_training_targets(flow_threshold):
    # The network is trained on 5x cellpose's unit flows; fed those, cellpose's
    # own dynamics must give back every object, with or without its flow check.
    labels = _blobs()
    flows = dynamics.labels_to_flows([labels])[0]
    predicted = np.stack([5 * flows[2], 5 * flows[3], np.where(flows[0] > 0, 6.0, -6.0)]).astype(np.float32)
    masks = masks_from_flows(predicted, min_area_px=10, diameter_px=12, flow_threshold=flow_threshold)
    assert masks.max() == labels.max()
    assert average_precision(masks, labels, iou=0.5) == pytest.approx(1.0)


def test_resampling_helpers():
    image = np.random.default_rng(0).normal(100, 10, (100, 80)).astype(np.float32)
    normalized = normalize_image(image)
    assert np.percentile(normalized, 1) == pytest.approx(0, abs=0.05)
    assert np.percentile(normalized, 99.8) == pytest.approx(1, abs=0.05)
    assert resize_image(image, scale=1.3).shape == (130, 104)
    labels = _blobs((40, 40), spacing=20, radius=(5, 5))
    up = nearest_resize(labels, shape=(80, 80))
    assert set(np.unique(up)) == set(np.unique(labels))
    assert np.array_equal(nearest_resize(up, shape=(40, 40)), labels)


def test_specialist_file_round_trip_is_exact_and_pickle_free(tmp_path):
    torch.manual_seed(0)
    model = SpecialistModel(net=FlowUNet(widths=(4, 8)).eval(), kind="nuclear", pixel_size_um=0.6,
                            info={"command": "test"})
    path = save_specialist(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    # A safetensors file: an 8-byte little-endian header length, then that much JSON. A pickle
    # starts with b"\x80" (protocol 2+), torch.save's archive with b"PK" (zip).
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])
    assert header["__metadata__"] and all("dtype" in v for k, v in header.items() if k != "__metadata__")
    assert not data.startswith((b"\x80", b"PK"))
    loaded = load_specialist(path)
    assert (loaded.kind, loaded.pixel_size_um, loaded.net.widths) == ("nuclear", 0.6, (4, 8))
    assert loaded.info["command"] == "test"
    image = np.random.default_rng(1).random((64, 72)).astype(np.float32)
    assert np.allclose(model.predict(image, pixel_size_um=0.6), loaded.predict(image, pixel_size_um=0.6),
                       atol=1e-5)


def test_prediction_is_the_same_tiled_and_whole():
    torch.manual_seed(0)
    model = SpecialistModel(net=FlowUNet(widths=(4, 8, 16)).eval(), kind="dcx", pixel_size_um=0.5)
    image = np.random.default_rng(2).random((150, 130)).astype(np.float32)
    whole = model.predict(image, pixel_size_um=0.5, tile_px=256, overlap_px=32)
    tiled = model.predict(image, pixel_size_um=0.5, tile_px=96, overlap_px=24)
    # The receptive field of this tiny net is < 24 px, so discarded overlaps hide every seam.
    assert np.allclose(whole, tiled, atol=1e-4)


def test_folding_batch_norms_does_not_change_the_prediction():
    torch.manual_seed(0)
    net = FlowUNet(widths=(4, 8, 16))
    for module in net.modules():  # statistics far from the identity a new net has
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model = SpecialistModel(net=net.eval(), kind="dcx", pixel_size_um=0.5)
    image = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    predicted = model.predict(image, pixel_size_um=0.5)
    with torch.inference_mode():
        unfolded = net(torch.from_numpy(normalize_image(image).astype(np.float32))[None, None])[0].numpy()
    assert np.allclose(predicted, unfolded, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.modules())  # the trainable net is untouched


def test_not_a_specialist_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a dcxcount specialist model"):
        load_specialist(path)


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("cellpose was asked to load a model")


def test_cpsam_without_weights_fails_fast_and_says_how_to_get_them(tmp_path, monkeypatch):
    from cellpose import models

    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    load_engine.cache_clear()
    # Fast because nothing is downloaded or loaded; how fast is a benchmark figure, not a test.
    monkeypatch.setattr(models, "CellposeModel", _must_not_be_called)
    with pytest.raises(ModelNotAvailableError, match="Cellpose-SAM weights are not on this machine") as error:
        load_engine("cpsam", kind="nuclear")
    message = str(error.value)
    assert str(tmp_path) in message and "CELLPOSE_LOCAL_MODELS_PATH" in message and "`model=" in message
    assert "--model" not in message  # the command line adds its option
    assert not any(tmp_path.iterdir())  # nothing was downloaded or created


def test_unknown_model_name_is_refused():
    with pytest.raises(ModelNotAvailableError, match="neither 'specialist', 'cpsam' nor an existing model file"):
        load_engine("no/such/model.safetensors", kind="dcx")


def test_training_learns_blobs():
    rng = np.random.default_rng(0)
    samples = []
    for _seed in range(2):
        labels = _blobs((192, 192), spacing=24)
        image = (labels > 0) * 100.0 + rng.normal(20, 5, labels.shape)
        samples.append(TrainingSample(image=image, labels=labels, pixel_size_um=0.6))
    losses = []
    model = train_specialist(samples, kind="nuclear", widths=(8, 16, 32), n_steps=150, batch_size=4, learning_rate=1e-2,
                             crop_px=96, seed=0, progress=lambda fraction, message: losses.append(message))
    assert len(losses) == 150
    masks = model.segment(samples[0].image, pixel_size_um=0.6)
    score = detection_scores(masks, samples[0].labels, pixel_size_um=0.6, max_distance_um=3)
    assert score.f1 > 0.9
