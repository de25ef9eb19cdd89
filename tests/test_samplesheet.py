"""Tests for dcxcount.samplesheet: reading and checking the list of sections."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dcxcount.estimators import animals_table
from dcxcount.samplesheet import SamplesheetError, read_samplesheet
from dcxcount.vocabulary import STAGES


def write_sheet(folder: Path, text: str, name: str = "sheet.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sheet = folder / name
    sheet.write_text(text, encoding="utf-8")
    return sheet


def test_paths_resolve_against_the_sheet_folder_not_the_working_directory(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = str(tmp_path / "abs" / "c.tif")
    sheet = write_sheet(
        tmp_path / "study",
        f"path,animal\nimg/a.tif,m1\n../b.tif,m1\n{absolute},m2\n",
    )

    table = read_samplesheet(sheet)

    assert list(table["path"]) == [
        str(tmp_path / "study" / "img" / "a.tif"),
        str(tmp_path / "b.tif"),
        absolute,
    ]
    assert all(isinstance(path, str) for path in table["path"])


def test_defaults_row_numbers_and_kept_columns(tmp_path):
    sheet = write_sheet(
        tmp_path,
        "Path,ANIMAL,channel_DCX,notes\n"
        "a.tif,m1,1,first\n"
        "\n"  # a blank line still counts in the row numbers a user sees
        "b.tif,m2,Cy3,\n"
        "c.tif,m1,,third\n",
    )

    table = read_samplesheet(sheet)

    assert list(table["row"]) == [2, 4, 5]
    assert list(table["animal"]) == ["m1", "m2", "m1"]
    assert list(table["group"]) == ["", "", ""]
    assert list(table["section"]) == [1, 1, 2]  # running index within each animal
    assert list(table["channel_dcx"]) == ["1", "Cy3", ""]
    assert list(table["notes"]) == ["first", "", "third"]
    overrides = ["section_interval", "hemispheres", "thickness_um", "pixel_size_um"]
    assert table[overrides].isna().all().all()


def test_overrides_are_parsed_as_numbers_and_semicolons_are_accepted(tmp_path):
    sheet = write_sheet(
        tmp_path,
        "path;animal;group;section;section_interval;hemispheres;thickness_um;pixel_size_um\n"
        "a.tif;m1;ket;3;6;1;40;0.65\n"
        "b.tif;m1;ket;4.5;;;;\n",
    )

    table = read_samplesheet(sheet)

    assert list(table["section"]) == [3.0, 4.5]
    assert table.loc[0, "section_interval"] == 6
    assert table.loc[0, "hemispheres"] == 1
    assert table.loc[0, "thickness_um"] == 40.0
    assert table.loc[0, "pixel_size_um"] == 0.65
    assert pd.isna(table.loc[1, "section_interval"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SamplesheetError, match="nope.csv"):
        read_samplesheet(tmp_path / "nope.csv")


def test_missing_required_column_lists_the_columns_the_sheet_has(tmp_path):
    sheet = write_sheet(tmp_path, "file,animal,group\na.tif,m1,x\n")
    with pytest.raises(SamplesheetError, match="sheet.csv") as caught:
        read_samplesheet(sheet)
    message = str(caught.value)
    assert "'path'" in message
    assert "'file'" in message and "'group'" in message


@pytest.mark.parametrize(
    ("rows", "row", "words"),
    [
        ("a.tif,m1,1\n,m1,2\n", 3, "path is empty"),
        ("a.tif,m1,1\nb.tif,,2\n", 3, "animal is empty"),
        ("a.tif,m1,1\nb.tif,m1,1\n", 3, "repeats row 2"),
        ("a.tif,m1,1,3\n", 2, "hemispheres"),
        ("a.tif,m1,1,,0\n", 2, "section_interval"),
        ("a.tif,m1,1,,,-30\n", 2, "thickness_um"),
        ("a.tif,m1,1,,,,0\n", 2, "pixel_size_um"),
        ("a.tif,m1,x\n", 2, "section"),
    ],
    ids=["empty path", "empty animal", "duplicate section", "hemispheres",
         "interval", "thickness", "pixel size", "section not a number"],
)
def test_bad_rows_raise_naming_file_and_row(tmp_path, rows, row, words):
    header = "path,animal,section,hemispheres,section_interval,thickness_um,pixel_size_um\n"
    sheet = write_sheet(tmp_path, header + rows)
    with pytest.raises(SamplesheetError, match=f"row {row}") as caught:
        read_samplesheet(sheet)
    message = str(caught.value)
    assert str(sheet) in message
    assert words in message
    assert isinstance(caught.value, ValueError)


def test_every_problem_is_reported_at_once(tmp_path):
    sheet = write_sheet(tmp_path, "path,animal,hemispheres\n,m1,1\nb.tif,m2,3\n")
    with pytest.raises(SamplesheetError, match="row 2: path is empty") as caught:
        read_samplesheet(sheet)
    assert "row 3: hemispheres" in str(caught.value)


def test_empty_trailing_columns_are_ignored_but_unnamed_values_are_not(tmp_path):
    # spreadsheet programs often save trailing empty columns as ",,"
    fine = write_sheet(tmp_path, "path,animal,,\na.tif,m1,,\n", name="fine.csv")
    assert list(read_samplesheet(fine)["animal"]) == ["m1"]
    bad = write_sheet(tmp_path, "path,animal\na.tif,m1,ket\n", name="bad.csv")
    with pytest.raises(SamplesheetError, match="row 2: a value in a column without a name"):
        read_samplesheet(bad)


def test_an_animal_in_two_groups_is_an_error(tmp_path):
    sheet = write_sheet(tmp_path, "path,animal,group\na.tif,m1,ket\nb.tif,m1,sal\n")
    with pytest.raises(SamplesheetError, match="row 3: group 'sal' differs"):
        read_samplesheet(sheet)


def test_samplesheet_overrides_flow_into_the_animal_table(tmp_path):
    sheet = write_sheet(tmp_path, "path,animal,section_interval\na.tif,m1,8\nb.tif,m1,\n")
    sections = read_samplesheet(sheet).assign(
        status="ok", dcx_count=[3, 4], neun_count=0, dcx_neun_count=0, gcl_area_mm2=0.1,
        **{f"stage_{stage}": 0 for stage in STAGES},
    )
    # the blank row takes the run's interval (6), which disagrees with the 8 above
    with pytest.raises(ValueError, match="section_interval"):
        animals_table(sections, section_interval=6, hemispheres=2)
    table = animals_table(sections, section_interval=8, hemispheres=2)
    assert table.loc[0, "estimated_total_dcx"] == (3 + 4) * 8
