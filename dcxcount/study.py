"""Samplesheet, per-animal tables and per-animal estimates.

A study is sections nested in animals nested in groups, and the animal is the
statistical unit: a per-section n must never stand in for the per-animal n.
This module reads the samplesheet (the list of sections to count) and folds the
per-section results back into one row per animal, with the estimates reviewers
ask for (estimated totals, CE, Cavalieri volume) next to densities.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "SamplesheetError",
    "STAGES",
    "read_samplesheet",
    "animals_table",
    "gundersen_jensen_ce",
    "phenotype_percentages",
]

STAGES = ("A", "B", "C", "D", "E", "F")
"""DCX maturation stages (Pluempe et al. 2006), from least to most mature."""

_REQUIRED = ("path", "animal")

# Settings a row may override: (value check, the rule in words, stored dtype).
_OVERRIDES: dict[str, tuple[Callable[[float], bool], str, str]] = {
    "pixel_size_um": (lambda v: v > 0, "a number > 0", "float64"),
    "section_interval": (lambda v: v >= 1 and v.is_integer(), "a whole number >= 1", "Int64"),
    "hemispheres": (lambda v: v in (1, 2), "1 or 2", "Int64"),
    "thickness_um": (lambda v: v > 0, "a number > 0", "float64"),
}

# Settings that describe the animal's sampling, not one section: all of an
# animal's rows must agree or its estimate has no single meaning.
_PER_ANIMAL = ("group", "section_interval", "hemispheres", "thickness_um")

_KNOWN = {"row", *_REQUIRED, "group", "section", "outline", *_OVERRIDES}

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


class SamplesheetError(ValueError):
    """A samplesheet that cannot be counted.

    The message names the sheet file and, for problems in a row, the row
    number a spreadsheet program shows for it (the header is row 1). Every
    problem found is listed, one per line, so one run shows them all.
    """


def read_samplesheet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check a study's samplesheet.

    Parameters
    ----------
    path
        CSV file (comma-, semicolon- or tab-separated; UTF-8 with or without
        a byte-order mark, UTF-16 with one, Windows-1252 or Latin-1, decided
        line by line) or Excel workbook (``.xlsx``, first worksheet), one row
        per section image. Required columns: ``path`` (relative to the sheet's folder, or
        absolute) and ``animal``. Optional: ``group``; ``section`` (position
        along the rostro-caudal axis, any number); ``outline`` (a person's
        GCL outline for that section, overriding detection: ImageJ ROI or ROI
        set, GeoJSON or mask TIFF, see :mod:`dcxcount.outlines`; a path like
        ``path``, empty to detect the GCL); per-row overrides
        ``pixel_size_um``, ``section_interval``, ``hemispheres``,
        ``thickness_um``; ``channel_<marker>`` (channel index or name for that
        marker). Known column names are matched case-insensitively. Other
        columns are kept as text.

    Returns
    -------
    pandas.DataFrame
        One row per sheet row, columns ``row`` (the sheet's row number, for
        messages), ``path`` (absolute, as ``str``), ``animal``, ``group``
        (``str``; ``""`` when absent), ``section`` (integers when all are
        whole; when the column is absent, 1..n within each animal in file
        order), ``outline`` (absolute, ``""`` where not given),
        ``pixel_size_um``, ``section_interval``, ``hemispheres``,
        ``thickness_um`` (always present; missing where the row does not
        override the run's setting), then ``channel_*`` columns (text, ``""``
        where not set) and any other columns.

    Raises
    ------
    SamplesheetError
        When the file is missing or is not a CSV or .xlsx samplesheet (an
        .xls or OpenDocument workbook, a binary file), a line holds a byte
        that is text in none of the encodings above, a required column is
        missing, ``path`` or
        ``animal`` is empty, a (animal, section) pair repeats, a value breaks
        its column's rule, or rows of one animal disagree on ``group``,
        ``section_interval``, ``hemispheres`` or ``thickness_um``.

    Notes
    -----
    A ``path`` or ``outline`` that does not exist is not an error here: the
    pipeline reports it for that section, so one bad file never stops a batch.
    """
    sheet = Path(os.path.abspath(os.fspath(path)))
    if not sheet.is_file():
        raise SamplesheetError(f"{sheet}: samplesheet not found")
    table = _read_cells(sheet)
    missing = [column for column in _REQUIRED if column not in table.columns]
    if missing:
        has = [column for column in table.columns if column != "row"]
        raise SamplesheetError(
            f"{sheet}: missing required column(s) {missing}; the sheet has columns {has}"
        )
    if table.empty:
        raise SamplesheetError(f"{sheet}: no rows below the header")

    problems: list[tuple[int, str]] = []
    for column in _REQUIRED:
        for row in table.loc[table[column] == "", "row"]:
            problems.append((row, f"{column} is empty"))
    if "outline" not in table.columns:
        table["outline"] = ""  # every section's GCL is detected
    for column in ("path", "outline"):
        table[column] = [
            _resolve(text, folder=sheet.parent) if text else "" for text in table[column]
        ]
    if "group" not in table.columns:
        table["group"] = ""
    table["section"] = _sections(table, problems)
    for column, (is_valid, rule, dtype) in _OVERRIDES.items():
        if column not in table.columns:
            table[column] = ""  # no row overrides the run's setting
        numbers = _numbers(table, column, problems, is_valid=is_valid, rule=rule)
        table[column] = numbers.astype(dtype)
    _check_unique_sections(table, problems)
    for column in _PER_ANIMAL:
        _check_animal_agrees(table, column, problems)
    if problems:
        raise SamplesheetError(
            "\n".join(f"{sheet}, row {row}: {what}" for row, what in sorted(problems))
        )

    first = ["row", "path", "animal", "group", "section", "outline", *_OVERRIDES]
    channels = [column for column in table.columns if column.startswith("channel_")]
    rest = [column for column in table.columns if column not in first and column not in channels]
    return table[first + channels + rest]


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
        {column: _per_animal(sections, column, default=defaults[column]) for column in _PER_ANIMAL}
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
        table[column] = _whole_if_possible(totals[column])
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


