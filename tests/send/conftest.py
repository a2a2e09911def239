"""Fixtures of the send layer's tests: deployments a test owns and may break."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aioredstream.testing import ClusterDeployment

from ..conftest import _binary


@pytest.fixture
def restartable_cluster(server_kind: str) -> Iterator[ClusterDeployment]:
    """3 primaries without replicas (a restarted node stays the primary of its slots),
    owned by the test."""
    with ClusterDeployment(_binary(server_kind), kind=server_kind, replicas=0) as cluster:
        yield cluster
