"""Per-animal tables and estimates from per-section counts.

The animal is the statistical unit: a per-section n must never stand in for
the per-animal n. :func:`animals_table` folds the per-section results into one
row per animal, with the estimates reviewers ask for (estimated totals, the
Gundersen-Jensen CE, Cavalieri volume) next to densities (docs/biology.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .samplesheet import PER_ANIMAL_COLUMNS, ROW_OVERRIDES, whole_if_possible
from .vocabulary import STAGES

__all__ = ["animals_table", "gundersen_jensen_ce", "phenotype_percentages"]

_STAGE_COLUMNS = tuple(f"stage_{stage}" for stage in STAGES)

_SECTION_COLUMNS = (
    "animal",
    "group",
    "section",
    "status",
    "dcx_count",
    "neun_count",
    "dcx_neun_count",
    "gcl_area_mm2",
    *_STAGE_COLUMNS,
)

# Gundersen et al. 1999: alpha(m) for smoothness class m of the measurement function.
_ALPHA = {0: 1 / 12, 1: 1 / 240}


def animals_table(
    sections: pd.DataFrame,
    *,
    section_interval: int,
    hemispheres: int,
    thickness_um: float | None = None,
    smoothness_m: int = 1,
) -> pd.DataFrame:
    """Fold per-section results into one row per animal, with estimates.

    Parameters
    ----------
    sections
        Per-section table, one row per samplesheet row, with at least
        ``animal, group, section, status, dcx_count, neun_count,
        dcx_neun_count, gcl_area_mm2, stage_A ... stage_F``. Every
        ``*_count`` column is summed (e.g. ``brdu_count``). Optional per-row
        ``section_interval``, ``hemispheres``, ``thickness_um`` columns
        override the keyword settings where set.
    section_interval
        Every k-th section was stained and counted (k >= 1).
    hemispheres
        Hemispheres counted per section: 1 or 2.
    thickness_um
        Section thickness in micrometres, for the Cavalieri volume; ``None``
        when unknown.
    smoothness_m
        Smoothness class passed to :func:`gundersen_jensen_ce` (0 or 1).

    Returns
    -------
    pandas.DataFrame
        One row per animal, in first-appearance order, columns:

        - ``animal, group``
        - ``n_sections`` (sections with ``status == "ok"``; only these are
          counted), ``n_failed`` (the others)
        - every ``*_count`` column and ``stage_A ... stage_F``: sums over the
          ok sections, nullable ``Int64`` when the counts are whole. A sum is
          missing when the animal has no ok section or one of its ok sections
          lacks that count, since a partial sum would read as a real total.
        - ``maturation_index`` = (stage_E + stage_F) / dcx_count
        - ``stage_doubtful`` (summed, when the sections have it) and
          ``pct_stage_doubtful`` = 100 * stage_doubtful / dcx_count: the share of
          stage calls whose processes' ownership is in doubt
        - ``pct_dcx_neun`` = 100 * dcx_neun_count / dcx_count
        - ``pct_brdu_dcx``, ``pct_brdu_neun_dcxneg`` (and ``edu``) = 100 * BrdU+DCX+
          (BrdU+NeuN+DCX-) / BrdU+, when the sections have those counts
        - ``pct_<marker>_<phenotype>`` for each phenotype count
          ``<marker>_<phenotype>_count`` (e.g. ``pct_brdu_dcx+neun-``): see
          :func:`phenotype_percentages`; like all shares here, a ratio of the
          animal's summed counts
        - ``gcl_area_mm2`` (sum), ``dcx_per_mm2_gcl`` = dcx_count / gcl_area_mm2
        - ``section_interval, hemispheres, thickness_um``: the settings used
        - ``estimated_total_<name>`` for each ``<name>_count`` (e.g.
          ``estimated_total_dcx``, ``estimated_total_neun``) = count x
          section_interval x (2 if hemispheres == 1 else 1). This is the
          field-default *uncorrected profile-count* estimate of the total per
          animal (both dentate gyri): it has no Abercrombie or optical-
          fractionator correction, so objects cut by two sections may be
          counted twice. Failed sections are not replaced, so an animal with
          ``n_failed > 0`` is underestimated.
        - ``ce_dcx``: Gundersen-Jensen coefficient of error of the DCX
          estimate from the ok sections' counts ordered by ``section``; NaN
          with fewer than 3 sections.
        - ``gcl_volume_mm3`` (Cavalieri) = summed GCL area x thickness (mm) x
          section_interval x (2 if hemispheres == 1 else 1); NaN when the
          thickness is unknown.

        Ratios with a zero or missing denominator are NaN.

    Raises
    ------
    ValueError
        When a required column is missing, a setting is out of range, or the
        rows of one animal disagree on ``group`` or a sampling setting.
    """
    missing = [column for column in _SECTION_COLUMNS if column not in sections.columns]
    if missing:
        raise ValueError(f"sections table lacks column(s) {missing}")
    defaults = {
        "group": "",
        "section_interval": section_interval,
        "hemispheres": hemispheres,
        "thickness_um": thickness_um,
    }
    animals = pd.Index(sections["animal"].unique(), name="animal")
    table = pd.DataFrame(
        {column: _per_animal(sections, column, default=defaults[column]) for column in PER_ANIMAL_COLUMNS}
    ).reindex(animals)

    ok = sections[sections["status"].eq("ok")]
    counts = [column for column in sections.columns if str(column).endswith("_count")]
    # Optional, so that tables written before the flag existed still aggregate.
    doubtful = ["stage_doubtful"] if "stage_doubtful" in sections else []
    summed = [*counts, *_STAGE_COLUMNS, *doubtful]
    totals = ok.groupby("animal", sort=False)[[*summed, "gcl_area_mm2"]].sum()
    # groupby sums skip missing values; a partial sum would pose as a total.
    incomplete = ok[[*summed, "gcl_area_mm2"]].isna().groupby(ok["animal"], sort=False).any()
    totals = totals.mask(incomplete).reindex(animals)

    # Settings always resolve (the keywords are the fallback), so plain ints suffice.
    table = table.astype({"section_interval": "int64", "hemispheres": "int64"})
    table["n_sections"] = ok.groupby("animal", sort=False).size().reindex(animals, fill_value=0)
    table["n_failed"] = sections.groupby("animal", sort=False).size() - table["n_sections"]
    for column in summed:
        table[column] = whole_if_possible(totals[column])
    table["maturation_index"] = _ratio(table["stage_E"] + table["stage_F"], table["dcx_count"])
    for column in doubtful:
        table[f"pct_{column}"] = 100 * _ratio(table[column], table["dcx_count"])
    table["pct_dcx_neun"] = 100 * _ratio(table["dcx_neun_count"], table["dcx_count"])
    # The seed study's read-outs: of the cells born at the BrdU/EdU pulse, the share
    # still immature (DCX+) and the share that became mature neurons (NeuN+DCX-).
    for analogue in ("brdu", "edu"):
        if f"{analogue}_dcx_count" in table:
            table[f"pct_{analogue}_dcx"] = 100 * _ratio(table[f"{analogue}_dcx_count"], table[f"{analogue}_count"])
            table[f"pct_{analogue}_neun_dcxneg"] = 100 * _ratio(table[f"{analogue}_neun_dcxneg_count"],
                                                                table[f"{analogue}_count"])
    table = table.join(phenotype_percentages(table))
    table["gcl_area_mm2"] = totals["gcl_area_mm2"].astype("float64")
    table["dcx_per_mm2_gcl"] = _ratio(table["dcx_count"], table["gcl_area_mm2"])

    # One hemisphere counted stands for both dentate gyri.
    represented = table["section_interval"] * table["hemispheres"].map({1: 2, 2: 1})
    for column in counts:
        table[f"estimated_total_{column.removesuffix('_count')}"] = table[column] * represented
    ordered = ok.sort_values("section", kind="stable").groupby("animal", sort=False)["dcx_count"]
    table["ce_dcx"] = ordered.agg(
        lambda dcx: gundersen_jensen_ce(dcx.to_numpy(dtype="float64"), smoothness_m=smoothness_m)
    ).reindex(animals).astype("float64")
    table["gcl_volume_mm3"] = (
        table["gcl_area_mm2"] * table["thickness_um"].astype("float64") / 1000 * represented
    )

    first = ["group", "n_sections", "n_failed", *summed, "maturation_index", *(f"pct_{c}" for c in doubtful),
             "pct_dcx_neun", "gcl_area_mm2", "dcx_per_mm2_gcl", "section_interval", "hemispheres", "thickness_um"]
    return table[first + [c for c in table.columns if c not in first]].reset_index()


def phenotype_percentages(counts: pd.DataFrame) -> pd.DataFrame:
    """Each phenotype's share of its marker's cells, in percent.

    Parameters
    ----------
    counts
        Per-section or per-animal counts with phenotype columns
        ``<marker>_<phenotype>_count`` (e.g. ``brdu_dcx+neun-_count``: BrdU+
        cells that are DCX+ and NeuN-) next to ``<marker>_count``.

    Returns
    -------
    pandas.DataFrame
        Same index, one column ``pct_<marker>_<phenotype>`` = 100 x
        ``<marker>_<phenotype>_count`` / ``<marker>_count`` per phenotype
        column (e.g. ``pct_brdu_dcx+neun-``); NaN where ``<marker>_count`` is 0
        or missing.
    """
    totals = [c.removesuffix("_count") for c in counts.columns
              if str(c).endswith("_count") and not set("+-") & set(str(c))]
    shares = {}
    for column in counts.columns:
        if not (str(column).endswith("_count") and set("+-") & set(str(column))):
            continue
        # The longest matching total, so a marker named like another's prefix is not mistaken.
        marker = max((m for m in totals if column.startswith(f"{m}_")), key=len, default=None)
        if marker is not None:
            shares[f"pct_{column.removesuffix('_count')}"] = 100 * _ratio(counts[column], counts[f"{marker}_count"])
    return pd.DataFrame(shares, index=counts.index)


def gundersen_jensen_ce(counts: Sequence[float], *, smoothness_m: int = 1) -> float:
    """Coefficient of error of a total estimated from systematic sections.

    The estimator of Gundersen & Jensen (1987, J Microsc 147:229-263) in the
    form of Gundersen, Jensen, Kieu & Nielsen (1999, J Microsc 193:199-211),
    for counts Q_1..Q_n from a systematic uniformly random series of sections::

        A = sum Q_i^2,  B = sum Q_i Q_(i+1),  C = sum Q_i Q_(i+2)
        noise    = sum Q_i                                  (Poisson counting noise)
        VAR_SURS = alpha(m) * (3 (A - noise) - 4 B + C),    alpha(0) = 1/12, alpha(1) = 1/240
        CE       = sqrt(noise + VAR_SURS) / sum Q_i

    The noise is taken out of A because each Q_i^2 carries it once, and
    added back once as its own variance term. A negative VAR_SURS (possible
    for smooth, noisy series) is set to 0.

    Parameters
    ----------
    counts
        Per-section counts in section order (order matters).
    smoothness_m
        Smoothness class of the measurement function along the axis: 0 for
        irregular, 1 for smooth (the usual choice for regions such as the
        dentate gyrus).

    Returns
    -------
    float
        The CE, or NaN with fewer than 3 sections, a zero total, or a
        missing count.
    """
    if smoothness_m not in _ALPHA:
        raise ValueError(f"smoothness_m must be one of {sorted(_ALPHA)}, got {smoothness_m!r}")
    q = np.asarray(counts, dtype="float64")
    if q.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {q.shape}")
    if np.any(q < 0):
        raise ValueError("counts must not be negative")
    total = q.sum()
    if q.size < 3 or not np.isfinite(total) or total == 0:
        return math.nan
    a, b, c = q @ q, q[:-1] @ q[1:], q[:-2] @ q[2:]
    noise = total
    var_surs = max(0.0, _ALPHA[smoothness_m] * (3 * (a - noise) - 4 * b + c))
    return math.sqrt(noise + var_surs) / total


def _per_animal(sections: pd.DataFrame, column: str, *, default: object) -> pd.Series:
    """The one value each animal's rows give ``column``, rows' blanks taking ``default``."""
    if column in sections.columns:
        values = sections[column] if default is None else sections[column].fillna(default)
    else:
        values = pd.Series(math.nan if default is None else default, index=sections.index)
    by_animal = values.groupby(sections["animal"], sort=False)
    disagree = by_animal.nunique(dropna=False).loc[lambda n: n > 1]
    if len(disagree):
        raise ValueError(f"rows of animal(s) {list(disagree.index)} disagree on {column}")
    chosen = by_animal.first()
    if column in ROW_OVERRIDES:
        is_valid, rule, dtype = ROW_OVERRIDES[column]
        bad = chosen[chosen.notna() & ~chosen.astype("float64").map(is_valid)]
        if len(bad):
            raise ValueError(f"{column} must be {rule}; got {dict(bad)}")
        chosen = chosen.astype(dtype)
    return chosen


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    denominator = denominator.astype("float64")
    return numerator.astype("float64") / denominator.where(denominator != 0)
