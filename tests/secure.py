"""A broker with TLS enforced (certificate from the tests' own CA) and ACL 2.0 authentication,
shared by the producer, logger and proxy TLS tests (started once per run: conftest `secure`)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmqfast.devcluster import DevCluster

from .remoting import RemotingClient, create_topic, new_topic


def java_sign(fields: dict[str, str], body: bytes, access_key: str, secret_key: str) -> str:
    """AclClientRPCHook's signature, written independently of the Rust code."""
    f = {k: v for k, v in fields.items() if k != "Signature"}
    f["AccessKey"] = access_key
    # Java TreeMap order is UTF-16 code-unit order.
    data = "".join(f[k] for k in sorted(f, key=lambda s: s.encode("utf-16-be"))).encode() + body
    return base64.b64encode(hmac.new(secret_key.encode(), data, hashlib.sha1).digest()).decode()


def signed(fields: dict[str, str], body: bytes, access_key: str, secret_key: str) -> dict[str, str]:
    out = dict(fields)
    out["AccessKey"] = access_key
    out["Signature"] = java_sign(out, body, access_key, secret_key)
    return out


ACL_USER, ACL_PASSWORD = "rocketmq", "12345678"


@dataclass
class SecureCluster:
    cluster: DevCluster
    ca_file: str
    topic: str

    @property
    def namesrv(self) -> str:
        return self.cluster.namesrv_addr

    def connect(self, addr: str) -> RemotingClient:
        return TlsRemotingClient(addr, self.ca_file)


class TlsRemotingClient(RemotingClient):
    """tests.remoting.RemotingClient over TLS, verified with Python's ssl module; with
    `client_cert` (certificate and key files) it shows that certificate (mutual TLS)."""

    def __init__(
        self,
        addr: str,
        ca_file: str,
        timeout: float = 10.0,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        super().__init__(addr, timeout)
        ctx = ssl.create_default_context(cafile=ca_file)
        if client_cert is not None:
            ctx.load_cert_chain(*client_cert)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=addr.rsplit(":", 1)[0])


def acl_sign(fields: dict[str, str]) -> dict[str, str]:
    return signed(fields, b"", ACL_USER, ACL_PASSWORD)


# A fresh P-256 key, unencrypted (openssl req).
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)


def _make_ca(d: Path, name: str, subject: str) -> None:
    """A self-signed CA valid for 2 days: `<name>.pem` and `<name>.key` in `d`."""
    _openssl(d, "req", "-x509", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", subject,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI)."""
    run = functools.partial(_openssl, d)
    ec = _EC_KEY
    _make_ca(d, "ca", "/CN=rmqfast test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


def make_client_certs(d: Path, names: list[str]) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A client CA and, for each name, a client certificate with subject
    `CN=<name>,O=rmqfast tests` signed by it: (CA file, {name: (certificate, key)})."""

    run = functools.partial(_openssl, d)
    ec = _EC_KEY
    _make_ca(d, "client-ca", "/CN=rmqfast test client CA")
    (d / "client-ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
    )
    out: dict[str, tuple[Path, Path]] = {}
    for name in names:
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/O=rmqfast tests/CN={name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "client-ca.pem",
            "-CAkey", "client-ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            "-extfile", "client-ext.cnf")  # fmt: skip
        out[name] = (d / f"{name}.pem", d / f"{name}.key")
    return d / "client-ca.pem", out


@contextmanager
def secure_cluster(d: Path) -> Iterator[SecureCluster]:
    """Starts the cluster with its certificates in `d`; stops it on exit."""
    ca, cert, key = make_certs(d)
    tls_props = d / "tls.properties"
    tls_props.write_text(
        "tls.test.mode.enable=false\n"
        "tls.server.need.client.auth=none\n"
        f"tls.server.certPath={cert}\n"
        f"tls.server.keyPath={key}\n"
    )
    cluster = DevCluster(
        namesrvs=1,
        brokers=1,
        broker_props={
            "authenticationEnabled": "true",
            "authenticationProvider": (
                "org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider"
            ),
            "authenticationMetadataProvider": (
                "org.apache.rocketmq.auth.authentication.provider."
                "LocalAuthenticationMetadataProvider"
            ),
            "initAuthenticationUser": json.dumps(
                {"username": ACL_USER, "password": ACL_PASSWORD}, separators=(",", ":")
            ),
            "innerClientAuthenticationCredentials": json.dumps(
                {"accessKey": ACL_USER, "secretKey": ACL_PASSWORD}, separators=(",", ":")
            ),
        },
        broker_jvm_props={"tls.server.mode": "enforcing"},
        stop_timeout=10.0,
    )
    # The name server has no JVM-property hook in DevCluster; both JVMs read the TLS file
    # through JAVA_TOOL_OPTIONS, so the name server (permissive) presents the same cert.
    with pytest.MonkeyPatch.context() as mp:
        prior = os.environ.get("JAVA_TOOL_OPTIONS", "")
        mp.setenv("JAVA_TOOL_OPTIONS", f"{prior} -Dtls.config.file={tls_props}".strip())
        cluster.start()
    try:
        sc = SecureCluster(cluster, str(ca), new_topic("secure_it"))
        create_topic(cluster.brokers, cluster.namesrv_addr, sc.topic, sc.connect, acl_sign)
        yield sc
    finally:
        cluster.stop()
