"""The words every module shares: markers, thymidine analogues, stages and stage groups.

Defined once here; docs/biology.md says what each means.
"""

from __future__ import annotations

__all__ = ["KNOWN_MARKERS", "OPTIONAL_MARKERS", "NUCLEAR_MARKERS", "ANALOGUES", "STAGES", "STAGE_GROUPS",
           "GROUP_NAMES", "kind_of_marker"]

KNOWN_MARKERS = ("dcx", "neun", "dapi", "brdu", "edu")
"""Markers found by channel name without being told."""

OPTIONAL_MARKERS = ("neun", "dapi", "brdu", "edu")
"""Counted whenever a channel of that name is in the file; DCX is always counted."""

NUCLEAR_MARKERS = ("neun", "dapi")
"""Markers whose nuclei outline the granule cell layer (one of them is required)."""

ANALOGUES = ("brdu", "edu")
"""Thymidine analogues: birth-dating markers."""

STAGES = ("A", "B", "C", "D", "E", "F")
"""DCX+ cell maturation stages (Pluempe et al. 2006)."""

STAGE_GROUPS = {"A": "proliferative", "B": "proliferative", "C": "intermediate",
                "D": "intermediate", "E": "postmitotic", "F": "postmitotic"}

GROUP_NAMES = ("proliferative", "intermediate", "postmitotic")


def kind_of_marker(marker: str) -> str:
    """Object kind a marker's stain labels: DCX somata ("dcx") or nuclei ("nuclear", every other marker)."""
    return "dcx" if marker == "dcx" else "nuclear"
