"""dcxcount.provenance: file digests, their reuse on a resumed run, the command to re-run, summaries."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from dcxcount.provenance import (
    append_summary,
    command_to_rerun,
    file_record,
    known_digests,
    run_record,
    versions,
)


def test_a_file_record_holds_its_size_and_sha256(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(b"section")
    record = file_record(path)
    assert record["size_bytes"] == 7
    assert record["sha256"] == hashlib.sha256(b"section").hexdigest()
    missing = file_record(tmp_path / "missing.tif")
    assert missing["sha256"] is None and missing["error"]


def test_an_unchanged_input_keeps_its_recorded_digest_and_a_changed_one_is_read_again(tmp_path):
    image = tmp_path / "s1.tif"
    image.write_bytes(b"one")
    sheet = [{"path": str(image), "animal": "m1", "section": 1, "_key": "m1_s1"}]
    common = dict(settings={}, count_settings={"model": "specialist"}, samplesheet=None, command=None, cwd=".",
                  started="t0", finished="t1", mode="count", workers=1, scheduler=None)
    first = run_record(sheet=sheet, **common)
    # A digest taken from the previous record (here a marked one) is proof the file was not read again.
    first["inputs"][0]["image"]["sha256"] = "recorded"
    assert known_digests(first)
    assert run_record(sheet=sheet, previous=first, **common)["inputs"][0]["image"]["sha256"] == "recorded"
    image.write_bytes(b"two")
    os.utime(image, ns=(1, 1))
    again = run_record(sheet=sheet, previous=first, **common)["inputs"][0]["image"]
    assert again["sha256"] == hashlib.sha256(b"two").hexdigest()


def test_the_command_to_rerun_replaces_only_the_results_folder():
    record = {"command": ["dcxcount", "count", "sheet.csv", "--out", "results", "--workers", "2"]}
    assert command_to_rerun(record, out_dir="again") == ["dcxcount", "count", "sheet.csv", "--out", "again",
                                                         "--workers", "2"]
    assert command_to_rerun({"command": ["dcxcount", "count", "s.csv", "--out=r"]}, out_dir="x")[-1] == "--out=x"
    with pytest.raises(ValueError, match="from Python"):
        command_to_rerun({"command": None}, out_dir="x")


def test_a_summarize_is_appended_even_without_a_run_record(tmp_path):
    append_summary(tmp_path, command=["dcxcount", "summarize", "out"], started="a", finished="b")
    append_summary(tmp_path, command=None, started="c", finished="d")
    record = json.loads((tmp_path / "run.json").read_text())
    assert [s["started"] for s in record["summaries"]] == ["a", "c"]
    assert record["summaries"][0]["command_line"] == "dcxcount summarize out"


def test_the_versions_that_decide_the_numbers_are_recorded():
    found = versions()
    for name in ("dcxcount", "python", "cellpose", "torch", "numpy"):
        assert found[name], name
