"""Compile and run the small Java programs under tests/java against the RocketMQ jars.

The programs print machine-readable lines, `TAG {json}` (RESULT, DONE, SENT, FAILED); everything
else on stdout is ignored and stderr goes to a log file whose tail is shown when a program fails.
Compilation happens once per source hash, into a directory under the pytest cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmqfast.devcluster import JDK17_FLAGS, LOGBACK_XML, find_java
from rmqfast.devcluster.jars import file_lock

JAVA_SRC = Path(__file__).resolve().parent / "java"
# Client programs are short-lived: a small heap, C1 only and the serial GC keep two cores free
# for the brokers.
CLIENT_JVM: tuple[str, ...] = (
    "-Xms32m",
    "-Xmx192m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
)
_runs = itertools.count(1)


class JavaProgramError(AssertionError):
    """A test program failed: its exit status, FAILED line, and output tails are in the message."""


@dataclass
class JavaResult:
    """What a finished program printed."""

    returncode: int
    events: list[tuple[str, Any]]
    stdout: str
    log: Path

    def last(self, tag: str) -> Any:
        """The value of the last `tag` line."""
        for t, v in reversed(self.events):
            if t == tag:
                return v
        raise JavaProgramError(f"no {tag} line in the output:\n{self.stdout[-3000:]}")

    @property
    def result(self) -> Any:
        """The value of the RESULT line."""
        return self.last("RESULT")

    def all(self, tag: str) -> list[Any]:
        """Every `tag` value, in order."""
        return [v for t, v in self.events if t == tag]


def _parse(line: str) -> tuple[str, Any] | None:
    tag, sep, rest = line.partition(" ")
    if not sep or not tag.isupper() or not rest.startswith(("{", "[")):
        return None
    try:
        return tag, json.loads(rest)
    except ValueError:
        return None


class JavaTools:
    """Builds tests/java/*.java once and runs its classes with the RocketMQ jars."""

    def __init__(self, lib_dir: Path, cache_dir: Path, work_dir: Path) -> None:
        self.lib_dir = Path(lib_dir)
        self.cache_dir = Path(cache_dir)
        self.work_dir = Path(work_dir)
        self._classes: Path | None = None
        self._lock = threading.Lock()

    def sources(self) -> list[Path]:
        return sorted(JAVA_SRC.glob("*.java"))

    def source_hash(self) -> str:
        h = hashlib.sha256()
        for src in self.sources():
            h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
        # A different set of jars (another RocketMQ version) needs a rebuild too.
        for jar in sorted(p.name for p in self.lib_dir.glob("*.jar")):
            h.update(jar.encode() + b"\0")
        return h.hexdigest()[:16]

    def classes(self) -> Path:
        """The compiled classes directory, compiling the sources the first time."""
        with self._lock:
            if self._classes is not None:
                return self._classes
            out = self.cache_dir / f"classes-{self.source_hash()}"
            marker = out / ".complete"
            if not marker.exists():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                with file_lock(self.cache_dir / ".lock"):
                    if not marker.exists():
                        self._compile(out)
            self._classes = out
            return out

    def _compile(self, out: Path) -> None:
        javac = shutil.which("javac")
        if javac is None:
            raise JavaProgramError(
                "javac not found on PATH: install a Java 17 JDK "
                "(Debian: apt-get install openjdk-17-jdk-headless)"
            )
        partial = out.with_name(out.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        cmd = [
            javac,
            "-nowarn",
            "-encoding",
            "UTF-8",
            "--release",
            "17",
            "-cp",
            os.path.join(str(self.lib_dir), "*"),
            "-d",
            str(partial),
            *map(str, self.sources()),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise JavaProgramError(f"javac failed:\n{proc.stdout}{proc.stderr}")
        (partial / ".complete").write_text("ok\n")
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        # Older builds of changed sources are of no further use.
        for old in self.cache_dir.glob("classes-*"):
            if old != out and ".partial-" not in old.name:
                shutil.rmtree(old, ignore_errors=True)

    def command(
        self, main: str, args: Mapping[str, object], log: Path, jvm_props: Mapping[str, object]
    ) -> list[str]:
        home = self.work_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cp = os.pathsep.join([str(self.classes()), os.path.join(str(self.lib_dir), "*")])
        props = {
            "user.home": home,
            "rmq.logback.configurationFile": LOGBACK_XML,
            "rmqfast.log.file": log.with_suffix(".client.log"),
            **jvm_props,
        }
        return [
            find_java(),
            *CLIENT_JVM,
            *JDK17_FLAGS,
            *(f"-D{k}={v}" for k, v in props.items()),
            "-cp",
            cp,
            main,
            *(f"{k}={v}" for k, v in args.items()),
        ]

    def start(
        self,
        main: str,
        args: Mapping[str, object],
        jvm_props: Mapping[str, object] | None = None,
    ) -> JavaProcess:
        """Starts a program; use `expect`, then `finish` (or `run` for one-shot programs)."""
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{main}-{next(_runs)}.stderr"
        cmd = self.command(main, args, log, jvm_props or {})
        return JavaProcess(main, cmd, log)

    def run(
        self,
        main: str,
        args: Mapping[str, object],
        timeout: float = 120.0,
        jvm_props: Mapping[str, object] | None = None,
    ) -> JavaResult:
        """Runs a program to its end with stdin closed; raises JavaProgramError if it failed."""
        p = self.start(main, args, jvm_props)
        return p.finish(timeout)


class JavaProcess:
    """A running test program, its stdout read line by line on a thread."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path) -> None:
        self.name = name
        self.log = log
        self.events: list[tuple[str, Any]] = []
        self.lines: list[str] = []
        self._q: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._stderr = log.open("wb")
        self.proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            ev = _parse(line)
            if ev is not None:
                self.events.append(ev)
                self._q.put(ev)
        self._q.put(None)

    def _diagnose(self, what: str) -> JavaProgramError:
        failed = [v for t, v in self.events if t == "FAILED"]
        err = ""
        with contextlib.suppress(OSError):
            err = self.log.read_text(errors="replace")[-4000:]
        out = "\n".join(self.lines[-40:])
        return JavaProgramError(
            f"{self.name}: {what}; FAILED lines: {failed}\n--- stdout tail ---\n{out}"
            f"\n--- stderr tail ({self.log}) ---\n{err}"
        )

    def expect(self, tag: str, timeout: float) -> Any:
        """Waits for the next `tag` line and returns its value (fails on exit or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._diagnose(f"no {tag} line within {timeout:g} s")
            try:
                ev = self._q.get(timeout=remaining)
            except queue.Empty:
                continue
            if ev is None:
                self._q.put(None)
                self.proc.wait(timeout=10)
                raise self._diagnose(f"exited with {self.proc.returncode} before printing {tag}")
            if ev[0] == tag:
                return ev[1]
            if ev[0] == "FAILED":
                self.proc.wait(timeout=30)
                raise self._diagnose(f"failed before printing {tag}")

    def close_stdin(self) -> None:
        """Tells an interactive program to finish."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def finish(self, timeout: float = 60.0) -> JavaResult:
        """Closes stdin, waits for the exit and checks it: status 0 and a RESULT line."""
        self.close_stdin()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self._diagnose(f"still running after {timeout:g} s (killed)") from None
        self._reader.join(timeout=10)
        self._stderr.close()
        out = "\n".join(self.lines)
        result = JavaResult(self.proc.returncode, list(self.events), out, self.log)
        if self.proc.returncode != 0:
            raise self._diagnose(f"exit status {self.proc.returncode}")
        if not result.all("RESULT"):
            raise self._diagnose("no RESULT line")
        return result

    def kill(self) -> None:
        """Ends the program now (cleanup after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.close_stdin()
        with contextlib.suppress(OSError):
            self._stderr.close()

    def __enter__(self) -> JavaProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@dataclass
class StatsDelta:
    """Proxy stats before and after something, to compare counts."""

    before: dict[str, Any]
    after: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return int(self.after[name]) - int(self.before[name])
