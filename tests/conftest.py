"""Shared fixtures: a small synthetic study, counted once per test session."""

from __future__ import annotations

import shutil

import pytest

from dcxcount.cli import main
from dcxcount.synth import SynthParams, make_study

from .splits import STUDY

# 512 x 512 px at 0.65 um: a whole C at 20x, small enough to count in seconds.
SMALL_SECTION = SynthParams(shape_px=(512, 512), pixel_size_um=0.65)


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
    """Samplesheet of 2 groups x 2 animals x 2 sections, from the frozen test split (tests/splits.py)."""
    folder = tmp_path_factory.mktemp("study")
    return make_study(folder, animals_per_group=2, sections_per_animal=2, base=SMALL_SECTION, seed=STUDY)


@pytest.fixture(scope="session")
def counted_study(small_study, tmp_path_factory):
    """``dcxcount count`` run on the small study: (samplesheet, out folder, exit code)."""
    out = tmp_path_factory.mktemp("counted")
    code = main(["count", str(small_study), "--out", str(out), "--section-interval", "6", "--hemispheres", "1"])
    return small_study, out, code


@pytest.fixture
def study_copy(counted_study, tmp_path):
    """(samplesheet, a private copy of the counted results folder): a test's edits stay its own."""
    sheet, out, code = counted_study
    assert code == 0
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return sheet, copy
