"""Send and read messages through a name-server address (by default the `make run` proxy).

`produce` sends with the Rust producer (`rmqfast.producer.Producer`), creating the topic on every
broker of the cluster the first time. `consume` looks the route up through the same address and
PULLs each queue from the broker addresses that route names, which through the proxy are the
proxy's own per-broker ports; consumer-group offsets are read and committed on the brokers.
`read_message` reads back one message by broker, queue and offset.

The proxy `make run` starts records itself in `<cluster dir>/rmqfast-proxy.json`;
`resolve_namesrv` finds it and refuses to fall back silently to the real name server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmqfast.codec import (
    ClusterInfo,
    MessageError,
    MessageExt,
    RequestCode,
    ResponseCode,
    RouteError,
    TopicRouteData,
    decode_messages,
)
from rmqfast.devcluster.cluster import STATE_FILE
from rmqfast.devcluster.errors import DevClusterError
from rmqfast.devcluster.processes import _pid_running, _write_atomic, current_dir
from rmqfast.devcluster.remoting import call, create_topic_fields, split_addr
from rmqfast.producer import Producer, ProducerError

__all__ = [
    "DEFAULT_GROUP",
    "PROXY_RECORD",
    "ProxyRecord",
    "Received",
    "Sent",
    "consume",
    "create_topic",
    "describe",
    "find_cluster_dir",
    "lookup_route",
    "produce",
    "read_message",
    "read_proxy_record",
    "remove_proxy_record",
    "resolve_namesrv",
    "running_proxy",
    "write_proxy_record",
]

PROXY_RECORD = "rmqfast-proxy.json"
DEFAULT_GROUP = "rmqfast_devcluster_consume"
PRODUCER_GROUP = "rmqfast_devcluster_produce"

# The codes by Java's names; RequestCode/ResponseCode are built at import, unseen by mypy.
_RQ_GET_BROKER_CLUSTER_INFO = int(RequestCode["GET_BROKER_CLUSTER_INFO"])
_RQ_GET_MIN_OFFSET = int(RequestCode["GET_MIN_OFFSET"])
_RQ_GET_ROUTEINFO_BY_TOPIC = int(RequestCode["GET_ROUTEINFO_BY_TOPIC"])
_RQ_PULL_MESSAGE = int(RequestCode["PULL_MESSAGE"])
_RQ_QUERY_CONSUMER_OFFSET = int(RequestCode["QUERY_CONSUMER_OFFSET"])
_RQ_UPDATE_AND_CREATE_TOPIC = int(RequestCode["UPDATE_AND_CREATE_TOPIC"])
_RQ_UPDATE_CONSUMER_OFFSET = int(RequestCode["UPDATE_CONSUMER_OFFSET"])
_RS_PULL_NOT_FOUND = int(ResponseCode["PULL_NOT_FOUND"])
_RS_PULL_OFFSET_MOVED = int(ResponseCode["PULL_OFFSET_MOVED"])
_RS_PULL_RETRY_IMMEDIATELY = int(ResponseCode["PULL_RETRY_IMMEDIATELY"])
_RS_QUERY_NOT_FOUND = int(ResponseCode["QUERY_NOT_FOUND"])
_RS_SUCCESS = int(ResponseCode["SUCCESS"])
_RS_TOPIC_NOT_EXIST = int(ResponseCode["TOPIC_NOT_EXIST"])
_PERM_READ = 1 << 2
# PullSysFlag.FLAG_SUBSCRIPTION: the request carries its own subscription ("*").
_PULL_FLAG_SUBSCRIPTION = 0x4
_PULL_BATCH = 32
_POLL = 0.1


# ---------------------------------------------------------------------------------------------
# the proxy record


@dataclass(frozen=True)
class ProxyRecord:
    """The proxy `make run` (`python -m rmqfast.devcluster run`) started for a cluster dir."""

    namesrv_addr: str
    admin_addr: str | None
    pid: int
    upstream: str
    path: Path


def write_proxy_record(
    dir: Path, namesrv_addr: str, admin_addr: str | None, upstream: str, pid: int | None = None
) -> Path:
    """Record the running proxy in `dir/rmqfast-proxy.json` (atomically); return the path."""
    path = dir / PROXY_RECORD
    record = {
        "format": 1,
        "namesrv_addr": namesrv_addr,
        "admin_addr": admin_addr,
        "pid": os.getpid() if pid is None else pid,
        "upstream": upstream,
        "started_at": time.time(),
    }
    _write_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def remove_proxy_record(dir: Path, pid: int | None = None) -> None:
    """Remove the record, only if it is the one written by `pid` (default: this process)."""
    rec = read_proxy_record(dir)
    if rec is not None and rec.pid == (os.getpid() if pid is None else pid):
        with contextlib.suppress(FileNotFoundError):
            rec.path.unlink()


def read_proxy_record(dir: Path) -> ProxyRecord | None:
    """The record in `dir`, whether or not its proxy still runs; None if there is none."""
    path = dir / PROXY_RECORD
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return ProxyRecord(
            namesrv_addr=str(d["namesrv_addr"]),
            admin_addr=str(d["admin_addr"]) if d.get("admin_addr") else None,
            pid=int(d["pid"]),
            upstream=str(d.get("upstream", "")),
            path=path,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DevClusterError(f"cannot read {path}: {e}") from None


def _addr_accepting(addr: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(split_addr(addr), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _record_alive(rec: ProxyRecord) -> bool:
    # The pid alone could have been recycled; a proxy also answers on its address.
    return _pid_running(rec.pid) and _addr_accepting(rec.namesrv_addr)


def running_proxy(dir: Path) -> ProxyRecord | None:
    """The record of the proxy serving the cluster in `dir`, if that proxy is still running."""
    rec = read_proxy_record(dir)
    return rec if rec is not None and _record_alive(rec) else None


def find_cluster_dir(given: Path | None) -> Path | None:
    """The cluster dir: `given`, else the last `up`/`run`, else ./.devcluster if it has state."""
    if given is not None:
        return given.expanduser().resolve()
    cur = current_dir()
    if cur is not None:
        return cur
    local = Path(".devcluster")
    return local.resolve() if (local / STATE_FILE).is_file() else None


def _cluster_namesrv(dir: Path) -> str | None:
    try:
        state = json.loads((dir / STATE_FILE).read_text(encoding="utf-8"))
        return str(state["namesrv_addr"]) or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_namesrv(explicit: str | None, dir: Path | None) -> tuple[str, str]:
    """(address, where it came from): `explicit` if given, else the running `make run` proxy.

    Never falls back to the cluster's own name server: that would bypass the proxy unseen.
    """
    if explicit:
        return explicit, "given with -n"
    path = find_cluster_dir(dir)
    if path is None:
        raise DevClusterError(
            "no rmqfast proxy is running: `make run` starts the dev cluster and the proxy in "
            "front of it (leave it running in another terminal), or pass -n HOST:PORT to use "
            "a name server of your choice"
        )
    rec = running_proxy(path)
    if rec is None:
        stale = read_proxy_record(path)
        why = (
            f"the one recorded in {stale.path} (pid {stale.pid}, {stale.namesrv_addr}) has exited"
            if stale is not None
            else f"none is recorded in {path / PROXY_RECORD}"
        )
        real = _cluster_namesrv(path)
        bypass = (
            f"; -n {real} talks to the cluster's own name server, bypassing the proxy"
            if real
            else ""
        )
        raise DevClusterError(
            f"no rmqfast proxy is running for the dev cluster in {path} ({why}): start it with "
            f"`make run` and leave it running, or pass -n HOST:PORT explicitly{bypass}"
        )
    return rec.namesrv_addr, f"the rmqfast proxy of `make run`, pid {rec.pid}"


# ---------------------------------------------------------------------------------------------
# remoting helpers


def _call(
    addr: str,
    code: int,
    fields: Mapping[str, str] | None = None,
    *,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], str, bytes]:
    """One request; (response code, extFields, remark, body). Errors name the request."""
    name = RequestCode(code).name
    try:
        r = call(addr, code, fields, timeout=timeout)
    except (OSError, ValueError) as e:
        raise DevClusterError(f"{name} to {addr}: {e}") from None
    return r.code, r.ext_fields, r.remark or "", r.body


def _code_name(code: int) -> str:
    try:
        return f"{ResponseCode(code).name} ({code})"
    except ValueError:
        return str(code)


def lookup_route(namesrv: str, topic: str, *, timeout: float = 5.0) -> TopicRouteData | None:
    """The topic's route as `namesrv` answers it; None if the topic does not exist."""
    code, _, remark, body = _call(
        namesrv, _RQ_GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=timeout
    )
    if code == _RS_TOPIC_NOT_EXIST:
        return None
    if code != _RS_SUCCESS:
        raise DevClusterError(
            f"route of topic {topic!r} from {namesrv}: {_code_name(code)} {remark}".rstrip()
        )
    try:
        return TopicRouteData.from_json(body)
    except RouteError as e:
        raise DevClusterError(f"route of topic {topic!r} from {namesrv}: {e}") from None


