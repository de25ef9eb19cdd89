"""Counting one section in six public steps: segment, frame, trace, stage, co-label, tables.

:func:`count_section` composes them and is the single code path from an image
to a per-cell table; the batch runner, the CLI and the napari plugin all call
it. Each step takes the previous step's output, computed or corrected by a
person: label images and a GCL mask given to :func:`count_section` replace
the steps that would make them, and a person's stage calls and excluded
objects (:class:`dcxcount.corrections.Corrections`) are applied on top of the
rules.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import regionprops_table

from .corrections import Corrections
from .estimators import phenotype_percentages
from .features import measure_processes
from .gcl import LayerFrame, find_layer_frame, frame_from_gcl
from .io import Section, match_channels
from .outlines import outline_frame
from .progress import CancelToken, ProgressCallback, report, sub_progress
from .segment import load_engine
from .staging import StagingRules, stage_cells
from .tracing import Tracing, TracingSettings, trace_processes
from .vocabulary import ANALOGUES, OPTIONAL_MARKERS, STAGE_GROUPS, STAGES, kind_of_marker

__all__ = ["CountSettings", "SectionResult", "UnusableImageError", "check_image", "count_section", "segment_markers",
           "find_frame", "stage_dcx_cells", "colabel_objects", "section_tables", "MIN_SECTION_UM"]


MIN_SECTION_UM = 100.0
"""Shortest side an image must span: a GCL is 50-80 um thick and must enclose a hilus."""

# More than this share of a channel at the brightest value its type can hold:
# the camera clipped, and no object can be told from its neighbours there.
_MAX_SATURATED_FRACTION = 0.5


class UnusableImageError(ValueError):
    """An image that cannot hold a countable section (too small, blank, saturated); the message names the file."""


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
        Marker -> channel index or name overrides.
    min_overlap_fraction : float
        Overlap criterion: an object is positive for another marker when one
        of that marker's objects covers at least this fraction of the smaller
        of the two.
    min_signal_fraction : float
        Signal criterion: an object is also positive for a marker when that
        marker's mean signal over it reaches the marker's threshold. The
        automatic threshold of a section is its background (the channel's
        median outside the marker's objects) plus this fraction of the
        background-subtracted median brightness of the marker's own objects:
        0.5 means "at least half as bright as a typical object of the marker".
    mean_thresholds : dict
        Marker -> fixed signal threshold (raw intensity units) replacing the
        automatic one; ``float("inf")`` switches the signal criterion off for
        that marker. It is off for DCX by default: DCX fills the cytoplasm and
        processes, so a DCX+ cell's nucleus reads only ~0.6 of its soma while
        neighbouring somata and processes spill as much onto DCX- nuclei
        (docs/validation.md, Co-labelling).
    phenotype_markers : tuple of str
        Markers whose counted cells are broken down by phenotype in the
        section and animal tables (by default the thymidine analogues).
    sgz_hilus_um : float
        Cells up to this far into the hilus from the GCL border are SGZ cells
        and counted with the GCL (docs/biology.md: the SGZ is a band ~3 nuclei wide
        straddling that border).
    tracing : TracingSettings
        Settings of the process tracing.
    staging : StagingRules
        Thresholds of the stage rules; its ``ml_depth`` is the one GCL/ML border
        both the process features and the rules use.
    """

    model: str = "specialist"
    marker_models: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    min_overlap_fraction: float = 0.5
    min_signal_fraction: float = 0.5
    mean_thresholds: dict = field(default_factory=lambda: {"dcx": float("inf")})
    phenotype_markers: tuple[str, ...] = ANALOGUES
    sgz_hilus_um: float = 10.0
    tracing: TracingSettings = TracingSettings()
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
    processes : (Y, X) int32 array
        The traced processes: each pixel holds the ``cell_id`` of the DCX cell whose trace it is.
    corrections : Corrections
        The person's corrections the result carries.
    """

    cells: pd.DataFrame
    summary: dict
    labels: dict[str, np.ndarray]
    frame: LayerFrame
    processes: np.ndarray
    corrections: Corrections = field(default_factory=Corrections)


def _markers_to_count(section: Section, settings: CountSettings) -> dict[str, int]:
    lowered = {name.strip().lower() for name in section.channel_names}
    wanted = ["dcx"] + [m for m in OPTIONAL_MARKERS if m in lowered or m in settings.channels]
    wanted += [m for m in settings.channels if m not in wanted]
    if not {"neun", "dapi"} & set(wanted):
        wanted.append("neun")  # the error then names the marker the GCL needs
    return match_channels(section, markers=wanted, overrides=settings.channels)


def check_image(section: Section, channel_index: dict[str, int]) -> None:
    """Refuse an image no GCL can be found in, for what it is rather than as "no GCL found".

    Parameters
    ----------
    section : Section
    channel_index : dict
        Marker -> channel index of the markers to count.

    Raises
    ------
    UnusableImageError
        When a side of the image spans less than :data:`MIN_SECTION_UM`, or
        a marker's channel has no finite pixel, holds one value only (blank,
        or saturated when that value is its type's brightest), or has more
        than half its pixels at its type's brightest value.
    """
    height, width = section.data.shape[-2:]
    px = section.pixel_size_um
    if min(height, width) * px < MIN_SECTION_UM:
        raise UnusableImageError(
            f"{section.path}: the image is too small to hold a dentate gyrus: {width} x {height} px at {px:g} um "
            f"({width * px:.0f} x {height * px:.0f} um); each side must span at least {MIN_SECTION_UM:.0f} um")
    for marker, index in channel_index.items():
        name = section.channel_names[index]
        where = f"{section.path}: the {marker} channel ({name!r})"
        if name in section.empty_channels:
            raise UnusableImageError(f"{where} has no finite pixel: every one is NaN or infinite")
        channel = section.data[index]
        brightest = np.iinfo(channel.dtype).max if channel.dtype.kind in "ui" else None
        low, high = channel.min(), channel.max()
        if low == high:
            what = "saturated" if high == brightest else "blank"
            raise UnusableImageError(f"{where} is {what}: every pixel is {high}")
        if high == brightest:
            share = float(np.count_nonzero(channel == brightest)) / channel.size
            if share > _MAX_SATURATED_FRACTION:
                raise UnusableImageError(
                    f"{where} is saturated: {share:.0%} of its pixels are at {brightest}, the brightest a "
                    f"{channel.dtype} pixel can be; image it with less exposure or gain")


def _eccentricity(mask: np.ndarray) -> float:
    """Eccentricity of the ellipse with the same second moments as a region.

    The same value as regionprops' ``eccentricity`` (to 1e-14), about ten times
    faster: that one builds its moments with einsum, per object.
    """
    rows, cols = np.nonzero(mask)
    low, high = np.linalg.eigvalsh(np.cov(rows, cols, bias=True))
    return float(np.sqrt(1 - low / high)) if high > 0 else 0.0


def _objects_table(marker: str, labels: np.ndarray, channels: list[str], stack: np.ndarray,
                   pixel_size_um: float) -> pd.DataFrame:
    """Position, size, shape and the mean of every channel over each object of one marker.

    ``stack`` holds the ``channels`` along its last axis, so one pass over the
    objects measures all of them.
    """
    props = regionprops_table(labels, intensity_image=stack, properties=("label", "centroid", "area", "intensity_mean"),
                              extra_properties=(_eccentricity,))
    table = pd.DataFrame({
        "marker": marker,
        "cell_id": props["label"].astype(int),
        "x_um": props["centroid-1"] * pixel_size_um,
        "y_um": props["centroid-0"] * pixel_size_um,
        "area_um2": props["area"] * pixel_size_um**2,
        "eccentricity": props["_eccentricity"],
    })
    for index, other in enumerate(channels):
        table[f"{other}_mean"] = props[f"intensity_mean-{index}"]
    return table


def _overlap_fractions(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each object's largest overlap with one object of the other label image, over the smaller one's area.

    Returns
    -------
    best_first, best_second : 1-D arrays
        Indexed by label value: the fraction for each object of ``first``, of ``second``.
    """
    best_first, best_second = np.zeros(int(first.max()) + 1), np.zeros(int(second.max()) + 1)
    both = (first > 0) & (second > 0)
    if both.any():
        # One integer key per pair of objects: a 1-D unique is much faster than a 2-D one.
        stride = np.int64(best_second.size)
        pairs, overlap = np.unique(first[both].astype(np.int64) * stride + second[both], return_counts=True)
        ids_first, ids_second = np.divmod(pairs, stride)
        smaller = np.minimum(np.bincount(first.ravel())[ids_first], np.bincount(second.ravel())[ids_second])
        np.maximum.at(best_first, ids_first, overlap / smaller)
        np.maximum.at(best_second, ids_second, overlap / smaller)
    return best_first, best_second


