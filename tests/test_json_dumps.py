"""`_core.json_dumps` writes exactly what the stdlib encoder the logger used to call writes."""

from __future__ import annotations

import enum
import json
import math
import random
import re
import struct
from array import array
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rmqfast import _core
from rmqfast.logger.encode import json_default as _json_default
from rmqfast.logger.encode import make_encoder as _make_encoder


def std(o: Any) -> bytes:
    return json.dumps(
        o, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
    ).encode("utf-8")


def dumps(o: Any) -> bytes:
    return _core.json_dumps(o, _json_default)


# Text without lone surrogates (those have no UTF-8 form; see the surrogate test).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
keys = (
    text
    | st.integers()
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=30,
)


T = TypeVar("T", bound=Callable[..., Any])

# Exact ties between two shortest digit strings, where repr keeps the even last digit (an
# earlier version rounded them up): 2**49 + 0.25 is 562949953421312.2, not ...312.3.
TIES = [
    562949953421312.25,
    582293803876020.2,
    152199032297236.12,
    1034794295263148.2,
    11331251138736.812,
    1.0000076293945312,  # 1 + 2**-17
    0.00012063980102539062,
    1.0728836059570312e-05,
    2.0**-25,  # 2.9802322387695312e-08: a power of two, its interval narrower below
    5.960464477539062e-07,
]


@settings(max_examples=400, deadline=None)
@given(values)
@example({"tie": 562949953421312.25, 1.0000076293945312: [-(2.0**-25), 1e16, 1e-5]})
def test_matches_the_stdlib(v: Any) -> None:
    assert dumps(v) == std(v)


def _examples(xs: list[float]) -> Callable[[T], T]:
    """`@example(x)` for each of `xs`, in order."""

    def apply(f: T) -> T:
        for x in reversed(xs):
            f = example(x)(f)
        return f

    return apply


POWER_OF_TWO_EDGES = [
    y
    for e in (-1074, -1023, -1022, -1021, -25, -14, 0, 49, 52, 53, 54, 1023)
    for x in (2.0**e,)
    for y in (math.nextafter(x, 0.0), x, math.nextafter(x, math.inf))
    if math.isfinite(y)
]


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
@_examples(
    TIES
    + [-x for x in TIES]
    + POWER_OF_TWO_EDGES
    + [
        5e-324,
        -5e-324,
        1e-310,
        2.225073858507201e-308,  # largest subnormal
        2.2250738585072014e-308,
        1e-5,
        9.999999999999999e-05,
        0.0001,
        1e16,
        9999999999999998.0,
        1e23,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        0.0,
        -0.0,
    ]
)
def test_floats_print_as_python_repr(x: float) -> None:
    assert dumps(x) == repr(x).encode()


def _bits_to_floats(bits: array[int]) -> list[float]:
    return array("d", bits.tobytes()).tolist()


def _float_corpus() -> list[float]:
    """Some 2.3 million finite doubles, the same every run: a window of bit patterns on each
    side of every power of two (subnormals and the largest doubles included, every third
    exponent negated too); dense stepped and random bit patterns from 1e14 to 1e17, where
    about one double in ten is a tie; and small odd integers times powers of two, whose short
    exact expansions give ties in every decade from 1e-8 to 1e15."""
    w = 128
    sign = 1 << 63
    bits = array("Q", range(1, 4 * w))
    for b in range(1, 2047):
        c = b << 52
        bits.extend(range(c - w, c + w))
        if b % 3 == 0:
            bits.extend(range(sign | (c - w), sign | (c + w)))
    top = 0x7FF << 52
    bits.extend(range(top - 4 * w, top))
    lo, hi = struct.unpack("<2Q", struct.pack("<2d", 1e14, 1e17))
    step = (hi - lo) // 700_000 | 1
    bits.extend(range(lo, hi, step))
    rng = random.Random(0x1E14)
    span = hi - lo
    bits.extend(lo + x % span for x in array("Q", rng.randbytes(8 * 700_000)))
    floats = _bits_to_floats(bits)
    for _ in range(200_000):
        n = rng.randrange(1, 54)
        odd = rng.getrandbits(n) | 1 | (1 << (n - 1))
        floats.append(math.ldexp(odd, rng.randrange(-30, 53) - n))
    return floats + TIES + [-x for x in TIES]


