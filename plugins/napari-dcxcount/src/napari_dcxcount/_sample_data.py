"""The sample section for napari's File > Open Sample menu.

Why a shipped file and not a section generated with ``dcxcount.synth`` at
open time: a napari user expects the sample to open at once, offline, and to
be the very image the documentation and ``sample_images/`` describe (with its
ground truth there). The ``dcxcount`` wheel does not carry ``sample_images/``,
so the plugin ships one 1.1 MB copy of ``sample_images/saline-1_s01.ome.tif``.
Generating it would take seconds, go through a private generator call, and
drift from the published sample whenever the generator's looks change; the
shipped file goes through the same reader as the user's own files.
"""

from __future__ import annotations

from pathlib import Path

from ._model import LayerData
from ._reader import read_section_layers

__all__ = ["SAMPLE_PATH", "sample_section"]

SAMPLE_PATH = Path(__file__).parent / "data" / "saline-1_s01.ome.tif"
"""The shipped copy of ``sample_images/saline-1_s01.ome.tif`` (768 x 768 px, 0.65 um, DCX and NeuN)."""


def sample_section() -> list[LayerData]:
    """npe2 sample data contribution: the sample section, one image layer per channel.

    Returns
    -------
    list of (data, kwargs, "image")
        As :func:`napari_dcxcount._reader.read_section_layers` reads it.
    """
    return read_section_layers(path=SAMPLE_PATH)
