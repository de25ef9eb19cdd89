"""Shared fixtures: the sample section, its ground truth and one count of it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
REPO_SAMPLE = REPO / "sample_images" / "saline-1_s01.ome.tif"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    from napari_dcxcount._sample_data import SAMPLE_PATH

    return SAMPLE_PATH


@pytest.fixture(scope="session")
def repo_sample() -> Path:
    """sample_images/saline-1_s01.ome.tif of the repository (skips where only the plugin is here)."""
    if not REPO_SAMPLE.exists():
        pytest.skip("the repository's sample_images/ is not here (installed plugin only)")
    return REPO_SAMPLE


@pytest.fixture(scope="session")
def truth(repo_sample):
    """The sample's ground truth, from the truth folder beside it in sample_images/."""
    from dcxcount.synth import read_truth

    return read_truth(repo_sample)


@pytest.fixture(scope="session")
def counted(sample_path):
    """The sample section counted headless through the widget's model: (request, result)."""
    from napari_dcxcount._model import CountRequest
    from napari_dcxcount._reader import read_section_layers

    layers = read_section_layers(path=sample_path)
    request = CountRequest(images={kw["metadata"]["marker"]: data for data, kw, _ in layers},
                           pixel_size_um=layers[0][1]["scale"][-1], source=str(sample_path))
    return request, request.run()


# A small counted study for the review, fine-tune and agreement tests: 2 groups x 1 animal x
# 2 sections of 512 px at 1 um, DCX and NeuN (about 20 DCX+ cells a section; 15 s to count).
STUDY_SEED = 70_901


@pytest.fixture(scope="session")
def counted_study(tmp_path_factory) -> Path:
    """``dcxcount count`` run on a small synthetic study; the results folder (copy it before changing it)."""
    from dcxcount.cli import main
    from dcxcount.synth import SynthParams, make_study

    folder = tmp_path_factory.mktemp("study")
    sheet = make_study(folder / "images", groups=("saline", "ketamine"), animals_per_group=1, sections_per_animal=2,
                       base=SynthParams(shape_px=(512, 512), pixel_size_um=1.0, markers=("dcx", "neun")),
                       seed=STUDY_SEED)
    out = folder / "out"
    assert main(["count", str(sheet), "--out", str(out), "--hemispheres", "2"]) == 0
    return out


@pytest.fixture
def study_copy(counted_study, tmp_path) -> Path:
    """A copy of the counted study that a test may correct (the images stay where they are)."""
    import shutil

    return Path(shutil.copytree(counted_study, tmp_path / "out"))