def _masters(route: TopicRouteData) -> dict[str, str]:
    return {name: ids[0] for name, ids in route.broker_addrs().items() if 0 in ids}


def create_topic(
    namesrv: str,
    topic: str,
    *,
    queues: int = 4,
    cluster: str | None = None,
    timeout: float = 15.0,
) -> list[str]:
    """Create `topic` on every master broker of the cluster; wait until its route is served.

    Returns the broker names. Everything goes through `namesrv` and the broker addresses it
    gives, so through the proxy this is the proxy's path too.
    """
    code, _, remark, body = _call(namesrv, _RQ_GET_BROKER_CLUSTER_INFO, timeout=timeout)
    if code != _RS_SUCCESS:
        raise DevClusterError(f"cluster info from {namesrv}: {_code_name(code)} {remark}".rstrip())
    try:
        info = ClusterInfo.from_json(body)
    except RouteError as e:
        raise DevClusterError(f"cluster info from {namesrv}: {e}") from None
    names: list[str] = []
    for cname, members in info.cluster_addr_table.items():
        if cluster is None or cname == cluster:
            names += members
    addrs = info.broker_addrs()
    targets = {n: addrs[n][0] for n in sorted(set(names)) if n in addrs and 0 in addrs[n]}
    if not targets:
        raise DevClusterError(
            f"cannot create topic {topic!r}: {namesrv} knows no master broker"
            + (f" in cluster {cluster!r}" if cluster else "")
        )
    fields = create_topic_fields(topic, queues)
    for name, addr in targets.items():
        code, _, remark, _ = _call(addr, _RQ_UPDATE_AND_CREATE_TOPIC, fields)
        if code != _RS_SUCCESS:
            raise DevClusterError(
                f"creating topic {topic!r} on {name} ({addr}): {_code_name(code)} {remark}"
            )
    # Brokers register the new topic with the name servers right away; wait until the route
    # through `namesrv` names every broker, so that the first send finds all queues.
    deadline = time.monotonic() + timeout
    while True:
        route = lookup_route(namesrv, topic)
        known = {q["brokerName"] for q in route.queue_datas} if route is not None else set()
        if set(targets) <= known:
            return list(targets)
        if time.monotonic() > deadline:
            raise DevClusterError(
                f"topic {topic!r} created on {', '.join(targets)} but {namesrv} still routes it "
                f"to {sorted(known) or 'nothing'} after {timeout:g} s"
            )
        time.sleep(_POLL)


