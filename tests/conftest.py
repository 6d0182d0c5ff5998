"""Shared fixtures: a real local RocketMQ started through rmqfast.devcluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rmqfast.devcluster import DevCluster


@pytest.fixture(scope="session")
def rocketmq() -> Iterator[DevCluster]:
    """A started DevCluster (1 name server, brokers broker-a and broker-b) for the session."""
    with DevCluster(
        namesrvs=1,
        brokers=2,
        # The broker checks transactions left undecided after 1 s (tests of the check-back).
        broker_props={"transactionTimeOut": 1000, "transactionCheckInterval": 1000},
    ) as cluster:
        yield cluster
