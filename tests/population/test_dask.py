"""Distributed for real: `screen --engine dask` on a LocalCluster of 2 worker processes, same worklist."""

from __future__ import annotations

import os

import pytest

from cds_service.population.run import RunOptions, run
from tests.conftest import NOW
from tests.population.conftest import OVERRIDES


@pytest.mark.slow
def test_dask_local_cluster_with_two_worker_processes_gives_the_identical_worklist(export_1000, screened_1000,
                                                                                    tmp_path):
    from distributed import LocalCluster

    embedded_out, embedded = screened_1000
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert len(cluster.workers) == 2
        worker_pids = {w.process.pid for w in cluster.workers.values()}
        assert os.getpid() not in worker_pids and len(worker_pids) == 2
        report = run(RunOptions(export_1000, tmp_path, engine="dask", scheduler=cluster.scheduler_address,
                                now=NOW, overrides=OVERRIDES, progress="none", buckets=8))
    assert report.patients == embedded.patients == 1000
    assert report.buckets == 8 and report.buckets_skipped == 0
    assert (tmp_path / "worklist.csv").read_bytes() == (embedded_out / "worklist.csv").read_bytes()
    assert (tmp_path / "worklist.csv").stat().st_size > 10_000


def test_a_rerun_skips_every_bucket_already_done_and_redoes_one_whose_marker_is_gone(export_1000, tmp_path):
    first = run(RunOptions(export_1000, tmp_path, now=NOW, overrides=OVERRIDES, progress="none", buckets=4))
    assert first.buckets == 4 and first.buckets_skipped == 0
    before = (tmp_path / "worklist.csv").read_bytes()
    (tmp_path / "work" / "results" / "bucket-00002.done.json").unlink()
    again = run(RunOptions(export_1000, tmp_path, overrides=OVERRIDES, progress="none", buckets=4))
    assert again.now == NOW  # a resumed run keeps the evaluation time it started with
    assert again.buckets_skipped == 3
    assert (tmp_path / "worklist.csv").read_bytes() == before
    later = run(RunOptions(export_1000, tmp_path, now=NOW.replace(hour=13), overrides=OVERRIDES, progress="none",
                           buckets=4))
    assert later.buckets_skipped == 0  # another evaluation time: every bucket again
