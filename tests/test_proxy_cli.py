"""The proxy's command line and configuration: validation, errors that name the field."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rmqfast.proxy import ConfigError, Proxy, from_mapping, load_file
from rmqfast.proxy.__main__ import build_parser, resolve_config


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rmqfast.proxy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_documents_every_option() -> None:
    out = run_cli("--help").stdout
    for flag in (
        "--namesrv",
        "--listen",
        "--advertise",
        "--admin",
        "--config",
        "--check-config",
        "--request-timeout-ms",
        "--idle-timeout-s",
        "--max-connections",
        "--max-frame-size",
        "--drain-timeout-ms",
    ):
        assert flag in out


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(
        """
listen = "127.0.0.1:19999"
default_cluster = "b"
request_timeout_ms = 2000

[[clusters]]
name = "a"
namesrv = ["127.0.0.1:9876", "127.0.0.1:9877"]

[[clusters]]
name = "b"
namesrv = ["127.0.0.1:9878"]

[[routes]]
prefix = "orders_"
cluster = "a"

[[routes]]
regex = "^audit-[0-9]+$"
cluster = "a"
"""
    )
    r = run_cli("--config", str(cfg), "--check-config")
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout
    loaded = load_file(cfg).validate()
    assert [c.name for c in loaded.clusters] == ["a", "b"]
    assert loaded.routes[0].prefix == "orders_"
    assert loaded.request_timeout_ms == 2000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "namesrv: expected at least one name server"),
        (("--namesrv", "nohost"), "clusters[0].namesrv: expected HOST:PORT"),
        (("--namesrv", "127.0.0.1:9876", "--listen", "localhost:1"), "listen: expected IP:PORT"),
        (("--namesrv", "127.0.0.1:9876", "--request-timeout-ms", "0"), "request_timeout_ms"),
        (("--namesrv", "127.0.0.1:9876", "--max-frame-size", "10"), "max_frame_size"),
        (("--namesrv", "127.0.0.1:9876", "--default-cluster", "zz"), "default_cluster"),
        (("--namesrv", "127.0.0.1:9876", "--log-level", "loud"), "log_level"),
        (
            ("--namesrv", "127.0.0.1:9876", "--upstream-tls-ca-file", "/ca.pem"),
            "upstream_tls_ca_file: only applies with upstream_tls = true",
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--upstream-tls", "--upstream-tls-ca-file", "/no.pem"),
            'upstream_tls_ca_file: "/no.pem" is not a readable file',
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--upstream-tls-no-verify"),
            "upstream_tls_verify: only applies with upstream_tls = true",
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--tls-cert-file", "/c.pem"),
            "tls_key_file: expected together with tls_cert_file",
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--tls-cert-file", "/c.pem", "--tls-key-file", "/k"),
            'tls_cert_file: "/c.pem" is not a readable file',
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--tls-mode", "strict"),
            'tls_mode: expected enforcing or permissive, got "strict"',
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--tls-client-auth", "always"),
            'tls_client_auth: expected none, optional or require, got "always"',
        ),
        (
            ("--namesrv", "127.0.0.1:9876", "--tls-client-ca-file", __file__),
            "tls_client_ca_file: only applies with tls_client_auth = optional or require",
        ),
    ],
)
def test_config_errors_name_the_field_and_exit_nonzero(args: tuple[str, ...], message: str) -> None:
    r = run_cli(*args, "--check-config")
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1  # one line, no traceback


def test_bad_config_opens_no_port() -> None:
    port = free_port()
    r = run_cli(
        "--namesrv", "127.0.0.1:9876", "--listen", f"127.0.0.1:{port}", "--worker-threads", "0"
    )
    assert r.returncode == 2
    assert "worker_threads" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free: nothing was opened


def test_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('namesrv = "127.0.0.1:9876"\nrequest_timeout = 5\n')
    with pytest.raises(ConfigError, match="request_timeout: unknown setting"):
        load_file(bad)
    bad.write_text('namesrv = "127.0.0.1:9876"\nidle_timeout_s = "long"\n')
    with pytest.raises(ConfigError, match="idle_timeout_s: expected an integer"):
        load_file(bad)
    bad.write_text('namesrv = "127.0.0.1:9876"\nupstream_tls = "yes"\n')
    with pytest.raises(ConfigError, match="upstream_tls: expected true or false"):
        load_file(bad)
    bad.write_text("[[routes]]\nexact = 'x'\n")
    with pytest.raises(ConfigError, match=r"routes\[0\]"):
        load_file(bad)
    bad.write_text("not toml = = =")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.toml")


def test_route_rules_need_exactly_one_matcher() -> None:
    cfg = from_mapping(
        {
            "namesrv": "127.0.0.1:9876",
            "routes": [{"cluster": "default", "exact": "a", "prefix": "b"}],
        }
    )
    with pytest.raises(ConfigError, match=r"routes\[0\]: expected exactly one of"):
        cfg.validate()
    cfg = from_mapping(
        {"namesrv": "127.0.0.1:9876", "routes": [{"cluster": "default", "regex": "("}]}
    )
    with pytest.raises(ConfigError, match=r"routes\[0\].regex"):
        cfg.validate()


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('namesrv = "127.0.0.1:1;127.0.0.1:2"\nlisten = "127.0.0.1:5000"\n')
    args = build_parser().parse_args(
        ["--config", str(cfg), "--listen", "127.0.0.1:6000", "--admin", "off"]
    )
    c = resolve_config(args)
    assert c.listen == "127.0.0.1:6000"
    assert c.admin is None
    assert c.clusters[0].namesrv == ["127.0.0.1:1", "127.0.0.1:2"]
    args = build_parser().parse_args(["--config", str(cfg), "--namesrv", "127.0.0.1:3"])
    assert resolve_config(args).clusters[0].namesrv == ["127.0.0.1:3"]


def test_listen_port_in_use_is_an_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = {"namesrv": "127.0.0.1:9876", "listen": f"127.0.0.1:{port}", "admin": None}
        with pytest.raises(OSError, match=f"listen: cannot bind 127.0.0.1:{port}"):
            Proxy(cfg).start()


def test_proxy_without_upstream_answers_route_lookups_with_system_error() -> None:
    """An unreachable name server: the client gets SYSTEM_ERROR with its opaque, fast."""
    from rmqfast.codec import RequestCode, ResponseCode

    from .remoting import RemotingClient

    dead = free_port()
    cfg = from_mapping({"namesrv": f"127.0.0.1:{dead}", "listen": "127.0.0.1:0", "admin": None})
    with Proxy(cfg) as p, RemotingClient(p.namesrv_addr) as c:
        r = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"}, timeout=10)
        assert r.code == ResponseCode.SYSTEM_ERROR
        assert r.remark is not None and f"127.0.0.1:{dead}" in r.remark
        s = p.stats()
        assert s["get_topic_route"] == 1
        assert s["local_reply_upstream_unavailable"] == 1
        assert s["upstream_connect_failure"] >= 1
        assert s["maintenance_failure"] == 1
        assert s["response_error"] == 1


def test_prometheus_text_includes_loggers_of_the_process() -> None:
    from rmqfast.logger import RocketMQLogger
    from rmqfast.stats import logger_stats, render_prometheus

    from .test_logger_support import FakeProducer

    fake = FakeProducer()
    with RocketMQLogger(
        ["127.0.0.1:9876"], "T", name="prom-test", producer_factory=lambda: fake
    ) as lg:
        lg.log({"a": 1})
        assert lg.flush(10)
        names = [n for n, _ in logger_stats()]
        assert "prom-test" in names
        text = render_prometheus()
        assert 'rmqfast_logger_accepted_total{name="prom-test"} 1' in text
        assert "rmqfast_build_info" in text
        assert "rmqfast_logger_" not in render_prometheus(None, [])


def test_metrics_and_stats_over_the_admin_endpoint() -> None:
    """/metrics names follow Prometheus conventions; every /stats key is in the README."""
    import json
    import re
    import urllib.request

    cfg = from_mapping(
        {"namesrv": f"127.0.0.1:{free_port()}", "listen": "127.0.0.1:0", "admin": "127.0.0.1:0"}
    )
    with Proxy(cfg) as p:
        assert p.admin_addr is not None
        with urllib.request.urlopen(f"http://{p.admin_addr}/metrics", timeout=10) as r:
            text = r.read().decode()
        with urllib.request.urlopen(f"http://{p.admin_addr}/stats", timeout=10) as r:
            stats = json.loads(r.read())
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert types["rmqfast_proxy_connections_total"] == "counter"
    assert types["rmqfast_proxy_client_to_proxy_bytes_total"] == "counter"
    assert types["rmqfast_proxy_connections_active"] == "gauge"
    for name, kind in types.items():
        assert "_total_total" not in name
        # RocketMQ 5's own names for the per-topic metrics, rmqfast_ for the rest.
        assert name.startswith("rmqfast_") or name.startswith("rocketmq_"), name
        assert name.endswith("_total") == (kind == "counter"), (name, kind)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    undocumented = [k for k in stats if f"`{k}`" not in readme]
    assert not undocumented, f"/stats keys missing from the README: {undocumented}"


def test_the_readme_defaults_table_is_the_code_defaults() -> None:
    """Each row of the README's configuration table states the default the code has; the data
    path's defaults are the Rust core's own."""
    import dataclasses
    import re

    from rmqfast import _core
    from rmqfast.proxy import ProxyConfig

    rust = _core.proxy_config_defaults()
    cfg = ProxyConfig()
    fields = {f.name for f in dataclasses.fields(ProxyConfig)}
    for name, value in rust.items():
        assert name in fields, f"Rust default {name} is not a ProxyConfig field"
        if name != "routes":
            assert getattr(cfg, name) == value, (
                f"{name}: Python {getattr(cfg, name)!r} != {value!r}"
            )
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("| key / flag | default | meaning |") :]
    table = table[: table.index("\n\n")]
    checked = set()
    for row in table.splitlines()[2:]:
        keys_cell, default_cell, _ = (c.strip() for c in row.strip("|").split("|"))
        names = [n for n in re.findall(r"`([a-z_]+)`", keys_cell.split(" / ")[0]) if n in fields]
        literal = re.fullmatch(r"`([^`]*)`", default_cell)
        for name in names:
            value = getattr(cfg, name)
            if literal:
                shown = str(value).lower() if isinstance(value, bool) else str(value)
                assert literal.group(1) == shown, (
                    f"README says {name} = {default_cell}, code {value!r}"
                )
            else:
                # "listen host", "none", "—", "built-in web roots": no value of its own.
                assert value in (None, [], ""), f"README gives {name} no literal default: {value!r}"
            checked.add(name)
    assert checked >= set(rust) - {"routes"} | {"admin", "log_level"}, set(rust) - checked


def test_the_open_file_limit_is_raised_to_fit_max_connections() -> None:
    """The CLI raises its soft limit on open files to two per allowed connection plus spare,
    within the hard limit, and says how many clients fit when the hard limit is lower."""
    import resource

    from rmqfast.proxy.__main__ import FD_SPARE, raise_fd_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert raise_fd_limit(300) is None  # 856 needed, 1024 there
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1024
        if hard != resource.RLIM_INFINITY and hard >= 4 * 1024:
            assert raise_fd_limit(1500) is None
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 2 * 1500 + FD_SPARE
            warning = raise_fd_limit(hard)
            assert warning is not None
            assert f"needs up to {2 * hard + FD_SPARE} open files" in warning
            assert f"about {(hard - FD_SPARE) // 2} clients fit" in warning
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
