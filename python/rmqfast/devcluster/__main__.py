"""`python -m rmqfast.devcluster up|down|status|jars|mqadmin|run|produce|consume`.

A local RocketMQ for development; `run` (what `make run` calls) adds the rmqfast proxy in front
of it and sends a first message, `produce` and `consume` go through that proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rmqfast.devcluster.cluster import DevCluster
from rmqfast.devcluster.errors import DevClusterError
from rmqfast.devcluster.jars import ensure_jars, run_mqadmin
from rmqfast.devcluster.messages import (
    DEFAULT_GROUP,
    Received,
    Sent,
    consume,
    describe,
    produce,
    resolve_namesrv,
    running_proxy,
)
from rmqfast.devcluster.processes import _set_current_dir, current_dir
from rmqfast.devcluster.run import FIRST_TOPIC, run, stop_run_proxy


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

    mq = sub.add_parser(
        "mqadmin",
        help="run mqadmin against the cluster (through the `make run` proxy when it runs)",
    )
    mq.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `up`)")
    mq.add_argument("args", nargs=argparse.REMAINDER, help="mqadmin arguments")

    run = sub.add_parser(
        "run",
        help="start (or reuse) a cluster, put the rmqfast proxy in front, send a first message, "
        "serve until Ctrl-C (what `make run` does)",
    )
    run.add_argument("--dir", type=Path, default=Path(".devcluster"), help="(.devcluster)")
    run.add_argument(
        "--proxy-port",
        type=int,
        metavar="PORT",
        help="proxy port on 127.0.0.1; fails if taken (default: 19876, or a free port if taken)",
    )
    run.add_argument(
        "--admin-port",
        type=int,
        metavar="PORT",
        help="admin endpoint port; fails if taken (default: 9901, or a free port if taken)",
    )
    run.add_argument("--namesrvs", type=int, default=1, metavar="N", help="name servers (1)")
    run.add_argument("--brokers", type=int, default=2, metavar="M", help="brokers (2)")
    run.add_argument("--topic", default=FIRST_TOPIC, help=f"first message's topic ({FIRST_TOPIC})")
    run.add_argument("--timeout", type=float, default=180.0, help="startup deadline, s (180)")
    run.add_argument("--log-level", default="warning", help="proxy log level (warning)")

    ns_help = "name server HOST:PORT (default: the proxy `make run` started; an error if none runs)"
    prod = sub.add_parser("produce", help="send messages through the `make run` proxy")
    prod.add_argument("--topic", required=True)
    prod.add_argument("--body", default="hello from rmqfast", help="message body text")
    prod.add_argument("--count", type=int, default=1, metavar="N", help="messages to send (1)")
    prod.add_argument("--tag", help="message tag")
    prod.add_argument("--key", help="message key(s), space-separated")
    prod.add_argument(
        "--no-create", action="store_true", help="do not create a topic that does not exist"
    )
    prod.add_argument("-n", "--namesrv", metavar="ADDR", help=ns_help)
    prod.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `run`/`up`)")

    cons = sub.add_parser("consume", help="read messages through the `make run` proxy")
    cons.add_argument("--topic", required=True)
    cons.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group ({DEFAULT_GROUP})")
    cons.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="stop after N messages (default: once caught up with at least one read)",
    )
    cons.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="wait at most S s (10)"
    )
    cons.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the first stored message, not the group's committed offset",
    )
    cons.add_argument(
        "--no-commit", action="store_true", help="leave the group's committed offsets alone"
    )
    cons.add_argument("-n", "--namesrv", metavar="ADDR", help=ns_help)
    cons.add_argument("--dir", type=Path, help="the cluster's DIR (default: the last `run`/`up`)")
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
    # The proxy of `make run` would only answer errors once the cluster behind it is gone.
    proxy_pid = stop_run_proxy(path)
    if proxy_pid is not None:
        print(f"stopped the rmqfast proxy of `make run` (pid {proxy_pid})")
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
    path = _resolve_dir(a.dir)
    cluster = DevCluster.from_state(path)
    args = a.args[1:] if a.args[:1] == ["--"] else list(a.args)
    given = _namesrv_arg(args)
    if given is not None:
        namesrv, source = given, "given with -n"
    else:
        rec = running_proxy(path)
        if rec is not None:
            namesrv, source = rec.namesrv_addr, f"the rmqfast proxy of `make run`, pid {rec.pid}"
        else:
            namesrv = cluster.namesrv_addr
            source = (
                "the cluster's own name server: no rmqfast proxy is running, "
                "so this bypasses it; `make run` starts one"
            )
    print(f"mqadmin: name server {namesrv} ({source})", file=sys.stderr, flush=True)
    proc = run_mqadmin(args, namesrv, rocketmq_home=cluster.rocketmq_home)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def _namesrv_arg(args: Sequence[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg in ("-n", "--namesrvAddr") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--namesrvAddr="):
            return arg.partition("=")[2]
    return None


def _cmd_run(a: argparse.Namespace) -> int:
    return run(
        a.dir,
        proxy_port=a.proxy_port,
        admin_port=a.admin_port,
        namesrvs=a.namesrvs,
        brokers=a.brokers,
        topic=a.topic,
        timeout=a.timeout,
        log_level=a.log_level,
    )


def _fields(d: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False) if k == 'body' else v}"
        for k, v in d.items()
        if v is not None
    )


def _cmd_produce(a: argparse.Namespace) -> int:
    if a.count < 1:
        raise DevClusterError(f"--count {a.count}: expected at least 1")
    namesrv, source = resolve_namesrv(a.namesrv, a.dir)
    print(f"produce: name server {namesrv} ({source})", file=sys.stderr, flush=True)
    bodies = [a.body if a.count == 1 else f"{a.body} #{i + 1}" for i in range(a.count)]

    def show(s: Sent) -> None:
        d = {
            "topic": s.topic,
            "broker": s.broker,
            "queue": s.queue_id,
            "offset": s.queue_offset,
            "msgId": s.msg_id,
        }
        print(f"sent {_fields(d)}", flush=True)

    _, created = produce(
        namesrv,
        a.topic,
        [b.encode() for b in bodies],
        tags=a.tag,
        keys=a.key,
        create=not a.no_create,
        on_sent=show,
    )
    if created:
        print(
            f"produce: created topic {a.topic} on {', '.join(created)} (4 queues each)",
            file=sys.stderr,
        )
    return 0


def _cmd_consume(a: argparse.Namespace) -> int:
    if a.count is not None and a.count < 1:
        raise DevClusterError(f"--count {a.count}: expected at least 1")
    namesrv, source = resolve_namesrv(a.namesrv, a.dir)
    print(f"consume: name server {namesrv} ({source})", file=sys.stderr, flush=True)

    def show(r: Received) -> None:
        print(f"received {_fields(describe(r))}", flush=True)

    got = consume(
        namesrv,
        a.topic,
        group=a.group,
        count=a.count,
        timeout=a.timeout,
        from_beginning=a.from_beginning,
        commit=not a.no_commit,
        on_message=show,
    )
    committed = "offsets not committed" if a.no_commit else "offsets committed"
    want = f" of {a.count}" if a.count is not None else ""
    print(
        f"consume: {len(got)}{want} message(s) from {a.topic} (group {a.group}, {committed})",
        file=sys.stderr,
    )
    if not got or (a.count is not None and len(got) < a.count):
        hint = "" if a.from_beginning else "; --from-beginning rereads what the group has read"
        print(f"consume: nothing more arrived within {a.timeout:g} s{hint}", file=sys.stderr)
        return 1
    return 0


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
        if a.command == "run":
            return _cmd_run(a)
        if a.command == "produce":
            return _cmd_produce(a)
        if a.command == "consume":
            return _cmd_consume(a)
        return _cmd_mqadmin(a)
    except DevClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
