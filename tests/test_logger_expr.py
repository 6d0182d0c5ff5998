"""The lua-resty-expr subset used by include_req_body_expr / include_resp_body_expr."""

from __future__ import annotations

from typing import Any

import pytest

from rmqfast.logger.expr import ExprError, compile_expr

VARS: dict[str, Any] = {
    "arg_name": "json",
    "arg_weight": "12",
    "arg_height": "20",
    "status": 200,
    "remote_addr": "192.168.1.20",
    "http_user_agent": "Mozilla/5.0 Chrome",
    "fields": ["repo", "owner"],
}


def ev(rule: Any, env: dict[str, Any] | None = None) -> bool:
    return compile_expr(rule).evaluate((VARS if env is None else env).get)


@pytest.mark.parametrize(
    ("rule", "result"),
    [
        ([["arg_name", "==", "json"]], True),
        ([["arg_name", "==", "xml"]], False),
        ([["arg_name", "~=", "xml"]], True),
        ([["arg_name", "~=", "json"]], False),
        # Numbers: the variable is converted only when the value is a number.
        ([["arg_weight", "==", 12]], True),
        ([["arg_weight", "==", "12"]], True),
        ([["status", "==", 200]], True),
        ([["status", "==", "200"]], False),  # Lua: 200 == "200" is false
        ([["arg_name", "==", 1]], False),
        ([["arg_name", "~=", 1]], True),
        ([["arg_weight", ">", 10]], True),
        ([["arg_weight", ">", 12]], False),
        ([["arg_weight", ">=", 12]], True),
        ([["arg_weight", "<", "13"]], True),
        ([["arg_weight", "<=", 11]], False),
        ([["arg_name", ">", 1]], False),  # not a number: false
        ([["missing", ">", 1]], False),
        ([["missing", "==", "x"]], False),
        ([["arg_name", "~~", "^j.o"]], True),
        ([["arg_name", "~~", "^J"]], False),
        ([["arg_name", "~*", "^J"]], True),
        ([["missing", "~~", "."]], False),
        ([["status", "~~", "^2\\d\\d$"]], True),
        ([["arg_name", "in", ["xml", "json"]]], True),
        ([["arg_name", "in", ["xml"]]], False),
        ([["status", "in", [200, 204]]], True),
        ([["fields", "has", "repo"]], True),
        ([["fields", "has", "x"]], False),
        ([["arg_name", "has", "json"]], False),
        ([["remote_addr", "ipmatch", ["127.0.0.1", "192.168.0.0/16"]]], True),
        ([["remote_addr", "ipmatch", ["10.0.0.0/8"]]], False),
        ([["arg_name", "ipmatch", ["10.0.0.0/8"]]], False),
        ([["arg_name", "!", "~~", "[0-9]+"]], True),
        ([["arg_name", "!", "==", "json"]], False),
        ([["arg_name", "json"]], True),  # [var, value] means ==
        # lua-resty-expr lower-cases the operator slot before reading it as the value.
        ([["arg_name", "JSON"]], True),
        ([["arg_name", "xml"]], False),
        ([["arg_name", "IN", ["json"]]], True),  # operators are case-insensitive
        # A list of expressions is AND.
        ([["arg_name", "==", "json"], ["arg_weight", ">", 10]], True),
        ([["arg_name", "==", "json"], ["arg_weight", ">", 15]], False),
        # The README's examples.
        (
            [["arg_name", "==", "json"], ["arg_weight", ">", 10], ["arg_weight", "!", ">", 15]],
            True,
        ),
        (
            [
                "!AND",
                ["arg_name", "==", "json"],
                ["OR", ["arg_weight", ">", 10], ["arg_height", "!", ">", 15]],
            ],
            False,
        ),
        (["OR", ["arg_name", "==", "xml"], ["status", "==", 200]], True),
        (["or", ["arg_name", "==", "xml"], ["status", "==", 500]], False),
        (["!OR", ["arg_name", "==", "xml"], ["status", "==", 500]], True),
        (["AND", ["arg_name", "==", "json"], ["status", "==", 200]], True),
        (
            ["AND", ["arg_name", "==", "json"], ["AND", ["status", "==", 200], ["x", "==", 1]]],
            False,
        ),
    ],
)
def test_rules(rule: Any, result: bool) -> None:
    assert ev(rule) is result


def test_variables_are_listed() -> None:
    c = compile_expr(["OR", ["arg_a", "==", "1"], [["http_b", "~~", "x"], ["status", ">", 1]]])
    assert c.variables == {"arg_a", "http_b", "status"}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ([], "non-empty array"),
        ("x", "non-empty array"),
        (["arg_name", "==", "json"], "wrapped inside brackets"),
        ([["arg_name", "===", "x"]], "invalid operator"),
        ([["arg_name", "x", "==", "y"]], "bad 'not' expression"),
        ([["arg_name", "==", "a", "b", "c"]], "2 to 4 items"),
        ([["arg_name"]], "2 to 4 items"),
        ([[1, "==", "a"]], "variable name"),
        ([["arg_name", "~~", "("]], "bad regular expression"),
        ([["arg_name", "~~", 5]], "regular expression string"),
        ([["arg_name", "in", "a"]], "'in' expects an array"),
        ([["remote_addr", "ipmatch", ["nope"]]], "bad address"),
        ([["remote_addr", "ipmatch", []]], "'ipmatch' expects"),
        (["AND", ["a", "==", "b"]], "at least two operands"),
        ([["a", "==", "b"], "c"], "non-empty array"),
    ],
)
def test_bad_rules(rule: Any, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_expr(rule)
