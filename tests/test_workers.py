"""``--workers N``: the cores are shared out between the local Dask workers' compute threads.

With 2 threads in each of 2 workers on 2 cores a study took 1.2-2.2x as long as with one
worker (docs/benchmarks.md); each worker must get cores // N threads, whatever the
shell's OMP_NUM_THREADS says. (A study counted through ``--scheduler`` is tested in
tests/test_scheduler.py.)
"""

from __future__ import annotations

import os

import pytest

from dcxcount.batch import _worker_threads


def _threads() -> tuple[str | None, int]:
    import torch

    return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()


@pytest.mark.slow
def test_each_local_worker_gets_its_share_of_the_cores(monkeypatch):
    from dask.distributed import Client, LocalCluster

    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # as an HPC module might set it
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    with (_worker_threads(2), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None) as cluster, Client(cluster) as client):
        found = client.run(_threads)
    assert sorted(found.values()) == [(str(share), share)] * 2
    # This process's environment is as it was.
    assert os.environ["OMP_NUM_THREADS"] == "64" and "NUMBA_NUM_THREADS" not in os.environ
