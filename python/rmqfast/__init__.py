"""rmqfast: a fast, observable edge for Apache RocketMQ, with a Rust core."""

from rmqfast._core import __version__

__all__ = ["__version__"]
