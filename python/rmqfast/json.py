"""Fast JSON encoding, implemented in Rust (`rmqfast._core`); this module is the stable face.

`dumps(obj, default=None)` returns the UTF-8 bytes of the stdlib's compact
`json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=default)`:
bytes and bytearray are written as UTF-8 text (invalid sequences replaced; the stdlib would
call `default`), other values JSON has no type for go through `default` (TypeError without
one), NaN and infinities
raise ValueError, nesting deeper than 500 levels raises RecursionError, and a lone surrogate in
a string becomes U+FFFD.
"""

from __future__ import annotations

from rmqfast._core import json_dumps as dumps

__all__ = ["dumps"]
