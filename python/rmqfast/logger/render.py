"""Rendering on the batcher thread: a queued item becomes (body, key, tag).

HTTP records go through the logger's log_format (or the process-wide metadata's, or the
plugin's default entry); mappings are encoded to JSON as they are; bytes are sent unchanged
and str as UTF-8.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rmqfast.logger.batch import Encoded
from rmqfast.logger.config import METADATA, LoggerConfig
from rmqfast.logger.encode import make_encoder
from rmqfast.logger.records import ASGIRecord, HTTPInfo, WSGIRecord
from rmqfast.logger.template import (
    CompiledTemplate,
    Getter,
    TextTemplate,
    default_entry,
    gateway_only_reason,
    origin_text,
    variable_getter,
)

__all__ = ["Renderer"]

_log = logging.getLogger("rmqfast.logger")

# Longest KEYS / TAGS value sent; longer rendered keys and tags are cut to it.
_MAX_KEY_LEN = 1024


class Renderer:
    """Turns queued items into (body, key, tag) on the batcher thread."""

    def __init__(self, cfg: LoggerConfig, version: str) -> None:
        self.cfg = cfg
        self.version = version
        self._encode = make_encoder()
        # APISIX sends key and tag as written; rmqfast reads them as templates ($$ is a `$`).
        text: type[TextTemplate] | type[_Literal] = _Literal if cfg.apisix_compat else TextTemplate
        self.key_tpl: TextTemplate | _Literal | None = text(cfg.key) if cfg.key else None
        self.tag_tpl: TextTemplate | _Literal | None = text(cfg.tag) if cfg.tag else None
        self._getters: dict[str, Getter | None] = {}
        self.meta_version = -1
        self.template: CompiledTemplate | None = None
        self.extra: CompiledTemplate | None = None
        self.capture_req = False
        self.capture_resp = False
        self.refresh(warn=True)

    def refresh(self, warn: bool = False) -> None:
        """Recompile the templates in effect (the logger's own, else the metadata's)."""
        cfg = self.cfg
        with METADATA.lock:
            version = METADATA.version
            meta_fmt = METADATA.log_format
            meta_extra = METADATA.log_format_extra
        fmt = cfg.log_format if cfg.log_format is not None else meta_fmt
        extra_fmt = cfg.log_format_extra if cfg.log_format_extra is not None else meta_extra
        limit = cfg.max_resp_body_bytes
        compat = cfg.apisix_compat
        template = CompiledTemplate(fmt, limit, apisix=compat) if fmt is not None else None
        extra = (
            CompiledTemplate(extra_fmt, limit, apisix=compat)
            if extra_fmt and template is None
            else None
        )
        unknown: set[str] = set()
        for t in (template, extra):
            if t is not None:
                unknown |= t.unknown
        if unknown and warn:
            gateway = {u: gateway_only_reason(u) for u in unknown}
            for u, why in sorted(gateway.items()):
                if why is not None:
                    _log.warning(
                        "rocketmq logger %r: $%s has no value in a Python web service (%s); "
                        "the field is left out",
                        cfg.name,
                        u,
                        why,
                    )
            other = sorted("$" + u for u, why in gateway.items() if why is None)
            if other:
                _log.warning(
                    "rocketmq logger %r: unknown variables %s always come out empty",
                    cfg.name,
                    ", ".join(other),
                )
        origin = cfg.meta_format == "origin"
        body_vars: set[str] = set()
        for t in (template, extra):
            if t is not None:
                body_vars |= t.body_vars
        capture_req = cfg.include_req_body or "request_body" in body_vars
        capture_resp = (cfg.include_resp_body or "resp_body" in body_vars) and not origin
        # One attribute at a time is fine: a request racing a metadata change may capture a
        # body it does not need, or miss one a brand-new template wants.
        self.template = template
        self.extra = extra
        self.capture_req = capture_req
        self.capture_resp = capture_resp
        self.meta_version = version

    def _getter(self, name: str) -> Getter | None:
        try:
            return self._getters[name]
        except KeyError:
            g = self._getters[name] = variable_getter(name, self.cfg.max_resp_body_bytes)
            return g

    def _lookup(self, info: HTTPInfo) -> Callable[[str], Any]:
        def lookup(name: str) -> Any:
            g = self._getter(name)
            return None if g is None else g(info)

        return lookup

    @staticmethod
    def _cap(text: str | None) -> str | None:
        if text is not None and len(text) > _MAX_KEY_LEN:
            return text[:_MAX_KEY_LEN]
        return text

    def render(self, item: Any) -> Encoded | None:
        """(body, key, tag) for one queued item, None when `match` leaves a request out;
        raises if it cannot be encoded."""
        if METADATA.version != self.meta_version:
            self.refresh(warn=True)
        t = type(item)
        if t is ASGIRecord or t is WSGIRecord:
            return self._render_http(item)
        lookup: Callable[[str], Any]
        if t is dict:
            body = self._encode(item)
            lookup = item.get
        elif isinstance(item, (bytes, bytearray)):
            body = bytes(item)
            lookup = _no_vars
        elif isinstance(item, str):
            body = item.encode("utf-8", "replace")
            lookup = _no_vars
        elif isinstance(item, (ASGIRecord, WSGIRecord)):
            return self._render_http(item)
        else:
            body = self._encode(dict(item))
            lookup = item.get
        key_tpl, tag_tpl = self.key_tpl, self.tag_tpl
        if key_tpl is None and tag_tpl is None:
            return body, None, None
        key = key_tpl.render(lookup) if key_tpl is not None else None
        tag = tag_tpl.render(lookup) if tag_tpl is not None else None
        return body, self._cap(key), self._cap(tag)

    def _render_http(self, rec: ASGIRecord | WSGIRecord) -> Encoded | None:
        cfg = self.cfg
        if isinstance(rec, ASGIRecord):
            info = HTTPInfo.from_asgi(rec, cfg.max_req_body_bytes, cfg.max_resp_body_bytes)
        else:
            info = HTTPInfo.from_wsgi(rec, cfg.max_req_body_bytes, cfg.max_resp_body_bytes)
        lookup = self._lookup(info)
        match = cfg.match_exprs
        if match is not None and not any(m.evaluate(lookup) for m in match):
            return None  # APISIX's `match`: only requests one of the rules holds for
        if cfg.meta_format == "origin":
            body = origin_text(info, self._include_req(lookup)).encode("utf-8", "replace")
        else:
            template = self.template
            if template is not None:
                entry = template.render(info)
                if info.route is not None:
                    entry["route_id"] = info.route
            else:
                entry = default_entry(
                    info,
                    req_body=self._include_req(lookup),
                    resp_body=self._include_resp(lookup),
                    max_resp_body_bytes=cfg.max_resp_body_bytes,
                    version=self.version,
                    apisix=cfg.apisix_compat,
                )
                extra = self.extra
                if extra is not None:
                    extra.render_missing(info, entry)
            body = self._encode(entry)
        key = self.key_tpl.render(lookup) if self.key_tpl is not None else None
        tag = self.tag_tpl.render(lookup) if self.tag_tpl is not None else None
        return body, self._cap(key), self._cap(tag)

    def _include_req(self, lookup: Callable[[str], Any]) -> bool:
        cfg = self.cfg
        if not cfg.include_req_body:
            return False
        return cfg.req_body_expr is None or cfg.req_body_expr.evaluate(lookup)

    def _include_resp(self, lookup: Callable[[str], Any]) -> bool:
        cfg = self.cfg
        if not cfg.include_resp_body:
            return False
        return cfg.resp_body_expr is None or cfg.resp_body_expr.evaluate(lookup)


def _no_vars(_: str) -> None:
    return None


class _Literal:
    """A key or tag sent as written (APISIX's behaviour)."""

    __slots__ = ("static",)

    def __init__(self, text: str) -> None:
        self.static = text

    def render(self, lookup: Callable[[str], Any]) -> str | None:
        return self.static or None
