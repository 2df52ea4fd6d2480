"""One rehearsal cluster per pytest session: every scenario (any module here) shares it.

Starting a head, two worker nodes, an S3 server and an MLflow server costs about a minute
on 2 cores; the scenarios use distinct run names and prefixes, so they can share them.
"""

from __future__ import annotations

import pytest
from cluster import RehearsalCluster
from servers import rehearsal_servers
from submission import Rehearsal


@pytest.fixture(scope="session")
def rehearsal():
    with rehearsal_servers() as (s3, mlflow_server):
        # The head exports MLFLOW_TRACKING_URI to its job drivers, as cluster.yaml does.
        cluster = RehearsalCluster(workers=2, env={"MLFLOW_TRACKING_URI": mlflow_server.uri})
        cluster.start()
        try:
            yield Rehearsal(cluster, s3, mlflow_server)
        finally:
            stragglers = cluster.stop()
            assert not cluster.own_processes(), "cluster processes left running"
            print(f"rehearsal cluster stopped; {len(stragglers)} stragglers killed by PID")
