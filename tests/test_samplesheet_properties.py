"""Properties of the samplesheet reader and of the section folder names, over generated sheets.

Any table of animals, groups, sections and paths, written as a spreadsheet
program would (comma, semicolon or tab; UTF-8 with or without BOM, UTF-16,
Windows-1252, Latin-1; or .xlsx), reads back cell for cell; and no two rows,
whatever their names, share a results folder, even where case is ignored.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dcxcount.batch import section_key
from dcxcount.samplesheet import read_samplesheet

# Text a person types into a cell: no control characters (a CSV row cannot hold a
# line break unquoted and the row numbers would shift), no surrogates or private use.
_CHARACTERS = st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"))
# Cells are read stripped, as spreadsheet programs show them.
cells = st.text(_CHARACTERS, min_size=1, max_size=10).map(str.strip).filter(bool)
# A path starting with '~' is a home folder, one starting with '=' a formula in Excel.
paths = cells.filter(lambda text: not text.startswith(("~", "=")) and not os.path.isabs(text))

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1")


@st.composite
def tables(draw) -> list[dict]:
    """Rows of a valid samplesheet: unique (animal, section), one group per animal."""
    animals = draw(st.lists(cells.filter(lambda text: not text.startswith("=")), min_size=1, max_size=4,
                            unique=True))
    rows = []
    for animal in animals:
        group = draw(cells.filter(lambda text: not text.startswith("=")) | st.just(""))
        for section in draw(st.lists(st.integers(-50, 10_000), min_size=1, max_size=3, unique=True)):
            rows.append({"path": draw(paths), "animal": animal, "group": group, "section": section})
    return rows


def _expected(rows: list[dict], folder: Path) -> list[tuple]:
    return [(os.path.abspath(folder / row["path"]), row["animal"], row["group"], row["section"]) for row in rows]


def _read(sheet: Path) -> list[tuple]:
    table = read_samplesheet(sheet)
    assert list(table["row"]) == list(range(2, len(table) + 2))
    return list(zip(table["path"], table["animal"], table["group"], table["section"].astype(int)))


def _encode(text: str, encoding: str) -> bytes:
    data = text.encode(encoding)
    if encoding in ("cp1252", "latin-1"):
        # A line of Windows-1252 bytes that is also valid UTF-8 (e.g. 'Ã¤' for 'ä') cannot be
        # told from UTF-8; the reader takes UTF-8, like every program that guesses.
        for line in data.splitlines():
            try:
                assume(line.decode("utf-8") == line.decode(encoding) or line.isascii())
            except UnicodeDecodeError:
                pass
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=tables(), delimiter=st.sampled_from([",", ";", "\t"]), encoding=st.sampled_from(ENCODINGS),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_a_csv_sheet_reads_back_cell_for_cell(rows, delimiter, encoding, newline):
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator=newline)
    writer.writerow(["path", "animal", "group", "section"])
    writer.writerows([row["path"], row["animal"], row["group"], row["section"]] for row in rows)
    try:
        data = _encode(text.getvalue(), encoding)
    except UnicodeEncodeError:
        data = text.getvalue().encode("utf-8")  # the text has characters the encoding lacks
    with tempfile.TemporaryDirectory() as folder:
        sheet = Path(folder) / "samplesheet.csv"
        sheet.write_bytes(data)
        assert _read(sheet) == _expected(rows, Path(folder))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=tables())
def test_an_xlsx_sheet_reads_back_cell_for_cell(rows):
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(["Path", "Animal", "Group", "Section"])  # header names in any case
    for row in rows:
        workbook.active.append([row["path"], row["animal"], row["group"] or None, row["section"]])
    with tempfile.TemporaryDirectory() as folder:
        sheet = Path(folder) / "samplesheet.xlsx"
        workbook.save(sheet)
        assert _read(sheet) == _expected(rows, Path(folder))


animal_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
section_numbers = st.integers(-1000, 10**6) | st.floats(-1e6, 1e6, allow_nan=False).filter(lambda v: v != int(v))


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(animal_names, section_numbers), min_size=2, max_size=30,
                      unique_by=lambda pair: (pair[0], float(pair[1]))))
def test_no_two_sections_share_a_folder_even_where_case_is_ignored(pairs):
    keys = [section_key({"animal": animal, "section": section}) for animal, section in pairs]
    assert len({key.casefold() for key in keys}) == len(keys)
    for key in keys:
        assert len(key) <= 120 and not key.startswith(".")
        assert all(c.isascii() and (c.isalnum() or c in "._-~") for c in key)
        assert key.split(".")[0].lower() not in {"con", "prn", "aux", "nul"}


@pytest.mark.parametrize(("animal", "section", "key"), [
    ("m1", 3, "m1_s3"),             # plain names keep the folder names of earlier versions
    ("saline-1", 12, "saline-1_s12"),
    ("m1", 2.5, "m1_s2.5"),
])
def test_plain_names_keep_their_readable_folder(animal, section, key):
    assert section_key({"animal": animal, "section": section}) == key


@pytest.mark.parametrize(("first", "second"), [("m/1", "m_1"), ("WT 1", "WT_1"), ("M1", "m1"), ("Mäus", "M_us"),
                                               ("nul", "nul_")])
def test_look_alike_animals_get_different_folders(first, second):
    one, two = (section_key({"animal": animal, "section": 1}) for animal in (first, second))
    assert one.casefold() != two.casefold()