def _signal_threshold(image: np.ndarray, labels: np.ndarray, own_means: np.ndarray, *,
                      min_signal_fraction: float, pixel_size_um: float, margin_um: float = 2.0) -> float:
    """A marker's automatic signal threshold: background + a fraction of its objects' brightness.

    The background is the channel's median outside the marker's objects, grown
    by ``margin_um`` so the blur around bright objects is not taken for
    background. Scaling the threshold with the objects' own signal (rather
    than with the background noise) keeps it clear of the light that bright
    neighbours, haze and processes spill onto negative cells, which grows
    with the signal, at any signal-to-noise ratio.
    """
    if len(own_means) == 0:
        return np.nan  # no object of the marker to calibrate the threshold on
    margin_px = max(1, round(margin_um / pixel_size_um))
    background = float(np.median(image[~ndi.binary_dilation(labels > 0, iterations=margin_px)]))
    return background + min_signal_fraction * (float(np.median(own_means)) - background)


def segment_markers(images: Mapping[str, np.ndarray], *, pixel_size_um: float,
                    settings: CountSettings = CountSettings(), progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """Segment each marker's channel with its engine (step 1).

    Parameters
    ----------
    images : dict
        Marker -> (Y, X) channel.
    pixel_size_um : float
    settings : CountSettings
        ``model`` and ``marker_models`` choose the engines.
    progress, cancel
        See :mod:`dcxcount.progress`; checked before each marker.

    Returns
    -------
    dict
        Marker -> label image (0 background, 1..N objects; a label is the object's ``cell_id``).
    """
    labels = {}
    for done, (marker, image) in enumerate(images.items()):
        report(progress, cancel, done / max(len(images), 1), f"segment {marker}")
        engine = load_engine(settings.marker_models.get(marker, settings.model), kind=kind_of_marker(marker))
        labels[marker] = engine.segment(image, pixel_size_um=pixel_size_um)
    return labels


def find_frame(labels: Mapping[str, np.ndarray], *, pixel_size_um: float, gcl_mask: np.ndarray | None = None,
               gcl_outline: str | os.PathLike | None = None) -> LayerFrame:
    """The section's layer frame (step 2): from a GCL outline file, a GCL mask, or the nuclei.

    Parameters
    ----------
    labels : dict
        Marker -> label image; NeuN (else DAPI) nuclei and DCX somata find the
        GCL when neither ``gcl_outline`` nor ``gcl_mask`` is given.
    pixel_size_um : float
    gcl_mask : (Y, X) bool array, optional
        A GCL mask in memory (e.g. edited in a viewer, or saved by an earlier count).
    gcl_outline : path, optional
        A person's outline file (see :mod:`dcxcount.outlines`).

    Raises
    ------
    dcxcount.gcl.NoGCLFoundError
        No GCL in the nuclei, or the given mask encloses no hilus.
    dcxcount.outlines.OutlineError
        The outline cannot be read or encloses no hilus.
    """
    shape = next(iter(labels.values())).shape
    if gcl_outline is not None:
        return outline_frame(gcl_outline, shape=shape, pixel_size_um=pixel_size_um)
    if gcl_mask is not None:
        if np.shape(gcl_mask) != shape:
            raise ValueError(f"the GCL mask is {np.shape(gcl_mask)} px, the section {shape} px")
        return frame_from_gcl(np.asarray(gcl_mask, bool), pixel_size_um=pixel_size_um)
    return find_layer_frame(labels["neun" if "neun" in labels else "dapi"], pixel_size_um=pixel_size_um,
                            somata=labels.get("dcx"))


def stage_dcx_cells(tracing: Tracing, *, frame: LayerFrame, rules: StagingRules = StagingRules(),
                    corrections: Corrections = Corrections()) -> pd.DataFrame:
    """Process features and stages of every DCX cell (step 4), a person's stage calls applied.

    Parameters
    ----------
    tracing : Tracing
        From :func:`dcxcount.tracing.trace_processes` (step 3).
    frame : LayerFrame
    rules : StagingRules
        Its ``ml_depth`` is also where the features count ML branch points and tips.
    corrections : Corrections
        A person's stage calls replace the rules' for those cells.

    Returns
    -------
    DataFrame
        Indexed by ``cell_id``: ``FEATURE_COLUMNS``, ``stage``, ``stage_group``,
        ``stage_margin``, ``stage_doubtful`` and ``stage_source`` ("rules" or "person").
    """
    features = measure_processes(tracing, frame=frame, ml_depth=rules.ml_depth)
    staged = features.join(stage_cells(features, gcl_thickness_um=frame.thickness_um, rules=rules))
    staged["stage_source"] = "rules"
    for cell_id, (stage, _) in corrections.stages.items():
        if cell_id in staged.index:
            staged.loc[cell_id, ["stage", "stage_group", "stage_source"]] = [stage, STAGE_GROUPS[stage], "person"]
    return staged


def colabel_objects(labels: Mapping[str, np.ndarray], images: Mapping[str, np.ndarray], frame: LayerFrame, *,
                    dcx_cells: pd.DataFrame, settings: CountSettings = CountSettings(),
                    pixel_size_um: float) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every object of every marker with its place, co-labels and phenotype (step 5).

    Parameters
    ----------
    labels, images : dict
        Marker -> label image, marker -> channel.
    frame : LayerFrame
    dcx_cells : DataFrame
        From :func:`stage_dcx_cells`, joined onto the DCX rows by ``cell_id``.
    settings : CountSettings
        The co-labelling criteria.
    pixel_size_um : float

    Returns
    -------
    cells : DataFrame
        One row per object (columns in docs/output.md).
    thresholds : dict
        Marker -> the signal threshold used (NaN where the marker has no object).
    """
    stack = np.stack([np.asarray(image, np.float32) for image in images.values()], axis=-1)
    tables = {marker: _objects_table(marker, marker_labels, list(images), stack, pixel_size_um)
              for marker, marker_labels in labels.items()}
    thresholds = {}
    for marker, table in tables.items():
        fixed = settings.mean_thresholds.get(marker)
        thresholds[marker] = float(fixed) if fixed is not None else _signal_threshold(
            images[marker], labels[marker], table[f"{marker}_mean"].to_numpy(),
            min_signal_fraction=settings.min_signal_fraction, pixel_size_um=pixel_size_um)
    overlaps = {}
    for first, second in itertools.combinations(labels, 2):
        overlaps[first, second], overlaps[second, first] = _overlap_fractions(labels[first], labels[second])
    for marker, table in tables.items():
        table["depth"], table["in_gcl"] = frame.sample(table["x_um"], table["y_um"])
        table["counted"] = (table["depth"] >= -settings.sgz_hilus_um / frame.thickness_um) & (table["depth"] <= 1.0)
        for other in labels:
            if other == marker:
                continue
            overlap = overlaps[marker, other][table["cell_id"].to_numpy()]
            table[f"{other}_overlap"] = overlap
            # Either criterion suffices (docs/biology.md): overlap finds dim co-labels the other
            # marker's segmentation outlined, the signal those it missed.
            table[f"{other}_positive"] = ((overlap >= settings.min_overlap_fraction)
                                          | (table[f"{other}_mean"] >= thresholds[other]))
    if "dcx" in tables:
        tables["dcx"] = tables["dcx"].join(dcx_cells, on="cell_id")
    cells = pd.concat(tables.values(), ignore_index=True)
    cells["phenotype"] = _phenotypes(cells, _panel(labels))
    return cells, thresholds


def section_tables(cells: pd.DataFrame, *, thresholds: Mapping[str, float], frame: LayerFrame,
                   settings: CountSettings = CountSettings(),
                   corrections: Corrections = Corrections()) -> tuple[pd.DataFrame, dict]:
    """The section's counts and measures (step 6), a person's exclusions applied.

    Parameters
    ----------
    cells : DataFrame
        From :func:`colabel_objects`.
    thresholds : dict
        Marker -> signal threshold used.
    frame : LayerFrame
    settings : CountSettings
    corrections : Corrections
        Excluded objects get ``excluded`` True and are not counted.

    Returns
    -------
    cells : DataFrame
        ``cells`` with ``excluded``.
    summary : dict
        One row of sections.csv without the samplesheet and image columns.
    """
    cells = cells.copy()
    excluded = {key for key in corrections.excluded}
    cells["excluded"] = [(marker, int(cell_id)) in excluded for marker, cell_id in zip(cells["marker"], cells["cell_id"])]
    cells["counted"] = cells["counted"].astype(bool) & ~cells["excluded"]
    markers = list(thresholds)
    counted = cells[cells["counted"]]
    dcx = counted[counted["marker"] == "dcx"]
    summary = {
        "gcl_area_mm2": frame.gcl_area_mm2,
        "sgz_length_mm": frame.sgz_length_mm,
        "gcl_thickness_um": frame.thickness_um,
        "dcx_neun_count": int(dcx.get("neun_positive", pd.Series(False, index=dcx.index)).sum()),
    }
    for marker in markers:
        summary[f"{marker}_count"] = int((counted["marker"] == marker).sum())
    for stage in STAGES:
        summary[f"stage_{stage}"] = int((dcx["stage"] == stage).sum())
    summary["maturation_index"] = (summary["stage_E"] + summary["stage_F"]) / len(dcx) if len(dcx) else np.nan
    summary["stage_doubtful"] = int(dcx["stage_doubtful"].astype(bool).sum()) if len(dcx) else 0
    summary["stage_by_person"] = int((dcx["stage_source"] == "person").sum()) if len(dcx) else 0
    summary["excluded"] = int(cells["excluded"].sum())
    summary["dcx_per_mm2_gcl"] = summary["dcx_count"] / frame.gcl_area_mm2 if frame.gcl_area_mm2 else np.nan
    summary.update({f"{marker}_threshold": value for marker, value in thresholds.items()})
    summary.update(_analogue_phenotype_counts(counted))
    summary.update(_phenotype_counts(counted, markers=[m for m in settings.phenotype_markers if m in markers],
                                     panel=_panel(thresholds)))
    summary.update(phenotype_percentages(pd.DataFrame([summary])).iloc[0].to_dict())
    return cells, summary


def count_section(section: Section, *, settings: CountSettings = CountSettings(),
                  gcl_outline: str | os.PathLike | None = None, gcl_mask: np.ndarray | None = None,
                  labels: Mapping[str, np.ndarray] | None = None, corrections: Corrections = Corrections(),
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> SectionResult:
    """Segment, place, trace, stage and co-label every object in one section.

    The six steps (:func:`segment_markers`, :func:`find_frame`,
    :func:`dcxcount.tracing.trace_processes`, :func:`stage_dcx_cells`,
    :func:`colabel_objects`, :func:`section_tables`) in order. Labels and a GCL
    given here, computed earlier or corrected by a person, replace the steps
    that would make them, so a corrected section is recounted without
    segmenting it again.

    Parameters
    ----------
    section : Section
        A section read by :func:`dcxcount.io.read_section`.
    settings : CountSettings
    gcl_outline : path, optional
        A person's outline of the GCL (ImageJ ROI or ROI set, GeoJSON or mask
        TIFF; see :mod:`dcxcount.outlines`), used instead of the GCL detected
        from the nuclei.
    gcl_mask : (Y, X) bool array, optional
        A GCL mask in memory, used the same way.
    labels : dict, optional
        Marker -> label image to use instead of segmenting that marker.
    corrections : Corrections
        A person's stage calls and excluded objects, applied on top of the rules.
    progress : callable, optional
        ``progress(fraction, message)`` as each step starts (:mod:`dcxcount.progress`).
    cancel : CancelToken, optional
        Checked between steps; when cancelled, :class:`~dcxcount.progress.Cancelled` is raised.

    Raises
    ------
    dcxcount.io.SectionReadError
        A marker's channel is missing.
    UnusableImageError
        The image is too small, or a marker's channel is blank, saturated or
        has no finite pixel (see :func:`check_image`); or a given label image
        or GCL mask does not fit the image.
    dcxcount.gcl.NoGCLFoundError
        No granule cell layer in the nuclear channel.
    dcxcount.outlines.OutlineError
        ``gcl_outline`` cannot be read or encloses no hilus.
    dcxcount.progress.Cancelled
        ``cancel`` was cancelled.
    """
    px = section.pixel_size_um
    channel_index = _markers_to_count(section, settings)
    check_image(section, channel_index)
    images = {marker: section.data[index] for marker, index in channel_index.items()}
    given = _given_labels(labels or {}, images, section)
    if gcl_mask is not None and np.shape(gcl_mask) != section.data.shape[-2:]:
        raise UnusableImageError(f"{section.path}: the GCL mask is {np.shape(gcl_mask)} px, the image "
                                 f"{section.data.shape[-2:]} px")
    # A user's outline is read first, so a bad one fails before the slow segmentation.
    frame = None if gcl_outline is None else outline_frame(gcl_outline, shape=section.data.shape[-2:],
                                                           pixel_size_um=px)
    to_segment = {marker: image for marker, image in images.items() if marker not in given}
    n_steps = len(to_segment) + 4
    found = segment_markers(to_segment, pixel_size_um=px, settings=settings, cancel=cancel,
                            progress=sub_progress(progress, 0.0, len(to_segment) / n_steps))
    labels = {marker: given[marker] if marker in given else found[marker] for marker in images}

    def step(done: int, name: str) -> None:
        report(progress, cancel, (len(to_segment) + done) / n_steps, name)

    step(0, "layer frame")
    if frame is None:
        frame = find_frame(labels, pixel_size_um=px, gcl_mask=gcl_mask)
    step(1, "trace processes")
    tracing = trace_processes(images["dcx"], labels["dcx"], frame, settings=settings.tracing)
    step(2, "stages")
    dcx_cells = stage_dcx_cells(tracing, frame=frame, rules=settings.staging, corrections=corrections)
    step(3, "co-labels and tables")
    cells, thresholds = colabel_objects(labels, images, frame, dcx_cells=dcx_cells, settings=settings,
                                        pixel_size_um=px)
    cells, counts = section_tables(cells, thresholds=thresholds, frame=frame, settings=settings,
                                   corrections=corrections)
    summary = {
        "pixel_size_um": px,
        "projection": section.projection,
        "nonfinite_px": section.nonfinite_px,
        "channels": ";".join(f"{m}={section.channel_names[i]}" for m, i in channel_index.items()),
        "gcl_source": "detected" if gcl_outline is None and gcl_mask is None else
                      "mask" if gcl_outline is None else str(gcl_outline),
        **counts,
    }
    report(progress, None, 1.0, "done")
    return SectionResult(cells=cells, summary=summary, labels=labels, frame=frame, processes=tracing.image,
                         corrections=corrections)


def _given_labels(labels: Mapping[str, np.ndarray], images: Mapping[str, np.ndarray],
                  section: Section) -> dict[str, np.ndarray]:
    """Label images given for the section's markers, checked against its image."""
    given = {}
    for marker, image in labels.items():
        if marker not in images:
            continue  # a marker this count does not count (its channel is not in the file)
        image = np.asarray(image)
        if image.shape != section.data.shape[-2:] or image.dtype.kind not in "iu":
            raise UnusableImageError(f"{section.path}: the {marker} labels are a {image.dtype} image of "
                                     f"{image.shape} px; the section needs whole-number labels of "
                                     f"{section.data.shape[-2:]} px")
        given[marker] = image.astype(np.int32, copy=False)
    return given


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


