"""No silent wrong number, no lost batch, whatever the input (issue 11; docs/reliability.md).

The bad inputs are in tests/corpus.py. Most section-level cases are counted in
one run of the command line in a fresh process, as a user runs it, so that
what reaches the terminal is what a user would see.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcxcount.cli import main

from .corpus import GOOD, NONFINITE_PX, OTHER, PICKLE_SENTINEL, RUN_CASES, RUN_ENV, SECTION_CASES, good_image, write_ome

ROOT = Path(__file__).resolve().parent.parent

# Animals whose folders coincided under the old naming (``<animal>_s<section>`` with
# other characters made '_') or coincide where case is ignored; each pair lists two
# different images, so a shared folder shows as equal counts.
LOOKALIKES = [("m/1", "a"), ("m_1", "b"), ("WT 1", "a"), ("WT_1", "b"), ("M1", "a"), ("m1", "b")]

COUNT_COLUMN = re.compile(r".*_count|stage_[A-F]|stage_doubtful|nonfinite_px")


def _cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``dcxcount`` in a fresh process, as a user runs it: its real stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "dcxcount.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, timeout=timeout)


def _strict_json(path: Path) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _sheet(folder: Path, rows: list[dict], name: str = "samplesheet.csv") -> Path:
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(out / f"{name}.csv").drop(columns=["seconds"], errors="ignore")
            for name in ("cells", "sections", "animals")}


def _assert_same_tables(first: Path, second: Path) -> None:
    one, two = _tables(first), _tables(second)
    for name in one:
        pd.testing.assert_frame_equal(one[name], two[name], obj=name)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    """Two good sections with different counts: ``a.ome.tif`` and ``b.ome.tif``."""
    folder = tmp_path_factory.mktemp("good")
    write_ome(folder / "a.ome.tif", good_image(GOOD))
    write_ome(folder / "b.ome.tif", good_image(OTHER))
    return folder


# --- one batch holding every bad section ------------------------------------------

@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, good_files):
    """``dcxcount count`` over every case of the corpus plus look-alike animals: (process, out folder)."""
    folder = tmp_path_factory.mktemp("corpus")
    image = good_image(GOOD)
    rows = [{"path": case.build(folder, image), "animal": name, "section": 1}
            for name, case in SECTION_CASES.items()
            if not (name == "huge" and os.environ.get("DCXCOUNT_TEST_SKIP_HUGE"))]
    rows += [{"path": str(good_files / f"{which}.ome.tif"), "animal": animal, "section": 1}
             for animal, which in LOOKALIKES]
    sheet = _sheet(folder, rows)
    out = folder / "out"
    # The limit makes the huge image's refusal the same on any machine.
    return _cli("count", str(sheet), "--out", str(out), env={"DCXCOUNT_MEMORY_LIMIT": "8GB"}), out


@pytest.fixture(scope="module")
def corpus_sections(corpus_run):
    _, out = corpus_run
    return pd.read_csv(out / "sections.csv", keep_default_na=False, na_values=[""]).set_index("animal")


@pytest.mark.parametrize("case", SECTION_CASES)
def test_every_bad_section_gets_its_own_reason_and_the_rest_is_counted(corpus_sections, case):
    if case == "huge" and os.environ.get("DCXCOUNT_TEST_SKIP_HUGE"):
        pytest.skip("DCXCOUNT_TEST_SKIP_HUGE")
    status = corpus_sections.loc[case, "status"]
    assert re.search(SECTION_CASES[case].status, status), status
    assert "no GCL found" not in status


def test_the_batch_exits_1_with_every_table_written(corpus_run, corpus_sections):
    run, out = corpus_run
    assert run.returncode == 1, run.stderr[-2000:]
    assert {"cells.csv", "sections.csv", "animals.csv", "settings.json"} <= {p.name for p in out.iterdir()}
    assert (corpus_sections["status"] == "ok").sum() == 4 + len(LOOKALIKES)  # ok, nan_patch, inf_pixels, nan_plane
    assert run.stdout.startswith("counted 10/")


def test_rows_never_share_a_results_folder(corpus_run, corpus_sections):
    """``m/1`` and ``m_1``, ``WT 1`` and ``WT_1``, ``M1`` and ``m1`` each keep their own image's counts."""
    _, out = corpus_run
    counts = corpus_sections[["dcx_count", "neun_count"]]
    a, b = counts.loc["ok"], counts.loc["m_1"]
    assert not a.equals(b)  # the two images differ, so a shared folder would show
    for animal, which in LOOKALIKES:
        assert counts.loc[animal].equals(a if which == "a" else b), animal
    folders = [p.name for p in (out / "sections").iterdir()]
    assert len(folders) == len(corpus_sections)
    assert len({name.casefold() for name in folders}) == len(folders)  # also where case is ignored


