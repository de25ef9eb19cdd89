"""The sample section: the shipped copy is sample_images' file, and napari opens it from its menu."""

from __future__ import annotations

import pytest

from conftest import REPO_SAMPLE


def test_shipped_sample_is_the_repositorys(sample_path):
    if not REPO_SAMPLE.exists():
        pytest.skip("the repository's sample_images/ is not here")
    assert sample_path.read_bytes() == REPO_SAMPLE.read_bytes()


def test_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dcxcount", "sample_section")
    assert [layer.name for layer in viewer.layers] == ["DCX", "NeuN"]
    assert viewer.layers["DCX"].data.shape == (768, 768)
