"""A compatible subset of lua-resty-expr (v1), as APISIX uses it for `include_*_body_expr`.

A rule is a list. Its first element is either a logical operator (`AND`, `OR`, `!AND`, `!OR`,
any case) followed by at least two sub-rules, or a sub-rule itself, in which case every element
is a sub-rule and they are combined with AND. A leaf is `[var, op, value]`, `[var, "!", op,
value]` (negated) or, for compatibility, `[var, value]` (meaning `==`).

Operators: `==`, `~=`, `>`, `>=`, `<`, `<=`, `~~` (regex search), `~*` (case-insensitive regex
search), `in`, `has`, `ipmatch`. Comparison follows Lua: `==` and `~=` convert the variable to a
number only when the value is a number; the ordering operators convert both sides and are false
when either is not a number; `~~`/`~*` are false for a missing variable. Regexes use Python's
`re` (close to, but not exactly, PCRE).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CompiledExpr", "ExprError", "compile_expr"]

Lookup = Callable[[str], Any]


class ExprError(ValueError):
    """A rule that lua-resty-expr would refuse; the message says what is wrong."""


_LOGIC_OPS = frozenset({"AND", "OR", "!AND", "!OR"})


def _to_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        text = v.strip()
        try:
            return float(int(text, 16)) if text[:2].lower() == "0x" else float(text)
        except ValueError:
            return None
    return None


def _lua_eq(a: Any, b: Any) -> bool:
    # Lua compares values of different types as unequal ("200" ~= 200); bools are not numbers.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    a_num = isinstance(a, (int, float))
    b_num = isinstance(b, (int, float))
    if a_num != b_num:
        return False
    return bool(a == b)


def _eq(lv: Any, rv: Any) -> bool:
    if isinstance(rv, (int, float)) and not isinstance(rv, bool):
        n = _to_number(lv)
        return n is not None and n == rv
    return _lua_eq(lv, rv)


def _ne(lv: Any, rv: Any) -> bool:
    if isinstance(rv, (int, float)) and not isinstance(rv, bool):
        n = _to_number(lv)
        return n is None or n != rv
    return not _lua_eq(lv, rv)


def _ordering(cmp: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def op(lv: Any, rv: Any) -> bool:
        a, b = _to_number(lv), _to_number(rv)
        if a is None or b is None:
            return False
        return cmp(a, b)

    return op


def _as_text(v: Any) -> str | None:
    if v is None or isinstance(v, bool):
        return None if v is None else ("true" if v else "false")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v) if isinstance(v, (str, int, float)) else None


def _regex_op(lv: Any, rv: Any) -> bool:
    text = _as_text(lv)
    return text is not None and rv.search(text) is not None


def _in(lv: Any, rv: Any) -> bool:
    return isinstance(rv, list) and any(_lua_eq(lv, v) for v in rv)


def _has(lv: Any, rv: Any) -> bool:
    return isinstance(lv, list) and any(_lua_eq(v, rv) for v in lv)


def _ipmatch(lv: Any, rv: Any) -> bool:
    if not isinstance(lv, str):
        return False
    try:
        addr = ipaddress.ip_address(lv)
    except ValueError:
        return False
    return any(addr in net for net in rv)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _eq,
    "~=": _ne,
    ">": _ordering(lambda a, b: a > b),
    ">=": _ordering(lambda a, b: a >= b),
    "<": _ordering(lambda a, b: a < b),
    "<=": _ordering(lambda a, b: a <= b),
    "~~": _regex_op,
    "~*": _regex_op,
    "in": _in,
    "has": _has,
    "ipmatch": _ipmatch,
}


class _Leaf:
    __slots__ = ("fn", "negate", "value", "var")

    def __init__(self, var: str, fn: Callable[[Any, Any], bool], value: Any, negate: bool):
        self.var = var
        self.fn = fn
        self.value = value
        self.negate = negate

    def eval(self, lookup: Lookup) -> bool:
        return self.fn(lookup(self.var), self.value) != self.negate


class _Logic:
    __slots__ = ("children", "is_and", "negate")

    def __init__(self, op: str, children: list[_Leaf | _Logic]):
        self.is_and = op.endswith("AND")
        self.negate = op.startswith("!")
        self.children = children

    def eval(self, lookup: Lookup) -> bool:
        if self.is_and:
            result = all(c.eval(lookup) for c in self.children)
        else:
            result = any(c.eval(lookup) for c in self.children)
        return result != self.negate


class CompiledExpr:
    """A compiled rule; `evaluate(lookup)` resolves variable names through `lookup`."""

    __slots__ = ("_root", "variables")

    def __init__(self, root: _Leaf | _Logic, variables: frozenset[str]) -> None:
        self._root = root
        self.variables = variables

    def evaluate(self, lookup: Lookup) -> bool:
        """True when the rule holds for the variables `lookup` returns (None when unset)."""
        return self._root.eval(lookup)


def _compile_leaf(rule: Sequence[Any], path: str, names: set[str]) -> _Leaf:
    negate = False
    if len(rule) == 4:
        if rule[1] != "!":
            raise ExprError(f"{path}: bad 'not' expression (the second of four items must be '!')")
        negate = True
        var, op, value = rule[0], rule[2], rule[3]
    elif len(rule) in (2, 3):
        var, op = rule[0], rule[1]
        value = rule[2] if len(rule) == 3 else None
    else:
        raise ExprError(f"{path}: an expression has 2 to 4 items, got {len(rule)}")
    if not isinstance(var, str) or not var:
        raise ExprError(f"{path}: the variable name must be a non-empty string, got {var!r}")
    if isinstance(op, str):
        op = op.lower()
    if value is None and not (isinstance(op, str) and op in _OPS):
        # lua-resty-expr reads [var, value] as [var, "==", value].
        value, op = op, "=="
        if value is None:
            raise ExprError(f"{path}: invalid expression")
    if not isinstance(op, str) or op not in _OPS:
        raise ExprError(
            f"{path}: invalid operator {op!r} (expected one of {', '.join(sorted(_OPS))})"
        )
    if op in ("~~", "~*"):
        if not isinstance(value, str):
            raise ExprError(f"{path}: {op} expects a regular expression string")
        try:
            value = re.compile(value, re.IGNORECASE if op == "~*" else 0)
        except re.error as e:
            raise ExprError(f"{path}: bad regular expression {value!r}: {e}") from None
    elif op == "in" and not isinstance(value, list):
        raise ExprError(f"{path}: 'in' expects an array of values")
    elif op == "ipmatch":
        if not isinstance(value, list) or not value:
            raise ExprError(f"{path}: 'ipmatch' expects an array of IP addresses or CIDRs")
        nets = []
        for item in value:
            try:
                nets.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ExprError(f"{path}: 'ipmatch' got a bad address {item!r}") from None
        value = nets
    names.add(var)
    return _Leaf(var, _OPS[op], value, negate)


def _compile(rule: Any, path: str, names: set[str]) -> _Leaf | _Logic:
    if not isinstance(rule, (list, tuple)) or not rule:
        raise ExprError(f"{path}: expected a non-empty array")
    first = rule[0]
    if isinstance(first, (list, tuple)):
        children = [_compile(r, f"{path}[{i}]", names) for i, r in enumerate(rule)]
        return _Logic("AND", children)
    if isinstance(first, str) and first.upper() in _LOGIC_OPS:
        if len(rule) <= 2:
            raise ExprError(f"{path}: {first} needs at least two operands")
        children = [_compile(r, f"{path}[{i}]", names) for i, r in enumerate(rule) if i > 0]
        return _Logic(first.upper(), children)
    return _compile_leaf(rule, path, names)


def compile_expr(rule: Any, name: str = "expr") -> CompiledExpr:
    """Compile a lua-resty-expr rule; raises ExprError naming `name` and what is wrong."""
    if not isinstance(rule, (list, tuple)) or not rule:
        raise ExprError(f"{name}: expected a non-empty array of expressions")
    first = rule[0]
    if not isinstance(first, (list, tuple)) and not (
        isinstance(first, str) and first.upper() in _LOGIC_OPS
    ):
        raise ExprError(
            f'{name}: rule should be wrapped inside brackets, e.g. [["arg_name", "==", "x"]]'
        )
    names: set[str] = set()
    root = _compile(rule, name, names)
    return CompiledExpr(root, frozenset(names))
