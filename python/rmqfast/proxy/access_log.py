"""The proxy's access log on the Python side: a thread that moves the lines the Rust data path
buffers to their destination (stdout, a size-rotated file, or a RocketMQ topic).

The data path builds each line and decides what is logged (`access_log_sample`,
`access_log_slow_ms`); this module only writes batches of finished lines, one write per batch.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from rmqfast.proxy.config import ConfigError, access_log_namesrv

if TYPE_CHECKING:
    from rmqfast.logger import RocketMQLogger
    from rmqfast.proxy.config import ProxyConfig

__all__ = [
    "AccessLogWriter",
    "FileSink",
    "Prepared",
    "RocketMQSink",
    "Sink",
    "StdoutSink",
    "make_sink",
]

log = logging.getLogger("rmqfast.proxy.access_log")

# How long the drain thread waits for lines before it looks at its stop flag again.
_POLL_S = 0.25
# How long stopping waits for the drain thread (a destination that blocks, such as a stdout pipe
# nobody reads, must not hang the proxy's stop or a reload).
_JOIN_S = 5.0


class Sink(Protocol):
    """Where access log lines go."""

    def write(self, data: bytes) -> None:
        """Writes whole lines (each ends in a newline)."""

    def reopen(self) -> None:
        """Reopens the destination (a file moved away by logrotate); a no-op for the others."""

    def close(self) -> None:
        """Flushes and releases the destination."""


class StdoutSink:
    """Lines to standard output (or to `stream`)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def write(self, data: bytes) -> None:
        """Writes and flushes one batch."""
        self._stream.write(data)
        self._stream.flush()

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Flushes (standard output stays open)."""
        self._stream.flush()


class FileSink:
    """Lines appended to `path`, rotated by size: when the next lines would take the file past
    `max_bytes`, it becomes `path.1` (`path.1` becomes `path.2` and so on; past `backups` the
    oldest is deleted) and a new file starts. Rotation falls between lines, so a file exceeds
    `max_bytes` only when a single line does. `max_bytes` 0 never rotates."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._file = self._open()

    def _open(self) -> BinaryIO:
        f = open(self.path, "ab")  # noqa: SIM115 - held open across writes, closed in close()
        self._size = f.tell()
        return f

    def write(self, data: bytes) -> None:
        """Appends one batch, rotating between lines as needed. A file left closed by a
        rotation that failed (a full disk) is opened again first."""
        if self._file.closed:
            self._file = self._open()
        while data:
            room = self.max_bytes - self._size
            if self.max_bytes == 0 or len(data) <= room:
                cut = len(data)
            else:
                # The longest run of whole lines that fits.
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1
                if cut == 0:
                    if self._size > 0:
                        self._rotate()
                        continue
                    # A single line longer than max_bytes gets a file of its own.
                    cut = data.find(b"\n") + 1 or len(data)
            self._file.write(data[:cut])
            self._size += cut
            data = data[cut:]
            if data:
                self._rotate()
        self._file.flush()

    def _rotate(self) -> None:
        """Moves the file to its first backup and opens a new one. A file deleted meanwhile
        has nothing to move; if closing or moving fails, a new file is still opened when it
        can be (and the error raised, for the batch's lines to be counted lost)."""
        try:
            self._file.close()
            if self.backups == 0:
                self.path.unlink(missing_ok=True)
            else:
                for i in range(self.backups - 1, 0, -1):
                    older = self._backup(i)
                    if older.exists():
                        os.replace(older, self._backup(i + 1))
                if self.path.exists():
                    os.replace(self.path, self._backup(1))
        finally:
            self._file = self._open()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def reopen(self) -> None:
        """Reopens `path` (after logrotate moved it: a new file starts). The new file is opened
        first, so one that cannot be opened leaves the old in use (and raises OSError)."""
        old = self._file
        self._file = self._open()
        try:
            old.close()
        except (OSError, ValueError) as e:
            log.warning("access log: closing the old file failed: %s", e)

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


