"""`python -m rmqfast.devcluster up|down|status|jars|mqadmin`: a local RocketMQ for development."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rmqfast.devcluster import (
    DevCluster,
    DevClusterError,
    _set_current_dir,
    current_dir,
    ensure_jars,
    run_mqadmin,
)


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rmqfast.devcluster",
        description="Start, inspect and stop a local RocketMQ (name servers, brokers, Proxy).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start a cluster and leave it running")
    up.add_argument("--namesrvs", type=int, default=1, metavar="N", help="name servers (1)")
    up.add_argument("--brokers", type=int, default=1, metavar="M", help="brokers (1)")
    up.add_argument("--proxy", action="store_true", help="also start RocketMQ's Proxy")
    up.add_argument("--dir", type=Path, help="data and logs (default: a new temp dir)")
    up.add_argument("--timeout", type=float, default=180.0, help="startup deadline, s (180)")
    up.add_argument(
        "--broker-prop",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra broker.conf property (repeatable)",
    )
    up.add_argument(
        "--broker-jvm-prop",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra -D system property for the brokers (repeatable)",
    )
    up.add_argument("--json", action="store_true", help="print the state as JSON")
    up.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    down = sub.add_parser("down", help="stop the cluster started by `up`")
    down.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `up`)")
    down.add_argument("--timeout", type=float, default=60.0, help="SIGTERM grace, s (60)")
    down.add_argument("--keep-dir", action="store_true", help="keep a temp DIR `up` created")

    status = sub.add_parser("status", help="show the servers of the cluster")
    status.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `up`)")
    status.add_argument("--json", action="store_true", help="print JSON")

    for verb in ("stop-broker", "start-broker"):
        b = sub.add_parser(verb, help=f"{verb.split('-')[0]} one broker of the cluster")
        b.add_argument("name", help="broker name, e.g. broker-a")
        b.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `up`)")
        if verb == "stop-broker":
            b.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")

    sub.add_parser("jars", help="fetch the RocketMQ jars if needed and print their directory")

    mq = sub.add_parser("mqadmin", help="run mqadmin against the cluster")
    mq.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `up`)")
    mq.add_argument("args", nargs=argparse.REMAINDER, help="mqadmin arguments")
    return p


def _resolve_dir(given: Path | None) -> Path:
    if given is not None:
        return given.expanduser().resolve()
    cur = current_dir()
    if cur is None:
        raise DevClusterError("no dev cluster recorded by `up`; pass --dir DIR")
    return cur


def _summary(c: DevCluster) -> dict[str, Any]:
    return {
        "dir": str(c.dir),
        "cluster_name": c.cluster_name,
        "namesrv_addr": c.namesrv_addr,
        "namesrv_addrs": c.namesrv_addrs,
        "brokers": c.brokers,
        "proxy_addr": c.proxy_addr,
        "proxy_grpc_addr": c.proxy_grpc_addr,
        "processes": c.status(),
    }


def _cmd_up(a: argparse.Namespace) -> int:
    cluster = DevCluster(
        namesrvs=a.namesrvs,
        brokers=a.brokers,
        proxy=a.proxy,
        dir=a.dir,
        broker_props=dict(a.broker_prop),
        broker_jvm_props=dict(a.broker_jvm_prop),
        timeout=a.timeout,
        detach=True,
        quiet=a.quiet,
    )
    cluster.start()
    _set_current_dir(cluster.dir)
    if a.json:
        print(json.dumps(_summary(cluster), indent=2))
        return 0
    for addr in cluster.namesrv_addrs:
        print(f"namesrv {addr}")
    for name, addr in cluster.brokers.items():
        print(f"broker {name} {addr}")
    if cluster.proxy_addr:
        print(f"proxy {cluster.proxy_addr}")
        print(f"proxy-grpc {cluster.proxy_grpc_addr}")
    print(f"namesrv-addr {cluster.namesrv_addr}")
    print(f"dir {cluster.dir}")
    return 0


def _cmd_down(a: argparse.Namespace) -> int:
    path = _resolve_dir(a.dir)
    cluster = DevCluster.from_state(path)
    if a.keep_dir:
        cluster.set_keep_dir(True)
    pids = [f"{r['name']} (pid {r['pid']})" for r in cluster.status() if r["alive"]]
    cluster.stop(timeout=a.timeout)
    if current_dir() == path:
        _set_current_dir(None)
    print(f"stopped {', '.join(pids)}" if pids else f"nothing running in {path}")
    return 0


def _cmd_status(a: argparse.Namespace) -> int:
    path = _resolve_dir(a.dir)
    cluster = DevCluster.from_state(path)
    rows = cluster.status()
    if a.json:
        print(json.dumps(_summary(cluster), indent=2))
    else:
        print(f"dir {path}")
        for r in rows:
            rss = f"  rss {r['rss_kib'] // 1024} MiB" if r["rss_kib"] else ""
            state = "alive" if r["alive"] else "dead"
            print(f"{r['name']:<10} {r['role']:<8} pid {r['pid']}  {state:<5}  {r['addr']}{rss}")
    return 0 if rows and all(r["alive"] for r in rows) else 1


def _cmd_broker(a: argparse.Namespace) -> int:
    cluster = DevCluster.from_state(_resolve_dir(a.dir))
    if a.name not in cluster.brokers:
        raise DevClusterError(f"no broker {a.name!r}; brokers: {', '.join(cluster.brokers)}")
    if a.command == "stop-broker":
        cluster.stop_broker(a.name, kill=a.kill)
        print(f"stopped {a.name}")
    else:
        cluster.start_broker(a.name)
        print(f"broker {a.name} {cluster.brokers[a.name]}")
    return 0


def _cmd_mqadmin(a: argparse.Namespace) -> int:
    cluster = DevCluster.from_state(_resolve_dir(a.dir))
    args = a.args[1:] if a.args[:1] == ["--"] else list(a.args)
    proc = run_mqadmin(args, cluster.namesrv_addr, rocketmq_home=cluster.rocketmq_home)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (2 on a DevClusterError)."""
    a = _parser().parse_args(argv)
    try:
        if a.command == "up":
            return _cmd_up(a)
        if a.command == "down":
            return _cmd_down(a)
        if a.command == "status":
            return _cmd_status(a)
        if a.command in ("stop-broker", "start-broker"):
            return _cmd_broker(a)
        if a.command == "jars":
            print(ensure_jars(quiet=False))
            return 0
        return _cmd_mqadmin(a)
    except DevClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
