"""Stages A-F of DCX+ cells from their process features.

:func:`stage_cells` applies :class:`StagingRules` (Pluempe et al. 2006,
docs/biology.md) to the features :func:`dcxcount.features.process_features`
measures, and reports how close each call came to a threshold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .vocabulary import STAGE_GROUPS

__all__ = ["StagingRules", "stage_cells"]


@dataclass(frozen=True)
class StagingRules:
    """Thresholds of the stage rules; the defaults are docs/biology.md's typical cut-offs.

    The rules are tried in order; the first that holds gives the stage:

    1. A: ``longest_path_um < stub_um``;
    2. F: the cell reaches the ML (``max_depth > ml_depth``) with at least
       ``f_min_branch_points`` branch points or ``f_min_tips`` tips beyond ``ml_depth``;
    3. E: reaches the ML with a branch point there;
    4. D: reaches the ML;
    5. B: the main process is tangential (``process_angle_deg > radial_max_angle_deg``),
       or it is short (``longest_path_um < short_fraction * GCL thickness``) *and* ends
       in the inner GCL (``max_depth < inner_gcl_depth``);
    6. C: otherwise (a radial process that runs into the GCL but not into the ML).

    Why B needs short *and* shallow: docs/biology.md defines C by where its process
    goes (radially into the GCL) and B by its process being short or tangential.
    Path length alone misjudges a radial process from a soma that already sits
    some way into the GCL: 20 um of radial process from a soma at depth 0.3 end
    half-way through the GCL, which is C, yet count as short against a 70 um
    layer. A radial process is therefore B only when it is both short and stays
    in the inner part of the GCL, the SGZ band and inner third where DCX somata
    sit; ``inner_gcl_depth`` 0.4 is that third plus a little room for the depth
    map's error. The synthetic generator draws C this way too (radial, ending at
    depth 0.5-0.9, 14-35 um from an SGZ soma at 70 um thickness).

    Attributes
    ----------
    stub_um : float
        A: longest path from the soma shorter than this.
    short_fraction : float
        B: longest path shorter than this fraction of the GCL thickness...
    inner_gcl_depth : float
        ...while the cell stays shallower than this layer depth; or
    radial_max_angle_deg : float
        ...main process more than this far from the radial direction (tangential).
    ml_depth : float
        Layer depth of the GCL/ML border; processes beyond it reach the ML. Give
        the same value to :func:`process_features`, which counts the branch points
        and tips beyond it.
    f_min_branch_points, f_min_tips : int
        F: at least this many branch points, or tips, beyond ``ml_depth``.
    doubtful_shared_um : float
        Not a stage rule: a call is flagged ``stage_doubtful`` when more than this
        length of the cell's processes is also held by another cell's trace
        (``process_shared_um``), or its processes run across another soma
        (``somata_crossed`` > 0). On synthetic sections such calls are right far
        less often (docs/validation.md, DCX staging); their share per animal shows
        whether crowding, which grows with the density of DCX cells, differs between
        groups.
    """

    stub_um: float = 10.0
    short_fraction: float = 0.5
    inner_gcl_depth: float = 0.4
    radial_max_angle_deg: float = 45.0
    ml_depth: float = 1.0
    f_min_branch_points: int = 2
    f_min_tips: int = 3
    doubtful_shared_um: float = 6.0


def stage_cells(features: pd.DataFrame, *, gcl_thickness_um: float,
                rules: StagingRules = StagingRules()) -> pd.DataFrame:
    """Stage A-F, stage group and stage margin of each cell from its process features.

    Parameters
    ----------
    features : pandas.DataFrame
        ``FEATURE_COLUMNS`` per cell (as from :func:`dcxcount.features.process_features`).
    gcl_thickness_um : float
        GCL thickness, the scale of the B rule's "short".
    rules : StagingRules
        The thresholds; see :class:`StagingRules` for the rules.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``features``: ``stage`` (A-F), ``stage_group``
        (proliferative, intermediate, postmitotic), ``stage_margin`` and
        ``stage_doubtful``. The margin is how far
        the cell is from the nearest threshold that would change its stage. Each
        comparison's distance is a fraction: a length, angle or count as a fraction
        of its threshold (counts are integers, so their border lies half a count
        below the threshold), a layer depth in GCL thicknesses. The margin is the
        smallest distance over the comparisons that decided the call: the rule that
        gave the stage and every earlier rule that did not hold (an "and" is as
        far from flipping as its nearest part when it holds, its farthest when it
        does not; an "or" the other way round). 0 means on a border; a stage that
        hangs on one spurious branch point has a margin of a quarter to a half.
        ``stage_doubtful`` says the processes' ownership is in doubt (see
        ``StagingRules.doubtful_shared_um``); it never changes the stage.

    Warns
    -----
    UserWarning
        When ``features`` were counted in the ML beyond another depth
        (``attrs["ml_depth"]``) than ``rules.ml_depth``.
    """
    measured_at = features.attrs.get("ml_depth", rules.ml_depth)
    if measured_at != rules.ml_depth:
        warnings.warn(f"branch points and tips were counted beyond depth {measured_at}, the rules use "
                      f"ml_depth={rules.ml_depth}; pass ml_depth=rules.ml_depth to process_features",
                      stacklevel=2)
    # Signed distances: positive where a comparison holds, negative where it fails.
    length = features["longest_path_um"].to_numpy(float)
    depth = features["max_depth"].to_numpy(float)
    short_um = rules.short_fraction * gcl_thickness_um
    stub = (rules.stub_um - length) / rules.stub_um
    reaches_ml = depth - rules.ml_depth
    branched = _at_least(features["n_branch_points_ml"], 1)
    many = np.maximum(_at_least(features["n_branch_points_ml"], rules.f_min_branch_points),
                      _at_least(features["n_tips_ml"], rules.f_min_tips))
    tangential = (features["process_angle_deg"].to_numpy(float) - rules.radial_max_angle_deg) \
        / rules.radial_max_angle_deg
    short_and_shallow = np.minimum((short_um - length) / short_um, rules.inner_gcl_depth - depth)
    conditions = {
        "A": stub,
        "F": np.minimum(reaches_ml, many),
        "E": np.minimum(reaches_ml, branched),
        "D": reaches_ml,
        "B": np.maximum(tangential, short_and_shallow),
        "C": np.full(len(features), np.inf),
    }
    stage = np.full(len(features), "", dtype=object)
    margin = np.full(len(features), np.inf)
    # Every earlier rule must keep failing, so the margin is the nearest of their
    # distances and the deciding rule's own; the comparisons are strict, so a
    # value exactly on a threshold (distance 0) fails its rule.
    failed_so_far = np.full(len(features), np.inf)
    for name, holds in conditions.items():
        decided = (stage == "") & (holds > 0)
        stage[decided] = name
        margin[decided] = np.minimum(failed_so_far, holds)[decided]
        failed_so_far = np.minimum(failed_so_far, -holds)
    out = pd.DataFrame({"stage": stage.astype(str)}, index=features.index)
    out["stage_group"] = out["stage"].map(STAGE_GROUPS)
    out["stage_margin"] = margin
    out["stage_doubtful"] = ((features["process_shared_um"].to_numpy(float) > rules.doubtful_shared_um)
                             | (features["somata_crossed"].to_numpy(float) > 0))
    return out


def _at_least(count: pd.Series, threshold: int) -> np.ndarray:
    """Signed distance of ``count >= threshold``; the border lies half a count below."""
    return (count.to_numpy(float) - (threshold - 0.5)) / threshold
