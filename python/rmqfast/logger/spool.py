"""The logger's disk spool: entries that could not be delivered, kept in append-only segment
files until a drainer replays them, across process restarts.

Layout under `spool_dir`: one *slot* directory per logger process (`slot-000`, `slot-001`,
...). A slot is owned by whoever holds the `flock` on its `lock` file, and belongs to one
(logger name, topic) pair, written in its `owner.json`: a logger takes the lowest slot that is
free and either new or already its own, so the N workers of a pre-fork server each get one,
and a restarted worker takes over what its predecessor left.

In a slot: `seg-<seq>.spool` segment files, oldest first, each a magic header then records,
and a `cursor` file saying how far the drainer got (segment, offset) with a checksum.

A record is `<u32 payload length><u32 CRC-32 of the payload>` then the payload:
`<u32 key length><u32 tag length>` (0xFFFFFFFF for none), the key and tag in UTF-8, the body.
A record whose length runs past the end of its file (a write cut short by a crash) or whose
checksum does not match is never replayed: it is counted in `corrupt` and skipped (a bad length
ends the segment: nothing after it can be framed).

Durability: appends are `os.write` calls on unbuffered descriptors, so once `append` returns
the data survives the process being killed (SIGKILL included). Surviving an OS crash or power
loss needs `fsync`: every append when `fsync_interval` is 0, otherwise at most
`fsync_interval` seconds after the append (the drainer thread calls `sync_if_due`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["MIN_SEGMENT_BYTES", "Spool", "SpoolError", "SpoolWriteError"]

_log = logging.getLogger("rmqfast.logger")

Encoded = tuple[bytes, str | None, str | None]

_MAGIC = b"RMQFSPL1"
_REC = struct.Struct("<II")
_HEAD = struct.Struct("<II")
_NONE = 0xFFFFFFFF
_CURSOR = struct.Struct("<QQI")
_SEG_RE = re.compile(r"^seg-(\d{12})\.spool$")
_MAX_SLOTS = 256
_READ_CHUNK = 1 << 20
MAX_RECORD = 1 << 30
"""Largest record length read as a record: framing sanity only, independent of the config
(a smaller max_message_size after a restart must not make older records look torn)."""
MIN_SEGMENT_BYTES = 4096
"""Smallest segment file before the writer starts a new one."""


class SpoolError(Exception):
    """The spool directory cannot be used; the message says which path and why."""


class SpoolWriteError(OSError):
    """An append that failed part way: `written` of its records are in the spool."""

    def __init__(self, written: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.written = written


class _Segment:
    __slots__ = ("entries", "path", "read_off", "seq", "size")

    def __init__(self, seq: int, path: str, size: int, read_off: int, entries: int) -> None:
        self.seq = seq
        self.path = path
        self.size = size  # bytes of whole records (a torn tail is not counted)
        self.read_off = read_off  # next record the drainer has not taken
        self.entries = entries  # records after read_off


def _pack_record(parts: list[bytes], body: bytes, key: str | None, tag: str | None) -> int:
    kb = key.encode("utf-8", "surrogatepass") if key is not None else b""
    tb = tag.encode("utf-8", "surrogatepass") if tag is not None else b""
    head = (
        _HEAD.pack(_NONE if key is None else len(kb), _NONE if tag is None else len(tb)) + kb + tb
    )
    crc = zlib.crc32(body, zlib.crc32(head))
    n = len(head) + len(body)
    parts.append(_REC.pack(n, crc))
    parts.append(head)
    parts.append(body)
    return _REC.size + n


def _unpack_payload(payload: bytes | memoryview) -> Encoded | None:
    """(body, key, tag) of a checked payload; None when its inner lengths do not add up."""
    if len(payload) < _HEAD.size:
        return None
    klen, tlen = _HEAD.unpack_from(payload)
    at = _HEAD.size
    key = tag = None
    if klen != _NONE:
        if at + klen > len(payload):
            return None
        key = bytes(payload[at : at + klen]).decode("utf-8", "replace")
        at += klen
    if tlen != _NONE:
        if at + tlen > len(payload):
            return None
        tag = bytes(payload[at : at + tlen]).decode("utf-8", "replace")
        at += tlen
    return bytes(payload[at:]), key, tag


class Spool:
    """One logger's slot of a spool directory; see the module docstring.

    Thread-safe: the batcher and senders append, one drainer reads and commits.
    """

    def __init__(
        self,
        root: str,
        *,
        name: str,
        topic: str,
        max_bytes: int,
        fsync_interval: float,
        max_record: int = MAX_RECORD,
    ) -> None:
        self.root = root
        self.name = name
        self.topic = topic
        self.max_bytes = max_bytes
        self.fsync_interval = fsync_interval
        self.max_record = max_record
        # Dropping the oldest segment frees about an eighth of the spool.
        self.segment_bytes = max(MIN_SEGMENT_BYTES, max_bytes // 8)
        self.lock = threading.Lock()
        self.spooled = 0  # entries this process wrote
        self.inherited = 0  # entries found on disk at open
        self.replayed = 0  # entries the drainer delivered (committed)
        self.dropped = 0  # entries removed with the oldest segment to make room
        self.corrupt = 0  # records found torn or failing their checksum
        self._segments: deque[_Segment] = deque()
        self._bytes = 0
        self._entries = 0
        self._taken = 0  # entries the drainer holds, not yet committed
        self._wfd: int | None = None
        self._dirty = False
        self._last_sync = time.monotonic()
        self._next_seq = 1
        self._closed = False
        self.slot, self._lock_fd = self._take_slot()
        self._cursor_fd = -1
        try:
            self._cursor_fd = os.open(
                os.path.join(self.slot, "cursor"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            self._load()
        except BaseException:
            if self._cursor_fd >= 0:
                os.close(self._cursor_fd)
            os.close(self._lock_fd)
            raise

    # -- opening -------------------------------------------------------------------------------

    def _take_slot(self) -> tuple[str, int]:
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"cannot create {self.root!r}: {e.strerror}") from e
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise SpoolError(f"{self.root!r} is not a writable directory")
        owner = {"name": self.name, "topic": self.topic}
        for i in range(_MAX_SLOTS):
            slot = os.path.join(self.root, f"slot-{i:03d}")
            try:
                os.makedirs(slot, exist_ok=True)
                fd = os.open(
                    os.path.join(slot, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            except OSError as e:
                raise SpoolError(f"cannot use {slot!r}: {e.strerror}") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue
                raise SpoolError(f"cannot lock {slot!r}: {e.strerror}") from e
            meta = os.path.join(slot, "owner.json")
            try:
                with open(meta, encoding="utf-8") as f:
                    found = json.load(f)
            except FileNotFoundError:
                found = None
            except (OSError, ValueError):
                found = "unreadable"
            if found is None:
                tmp = meta + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(owner, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, meta)
                return slot, fd
            if found == owner:
                return slot, fd
            os.close(fd)  # another logger's slot (or one we cannot read): leave it alone
        raise SpoolError(
            f"{self.root!r}: all {_MAX_SLOTS} slots are taken by running processes or by other "
            "loggers; give this logger its own spool_dir"
        )

    def _load(self) -> None:
        raw = os.pread(self._cursor_fd, _CURSOR.size, 0)
        cur_seq, cur_off = 0, 0
        if len(raw) == _CURSOR.size:
            seq, off, crc = _CURSOR.unpack(raw)
            if zlib.crc32(raw[:16]) == crc:
                cur_seq, cur_off = seq, off
        found: list[tuple[int, str]] = []
        for entry in os.listdir(self.slot):
            m = _SEG_RE.match(entry)
            if m:
                found.append((int(m.group(1)), os.path.join(self.slot, entry)))
        found.sort()
        # Segment numbers never go back, or a cursor left by a drained spool would mark the
        # next process's new segments as replayed.
        self._next_seq = max(self._next_seq, cur_seq + 1)
        for seq, path in found:
            self._next_seq = max(self._next_seq, seq + 1)
            if seq < cur_seq:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # replayed before the last stop; only the unlink was lost
                continue
            start = cur_off if seq == cur_seq else len(_MAGIC)
            seg = self._scan(seq, path, start)
            if seg is None:
                continue
            if seg.entries == 0 and seg.read_off >= seg.size:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            self._segments.append(seg)
            self._bytes += seg.size
            self._entries += seg.entries
        self.inherited = self._entries

    def _scan(self, seq: int, path: str, start: int) -> _Segment | None:
        """A segment's whole records from `start`, checked; a torn tail is cut off."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            self.corrupt += 1
            return None
        try:
            size = os.fstat(fd).st_size
            if size < len(_MAGIC) or os.pread(fd, len(_MAGIC), 0) != _MAGIC:
                self.corrupt += 1
                os.close(fd)
                os.unlink(path)
                return None
            start = min(max(start, len(_MAGIC)), size)
            end, entries = self._walk(fd, start, size)
            if end < size:
                # A write cut short (or garbage after the last good record): never replay it,
                # and let appends continue from a clean end.
                self.corrupt += 1
                os.ftruncate(fd, end)
            return _Segment(seq, path, end, start, entries)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _walk(self, fd: int, start: int, size: int) -> tuple[int, int]:
        """(end of the last whole record, records) from start. Checksums are checked when the
        drainer takes the records."""
        pos = start
        count = 0
        buf = b""
        buf_at = start
        while pos + _REC.size <= size:
            if pos + _REC.size > buf_at + len(buf):
                buf = os.pread(fd, _READ_CHUNK, pos)
                buf_at = pos
            n, _crc = _REC.unpack_from(buf, pos - buf_at)
            # A payload has at least its two lengths; zeros (a tail a power cut left) do not.
            if n < _HEAD.size or n > self.max_record or pos + _REC.size + n > size:
                break
            count += 1
            pos += _REC.size + n
        return pos, count

    # -- writing -------------------------------------------------------------------------------

    def append(self, records: Sequence[Encoded]) -> None:
        """Write records at the end, making room by dropping the oldest segments. Raises
        SpoolWriteError (disk full, I/O error) saying how many were written before it."""
        parts: list[bytes] = []
        size = 0
        count = 0
        written = 0
        with self.lock:
            if self._closed:
                raise SpoolWriteError(0, OSError(errno.EBADF, "the spool is closed"))
            try:
                for body, key, tag in records:
                    size += _pack_record(parts, body, key, tag)
                    count += 1
                    if size >= self.segment_bytes:
                        self._write(parts, size, count)
                        written += count
                        parts, size, count = [], 0, 0
                if parts:
                    self._write(parts, size, count)
                    written += count
            except OSError as e:
                raise SpoolWriteError(written, e) from e
            if self.fsync_interval == 0:
                try:
                    self._sync()
                except OSError as e:
                    # Written, but maybe not on the platter: say so, keep them.
                    _log.warning("spool %s: fsync failed: %s", self.slot, e)

    def _write(self, parts: list[bytes], size: int, count: int) -> None:
        cur = self._segments[-1] if self._segments and self._wfd is not None else None
        if cur is None or cur.size >= self.segment_bytes:
            self._make_room(size + len(_MAGIC))
            cur = self._new_segment()
        else:
            self._make_room(size)
        data = b"".join(parts)
        fd = self._wfd
        assert fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
        except OSError:
            # Leave whole records only: the next open would cut this tail off anyway.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, cur.size)
            raise
        cur.size += size
        cur.entries += count
        self._bytes += size
        self._entries += count
        self.spooled += count
        self._dirty = True

    def _new_segment(self) -> _Segment:
        if self._wfd is not None:
            if self._dirty:
                os.fsync(self._wfd)
                self._dirty = False
            os.close(self._wfd)
            self._wfd = None
        seq = self._next_seq
        self._next_seq += 1
        path = os.path.join(self.slot, f"seg-{seq:012d}.spool")
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        try:
            os.write(fd, _MAGIC)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._wfd = fd
        seg = _Segment(seq, path, len(_MAGIC), len(_MAGIC), 0)
        self._segments.append(seg)
        self._bytes += len(_MAGIC)
        self._sync_dir()
        return seg

    def _make_room(self, need: int) -> None:
        # Never drop the segment being written: it is at most segment_bytes (max_bytes / 8).
        while self._bytes + need > self.max_bytes and len(self._segments) > (
            1 if self._wfd is not None else 0
        ):
            old = self._segments.popleft()
            self.dropped += old.entries
            self._entries -= old.entries
            self._bytes -= old.size
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old.path)

    # -- reading (the drainer) -------------------------------------------------------------------

    def take(self, max_entries: int, max_bytes: int) -> tuple[list[Encoded], tuple[int, int]]:
        """The oldest records not yet taken (at least one if any, then up to the limits) and
        the position to `commit` once they are delivered. Segments stay on disk until their
        records are committed. A segment that cannot be read any more is dropped (counted)."""
        with self.lock:
            while True:
                seg = next((g for g in self._segments if g.read_off < g.size), None)
                if seg is None:
                    return [], (0, 0)
                try:
                    out, pos = self._read(seg, max_entries, max_bytes)
                except OSError as e:
                    self._lost(seg, f"cannot be read ({e.strerror or e})")
                    continue
                seg.read_off = pos
                seg.entries -= len(out)
                self._entries -= len(out)
                self._taken += len(out)
                return out, (seg.seq, pos)

    def _read(self, seg: _Segment, max_entries: int, max_bytes: int) -> tuple[list[Encoded], int]:
        out: list[Encoded] = []
        with open(seg.path, "rb", buffering=0) as f:
            fd = f.fileno()
            pos = seg.read_off
            limit = min(seg.size, pos + max(max_bytes, _REC.size))
            buf = os.pread(fd, limit - pos, pos)
            at = 0
            nbytes = 0
            while pos + _REC.size <= seg.size and len(out) < max_entries:
                if at + _REC.size > len(buf):
                    if out:
                        break
                    buf = os.pread(fd, seg.size - pos, pos)
                    at = 0
                n, crc = _REC.unpack_from(buf, at)
                if pos + _REC.size + n > seg.size or len(buf) < _REC.size:
                    # The file changed under us: never frame past what was checked.
                    self.corrupt += seg.entries - len(out)
                    self._entries -= seg.entries - len(out)
                    seg.entries = len(out)
                    return out, seg.size
                if at + _REC.size + n > len(buf):
                    if out:
                        break
                    buf = os.pread(fd, _REC.size + n, pos)
                    at = 0
                payload = memoryview(buf)[at + _REC.size : at + _REC.size + n]
                rec = _unpack_payload(payload) if zlib.crc32(payload) == crc else None
                if rec is None:
                    self.corrupt += 1
                    self._entries -= 1
                    seg.entries -= 1
                else:
                    if out and nbytes + len(rec[0]) > max_bytes:
                        break
                    out.append(rec)
                    nbytes += len(rec[0])
                at += _REC.size + n
                pos += _REC.size + n
        return out, pos

    def _lost(self, seg: _Segment, why: str) -> None:
        """Drop a segment whose records can no longer be read; they count as dropped."""
        _log.warning("spool %s: %s is dropped: it %s", self.slot, os.path.basename(seg.path), why)
        self.dropped += seg.entries
        self._entries -= seg.entries
        seg.entries = 0
        seg.read_off = seg.size

    def commit(self, position: tuple[int, int], delivered: int) -> None:
        """The `delivered` records taken up to `position` were sent: remember that on disk,
        and delete the segments delivered to their end. Takes are committed in the order they
        were taken."""
        seq, off = position
        with self.lock:
            self.replayed += delivered
            self._taken -= delivered
            if self._closed or seq == 0:
                return
            raw = _CURSOR.pack(seq, off, 0)[:16]
            try:
                os.pwrite(self._cursor_fd, raw + struct.pack("<I", zlib.crc32(raw)), 0)
                if self.fsync_interval == 0:
                    os.fsync(self._cursor_fd)
            except OSError as e:
                # Not fatal: a restart would replay from the last cursor written (duplicates).
                _log.warning("spool %s: the cursor cannot be written: %s", self.slot, e)
            while self._segments:
                seg = self._segments[0]
                done = seg.seq < seq or (seg.seq == seq and off >= seg.size)
                if not done:
                    break
                if len(self._segments) == 1 and self._wfd is not None:
                    if seg.read_off < seg.size:
                        break  # the writer appended since
                    # Everything is delivered: start the next write in a fresh segment.
                    os.close(self._wfd)
                    self._wfd = None
                    self._dirty = False
                self._segments.popleft()
                self._bytes -= seg.size
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(seg.path)

    # -- durability and state ------------------------------------------------------------------

    def _sync(self) -> None:
        if self._dirty and self._wfd is not None:
            os.fsync(self._wfd)
        self._dirty = False
        self._last_sync = time.monotonic()

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.slot, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sync_if_due(self) -> float | None:
        """fsync what `fsync_interval` says is due; seconds until the next is due, or None."""
        with self.lock:
            if not self._dirty or self._closed:
                return None
            left = self._last_sync + self.fsync_interval - time.monotonic()
            if left > 0:
                return left
            with contextlib.suppress(OSError):
                self._sync()
                os.fsync(self._cursor_fd)
            return None

    @property
    def entries(self) -> int:
        """Records on disk not yet taken by the drainer."""
        return self._entries

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "spooled": self.spooled,
                "replayed": self.replayed,
                "spool_dropped": self.dropped,
                "spool_corrupt": self.corrupt,
                "pending_spool_entries": self._entries + self._taken,
                "pending_spool_bytes": self._bytes,
            }

    def close(self) -> None:
        """fsync and release the slot (idempotent)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            if self._wfd is not None:
                with contextlib.suppress(OSError):
                    self._sync()
                os.close(self._wfd)
                self._wfd = None
            with contextlib.suppress(OSError):
                os.fsync(self._cursor_fd)
            os.close(self._cursor_fd)
            os.close(self._lock_fd)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the descriptors inherited from the parent (whose slot it
        stays; closing them here does not release the parent's lock)."""
        if self._closed:
            return
        self._closed = True
        self.lock = threading.Lock()
        for fd in (self._wfd, self._cursor_fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wfd = None

    def reopen(self) -> Spool:
        """A new Spool on the same directory and settings (a forked child's own slot)."""
        return Spool(
            self.root,
            name=self.name,
            topic=self.topic,
            max_bytes=self.max_bytes,
            fsync_interval=self.fsync_interval,
            max_record=self.max_record,
        )
