"""Synthetic whole-section mosaics: dentate gyri from :mod:`dcxcount.synth` set into textured tissue.

A slide scanner's coronal section is mostly other tissue (cortex, thalamus)
around one or two dentate gyri, on a dark slide. :class:`MosaicScene` draws
such an image window by window, never whole, so a 20,000 x 15,000 px mosaic
can be written (:func:`dcxcount.mosaic.write_mosaic`) and its truth kept:

- the slide: camera offset and read noise;
- the tissue: an ellipse filling most of the image, with a smooth brightness
  texture and scattered NeuN+ nuclei (cortex-like density, never packed into
  a band like the granule cell layer), a faint DCX neuropil;
- the DG: synthetic sections (:func:`dcxcount.synth.make_section`) pasted at
  given places, blended into the tissue over a feathered border.

The tissue is drawn in blocks seeded by their position, so any window,
read in any order, gets the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .synth import SynthSection

__all__ = ["MosaicScene", "place_sections"]

_BLOCK_PX = 512


@dataclass
class MosaicScene:
    """A synthetic section mosaic, drawn on demand.

    Attributes
    ----------
    shape : (int, int)
        (rows, columns) in pixels.
    pixel_size_um : float
    sections : list of (SynthSection, int, int)
        Each DG section with the (row, column) of its top left corner. Their
        markers must be ``markers``.
    markers : tuple of str
        Channel order (``"dcx"``, ``"neun"``).
    seed : int
    neun_per_mm2 : float
        NeuN+ nuclei in the tissue outside the DG.
    nucleus_sigma_um : float
        Gaussian sigma of a tissue nucleus (a 9 um nucleus).
    feather_px : int
        Width of the blend between a pasted section and the tissue.
    background : float
        Tissue background (counts), the synthetic sections' own.
    slide : float
        The bare slide's level (counts).
    """

    shape: tuple[int, int]
    pixel_size_um: float
    sections: list[tuple[SynthSection, int, int]] = field(default_factory=list)
    markers: tuple[str, ...] = ("dcx", "neun")
    seed: int = 0
    neun_per_mm2: float = 1500.0
    nucleus_sigma_um: float = 2.5
    feather_px: int = 64
    background: float = 100.0
    slide: float = 85.0

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Display names, as the synthetic sections name them."""
        return tuple({"dcx": "DCX", "neun": "NeuN", "dapi": "DAPI"}[m] for m in self.markers)

    def truth(self) -> pd.DataFrame:
        """Every pasted section's truth cells, positions in um from the mosaic's top left; ``dg`` numbers the section."""
        tables = []
        for index, (section, row, col) in enumerate(self.sections, 1):
            cells = section.cells.copy()
            cells["x_um"] += col * self.pixel_size_um
            cells["y_um"] += row * self.pixel_size_um
            cells.insert(0, "dg", index)
            tables.append(cells)
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()

    def _in_tissue(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        height, width = self.shape
        return ((rows - height / 2) / (0.47 * height)) ** 2 + ((cols - width / 2) / (0.47 * width)) ** 2 <= 1

    def _texture(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        y, x = rows * self.pixel_size_um, cols * self.pixel_size_um
        return (1 + 0.12 * np.sin(2 * np.pi * x / 3100) * np.cos(2 * np.pi * y / 2300)
                + 0.05 * np.sin(2 * np.pi * (x + y) / 700)).astype(np.float32)

    def _nuclei(self, rows: slice, cols: slice) -> np.ndarray:
        """NeuN+ tissue nuclei in a window (blobs reaching in from neighbouring blocks included)."""
        sigma = self.nucleus_sigma_um / self.pixel_size_um
        pad = int(np.ceil(4 * sigma))
        r0, r1, c0, c1 = rows.start - pad, rows.stop + pad, cols.start - pad, cols.stop + pad
        canvas = np.zeros((r1 - r0, c1 - c0), np.float32)
        block_mm2 = (_BLOCK_PX * self.pixel_size_um / 1000) ** 2
        for bi in range(max(r0, 0) // _BLOCK_PX, min(r1, self.shape[0] - 1) // _BLOCK_PX + 1):
            for bj in range(max(c0, 0) // _BLOCK_PX, min(c1, self.shape[1] - 1) // _BLOCK_PX + 1):
                rng = np.random.default_rng([self.seed, bi, bj])
                n = rng.poisson(self.neun_per_mm2 * block_mm2)
                y = bi * _BLOCK_PX + rng.uniform(0, _BLOCK_PX, n)
                x = bj * _BLOCK_PX + rng.uniform(0, _BLOCK_PX, n)
                amplitude = rng.uniform(30, 70, n)
                iy, ix = np.round(y).astype(int) - r0, np.round(x).astype(int) - c0
                inside = (iy >= 0) & (iy < canvas.shape[0]) & (ix >= 0) & (ix < canvas.shape[1])
                np.add.at(canvas, (iy[inside], ix[inside]), amplitude[inside] * 2 * np.pi * sigma**2)
        return ndi.gaussian_filter(canvas, sigma)[pad:-pad, pad:-pad]

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """The (C, h, w) uint16 pixels of a window."""
        rr = np.arange(rows.start, rows.stop)[:, None]
        cc = np.arange(cols.start, cols.stop)[None, :]
        tissue = self._in_tissue(rr, cc)
        texture = self._texture(rr, cc)
        rng = np.random.default_rng([self.seed, rows.start, cols.start, 1])
        base = np.where(tissue, self.background * texture, self.slide).astype(np.float32)
        channels = []
        nuclei = self._nuclei(rows, cols) * tissue
        for marker in self.markers:
            signal = base + (nuclei if marker in ("neun", "dapi") else 0)
            channels.append(signal + rng.normal(0, 5, signal.shape).astype(np.float32))
        out = np.stack(channels)
        for section, top, left in self.sections:
            self._paste(out, section, top, left, rows, cols)
        return np.clip(np.round(out), 0, 65535).astype(np.uint16)

    def _paste(self, out: np.ndarray, section: SynthSection, top: int, left: int, rows: slice, cols: slice) -> None:
        height, width = section.image.shape[-2:]
        r0, r1 = max(rows.start, top), min(rows.stop, top + height)
        c0, c1 = max(cols.start, left), min(cols.stop, left + width)
        if r0 >= r1 or c0 >= c1:
            return
        order = [list(section.params.markers).index(m) for m in self.markers]
        part = section.image[order][:, r0 - top:r1 - top, c0 - left:c1 - left].astype(np.float32)
        ry = np.arange(r0 - top, r1 - top)[:, None]
        cx = np.arange(c0 - left, c1 - left)[None, :]
        edge = np.minimum(np.minimum(ry, height - 1 - ry), np.minimum(cx, width - 1 - cx))
        weight = np.clip(edge / max(self.feather_px, 1), 0, 1).astype(np.float32)
        window = out[:, r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start]
        window[:] = weight * part + (1 - weight) * window


def place_sections(sections: Sequence[SynthSection], *, shape: tuple[int, int],
                   centres: Sequence[tuple[float, float]]) -> list[tuple[SynthSection, int, int]]:
    """Sections placed with their centres at ``centres`` (fractions of the mosaic's rows and columns)."""
    placed = []
    for section, (fy, fx) in zip(sections, centres):
        height, width = section.image.shape[-2:]
        placed.append((section, int(fy * shape[0] - height / 2), int(fx * shape[1] - width / 2)))
    return placed