# ---------------------------------------------------------------------------------------------
# produce


@dataclass(frozen=True)
class Sent:
    """Where one sent message was stored."""

    topic: str
    broker: str
    queue_id: int
    queue_offset: int
    msg_id: str
    offset_msg_id: str


def produce(
    namesrv: str,
    topic: str,
    bodies: Sequence[bytes],
    *,
    tags: str | None = None,
    keys: str | None = None,
    create: bool = True,
    timeout: float = 3.0,
    on_sent: Callable[[Sent], None] | None = None,
) -> tuple[list[Sent], list[str]]:
    """Send each body with the Rust producer; (where each went, brokers the topic was created on).

    With `create`, a topic the name server does not know is created on every broker first.
    """
    producer = Producer(
        [a for a in namesrv.split(";") if a],
        producer_group=PRODUCER_GROUP,
        timeout=timeout,
    )
    created: list[str] = []
    out: list[Sent] = []
    try:
        for body in bodies:
            try:
                r = producer.send(topic, body, keys=keys, tags=tags)
            except ProducerError as e:
                if e.code != _RS_TOPIC_NOT_EXIST or not create or created:
                    raise DevClusterError(f"send to topic {topic!r} via {namesrv}: {e}") from None
                created = create_topic(namesrv, topic)
                try:
                    r = producer.send(topic, body, keys=keys, tags=tags)
                except ProducerError as e2:
                    raise DevClusterError(
                        f"send to topic {topic!r} via {namesrv} (just created): {e2}"
                    ) from None
            sent = Sent(
                topic=r.topic,
                broker=r.broker_name,
                queue_id=r.queue_id,
                queue_offset=r.queue_offset,
                msg_id=r.msg_id,
                offset_msg_id=r.offset_msg_id,
            )
            out.append(sent)
            if on_sent is not None:
                on_sent(sent)
    finally:
        producer.close()
    return out, created


