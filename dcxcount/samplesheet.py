"""The samplesheet: the list of sections to count, read and checked before anything is counted.

A study is sections nested in animals nested in groups, and the animal is the
statistical unit. Each row names an image and its animal (and group, section
position, optional per-row settings and a GCL outline); every problem in the
sheet is reported at once, with the row number a spreadsheet program shows.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

__all__ = ["SamplesheetError", "read_samplesheet", "ROW_OVERRIDES", "PER_ANIMAL_COLUMNS", "whole_if_possible"]

_REQUIRED = ("path", "animal")

# Settings a row may override: (value check, the rule in words, stored dtype).
ROW_OVERRIDES: dict[str, tuple[Callable[[float], bool], str, str]] = {
    "pixel_size_um": (lambda v: v > 0, "a number > 0", "float64"),
    "section_interval": (lambda v: v >= 1 and v.is_integer(), "a whole number >= 1", "Int64"),
    "hemispheres": (lambda v: v in (1, 2), "1 or 2", "Int64"),
    "thickness_um": (lambda v: v > 0, "a number > 0", "float64"),
}

# Settings that describe the animal's sampling, not one section: all of an
# animal's rows must agree or its estimate has no single meaning.
PER_ANIMAL_COLUMNS = ("group", "section_interval", "hemispheres", "thickness_um")

_KNOWN = {"row", *_REQUIRED, "group", "section", "outline", *ROW_OVERRIDES}


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
    for column, (is_valid, rule, dtype) in ROW_OVERRIDES.items():
        if column not in table.columns:
            table[column] = ""  # no row overrides the run's setting
        numbers = _numbers(table, column, problems, is_valid=is_valid, rule=rule)
        table[column] = numbers.astype(dtype)
    _check_unique_sections(table, problems)
    for column in PER_ANIMAL_COLUMNS:
        _check_animal_agrees(table, column, problems)
    if problems:
        raise SamplesheetError(
            "\n".join(f"{sheet}, row {row}: {what}" for row, what in sorted(problems))
        )

    first = ["row", "path", "animal", "group", "section", "outline", *ROW_OVERRIDES]
    channels = [column for column in table.columns if column.startswith("channel_")]
    rest = [column for column in table.columns if column not in first and column not in channels]
    return table[first + channels + rest]


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
    return whole_if_possible(numbers)


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


def whole_if_possible(values: pd.Series) -> pd.Series:
    """Whole numbers as nullable integers, anything else as floats."""
    floats = values.astype("float64")
    known = floats.dropna()
    return floats.astype("Int64") if (known == known.round()).all() else floats
