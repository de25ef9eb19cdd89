"""Per-group statistics of the per-animal table: n animals, mean, SD and SEM per metric.

The animal is the statistical unit (docs/biology.md): every figure here is
computed over the rows of ``animals.csv``, one per animal, never over
sections. A group's SD is the sample SD (n - 1) of its animals' values and the
SEM is SD / sqrt(n), so they are what Prism or R report from the same column.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .vocabulary import STAGES

__all__ = ["GROUP_COLUMNS", "group_metrics", "groups_table", "stage_shares"]

GROUP_COLUMNS = ("group", "metric", "n_animals", "n_missing", "mean", "sd", "sem")
"""The columns of groups.csv, in order (docs/output.md)."""

# Per-animal columns that describe how the study was sampled or run, not a measurement:
# a mean of section intervals is no result.
_NOT_METRICS = {"animal", "group", "n_sections", "n_failed", "section_interval", "hemispheres", "thickness_um"}


def stage_shares(animals: pd.DataFrame) -> pd.DataFrame:
    """Each animal's stage composition: 100 x ``stage_X`` / ``dcx_count``.

    Parameters
    ----------
    animals : DataFrame
        ``animals.csv`` (:func:`dcxcount.estimators.animals_table`).

    Returns
    -------
    DataFrame
        Same index, columns ``pct_stage_A`` ... ``pct_stage_F``; NaN where the
        animal has no DCX+ cell (a share of nothing is not 0 %).
    """
    dcx = pd.to_numeric(animals["dcx_count"], errors="coerce").astype("float64")
    dcx = dcx.where(dcx != 0)
    return pd.DataFrame({f"pct_stage_{stage}": 100 * pd.to_numeric(animals[f"stage_{stage}"], errors="coerce")
                         .astype("float64") / dcx for stage in STAGES}, index=animals.index)


def group_metrics(animals: pd.DataFrame) -> list[str]:
    """The per-animal columns :func:`groups_table` summarises, in the order of ``animals.csv``.

    Every numeric measurement (counts, stage counts, shares, the maturation
    index, densities, estimated totals, the CE, the GCL volume), then the stage
    shares of :func:`stage_shares`; not the sampling settings or section tallies.
    """
    metrics = [str(c) for c in animals.columns if str(c) not in _NOT_METRICS
               and pd.api.types.is_numeric_dtype(animals[c]) and not pd.api.types.is_bool_dtype(animals[c])]
    return metrics + [f"pct_stage_{stage}" for stage in STAGES if f"stage_{stage}" in animals]


def groups_table(animals: pd.DataFrame) -> pd.DataFrame:
    """Group statistics of every per-animal metric: the animal is the unit.

    Parameters
    ----------
    animals : DataFrame
        One row per animal with ``animal``, ``group`` and the metrics
        (``animals.csv``).

    Returns
    -------
    DataFrame
        One row per group (in order of first appearance) and metric (in the
        order of :func:`group_metrics`), columns :data:`GROUP_COLUMNS`:

        - ``n_animals``: animals of the group with a value for the metric;
        - ``n_missing``: animals of the group without one (no ``ok`` section,
          a share of zero cells, a CE from fewer than 3 sections);
        - ``mean``, ``sd`` (sample SD, n - 1; blank for one animal) and
          ``sem`` = sd / sqrt(n_animals).
    """
    table = animals.join(stage_shares(animals)) if "dcx_count" in animals else animals.copy()
    metrics = group_metrics(animals)
    rows = []
    for group, members in table.groupby(table["group"].fillna("").astype(str), sort=False):
        for metric in metrics:
            values = pd.to_numeric(members[metric], errors="coerce").astype("float64").to_numpy()
            finite = values[np.isfinite(values)]
            n = int(finite.size)
            sd = float(np.std(finite, ddof=1)) if n >= 2 else math.nan
            rows.append({"group": group, "metric": metric, "n_animals": n, "n_missing": int(values.size - n),
                         "mean": float(finite.mean()) if n else math.nan, "sd": sd,
                         "sem": sd / math.sqrt(n) if n >= 2 else math.nan})
    return pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