def _panel(labels: dict[str, np.ndarray]) -> list[str]:
    """The markers a phenotype spells out: all but DAPI (on every nucleus), alphabetical."""
    return sorted(m for m in labels if m != "dapi")


def _phenotype_counts(counted: pd.DataFrame, *, markers: list[str], panel: list[str]) -> dict[str, int]:
    """Counted cells of each of ``markers`` per combination of the other panel markers.

    Every combination gets a column, zeros included, so that sections sum to
    animals without gaps: e.g. ``brdu_dcx+neun-_count`` is the number of
    counted BrdU+ cells that are DCX+ and NeuN-.
    """
    counts = {}
    for marker in markers:
        others = [m for m in panel if m != marker]
        if not others:
            continue
        cells = counted[counted["marker"] == marker]
        calls = cells[[f"{other}_positive" for other in others]].astype(bool).to_numpy()
        for signs in itertools.product((True, False), repeat=len(others)):
            phenotype = "".join(f"{other}{'+' if sign else '-'}" for other, sign in zip(others, signs))
            counts[f"{marker}_{phenotype}_count"] = int((calls == signs).all(axis=1).sum())
    return counts


def _phenotypes(cells: pd.DataFrame, panel: list[str]) -> pd.Series:
    """Marker combination per object, e.g. ``brdu+dcx-neun+`` (DAPI, on every nucleus, is left out)."""
    parts = []
    for marker in panel:
        column = cells.get(f"{marker}_positive", pd.Series(False, index=cells.index))
        positive = (cells["marker"] == marker) | column.fillna(False).astype(bool)
        parts.append(np.where(positive, f"{marker}+", f"{marker}-"))
    return pd.Series(["".join(p) for p in zip(*parts)], index=cells.index) if parts else pd.Series("", index=cells.index)
