"""log_format templates, nginx variables, the default full log and key/tag templates.

Templates are compiled once into lists of (field, getter) pairs; rendering a request is a walk
over that list with no parsing. Values beginning with `$` are variables; every other value keeps
its JSON type; objects nest; a variable with no value drops its field (APISIX's behaviour).
`$$text` is the literal string `$text`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from rmqfast.logger.records import HTTPInfo, hostname, local_times

__all__ = [
    "KNOWN_VARIABLES",
    "CompiledTemplate",
    "TextTemplate",
    "default_entry",
    "origin_text",
    "variable_getter",
]

Getter = Callable[[HTTPInfo], Any]


def _time_iso(i: HTTPInfo) -> str:
    return local_times(i.end)[0]


def _time_local(i: HTTPInfo) -> str:
    return local_times(i.end)[1]


def _body(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def _is_args(i: HTTPInfo) -> str:
    return "?" if i.args else ""


def _content_length(i: HTTPInfo) -> str | None:
    return i.header("content-length")


def _content_type(i: HTTPInfo) -> str | None:
    return i.header("content-type")


def _pid(_: HTTPInfo) -> str:
    return str(os.getpid())


# Types follow APISIX (api7/lua-var-nginx-module): $status, $request_time, $request_length and
# $bytes_sent are numbers; every other nginx variable is a string.
_SIMPLE: dict[str, Getter] = {
    "host": lambda i: i.host,
    "hostname": lambda i: hostname(),
    "remote_addr": lambda i: i.remote_addr,
    "remote_port": lambda i: i.remote_port,
    "request_method": lambda i: i.method,
    "request": lambda i: i.request_line,
    "request_uri": lambda i: i.request_uri,
    "uri": lambda i: i.uri,
    "document_uri": lambda i: i.uri,
    "args": lambda i: i.args,
    "query_string": lambda i: i.args,
    "is_args": _is_args,
    "scheme": lambda i: i.scheme,
    "server_protocol": lambda i: i.protocol,
    "server_addr": lambda i: i.server_addr,
    "server_port": lambda i: i.server_port,
    "status": lambda i: i.status,
    "request_time": lambda i: i.request_time,
    "request_length": lambda i: i.request_length,
    "bytes_sent": lambda i: i.bytes_sent,
    "body_bytes_sent": lambda i: str(i.body_bytes_sent),
    "content_length": _content_length,
    "content_type": _content_type,
    "time_iso8601": _time_iso,
    "time_local": _time_local,
    "msec": lambda i: f"{i.end:.3f}",
    "request_id": lambda i: i.request_id,
    "route": lambda i: i.route,
    "route_id": lambda i: i.route,
    "request_body": lambda i: _body(i.req_body),
    "pid": _pid,
}
# $resp_body needs the logger's max_resp_body_bytes; it is bound in variable_getter.

KNOWN_VARIABLES: frozenset[str] = frozenset(
    [*_SIMPLE, "resp_body", "http_*", "sent_http_*", "arg_*", "cookie_*", "uri_param_*"]
)
"""Variables and variable families (`*`) the templates understand."""

GATEWAY_ONLY: dict[str, str] = {
    "upstream_*": "there is no upstream: the app is the server",
    "balancer_ip": "there is no upstream: the app is the server",
    "balancer_port": "there is no upstream: the app is the server",
    "service_id": "APISIX services do not exist here",
    "service_name": "APISIX services do not exist here",
    "route_name": "APISIX route names do not exist here; $route is the framework's route",
    "consumer_name": "APISIX consumers do not exist here",
    "consumer_group_id": "APISIX consumers do not exist here",
    "post_arg_*": "the logger does not parse request bodies",
}
"""APISIX / nginx variables that have no value in a Python web service, and why: a template
using one gets a warning once and the field is left out (APISIX leaves out a nil too)."""


def gateway_only_reason(name: str) -> str | None:
    """Why variable `name` has no value here, if it is one of GATEWAY_ONLY."""
    for pattern, why in GATEWAY_ONLY.items():
        if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return why
    return None


def variable_getter(name: str, max_resp_body_bytes: int = 524288) -> Getter | None:
    """The getter of nginx variable `name` (without `$`), or None when it is not known."""
    g = _SIMPLE.get(name)
    if g is not None:
        return g
    if name == "resp_body":
        limit = max_resp_body_bytes
        return lambda i: _body(i.decoded_resp_body(limit))
    if name.startswith("http_") and len(name) > 5:
        h = name[5:].replace("_", "-").lower()
        return lambda i: i.header(h)
    if name.startswith("sent_http_") and len(name) > 10:
        rh = name[10:].replace("_", "-").lower()
        return lambda i: i.resp_header(rh)
    if name.startswith("arg_") and len(name) > 4:
        a = name[4:]
        return lambda i: i.arg(a)
    if name.startswith("cookie_") and len(name) > 7:
        c = name[7:]
        return lambda i: i.cookie(c)
    if name.startswith("uri_param_") and len(name) > 10:
        pname = name[10:]
        return lambda i: i.path_param(pname)
    return None


def _missing(_: HTTPInfo) -> None:
    return None


_LITERAL, _VAR, _NESTED, _LIST = 0, 1, 2, 3

APISIX_MAX_DEPTH = 5
"""APISIX's MAX_LOG_FORMAT_DEPTH: the top-level object is depth 1; an object or array met at
depth 5 comes out as `{}`."""


class CompiledTemplate:
    """A log_format object compiled once; `render(info)` builds one entry.

    `$var` strings are substituted in objects and in arrays (an array keeps a variable with no
    value as null, so positions hold). `apisix=True` also applies APISIX's limits: objects and
    arrays nested past depth 5, and empty ones, come out as `{}`.
    """

    __slots__ = ("_fields", "apisix", "body_vars", "unknown", "variables")

    def __init__(
        self, fmt: Mapping[str, Any], max_resp_body_bytes: int = 524288, *, apisix: bool = False
    ) -> None:
        self.variables: set[str] = set()
        self.unknown: set[str] = set()
        self.apisix = apisix
        self._fields = self._compile(fmt, max_resp_body_bytes, 1)
        self.body_vars = self.variables & {"request_body", "resp_body"}

    def _compile(
        self, fmt: Mapping[str, Any], limit: int, depth: int
    ) -> list[tuple[str, int, Any]]:
        return [(key, *self._value(value, limit, depth)) for key, value in fmt.items()]

    def _value(self, value: Any, limit: int, depth: int) -> tuple[int, Any]:
        if isinstance(value, str) and value.startswith("$"):
            if value.startswith("$$"):
                return _LITERAL, value[1:]
            name = value[1:]
            g = variable_getter(name, limit)
            self.variables.add(name)
            if g is None:
                self.unknown.add(name)
                g = _missing
            return _VAR, g
        if isinstance(value, (Mapping, list, tuple)):
            if self.apisix and (depth >= APISIX_MAX_DEPTH or not value):
                return _LITERAL, {}
            if isinstance(value, Mapping):
                return _NESTED, self._compile(value, limit, depth + 1)
            return _LIST, [self._value(v, limit, depth + 1) for v in value]
        return _LITERAL, value

    def render(self, info: HTTPInfo) -> dict[str, Any]:
        """The entry for one request."""
        return _render(self._fields, info)

    def render_missing(self, info: HTTPInfo, into: dict[str, Any]) -> None:
        """Add the fields `into` does not have yet (log_format_extra semantics)."""
        for key, value in _render(self._fields, info).items():
            if key not in into:
                into[key] = value


def _render(fields: list[tuple[str, int, Any]], info: HTTPInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kind, p in fields:
        if kind == _VAR:
            v = p(info)
            if v is not None:
                out[key] = v
        elif kind == _LITERAL:
            out[key] = _copy(p)
        elif kind == _NESTED:
            out[key] = _render(p, info)
        else:
            out[key] = _render_list(p, info)
    return out


def _render_list(items: list[tuple[int, Any]], info: HTTPInfo) -> list[Any]:
    out: list[Any] = []
    for kind, p in items:
        if kind == _VAR:
            out.append(p(info))
        elif kind == _LITERAL:
            out.append(_copy(p))
        elif kind == _NESTED:
            out.append(_render(p, info))
        else:
            out.append(_render_list(p, info))
    return out


def _copy(v: Any) -> Any:
    # Literal lists/objects are shared by every entry; copy so a caller's edit stays local.
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def default_entry(
    info: HTTPInfo,
    *,
    req_body: bool,
    resp_body: bool,
    max_resp_body_bytes: int,
    version: str,
    apisix: bool = False,
) -> dict[str, Any]:
    """The plugin's full log (`get_full_log`) for one request. `apisix` adds the two fields
    APISIX always has that carry nothing here: `service_id` ("" for a matched route, else the
    host, as APISIX) and `apisix_latency` (the whole latency: there is no upstream)."""
    host = info.host or ""
    port = info.server_port or ("443" if info.scheme in ("https", "wss") else "80")
    request: dict[str, Any] = {
        "url": f"{info.scheme}://{host}:{port}{info.request_uri}",
        "uri": info.request_uri,
        "method": info.method,
        "headers": info.headers_object(),
        "querystring": info.querystring(),
        "size": info.request_length,
    }
    if req_body and info.req_body is not None:
        request["body"] = info.req_body.decode("utf-8", "replace")
    response: dict[str, Any] = {
        "status": info.status,
        "headers": info.resp_headers_object(),
        "size": info.bytes_sent,
    }
    if resp_body:
        body = info.decoded_resp_body(max_resp_body_bytes)
        if body is not None:
            response["body"] = body.decode("utf-8", "replace")
    entry: dict[str, Any] = {
        "request": request,
        "response": response,
        "server": {"hostname": hostname(), "version": version},
        "client_ip": info.remote_addr or "",
        "start_time": round(info.start * 1000),
        "latency": (info.end - info.start) * 1000.0,
    }
    if info.route is not None:
        entry["route_id"] = info.route
    if apisix:
        entry["service_id"] = "" if info.route is not None else host
        entry["apisix_latency"] = entry["latency"]
    return entry


def origin_text(info: HTTPInfo, req_body: bool) -> str:
    """meta_format "origin": request line, headers, blank line, body when included."""
    parts = [info.request_line, "\r\n"]
    for k, v in info.headers:
        parts += [k, ": ", v, "\r\n"]
    parts.append("\r\n")
    if req_body and info.req_body is not None:
        parts.append(info.req_body.decode("utf-8", "replace"))
    return "".join(parts)


_INTERP = re.compile(r"\$\$|\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)")


class TextTemplate:
    """A key or tag: plain text, or text with nginx-style `$var` / `${var}` interpolation."""

    __slots__ = ("_parts", "static", "variables")

    def __init__(self, text: str) -> None:
        self._parts: list[tuple[bool, str]] = []
        self.variables: set[str] = set()
        pos = 0
        for m in _INTERP.finditer(text):
            if m.start() > pos:
                self._parts.append((False, text[pos : m.start()]))
            if m.group(0) == "$$":
                self._parts.append((False, "$"))
            else:
                name = m.group(1) or m.group(2)
                self._parts.append((True, name))
                self.variables.add(name)
            pos = m.end()
        if pos < len(text):
            self._parts.append((False, text[pos:]))
        self.static: str | None = None
        if not self.variables:
            self.static = "".join(p for _, p in self._parts)

    def render(self, lookup: Callable[[str], Any]) -> str | None:
        """The text with variables replaced (unset ones as empty); None if it comes out empty."""
        if self.static is not None:
            return self.static or None
        out: list[str] = []
        for is_var, p in self._parts:
            if is_var:
                v = lookup(p)
                if v is not None:
                    out.append(v if isinstance(v, str) else _scalar_text(v))
            else:
                out.append(p)
        text = "".join(out)
        return text or None


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
