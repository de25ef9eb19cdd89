"""The sample section: the shipped copy is sample_images' file, and napari opens it from its menu."""

from __future__ import annotations


def test_shipped_sample_is_the_repositorys(sample_path, repo_sample):
    assert sample_path.read_bytes() == repo_sample.read_bytes()


def test_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dcxcount", "sample_section")
    assert [layer.name for layer in viewer.layers] == ["DCX", "NeuN"]
    assert viewer.layers["DCX"].data.shape == (768, 768)
