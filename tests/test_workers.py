"""``--workers N``: sections counted at once in threads that share the models and the cores.

Each section's torch and BLAS pools get ``cores // N`` threads (with 2 threads for each
of 2 sections on 2 cores a study took 1.2-2.2x as long as serial, docs/benchmarks.md),
warnings stay with the section that raised them, and a cancel stops the sections in
flight. (Sections on a Dask cluster, through ``--scheduler``, are tested in
tests/test_scheduler.py and tests/test_reliability.py.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings

import pytest
import torch

import dcxcount.batch
from dcxcount.batch import StudySettings, plan_study, run_study
from dcxcount.cli import main
from dcxcount.progress import Cancelled, CancelToken

from .corpus import GOOD, OTHER, good_image, write_ome


@pytest.fixture(scope="module")
def two_sections(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two")
    for name, params in (("a", GOOD), ("b", OTHER)):
        write_ome(folder / f"{name}.ome.tif", good_image(params))
    sheet = folder / "samplesheet.csv"
    sheet.write_text(f"path,animal,section\n{folder / 'a.ome.tif'},m1,1\n{folder / 'b.ome.tif'},m1,2\n")
    return sheet


def _meeting(monkeypatch, seen: list) -> None:
    """Make each section wait for the other before it is counted: both must be in flight at once."""
    from threadpoolctl import threadpool_info

    real = dcxcount.batch.count_section
    both = threading.Barrier(2, timeout=120)

    def count_section(section, **kwargs):
        blas = {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
        seen.append((threading.get_ident(), torch.get_num_threads(), blas))
        warnings.warn(f"raised while counting {section.path.name}", RuntimeWarning, stacklevel=1)
        logging.getLogger("tifffile").warning("logged while counting %s", section.path.name)
        both.wait()
        return real(section, **kwargs)

    monkeypatch.setattr(dcxcount.batch, "count_section", count_section)


def test_two_workers_count_two_sections_at_once_each_on_its_share_of_the_cores(two_sections, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # as an HPC module might set it: not what the sections get
    seen = []
    _meeting(monkeypatch, seen)
    threads_before = torch.get_num_threads()
    assert main(["count", str(two_sections), "--out", str(tmp_path / "out"), "--workers", "2"]) == 0
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert len({ident for ident, _, _ in seen}) == 2  # two threads, met at the barrier
    assert all(torch_threads == share and blas <= {share} for _, torch_threads, blas in seen)
    assert torch.get_num_threads() == threads_before  # this process's pools are as they were
    # Each section keeps its own warning and log line, not the other's.
    for key, name in (("m1_s1", "a.ome.tif"), ("m1_s2", "b.ome.tif")):
        kept = json.loads((tmp_path / "out" / "sections" / key / "result.json").read_text())["warnings"]
        assert [line for line in kept if "while counting" in line] == \
            [f"RuntimeWarning: raised while counting {name}", f"tifffile: logged while counting {name}"]


def test_a_cancel_stops_the_sections_in_flight_and_the_next_run_finishes(two_sections, tmp_path, monkeypatch):
    token = CancelToken()
    real = dcxcount.batch._process_row

    def cancelled_once_started(row, settings, out_dir, **kwargs):
        token.cancel()  # a person presses Cancel while both sections are being counted
        return real(row, settings, out_dir, **kwargs)

    monkeypatch.setattr(dcxcount.batch, "_process_row", cancelled_once_started)
    plan = plan_study(two_sections, out_dir=tmp_path / "out", settings=StudySettings())
    with pytest.raises(Cancelled):
        run_study(plan, workers=2, cancel=token)
    assert not list((tmp_path / "out" / "sections").glob("*/result.json"))  # stopped before any was saved
    assert not (tmp_path / "out" / "sections.csv").exists()
    monkeypatch.undo()
    result = run_study(plan, workers=2)
    assert result.n_failed == 0 and sorted(result.sections["status"]) == ["ok", "ok"]
