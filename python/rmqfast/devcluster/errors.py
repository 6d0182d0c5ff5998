"""The one error type of the dev cluster, shared by its modules."""

from __future__ import annotations

__all__ = ["DevClusterError"]


class DevClusterError(RuntimeError):
    """Something the dev cluster needs is missing, or a server failed to start or stop."""