def test_millions_of_floats_match_the_stdlib() -> None:
    floats = _float_corpus()
    assert len(floats) > 2_250_000 and all(math.isfinite(x) for x in floats)
    got, want = _core.json_dumps(floats), std(floats)
    if got != want:
        # Name the first double that differs rather than diffing megabytes.
        for x, g, w in zip(floats, got[1:-1].split(b","), want[1:-1].split(b","), strict=True):
            assert g == w, f"{x!r} ({struct.pack('>d', x).hex()})"
    assert got == want


def test_edge_values() -> None:
    class Color(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    cases: list[Any] = [
        "",
        '\x00\x1f\x7f"\\\n\r\t\b\f/é€😀',
        "m" * 1000 + '"' + "m" * 7,
        1e16,
        1e-5,
        -0.0,
        5e-324,
        2**63,
        -(2**63) - 1,
        Color.RED,
        {Color.RED: Name("x")},
        OrderedDict([("b", 1), ("a", 2)]),
        {1.5: None, None: True, True: False},
        [(), {}, []],
    ]
    for c in cases:
        assert dumps(c) == std(c), c


def test_dict_subclasses_are_walked_through_items() -> None:
    # The stdlib's encoder writes a dict subclass from its items(), not its storage order.
    od = OrderedDict([("a", 1), ("b", 2.5)])
    od.move_to_end("a")
    assert dumps(od) == std(od) == b'{"b":2.5,"a":1}'

    class LastValue(dict[str, list[int]]):
        def items(self) -> Any:
            return [(k, v[-1]) for k, v in super().items()]

    d = LastValue(x=[1, 2])
    assert dumps({"q": d}) == std({"q": d}) == b'{"q":{"x":2}}'
    assert dumps(LastValue()) == std(LastValue()) == b"{}"

    class Broken(dict[str, int]):
        def items(self) -> Any:
            return [("k", 1, 2)]

    with pytest.raises(ValueError, match="items must return 2-tuples"):
        dumps(Broken(k=1))
    with pytest.raises(ValueError, match="items must return 2-tuples"):
        std(Broken(k=1))


def test_default_and_bytes() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    v = {"b": b"caf\xc3\xa9 \xff", "set": frozenset([1]), "obj": Thing(), "ba": bytearray(b"x")}
    assert dumps(v) == std(v)
    # Without a default, unknown types are a TypeError naming the type.
    with pytest.raises(TypeError, match="Thing is not JSON serializable"):
        _core.json_dumps([Thing()])
    # A default that raises propagates.
    with pytest.raises(ValueError, match="nope"):
        _core.json_dumps(Thing(), lambda o: (_ for _ in ()).throw(ValueError("nope")))


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="not JSON compliant: nan"):
        _core.json_dumps({"x": math.nan})
    with pytest.raises(ValueError, match="not JSON compliant: inf"):
        _core.json_dumps([math.inf])
    with pytest.raises(TypeError, match="keys must be str, int, float, bool or None, not tuple"):
        _core.json_dumps({(1, 2): 1})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(RecursionError, match="nesting deeper than 500"):
        _core.json_dumps(cycle)
    deep: Any = 1
    for _ in range(400):
        deep = [deep]
    assert _core.json_dumps(deep) == std(deep)


def test_lone_surrogates_become_replacement_characters() -> None:
    # One U+FFFD per lone surrogate, high or low; everything around them as the stdlib has it.
    value = {"s": "a\ud800b\udfff\ufffdé", "\udc00k": ["\ud83d"]}
    out = _core.json_dumps(value)
    assert out.decode("utf-8") == '{"s":"a\ufffdb\ufffd\ufffdé","\ufffdk":["\ufffd"]}'
    replaced = re.sub("[\ud800-\udfff]", "\ufffd", json.dumps(value, ensure_ascii=False))
    assert json.loads(out) == json.loads(replaced)


def test_the_logger_uses_it() -> None:
    enc = _make_encoder()
    assert enc({"k": 1.0, "s": "é"}) == '{"k":1.0,"s":"é"}'.encode()
    # The fast path is taken (not the stdlib fallback), so the benchmark measures it.
    assert enc.__name__ == "core_encode"
