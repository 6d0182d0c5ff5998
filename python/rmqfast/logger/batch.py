"""The batch processor: bounded queue, batching, retries, drop counting, fork and exit handling.

Modelled on OpenTelemetry's BatchSpanProcessor. `put()` is the only call on the application's
path: a lock, a few integer updates and a deque append; it never waits and never logs. Daemon
threads do the rest: the *batcher* renders queued items to bytes (so the request path never pays
for templating or JSON) and cuts batches on size, inactivity and age; `send_concurrency`
*senders* take batches in order and send them, each retrying its batch per max_retry_count /
retry_delay, so rendering overlaps the network wait (the producer releases the GIL). With one
sender, batches reach the broker in order; with more, a flush still waits for every batch
queued before it.

Every entry accepted is eventually counted exactly once as sent, dropped (by reason),
spooled or filtered (a request the `match` rules leave out); entries refused by `put()` are
counted as dropped and never as accepted.

With a spool (`rmqfast.logger.spool`), what would have been dropped after the retries, or at
close, is written to disk instead, and while the spool holds anything (an outage) or the send
queue is backed up, the batcher writes new batches there too, so the spool stays in order and
memory stays bounded. A *drainer* thread replays the spool (this process's entries and any a
predecessor left) whenever the broker takes them, retrying with backoff until it does.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rmqfast.logger.spool import Spool, SpoolError, SpoolWriteError

__all__ = ["DROP_REASONS", "BatchProcessor", "Encoded", "Message", "close_all"]

_log = logging.getLogger("rmqfast.logger")

DROP_REASONS: tuple[str, ...] = (
    "queue_full",
    "bytes_full",
    "too_large",
    "encode_error",
    "rejected",
    "retries_exhausted",
    "closed",
    "shutdown",
    "spool_error",
)
"""Why entries were dropped: queue_full / bytes_full (max_pending_entries / max_pending_bytes
reached), too_large (one entry exceeds max_message_size), encode_error (could not be rendered as
JSON), rejected (every attempt failed, the last with an error the producer calls permanent: bad
credentials, no permission, unknown topic…), retries_exhausted (every attempt failed, the last
with a transient error), closed (logged after close()), shutdown (still pending when the
close() or exit deadline passed), spool_error (the spool could not write them: disk full or an
I/O error; the error is in the warning)."""

SPOOL_STATS: dict[str, int] = {
    "spooled": 0,
    "replayed": 0,
    "spool_dropped": 0,
    "spool_corrupt": 0,
    "pending_spool_entries": 0,
    "pending_spool_bytes": 0,
}
"""The spool's counters (zero without a spool): entries written to it by this process, entries
replayed from it (a predecessor's too), entries dropped with the oldest segment to make room,
records found torn or corrupt (never replayed), and the entries and bytes it holds."""

Encoded = tuple[bytes, str | None, str | None]
"""A rendered entry: message body, key (KEYS) and tag (TAGS)."""

Message = tuple[bytes, dict[str, str] | None]
"""One RocketMQ message: body and properties (KEYS/TAGS)."""

_monotonic = time.monotonic
_perf = time.perf_counter

# Per-message bytes of a SEND_BATCH_MESSAGE body besides the payload: five ints, the properties
# length, and properties such as UNIQ_KEY and WAIT that the producer adds.
_BATCH_OVERHEAD = 20 + 2 + 96
_MAX_KEYS_LEN = 16000
_FILTERED = "filtered"  # not a drop: a request `match` leaves out
_MAX_BACKOFF = 60.0
_LATENCY_WINDOW = 1024
# The drainer's retry waits while the broker is away: retry_delay (at least this), doubling.
_SPOOL_RETRY_MIN = 0.2
_SPOOL_RETRY_MAX = 5.0
# close() waits at least this long for the batcher to write what is queued to the spool.
_SPOOL_CLOSE_GRACE = 5.0


class _Marker:
    """A flush request travelling through the queues in order with the entries."""

    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False


class _Unit:
    """What one producer call sends: one message, or a batch fitting one request."""

    __slots__ = ("attempts", "entries", "messages", "nbytes", "source")

    def __init__(
        self, messages: list[Message], entries: int, nbytes: int, source: list[Encoded]
    ) -> None:
        self.messages = messages
        self.entries = entries
        self.nbytes = nbytes
        self.source = source  # the rendered entries, which a spool stores
        self.attempts = 0


class BatchProcessor:
    """Bounded queue + batcher + sender for one logger; see the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        render: Callable[[Any], Encoded | None],
        send: Callable[[list[Message]], None],
        close_sink: Callable[[], None],
        after_fork: Callable[[], None],
        batch_max_size: int = 1000,
        inactive_timeout: float = 5,
        buffer_duration: float = 60,
        max_retry_count: int = 0,
        retry_delay: float = 1,
        backoff: str = "fixed",
        max_pending_entries: int = 8192,
        max_pending_bytes: int = 64 * 1024 * 1024,
        message_shape: str = "entry",
        max_message_size: int = 4 * 1024 * 1024,
        array_item: Callable[[bytes], bytes] | None = None,
        shutdown_timeout: float = 5,
        send_concurrency: int = 2,
        spool: Spool | None = None,
    ) -> None:
        self.name = name
        self._render = render
        self._send = send
        self._close_sink = close_sink
        self._after_fork_sink = after_fork
        self.batch_max_size = batch_max_size
        self.inactive_timeout = float(inactive_timeout)
        self.buffer_duration = float(buffer_duration)
        self.max_retry_count = max_retry_count
        self.retry_delay = float(retry_delay)
        self.backoff = backoff
        self.max_pending_entries = max_pending_entries
        self.max_pending_bytes = max_pending_bytes
        self.message_shape = message_shape
        self.max_message_size = max_message_size
        self._array_item = array_item
        self.shutdown_timeout = float(shutdown_timeout)
        self.send_concurrency = max(1, send_concurrency)
        self._spool = spool
        # Entries queued for the senders beyond which the batcher spools instead.
        self._divert_at = max(batch_max_size, max_pending_entries // 2)
        self._closed = False
        self._init_state()
        _PROCESSORS.add(self)
        self._start_threads()

    # -- state ---------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._batch_cv = threading.Condition(self._lock)
        self._send_cv = threading.Condition(self._lock)
        self._intake: deque[Any] = deque()
        self._sendq: deque[_Unit | _Marker] = deque()
        self._wake_at = self.batch_max_size
        self._markers = 0
        self._idle = False  # the batcher waits with no deadline: the next put must wake it
        self._first_put = 0.0
        self._last_put = 0.0
        self._stop = False
        self._abandon = False
        self._pending = 0
        self._pending_bytes = 0
        self._accepted = 0
        self._filtered = 0
        self._sent = 0
        self._messages = 0
        self._batches = 0
        self._failed = 0
        self._retried = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._unwarned: dict[str, int] = {}
        self._send_errors = 0
        self._last_error = ""
        self._lat_sum = 0.0
        self._lat_max = 0.0
        self._lat_window: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._inflight = 0
        self._senders_alive = 0
        self._batcher: threading.Thread | None = None
        self._senders: list[threading.Thread] = []
        self._drain_cv = threading.Condition(self._lock)
        self._spool_order = threading.Lock()  # spool writes that must not interleave
        self._drainer: threading.Thread | None = None
        self._queued = 0  # entries in _sendq and in flight
        self._workers_alive = 0  # batcher, senders, drainer: the last one out releases
        self._released = False
        # The spool holds entries (an outage, or a predecessor's): new batches go there too.
        self._spooling = self._spool is not None and self._spool.entries > 0

    def _start_threads(self) -> None:
        if self._closed:
            return
        self._batcher = threading.Thread(
            target=self._batch_loop, name=f"rmqfast-logger-batcher[{self.name}]", daemon=True
        )
        self._senders = [
            threading.Thread(
                target=self._send_loop, name=f"rmqfast-logger-sender[{self.name}]", daemon=True
            )
            for _ in range(self.send_concurrency)
        ]
        self._senders_alive = len(self._senders)
        if self._spool is not None:
            self._drainer = threading.Thread(
                target=self._drain_loop, name=f"rmqfast-logger-drainer[{self.name}]", daemon=True
            )
        self._workers_alive = 1 + len(self._senders) + (self._drainer is not None)
        self._batcher.start()
        for t in self._senders:
            t.start()
        if self._drainer is not None:
            self._drainer.start()

    def _reinit_after_fork(self) -> None:
        # The child owns none of the parent's entries (the parent still sends them) nor its
        # threads; it starts empty, with fresh locks, and builds its own producer on first send.
        closed = self._closed
        spool = self._spool
        if spool is not None:
            spool.abandon_after_fork()
            try:
                self._spool = None if closed else spool.reopen()
            except (SpoolError, OSError) as e:
                self._spool = None
                _log.warning(
                    "rocketmq logger %r: no spool in the forked process %d: %s",
                    self.name,
                    os.getpid(),
                    e,
                )
        self._init_state()
        self._closed = closed
        with contextlib.suppress(Exception):
            self._after_fork_sink()
        self._start_threads()

    # -- the application's side ----------------------------------------------------------------

    def put(self, item: Any) -> bool:
        """Queue one item without blocking; False (and counted) when it had to be dropped."""
        now = _monotonic()
        with self._lock:
            if self._closed:
                self._refuse("closed")
                return False
            if self._pending >= self.max_pending_entries:
                self._refuse("queue_full")
                return False
            if self._pending_bytes >= self.max_pending_bytes:
                self._refuse("bytes_full")
                return False
            self._accepted += 1
            self._pending += 1
            intake = self._intake
            if not intake:
                self._first_put = now
            intake.append(item)
            self._last_put = now
            if self._idle or len(intake) >= self._wake_at:
                self._idle = False
                self._batch_cv.notify()
        return True

    def _refuse(self, reason: str) -> None:
        # Called with the lock held. The batcher thread reports drops (at most once a second).
        self._dropped[reason] += 1
        if not self._unwarned:
            self._batch_cv.notify()
        self._unwarned[reason] = self._unwarned.get(reason, 0) + 1

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued before this call; True if it all got a final outcome in time.

        An outcome is sent or dropped; `stats()` tells them apart.
        """
        marker = _Marker()
        with self._lock:
            if self._stop:
                return self._pending == 0
            self._intake.append(marker)
            self._markers += 1
            self._batch_cv.notify()
        return marker.event.wait(timeout) and marker.ok

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the threads; entries still pending at the deadline are dropped.

        Returns True when everything was flushed in time. Idempotent.
        """
        timeout = self.shutdown_timeout if timeout is None else timeout
        deadline = _monotonic() + max(0.0, timeout)
        marker = self._begin_close()
        return self._finish_close(marker, deadline)

    def _begin_close(self) -> _Marker | None:
        with self._lock:
            if self._closed and self._stop:
                return None
            self._closed = True
            marker = _Marker()
            self._intake.append(marker)
            self._markers += 1
            self._batch_cv.notify()
            return marker

    def _finish_close(self, marker: _Marker | None, deadline: float) -> bool:
        if marker is None:
            return self._pending == 0
        flushed = marker.event.wait(max(0.0, deadline - _monotonic())) and marker.ok
        with self._lock:
            self._stop = True
            self._abandon = True
            self._batch_cv.notify_all()
            self._send_cv.notify_all()
            self._drain_cv.notify_all()
        me = threading.current_thread()
        if self._spool is not None:
            # Writing what is queued to disk is local work: it gets time past the deadline.
            b = self._batcher
            if b is not None and b is not me:
                b.join(max(_SPOOL_CLOSE_GRACE, deadline - _monotonic()))
            self._spool_in_order(None, None, 0)
        for t in (self._batcher, *self._senders, self._drainer):
            if t is not None and t is not me:
                t.join(max(0.05, deadline - _monotonic()))
        with self._lock:
            idle = self._workers_alive == 0
        if idle:
            self._release()
        _PROCESSORS.discard(self)
        return flushed

    def _worker_exit(self) -> None:
        """A worker thread ends; the last one releases the producer and the spool."""
        with self._lock:
            self._workers_alive -= 1
            last = self._workers_alive <= 0
        if last:
            self._release()

    def _release(self) -> None:
        # Once no thread of this processor can use them: a sender stuck in a slow send at
        # close still writes its batch to the spool when the send gives up.
        with self._lock:
            if self._released:
                return
            self._released = True
        with contextlib.suppress(Exception):
            self._close_sink()
        if self._spool is not None:
            with contextlib.suppress(OSError):
                self._spool.close()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    # -- stats ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters (entries unless named otherwise), gauges and send latency."""
        with self._lock:
            window = sorted(self._lat_window)
            n = self._batches + self._send_errors
            out: dict[str, Any] = {
                "accepted": self._accepted,
                "filtered": self._filtered,
                "sent": self._sent,
                "failed": self._failed,
                "retried": self._retried,
                "dropped": dict(self._dropped),
                "batches": self._batches,
                "messages": self._messages,
                "send_errors": self._send_errors,
                "pending_entries": self._pending,
                "pending_bytes": self._pending_bytes,
                "send_latency_avg_seconds": (self._lat_sum / n) if n else 0.0,
                "send_latency_p50_seconds": _quantile(window, 0.5),
                "send_latency_p99_seconds": _quantile(window, 0.99),
                "send_latency_max_seconds": self._lat_max,
            }
        out.update(self._spool.stats() if self._spool is not None else SPOOL_STATS)
        return out

    # -- batcher thread ------------------------------------------------------------------------

    def _batch_loop(self) -> None:
        buf: list[Encoded] = []
        buf_first = 0.0
        next_warn = 0.0
        try:
            while True:
                with self._lock:
                    while True:
                        if self._stop or self._markers:
                            break
                        intake = self._intake
                        if intake and len(intake) >= self._wake_at:
                            break
                        now = _monotonic()
                        timeout: float | None = None
                        if buf or intake:
                            first = buf_first if buf else self._first_put
                            due = min(
                                self._last_put + self.inactive_timeout,
                                first + self.buffer_duration,
                            )
                            timeout = due - now
                            if timeout <= 0:
                                break
                        if self._unwarned:
                            w = max(0.0, next_warn - now)
                            if w == 0.0:
                                break
                            timeout = w if timeout is None else min(timeout, w)
                        self._idle = timeout is None
                        self._batch_cv.wait(timeout)
                    self._idle = False
                    items: deque[Any] | tuple[()] = self._intake
                    if items:
                        self._intake = deque()
                    else:
                        items = ()  # never hold on to the live deque outside the lock
                    self._markers = 0
                    first_put = self._first_put
                    last_put = self._last_put
                    stop = self._stop
                    unwarned = self._unwarned
                    if unwarned and _monotonic() >= next_warn:
                        self._unwarned = {}
                    else:
                        unwarned = {}
                if unwarned:
                    next_warn = _monotonic() + 1.0
                    self._warn_drops(unwarned)
                if stop:
                    self._abandon_items(items, buf)
                    return
                if items:
                    if not buf:
                        buf_first = first_put
                    buf, buf_first = self._consume(items, buf, buf_first, first_put)
                if buf:
                    now = _monotonic()
                    if (
                        now - last_put >= self.inactive_timeout
                        or now - buf_first >= self.buffer_duration
                    ):
                        self._cut(buf, None)
                        buf = []
                with self._lock:
                    self._wake_at = max(1, self.batch_max_size - len(buf))
        except BaseException:  # pragma: no cover - a bug; keep the process alive, say so
            _log.exception("rocketmq logger %r: batcher thread failed", self.name)
            raise
        finally:
            self._worker_exit()

    def _consume(
        self, items: Iterable[Any], buf: list[Encoded], buf_first: float, first_put: float
    ) -> tuple[list[Encoded], float]:
        render = self._render
        limit = self.max_message_size - (2 if self.message_shape == "array" else 0)
        max_bytes = self.max_pending_bytes
        with self._lock:
            pending_bytes = self._pending_bytes
        added = 0  # rendered bytes not yet added to _pending_bytes
        drops: dict[str, int] = {}
        batch_max = self.batch_max_size
        for item in items:
            if type(item) is _Marker:
                if buf:
                    pending_bytes = self._commit_bytes(added, drops)
                    added, drops = 0, {}
                    self._cut(buf, item)
                    buf = []
                else:
                    self._cut([], item)
                continue
            try:
                enc = render(item)
            except Exception as e:
                drops["encode_error"] = drops.get("encode_error", 0) + 1
                self._note_error(f"could not render an entry: {type(e).__name__}: {e}")
                continue
            if enc is None:
                drops[_FILTERED] = drops.get(_FILTERED, 0) + 1
                continue
            n = len(enc[0])
            if n > limit:
                drops["too_large"] = drops.get("too_large", 0) + 1
                continue
            if pending_bytes + added + n > max_bytes:
                drops["bytes_full"] = drops.get("bytes_full", 0) + 1
                continue
            added += n
            if not buf:
                buf_first = first_put
            buf.append(enc)
            if len(buf) >= batch_max:
                pending_bytes = self._commit_bytes(added, drops)
                added, drops = 0, {}
                self._cut(buf, None)
                buf = []
        self._commit_bytes(added, drops)
        return buf, buf_first

    def _commit_bytes(self, added: int, drops: dict[str, int]) -> int:
        """Account rendered bytes and batcher-side drops; returns the new pending bytes."""
        with self._lock:
            self._pending_bytes += added
            for reason, k in drops.items():
                self._pending -= k
                if reason == _FILTERED:
                    self._filtered += k
                    continue
                self._dropped[reason] += k
                self._unwarned[reason] = self._unwarned.get(reason, 0) + k
            return self._pending_bytes

    def _cut(self, buf: list[Encoded], marker: _Marker | None) -> None:
        if buf and self._spool is not None:
            # While a batch is in flight, a new one queues behind it (a sender spools it in
            # order if it must); only a backlog (or close) sends it to disk past it, to bound
            # memory. _spool_in_order decides under the lock.
            forced = self._abandon or self._queued >= self._divert_at
            if (forced or self._spooling) and self._spool_in_order(
                None, buf, sum(len(e[0]) for e in buf), tail_waits_for_inflight=not forced
            ):
                buf = []
        units = self._pack(buf) if buf else []
        with self._lock:
            if self._abandon:
                # close() gave up meanwhile; the sender may already be gone.
                dropped = sum(u.entries for u in units)
                self._dropped["shutdown"] += dropped
                self._pending -= dropped
                self._pending_bytes -= sum(u.nbytes for u in units)
                if marker is not None:
                    marker.event.set()
                return
            self._sendq.extend(units)
            self._queued += sum(u.entries for u in units)
            if marker is not None:
                self._sendq.append(marker)
            self._send_cv.notify(len(units) + (marker is not None))

    def _pack(self, buf: list[Encoded]) -> list[_Unit]:
        limit = self.max_message_size
        units: list[_Unit] = []
        if self.message_shape == "array" and self.batch_max_size > 1:
            conv = self._array_item
            group: list[Encoded] = []
            size = 2
            start = 0
            for i, enc in enumerate(buf):
                body = enc[0] if conv is None else conv(enc[0])
                n = len(body) + (1 if group else 0)
                if group and size + n > limit:
                    units.append(self._array_unit(group, buf[start:i]))
                    group, size, n, start = [], 2, len(body), i
                group.append((body, enc[1], enc[2]))
                size += n
            if group:
                units.append(self._array_unit(group, buf[start:]))
            return units
        if self.message_shape == "array":
            return [_Unit([(b, _props(k, t))], 1, len(b), [(b, k, t)]) for b, k, t in buf]
        messages: list[Message] = []
        nbytes = 0
        est = 0
        start = 0
        for i, (body, key, tag) in enumerate(buf):
            if key is None and tag is None:
                props = None
                m = len(body) + _BATCH_OVERHEAD
            else:
                props = _props(key, tag)
                m = len(body) + _BATCH_OVERHEAD + len(key or "") + len(tag or "")
            if messages and est + m > limit:
                units.append(_Unit(messages, len(messages), nbytes, buf[start:i]))
                messages, nbytes, est, start = [], 0, 0, i
            messages.append((body, props))
            nbytes += len(body)
            est += m
        if messages:
            units.append(_Unit(messages, len(messages), nbytes, buf[start:]))
        return units

    @staticmethod
    def _array_unit(group: list[Encoded], source: list[Encoded]) -> _Unit:
        body = b"[" + b",".join(e[0] for e in group) + b"]"
        keys: list[str] = []
        seen: set[str] = set()
        total = 0
        for _, key, _t in group:
            if key and key not in seen:
                # RocketMQ indexes each space-separated key; stay well inside the 32 KiB
                # properties limit.
                if total + len(key) + 1 > _MAX_KEYS_LEN:
                    break
                seen.add(key)
                keys.append(key)
                total += len(key) + 1
        tag = group[0][2]
        nbytes = sum(len(e[0]) for e in group)
        return _Unit([(body, _props(" ".join(keys) or None, tag))], len(group), nbytes, source)

    def _abandon_items(self, items: Iterable[Any], buf: list[Encoded]) -> None:
        if self._spool is not None:
            # Rendered and spooled rather than dropped: the next process replays them.
            todo = [i for i in items if type(i) is not _Marker]
            for item in items:
                if type(item) is _Marker:
                    item.event.set()
            buf, _ = self._consume(todo, list(buf), 0.0, 0.0)
            items = ()
        n = len(buf)
        nbytes = sum(len(e[0]) for e in buf)
        for item in items:
            if type(item) is _Marker:
                item.event.set()
            else:
                n += 1
        if buf and self._spool is not None:
            self._to_spool(buf, nbytes)
            n, nbytes = 0, 0
        with self._lock:
            self._dropped["shutdown"] += n
            self._pending -= n
            self._pending_bytes -= nbytes
            # Anything logged between the intake swap and now.
            rest = self._intake
            self._intake = deque()
        if rest:
            self._abandon_items(rest, [])

    def _spool_in_order(
        self,
        head: _Unit | None,
        tail: list[Encoded] | None,
        nbytes: int,
        *,
        tail_waits_for_inflight: bool = False,
    ) -> bool:
        """Start (or keep) spooling without reordering: `head` (a unit that failed), then
        every unit still waiting for a sender, then `tail` (new entries) go to the spool in
        that order, so a replay keeps the order they were logged in (with one sender).

        With `tail_waits_for_inflight`, a tail is not written while a batch is in flight (it
        would overtake it): False is returned and the caller queues it for the senders."""
        with self._spool_order:
            with self._lock:
                if tail_waits_for_inflight and self._inflight > 0 and head is None:
                    return False
                waiting = [u for u in self._sendq if type(u) is _Unit]
                markers = [u for u in self._sendq if type(u) is _Marker]
                if waiting:
                    # Flush markers behind these units wait until they are on disk.
                    self._sendq = deque()
                    self._queued -= sum(u.entries for u in waiting)
                if head is not None or waiting or tail:
                    self._spooling = True
            if head is not None:
                self._to_spool(head.source, head.nbytes)
            for u in waiting:
                self._to_spool(u.source, u.nbytes)
            if tail:
                self._to_spool(tail, nbytes)
            if waiting and markers:
                with self._lock:
                    if self._abandon:
                        for m in markers:
                            m.event.set()
                    else:
                        self._sendq.extendleft(reversed(markers))
                        self._send_cv.notify_all()
        return True

    def _to_spool(self, encoded: list[Encoded], nbytes: int) -> None:
        """Move entries that left the memory queue to the spool (call without the lock)."""
        spool = self._spool
        assert spool is not None
        n = len(encoded)
        try:
            spool.append(encoded)
            error, lost = None, 0
        except SpoolWriteError as e:
            error, lost = f"could not write to the spool {spool.slot!r}: {e}", n - e.written
        except Exception as e:
            error, lost = f"could not write to the spool {spool.slot!r}: {e!r}", n
        with self._lock:
            self._pending -= n
            self._pending_bytes -= nbytes
            if lost < n:
                self._drain_cv.notify()
            if error is not None:
                self._last_error = error
                self._dropped["spool_error"] += lost
                self._unwarned["spool_error"] = self._unwarned.get("spool_error", 0) + lost
                if spool.entries == 0:
                    # Nothing on disk to keep in order behind: send live again.
                    self._spooling = False
                self._batch_cv.notify()

    def _warn_drops(self, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        with self._lock:
            hint = self._last_error
        _log.warning(
            "rocketmq logger %r dropped %d entries (%s); totals in stats()%s",
            self.name,
            total,
            detail,
            f"; last error: {hint}" if hint else "",
        )

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._last_error = text

    # -- sender thread -------------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    unit = self._next_unit()
                if unit is None:
                    if self._spool is not None:
                        self._spool_in_order(None, None, 0)  # what is queued goes to disk
                    return
                try:
                    if self._spool is not None and self._spooling:
                        self._spool_in_order(unit, None, 0)  # behind what is on disk
                    else:
                        self._deliver(unit)
                finally:
                    with self._lock:
                        self._inflight -= 1
                        self._queued -= unit.entries
                        self._send_cv.notify_all()
        finally:
            with self._lock:
                self._senders_alive -= 1
            self._worker_exit()

    def _next_unit(self) -> _Unit | None:
        """The next batch to send (counted in flight), or None when this sender should exit.

        Called with the lock held. A flush marker completes once every batch queued before it
        has an outcome, i.e. when it reaches the head and nothing is in flight.
        """
        while True:
            if self._abandon:
                self._abandon_sendq()
                return None
            q = self._sendq
            if q:
                head = q[0]
                if type(head) is _Marker:
                    if self._inflight == 0:
                        q.popleft()
                        head.ok = True
                        head.event.set()
                        continue
                else:
                    q.popleft()
                    self._inflight += 1
                    assert isinstance(head, _Unit)
                    return head
            elif self._stop:
                return None
            self._send_cv.wait()

    def _abandon_sendq(self) -> None:
        # Called with the lock held. With a spool, the units stay for _spool_in_order.
        if self._spool is not None:
            kept: deque[_Unit | _Marker] = deque()
            for u in self._sendq:
                if isinstance(u, _Marker):
                    u.event.set()
                else:
                    kept.append(u)
            self._sendq = kept
            return
        while self._sendq:
            u = self._sendq.popleft()
            if isinstance(u, _Marker):
                u.event.set()
                continue
            self._queued -= u.entries
            self._dropped["shutdown"] += u.entries
            self._pending -= u.entries
            self._pending_bytes -= u.nbytes

    def _deliver(self, unit: _Unit) -> None:
        last_warn = 0.0
        while True:
            unit.attempts += 1
            t0 = _perf()
            try:
                self._send(unit.messages)
            except Exception as e:
                elapsed = _perf() - t0
                retryable = bool(getattr(e, "retryable", True))
                text = f"{type(e).__name__}: {e}"
                with self._lock:
                    self._failed += unit.entries
                    self._send_errors += 1
                    self._lat_sum += elapsed
                    self._last_error = text
                    # Errors the producer calls permanent are retried too: a topic whose only
                    # broker is restarting looks missing to the name server for a while.
                    spool = self._spool is not None and (
                        self._spooling or unit.attempts > self.max_retry_count
                    )
                    if not spool and unit.attempts > self.max_retry_count:
                        reason = "rejected" if not retryable else "retries_exhausted"
                        self._finish(unit, reason)
                        return
                    if not spool:
                        self._retried += unit.entries
                if spool:
                    self._spool_in_order(unit, None, 0)
                    return
                now = _monotonic()
                if now - last_warn >= 1.0:
                    last_warn = now
                    _log.warning(
                        "rocketmq logger %r: sending %d entries failed (attempt %d of %d), "
                        "retrying: %s",
                        self.name,
                        unit.entries,
                        unit.attempts,
                        self.max_retry_count + 1,
                        text,
                    )
                if not self._wait_retry(unit.attempts):
                    if self._spool is not None:
                        self._to_spool(unit.source, unit.nbytes)
                        return
                    with self._lock:
                        self._finish(unit, "shutdown")
                    return
                continue
            elapsed = _perf() - t0
            with self._lock:
                self._sent += unit.entries
                self._messages += len(unit.messages)
                self._batches += 1
                self._lat_sum += elapsed
                if elapsed > self._lat_max:
                    self._lat_max = elapsed
                self._lat_window.append(elapsed)
                self._pending -= unit.entries
                self._pending_bytes -= unit.nbytes
            return

    # -- drainer thread (with a spool) ---------------------------------------------------------

    def _drain_loop(self) -> None:
        spool = self._spool
        assert spool is not None
        batch: tuple[list[_Unit], int, tuple[int, int]] | None = None
        last_failure = 0.0
        try:
            while True:
                try:
                    due = spool.sync_if_due()
                    if batch is None:
                        if spool.entries == 0:
                            # Live sending resumes only between spool writes, so that no
                            # batch overtakes one being written.
                            with self._spool_order, self._lock:
                                if spool.entries == 0:
                                    self._spooling = False
                        with self._lock:
                            if self._abandon or (self._stop and spool.entries == 0):
                                return
                            if spool.entries == 0:
                                self._drain_cv.wait(due)
                                continue
                        batch = self._take(spool)
                    if not self._replay_batch(spool, batch):
                        return  # closing: left in the spool for the next process
                    batch = self._take(spool) if spool.entries > 0 and not self._stop else None
                except Exception:  # a bug or the disk: say so, wait a little, go on
                    batch = None
                    now = _monotonic()
                    if now - last_failure >= 30.0:
                        _log.exception("rocketmq logger %r: spool replay failed", self.name)
                    last_failure = now
                    with self._lock:
                        if not (self._abandon or self._stop):
                            self._drain_cv.wait(1.0)
        finally:
            self._worker_exit()

    def _replay_batch(self, spool: Spool, batch: tuple[list[_Unit], int, tuple[int, int]]) -> bool:
        """Send a taken batch's units, one lane per sender (send_concurrency lanes at once, in
        order within a lane), keeping the fsync policy while they retry; commit it once all
        went."""
        units, count, position = batch
        results: list[bool | BaseException] = []
        # One lane per sender: with one, the units go one after the other, in order.
        lanes: list[list[_Unit]] = [[] for _ in range(min(self.send_concurrency, len(units)))]
        for i, u in enumerate(units):
            lanes[i % len(lanes)].append(u)
        senders = [
            threading.Thread(
                target=self._replay_into,
                args=(lane, results),
                name=f"rmqfast-logger-replay[{self.name}]",
                daemon=True,
            )
            for lane in lanes
        ]
        for t in senders:
            t.start()
        for t in senders:
            while t.is_alive():
                t.join(max(0.05, spool.fsync_interval) if spool.fsync_interval else 0.05)
                spool.sync_if_due()  # an outage must not hold the fsync policy up
        for r in results:
            if isinstance(r, BaseException):
                raise r
        if len(results) < len(lanes) or not all(results):
            return False
        spool.commit(position, count)
        return True

    def _take(self, spool: Spool) -> tuple[list[_Unit], int, tuple[int, int]]:
        """The next records from the spool as units of at most batch_max_size entries (up to
        send_concurrency of them), their count, and the position to commit after them."""
        n = self.send_concurrency
        records, position = spool.take(self.batch_max_size * n, self.max_message_size * n // 2)
        units: list[_Unit] = []
        for i in range(0, len(records), self.batch_max_size):
            units += self._pack(records[i : i + self.batch_max_size])
        return units, len(records), position

    def _replay_into(self, lane: list[_Unit], results: list[bool | BaseException]) -> None:
        try:
            results.append(all(self._replay(u) for u in lane))
        except BaseException as e:  # raised again by _replay_batch, on the drainer's thread
            results.append(e)

    def _replay(self, unit: _Unit) -> bool:
        """Send one unit from the spool, retrying until it goes; False if closing first."""
        attempt = 0
        last_warn = 0.0
        while True:
            if self._stop or self._abandon:
                return False
            t0 = _perf()
            try:
                self._send(unit.messages)
            except Exception as e:
                attempt += 1
                text = f"{type(e).__name__}: {e}"
                with self._lock:
                    self._send_errors += 1
                    self._last_error = text
                now = _monotonic()
                if now - last_warn >= 30.0:
                    last_warn = now
                    _log.warning(
                        "rocketmq logger %r: replaying %d spooled entries failed (attempt %d), "
                        "will retry: %s",
                        self.name,
                        unit.entries,
                        attempt,
                        text,
                    )
                wait = min(
                    max(self.retry_delay, _SPOOL_RETRY_MIN) * 2 ** min(attempt - 1, 16),
                    _SPOOL_RETRY_MAX,
                )
                end = _monotonic() + wait
                with self._lock:
                    while not (self._abandon or self._stop):
                        left = end - _monotonic()
                        if left <= 0:
                            break
                        self._drain_cv.wait(left)
                    if self._abandon or self._stop:
                        return False
                continue
            elapsed = _perf() - t0
            with self._lock:
                self._messages += len(unit.messages)
                self._batches += 1
                self._lat_sum += elapsed
                if elapsed > self._lat_max:
                    self._lat_max = elapsed
                self._lat_window.append(elapsed)
            return True

    def _finish(self, unit: _Unit, reason: str) -> None:
        # Called with the lock held: unit leaves the queue as dropped.
        self._dropped[reason] += unit.entries
        self._unwarned[reason] = self._unwarned.get(reason, 0) + unit.entries
        self._pending -= unit.entries
        self._pending_bytes -= unit.nbytes
        self._batch_cv.notify()

    def retry_wait(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if self.backoff == "fixed":
            return self.retry_delay
        nominal: float = min(self.retry_delay * (2 ** (attempt - 1)), _MAX_BACKOFF)
        # Up to 20% shorter at random, so that many processes do not retry in step.
        return nominal * (1.0 - 0.2 * random.random())

    def _wait_retry(self, attempt: int) -> bool:
        end = _monotonic() + self.retry_wait(attempt)
        with self._lock:
            while not self._abandon:
                left = end - _monotonic()
                if left <= 0:
                    return True
                self._send_cv.wait(left)
        return False


def _props(key: str | None, tag: str | None) -> dict[str, str] | None:
    if key is None and tag is None:
        return None
    p: dict[str, str] = {}
    if key is not None:
        p["KEYS"] = key
    if tag is not None:
        p["TAGS"] = tag
    return p


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


# -- process-wide: registry, fork, exit --------------------------------------------------------

_PROCESSORS: weakref.WeakSet[BatchProcessor] = weakref.WeakSet()

# Producers inherited across fork belong to the parent's runtime; dropping them in the child
# would run their destructors against threads that do not exist here, so they are kept forever.
_FORK_GRAVEYARD: list[object] = []


def keep_forever(obj: object) -> None:
    """Never run obj's destructor (an object inherited from the parent across fork)."""
    _FORK_GRAVEYARD.append(obj)
    with contextlib.suppress(Exception):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _after_fork_in_child() -> None:
    for p in list(_PROCESSORS):
        p._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def close_all(timeout: float | None = None) -> bool:
    """Close every live processor with one shared deadline (default: the largest
    shutdown_timeout); True if all flushed in time."""
    procs = list(_PROCESSORS)
    if not procs:
        return True
    if timeout is None:
        timeout = max(p.shutdown_timeout for p in procs)
    deadline = _monotonic() + max(0.0, timeout)
    markers = [(p, p._begin_close()) for p in procs]
    ok = True
    for p, m in markers:
        ok = p._finish_close(m, deadline) and ok
    return ok


@atexit.register
def _close_all_at_exit() -> None:
    with contextlib.suppress(Exception):
        close_all()
