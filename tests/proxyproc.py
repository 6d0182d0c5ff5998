"""The proxy as its users run it, and a raw client's socket helpers, for the fault and abuse
tests: `CliProxy` is `python -m rmqfast.proxy` in a subprocess (its own memory, signals and
output); the helpers send single frames and read or wait for what comes back."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from rmqfast.codec import FLAG_ONEWAY, FrameDecoder, RemotingCommand

from .fakes import wait_until

_opaques = itertools.count(1_000_000)


def send_frame(sock: socket.socket, code: int, oneway: bool = False, **ext: str) -> int:
    opaque = next(_opaques)
    cmd = RemotingCommand(code, dict(ext), opaque=opaque, flag=FLAG_ONEWAY if oneway else 0)
    sock.sendall(cmd.encode("json"))
    return opaque


def read_frames(sock: socket.socket, dec: FrameDecoder, n: int, timeout: float) -> list[Any]:
    """The next `n` frames (fewer if the connection closes first)."""
    out: list[RemotingCommand] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(out)} of {n} frames in {timeout} s")
        sock.settimeout(remaining)
        data = sock.recv(65536)
        if not data:
            break
        out.extend(dec.feed(data))
    return out


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes the connection within `timeout` (data read meanwhile is dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def connect(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


class CliProxy:
    """`python -m rmqfast.proxy` as a subprocess, its announced addresses parsed."""

    def __init__(self, *args: str) -> None:
        # The child imports the same installed rmqfast as this test process.
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rmqfast.proxy", "--listen", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        line = wait_until(lambda: self._line("rmqfast proxy: namesrv "), 30, "the proxy to start")
        self.namesrv_addr = line.split()[-1]
        line = wait_until(lambda: self._line("rmqfast proxy: admin "), 5, "the admin line")
        self.admin_url = line.split()[-1].rsplit("/", 1)[0]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _line(self, prefix: str) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the proxy exited: {self.lines}")
        return next((x for x in self.lines if x.startswith(prefix)), None)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.admin_url}/stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def rss_bytes(self) -> int:
        """The proxy process's resident memory (VmRSS)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/PID/status")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def refused(addr: str) -> bool:
    try:
        connect(addr).close()
    except OSError:
        return True
    return False
