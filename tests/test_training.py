"""Fine-tuning on a folder of corrected sections: ``dcxcount train --from MODEL --data DIR``."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import tifffile

from dcxcount.cli import main
from dcxcount.segment import bundled_model_path, load_specialist
from dcxcount.synth import SynthParams, make_section, write_section

from .splits import FINE_TUNE

# The shifted domain: diffuse DCX neuropil in the GCL and ML at 0.8 of a soma's
# brightness (the generator's default is 0.05 and the bundled model never saw
# more), as in a thick or strongly stained section. The bundled DCX model takes
# patches of it for somata: F1 0.43 on the validation sections below.
NEUROPIL_DOMAIN = SynthParams(shape_px=(512, 512), pixel_size_um=0.65, dcx_per_mm_sgz=200.0, dcx_neuropil=0.8)


# Training from scratch at a tiny size (test_plain_train_from_scratch_...).
SCRATCH_STEPS = 80


def _write_labelled(folder, params: SynthParams, seeds, *, label_markers=("dcx",)) -> None:
    """Sections as ``s<seed>.ome.tif`` with their true labels as ``s<seed>_labels_<marker>.tif``."""
    for seed in seeds:
        section = make_section(dataclasses.replace(params, seed=seed))
        write_section(section, folder / f"s{seed}.ome.tif", truth=False)
        for marker in label_markers:
            tifffile.imwrite(folder / f"s{seed}_labels_{marker}.tif", section.labels[marker].astype(np.int32),
                             compression="zlib")


def _write_image(path, *, channels=("DCX", "NeuN"), shape=(64, 64)) -> None:
    tifffile.imwrite(path, np.zeros((len(channels), *shape), np.uint16), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": list(channels)},
                               "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})


def _labels(shape=(64, 64), dtype=np.int32) -> np.ndarray:
    labels = np.zeros(shape, dtype)
    labels[10:20, 10:20] = 1
    labels[30:40, 30:42] = 2
    return labels


@pytest.mark.slow
def test_fine_tuning_on_a_shifted_domain_raises_validation_f1(tmp_path):
    data = tmp_path / "corrected"
    data.mkdir()
    _write_labelled(data, NEUROPIL_DOMAIN, FINE_TUNE)
    out = tmp_path / "lab_dcx.safetensors"
    bundled = bundled_model_path("dcx")
    # --kind is left out: it comes from the base model. Few steps of 4 crops keep the test short.
    code = main(["train", "--from", str(bundled), "--data", str(data), "--out", str(out),
                 "--val-fraction", "0.25", "--steps", "80", "--batch-size", "4"])
    assert code == 0
    card = json.loads(out.with_suffix(".json").read_text())
    before, after = card["validation"]["before"], card["validation"]["after"]
    # Measured (`python benchmarks/frozen_figures.py finetune`, the models of issue 10): training
    # seed 0, as here, F1 0.425 -> 0.903, AP@0.5 0.266 -> 0.778; seeds 1 and 2 (other validation
    # sections) 0.505 -> 0.937 and 0.480 -> 0.893, AP 0.337 -> 0.862 and 0.316 -> 0.807. Bars: twice
    # the SD over the three seeds (F1 before 0.04, after 0.023; AP after 0.043) from seed 0's figure.
    assert before["f1"] < 0.51, "the domain is not shifted enough to show anything"
    assert after["f1"] >= 0.86
    assert after["ap50"] >= 0.69
    assert (card["n_train_sections"], card["n_val_sections"]) == (6, 2)
    assert not set(card["train_sections"]) & set(card["val_sections"])
    assert card["base_model"]["sha256"] == hashlib.sha256(bundled.read_bytes()).hexdigest()
    files = {entry["file"]: entry["sha256"] for entry in card["training_data"]["files"]}
    assert set(files) == {path.name for path in data.iterdir()}
    first = f"s{FINE_TUNE[0]}.ome.tif"
    assert files[first] == hashlib.sha256((data / first).read_bytes()).hexdigest()
    assert (card["steps"], card["seed"], card["learning_rate"]) == (80, 0, 5e-4)
    assert "--data" in card["command"] and card["train_seconds"] > 0
    model = load_specialist(out)
    assert (model.kind, model.pixel_size_um) == ("dcx", 0.6)


def test_nuclear_kind_learns_every_nuclear_marker_present(tmp_path, capsys):
    params = SynthParams(shape_px=(192, 192), pixel_size_um=0.65)
    _write_labelled(tmp_path, params, range(900, 903), label_markers=("dcx", "neun", "dapi"))
    out = tmp_path / "nuclear.safetensors"
    code = main(["train", "--from", "specialist", "--kind", "nuclear", "--data", str(tmp_path), "--out", str(out),
                 "--steps", "2", "--batch-size", "2"])
    assert code == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert set(card["validation"]["after"]["by_marker"]) == {"neun", "dapi"}
    assert not any("labels_dcx" in entry["file"] for entry in card["training_data"]["files"])
    assert card["base_model"]["path"] == str(bundled_model_path("nuclear"))
    assert (card["n_train_sections"], card["n_val_sections"]) == (2, 1)
    assert "validation neun: F1" in capsys.readouterr().out


def _only_nuclear_labels(folder) -> None:
    _write_image(folder / "a.tif")
    tifffile.imwrite(folder / "a_labels_neun.tif", _labels())


def _label_without_image(folder) -> None:
    _write_image(folder / "a.tif")
    tifffile.imwrite(folder / "a_labels_dcx.tif", _labels())
    tifffile.imwrite(folder / "b_labels_dcx.tif", _labels())


def _shape_mismatch(folder) -> None:
    _write_image(folder / "a.ome.tif")
    tifffile.imwrite(folder / "a_labels_dcx.tif", _labels((64, 60)))


def _marker_channel_absent(folder) -> None:
    _write_image(folder / "a.tif", channels=("NeuN", "DAPI"))
    tifffile.imwrite(folder / "a_labels_dcx.tif", _labels())


def _float_labels(folder) -> None:
    _write_image(folder / "a.tif")
    tifffile.imwrite(folder / "a_labels_dcx.tif", _labels(dtype=np.float32) * 0.5)


def _binary_mask(folder) -> None:
    _write_image(folder / "a.tif")
    tifffile.imwrite(folder / "a_labels_dcx.tif", _labels() > 0)


def _unknown_marker(folder) -> None:
    _write_image(folder / "a.tif")
    tifffile.imwrite(folder / "a_labels_gfap.tif", _labels())


def _one_section(folder) -> None:
    _write_image(folder / "a.tif")
    tifffile.imwrite(folder / "a_labels_dcx.tif", _labels())


@pytest.mark.parametrize(("make", "expected"), [
    (lambda folder: None, ["no training pairs for --kind dcx", "NAME_labels_MARKER.tif"]),
    (_only_nuclear_labels, ["no training pairs", "neun only", "--kind nuclear"]),
    (_label_without_image, ["b_labels_dcx.tif", "no section image", "b.tif"]),
    (_shape_mismatch, ["a_labels_dcx.tif", "64 x 60 px", "a.ome.tif is 64 x 64 px"]),
    (_marker_channel_absent, ["a_labels_dcx.tif", "no channel for marker 'dcx'", "--channel dcx="]),
    (_float_labels, ["a_labels_dcx.tif", "whole numbers", "float32 values such as 0.5"]),
    (_binary_mask, ["a_labels_dcx.tif", "binary mask"]),
    (_unknown_marker, ["a_labels_gfap.tif", "unknown marker 'gfap'"]),
    (_one_section, ["at least 2 labelled sections", "found 1 (a)"]),
], ids=["empty", "other-kind", "no-image", "shape", "no-channel", "float", "mask", "unknown-marker", "one-section"])
def test_unusable_training_folders_are_refused_naming_the_file(tmp_path, capsys, make, expected):
    make(tmp_path)
    out = tmp_path / "new.safetensors"
    code = main(["train", "--from", "specialist", "--kind", "dcx", "--data", str(tmp_path), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2
    for text in expected:
        assert text in error
    assert not out.exists()


def test_data_without_a_base_model_is_refused(tmp_path, capsys):
    code = main(["train", "--kind", "dcx", "--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors")])
    assert code == 2
    assert "--from specialist" in capsys.readouterr().err


@pytest.mark.slow
def test_plain_train_from_scratch_writes_a_model_that_loads_and_segments(tmp_path, monkeypatch):
    """``dcxcount train --kind nuclear --out M`` (no --from, no --data): the path that built the bundled
    weights, at a tiny size: the model file, its card, a falling loss, and a model that loads and segments."""
    import dcxcount.cli as cli
    from dcxcount.metrics import detection_scores

    losses = []

    def recording(description):
        def progress(fraction, message):
            losses.append(float(message.split()[-1]))
        return progress

    monkeypatch.setattr(cli, "_progress_bar", recording)
    out = tmp_path / "scratch.safetensors"
    assert main(["train", "--kind", "nuclear", "--out", str(out), "--sections", "2", "--size-px", "256",
                 "--steps", str(SCRATCH_STEPS), "--batch-size", "4", "--families", "none", "--threads", "1"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["base_model"] is None and card["steps"] == SCRATCH_STEPS and card["seed"] == 0
    assert card["learning_rate"] == 2e-3  # training from scratch: 4x fine-tuning's
    assert card["command"].startswith("dcxcount train --out") and "--sections 2 --size-px 256" in card["command"]
    assert "2 synthetic sections of 256^2 px" in card["training_data"] and "none (plain look)" in card["training_data"]
    assert card["train_seconds"] > 0 and np.isfinite(card["final_loss"])
    assert len(losses) == SCRATCH_STEPS
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses

    model = load_specialist(out)
    assert (model.kind, model.pixel_size_um) == ("nuclear", 0.6)
    section = make_section(SynthParams(shape_px=(256, 256), pixel_size_um=0.65, markers=("dcx", "neun"),
                                       seed=70_441))
    masks = model.segment(section.image[1], pixel_size_um=0.65)
    assert masks.shape == (256, 256) and masks.dtype.kind in "iu"
    score = detection_scores(masks, section.labels["neun"], pixel_size_um=0.65)
    print(f"from scratch, {SCRATCH_STEPS} steps: NeuN F1 {score.f1:.3f}")
    assert score.f1 >= 0.95  # measured 0.991: nuclei of the plain look are learnt in 80 steps
