"""Whole-section mosaics: lazy reading, finding the DG, seam-safe tiles (dcxcount.mosaic)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage import measure

from dcxcount.io import Section
from dcxcount.mosaic import (
    choose_level,
    count_region,
    find_dentate_gyri,
    is_mosaic,
    open_mosaic,
    read_downsampled,
    region_from_outline,
    segment_tiled,
    tile_grid,
    write_mosaic,
)
from dcxcount.pipeline import count_section
from dcxcount.segment import load_engine
from dcxcount.synth import SynthParams, make_section
from dcxcount.synth_mosaic import MosaicScene, place_sections

zarr = pytest.importorskip("zarr")


class ThresholdEngine:
    """Connected components of bright pixels: a segmenter whose answer on a window is exactly knowable."""

    def segment(self, image: np.ndarray, *, pixel_size_um: float) -> np.ndarray:
        return measure.label(image > 0.5).astype(np.int32)


def _seam_centres(size: int, tile: int, spacing: int, shift: float) -> list[tuple[float, float]]:
    """Points on every seam (at ``shift`` from it) every ``spacing`` px, every seam crossing (a tile corner) included."""
    seams = [float(s) + shift for s in range(tile, size, tile)]
    along = [float(a) for a in range(spacing, size - spacing // 2, spacing) if a % tile]  # crossings: below
    points = {(s, a) for s in seams for a in along} | {(a, s) for s in seams for a in along}
    points |= {(sy, sx) for sy in seams for sx in seams}  # the corners where four tiles meet
    return sorted(points)


def _discs(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    truth = np.zeros(shape, np.int32)
    for label, (cy, cx) in enumerate(centres, 1):
        truth[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = label
    return truth


def _pairs(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(found label, truth label, overlap px) for every overlapping pair."""
    both = (found > 0) & (truth > 0)
    pairs, counts = np.unique(np.stack([found[both], truth[both]]), axis=1, return_counts=True)
    return np.vstack([pairs, counts]).T


