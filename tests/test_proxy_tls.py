"""The proxy with TLS: toward the cluster (upstream_tls), toward clients (enforcing and
permissive), and the official Java client over TLS with ACL signing through it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from rmqfast._core import Producer, ProducerError
from rmqfast.codec import FrameError, RequestCode, ResponseCode
from rmqfast.proxy import Proxy

from .fakes import wait_until
from .javatools import JavaTools
from .remoting import RemotingClient, pull, route_of
from .secure import (
    ACL_PASSWORD,
    ACL_USER,
    SecureCluster,
    TlsRemotingClient,
    acl_sign,
    make_client_certs,
)

pytestmark = pytest.mark.integration

SUCCESS = 0
GET_ROUTEINFO_BY_TOPIC = 105


def tls_both_sides(secure: SecureCluster) -> dict[str, Any]:
    """A proxy config with TLS toward the cluster (verified against the test CA) and toward
    clients (the cluster's own server certificate, from the same CA)."""
    certs = Path(secure.ca_file).parent
    return {
        "namesrv": secure.namesrv,
        "listen": "127.0.0.1:0",
        "admin": None,
        "upstream_tls": True,
        "upstream_tls_ca_file": secure.ca_file,
        "tls_cert_file": str(certs / "server.pem"),
        "tls_key_file": str(certs / "server.key"),
    }


def test_proxy_speaks_tls_upstream(secure: SecureCluster) -> None:
    """The rmqfast proxy in front of the TLS-enforcing, ACL-protected cluster: clients talk
    plain to the proxy, the proxy talks TLS (verified against the test CA) to the name server
    and the broker, and the client's AK/SK signatures pass through untouched."""
    cfg = {
        "namesrv": secure.namesrv,
        "listen": "127.0.0.1:0",
        "admin": None,
        "upstream_tls": True,
        "upstream_tls_ca_file": secure.ca_file,
    }
    with Proxy(cfg) as proxy:
        p = Producer([proxy.namesrv_addr], access_key=ACL_USER, secret_key=ACL_PASSWORD)
        try:
            r = p.send(secure.topic, b"through the proxy over TLS", keys="proxy-tls")
        finally:
            p.close()
        st = proxy.stats()
    assert (st["send_message_v2"], st["upstream_connect_failure"]) == (1, 0)
    addr = secure.cluster.brokers[r.broker_name]
    [m] = pull(addr, secure.topic, r.queue_id, r.queue_offset, 1, secure.connect, acl_sign)
    assert (m.body, m.keys, m.uniq_key) == (b"through the proxy over TLS", "proxy-tls", r.msg_id)

    # Without upstream TLS the enforcing broker drops the proxy's plain connection, so the
    # send fails (and nothing hangs).
    plain = {k: v for k, v in cfg.items() if not k.startswith("upstream_tls")}
    with Proxy(plain) as proxy:
        p = Producer(
            [proxy.namesrv_addr],
            access_key=ACL_USER,
            secret_key=ACL_PASSWORD,
            retry_times=0,
            timeout=5,
        )
        try:
            with pytest.raises(ProducerError):
                p.send(secure.topic, b"x")
        finally:
            p.close()


def test_proxy_serves_tls_clients(secure: SecureCluster) -> None:
    """TLS on both sides: clients reach the proxy over TLS (its certificate from the test CA),
    the proxy reaches the cluster over TLS. `enforcing` refuses plain clients (counted),
    `permissive` serves both."""
    cfg: dict[str, Any] = {
        **tls_both_sides(secure),
    }
    with Proxy(cfg) as proxy:
        p = Producer(
            [proxy.namesrv_addr],
            use_tls=True,
            tls_ca_file=secure.ca_file,
            access_key=ACL_USER,
            secret_key=ACL_PASSWORD,
        )
        try:
            r = p.send(secure.topic, b"TLS end to end", keys="tls-e2e")
        finally:
            p.close()
        # A plain client gets a TLS alert (not a frame), then the connection closes.
        with RemotingClient(proxy.namesrv_addr) as c, pytest.raises((OSError, FrameError)):
            c.request(GET_ROUTEINFO_BY_TOPIC, {"topic": secure.topic}, timeout=5)
        wait_until(
            lambda: proxy.stats()["tls_handshake_failure"] >= 1, 10, "the refused plain client"
        )
    addr = secure.cluster.brokers[r.broker_name]
    [m] = pull(addr, secure.topic, r.queue_id, r.queue_offset, 1, secure.connect, acl_sign)
    assert (m.body, m.keys) == (b"TLS end to end", "tls-e2e")

    with Proxy({**cfg, "tls_mode": "permissive"}) as proxy:
        for client in (secure.connect(proxy.namesrv_addr), RemotingClient(proxy.namesrv_addr)):
            with client as c:
                route = c.request(GET_ROUTEINFO_BY_TOPIC, {"topic": secure.topic})
                assert route.code == SUCCESS, route.remark
        assert proxy.stats()["tls_handshake_failure"] == 0


def test_java_client_over_tls_through_the_proxy(
    secure: SecureCluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """RocketMQ's Java client with TLS on (verifying the proxy's certificate against the test
    CA) and ACL signing, through the proxy with TLS on both sides, to the enforcing broker."""
    cache = getattr(request.config, "cache", None)
    build = cache.mkdir("rmqfast-java") if cache is not None else tmp_path / "build"
    java = JavaTools(secure.cluster.lib_dir, build, tmp_path)
    cfg = {
        **tls_both_sides(secure),
    }
    prefix = uuid.uuid4().hex[:8]
    with Proxy(cfg) as proxy:
        r = java.run(
            "Producer",
            {
                "namesrv": proxy.namesrv_addr,
                "topic": secure.topic,
                "group": f"rmqfast_tls_pg_{prefix}",
                "prefix": prefix,
                "sync": 5,
                "access_key": ACL_USER,
                "secret_key": ACL_PASSWORD,
            },
            jvm_props={
                "tls.enable": "true",
                "tls.test.mode.enable": "false",
                "tls.client.authServer": "true",
                "tls.client.trustCertPath": secure.ca_file,
            },
        ).result
        st = proxy.stats()
    assert r["keys"]["sync"] == [f"{prefix}-sync-{i}" for i in range(5)]
    assert st["send_message_v2"] == 5
    assert st["tls_handshake_failure"] == 0


def test_mutual_tls_subjects_in_the_policy(
    secure: SecureCluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Mutual TLS at the proxy: clients must show a certificate from the client CA, and the
    policy reads its subject. Only `CN=ops` may read the broker's config (GET_BROKER_CONFIG,
    refused by the default policy); `CN=app` gets NO_PERMISSION naming the rule; a client with
    no certificate never gets a connection; RocketMQ's Java client, showing its own
    certificate, produces under the default policy."""
    ca, certs = make_client_certs(tmp_path, ["ops", "app", "java-app"])
    cfg: dict[str, Any] = {
        **tls_both_sides(secure),
        "tls_client_auth": "require",
        "tls_client_ca_file": str(ca),
        "policy": [
            {
                "name": "ops-reads-config",
                "action": "allow",
                "codes": ["GET_BROKER_CONFIG"],
                "subjects": "^CN=ops,O=rmqfast tests$",
            }
        ],
    }

    def connect(addr: str, who: str) -> TlsRemotingClient:
        return TlsRemotingClient(addr, secure.ca_file, client_cert=certs[who])

    with Proxy(cfg) as proxy:
        with connect(proxy.namesrv_addr, "ops") as c:
            route = route_of(c, secure.topic)
        assert route is not None
        [broker] = [a[0] for a in route.broker_addrs().values()]
        answers = {}
        for who in ("ops", "app"):
            with connect(broker, who) as c:
                answers[who] = c.request(RequestCode.GET_BROKER_CONFIG, acl_sign({}), timeout=10)
        assert answers["ops"].code == ResponseCode.SUCCESS, answers["ops"].remark
        assert b"brokerName" in answers["ops"].body
        assert answers["app"].code == ResponseCode.NO_PERMISSION
        assert '"default"' in (answers["app"].remark or ""), answers["app"].remark

        # No certificate: the handshake fails (TLS 1.3 reports it on the first read).
        with (
            TlsRemotingClient(proxy.namesrv_addr, secure.ca_file) as c,
            pytest.raises((OSError, FrameError)),
        ):
            c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": secure.topic}, timeout=5)
        wait_until(
            lambda: proxy.stats()["tls_handshake_failure"] >= 1, 10, "the client with no cert"
        )

        cache = getattr(request.config, "cache", None)
        build = cache.mkdir("rmqfast-java") if cache is not None else tmp_path / "build"
        java = JavaTools(secure.cluster.lib_dir, build, tmp_path)
        prefix = uuid.uuid4().hex[:8]
        java_cert, java_key = certs["java-app"]
        r = java.run(
            "Producer",
            {
                "namesrv": proxy.namesrv_addr,
                "topic": secure.topic,
                "group": f"rmqfast_mtls_pg_{prefix}",
                "prefix": prefix,
                "sync": 3,
                "access_key": ACL_USER,
                "secret_key": ACL_PASSWORD,
            },
            jvm_props={
                "tls.enable": "true",
                "tls.test.mode.enable": "false",
                "tls.client.authServer": "true",
                "tls.client.trustCertPath": secure.ca_file,
                "tls.client.certPath": str(java_cert),
                "tls.client.keyPath": str(java_key),
            },
        ).result
        st = proxy.stats()
    assert r["keys"]["sync"] == [f"{prefix}-sync-{i}" for i in range(3)]
    assert st["request_denied_by_code"] == {"GET_BROKER_CONFIG": 1}
    assert st["tls_handshake_failure"] == 1
