"""Checks of every setting, run before the first section is counted.

A setting out of range used to surface only where it was used: a section
interval of 0 after every section had been counted, a negative stub length
as every cell staged A, a text where a number belongs as a traceback in the
middle of the batch. These functions list every problem at once, one line
each, naming the setting by its Python name in backticks (the command line
shows its option there instead), so that a run with a bad setting stops
before it has cost anything.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from dataclasses import fields

from .pipeline import CountSettings
from .staging import StagingRules

__all__ = ["SettingsError", "count_settings_problems", "staging_problems", "study_value_problems"]


class SettingsError(ValueError):
    """Settings that cannot be counted with; one problem per line, each naming its setting."""


def _number(value: object) -> bool:
    """A real number (bools are not: ``True`` is not a length)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return _number(value) and math.isfinite(value)


def _whole(value: object) -> bool:
    return _finite(value) and float(value).is_integer()


# Each rule: (test, the rule in words). Every stage rule divides by its threshold
# (a margin is a fraction of it), so those must be > 0, not merely >= 0.
_STAGING_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "stub_um": (lambda v: _finite(v) and v > 0, "a length > 0 (um)"),
    "short_fraction": (lambda v: _finite(v) and v > 0, "a fraction > 0 of the GCL thickness"),
    "inner_gcl_depth": (lambda v: _finite(v) and v >= 0, "a layer depth >= 0"),
    "radial_max_angle_deg": (lambda v: _finite(v) and 0 < v <= 90, "an angle > 0 and <= 90 (degrees)"),
    "ml_depth": (lambda v: _finite(v) and v > 0, "a layer depth > 0"),
    "f_min_branch_points": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "f_min_tips": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "doubtful_shared_um": (lambda v: _finite(v) and v >= 0, "a length >= 0 (um)"),
}


def staging_problems(rules: StagingRules) -> list[str]:
    """Every stage-rule threshold that is not a number in its range, one line each.

    Parameters
    ----------
    rules : StagingRules
        Thresholds, e.g. as read from a JSON file of stage rules.

    Returns
    -------
    list of str
        ``"<field> must be <rule>, got <value>"`` per bad field; empty when all are fine.
    """
    problems = []
    for field in fields(StagingRules):
        value = getattr(rules, field.name)
        is_valid, rule = _STAGING_RULES.get(field.name, (_finite, "a finite number"))
        if not is_valid(value):
            problems.append(f"{field.name} must be {rule}, got {value!r}")
    return problems


def count_settings_problems(count: CountSettings, *, markers: Collection[str]) -> list[str]:
    """Problems with the per-section settings, one line each, naming the setting.

    Parameters
    ----------
    count : CountSettings
    markers : collection of str
        The markers this run can count (the known ones and those given a
        channel in ``count.channels`` or in the samplesheet): settings naming
        any other marker would silently do nothing.

    Returns
    -------
    list of str
    """
    problems = []
    if not (_finite(count.min_overlap_fraction) and 0 < count.min_overlap_fraction <= 1):
        problems.append(f"`min_overlap_fraction` must be in (0, 1], got {count.min_overlap_fraction!r}")
    if not (_finite(count.min_signal_fraction) and count.min_signal_fraction >= 0):
        problems.append(f"`min_signal_fraction` must be a number >= 0, got {count.min_signal_fraction!r}")
    if not (_finite(count.sgz_hilus_um) and count.sgz_hilus_um >= 0):
        problems.append(f"`sgz_hilus_um` must be a length >= 0 (um), got {count.sgz_hilus_um!r}")
    known = ", ".join(sorted(markers))
    for marker, value in count.mean_thresholds.items():
        if marker not in markers:
            problems.append(f"`mean_thresholds[{marker}]=...`: this run counts no marker {marker!r} (it counts "
                            f"{known}); name its channel with `channels[{marker}]=INDEX_OR_NAME`")
        # +inf is how "off" is stored; any other non-finite value would be a typo's result.
        elif not (_number(value) and (math.isfinite(value) or value == math.inf)):
            problems.append(f"`mean_thresholds[{marker}]={value!r}`: expected a number, auto or off")
    for marker in count.marker_models:
        if marker not in markers:
            problems.append(f"`marker_models[{marker}]=...`: this run counts no marker {marker!r} (it counts "
                            f"{known}); name its channel with `channels[{marker}]=INDEX_OR_NAME`")
    problems += [f"`staging`: {problem}" for problem in staging_problems(count.staging)]
    return problems


def study_value_problems(*, pixel_size_um: object, section_interval: object, hemispheres: object,
                         thickness_um: object) -> list[str]:
    """Problems with the study-wide sampling settings, one line each, naming the setting."""
    problems = []
    if pixel_size_um is not None and not (_finite(pixel_size_um) and pixel_size_um > 0):
        problems.append(f"`pixel_size_um` must be a number > 0 (um), got {pixel_size_um!r}")
    if not (isinstance(section_interval, numbers.Integral) and not isinstance(section_interval, bool)
            and section_interval >= 1):
        problems.append(f"`section_interval` must be a whole number >= 1 (every k-th section was counted), "
                        f"got {section_interval!r}")
    if hemispheres not in (1, 2) or isinstance(hemispheres, bool):
        problems.append(f"`hemispheres` must be 1 or 2, got {hemispheres!r}")
    if thickness_um is not None and not (_finite(thickness_um) and thickness_um > 0):
        problems.append(f"`thickness_um` must be a number > 0 (um), got {thickness_um!r}")
    return problems
