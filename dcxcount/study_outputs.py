"""The study's files beyond the three tables: ``run.json``, ``groups.csv``, ``results.xlsx``, ``report.html``.

Called by :mod:`dcxcount.batch` once the tables are written, after every
``count``, ``count --recount`` and ``summarize``. Each file is written on its
own: a report that cannot be drawn never costs the tables, the provenance or
the workbook (the failure is a warning naming the file).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import pandas as pd

from .provenance import append_summary, now_iso, read_run_record, run_record, write_run_record
from .report import REPORT_FILE, write_study_files

__all__ = ["write_study_outputs"]


def write_study_outputs(plan, *, sections: pd.DataFrame, animals: pd.DataFrame, record: Mapping,
                        run: Mapping | None) -> pd.DataFrame | None:
    """Write run.json (or add this summarize to it), then groups.csv, results.xlsx and report.html.

    Parameters
    ----------
    plan : dcxcount.batch.StudyPlan
        The study as counted: its sheet (with ``_key``), settings and ``out_dir``.
    sections, animals : DataFrame
        The study tables as written to the CSVs.
    record : mapping
        settings.json's content.
    run : mapping, optional
        How the run was started (``mode``, ``workers``, ``scheduler``,
        ``command``, ``started``); None writes no provenance.

    Returns
    -------
    DataFrame or None
        The groups table; None when it could not be written.
    """
    out_dir = plan.out_dir
    if run is not None:
        try:
            if run["mode"] == "summarize":
                append_summary(out_dir, command=run.get("command"), started=run["started"], finished=now_iso())
            else:
                sheet = plan.sheet.astype(object).where(plan.sheet.notna(), None).to_dict("records")
                write_run_record(out_dir, run_record(
                    sheet=sheet, settings=record["settings"], count_settings=record["settings"]["count"],
                    samplesheet=getattr(plan, "samplesheet", None), command=run.get("command"), cwd=os.getcwd(),
                    started=run["started"], finished=now_iso(), mode=run["mode"], workers=run["workers"],
                    scheduler=run["scheduler"], previous=read_run_record(out_dir)))
        except OSError as error:
            warnings.warn(f"{out_dir / 'run.json'}: cannot write the run record ({error})", stacklevel=2)
    try:
        return write_study_files(out_dir, sections=sections, animals=animals, settings_record=record,
                                 keys=list(plan.sheet["_key"]))
    except Exception as error:  # the tables are written; the report is a view of them
        warnings.warn(f"{out_dir / REPORT_FILE}: the report, groups.csv or results.xlsx could not be written "
                      f"({type(error).__name__}: {error}); the tables are complete", stacklevel=2)
        return None
