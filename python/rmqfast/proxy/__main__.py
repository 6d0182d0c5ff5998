"""`python -m rmqfast.proxy`: run the RocketMQ-aware proxy."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence

from rmqfast.proxy import Proxy
from rmqfast.proxy.config import Cluster, ConfigError, ProxyConfig, load_file, parse_namesrv

_FLAGS: list[tuple[str, str, type, str]] = [
    ("--listen", "listen", str, "IP:PORT clients use as their name server [127.0.0.1:19876]"),
    (
        "--advertise",
        "advertise_host",
        str,
        "host put into broker addresses given to clients [the listen host]",
    ),
    ("--broker-bind", "broker_bind_host", str, "host the per-broker listeners bind [listen host]"),
    (
        "--broker-port-base",
        "broker_port_base",
        int,
        "first port of the per-broker listeners; 0 picks free ports [0]",
    ),
    (
        "--admin",
        "admin",
        str,
        "IP:PORT of the admin endpoint (/metrics /stats /ready /live); "
        "'off' disables it [127.0.0.1:9901]",
    ),
    ("--default-cluster", "default_cluster", str, "cluster for topics no route matches"),
    ("--connect-timeout-ms", "connect_timeout_ms", int, "upstream connect timeout [3000]"),
    (
        "--request-timeout-ms",
        "request_timeout_ms",
        int,
        "time a request may wait for its "
        "response before the proxy answers SYSTEM_BUSY; long polls add their own hold [5000]",
    ),
    (
        "--idle-timeout-s",
        "idle_timeout_s",
        int,
        "close client connections idle this long; 0 never [300]",
    ),
    ("--max-connections", "max_connections", int, "client connections accepted at once [10000]"),
    ("--max-frame-size", "max_frame_size", int, "largest frame accepted, in bytes [16777216]"),
    (
        "--route-cache-ttl-s",
        "route_cache_ttl_s",
        int,
        "answer route lookups from the cache for "
        "this long; stale routes are still served while every name server is down [5]",
    ),
    (
        "--drain-timeout-ms",
        "drain_timeout_ms",
        int,
        "on SIGTERM/SIGINT, wait this long for in-flight requests [5000]",
    ),
    ("--worker-threads", "worker_threads", int, "threads of the Rust data path [2]"),
    (
        "--max-buffered-frames",
        "max_buffered_frames",
        int,
        "frames queued toward one peer before reading from the other side pauses [1024]",
    ),
    (
        "--route-hedge-ms",
        "route_hedge_ms",
        int,
        "a route lookup with a cached route waits this long for the name server, then gets "
        "the cached route [500]",
    ),
    (
        "--route-stale-limit-s",
        "route_stale_limit_s",
        int,
        "a cached route this young is used for hedging and beats a name server's "
        "TOPIC_NOT_EXIST [300]",
    ),
    (
        "--frame-timeout-ms",
        "frame_timeout_ms",
        int,
        "close a client whose frame is not complete this long after its first byte [30000]",
    ),
    (
        "--frame-memory-budget",
        "frame_memory_budget",
        int,
        "bytes all clients together may hold in partial frames over 64 KiB [67108864]",
    ),
    (
        "--metrics-max-topics",
        "metrics_max_topics",
        int,
        "label sets (topic, consumer group, broker) of the per-topic metrics; more are "
        "counted under topic __other__; 0 turns them off [1000]",
    ),
    (
        "--policy-default",
        "policy_default",
        str,
        "what no [[policy]] rule decides: data-path (refuse cluster administration with "
        "NO_PERMISSION) or allow-all [data-path]",
    ),
    ("--log-level", "log_level", str, "debug, info, warning or error [info]"),
    (
        "--upstream-tls-ca-file",
        "upstream_tls_ca_file",
        str,
        "PEM file of CA certificates to trust for upstream TLS [the built-in web roots]",
    ),
    (
        "--upstream-tls-server-name",
        "upstream_tls_server_name",
        str,
        "name to verify upstream certificates against (and send as SNI) [each address's host]",
    ),
    (
        "--tls-cert-file",
        "tls_cert_file",
        str,
        "PEM certificate chain shown to clients; with --tls-key-file, clients connect over TLS",
    ),
    ("--tls-key-file", "tls_key_file", str, "PEM private key of --tls-cert-file"),
    (
        "--tls-mode",
        "tls_mode",
        str,
        "enforcing: TLS clients only; permissive: TLS and plain clients [enforcing]",
    ),
    (
        "--tls-client-auth",
        "tls_client_auth",
        str,
        "client certificates: none, optional (verified when sent) or require (mutual TLS) [none]",
    ),
    (
        "--tls-client-ca-file",
        "tls_client_ca_file",
        str,
        "PEM file of the CA certificates client certificates are verified against",
    ),
    (
        "--access-log",
        "access_log",
        str,
        "log one JSON line per request to stdout, file or rocketmq; 'off' disables it [off]",
    ),
    (
        "--access-log-sample",
        "access_log_sample",
        int,
        "log 1 in N requests; errors, local replies and slow requests always [1]",
    ),
    (
        "--access-log-slow-ms",
        "access_log_slow_ms",
        int,
        "always log requests that took this long; 0 = no threshold [0]",
    ),
    (
        "--access-log-buffer-bytes",
        "access_log_buffer_bytes",
        int,
        "bytes of lines waiting for the destination; more are dropped and counted [8388608]",
    ),
    ("--access-log-file", "access_log_file", str, "with --access-log file: the file"),
    (
        "--access-log-max-bytes",
        "access_log_max_bytes",
        int,
        "rotate the file before it passes this size; 0 never [104857600]",
    ),
    (
        "--access-log-backups",
        "access_log_backups",
        int,
        "rotated files kept (FILE.1 ... FILE.N) [5]",
    ),
    ("--access-log-topic", "access_log_topic", str, "with --access-log rocketmq: the topic"),
    (
        "--access-log-namesrv",
        "access_log_namesrv",
        str,
        "with --access-log rocketmq: name servers (a:9876;b:9876) [the default cluster's]",
    ),
]

# On/off options: (flag, field, value set, help).
_SWITCHES: list[tuple[str, str, bool, str]] = [
    (
        "--upstream-tls",
        "upstream_tls",
        True,
        "speak TLS to name servers and brokers (clusters in TLS enforcing mode)",
    ),
    (
        "--upstream-tls-no-verify",
        "upstream_tls_verify",
        False,
        "with --upstream-tls: accept any upstream certificate (insecure; asked for explicitly)",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option is documented in --help."""
    p = argparse.ArgumentParser(
        prog="python -m rmqfast.proxy",
        description="A RocketMQ-protocol-aware TCP proxy. Point any RocketMQ client's name-server "
        "address at --listen; route lookups are answered with the proxy's own per-broker ports.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file; flags override it")
    p.add_argument(
        "--namesrv",
        action="append",
        metavar="HOST:PORT[;HOST:PORT]",
        help="upstream name server(s) of the (single) cluster; repeat or ';'-join for failover",
    )
    for flag, dest, typ, text in _FLAGS:
        p.add_argument(flag, dest=dest, type=typ, help=text, default=None)
    for flag, dest, value, text in _SWITCHES:
        p.add_argument(flag, dest=dest, action="store_const", const=value, default=None, help=text)
    p.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    return p