class RocketMQSink:
    """Lines sent to a RocketMQ topic by a `RocketMQLogger` (one message per line, with the
    logger's batching, retries and counters; its stats join the proxy's /metrics)."""

    def __init__(
        self, topic: str, namesrv: list[str], factory: Callable[..., RocketMQLogger] | None = None
    ) -> None:
        if factory is None:
            from rmqfast.logger import RocketMQLogger

            factory = RocketMQLogger
        self.logger = factory(
            namesrv,
            topic,
            name="rmqfast proxy access log",
            inactive_timeout=1,
            max_pending_entries=100_000,
        )

    def write(self, data: bytes) -> None:
        """Queues each line as one entry (never blocks; the logger counts what it drops)."""
        put = self.logger.enqueue
        for line in data.splitlines():
            if line:
                put(line)

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Sends what is queued (bounded by the logger's shutdown_timeout) and closes."""
        self.logger.close()


def _destination(cfg: ProxyConfig) -> tuple[object, ...]:
    """The settings a sink is built from: a change to any of them means a new sink."""
    if cfg.access_log == "file":
        return ("file", cfg.access_log_file, cfg.access_log_max_bytes, cfg.access_log_backups)
    if cfg.access_log == "rocketmq":
        return ("rocketmq", cfg.access_log_topic, tuple(access_log_namesrv(cfg)))
    return (cfg.access_log,)


class Prepared:
    """A destination built and ready to put in place (`AccessLogWriter.install`), or the
    running one to keep (`keep`: the same settings; a file is reopened)."""

    def __init__(self, key: tuple[object, ...], sink: Sink | None, keep: bool) -> None:
        self.key = key
        self.sink = sink
        self.keep = keep


def make_sink(cfg: ProxyConfig) -> Sink | None:
    """The sink `cfg` asks for (None when the access log is off); OSError if a file cannot be
    opened."""
    if cfg.access_log == "stdout":
        return StdoutSink()
    if cfg.access_log == "file":
        assert cfg.access_log_file is not None  # validate() requires it
        return FileSink(cfg.access_log_file, cfg.access_log_max_bytes, cfg.access_log_backups)
    if cfg.access_log == "rocketmq":
        assert cfg.access_log_topic is not None  # validate() requires it
        return RocketMQSink(cfg.access_log_topic, access_log_namesrv(cfg))
    return None


class AccessLogWriter:
    """Drains the proxy's access log buffer (`take(timeout) -> bytes`) into a sink on a thread
    of its own, which runs only while the access log is on. Lines the sink fails to take are
    passed to `lost(lines)` (the proxy counts them in `access_log_lost`).

    `reconfigure(config)` follows a new configuration (a new sink only when the destination
    settings changed; the thread starts or stops with `access_log`), `reopen()` reopens a file,
    `close()` writes what is left and stops."""

    def __init__(self, take: Callable[[float], bytes], lost: Callable[[int], None]) -> None:
        self._take = take
        self._lost = lost
        self._lock = threading.Lock()
        self._sink: Sink | None = None
        self._key: tuple[object, ...] = (None,)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_warning = 0.0

    @property
    def sink(self) -> Sink | None:
        """The sink lines go to now (None when off)."""
        return self._sink

    def prepare(self, cfg: ProxyConfig) -> Prepared:
        """Builds the destination `cfg` asks for when its settings differ from the running
        one's, so a reload can fail before anything changed: ConfigError naming the field when
        it cannot be built (a file that cannot be opened)."""
        key = _destination(cfg)
        if key == self._key:
            return Prepared(key, None, keep=True)
        try:
            return Prepared(key, make_sink(cfg), keep=False)
        except (OSError, ValueError) as e:
            if cfg.access_log == "file":
                raise ConfigError(
                    f"access_log_file: cannot open {cfg.access_log_file!r} for appending: {e}"
                ) from None
            raise ConfigError(
                f"access_log: cannot start the {cfg.access_log} destination: {e}"
            ) from None

    def discard(self, prepared: Prepared) -> None:
        """Closes a prepared destination that is not going to be installed."""
        if prepared.sink is not None:
            self._close(prepared.sink)

    def reconfigure(self, cfg: ProxyConfig) -> None:
        """`install(prepare(cfg))`: ConfigError if the new destination cannot be built, with the
        current one left in place."""
        self.install(self.prepare(cfg))

    def install(self, prepared: Prepared) -> None:
        """Puts a prepared destination in place: lines buffered so far go to the old one,
        which is then closed; the drain thread starts or stops with the access log. A kept
        destination is reopened (a reload after logrotate moved the file); if that fails, the
        old file stays in use and a warning is logged."""
        if prepared.keep:
            try:
                self.reopen()
            except (OSError, ValueError) as e:
                log.warning("access log: reopening the destination failed, kept the old: %s", e)
            return
        old = self._swap(prepared.sink, prepared.key)
        if old is not None:
            # Lines buffered under the old settings go where they were meant to.
            self._drain_into(old)
            self._close(old)
        if prepared.sink is not None:
            stop = threading.Event()
            self._stop = stop
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="rmqfast-access-log", daemon=True
            )
            self._thread.start()

    def reopen(self) -> None:
        """Reopens the sink's destination (a file moved by logrotate)."""
        with self._lock:
            if self._sink is not None:
                self._sink.reopen()

    def close(self) -> None:
        """Writes every buffered line, then closes the sink."""
        sink = self._swap(None, (None,))
        if sink is not None:
            self._drain_into(sink)
            self._close(sink)

    def _swap(self, new: Sink | None, key: tuple[object, ...]) -> Sink | None:
        """Stops the drain thread and makes `new` the sink; returns the old one to drain and
        close, or None when there was none or it is stuck in a write (a stdout pipe nobody
        reads): then it is left to its thread, which exits once the write returns, and the lines
        buffered now are counted lost, so that stopping or reloading never hangs on it."""
        t, self._thread = self._thread, None
        if t is None:
            stuck = False
        else:
            self._stop.set()
            t.join(_JOIN_S)
            stuck = t.is_alive()
        if stuck:
            log.warning(
                "access log: the destination has not finished a write in %.0f s; going on "
                "without it",
                _JOIN_S,
            )
            self._sink, self._key = new, key
            if data := self._take(0.0):
                self._lost(data.count(b"\n"))
            return None
        with self._lock:
            old, self._sink, self._key = self._sink, new, key
        return old

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            data = self._take(_POLL_S)
            if data:
                with self._lock:
                    if self._sink is not None:
                        self._write(self._sink, data)

    def _drain_into(self, sink: Sink) -> None:
        # One take empties the buffer; looping until it came back empty could go on for as
        # long as requests keep coming.
        if data := self._take(0.0):
            self._write(sink, data)

    def _close(self, sink: Sink) -> None:
        """Closes `sink`; a destination that fails here (a file's last flush on a full disk)
        is logged, not raised: its lines were counted as lost when their write failed."""
        try:
            sink.close()
        except (OSError, ValueError) as e:
            log.warning("access log: closing the destination failed: %s", e)

    def _write(self, sink: Sink, data: bytes) -> None:
        try:
            sink.write(data)
        except (OSError, ValueError) as e:
            self._lost(data.count(b"\n"))
            now = time.monotonic()
            if now - self._last_warning >= 60:
                self._last_warning = now
                log.warning("access log: lines lost, the destination failed: %s", e)
