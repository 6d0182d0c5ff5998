"""Shared fixtures: a real local RocketMQ started through rmqfast.devcluster."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Running from a checkout without `pip install -e .`: import the package from python/.
_PYTHON_SRC = Path(__file__).resolve().parent.parent / "python"
if importlib.util.find_spec("rmqfast") is None and _PYTHON_SRC.is_dir():
    sys.path.insert(0, str(_PYTHON_SRC))

from rmqfast.devcluster import DevCluster  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `integration` tests when RMQFAST_SKIP_INTEGRATION=1 (no Java/Maven at hand)."""
    if os.environ.get("RMQFAST_SKIP_INTEGRATION") != "1":
        return
    skip = pytest.mark.skip(reason="RMQFAST_SKIP_INTEGRATION=1")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rocketmq() -> Iterator[DevCluster]:
    """A started DevCluster (1 name server, brokers broker-a and broker-b) for the session."""
    with DevCluster(namesrvs=1, brokers=2) as cluster:
        yield cluster