def resolve_config(args: argparse.Namespace) -> ProxyConfig:
    """The file (if any) with the flags applied over it, validated."""
    cfg = load_file(args.config) if args.config else ProxyConfig()
    if args.namesrv:
        cfg.clusters = [c for c in cfg.clusters if c.name != "default"]
        cfg.clusters.insert(0, Cluster("default", parse_namesrv(list(args.namesrv))))
    for dest in [f[1] for f in _FLAGS] + [s[1] for s in _SWITCHES]:
        v = getattr(args, dest)
        if v is not None:
            setattr(cfg, dest, None if dest in ("admin", "access_log") and v == "off" else v)
    return cfg.validate()


# How often the main thread looks at what the signal handlers asked for.
_SIGNAL_POLL_S = 0.1

# File descriptors a proxy needs beyond two per client connection (each client on a broker port
# has its own broker connection): listeners, name-server connections, the admin endpoint.
FD_SPARE = 256


def raise_fd_limit(max_connections: int) -> str | None:
    """Raises this process's soft limit on open files to what `max_connections` clients need
    (two descriptors each, plus `FD_SPARE`), as far as the hard limit allows; a warning when it
    does not allow enough, else None."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    need = 2 * max_connections + FD_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= need:
        return None
    return (
        f"max_connections = {max_connections} needs up to {need} open files, but the limit is "
        f"{target} (ulimit -n); about {max(0, (target - FD_SPARE) // 2)} clients fit, beyond "
        "that new connections wait at accept and broker connections fail"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the proxy until SIGTERM or SIGINT; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
    except ConfigError as e:
        print(f"rmqfast.proxy: config error: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print("config OK")
        return 0
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warning = raise_fd_limit(cfg.max_connections)
    if warning:
        logging.getLogger("rmqfast.proxy").warning("%s", warning)
    # The handlers only set flags (taking no lock a handler could interrupt); the main loop
    # below acts on them.
    wanted = {"stop": False, "reload": False}

    def on_signal(_signum: int, _frame: object) -> None:
        wanted["stop"] = True

    def on_hangup(_signum: int, _frame: object) -> None:
        wanted["reload"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hangup)

    def reread() -> ProxyConfig:
        """The config file read again, with the same flags over it."""
        return resolve_config(args)

    try:
        proxy = Proxy(cfg, reload_source=reread).start()
    except (OSError, ValueError) as e:
        print(f"rmqfast.proxy: cannot start: {e}", file=sys.stderr)
        return 1
    # Machine-readable lines for scripts (make run, tests) that start the proxy.
    print(f"rmqfast proxy: namesrv {proxy.namesrv_addr}", flush=True)
    if proxy.admin_addr:
        print(f"rmqfast proxy: admin http://{proxy.admin_addr}/metrics", flush=True)
    level = cfg.log_level
    while not wanted["stop"]:
        time.sleep(_SIGNAL_POLL_S)
        if wanted["reload"] and not wanted["stop"]:
            wanted["reload"] = False
            try:
                proxy.reload()
            except ConfigError:
                pass  # logged by reload; the running config stays
            else:
                print(f"rmqfast proxy: reloaded; namesrv {proxy.namesrv_addr}", flush=True)
        if proxy.config.log_level != level:
            # Reloaded (by SIGHUP or POST /reload); logging is this module's to configure.
            level = proxy.config.log_level
            logging.getLogger().setLevel(level.upper())
    logging.getLogger("rmqfast.proxy").info("stop signal: draining")
    proxy.stop(proxy.config.drain_timeout_ms / 1000.0)
    print("rmqfast proxy: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
