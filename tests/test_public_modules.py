"""The public faces of the extension: rmqfast.producer and rmqfast.json re-export `_core`."""

from __future__ import annotations

import json
import subprocess
import sys

import rmqfast.json
import rmqfast.logger
import rmqfast.producer
from rmqfast import _core


def test_producer_module_is_the_rust_producer() -> None:
    assert sorted(rmqfast.producer.__all__) == ["Producer", "ProducerError", "SendResult"]
    assert rmqfast.producer.Producer is _core.Producer
    assert rmqfast.producer.ProducerError is _core.ProducerError
    assert rmqfast.producer.SendResult is _core.SendResult
    assert issubclass(rmqfast.producer.ProducerError, Exception)


def test_json_module_is_the_rust_encoder() -> None:
    assert rmqfast.json.__all__ == ["dumps"]
    assert rmqfast.json.dumps is _core.json_dumps
    value = {"a": [1, 2.5, None, True], "b": {"c": 'é\n"'}, "d": "x"}
    want = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert rmqfast.json.dumps(value) == want


def test_stdlib_json_is_not_shadowed() -> None:
    # `import json` anywhere in the package (and here) is the standard library's.
    assert json.__name__ == "json"
    assert hasattr(json, "JSONDecoder")


def test_logger_package_reexports_its_public_names() -> None:
    for name in rmqfast.logger.__all__:
        assert getattr(rmqfast.logger, name) is not None, name


def test_stats_do_not_load_the_logger() -> None:
    # The logger registers its stats source on import; without it there are no logger stats.
    code = (
        "import sys\n"
        "from rmqfast.stats import logger_stats\n"
        "assert 'rmqfast.logger' not in sys.modules, 'rmqfast.stats imported the logger'\n"
        "assert logger_stats() == []\n"
        "from rmqfast.logger import RocketMQLogger\n"
        "with RocketMQLogger(['127.0.0.1:1'], 'T', name='registered') as lg:\n"
        "    assert [n for n, _ in logger_stats()] == ['registered']\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
