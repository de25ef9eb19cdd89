"""Tests for dcxcount.appearance and the looks dcxcount.synth draws with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops

from dcxcount.appearance import FAMILIES, KNOBS, Appearance, sample_params
from dcxcount.synth import SynthParams, make_section, read_truth, write_section

BASE = SynthParams(shape_px=(384, 384), pixel_size_um=0.8, dcx_per_mm_sgz=200.0, seed=21,
                   markers=("dcx", "neun", "dapi", "brdu"))


def looked(**knobs) -> SynthParams:
    return dataclasses.replace(BASE, appearance=Appearance(**knobs))


@pytest.fixture(scope="module")
def plain():
    return make_section(BASE)


def test_every_family_has_knobs_and_every_knob_a_field():
    assert {k.family for k in KNOBS} == set(FAMILIES)
    params_fields = {f.name for f in dataclasses.fields(SynthParams)}
    for knob in KNOBS:
        assert knob.on_appearance or knob.name in params_fields, knob.name


def test_training_draws_never_reach_the_held_out_band_and_test_draws_stay_in_it():
    rng = np.random.default_rng(0)
    for knob in KNOBS:
        train = [knob.draw(rng, split="train") for _ in range(400)]
        test = [knob.draw(rng, split="test") for _ in range(100)]
        if knob.choices:
            assert set(train) <= set(knob.choices) and set(test) <= set(knob.held_out_choices)
            assert not set(knob.choices) & set(knob.held_out_choices)
            continue
        lo, hi = knob.held_out
        assert knob.low <= lo < hi <= knob.high, knob.name
        train = np.array(train)
        assert not np.any((train > lo) & (train < hi)), knob.name
        assert train.min() >= knob.low and train.max() <= knob.high
        # Both sides of the band are used in training.
        assert (train < lo).any() and (train > hi).any(), knob.name
        assert all(lo <= t <= hi for t in test), knob.name


def test_sample_params_varies_only_the_families_asked_for():
    params = sample_params(BASE, np.random.default_rng(3), families=("camera",))
    assert params.appearance.bit_depth in (8, 16)
    assert params.snr != BASE.snr and params.read_noise != BASE.read_noise
    assert params.pixel_size_um == BASE.pixel_size_um  # scale not asked for
    assert dataclasses.replace(params.appearance, bit_depth=16, saturation=0.0, bleed_through=0.0) == Appearance()
    assert params.seed == BASE.seed and params.markers == BASE.markers


def test_unknown_families_and_splits_are_refused():
    with pytest.raises(ValueError, match="unknown appearance families.*'somata'"):
        sample_params(BASE, np.random.default_rng(0), families=("somata",))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        sample_params(BASE, np.random.default_rng(0), split="validation")
    with pytest.raises(ValueError, match="bit_depth must be 8, 12 or 16"):
        Appearance(bit_depth=10)


def test_artefacts_glow_in_every_channel_but_are_never_objects(plain):
    dirty = make_section(looked(vessels_per_mm2=30, lipofuscin_per_mm2=2000))
    for marker in plain.labels:
        assert np.array_equal(dirty.labels[marker], plain.labels[marker])
    pd.testing.assert_frame_equal(dirty.cells, plain.cells)
    background = plain.labels["dapi"] == 0
    for channel in range(len(BASE.markers)):
        # Puncta and vessel walls add bright pixels outside every object in every channel.
        bright = np.percentile(plain.image[channel][background], 99.99)
        assert (dirty.image[channel][background] > bright).sum() > 3 * (plain.image[channel][background] > bright).sum()


def test_dcx_somata_become_rings_around_a_darker_nucleus(plain):
    ring = make_section(looked(soma_nucleus_contrast=0.9))
    dcx_ids = ring.cells.query("marker == 'dcx'")["cell_id"].to_numpy()

    def nucleus_to_cytoplasm(section):
        nucleus = np.isin(section.labels["dapi"], dcx_ids)
        cytoplasm = (section.labels["dcx"] > 0) & ~nucleus
        dcx = section.image[0].astype(float)
        dcx -= np.median(dcx[section.labels["dapi"] == 0])
        return dcx[nucleus].mean() / dcx[cytoplasm].mean()

    assert nucleus_to_cytoplasm(ring) < 0.5 * nucleus_to_cytoplasm(plain)


def test_varicosities_brighten_processes_without_adding_somata(plain):
    swollen = make_section(looked(varicosities_per_100um=10, growth_cone_prob=0.8))
    assert np.array_equal(swollen.labels["dcx"], plain.labels["dcx"])
    off_soma = plain.labels["dcx"] == 0
    assert swollen.image[0][off_soma].max() > plain.image[0][off_soma].max()


def test_elongated_irregular_nuclei_are_what_the_labels_hold(plain):
    odd = make_section(looked(nucleus_elongation=1.6, nucleus_irregularity=0.25))

    def granule_shape(section):
        ids = section.cells.query("marker == 'neun' and cell_type == 'granule'")["cell_id"]
        props = [p for p in regionprops(section.labels["neun"]) if p.label in set(ids)]
        return np.median([p.eccentricity for p in props]), np.median([p.solidity for p in props])

    (ecc_plain, solid_plain), (ecc_odd, solid_odd) = granule_shape(plain), granule_shape(odd)
    assert ecc_odd > ecc_plain + 0.1
    assert solid_odd < solid_plain


def test_no_objects_where_the_tissue_is_torn_away():
    params = looked(tissue_damage=2.0)
    damaged = make_section(params)
    undamaged = make_section(dataclasses.replace(params, appearance=Appearance()))
    # This seed cuts tissue away: fewer nuclei, none of them new, none in the empty part.
    hole = (damaged.image[2] < np.percentile(undamaged.image[2], 1)) & (undamaged.labels["dapi"] > 0)
    assert len(np.unique(damaged.labels["dapi"])) < len(np.unique(undamaged.labels["dapi"]))
    assert set(np.unique(damaged.labels["dapi"])) <= set(np.unique(undamaged.labels["dapi"]))
    assert hole.sum() > 100
    assert not (damaged.labels["dapi"][hole] > 0).mean() > 0.05
    assert (damaged.gcl_mask <= undamaged.gcl_mask).all()


@pytest.mark.parametrize("bits, dtype, top", [(8, np.uint8, 255), (12, np.uint16, 4095), (16, np.uint16, 65535)])
def test_bit_depth_and_saturation_are_exported_as_a_camera_would(bits, dtype, top):
    section = make_section(looked(bit_depth=bits, saturation=0.2))
    assert section.image.dtype == dtype
    assert section.image.max() <= top
    dapi = section.image[2][section.labels["dapi"] > 0]
    # A fifth of the object pixels sit at the clipped maximum (ties at the top make it a little more).
    assert 0.18 <= (dapi == dapi.max()).mean() <= 0.3


def test_a_look_survives_writing_and_reading_the_truth(tmp_path):
    params = sample_params(BASE, np.random.default_rng(5), split="test")
    path = write_section(make_section(params), tmp_path / "look.ome.tif")
    assert read_truth(path).params == params


def test_dcxcount_synth_draws_each_section_a_look_from_the_held_out_bands(tmp_path):
    from dcxcount.cli import main

    code = main(["synth", str(tmp_path), "--animals-per-group", "1", "--sections-per-animal", "2", "--size-px", "128",
                 "--families", "camera,scale", "--split", "test"])
    assert code == 0
    sheet = pd.read_csv(tmp_path / "samplesheet.csv")
    looks = [read_truth(tmp_path / path).params for path in sheet["path"]]
    assert len({p.pixel_size_um for p in looks}) == len(looks)  # each section its own look
    for params in looks:
        assert 0.72 <= params.pixel_size_um <= 0.8 and params.appearance.bit_depth == 12
        assert params.appearance.soma_nucleus_contrast == 0  # soma family not asked for
