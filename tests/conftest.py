"""Shared fixtures: the real local RocketMQ clusters started through rmqfast.devcluster (each
once per run), and loggers wired to an in-process producer for the middleware tests.

Every test that uses a cluster fixture is marked `integration` here, so `pytest -m "not
integration"` (`make test-fast`) runs exactly the tests that need no RocketMQ."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rmqfast.devcluster import DevCluster
from rmqfast.logger import RocketMQLogger, set_metadata

from .fakes import FakeServer, name_server
from .secure import SecureCluster, secure_cluster
from .test_logger_support import FakeProducer

# Fixtures that start real RocketMQ servers (JVMs); a test using any of them is `integration`.
CLUSTER_FIXTURES = frozenset(
    {"rocketmq", "secure", "rocketmq_proxy", "lone_cluster", "no_auto_create"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def lone_cluster() -> Iterator[DevCluster]:
    """A cluster of its own (1 name server, 1 broker) that a module's tests may freeze, stop and
    restart without disturbing the session cluster."""
    with DevCluster(namesrvs=1, brokers=1, stop_timeout=10.0) as cluster:
        yield cluster


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


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    """A name server and a broker with TLS enforced and ACL 2.0 on, and a topic, for the run."""
    with secure_cluster(tmp_path_factory.mktemp("secure")) as sc:
        yield sc


@pytest.fixture
def two_clusters() -> Iterator[tuple[FakeServer, FakeServer]]:
    """One name server per cluster, each routing every topic to its one broker (broker-a at
    127.0.0.1:10911, broker-b at 127.0.0.1:20911), fake; for the routing and reload tests."""
    with (
        FakeServer(name_server({"broker-a": "127.0.0.1:10911"})) as a,
        FakeServer(name_server({"broker-b": "127.0.0.1:20911"})) as b,
    ):
        yield a, b


@pytest.fixture
def fake() -> FakeProducer:
    """A producer that records what it is given, in this process."""
    return FakeProducer()


@pytest.fixture
def make(fake: FakeProducer) -> Iterator[Any]:
    """make(**attributes) -> a RocketMQLogger sending to `fake`; closed after the test."""
    made: list[RocketMQLogger] = []

    def factory(**kw: Any) -> RocketMQLogger:
        kw.setdefault("inactive_timeout", 60)
        lg = RocketMQLogger(["127.0.0.1:9876"], "t", producer_factory=lambda: fake, **kw)
        made.append(lg)
        return lg

    yield factory
    for lg in made:
        lg.close(2)
    set_metadata()