def test_no_traceback_and_no_stray_line_reaches_the_terminal(corpus_run):
    """Only dcxcount's own lines (and its progress bar): no traceback, no tifffile or RuntimeWarning line."""
    run, _ = corpus_run
    assert "Traceback" not in run.stderr
    for line in re.split(r"[\r\n]+", run.stderr):
        line = line.strip()
        assert not line or line.startswith(("dcxcount: ", "count:")), line
    assert run.stdout.count("\n") == 1 and run.stdout.startswith("counted ")


def test_each_failure_names_its_file_once(corpus_run, corpus_sections):
    run, _ = corpus_run
    lines = [line for line in run.stderr.splitlines() if re.match(r"dcxcount: \S+ s1", line)]
    failed = corpus_sections[corpus_sections["status"] != "ok"]
    assert len(lines) == len(failed)
    for animal, row in failed.iterrows():
        line = next(line for line in lines if line.startswith(f"dcxcount: {animal} s1"))
        assert line.count(Path(row["path"]).name) == 1, line


def test_counts_stay_integers_when_sections_fail(corpus_run):
    _, out = corpus_run
    with open(out / "sections.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in rows[0] if COUNT_COLUMN.fullmatch(c)]
    assert {"dcx_count", "neun_count", "stage_A", "stage_doubtful", "nonfinite_px"} <= set(columns)
    for row in rows:
        for column in columns:
            assert re.fullmatch(r"-?[0-9]*", row[column]), (column, row[column])


def test_no_infinity_in_any_table_and_every_json_is_strict(corpus_run):
    _, out = corpus_run
    for name in ("cells", "sections", "animals"):
        text = (out / f"{name}.csv").read_text(encoding="utf-8")
        assert not re.search(r"(^|,)-?(inf|Infinity|nan|NaN)(,|$)", text, re.MULTILINE), name
    files = [out / "settings.json", *(out / "sections").glob("*/result.json")]
    assert len(files) > len(SECTION_CASES)
    for path in files:
        _strict_json(path)
    settings = _strict_json(out / "settings.json")
    assert settings["settings"]["count"]["mean_thresholds"]["dcx"] == "off"


def test_nonfinite_pixels_are_masked_counted_and_reported(corpus_sections):
    for case, expected in NONFINITE_PX.items():
        row = corpus_sections.loc[case]
        assert row["status"] == "ok" and row["nonfinite_px"] == expected, case
        assert row["dcx_count"] > 0 and row["neun_count"] > 0
    assert corpus_sections.loc["ok", "nonfinite_px"] == 0
    # A z-plane of NaN costs nothing: the other plane images every pixel.
    assert corpus_sections.loc["nan_plane", ["dcx_count", "neun_count"]].equals(
        corpus_sections.loc["ok", ["dcx_count", "neun_count"]])


def test_defaults_that_change_the_totals_are_said_and_documented(corpus_run, capsys):
    run, _ = corpus_run
    assert "--section-interval not given: the estimated totals assume every 6th section" in run.stderr
    assert "--hemispheres not given: the estimated totals assume both hemispheres" in run.stderr
    assert main(["count", "--help"]) == 0
    help_text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "(default 6, said when used" in help_text and "(default 2, said when used" in help_text
    for status in ("0 every section was counted", "1 some sections failed", "2 the samplesheet or an option",
                   "3 internal error"):
        assert status in help_text


def test_an_image_on_two_rows_is_counted_on_both_with_a_warning(corpus_run):
    run, _ = corpus_run
    notes = [line for line in run.stderr.splitlines() if "lists the same image as row" in line]
    assert len(notes) == len(LOOKALIKES) - 2  # two images, three rows each


# --- runs that must stop before counting ------------------------------------------

@pytest.mark.parametrize("case", RUN_CASES)
def test_a_bad_run_stops_before_counting_with_one_line_per_problem(case, tmp_path, good_files, monkeypatch, capsys):
    for name, value in RUN_ENV.get(case, {}).items():
        monkeypatch.setenv(name, value)
    sheet, options = RUN_CASES[case].build(tmp_path, str(good_files / "a.ome.tif"))
    out = tmp_path / "out"
    code = main(["count", str(sheet), "--out", str(out), *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert any(re.search(RUN_CASES[case].message, line) for line in err.splitlines()), err
    assert all(line.startswith(("dcxcount: ", "dcxcount count: error: ")) for line in err.splitlines()), err
    assert not list(out.glob("sections/*/result.json"))  # nothing was counted
    assert not (tmp_path / PICKLE_SENTINEL).exists()  # the pickled model's code never ran


def test_every_problem_of_the_stage_rules_is_listed(tmp_path, good_files, capsys):
    (tmp_path / "rules.json").write_text(json.dumps({"stub_um": -1, "f_min_tips": 0, "ml_depth": "one"}))
    sheet = _sheet(tmp_path, [{"path": str(good_files / "a.ome.tif"), "animal": "m1"}])
    assert main(["count", str(sheet), "--out", str(tmp_path / "out"), "--stage-rules",
                 str(tmp_path / "rules.json")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [re.search(r"(\w+) must be", line).group(1) for line in lines] == ["stub_um", "ml_depth", "f_min_tips"]


def test_cellpose_is_made_to_load_weights_only(tmp_path, monkeypatch):
    """Even when the environment asks torch to unpickle, cellpose's own torch.load refuses a pickled object."""
    import torch
    from cellpose import models

    from dcxcount.segment.engines import _weights_only_loads

    from .corpus import _Payload

    target = tmp_path / "pwned"
    torch.save({"encoder.weight": _Payload(str(target))}, tmp_path / "evil.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with _weights_only_loads(), pytest.raises(Exception, match="[Ww]eights only"):
        models.get_backbone(str(tmp_path / "evil.pt"))
    assert not target.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # the user's environment is restored


# --- samplesheets real labs write ---------------------------------------------------

@pytest.mark.parametrize("kind", ["cp1252;", "xlsx"])
def test_excel_samplesheets_are_counted(kind, tmp_path, good_files):
    path = str(good_files / "a.ome.tif")
    if kind == "xlsx":
        import openpyxl

        workbook = openpyxl.Workbook()
        workbook.active.append(["Path", "Animal", "Group", "Section"])
        workbook.active.append([path, "Mäus01", "saline", 1])
        workbook.save(sheet := tmp_path / "samplesheet.xlsx")
    else:
        sheet = tmp_path / "samplesheet.csv"
        sheet.write_bytes(f"path;animal;group;section\r\n{path};Mäus01;saline;1\r\n".encode("cp1252"))
    out = tmp_path / "out"
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    sections = pd.read_csv(out / "sections.csv")
    assert sections.loc[0, "animal"] == "Mäus01" and sections.loc[0, "status"] == "ok"


# --- resuming ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def counted_pair(tmp_path_factory, good_files):
    """A study of two good sections counted once: (samplesheet, out folder)."""
    folder = tmp_path_factory.mktemp("pair")
    sheet = _sheet(folder, [{"path": str(good_files / "a.ome.tif"), "animal": "m1", "section": 1},
                            {"path": str(good_files / "b.ome.tif"), "animal": "m1", "section": 2}])
    assert main(["count", str(sheet), "--out", str(folder / "out")]) == 0
    return sheet, folder / "out"


@pytest.mark.parametrize("damage", ["empty", "cut short", "not an object", "leftover tmp"])
def test_a_damaged_result_json_is_counted_again_and_said(damage, counted_pair, tmp_path, capsys):
    import shutil

    sheet, first = counted_pair
    out = tmp_path / "out"
    shutil.copytree(first, out)
    saved = out / "sections" / "m1_s2" / "result.json"
    text = saved.read_text()
    if damage == "leftover tmp":  # a run killed between writing the new result and moving it in place
        saved.with_name("result.json.tmp").write_text(text[: len(text) // 3])
    else:
        saved.write_text({"empty": "", "cut short": text[: len(text) // 2], "not an object": "[1, 2]"}[damage])
    capsys.readouterr()
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("m1 s2: the saved result" in err and "empty or damaged" in err) == (damage != "leftover tmp")
    assert "Traceback" not in err
    _strict_json(saved)
    _assert_same_tables(first, out)


def test_a_deleted_cells_table_is_counted_again(counted_pair, tmp_path):
    import shutil

    sheet, first = counted_pair
    out = tmp_path / "out"
    shutil.copytree(first, out)
    (out / "sections" / "m1_s1" / "cells.csv").unlink()
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    _assert_same_tables(first, out)


# --- isolation -----------------------------------------------------------------------

def test_any_exception_in_a_section_costs_only_that_section(counted_pair, tmp_path, monkeypatch, capsys):
    """A MemoryError (a 25,000^2 image), a bug's KeyError, a RecursionError: recorded, the rest counted."""
    import dcxcount.batch

    sheet, first = counted_pair
    real = dcxcount.batch.count_section
    failures = {"b.ome.tif": MemoryError("Unable to allocate 4.66 GiB for an array with shape (25000, 25000)")}

    def count_section(section, **kwargs):
        if section.path.name in failures:
            raise failures[section.path.name]
        return real(section, **kwargs)

    monkeypatch.setattr(dcxcount.batch, "count_section", count_section)
    for error, status in ((failures["b.ome.tif"], r"ran out of memory while counting it"),
                          (KeyError("stage_Z"), r"internal error \(KeyError: 'stage_Z'\)"),
                          (RecursionError("maximum recursion depth exceeded"), r"internal error \(RecursionError")):
        failures["b.ome.tif"] = error
        out = tmp_path / type(error).__name__
        assert main(["count", str(sheet), "--out", str(out)]) == 1
        sections = pd.read_csv(out / "sections.csv")
        assert sections.loc[0, "status"] == "ok"
        assert re.search(status, sections.loc[1, "status"]), sections.loc[1, "status"]
        saved = _strict_json(out / "sections" / "m1_s2" / "result.json")
        assert type(error).__name__ in saved["traceback"]  # for the bug report
        err = capsys.readouterr().err
        assert "Traceback" not in err and "m1 s2: error:" in err
    # Once the cause is gone, the failed section is counted on the next run.
    failures.clear()
    assert main(["count", str(sheet), "--out", str(out)]) == 0
    _assert_same_tables(first, out)


def test_an_internal_error_outside_the_sections_exits_3_in_one_line(counted_pair, tmp_path, monkeypatch, capsys):
    import dcxcount.batch

    def broken(*args, **kwargs):
        raise KeyError("dcx_count")

    monkeypatch.setattr(dcxcount.batch, "_write_tables", broken)
    sheet, _ = counted_pair
    assert main(["count", str(sheet), "--out", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]+", err)
             if line.startswith("dcxcount") and not line.startswith("dcxcount: note:")]
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    report = re.search(r"internal error \(KeyError: 'dcx_count'\); this is a bug, please report it; the traceback "
                       r"is in (\S+)$", lines[0])
    assert report and "Traceback" in Path(report.group(1)).read_text()


@pytest.mark.slow
def test_a_dask_worker_that_dies_costs_only_its_section_and_the_cluster_is_closed(good_files, tmp_path):
    import dask
    import psutil
    from dask.distributed import LocalCluster

    from dcxcount.batch import StudySettings, _process_row, _run_parallel

    rows = [{"path": str(good_files / f"{name}.ome.tif"), "animal": "m1", "section": i, "group": "",
             "outline": "", "pixel_size_um": np.nan, "_key": f"m1_s{i}"} for i, name in enumerate("ab", 1)]

    def dies_on_the_second(row, settings, out_dir):  # pickled by value: the worker runs this very function
        if row["section"] == 2:
            os._exit(1)  # as the kernel's out-of-memory killer would end it
        return _process_row(row, settings, out_dir)

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    results = {}
    with (dask.config.set({"distributed.scheduler.allowed-failures": 0}),
          LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster):
        _run_parallel(rows, StudySettings(), tmp_path, workers=1, scheduler=cluster.scheduler_address,
                      progress=lambda *a: None, results=results, process=dies_on_the_second)
    assert results["m1_s1"]["status"] == "ok"
    assert re.search(r"the Dask worker counting it failed \(KilledWorker", results["m1_s2"]["status"])
    _strict_json(tmp_path / "sections" / "m1_s2" / "result.json")
    time.sleep(1)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE
            # multiprocessing's resource tracker serves this process until it exits; it is no worker
            and not any("resource_tracker" in part or "forkserver" in part for part in p.cmdline())]
    assert not left  # every worker is gone


@pytest.mark.slow
def test_sections_in_threads_give_the_same_statuses_and_tables_as_one_at_a_time(counted_pair, good_files,
                                                                                tmp_path):
    folder = tmp_path
    rows = [{"path": str(good_files / "a.ome.tif"), "animal": "m1", "section": 1},
            {"path": SECTION_CASES["zero_bytes"].build(folder, None), "animal": "m1", "section": 2},
            {"path": SECTION_CASES["blank"].build(folder, good_image(GOOD)), "animal": "m2", "section": 1}]
    sheet = _sheet(folder, rows)
    assert main(["count", str(sheet), "--out", str(folder / "serial")]) == 1
    run = _cli("count", str(sheet), "--out", str(folder / "threads"), "--workers", "2")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    _assert_same_tables(folder / "serial", folder / "threads")


# --- no network, and a kill mid-section ----------------------------------------------

def test_a_whole_count_opens_no_network_connection(good_files, tmp_path, monkeypatch):
    attempts = []

    def refuse(name):
        def blocked(*args, **kwargs):
            attempts.append((name, args[1:] if name.startswith("socket.") else args))
            raise OSError(f"network blocked by the test: {name}")
        return blocked

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse(name))
    from dcxcount.segment import load_engine

    load_engine.cache_clear()  # the models are loaded under the block too
    sheet = _sheet(tmp_path, [{"path": str(good_files / "a.ome.tif"), "animal": "m1", "section": 1}])
    assert main(["count", str(sheet), "--out", str(tmp_path / "out")]) == 0
    assert attempts == []


@pytest.mark.slow
def test_a_run_killed_mid_section_resumes_to_the_tables_of_an_uninterrupted_run(tmp_path):
    import dataclasses

    from .corpus import write_ome as write

    # Larger sections, so that a kill lands inside one; each its own file.
    params = dataclasses.replace(GOOD, shape_px=(448, 448))
    rows = []
    for i in range(4):
        write(tmp_path / f"s{i}.ome.tif", good_image(dataclasses.replace(params, seed=10 + i)))
        rows.append({"path": f"s{i}.ome.tif", "animal": f"m{i // 2}", "section": i % 2 + 1})
    sheet = _sheet(tmp_path, rows)
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "dcxcount.cli", "count", str(sheet), "--out", str(out)]

    def interrupt(how: int, done_before: int, *options: str) -> subprocess.CompletedProcess:
        """Start a run and stop it with ``how`` as soon as ``done_before`` sections have finished."""
        # A run started in the background of a non-interactive shell (as a CI job may be)
        # inherits SIGINT ignored; Ctrl-C in a terminal is what this test stands for.
        process = subprocess.Popen([*command, *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 600
        while len(list(out.glob("sections/*/result.json"))) < done_before and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        process.send_signal(how)
        stdout, stderr = process.communicate(timeout=120)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    # Ctrl-C with two sections in flight: the other one stops at its next step, none waiting starts.
    stopped = interrupt(signal.SIGINT, 1, "--workers", "2")
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr[-2000:]
    assert "interrupted; run the same command again to resume" in stopped.stderr
    assert len(list(out.glob("sections/*/result.json"))) < len(rows)
    killed = interrupt(signal.SIGKILL, 2)  # no chance to clean up
    assert killed.returncode == -signal.SIGKILL
    assert len(list(out.glob("sections/*/result.json"))) < len(rows)  # it died mid-batch
    assert not (out / "sections.csv").exists()
    assert _cli("count", str(sheet), "--out", str(out)).returncode == 0
    assert _cli("count", str(sheet), "--out", str(tmp_path / "uninterrupted")).returncode == 0
    _assert_same_tables(tmp_path / "uninterrupted", out)


# --- memory ----------------------------------------------------------------------------

def test_normalising_a_section_makes_no_float64_copy_of_it():
    import tracemalloc

    from dcxcount.segment.rescale import normalize_image

    image = np.random.default_rng(0).integers(0, 4000, (4096, 4096), dtype=np.uint16)
    tracemalloc.start()
    normalized = normalize_image(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert normalized.dtype == np.float32
    assert peak / image.size < 6  # the float32 result (4 bytes/px) and a strip; it was 12 (float32 + float64)


def test_the_memory_estimate_grows_with_the_image_and_the_limit_can_be_set(monkeypatch):
    from dcxcount.memory import available_memory_bytes, count_memory_bytes, parse_bytes

    def need(side: int, **kwargs) -> int:
        return count_memory_bytes(**{"planes": 1, "channels": 3, "height": side, "width": side, "itemsize": 2,
                                     "pixel_size_um": 0.65, **kwargs})

    assert need(1024) < need(4096) < need(25_000)
    assert need(25_000) > 60e9  # what a 25,000^2 section would take, refused on most machines
    assert need(4096, planes=10) > need(4096) and need(4096, pixel_size_um=1.3) > need(4096)
    assert parse_bytes("8GB") == 8e9 and parse_bytes("512 MiB") == 2**29 and parse_bytes("2e9") == 2e9
    free = available_memory_bytes()
    # Sections counted at once share what is free; the limit a user sets is each one's.
    assert available_memory_bytes(sections_at_once=2) <= free // 2 + 2**20
    monkeypatch.setenv("DCXCOUNT_MEMORY_LIMIT", "123MB")
    assert available_memory_bytes() == available_memory_bytes(sections_at_once=2) == 123e6
    monkeypatch.setenv("DCXCOUNT_MEMORY_LIMIT", "a lot")
    with pytest.raises(ValueError, match="DCXCOUNT_MEMORY_LIMIT"):
        available_memory_bytes()


def test_strict_json_replaces_every_non_finite_number():
    from dcxcount.batch import strict_json

    value = {"a": math.inf, "b": [np.float32("nan"), -math.inf, 1.5], "c": np.int64(3), "d": {"e": np.bool_(True)}}
    assert json.loads(json.dumps(strict_json(value), allow_nan=False)) == {
        "a": None, "b": [None, None, 1.5], "c": 3, "d": {"e": True}}
