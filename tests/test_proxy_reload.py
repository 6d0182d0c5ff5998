"""Live reload: a new config put in place while the proxy runs, whole or not at all, with no
connection dropped. Against fake name servers here; tests/test_proxy_acceptance.py moves a topic
between two real clusters under a real producer's traffic."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rmqfast import _core
from rmqfast.codec import RequestCode, ResponseCode, TopicRouteData
from rmqfast.proxy import ConfigError, Proxy

from .fakes import FakeServer, wait_until
from .proxyproc import CliProxy, refused
from .remoting import RemotingClient
from .secure import TlsRemotingClient, make_certs


def config(a: FakeServer, b: FakeServer, orders_to: str, **extra: Any) -> dict[str, Any]:
    return {
        "clusters": [{"name": "a", "namesrv": [a.addr]}, {"name": "b", "namesrv": [b.addr]}],
        "routes": [{"cluster": orders_to, "exact": "orders"}],
        "default_cluster": "a",
        "listen": "127.0.0.1:0",
        "admin": None,
        **extra,
    }


def broker_of(c: RemotingClient, topic: str) -> str:
    """The broker name a route lookup for `topic` answers, over the open connection `c`."""
    r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=10)
    assert r.code == ResponseCode.SUCCESS, r.remark
    [(broker, _)] = TopicRouteData.from_json(r.body).broker_addrs().items()
    return broker


def test_a_reload_moves_a_topic_to_another_cluster_on_an_open_connection(
    two_clusters: tuple[FakeServer, FakeServer],
) -> None:
    a, b = two_clusters
    with Proxy(config(a, b, "a")) as p, RemotingClient(p.namesrv_addr) as c:
        assert broker_of(c, "orders") == "broker-a"
        result = p.reload(config(a, b, "b"))
        assert (result.changed, result.restart_needed) == (["routes"], [])
        # The same connection: a reload drops none.
        assert broker_of(c, "orders") == "broker-b"
        assert broker_of(c, "other") == "broker-a"
        assert p.config.routes[0].cluster == "b"
        s = p.stats()
        assert (s["config_reloads"], s["config_reload_failures"]) == (1, 0)


def test_a_bad_config_is_rejected_whole_and_the_running_one_stays(
    two_clusters: tuple[FakeServer, FakeServer],
) -> None:
    a, b = two_clusters
    with Proxy(config(a, b, "a")) as p, RemotingClient(p.namesrv_addr) as c:
        # A good change (the timeout) next to a bad one (a route to no cluster): neither applies.
        bad = config(a, b, "nowhere", request_timeout_ms=1234)
        with pytest.raises(ConfigError, match=r"routes\[0\]"):
            p.reload(bad)
        with pytest.raises(ConfigError, match="request_timeout_ms"):
            p.reload(config(a, b, "b", request_timeout_ms="soon"))
        with pytest.raises(ConfigError, match="unknown setting"):
            p.reload({**config(a, b, "b"), "no_such_field": 1})
        assert p.config.request_timeout_ms == 5000
        assert broker_of(c, "orders") == "broker-a"
        s = p.stats()
        assert (s["config_reloads"], s["config_reload_failures"]) == (0, 3)
        # A field only a restart applies keeps its running value and is named.
        result = p.reload(config(a, b, "b", worker_threads=3, admin="127.0.0.1:0"))
        assert result.restart_needed == ["worker_threads", "admin"]
        assert sorted(result.changed) == ["admin", "routes", "worker_threads"]
        assert (p.config.worker_threads, p.config.admin) == (2, None)
        assert broker_of(c, "orders") == "broker-b"
    assert set(_core.proxy_restart_only_fields()) >= {"worker_threads", "max_connections"}


def test_an_in_process_proxy_without_a_source_says_how_to_reload(
    two_clusters: tuple[FakeServer, FakeServer],
) -> None:
    a, b = two_clusters
    with Proxy(config(a, b, "a")) as p:
        with pytest.raises(ConfigError, match=r"call reload\(config\)"):
            p.reload()
        assert p.stats()["config_reload_failures"] == 1


def test_a_new_listen_address_serves_new_clients_while_old_connections_go_on(
    two_clusters: tuple[FakeServer, FakeServer],
) -> None:
    a, b = two_clusters
    with Proxy(config(a, b, "a")) as p, RemotingClient(p.namesrv_addr) as kept:
        old = p.namesrv_addr
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            new = f"127.0.0.1:{s.getsockname()[1]}"
        p.reload(config(a, b, "b", listen=new))
        assert p.namesrv_addr == new
        with RemotingClient(new) as c:
            assert broker_of(c, "orders") == "broker-b"
        wait_until(lambda: refused(old), 10, "the old listener to close")
        assert broker_of(kept, "orders") == "broker-b"
        # A port already taken rejects the reload; the proxy stays where it is.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = f"127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(ConfigError, match="listen: cannot bind"):
                p.reload(config(a, b, "a", listen=busy))
        assert p.namesrv_addr == new
        assert broker_of(kept, "orders") == "broker-b"


def test_renewed_certificates_apply_to_new_clients_and_open_ones_keep_theirs(
    two_clusters: tuple[FakeServer, FakeServer], tmp_path: Path
) -> None:
    a, b = two_clusters
    first, second, live = tmp_path / "first", tmp_path / "second", tmp_path / "live"
    for d in (first, second, live):
        d.mkdir()
    ca1, cert1, key1 = make_certs(first)
    ca2, cert2, key2 = make_certs(second)
    cert, key = live / "server.pem", live / "server.key"
    shutil.copy(cert1, cert)
    shutil.copy(key1, key)
    cfg = config(a, b, "a", tls_cert_file=str(cert), tls_key_file=str(key))
    with Proxy(cfg) as p, TlsRemotingClient(p.namesrv_addr, str(ca1)) as kept:
        assert broker_of(kept, "orders") == "broker-a"
        # The certificate is renewed in place (same paths), then the config is reloaded.
        shutil.copy(cert2, cert)
        shutil.copy(key2, key)
        p.reload(config(a, b, "b", tls_cert_file=str(cert), tls_key_file=str(key)))
        with TlsRemotingClient(p.namesrv_addr, str(ca2)) as c:
            assert broker_of(c, "orders") == "broker-b"
        with pytest.raises(OSError):  # ssl.SSLCertVerificationError: signed by the new CA
            TlsRemotingClient(p.namesrv_addr, str(ca1)).close()
        assert broker_of(kept, "orders") == "broker-b"
        # A key file that is not a key rejects the reload; the renewed certificate stays.
        key.write_text("not a key\n")
        with pytest.raises(ConfigError, match="tls_key_file"):
            p.reload(cfg)
        with TlsRemotingClient(p.namesrv_addr, str(ca2)) as c:
            assert broker_of(c, "orders") == "broker-b"


def _toml(a: FakeServer, b: FakeServer, orders_to: str) -> str:
    return (
        f'default_cluster = "a"\n'
        f'[[clusters]]\nname = "a"\nnamesrv = ["{a.addr}"]\n'
        f'[[clusters]]\nname = "b"\nnamesrv = ["{b.addr}"]\n'
        f'[[routes]]\ncluster = "{orders_to}"\nexact = "orders"\n'
    )


def _post_reload(admin_url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{admin_url}/reload", method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_sighup_and_post_reload_reread_the_config_file(
    two_clusters: tuple[FakeServer, FakeServer], tmp_path: Path
) -> None:
    a, b = two_clusters
    path = tmp_path / "proxy.toml"
    path.write_text(_toml(a, b, "a"))
    proxy = CliProxy("--config", str(path), "--admin", "127.0.0.1:0")
    try:
        with RemotingClient(proxy.namesrv_addr) as c:
            assert broker_of(c, "orders") == "broker-a"
            path.write_text(_toml(a, b, "b"))
            proxy.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: proxy.stats()["config_reloads"] == 1, 10, "the SIGHUP reload")
            assert broker_of(c, "orders") == "broker-b"
            # Not TOML: rejected, counted, logged with the reason; the proxy serves on.
            path.write_text("clusters = [\n")
            proxy.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: proxy.stats()["config_reload_failures"] == 1, 10, "the rejection")
            assert any("not valid TOML" in line for line in proxy.lines), proxy.lines
            assert broker_of(c, "orders") == "broker-b"
            # POST /reload: the error names the field, then a good file goes in.
            path.write_text(_toml(a, b, "nowhere"))
            code, body = _post_reload(proxy.admin_url)
            assert code == 400 and body["reloaded"] is False
            assert "routes[0]" in body["error"], body
            path.write_text(_toml(a, b, "a"))
            code, body = _post_reload(proxy.admin_url)
            assert (code, body) == (
                200,
                {"reloaded": True, "changed": ["routes"], "restart_needed": []},
            )
            assert broker_of(c, "orders") == "broker-a"
        with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "rmqfast_proxy_config_reloads_total 2" in metrics
        assert "rmqfast_proxy_config_reload_failures_total 2" in metrics
    finally:
        proxy.proc.send_signal(signal.SIGTERM)
        proxy.proc.wait(30)
