"""A person's corrections to a counted section: stage calls, excluded objects, edited labels and GCL.

Every correction records who made it and when, so a methods section can say
how many calls were changed by hand and a second rater's review can be told
from the first. Corrections are kept in the section folder
(``corrections.json``, docs/output.md) and applied by
:func:`dcxcount.pipeline.count_section` on top of the rules; a person's
stage call wins over the rules' and is marked ``stage_source=person``.
"""

from __future__ import annotations

import datetime
import getpass
from dataclasses import dataclass, field, replace

from .vocabulary import STAGES

__all__ = ["Edit", "Corrections", "CorrectionsError", "now_edit"]


class CorrectionsError(ValueError):
    """A corrections record that cannot be applied (unknown stage, damaged file)."""


@dataclass(frozen=True)
class Edit:
    """Who made a correction and when (ISO 8601, UTC)."""

    who: str
    when: str


def now_edit(who: str | None = None) -> Edit:
    """An :class:`Edit` by ``who`` (default: the logged-in user) now."""
    if who is None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no user name in a container without /etc/passwd entry
            who = "unknown"
    return Edit(who=who, when=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class Corrections:
    """A person's corrections to one section.

    Attributes
    ----------
    stages : dict
        DCX ``cell_id`` -> (stage A-F, :class:`Edit`): the person's stage call.
    excluded : dict
        (marker, ``cell_id``) -> :class:`Edit`: objects a person excluded from
        the counts (kept in the labels and in cells.csv, with ``excluded`` True
        and ``counted`` False).
    labels : dict
        Marker -> :class:`Edit`: the marker's label image was edited (painted,
        erased, split, merged).
    gcl : Edit or None
        The GCL mask was edited.
    """

    stages: dict[int, tuple[str, Edit]] = field(default_factory=dict)
    excluded: dict[tuple[str, int], Edit] = field(default_factory=dict)
    labels: dict[str, Edit] = field(default_factory=dict)
    gcl: Edit | None = None

    def __bool__(self) -> bool:
        return bool(self.stages or self.excluded or self.labels or self.gcl)

    def set_stage(self, cell_id: int, stage: str, *, edit: Edit | None = None) -> Corrections:
        """These corrections with a person's stage call for one DCX cell."""
        if stage not in STAGES:
            raise CorrectionsError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
        return replace(self, stages={**self.stages, int(cell_id): (stage, edit or now_edit())})

    def exclude(self, marker: str, cell_id: int, *, edit: Edit | None = None) -> Corrections:
        """These corrections with one object excluded from the counts."""
        return replace(self, excluded={**self.excluded, (marker, int(cell_id)): edit or now_edit()})

    def edited_labels(self, marker: str, *, edit: Edit | None = None) -> Corrections:
        """These corrections recording that ``marker``'s labels were edited."""
        return replace(self, labels={**self.labels, marker: edit or now_edit()})

    def edited_gcl(self, *, edit: Edit | None = None) -> Corrections:
        """These corrections recording that the GCL was edited."""
        return replace(self, gcl=edit or now_edit())

    def describe(self) -> str:
        """What a recount from the image would discard, in words (empty when nothing)."""
        parts = [f"{marker} labels edited" for marker in sorted(self.labels)]
        if self.gcl:
            parts.append("GCL edited")
        if self.stages:
            parts.append(f"{len(self.stages)} stage call{'s' * (len(self.stages) != 1)} set by hand")
        if self.excluded:
            parts.append(f"{len(self.excluded)} object{'s' * (len(self.excluded) != 1)} excluded")
        return ", ".join(parts)

    def to_record(self) -> dict:
        """A JSON-ready dict (the content of ``corrections.json``)."""
        return {
            "stages": [{"cell_id": cell_id, "stage": stage, "who": edit.who, "when": edit.when}
                       for cell_id, (stage, edit) in sorted(self.stages.items())],
            "excluded": [{"marker": marker, "cell_id": cell_id, "who": edit.who, "when": edit.when}
                         for (marker, cell_id), edit in sorted(self.excluded.items())],
            "labels": [{"marker": marker, "who": edit.who, "when": edit.when}
                       for marker, edit in sorted(self.labels.items())],
            "gcl": None if self.gcl is None else {"who": self.gcl.who, "when": self.gcl.when},
        }

    @classmethod
    def from_record(cls, record: dict) -> Corrections:
        """Corrections from :meth:`to_record`'s dict.

        Raises
        ------
        CorrectionsError
            When an entry lacks a field or names an unknown stage.
        """
        try:
            stages = {int(e["cell_id"]): (str(e["stage"]), Edit(e["who"], e["when"])) for e in record.get("stages", [])}
            excluded = {(str(e["marker"]), int(e["cell_id"])): Edit(e["who"], e["when"])
                        for e in record.get("excluded", [])}
            labels = {str(e["marker"]): Edit(e["who"], e["when"]) for e in record.get("labels", [])}
            gcl = record.get("gcl")
            gcl = None if gcl is None else Edit(gcl["who"], gcl["when"])
        except (KeyError, TypeError, ValueError) as error:
            raise CorrectionsError(f"a correction lacks a field or has a bad value ({error!r})") from error
        bad = sorted({stage for stage, _ in stages.values()} - set(STAGES))
        if bad:
            raise CorrectionsError(f"stage(s) {bad} are not among {', '.join(STAGES)}")
        return cls(stages=stages, excluded=excluded, labels=labels, gcl=gcl)