def _read_cells(sheet: Path) -> pd.DataFrame:
    """All cells as stripped text, plus the ``row`` each came from."""
    header: list[str] | None = None
    rows, records = [], []
    for row, cells in _sheet_rows(sheet):
        cells = [cell.strip() for cell in cells]
        if not any(cells):
            continue
        if header is None:
            header = [_column_name(cell) for cell in cells]
            continue
        # Pad short rows; cells beyond the header are caught below.
        records.append(cells + [""] * (len(header) - len(cells)))
        rows.append(row)
    header = header or []
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    problems = [f"column {name!r} appears twice" for name in repeated]
    if "row" in header:
        problems.append("column 'row' is reserved for the row number; rename it")
    problems += [
        f"row {row}: a value in a column without a name in the header"
        for row, cells in zip(rows, records)
        if any(cell for i, cell in enumerate(cells) if i >= len(header) or not header[i])
    ]
    if problems:
        raise SamplesheetError("\n".join(f"{sheet}: {what}" for what in problems))
    keep = [i for i, name in enumerate(header) if name]
    table = pd.DataFrame(
        [[cells[i] for i in keep] for cells in records],
        columns=[header[i] for i in keep],
        dtype=str,
    )
    table.insert(0, "row", pd.Series(rows, dtype="int64"))
    return table


# File signatures: what a samplesheet given as "CSV" may really be.
_ZIP = b"PK\x03\x04"
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 (.xls), old Word
_SAVE_AS = "save it as CSV (UTF-8) or as an Excel workbook (.xlsx)"


def _sheet_rows(sheet: Path) -> Iterator[tuple[int, list[str]]]:
    """``(row number, cells as text)`` of a CSV or .xlsx samplesheet, header included."""
    try:
        data = sheet.read_bytes()
    except OSError as error:
        raise SamplesheetError(f"{sheet}: cannot read the samplesheet ({error.strerror or error})") from error
    if data.startswith(_ZIP):
        return _xlsx_rows(sheet)
    if data.startswith(_OLE2):
        raise SamplesheetError(f"{sheet}: an Excel 97-2003 workbook (.xls); {_SAVE_AS}")
    if sheet.suffix.lower() in (".xlsx", ".xlsm"):
        raise SamplesheetError(f"{sheet}: named like an Excel workbook but is not one; {_SAVE_AS}")
    return _csv_rows(sheet, _decode(sheet, data))


def _decode(sheet: Path, data: bytes) -> str:
    """The sheet's text. UTF-16 needs its byte-order mark; otherwise each line is UTF-8, else Windows-1252.

    Line by line, because sheets get rows appended in another program (or on
    another system) than the one that wrote them. Windows-1252 is Latin-1 with
    printable characters where Latin-1 has control codes, so Latin-1 text
    decodes the same; its five unassigned bytes are text in none of them.
    """
    for bom, encoding in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as error:
                raise SamplesheetError(f"{sheet}: not valid UTF-16 text ({error.reason}); {_SAVE_AS}") from error
    if b"\x00" in data:
        raise SamplesheetError(f"{sheet}: a binary file, not a CSV samplesheet; {_SAVE_AS}")
    data = data.removeprefix(b"\xef\xbb\xbf")  # Excel's "CSV UTF-8" starts with a byte-order mark
    lines, problems = [], []
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(line.decode("utf-8"))
            continue
        except UnicodeDecodeError:
            pass
        try:
            lines.append(line.decode("cp1252"))
        except UnicodeDecodeError as error:
            problems.append(f"row {number}: byte 0x{line[error.start]:02x} is not text in UTF-8, Windows-1252 "
                            f"or Latin-1; {_SAVE_AS}")
    if problems:
        raise SamplesheetError("\n".join(f"{sheet}, {problem}" for problem in problems))
    return "".join(lines)


