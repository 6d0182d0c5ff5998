"""Ports, processes and the small files the dev cluster keeps beside them.

Free ports are picked below the ephemeral range; a pid is only trusted (and signalled) while
its command line still carries the cluster's marker; children of the main thread die with it
(PR_SET_PDEATHSIG). The "current cluster" pointer records the DIR of the last `up`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DevClusterError
from .jars import cache_root
from .remoting import LOOPBACK

__all__ = ["current_dir"]

_reserved_ports: set[int] = set()
_ports_lock = threading.Lock()


def _port_free(port: int) -> bool:
    if not 1024 <= port <= 65535:
        return False
    # The JVMs listen on the wildcard address (dual stack), so test exactly that.
    families: list[tuple[socket.AddressFamily, str]] = []
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    families.append((socket.AF_INET, "0.0.0.0"))
    for family, host in families:
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError, AttributeError):
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind((host, port))
            return True
        except OSError as e:
            if family == socket.AF_INET6 and e.errno in (97, 99):  # no IPv6 here
                continue
            return False
        finally:
            s.close()
    return False


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _pick_port(offsets: Sequence[int] = (0,)) -> int:
    """Pick a port p such that p+o is free for every offset, below the ephemeral range."""
    # Staying below the ephemeral range keeps outgoing client connections from taking them.
    low, high = 20000, max(_ephemeral_low() - 8, 21000)
    rng = random.Random()
    with _ports_lock:
        for _ in range(2000):
            p = rng.randrange(low + 2, high - 2)
            ports = [p + o for o in offsets]
            if any(q in _reserved_ports for q in ports):
                continue
            if all(_port_free(q) for q in ports):
                _reserved_ports.update(ports)
                return p
    raise DevClusterError(f"no free ports found in {low}..{high}")


def _accepting(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_state(pid: int) -> str | None:
    """Return the /proc state letter of pid, None if gone, '?' if /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rpartition(")")[2].split()[0]


def _pid_running(pid: int, marker: str | None = None) -> bool:
    """Is pid a live (not zombie) process, and if marker is given, one whose argv holds it."""
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    if state == "?":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if marker is not None:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # A recycled pid must never be signalled: check that it still is our JVM.
        return marker.encode() in argv
    return True


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _pdeathsig_preexec() -> Callable[[], None] | None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only tie children to the
    # main thread; from other threads the atexit hook is the safety net.
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would ever kill us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _current_pointer() -> Path:
    env = os.environ.get("RMQFAST_DEVCLUSTER_CURRENT")
    return Path(env).expanduser() if env else cache_root() / "devcluster-current"


def current_dir() -> Path | None:
    """Return the DIR of the last `up` from the CLI, if it was recorded and still exists."""
    try:
        text = _current_pointer().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text and Path(text).is_dir() else None


def _set_current_dir(path: Path | None) -> None:
    pointer = _current_pointer()
    if path is None:
        with contextlib.suppress(FileNotFoundError):
            pointer.unlink()
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(pointer, f"{path}\n")


@dataclass
class _Server:
    role: str  # namesrv | broker | proxy
    name: str
    port: int
    extra_ports: dict[str, int] = field(default_factory=dict)
    pid: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    launched_at: float = 0.0
    boot_seconds: float | None = None

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.port}"
