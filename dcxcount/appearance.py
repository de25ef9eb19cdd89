"""Appearance families: how cells, tissue and microscope look in a synthetic section.

A segmenter trained on one way of drawing a cell learns the drawing, not the cell.
Real sections differ in how DCX somata and processes stain, how nuclei look, what
else fluoresces, and how the image was taken. Each of those is a *family* of
knobs here; `dcxcount.synth` draws a section with whatever values its
`SynthParams` carry, and `sample_params` draws those values at random within
documented ranges, so a model can be trained over many looks (domain
randomisation) and scored on looks it never saw.

Families and their knobs (``plain`` is the look of a default `SynthParams`):

==========  =======================  =======  ==============  ============
family      knob                     plain    range           held out
==========  =======================  =======  ==============  ============
soma        soma_nucleus_contrast    0        0 - 0.9         0.55 - 0.65
soma        soma_shape_mix           0        0 - 0.8         0.45 - 0.55
soma        soma_granularity         0        0 - 0.6         0.35 - 0.42
soma        soma_brightness_sd       0.3      0.3 - 0.6       0.47 - 0.52
soma        cluster_max              4        4 - 6           5
processes   process_taper            0.4      0.3 - 0.85      0.62 - 0.70
processes   varicosities_per_100um   0        0 - 10          6 - 7.5
processes   growth_cone_prob         0        0 - 0.8         0.5 - 0.6
processes   branch_brightness        1        0.25 - 1        0.42 - 0.5
processes   branch_width_um          0.35     0.2 - 0.45      0.26 - 0.29
processes   focal_dropout            0        0 - 0.35        0.2 - 0.25
nuclei      chromatin                0.3      0.15 - 0.7      0.45 - 0.52
nuclei      nucleoli                 0        0 - 3           1.8 - 2.2
nuclei      nucleus_irregularity     0        0 - 0.25        0.15 - 0.18
nuclei      nucleus_elongation       1        1 - 1.6         1.35 - 1.42
nuclei      granule_spacing          0.8      0.62 - 0.85     0.68 - 0.71
nuclei      analogue_speckle         0.5      0.1 - 0.9       0.6 - 0.68
nuclei      neun_cytoplasm           0        0 - 0.3         0.18 - 0.21
nuclei      nucleus_overlap_glow     0        0 - 1           0.55 - 0.65
background  vessels_per_mm2          0        0 - 30          18 - 22
background  lipofuscin_per_mm2       0        0 - 2000        1200 - 1400
background  tissue_damage            0        0 - 2           1.2 - 1.4
background  haze                     0.3      0 - 0.8         0.45 - 0.52
background  gradient                 0.3      0 - 0.7         0.45 - 0.5
camera      snr                      8        2.5 - 15        5 - 5.8
camera      read_noise               3        1 - 15          7 - 8.5
camera      background               100      30 - 600        250 - 300
camera      psf_sigma_um             0.4      0.25 - 0.9      0.55 - 0.6
camera      bit_depth                16       8, 16           12
camera      saturation               0        0 - 0.25        0.12 - 0.14
camera      bleed_through            0        0 - 0.15        0.08 - 0.095
scale       pixel_size_um            0.5      0.3 - 1.0       0.72 - 0.8
==========  =======================  =======  ==============  ============

``split="train"`` draws each knob uniformly from its range with the held-out band
cut out; ``split="test"`` draws it from the band only. No value a training run
can draw is ever drawn for the test set, so a test section is at settings no
training run used. Knobs of families not asked for keep the base's values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .synth import SynthParams

__all__ = ["FAMILIES", "Appearance", "Knob", "KNOBS", "sample_params"]

FAMILIES = ("soma", "processes", "nuclei", "background", "camera", "scale")
"""The appearance families, in the order of the table above."""


@dataclass(frozen=True)
class Appearance:
    """Look of cells, tissue and camera beyond the plain synthetic drawing.

    Every default reproduces the plain look exactly. Knobs that already were
    `SynthParams` fields (``snr``, ``haze``, ``pixel_size_um``, ...) stay there.

    Parameters
    ----------
    soma_nucleus_contrast : float
        How much darker the DCX-negative nucleus is than the DCX cytoplasm around
        it (0: no difference, 1: black), making a soma a ring of signal.
    soma_shape_mix : float
        Share of DCX somata drawn as a crescent (nucleus pushed to one side) or a
        teardrop (brightest where the main process leaves) instead of a ring.
    soma_granularity : float
        Amplitude of the granular, uneven texture of DCX cytoplasm.
    soma_brightness_sd : float
        Log-normal sd of DCX brightness between cells (0.4 gives ~5-fold between
        the 5th and 95th percentile).
    cluster_max : int
        Largest cluster of touching DCX somata (clusters hold 2 to this many).
    process_taper : float
        Share of a process's brightness lost over its first 150 um.
    varicosities_per_100um : float
        Mean number of swellings per 100 um of process.
    growth_cone_prob : float
        Chance that a process tip ends in a growth cone.
    branch_brightness : float
        Brightness of higher-order branches relative to the primary process.
    branch_width_um : float
        Gaussian sigma of higher-order branches (primaries have 0.6 um).
    focal_dropout : float
        Share of process length that leaves the focal plane and fades.
    chromatin : float
        Amplitude of DAPI chromatin texture (NeuN gets half of it).
    nucleoli : float
        Mean number of nucleoli (DAPI-dark spots) per nucleus.
    nucleus_irregularity : float
        Relative amplitude of shape harmonics on nucleus outlines (kidney shapes).
    nucleus_elongation : float
        Factor on the long axis of granule and neuron nuclei (area kept).
    analogue_speckle : float
        Amplitude of BrdU/EdU speckle (low: evenly filled nuclei).
    neun_cytoplasm : float
        NeuN signal in a thin rim of cytoplasm around NeuN+ nuclei, relative to
        the nucleus.
    nucleus_overlap_glow : float
        Share of a hidden nucleus's light added where another nucleus overlaps it
        (1: widefield, both add up; 0: only the one on top shows).
    vessels_per_mm2 : float
        Autofluorescent blood vessels (bright tubes in every channel).
    lipofuscin_per_mm2 : float
        Lipofuscin puncta (small, bright, in every channel).
    tissue_damage : float
        Mean number of tissue edges, tears, folds and bubbles per section.
    bit_depth : int
        Bits of the exported image: 8 (uint8), 12 or 16 (uint16).
    saturation : float
        Share of each channel's object pixels at the top of the range (clipped).
    bleed_through : float
        Share of each channel's signal that also appears in the next channel.
    """

    soma_nucleus_contrast: float = 0.0
    soma_shape_mix: float = 0.0
    soma_granularity: float = 0.0
    soma_brightness_sd: float = 0.3
    cluster_max: int = 4
    process_taper: float = 0.4
    varicosities_per_100um: float = 0.0
    growth_cone_prob: float = 0.0
    branch_brightness: float = 1.0
    branch_width_um: float = 0.35
    focal_dropout: float = 0.0
    chromatin: float = 0.3
    nucleoli: float = 0.0
    nucleus_irregularity: float = 0.0
    nucleus_elongation: float = 1.0
    analogue_speckle: float = 0.5
    neun_cytoplasm: float = 0.0
    nucleus_overlap_glow: float = 0.0
    vessels_per_mm2: float = 0.0
    lipofuscin_per_mm2: float = 0.0
    tissue_damage: float = 0.0
    bit_depth: int = 16
    saturation: float = 0.0
    bleed_through: float = 0.0

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 12, 16):
            raise ValueError(f"bit_depth must be 8, 12 or 16, not {self.bit_depth}")
        if not 2 <= self.cluster_max <= 8:
            raise ValueError(f"cluster_max must lie in [2, 8], not {self.cluster_max}")
        for f in dataclasses.fields(self):
            if f.name not in ("bit_depth", "cluster_max") and getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must not be negative")
        for name in ("soma_nucleus_contrast", "soma_shape_mix", "growth_cone_prob", "focal_dropout", "saturation"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must lie in [0, 1]")


@dataclass(frozen=True)
class Knob:
    """One switchable setting of a family, with its training range and held-out band.

    ``choices`` (for discrete knobs) replaces ``low``/``high``: training draws from
    ``choices``, the test set from ``held_out_choices``.
    """

    family: str
    name: str
    low: float = 0.0
    high: float = 0.0
    held_out: tuple[float, float] = (0.0, 0.0)
    choices: tuple[int, ...] = ()
    held_out_choices: tuple[int, ...] = ()

    @property
    def on_appearance(self) -> bool:
        """Whether the knob is an `Appearance` field (else a `SynthParams` field)."""
        return self.name in _APPEARANCE_FIELDS

    def draw(self, rng: np.random.Generator, *, split: str) -> float | int:
        if self.choices:
            pool = self.choices if split == "train" else self.held_out_choices
            return int(pool[rng.integers(len(pool))])
        lo, hi = self.held_out
        if split == "test":
            return float(rng.uniform(lo, hi))
        # Uniform over [low, high] without the band: draw on the shortened line, skip the gap.
        value = float(rng.uniform(self.low, self.high - (hi - lo)))
        return value + (hi - lo) if value >= lo else value


_APPEARANCE_FIELDS = frozenset(f.name for f in dataclasses.fields(Appearance))

KNOBS: tuple[Knob, ...] = (
    Knob("soma", "soma_nucleus_contrast", 0.0, 0.9, (0.55, 0.65)),
    Knob("soma", "soma_shape_mix", 0.0, 0.8, (0.45, 0.55)),
    Knob("soma", "soma_granularity", 0.0, 0.6, (0.35, 0.42)),
    Knob("soma", "soma_brightness_sd", 0.3, 0.6, (0.47, 0.52)),
    Knob("soma", "cluster_max", choices=(4, 6), held_out_choices=(5,)),
    Knob("processes", "process_taper", 0.3, 0.85, (0.62, 0.70)),
    Knob("processes", "varicosities_per_100um", 0.0, 10.0, (6.0, 7.5)),
    Knob("processes", "growth_cone_prob", 0.0, 0.8, (0.5, 0.6)),
    Knob("processes", "branch_brightness", 0.25, 1.0, (0.42, 0.5)),
    Knob("processes", "branch_width_um", 0.2, 0.45, (0.26, 0.29)),
    Knob("processes", "focal_dropout", 0.0, 0.35, (0.2, 0.25)),
    Knob("nuclei", "chromatin", 0.15, 0.7, (0.45, 0.52)),
    Knob("nuclei", "nucleoli", 0.0, 3.0, (1.8, 2.2)),
    Knob("nuclei", "nucleus_irregularity", 0.0, 0.25, (0.15, 0.18)),
    Knob("nuclei", "nucleus_elongation", 1.0, 1.6, (1.35, 1.42)),
    Knob("nuclei", "granule_spacing", 0.62, 0.85, (0.68, 0.71)),
    Knob("nuclei", "analogue_speckle", 0.1, 0.9, (0.6, 0.68)),
    Knob("nuclei", "neun_cytoplasm", 0.0, 0.3, (0.18, 0.21)),
    Knob("nuclei", "nucleus_overlap_glow", 0.0, 1.0, (0.55, 0.65)),
    Knob("background", "vessels_per_mm2", 0.0, 30.0, (18.0, 22.0)),
    Knob("background", "lipofuscin_per_mm2", 0.0, 2000.0, (1200.0, 1400.0)),
    Knob("background", "tissue_damage", 0.0, 2.0, (1.2, 1.4)),
    Knob("background", "haze", 0.0, 0.8, (0.45, 0.52)),
    Knob("background", "gradient", 0.0, 0.7, (0.45, 0.5)),
    Knob("camera", "snr", 2.5, 15.0, (5.0, 5.8)),
    Knob("camera", "read_noise", 1.0, 15.0, (7.0, 8.5)),
    Knob("camera", "background", 30.0, 600.0, (250.0, 300.0)),
    Knob("camera", "psf_sigma_um", 0.25, 0.9, (0.55, 0.6)),
    Knob("camera", "bit_depth", choices=(8, 16), held_out_choices=(12,)),
    Knob("camera", "saturation", 0.0, 0.25, (0.12, 0.14)),
    Knob("camera", "bleed_through", 0.0, 0.15, (0.08, 0.095)),
    Knob("scale", "pixel_size_um", 0.3, 1.0, (0.72, 0.8)),
)
"""Every knob of every family (the table in the module docstring)."""


def sample_params(base: SynthParams, rng: np.random.Generator, *, families: Sequence[str] = FAMILIES,
                  split: str = "train") -> SynthParams:
    """Draw the knobs of some families at random; everything else stays as in ``base``.

    Parameters
    ----------
    base : SynthParams
        The section to vary (seed, size, markers, densities, ...).
    rng : numpy.random.Generator
        Source of the draws.
    families : sequence of str
        Families to randomise (see `FAMILIES`); the others keep ``base``'s values,
        which for a default `SynthParams` is the plain look.
    split : {"train", "test"}
        ``"train"`` draws from each knob's range without its held-out band,
        ``"test"`` from the band only.

    Returns
    -------
    SynthParams
        ``base`` with the drawn knobs replaced.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown appearance families {sorted(unknown)}; known: {list(FAMILIES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    look, plain = {}, {}
    for knob in KNOBS:
        if knob.family in families:
            (look if knob.on_appearance else plain)[knob.name] = knob.draw(rng, split=split)
    return dataclasses.replace(base, appearance=dataclasses.replace(base.appearance, **look), **plain)
