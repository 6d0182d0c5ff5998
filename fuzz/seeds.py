#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: fuzz/corpus/<target>/seed-<name>.

Every seed is built with the rmqfast codec (the Python face of the Rust code under test) and
checked to decode again before it is written, so a seed never starts a target on garbage.
The commands are those real clients send (field names and values as the Java client 5.x
writes them), in both header encodings, with plain and compressed bodies.

    cp .venv/lib/python3.11/site-packages/rmqfast/_core.abi3.so python/rmqfast/
    PYTHONPATH=python .venv/bin/python fuzz/seeds.py [--capture STREAM ...]

`--capture` adds seeds from captured traffic: each STREAM file holds the raw bytes of one
direction of one TCP connection (what `tcpflow -r capture.pcap -o DIR` writes per flow, or
Wireshark's "Follow TCP Stream", one side, saved as raw). Frames are cut from it by their
length prefix, each one checked with `view`; the frames seed `frame`, their headers the two
header targets, their bodies `message` or `route` when they decode as such, and the
properties they carry `properties`. Seeds are named after their content's hash, so running
it twice adds nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from rmqfast.codec import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    BatchMessage,
    ClusterInfo,
    FrameError,
    MessageError,
    RemotingCommand,
    RequestCode,
    RouteError,
    TopicRouteData,
    decode,
    decode_batch,
    decode_messages,
    decode_properties,
    encode_batch,
    encode_properties,
    view,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
TARGETS = ("frame", "header_json", "header_binary", "message", "route", "properties", "relay")

# Message sysFlag bits (MessageSysFlag.java).
COMPRESSED = 0x1
TRANSACTION_PREPARED = 0x4
BORN_HOST_V6 = 0x10
COMPRESSION_LZ4 = 0x100
COMPRESSION_ZSTD = 0x200
COMPRESSION_ZLIB = 0x300
MAGIC_V1 = -626843481
MAGIC_V2 = -626843477

GROUP = "please_rename_unique_group_name"
TOPIC = "TopicTest"
BROKER = "broker-a"
BORN = 1_700_000_000_000


def request_code(name: str) -> int:
    """A request code by its Java name (RequestCode.java)."""
    return int(RequestCode[name])


class Seeds:
    """Collects seeds per target, keyed by name; duplicates of content are dropped."""

    def __init__(self) -> None:
        self.by_target: dict[str, dict[str, bytes]] = {t: {} for t in TARGETS}

    def add(self, target: str, name: str, data: bytes) -> None:
        if data not in self.by_target[target].values():
            self.by_target[target][name] = data

    def write(self) -> int:
        total = 0
        for target, seeds in self.by_target.items():
            d = CORPUS / target
            d.mkdir(parents=True, exist_ok=True)
            for name, data in seeds.items():
                (d / f"seed-{name}").write_bytes(data)
                total += len(data)
        return total


# ------------------------------------------------------------------------------------------
# remoting commands


def properties_of(tags: str, keys: str, uniq: str, **extra: str) -> str:
    props = {"TAGS": tags, "KEYS": keys, "UNIQ_KEY": uniq, "WAIT": "true", **extra}
    return encode_properties(props)


def send_v2(opaque: int, body: bytes, sys_flag: int = 0, batch: bool = False) -> RemotingCommand:
    """SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE with SendMessageRequestHeaderV2's short names."""
    uniq = "7F0000010B2C18B4AAC27B5A3D8A0000"
    fields: dict[str, str | int | float | bool] = {
        "a": GROUP,
        "b": TOPIC,
        "c": "TBW102",
        "d": 4,
        "e": 1,
        "f": sys_flag,
        "g": BORN,
        "h": 0,
        "i": "" if batch else properties_of("TagA", "order-1", uniq),
        "j": 0,
        "k": False,
        "l": 16,
        "m": batch,
        "n": BROKER,
    }
    code = request_code("SEND_BATCH_MESSAGE") if batch else request_code("SEND_MESSAGE_V2")
    return RemotingCommand(code, fields, body, opaque=opaque, language="JAVA")


def requests(batch_body: bytes) -> Iterator[tuple[str, RemotingCommand]]:
    yield "send_v2", send_v2(1, b"Hello RocketMQ 0")
    yield "send_v2_zlib", send_v2(2, zlib.compress(b"x" * 5000), COMPRESSED | COMPRESSION_ZLIB)
    yield (
        "send_v2_prepared",
        send_v2(3, b"half message", TRANSACTION_PREPARED),
    )
    yield "send_batch", send_v2(4, batch_body, batch=True)
    yield (
        "pull",
        RemotingCommand(
            request_code("PULL_MESSAGE"),
            {
                "consumerGroup": GROUP,
                "topic": TOPIC,
                "queueId": 2,
                "queueOffset": 120,
                "maxMsgNums": 32,
                "sysFlag": 3,
                "commitOffset": 118,
                "suspendTimeoutMillis": 20000,
                "subscription": "TagA || TagB",
                "subVersion": BORN,
                "expressionType": "TAG",
                "maxMsgBytes": 2147483647,
                "bname": BROKER,
            },
            opaque=5,
            language="JAVA",
        ),
    )
    heartbeat = {
        "clientID": "10.0.0.5@12345#987654321",
        "consumerDataSet": [
            {
                "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
                "consumeType": "CONSUME_PASSIVELY",
                "groupName": GROUP,
                "messageModel": "CLUSTERING",
                "subscriptionDataSet": [
                    {
                        "classFilterMode": False,
                        "codeSet": [2598919],
                        "expressionType": "TAG",
                        "subString": "TagA",
                        "subVersion": BORN,
                        "tagsSet": ["TagA"],
                        "topic": TOPIC,
                    }
                ],
                "unitMode": False,
            }
        ],
        "heartbeatFingerprint": 0,
        "producerDataSet": [{"groupName": "CLIENT_INNER_PRODUCER"}, {"groupName": GROUP}],
    }
    yield (
        "heartbeat",
        RemotingCommand(
            request_code("HEART_BEAT"),
            body=json.dumps(heartbeat, separators=(",", ":")).encode(),
            opaque=6,
            language="JAVA",
        ),
    )
    yield (
        "route_request",
        RemotingCommand(
            request_code("GET_ROUTEINFO_BY_TOPIC"), {"topic": TOPIC}, opaque=7, language="JAVA"
        ),
    )
    yield (
        "end_transaction",
        RemotingCommand(
            request_code("END_TRANSACTION"),
            {
                "producerGroup": GROUP,
                "tranStateTableOffset": 42,
                "commitLogOffset": 123456,
                "commitOrRollback": 8,
                "fromTransactionCheck": False,
                "msgId": "0A00000500002A9F000000000001E240",
                "transactionId": "7F0000010B2C18B4AAC27B5A3D8A0001",
                "bname": BROKER,
            },
            opaque=8,
            flag=FLAG_ONEWAY,
            remark="executeLocalTransactionBranch",
            language="JAVA",
        ),
    )
    yield (
        "pop",
        RemotingCommand(
            request_code("POP_MESSAGE"),
            {
                "consumerGroup": GROUP,
                "topic": TOPIC,
                "queueId": -1,
                "maxMsgNums": 32,
                "invisibleTime": 60000,
                "pollTime": 15000,
                "bornTime": BORN,
                "initMode": 0,
                "expType": "TAG",
                "exp": "*",
                "order": False,
                "bname": BROKER,
            },
            opaque=9,
            language="JAVA",
        ),
    )
    yield (
        "ack",
        RemotingCommand(
            request_code("ACK_MESSAGE"),
            {
                "consumerGroup": GROUP,
                "topic": TOPIC,
                "queueId": 1,
                "extraInfo": "0 1700000000000 60000 0 0 broker-a 1 120",
                "offset": 120,
                "bname": BROKER,
            },
            opaque=10,
            language="GO",
        ),
    )
    yield (
        "cluster_info_request",
        RemotingCommand(request_code("GET_BROKER_CLUSTER_INFO"), opaque=11, language="CPP"),
    )


def responses(pull_body: bytes, route_json: bytes) -> Iterator[tuple[str, RemotingCommand]]:
    yield (
        "send_response",
        RemotingCommand(
            0,
            {
                "msgId": "0A00000500002A9F000000000001E240",
                "queueId": 1,
                "queueOffset": 77,
                "transactionId": "7F0000010B2C18B4AAC27B5A3D8A0001",
                "MSG_REGION": "DefaultRegion",
                "TRACE_ON": "true",
            },
            opaque=1,
            flag=FLAG_RESPONSE,
            language="JAVA",
        ),
    )
    yield (
        "pull_response",
        RemotingCommand(
            0,
            {"suggestWhichBrokerId": 0, "nextBeginOffset": 122, "minOffset": 0, "maxOffset": 122},
            pull_body,
            opaque=5,
            flag=FLAG_RESPONSE,
            language="JAVA",
        ),
    )
    yield (
        "route_response",
        RemotingCommand(0, body=route_json, opaque=7, flag=FLAG_RESPONSE, language="JAVA"),
    )
    yield (
        "topic_not_exist",
        RemotingCommand(
            17,
            opaque=7,
            flag=FLAG_RESPONSE,
            remark="No topic route info in name server for the topic: TopicTest",
            language="JAVA",
        ),
    )


# Other clients' JSON headers: not fastjson's sorted layout, so the view's forward scan reads
# them (rocketmq-client-go's field order; numbers and null in extFields, as some SDKs send).
FOREIGN_JSON_HEADERS = {
    "go_pull": (
        b'{"code":11,"language":"GO","version":317,"opaque":12,"flag":0,"remark":"",'
        b'"extFields":{"consumerGroup":"g","topic":"TopicTest","queueId":"0","queueOffset":"0",'
        b'"maxMsgNums":"32","sysFlag":"2","commitOffset":"0","suspendTimeoutMillis":"20000",'
        b'"subscription":"*","subVersion":"0","expressionType":"TAG"}}'
    ),
    "numbers_end_transaction": (
        b'{ "opaque": 13, "flag": 2, "code": 37, "language": "CPP", "extFields": '
        b'{"producerGroup": "PG", "commitLogOffset": 123456, "commitOrRollback": 8, '
        b'"fromTransactionCheck": true, "msgId": null}, "version": 401 }'
    ),
}


def add_foreign_headers(seeds: Seeds) -> None:
    for name, header in FOREIGN_JSON_HEADERS.items():
        frame = struct.pack(">iI", 4 + len(header), len(header)) + header
        decode(frame)  # raises if the seed is not a valid header
        seeds.add("header_json", name, header)
        seeds.add("frame", f"{name}_json", frame)


def header_of(frame: bytes) -> bytes:
    (start, end) = view(frame)[4]
    return frame[start:end]


def add_command(seeds: Seeds, name: str, cmd: RemotingCommand) -> None:
    encodings = ["json"]
    if -(2**15) <= cmd.code < 2**15:
        encodings.append("rocketmq")
    for enc in encodings:
        frame = cmd.encode(enc)
        assert decode(frame) == cmd, f"{name} ({enc}) does not decode to itself"
        seeds.add("frame", f"{name}_{enc}", frame)
        target = "header_json" if enc == "json" else "header_binary"
        seeds.add(target, name, header_of(frame))


# ------------------------------------------------------------------------------------------
# message bodies


def stored_record(
    topic: str,
    body: bytes,
    props: str,
    *,
    sys_flag: int = 0,
    queue_offset: int = 120,
    v2: bool = False,
    born_v6: bool = False,
) -> bytes:
    """One stored-message record as a broker returns it to PULL/POP (MessageDecoder layout).

    rmqfast has no Python encoder for this layout; `decode_messages` checks every record
    written here (see `add_stored`).
    """
    born_host = (b"\x20\x01\x0d\xb8" + bytes(11) + b"\x05") if born_v6 else bytes([10, 0, 0, 5])
    if born_v6:
        sys_flag |= BORN_HOST_V6
    topic_b = topic.encode()
    props_b = props.encode()
    fields = b"".join(
        [
            struct.pack(
                ">iiiiqqiq",
                MAGIC_V2 if v2 else MAGIC_V1,
                zlib.crc32(body) & 0x7FFFFFFF,
                1,
                0,
                queue_offset,
                4096 + queue_offset,
                sys_flag,
                BORN,
            ),
            born_host + struct.pack(">i", 53012),
            struct.pack(">q", BORN + 3) + bytes([10, 0, 0, 9]) + struct.pack(">i", 10911),
            struct.pack(">iqi", 0, 0, len(body)),
            body,
            struct.pack(">h" if v2 else ">b", len(topic_b)),
            topic_b,
            struct.pack(">h", len(props_b)),
            props_b,
        ]
    )
    return struct.pack(">i", 4 + len(fields)) + fields


def lz4_frame_raw(data: bytes) -> bytes:
    """An LZ4 frame holding `data` as one uncompressed block (no checksums)."""
    # FLG 0x60 (version 1, independent blocks), BD 0x40 (64 KiB blocks), header checksum 0x82.
    return (
        b"\x04\x22\x4d\x18\x60\x40\x82"
        + struct.pack("<I", len(data) | 0x80000000)
        + data
        + bytes(4)
    )


def zstd_frame_raw(data: bytes) -> bytes:
    """A zstd frame holding `data` (< 256 bytes) as one raw block."""
    assert len(data) < 256
    # Single segment, 1-byte content size; one last raw block.
    block = struct.pack("<I", (len(data) << 3) | 1)[:3]
    return b"\x28\xb5\x2f\xfd\x20" + bytes([len(data)]) + block + data


def stored_bodies() -> Iterator[tuple[str, bytes, list[bytes]]]:
    """(name, pull body, the message bodies it must decode to)."""
    props = properties_of(
        "TagA",
        "order-1 order-2",
        "7F0000010B2C18B4AAC27B5A3D8A0000",
        MIN_OFFSET="0",
        MAX_OFFSET="122",
        CONSUME_START_TIME=str(BORN),
    )
    plain = b"Hello RocketMQ"
    two = stored_record(TOPIC, plain, props) + stored_record(
        TOPIC, b"second", props, queue_offset=121
    )
    yield "pull_v1_two", two, [plain, b"second"]
    yield (
        "pull_v2_ipv6",
        stored_record("%RETRY%" + GROUP, plain, props, v2=True, born_v6=True),
        [plain],
    )
    big = b"compressible body " * 40
    yield (
        "pull_zlib",
        stored_record(TOPIC, zlib.compress(big), props, sys_flag=COMPRESSED | COMPRESSION_ZLIB),
        [big],
    )
    yield (
        "pull_lz4",
        stored_record(TOPIC, lz4_frame_raw(plain), props, sys_flag=COMPRESSED | COMPRESSION_LZ4),
        [plain],
    )
    yield (
        "pull_zstd",
        stored_record(TOPIC, zstd_frame_raw(plain), props, sys_flag=COMPRESSED | COMPRESSION_ZSTD),
        [plain],
    )
    transactional = properties_of(
        "TagT",
        "tx-1",
        "7F0000010B2C18B4AAC27B5A3D8A0001",
        TRAN_MSG="true",
        PGROUP=GROUP,
        __transactionId__="7F0000010B2C18B4AAC27B5A3D8A0001",
    )
    yield (
        "check_transaction",
        stored_record(TOPIC, b"half message", transactional, sys_flag=TRANSACTION_PREPARED),
        [b"half message"],
    )


def add_stored(seeds: Seeds, name: str, body: bytes, want: list[bytes]) -> None:
    got = [m.body for m in decode_messages(body)]
    assert got == want, f"stored seed {name} decodes to {got!r}"
    seeds.add("message", name, body)


def batch_body() -> bytes:
    msgs = [
        BatchMessage(
            f"batch message {i}".encode(),
            {"KEYS": f"k{i}", "UNIQ_KEY": f"7F0000010B2C18B4AAC27B5A3D8A00{i:02X}", "WAIT": "true"},
        )
        for i in range(3)
    ]
    body = encode_batch(msgs)
    assert decode_batch(body) == msgs, "batch seed does not decode to itself"
    return body


# ------------------------------------------------------------------------------------------
# routes

# As a 5.x name server sends them: fastjson, sorted keys, bare integer keys in brokerAddrs for
# clients before 4.9.4 and always in the cluster-info body.
ROUTE_FASTJSON = (
    b'{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.9:10911",1:"10.0.0.10:10911"},'
    b'"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false},'
    b'{"brokerAddrs":{0:"10.0.0.11:10911"},"brokerName":"broker-b","cluster":"DefaultCluster",'
    b'"enableActingMaster":false,"zoneName":"zone-1"}],"filterServerTable":{},'
    b'"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,'
    b'"writeQueueNums":4},{"brokerName":"broker-b","perm":6,"readQueueNums":8,'
    b'"topicSysFlag":0,"writeQueueNums":8}]}'
)
ROUTE_STANDARD = (
    b'{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.9:10911"},"brokerName":"broker-a",'
    b'"cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},'
    b'"orderTopicConf":"broker-a:4","queueDatas":[{"brokerName":"broker-a","perm":6,'
    b'"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}],'
    b'"topicQueueMappingByBroker":{"broker-a":{"bname":"broker-a","epoch":0,"totalQueues":4,'
    b'"scope":"__global__","dirty":false,"currIdMap":{"0":0}}},"unknownField":[1,2.5,null]}'
)
CLUSTER_FASTJSON = (
    b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.9:10911",1:"10.0.0.10:10911"},'
    b'"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false},'
    b'"broker-b":{"brokerAddrs":{0:"10.0.0.11:10911"},"brokerName":"broker-b",'
    b'"cluster":"DefaultCluster","enableActingMaster":false}},'
    b'"clusterAddrTable":{"DefaultCluster":["broker-a","broker-b"]}}'
)


def add_routes(seeds: Seeds) -> None:
    for name, data in (("route_fastjson", ROUTE_FASTJSON), ("route_standard", ROUTE_STANDARD)):
        route = TopicRouteData.from_json(data)
        seeds.add("route", name, data)
        seeds.add("route", f"{name}_to_json", route.to_json())
    cluster = ClusterInfo.from_json(CLUSTER_FASTJSON)
    seeds.add("route", "cluster_fastjson", CLUSTER_FASTJSON)
    seeds.add("route", "cluster_to_json", cluster.to_json())


# ------------------------------------------------------------------------------------------
# properties


def add_properties(seeds: Seeds) -> None:
    sets = {
        "message": {
            "TAGS": "TagA",
            "KEYS": "k1 k2",
            "UNIQ_KEY": "7F0000010B2C18B4AAC27B5A3D8A0000",
            "WAIT": "true",
        },
        "delay": {"DELAY": "3", "TAGS": "TagB", "WAIT": "false"},
        "transaction": {
            "TRAN_MSG": "true",
            "PGROUP": GROUP,
            "__transactionId__": "7F0000010B2C18B4AAC27B5A3D8A0001",
        },
        "retry": {
            "RETRY_TOPIC": TOPIC,
            "REAL_TOPIC": "%RETRY%" + GROUP,
            "REAL_QID": "0",
            "RECONSUME_TIME": "2",
            "MAX_RECONSUME_TIMES": "16",
            "ORIGIN_MESSAGE_ID": "AB",
        },
        "unicode": {"TAGS": "标签", "KEYS": "ключ 🔑"},
    }
    for name, props in sets.items():
        text = encode_properties(props)
        assert decode_properties(text) == props, f"properties seed {name}"
        seeds.add("properties", name, text.encode())
    # What Java tolerates: a repeated name (last wins), an empty value, a pair without 0x01,
    # a value holding 0x01, no trailing separator.
    seeds.add(
        "properties",
        "odd",
        b"TAGS\x01a\x02TAGS\x01b\x02EMPTY\x01\x02NOSEP\x02K\x01v\x01w\x02LAST\x01x",
    )


# ------------------------------------------------------------------------------------------
# captures


def frames_of_stream(data: bytes) -> Iterator[bytes]:
    """Frames cut from a raw byte stream by their length prefix, up to the first bad one."""
    at = 0
    while at + 4 <= len(data):
        (length,) = struct.unpack_from(">i", data, at)
        end = at + 4 + length
        if length < 4 or end > len(data):
            return
        frame = data[at:end]
        try:
            view(frame)
        except FrameError:
            return
        yield frame
        at = end


def add_capture(seeds: Seeds, streams: Iterable[Path]) -> int:
    count = 0
    for path in streams:
        for frame in frames_of_stream(path.read_bytes()):
            count += 1
            name = hashlib.sha1(frame).hexdigest()[:16]
            _code, _flag, _opaque, enc, (hs, he), (bs, be) = view(frame)
            seeds.add("frame", name, frame)
            seeds.add("header_json" if enc == "json" else "header_binary", name, frame[hs:he])
            body = frame[bs:be]
            try:
                cmd = decode(frame)
            except FrameError:
                continue
            props = cmd.ext_fields.get("i") or cmd.ext_fields.get("properties")
            if props:
                seeds.add("properties", name, props.encode())
            if not body:
                continue
            for decoder in (decode_messages, decode_batch):
                try:
                    if decoder(body):
                        seeds.add("message", name, body)
                except MessageError:
                    pass
            for parser in (TopicRouteData.from_json, ClusterInfo.from_json):
                try:
                    parser(body)
                    seeds.add("route", name, body)
                except RouteError:
                    pass
    return count


# ------------------------------------------------------------------------------------------
# relay scripts (the event language of rust/src/proxy/relay/script.rs)

# Event bytes: 0-3 a request (code pick, opaque, flags, fields[, hold]), 4 a raw frame
# (length, bytes), 5-6 a broker frame (kind, opaque), 7 a tick (200 ms steps), 8 the broker
# connection lost, 9 draining starts. A request that needs a connection takes one more byte:
# even connects, odd fails. The first byte picks the policy.
RELAY_SCRIPTS: dict[str, list[int]] = {
    # send, connect, answered; a pull held 2 s past the timeout, then its timeout
    "send_answered_pull_times_out": [0, 1, 1, 3, 0, 0, 5, 0, 1, 0, 3, 2, 0, 16, 20, 7, 100, 7, 30],
    # admin codes refused under each policy, one of them oneway
    "admin_refused": [0, 0, 9, 0, 0, 0, 0, 10, 1, 2, 0, 0, 11, 2, 0, 0],
    "topic_rule": [2, 0, 0, 1, 0, 1, 0, 8, 2, 0, 4, 0],
    "access_key_rule": [3, 0, 1, 1, 0, 8, 0, 0, 1, 2, 0, 0],
    # unreachable broker, retried after the pause, then draining
    "unreachable_then_drain": [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 7, 3, 0, 0, 2, 0, 0, 0, 9, 7, 1],
    # END_TRANSACTION without the oneway flag, never answered; idle close after it
    "end_transaction": [1, 0, 6, 0, 0, 0, 0, 7, 255, 7, 255],
    # a reused opaque, a lost broker connection, a broker request
    "reused_opaque_lost": [0, 0, 0, 4, 0, 0, 0, 0, 4, 0, 0, 5, 128, 9, 8, 7, 20],
}


def add_relay_scripts(seeds: Seeds) -> None:
    for name, script in RELAY_SCRIPTS.items():
        seeds.add("relay", name, bytes(script))
    # Raw client frames (event 4) from the request seeds that fit a length byte.
    for name, frame in seeds.by_target["frame"].items():
        if len(frame) <= 255:
            seeds.add("relay", f"raw_{name}", bytes([1, 0, 0, 0, 0, 0, 4, len(frame)]) + frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--capture",
        type=Path,
        nargs="*",
        default=[],
        help="raw one-direction TCP stream files to take frames from",
    )
    args = parser.parse_args()

    seeds = Seeds()
    batch = batch_body()
    seeds.add("message", "batch", batch)
    pull_body = b""
    for name, body, want in stored_bodies():
        add_stored(seeds, name, body, want)
        if name == "pull_v1_two":
            pull_body = body
    for name, cmd in requests(batch):
        add_command(seeds, name, cmd)
    for name, cmd in responses(pull_body, ROUTE_FASTJSON):
        add_command(seeds, name, cmd)
    # A stream of two frames and a cut one, for the splitter.
    stream = b"".join(
        seeds.by_target["frame"][n] for n in ("route_request_json", "send_v2_rocketmq")
    )
    seeds.add("frame", "stream_two_and_a_half", stream + stream[: len(stream) // 3])
    add_foreign_headers(seeds)
    add_routes(seeds)
    add_properties(seeds)
    add_relay_scripts(seeds)
    captured = add_capture(seeds, args.capture)

    total = seeds.write()
    counts = ", ".join(f"{t} {len(s)}" for t, s in seeds.by_target.items())
    print(f"wrote {total} bytes of seeds ({counts}); {captured} captured frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
