"""How the logger turns entries into JSON bytes: compact, UTF-8, non-ASCII kept, NaN refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["json_default", "json_string", "make_encoder"]


def json_default(o: Any) -> Any:
    """What a value JSON has no type for becomes: bytes as UTF-8 text, sets and tuples as
    arrays, anything else its str()."""
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).decode("utf-8", "replace")
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def make_encoder() -> Callable[[Any], bytes]:
    """Compact JSON as UTF-8 bytes, non-ASCII kept, NaN refused.

    `rmqfast.json.dumps` writes the same text as the stdlib encoder, several times faster; the
    stdlib's C encoder (built once, not per call) stands in when the extension lacks it.
    """
    std = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=json_default
    ).encode

    def std_bytes(o: Any) -> bytes:
        return std(o).encode("utf-8", "replace")

    try:
        from rmqfast.json import dumps as core_dumps

        def core_encode(o: Any) -> bytes:
            return core_dumps(o, json_default)

        if core_encode(_PROBE) == std_bytes(_PROBE):
            return core_encode
    except Exception:  # pragma: no cover - the extension is not built
        pass
    try:  # pragma: no cover - only without the extension
        from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

        # No markers dict: a cycle ends in RecursionError instead (counted as encode_error).
        c_encode = c_make_encoder(
            None, json_default, encode_basestring, None, ":", ",", False, False, False
        )

        def c_bytes(o: Any) -> bytes:
            return "".join(c_encode(o, 0)).encode("utf-8", "replace")

        if c_bytes(_PROBE) == std_bytes(_PROBE):
            return c_bytes
    except Exception:  # pragma: no cover - no C accelerator (e.g. PyPy)
        pass
    return std_bytes  # pragma: no cover


_PROBE = {"a": [1, 2.5, None, True, 1e16], "b": {"c": 'é\n"', 7: (1,)}, "d": b"x"}


def json_string(body: bytes) -> bytes:
    """A JSON string holding `body` (meta_format "origin" in the array shape: each raw request
    text becomes one string of the array)."""
    return json.dumps(body.decode("utf-8", "replace"), ensure_ascii=False).encode("utf-8")