def test_tile_cores_partition_the_image():
    tiles = tile_grid((1000, 700), tile_px=256, overlap_px=40)
    owner = np.zeros((1000, 700), int)
    for tile in tiles:
        y0, y1, x0, x1 = tile.core
        owner[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = tile.window
        assert wy0 <= y0 and wy1 >= y1 and wx0 <= x0 and wx1 >= x1
        assert (y0 - wy0 in (0, 40)) and (wx1 - x1 in (0, 40))
    assert (owner == 1).all()
    assert len(tiles) == 4 * 3


@pytest.mark.parametrize("shift", [0.0, -0.5, 0.5, 3.0])
def test_objects_on_every_seam_and_corner_are_kept_once_and_whole(shift):
    """Discs centred on every seam, every corner of four tiles, and just beside them: each is one object, whole."""
    size, tile, radius = 800, 200, 9.0
    centres = _seam_centres(size, tile, spacing=40, shift=shift)
    truth = _discs((size, size), centres, radius)
    image = (truth > 0).astype(np.float32)
    stats: dict = {}
    tiled = segment_tiled(image, engines={"x": ThresholdEngine()}, pixel_size_um=1.0, tile_px=tile, overlap_px=24,
                          workers=2, stats=stats)["x"]
    assert stats["tiles"] == 16 and stats["cut_objects"] == 0 and stats["contested_px"] == 0
    pairs = _pairs(tiled, truth)
    assert tiled.max() == len(centres)  # nothing counted twice, nothing lost
    assert len(pairs) == len(centres)  # each object covers one disc and each disc one object: none split
    areas_found = np.bincount(tiled.ravel())[pairs[:, 0]]
    areas_truth = np.bincount(truth.ravel())[pairs[:, 1]]
    assert (pairs[:, 2] == areas_found).all() and (pairs[:, 2] == areas_truth).all()  # pixel for pixel


def test_an_overlap_narrower_than_the_objects_is_reported():
    """With 8 px of overlap a disc of radius 20 on a seam is cut in both tiles: what the stats are for."""
    size, tile, radius = 400, 200, 20.0
    truth = _discs((size, size), [(200.0, 100.0)], radius)
    stats: dict = {}
    segment_tiled((truth > 0).astype(np.float32), engines={"x": ThresholdEngine()}, pixel_size_um=1.0,
                  tile_px=tile, overlap_px=8, workers=1, stats=stats)
    assert stats["cut_objects"] == 2 and stats["contested_px"] > 0


def test_nuclei_on_seams_with_the_specialist_model_are_found_once():
    """Nucleus-like blobs on every seam and corner, segmented by the bundled nuclear model in 3 x 3 tiles."""
    size, tile, px = 768, 256, 0.6
    centres = _seam_centres(size, tile, spacing=32, shift=0.0)
    truth = _discs((size, size), centres, radius=4.5 / px)
    rng = np.random.default_rng(0)
    image = 100 + 80 * ndi.gaussian_filter((truth > 0).astype(np.float32), 0.7) + rng.normal(0, 4, truth.shape)
    image = image.astype(np.float32)
    engine = load_engine("specialist", kind="nuclear")
    stats: dict = {}
    tiled = segment_tiled(image, engines={"neun": engine}, pixel_size_um=px, tile_px=tile, overlap_px=64,
                          workers=1, stats=stats)["neun"]
    whole = engine.segment(image, pixel_size_um=px)
    assert stats["tiles"] == 9 and stats["cut_objects"] == 0
    for found in (whole, tiled):
        pairs = _pairs(found, truth)
        strong = pairs[pairs[:, 2] >= 0.5 * np.bincount(truth.ravel())[pairs[:, 1]]]
        # Every disc is one object (no split), no object holds two discs, none is there twice.
        assert sorted(strong[:, 1]) == list(range(1, len(centres) + 1))
        assert len(set(strong[:, 0])) == len(centres)
        assert found.max() == len(centres)


@pytest.fixture(scope="module")
def dg_section():
    return make_section(SynthParams(shape_px=(2048, 2048), pixel_size_um=0.65, markers=("dcx", "neun")))


@pytest.mark.slow
def test_tiled_counts_equal_untiled_counts(dg_section, tmp_path):
    """A 2048^2 section read from a pyramidal OME-TIFF and counted in 5 x 5 tiles, against counting it whole."""
    path = write_mosaic(tmp_path / "dg.ome.tif", lambda rows, cols: dg_section.image[:, rows, cols],
                        shape=(2048, 2048), channel_names=dg_section.channel_names, dtype=dg_section.image.dtype,
                        pixel_size_um=0.65)
    whole = count_section(Section(path=path, data=dg_section.image, channel_names=dg_section.channel_names,
                                  pixel_size_um=0.65, pixel_size_source="ome", projection="none"))
    with open_mosaic(path) as mosaic:
        tiled = count_region(mosaic, None, tile_px=480, overlap_px=64, workers=1)
    assert tiled.summary["tiles"] == 2 * 25 and tiled.summary["tile_cut_objects"] == 0
    for column in ("dcx_count", "neun_count", "dcx_neun_count"):
        assert abs(tiled.summary[column] - whole.summary[column]) <= 0.01 * whole.summary[column], column
    for marker in ("dcx", "neun"):
        assert abs(int(tiled.labels[marker].max()) - int(whole.labels[marker].max())) <= 0.01 * whole.labels[marker].max()
    assert tiled.summary["gcl_area_mm2"] == pytest.approx(whole.summary["gcl_area_mm2"], rel=0.01)
    assert tiled.summary["sgz_length_mm"] == pytest.approx(whole.summary["sgz_length_mm"], rel=0.01)


def test_pyramidal_ome_tiff_is_read_lazily_by_level(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (2, 1100, 1300), dtype=np.uint16)
    path = write_mosaic(tmp_path / "p.ome.tif", lambda rows, cols: data[:, rows, cols], shape=(1100, 1300),
                        channel_names=("DCX", "NeuN"), dtype=np.uint16, pixel_size_um=0.5, tile_px=256,
                        level_factor=2, smallest_px=200)
    assert is_mosaic(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.channel_names == ("DCX", "NeuN")
        assert [level.shape_yx for level in mosaic.levels] == [(1100, 1300), (550, 650), (275, 325)]
        assert [level.pixel_size_um for level in mosaic.levels] == pytest.approx([0.5, 1.0, 2.0])
        np.testing.assert_array_equal(mosaic.read(0, slice(300, 620), slice(1000, 1300)), data[:, 300:620, 1000:])
        coarse = data[:, :1100, :1300].reshape(2, 550, 2, 650, 2).mean(axis=(2, 4))
        np.testing.assert_array_equal(mosaic.read(1, slice(0, 10), slice(0, 10)), np.round(coarse[:, :10, :10]))
        assert choose_level(mosaic, pixel_size_um=0.6) == 0
        assert choose_level(mosaic, pixel_size_um=1.0) == 1
        assert choose_level(mosaic, pixel_size_um=5.0) == 2
        image, size_um = read_downsampled(mosaic, channel=1, pixel_size_um=4.0)
        assert size_um == pytest.approx(4.0) and image.shape == (137, 162)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_is_read_with_its_pixel_size_and_channel_names(tmp_path, version):
    data = np.arange(2 * 600 * 500, dtype=np.uint16).reshape(2, 600, 500)
    path = tmp_path / "s.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    datasets = []
    for index, step in enumerate((1, 2)):
        level = data[:, ::step, ::step]
        array = root.create_array(str(index), shape=level.shape, chunks=(1, 128, 128), dtype=level.dtype)
        array[:] = level
        datasets.append({"path": str(index),
                         "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.65 * step, 0.65 * step]}]})
    meta = {"multiscales": [{"version": version, "datasets": datasets,
                             "axes": [{"name": "c", "type": "channel"},
                                      {"name": "y", "type": "space", "unit": "micrometer"},
                                      {"name": "x", "type": "space", "unit": "micrometer"}]}],
            "omero": {"channels": [{"label": "DCX"}, {"label": "NeuN"}]}}
    root.attrs.update({"ome": {"version": version, **meta}} if version == "0.5" else meta)
    assert is_mosaic(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.channel_names == ("DCX", "NeuN")
        assert mosaic.pixel_size_um == pytest.approx(0.65)
        assert mosaic.levels[1].pixel_size_um == pytest.approx(1.3)
        np.testing.assert_array_equal(mosaic.read(0, slice(100, 300), slice(7, 99)), data[:, 100:300, 7:99])
        np.testing.assert_array_equal(mosaic.read(1, slice(0, 5), slice(0, 5)), data[:, :10:2, :10:2])


@pytest.fixture(scope="module")
def two_dg(tmp_path_factory):
    """Two small DG sections (left, right) set into a 2400 x 5000 px section of textured tissue."""
    sections = [make_section(SynthParams(shape_px=(1536, 1536), pixel_size_um=0.65, markers=("dcx", "neun"),
                                         seed=seed)) for seed in (1, 2)]
    folder = tmp_path_factory.mktemp("mosaics")
    shape = (2400, 5000)
    paths = {}
    for n in (0, 1, 2):
        scene = MosaicScene(shape=shape, pixel_size_um=0.65,
                            sections=place_sections(sections[:n], shape=shape, centres=[(0.5, 0.25), (0.5, 0.75)][:n]))
        paths[n] = write_mosaic(folder / f"dg{n}.ome.tif", scene.read, shape=shape, channel_names=scene.channel_names,
                                dtype=np.uint16, pixel_size_um=0.65)
        paths[f"scene{n}"] = scene
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("n", [0, 1, 2])
def test_zero_one_or_two_dentate_gyri_are_found(two_dg, n):
    scene = two_dg[f"scene{n}"]
    with open_mosaic(two_dg[n]) as mosaic:
        regions = find_dentate_gyri(mosaic, channel=1)
    assert len(regions) == n
    for region, (section, top, left) in zip(regions, scene.sections):
        rows, cols = np.nonzero(section.gcl_mask)
        y0, y1, x0, x1 = region.gcl_box_px
        # The GCL's box found on the 2.6 um level lies within ~2 coarse pixels of the truth.
        assert abs(y0 - (top + rows.min())) < 12 and abs(y1 - (top + rows.max())) < 12
        assert abs(x0 - (left + cols.min())) < 12 and abs(x1 - (left + cols.max())) < 12
        assert region.gcl_area_mm2 == pytest.approx(section.info["gcl_area_mm2"], rel=0.15)
        by0, by1, bx0, bx1 = region.box_px
        assert by0 < y0 and by1 > y1 and bx0 < x0 and bx1 > x1
    assert [r.side for r in regions] == {0: [], 1: ["only"], 2: ["left", "right"]}[n]


def test_a_region_can_be_given_as_an_outline(two_dg, tmp_path):
    ring = [[1000, 700], [1800, 700], [1800, 1500], [1000, 1500], [1000, 700]]
    outline = tmp_path / "gcl.geojson"
    outline.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    with open_mosaic(two_dg[2]) as mosaic:
        region = region_from_outline(mosaic, outline, margin_um=65.0)
    assert region.gcl_box_px == (700, 1501, 1000, 1801)
    assert region.box_px == (600, 1601, 900, 1901)
    assert region.gcl.shape == (1001, 1001) and region.gcl[100:900, 100:900].all() and not region.gcl[:99].any()
    assert region.source == str(outline)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])  # 2: both rows at once, in threads, tiles one at a time each
def test_dcxcount_count_counts_a_mosaic_too_large_for_memory_around_the_dg_it_is_told(two_dg, tmp_path, workers):
    """Over --max-memory-gb as a whole, the mosaic is counted around one DG: the one a `dg` column names."""
    from dcxcount.cli import main

    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"path,animal,section,dg\n{two_dg[2]},m1,1,right\n{two_dg[2]},m1,2,\n")
    out = tmp_path / "out"
    code = main(["count", str(sheet), "--out", str(out), "--section-interval", "6", "--hemispheres", "1",
                 "--max-memory-gb", "1.5", "--workers", workers])
    sections = pd.read_csv(out / "sections.csv")
    assert code == 1  # the row that does not say which of the two DG to count fails, on its own
    counted, ambiguous = sections.iloc[0], sections.iloc[1]
    assert counted["status"] == "ok" and counted["region_side"] == "right" and counted["mosaic_level"] == 0
    truth = two_dg["scene2"].sections[1][0]
    in_layer = (truth.cells["depth"] >= -10 / 70) & (truth.cells["depth"] <= 1)
    expected = int((in_layer & (truth.cells["marker"] == "neun")).sum())
    assert abs(counted["neun_count"] - expected) <= 0.1 * expected
    assert "2 dentate gyri found" in ambiguous["status"] and "dg" in ambiguous["status"]

    # A person erases a counted nucleus: summarize recounts the box from the saved labels, not the whole image.
    folder = out / "sections" / "m1_s1"
    cells = pd.read_csv(folder / "cells.csv")
    victim = int(cells.loc[(cells["marker"] == "neun") & cells["counted"], "cell_id"].iloc[0])
    labels = tifffile.imread(folder / "labels_neun.tif")
    labels[labels == victim] = 0
    tifffile.imwrite(folder / "labels_neun.tif", labels, compression="zlib")
    main(["summarize", str(out)])
    again = pd.read_csv(out / "sections.csv").iloc[0]
    assert again["status"] == "ok" and again["neun_count"] == counted["neun_count"] - 1
    assert again["region_side"] == "right" and again["box_x_um"] == pytest.approx(counted["box_x_um"])
