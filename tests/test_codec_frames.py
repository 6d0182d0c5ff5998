"""Unit tests of the Python face of the frame and header codec (no server needed)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmqfast import codec
from rmqfast.codec import FrameDecoder, FrameError, RemotingCommand


def raw_frame(header: bytes, body: bytes = b"", serialize_type: int = 0) -> bytes:
    return struct.pack(">iI", 4 + len(header) + len(body), serialize_type << 24 | len(header)) + (
        header + body
    )


def test_defaults_and_flags() -> None:
    c = RemotingCommand(105)
    assert (c.code, c.opaque, c.flag, c.version, c.language) == (105, 0, 0, 479, "PYTHON")
    assert c.ext_fields == {} and c.body == b"" and c.remark is None
    assert not c.is_response and not c.is_oneway
    assert c.serialize_type == "json"
    assert RemotingCommand(0, flag=1).is_response
    assert RemotingCommand(37, flag=2).is_oneway


def test_json_encoding_is_fastjson_shaped() -> None:
    c = RemotingCommand(105, {"topic": "T"}, opaque=7, language="JAVA")
    frame = c.encode()
    header = (
        b'{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":7,'
        b'"serializeTypeCurrentRPC":"JSON","version":479}'
    )
    assert frame == raw_frame(header)


@pytest.mark.parametrize("serialize_type", ["json", "rocketmq"])
def test_round_trip(serialize_type: str) -> None:
    c = RemotingCommand(
        310,
        {"a": "PG", "b": "T", "e": 3, "k": False, "i": "KEYS\x01k\x02"},
        body=b"\x00\xffbody",
        opaque=-5,
        remark="r\u00e9",
    )
    back = codec.decode(c.encode(serialize_type))
    assert back.serialize_type == serialize_type
    assert back.ext_fields == {"a": "PG", "b": "T", "e": "3", "k": "false", "i": "KEYS\x01k\x02"}
    assert back.body == b"\x00\xffbody"
    assert (back.code, back.opaque, back.remark) == (310, -5, "r\u00e9")
    assert back == c


def test_view_without_decoding() -> None:
    frame = RemotingCommand(11, {"topic": "T"}, body=b"xyz", opaque=99, flag=2).encode("rocketmq")
    code, flag, opaque, stype, header, body = codec.view(frame)
    assert (code, flag, opaque, stype) == (11, 2, 99, "rocketmq")
    assert frame[body[0] : body[1]] == b"xyz"
    assert header == (8, body[0])


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="language"):
        RemotingCommand(1, language="COBOL")
    with pytest.raises(TypeError, match=r'ext_fields\["x"\]'):
        RemotingCommand(1, {"x": [1]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="serialize_type"):
        RemotingCommand(1).encode("xml")
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameDecoder(max_frame_size=2)


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (struct.pack(">i", 3) + b"\0\0\0\0", 0, "below 4"),
        (struct.pack(">iI", 4, 5 << 24), 4, "unknown serialize type 5"),
        (struct.pack(">iI", 6, 9) + b"{}", 5, "header length 9 runs past"),
        (raw_frame(b'{"code":"x"}'), 16, 'integer value for "code"'),
        (raw_frame(b'{"flag":0}'), 8, 'missing field "code"'),
        (raw_frame(b"\x00\x01\x00", serialize_type=1), 11, "too short"),
        (raw_frame(b'{"code":1}') + b"!", 18, "trailing"),
        (raw_frame(b'{"code":1}')[:-2], 16, "incomplete frame"),
    ],
)
def test_decode_errors_name_offset(data: bytes, offset: int, message: str) -> None:
    with pytest.raises(FrameError, match=message) as info:
        codec.decode(data)
    assert info.value.offset == offset
    assert str(info.value).startswith(f"byte {offset}: ")
    assert isinstance(info.value, ValueError)


def test_decoder_splits_any_chunking() -> None:
    frames = [RemotingCommand(i, {"n": i}, body=bytes(i)).encode() for i in range(1, 6)]
    stream = b"".join(frames)
    for size in (1, 3, 7, len(stream)):
        d = FrameDecoder()
        got: list[RemotingCommand] = []
        for i in range(0, len(stream), size):
            got.extend(d.feed(stream[i : i + size]))
        assert [c.code for c in got] == [1, 2, 3, 4, 5]
        assert [c.body for c in got] == [bytes(i) for i in range(1, 6)]
        assert d.buffered == 0


def test_decoder_oversized_frame_reports_stream_offset_and_stays_failed() -> None:
    ok = RemotingCommand(1).encode()
    d = FrameDecoder(max_frame_size=1024)
    assert d.max_frame_size == 1024
    got = d.feed(ok + struct.pack(">i", 5000))
    assert [c.code for c in got] == [1]
    with pytest.raises(FrameError, match="exceeds the maximum frame size of 1024") as info:
        d.feed(b"")
    assert info.value.offset == len(ok)
    with pytest.raises(FrameError):
        d.feed(ok)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_frame_error_or_decode(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        codec.decode(data)
    d = FrameDecoder(max_frame_size=4096)
    with contextlib.suppress(FrameError):
        d.feed(data)


@settings(max_examples=200, deadline=None)
@given(
    code=st.integers(-(2**15), 2**15 - 1),
    opaque=st.integers(-(2**31), 2**31 - 1),
    flag=st.integers(0, 3),
    ext=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=16), max_size=6),
    body=st.binary(max_size=64),
    stype=st.sampled_from(["json", "rocketmq"]),
)
def test_encode_decode_identity(
    code: int, opaque: int, flag: int, ext: dict[str, str], body: bytes, stype: str
) -> None:
    c = RemotingCommand(code, ext, body=body, opaque=opaque, flag=flag)
    back = codec.decode(c.encode(stype))
    assert back == c
    assert back.ext_fields == ext
