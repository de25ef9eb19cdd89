"""Counting one section: segmentation, layer frame, morphology, co-labelling, tables.

:func:`count_section` is the single code path from an image to a per-cell
table; the batch runner, the CLI and (later) the napari plugin all call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table

from .io import Section, match_channels
from .layers import LayerFrame, find_layer_frame
from .morphology import StagingRules, process_features, stage_cells
from .segment import kind_of_marker, load_engine
from .study import STAGES

__all__ = ["CountSettings", "SectionResult", "count_section", "OPTIONAL_MARKERS"]

# Counted whenever a channel of that name is in the file; dcx and one nuclear
# marker for the GCL are required.
OPTIONAL_MARKERS = ("neun", "dapi", "brdu", "edu")
ANALOGUES = ("brdu", "edu")  # thymidine analogues: birth-dating markers

StepCallback = Callable[[str], None]


@dataclass(frozen=True)
class CountSettings:
    """Everything that decides a section's result (it is hashed for resuming runs).

    Attributes
    ----------
    model : str
        Engine name or model path (see :func:`dcxcount.segment.load_engine`).
    marker_models : dict
        Marker -> engine name or model path, overriding ``model`` for that marker.
    channels : dict
        Marker -> channel index or name overrides (``--channel``).
    min_overlap_fraction : float
        An object is positive for another marker when one of that marker's
        objects covers at least this fraction of the smaller of the two.
    sgz_hilus_um : float
        Cells up to this far into the hilus from the GCL border are SGZ cells
        and counted with the GCL (BIOLOGY.md: the SGZ is a band ~3 nuclei wide
        straddling that border).
    staging : StagingRules
        Thresholds of the stage rules.
    """

    model: str = "specialist"
    marker_models: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    min_overlap_fraction: float = 0.5
    sgz_hilus_um: float = 10.0
    staging: StagingRules = StagingRules()


@dataclass
class SectionResult:
    """A counted section.

    Attributes
    ----------
    cells : DataFrame
        One row per object of every marker (see docs/output.md).
    summary : dict
        The section's counts and measures (one row of sections.csv, without
        the samplesheet columns).
    labels : dict
        Marker -> label image.
    frame : LayerFrame
    """

    cells: pd.DataFrame
    summary: dict
    labels: dict[str, np.ndarray]
    frame: LayerFrame


def _markers_to_count(section: Section, settings: CountSettings) -> dict[str, int]:
    lowered = {name.strip().lower() for name in section.channel_names}
    wanted = ["dcx"] + [m for m in OPTIONAL_MARKERS if m in lowered or m in settings.channels]
    wanted += [m for m in settings.channels if m not in wanted]
    if not {"neun", "dapi"} & set(wanted):
        wanted.append("neun")  # the error then names the marker the GCL needs
    return match_channels(section, markers=wanted, overrides=settings.channels)


def _objects_table(marker: str, labels: np.ndarray, channels: dict[str, np.ndarray],
                   pixel_size_um: float) -> pd.DataFrame:
    props = regionprops_table(labels, properties=("label", "centroid", "area", "eccentricity"))
    table = pd.DataFrame({
        "marker": marker,
        "cell_id": props["label"].astype(int),
        "x_um": props["centroid-1"] * pixel_size_um,
        "y_um": props["centroid-0"] * pixel_size_um,
        "area_um2": props["area"] * pixel_size_um**2,
        "eccentricity": props["eccentricity"],
    })
    for other, image in channels.items():
        means = regionprops_table(labels, intensity_image=np.asarray(image, np.float32),
                                  properties=("intensity_mean",))["intensity_mean"]
        table[f"{other}_mean"] = means
    return table


def _overlap_positive(labels: np.ndarray, others: np.ndarray, cell_ids: np.ndarray,
                      min_overlap_fraction: float) -> np.ndarray:
    """Whether each object overlaps one object of ``others`` by the given fraction of the smaller."""
    both = (labels > 0) & (others > 0)
    if not both.any() or len(cell_ids) == 0:
        return np.zeros(len(cell_ids), bool)
    pairs, overlap = np.unique(np.stack([labels[both], others[both]]), axis=1, return_counts=True)
    area_self = np.bincount(labels.ravel())
    area_other = np.bincount(others.ravel())
    fraction = overlap / np.minimum(area_self[pairs[0]], area_other[pairs[1]])
    positive_ids = np.unique(pairs[0][fraction >= min_overlap_fraction])
    return np.isin(cell_ids, positive_ids)


def count_section(section: Section, *, settings: CountSettings = CountSettings(),
                  on_step: StepCallback | None = None) -> SectionResult:
    """Segment, place, stage and co-label every object in one section.

    Parameters
    ----------
    section : Section
        A section read by :func:`dcxcount.io.read_section`.
    settings : CountSettings
    on_step : callable, optional
        Called with the name of each step as it starts (for progress displays).

    Raises
    ------
    dcxcount.io.SectionReadError
        A marker's channel is missing.
    dcxcount.layers.NoGCLFoundError
        No granule cell layer in the nuclear channel.
    """
    step = on_step or (lambda name: None)
    px = section.pixel_size_um
    channel_index = _markers_to_count(section, settings)
    images = {marker: section.data[index] for marker, index in channel_index.items()}

    labels = {}
    for marker, image in images.items():
        step(f"segment {marker}")
        engine = load_engine(settings.marker_models.get(marker, settings.model), kind=kind_of_marker(marker))
        labels[marker] = engine.segment(image, pixel_size_um=px)

    step("layer frame")
    frame = find_layer_frame(labels["neun" if "neun" in labels else "dapi"], pixel_size_um=px)

    step("morphology")
    features = process_features(images["dcx"], labels["dcx"], frame, ml_depth=settings.staging.ml_depth)
    stages = stage_cells(features, gcl_thickness_um=frame.thickness_um, rules=settings.staging)

    step("tables")
    tables = []
    for marker, marker_labels in labels.items():
        table = _objects_table(marker, marker_labels, images, px)
        table["depth"], table["in_gcl"] = frame.sample(table["x_um"], table["y_um"])
        table["counted"] = (table["depth"] >= -settings.sgz_hilus_um / frame.thickness_um) & (table["depth"] <= 1.0)
        for other, other_labels in labels.items():
            if other != marker:
                table[f"{other}_positive"] = _overlap_positive(
                    marker_labels, other_labels, table["cell_id"].to_numpy(), settings.min_overlap_fraction)
        if marker == "dcx":
            table = table.join(features, on="cell_id").join(stages, on="cell_id")
        tables.append(table)
    cells = pd.concat(tables, ignore_index=True)
    panel = sorted(m for m in labels if m != "dapi")
    cells["phenotype"] = _phenotypes(cells, panel)

    counted = cells[cells["counted"]]
    dcx = counted[counted["marker"] == "dcx"]
    summary = {
        "pixel_size_um": px,
        "projection": section.projection,
        "channels": ";".join(f"{m}={section.channel_names[i]}" for m, i in channel_index.items()),
        "gcl_area_mm2": frame.gcl_area_mm2,
        "sgz_length_mm": frame.sgz_length_mm,
        "gcl_thickness_um": frame.thickness_um,
        "dcx_neun_count": int(dcx.get("neun_positive", pd.Series(False, index=dcx.index)).sum()),
    }
    for marker in labels:
        summary[f"{marker}_count"] = int((counted["marker"] == marker).sum())
    for stage in STAGES:
        summary[f"stage_{stage}"] = int((dcx["stage"] == stage).sum())
    summary["maturation_index"] = (summary["stage_E"] + summary["stage_F"]) / len(dcx) if len(dcx) else np.nan
    summary["dcx_per_mm2_gcl"] = summary["dcx_count"] / frame.gcl_area_mm2 if frame.gcl_area_mm2 else np.nan
    summary.update(_analogue_phenotype_counts(counted))
    return SectionResult(cells=cells, summary=summary, labels=labels, frame=frame)


def _analogue_phenotype_counts(counted: pd.DataFrame) -> dict[str, int]:
    """The birth-dating read-outs: BrdU+ (EdU+) cells that are DCX+, and those NeuN+DCX-."""
    counts = {}
    for analogue in ANALOGUES:
        if f"{analogue}_positive" not in counted:  # no channel for this analogue
            continue
        born = counted[counted["marker"] == analogue]
        dcx = born["dcx_positive"].astype(bool)
        neun = born.get("neun_positive", pd.Series(False, index=born.index)).astype(bool)
        counts[f"{analogue}_dcx_count"] = int(dcx.sum())
        counts[f"{analogue}_neun_dcxneg_count"] = int((neun & ~dcx).sum())
    return counts


def _phenotypes(cells: pd.DataFrame, panel: list[str]) -> pd.Series:
    """Marker combination per object, e.g. ``brdu+dcx-neun+`` (DAPI, on every nucleus, is left out)."""
    parts = []
    for marker in panel:
        column = cells.get(f"{marker}_positive", pd.Series(False, index=cells.index))
        positive = (cells["marker"] == marker) | column.fillna(False).astype(bool)
        parts.append(np.where(positive, f"{marker}+", f"{marker}-"))
    return pd.Series(["".join(p) for p in zip(*parts)], index=cells.index) if parts else pd.Series("", index=cells.index)
