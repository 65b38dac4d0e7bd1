"""Fan-in under load on PostgreSQL + Redis: many preprocess jobs whose small sessions finish at once.

Before the atomic counter, two parts finishing within milliseconds of each other on PostgreSQL could
each count "N-1 of N done" and neither sent the next step (2 hung jobs in 7). Here 50 jobs of 12
one-second sessions run on two worker processes of two threads each: every job must end, once, with
outputs equal to the single-process ``run_preprocess`` of the same data.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from worker_support import job_now, servers, start_worker, stop, submit

from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, JobPart
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset

pytestmark = pytest.mark.slow

JOBS = 50


def test_fifty_concurrent_preprocess_jobs_all_end_with_the_reference_outputs(tmp_path: Path):
    with servers(tmp_path) as cluster:
        data = tmp_path / "raw"
        write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=1.5, seed=9), data.as_uri())
        reference = tmp_path / "reference"
        run_preprocess(data.as_uri(), reference.as_uri(), workers=1)
        expected = pq.read_table(reference / "master.parquet")

        workers = [start_worker(tmp_path, "preprocessor", log=f"worker{i}") for i in range(2)]
        try:
            jobs = [submit("preprocess", {"dataset": data.as_uri()}) for _ in range(JOBS)]
            deadline = time.monotonic() + 600
            while True:
                states = [job_now(job_id) for job_id in jobs]
                running = [j for j in states if j.state in ("queued", "running")]
                if not running:
                    break
                assert time.monotonic() < deadline, [(j.id, j.state, j.stage, j.parts_done) for j in running][:5]
                time.sleep(1.0)
        finally:
            stop(*workers)
        assert [j.state for j in states] == ["succeeded"] * JOBS, [(j.error_type, j.error_message) for j in states]
        for job in states:
            out = Path(job.result["uri"].removeprefix("file://"))
            assert pq.read_table(out / "master.parquet").equals(expected), job.id
        with session_scope() as session:
            ids = list(jobs)
            datasets = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.job_id.in_(ids)))
            assert datasets == JOBS  # each job registered its output once
            not_done = session.scalar(
                select(func.count()).select_from(JobPart).where(JobPart.job_id.in_(ids), JobPart.state != "done")
            )
            assert not_done == 0
        assert cluster.backend == "servers"