# ---------------------------------------------------------------------------------------------
# consume


@dataclass(frozen=True)
class Received:
    """One message read back, with the broker it was read from."""

    broker: str
    message: MessageExt

    @property
    def queue_id(self) -> int:
        """The queue the message is in."""
        return self.message.queue_id

    @property
    def queue_offset(self) -> int:
        """Its offset within that queue."""
        return self.message.queue_offset

    @property
    def msg_id(self) -> str:
        """The message id a Java consumer shows (UNIQ_KEY, else the offset message id)."""
        return self.message.msg_id


@dataclass
class _Queue:
    broker: str
    addr: str
    queue_id: int
    offset: int = 0
    start: int = 0


def _pull_fields(group: str, topic: str, queue_id: int, offset: int, n: int) -> dict[str, str]:
    # No long poll (suspend 0) and no offset commit: the loop in consume() decides both.
    return {
        "consumerGroup": group,
        "topic": topic,
        "queueId": str(queue_id),
        "queueOffset": str(offset),
        "maxMsgNums": str(n),
        "sysFlag": str(_PULL_FLAG_SUBSCRIPTION),
        "commitOffset": "0",
        "suspendTimeoutMillis": "0",
        "subscription": "*",
        "subVersion": "0",
        "expressionType": "TAG",
    }


def _pull(
    q: _Queue, group: str, topic: str, n: int
) -> tuple[list[MessageExt], int | None, str | None]:
    """(messages, next offset or None, a failure to report or None)."""
    code, ext, remark, body = _call(
        q.addr, _RQ_PULL_MESSAGE, _pull_fields(group, topic, q.queue_id, q.offset, n)
    )
    nxt = (
        int(ext["nextBeginOffset"])
        if ext.get("nextBeginOffset", "").lstrip("-").isdigit()
        else None
    )
    if code == _RS_SUCCESS:
        try:
            return decode_messages(body), nxt, None
        except MessageError as e:
            return [], None, f"{q.broker} queue {q.queue_id} @{q.offset}: {e}"
    if code in (
        _RS_PULL_NOT_FOUND,
        _RS_PULL_RETRY_IMMEDIATELY,
        _RS_PULL_OFFSET_MOVED,
    ):
        return [], nxt, None
    return [], None, f"{q.broker} queue {q.queue_id} @{q.offset}: {_code_name(code)} {remark}"


def _offset_of(q: _Queue, code: int, fields: Mapping[str, str]) -> int | None:
    rcode, ext, remark, _ = _call(q.addr, code, fields)
    if rcode == _RS_SUCCESS and ext.get("offset", "").lstrip("-").isdigit():
        return int(ext["offset"])
    if rcode == _RS_QUERY_NOT_FOUND:
        return None
    raise DevClusterError(
        f"{RequestCode(code).name} for {q.broker} queue {q.queue_id}: {_code_name(rcode)} {remark}"
    )


def _queues(namesrv: str, topic: str) -> list[_Queue]:
    route = lookup_route(namesrv, topic)
    if route is None:
        raise DevClusterError(
            f"topic {topic!r} does not exist ({namesrv} answered TOPIC_NOT_EXIST)"
        )
    masters = _masters(route)
    out: list[_Queue] = []
    for qd in sorted(route.queue_datas, key=lambda d: str(d.get("brokerName"))):
        name = str(qd.get("brokerName"))
        if name not in masters or not int(qd.get("perm", 6)) & _PERM_READ:
            continue
        out += [_Queue(name, masters[name], i) for i in range(int(qd.get("readQueueNums", 0)))]
    if not out:
        raise DevClusterError(f"topic {topic!r}: {namesrv} routes it to no readable queue")
    return out


