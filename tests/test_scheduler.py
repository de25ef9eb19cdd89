"""``dcxcount count --scheduler ADDRESS``: a study counted on a Dask cluster the test starts."""

from __future__ import annotations

import pandas as pd
import pytest

from dcxcount.cli import main
from dcxcount.synth import SynthParams, make_study


@pytest.mark.slow
def test_a_study_counted_through_a_running_scheduler(tmp_path):
    from dask.distributed import LocalCluster

    sheet = make_study(tmp_path / "s", groups=("saline",), animals_per_group=1, sections_per_animal=2,
                       base=SynthParams(shape_px=(320, 320), pixel_size_um=1.0, markers=("dcx", "neun")), seed=70_431)
    common = ["--section-interval", "6", "--hemispheres", "1"]
    assert main(["count", str(sheet), "--out", str(tmp_path / "serial"), *common]) == 0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(["count", str(sheet), "--out", str(tmp_path / "dask"), *common,
                     "--scheduler", cluster.scheduler_address]) == 0
        # The sections went through this cluster's scheduler, not a serial fallback.
        ran = {name for name in cluster.scheduler.task_prefixes}
        assert "process_row" in ran, ran  # dask drops the leading underscore
    for name in ("sections.csv", "animals.csv"):
        serial = pd.read_csv(tmp_path / "serial" / name).drop(columns=["seconds"], errors="ignore")
        dask = pd.read_csv(tmp_path / "dask" / name).drop(columns=["seconds"], errors="ignore")
        pd.testing.assert_frame_equal(serial, dask)
    assert len(pd.read_csv(tmp_path / "dask" / "sections.csv")) == 2
    cells = pd.read_csv(tmp_path / "dask" / "cells.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "serial" / "cells.csv"), cells)


@pytest.mark.slow
def test_an_unreachable_scheduler_stops_before_counting(tmp_path, capsys):
    sheet = make_study(tmp_path / "s", groups=("saline",), animals_per_group=1, sections_per_animal=1,
                       base=SynthParams(shape_px=(256, 256), pixel_size_um=1.0, markers=("dcx", "neun")), seed=70_432)
    # The client tries for its 30 s timeout before giving up.
    code = main(["count", str(sheet), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in capsys.readouterr().err