def _csv_rows(sheet: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    # Spreadsheets in many locales save ';' or tab separated "CSV": the header has
    # the most of its own separator (quoted names aside).
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {delimiter: unquoted.count(delimiter) for delimiter in ",;\t"}
    delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as error:
        raise SamplesheetError(f"{sheet}, row {reader.line_num}: not readable as CSV ({error})") from error


def _xlsx_rows(sheet: Path) -> Iterator[tuple[int, list[str]]]:
    """Rows of the workbook's first worksheet as text, numbered as the spreadsheet shows them."""
    import openpyxl

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it does not read; they hold no samples.
            warnings.simplefilter("ignore")
            workbook = openpyxl.load_workbook(sheet, read_only=False, data_only=True)
    except Exception as error:  # zipfile, XML and openpyxl errors of all kinds
        raise SamplesheetError(f"{sheet}: cannot read as an Excel workbook (.xlsx) "
                               f"({type(error).__name__}: {error}); {_SAVE_AS}") from error
    try:
        if not workbook.worksheets:
            raise SamplesheetError(f"{sheet}: the workbook has no worksheet")
        rows = [(number, [_cell_text(value) for value in values])
                for number, values in enumerate(workbook.worksheets[0].iter_rows(min_row=1, values_only=True), 1)]
    finally:
        workbook.close()
    return iter(rows)


def _cell_text(value: object) -> str:
    """A spreadsheet cell as the text a CSV export would hold: 3 not 3.0, dates in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _column_name(cell: str) -> str:
    lower = cell.lower()
    return lower if lower in _KNOWN or lower.startswith("channel_") else cell


def _resolve(text: str, *, folder: Path) -> str:
    path = Path(text).expanduser()
    return os.path.abspath(path if path.is_absolute() else folder / path)


def _numbers(
    table: pd.DataFrame,
    column: str,
    problems: list[tuple[int, str]],
    *,
    is_valid: Callable[[float], bool],
    rule: str,
) -> pd.Series:
    """Parse a text column; empty cells become missing, bad cells problems."""
    values = []
    for row, text in zip(table["row"], table[column]):
        try:
            value = float(text) if text else math.nan
        except ValueError:
            value = math.inf  # fails the finiteness test below
        if text and not (math.isfinite(value) and is_valid(value)):
            problems.append((row, f"{column} is {text!r}; expected {rule}"))
            value = math.nan
        values.append(value)
    return pd.Series(values, index=table.index, dtype="float64")


def _sections(table: pd.DataFrame, problems: list[tuple[int, str]]) -> pd.Series:
    if "section" not in table.columns:
        return table.groupby("animal", sort=False).cumcount().add(1).astype("Int64")
    for row in table.loc[table["section"] == "", "row"]:
        problems.append((row, "section is empty; fill every row or leave the column out"))
    numbers = _numbers(table, "section", problems, is_valid=lambda v: True, rule="a number")
    return _whole_if_possible(numbers)


def _check_unique_sections(table: pd.DataFrame, problems: list[tuple[int, str]]) -> None:
    first_row: dict[tuple[str, float], int] = {}
    for row, animal, section in zip(table["row"], table["animal"], table["section"]):
        if animal == "" or pd.isna(section):
            continue  # already reported
        key = (animal, section)
        if key in first_row:
            problems.append(
                (row, f"animal {animal!r} section {section} repeats row {first_row[key]}")
            )
        first_row.setdefault(key, row)


def _check_animal_agrees(table: pd.DataFrame, column: str, problems: list[tuple[int, str]]) -> None:
    first: dict[str, tuple[int, object]] = {}
    for row, animal, value in zip(table["row"], table["animal"], table[column]):
        if pd.isna(value):
            continue  # the run's setting applies; animals_table checks the mix
        if animal not in first:
            first[animal] = (row, value)
        elif value != first[animal][1]:
            first_row, first_value = first[animal]
            problems.append(
                (row, f"{column} {value!r} differs from {first_value!r} on row {first_row} "
                      f"for animal {animal!r}; an animal has one {column}")
            )


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
    if column in _OVERRIDES:
        is_valid, rule, dtype = _OVERRIDES[column]
        bad = chosen[chosen.notna() & ~chosen.astype("float64").map(is_valid)]
        if len(bad):
            raise ValueError(f"{column} must be {rule}; got {dict(bad)}")
        chosen = chosen.astype(dtype)
    return chosen


def _whole_if_possible(values: pd.Series) -> pd.Series:
    """Whole numbers as nullable integers, anything else as floats."""
    floats = values.astype("float64")
    known = floats.dropna()
    return floats.astype("Int64") if (known == known.round()).all() else floats


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    denominator = denominator.astype("float64")
    return numerator.astype("float64") / denominator.where(denominator != 0)