def consume(
    namesrv: str,
    topic: str,
    *,
    group: str = DEFAULT_GROUP,
    count: int | None = None,
    timeout: float = 10.0,
    from_beginning: bool = False,
    commit: bool = True,
    on_message: Callable[[Received], None] | None = None,
) -> list[Received]:
    """Read `topic` through `namesrv` (route lookup, then PULL from every readable queue).

    Each queue starts at the group's committed offset (a new group, or `from_beginning`: the
    first stored message). Stops after `count` messages; without `count`, once at least one
    message was read and every queue is caught up. Waits at most `timeout` seconds for them.
    With `commit`, the group's offsets are moved past what was read.
    """
    deadline = time.monotonic() + timeout
    queues = _queues(namesrv, topic)
    for q in queues:
        fields = {"consumerGroup": group, "topic": topic, "queueId": str(q.queue_id)}
        committed = None if from_beginning else _offset_of(q, _RQ_QUERY_CONSUMER_OFFSET, fields)
        if committed is None or committed < 0:
            first = _offset_of(q, _RQ_GET_MIN_OFFSET, fields)
            committed = max(first or 0, 0)
        q.offset = q.start = committed
    got: list[Received] = []
    errors: list[str] = []
    try:
        while True:
            progressed = False
            for q in queues:
                want = _PULL_BATCH if count is None else min(_PULL_BATCH, count - len(got))
                if want <= 0:
                    break
                msgs, nxt, err = _pull(q, group, topic, want)
                if err is not None:
                    errors.append(err)
                    continue
                for m in msgs[:want]:
                    rec = Received(q.broker, m)
                    got.append(rec)
                    q.offset = m.queue_offset + 1
                    if on_message is not None:
                        on_message(rec)
                if msgs:
                    progressed = True
                elif nxt is not None and nxt != q.offset:
                    q.offset = nxt  # PULL_OFFSET_MOVED: the broker says where to go on
            if count is not None and len(got) >= count:
                break
            if errors:
                raise DevClusterError(f"pull from {topic!r}: " + "; ".join(errors))
            if count is None and got and not progressed:
                break
            if time.monotonic() > deadline:
                break
            if not progressed:
                time.sleep(_POLL)
    finally:
        if commit:
            _commit(queues, group, topic)
    return got


def _commit(queues: Sequence[_Queue], group: str, topic: str) -> None:
    for q in queues:
        if q.offset == q.start:
            continue
        fields = {
            "consumerGroup": group,
            "topic": topic,
            "queueId": str(q.queue_id),
            "commitOffset": str(q.offset),
        }
        code, _, remark, _ = _call(q.addr, _RQ_UPDATE_CONSUMER_OFFSET, fields)
        if code != _RS_SUCCESS:
            raise DevClusterError(
                f"committing offset {q.offset} of group {group!r} on {q.broker} queue "
                f"{q.queue_id}: {_code_name(code)} {remark}"
            )


def read_message(
    namesrv: str,
    topic: str,
    broker: str,
    queue_id: int,
    offset: int,
    *,
    group: str = DEFAULT_GROUP,
    timeout: float = 10.0,
) -> Received:
    """Read the one message at `broker`/`queue_id`/`offset` through `namesrv`'s route.

    Waits (up to `timeout`) while the broker has not made the message pullable yet.
    """
    route = lookup_route(namesrv, topic)
    masters = _masters(route) if route is not None else {}
    if broker not in masters:
        raise DevClusterError(
            f"{namesrv} gives no address for broker {broker!r} of topic {topic!r}"
        )
    q = _Queue(broker, masters[broker], queue_id, offset, offset)
    deadline = time.monotonic() + timeout
    while True:
        msgs, _, err = _pull(q, group, topic, 1)
        if err is not None:
            raise DevClusterError(f"read back {topic!r}: {err}")
        for m in msgs:
            if m.queue_offset == offset:
                return Received(broker, m)
        if time.monotonic() > deadline:
            raise DevClusterError(
                f"message {topic!r} {broker} queue {queue_id} offset {offset} not readable "
                f"through {q.addr} after {timeout:g} s"
            )
        time.sleep(_POLL)


def describe(rec: Received) -> dict[str, Any]:
    """The fields a person wants to see of one message, in print order."""
    m = rec.message
    body = m.body.decode("utf-8", "replace")
    return {
        "topic": m.topic,
        "broker": rec.broker,
        "queue": m.queue_id,
        "offset": m.queue_offset,
        "msgId": m.msg_id,
        "tags": m.tags,
        "keys": m.keys,
        "body": body,
    }
