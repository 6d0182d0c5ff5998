"""`_core.json_dumps` writes exactly what the stdlib encoder the logger used to call writes."""

from __future__ import annotations

import enum
import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmqfast import _core
from rmqfast.logger import _json_default, _make_encoder


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


@settings(max_examples=400, deadline=None)
@given(values)
def test_matches_the_stdlib(v: Any) -> None:
    assert dumps(v) == std(v)


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_print_as_python_repr(x: float) -> None:
    assert dumps(x) == repr(x).encode()


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
    out = _core.json_dumps({"s": "a\ud800b"})
    text = out.decode("utf-8")
    assert json.loads(text)["s"].startswith("a") and json.loads(text)["s"].endswith("b")
    assert "\ud800" not in text


def test_the_logger_uses_it() -> None:
    enc = _make_encoder()
    assert enc({"k": 1.0, "s": "é"}) == '{"k":1.0,"s":"é"}'.encode()
    # The fast path is taken (not the stdlib fallback), so the benchmark measures it.
    assert enc.__name__ == "core_encode"
