"""`DevCluster`: name servers, brokers and RocketMQ's Proxy on loopback, and its JSON state.

`start` launches each group (name servers, then brokers, then the Proxy) and waits until every
server is ready; `up` writes the state to DIR/devcluster.json so that `from_state` can attach
to the cluster later (`down`, `status`, `stop-broker`, `start-broker`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import DevClusterError
from .jars import (
    _LOG_TAIL_LINES,
    ROCKETMQ_VERSION,
    _prop_value,
    ensure_jars,
    find_java,
    java_classpath,
    java_command,
    run_mqadmin,
)
from .processes import (
    _accepting,
    _pdeathsig_preexec,
    _pick_port,
    _pid_running,
    _rss_kib,
    _Server,
    _write_atomic,
)
from .remoting import LOOPBACK, registered_brokers

__all__ = ["CLUSTER_NAME", "STATE_FILE", "DevCluster"]

STATE_FILE = "devcluster.json"
CLUSTER_NAME = "DefaultCluster"

NAMESRV_HEAP: tuple[str, ...] = ("-Xms64m", "-Xmx192m")
BROKER_HEAP: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx384m",
    "-Xmn128m",
    "-XX:MaxDirectMemorySize=256m",
    "-XX:+UseG1GC",
)
PROXY_HEAP: tuple[str, ...] = ("-Xms128m", "-Xmx320m")

NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
BROKER_MAIN = "org.apache.rocketmq.broker.BrokerStartup"
PROXY_MAIN = "org.apache.rocketmq.proxy.ProxyStartup"

NAMESRV_READY = "The Name Server boot success"
BROKER_READY = "boot success"
PROXY_READY = "rocketmq-proxy startup successfully"

_POLL = 0.1


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _broker_name(i: int) -> str:
    letters = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("a") + r) + letters
    return f"broker-{letters}"


class DevCluster:
    """Name servers, brokers of one cluster and optionally RocketMQ's Proxy, all on loopback."""

    def __init__(
        self,
        namesrvs: int = 1,
        brokers: int = 1,
        proxy: bool = False,
        dir: str | os.PathLike[str] | None = None,
        broker_props: Mapping[str, object] | None = None,
        broker_jvm_props: Mapping[str, object] | None = None,
        *,
        namesrv_props: Mapping[str, object] | None = None,
        proxy_props: Mapping[str, object] | None = None,
        proxy_jvm_props: Mapping[str, object] | None = None,
        cluster_name: str = CLUSTER_NAME,
        timeout: float = 180.0,
        stop_timeout: float = 60.0,
        detach: bool = False,
        keep_dir: bool | None = None,
        quiet: bool = True,
    ) -> None:
        if namesrvs < 1:
            raise ValueError("namesrvs must be >= 1")
        if brokers < 0:
            raise ValueError("brokers must be >= 0")
        if proxy and brokers < 1:
            raise ValueError("the Proxy needs at least one broker")
        self.cluster_name = cluster_name
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self.broker_props: dict[str, object] = dict(broker_props or {})
        self.broker_jvm_props: dict[str, object] = dict(broker_jvm_props or {})
        self.namesrv_props: dict[str, object] = dict(namesrv_props or {})
        self.proxy_props: dict[str, object] = dict(proxy_props or {})
        self.proxy_jvm_props: dict[str, object] = dict(proxy_jvm_props or {})
        self.detach = detach
        self.quiet = quiet
        self._want_namesrvs = namesrvs
        self._want_brokers = brokers
        self._want_proxy = proxy
        self._owns_dir = dir is None
        self._keep_dir = (not self._owns_dir) if keep_dir is None else keep_dir
        self._dir: Path | None = Path(dir).expanduser().resolve() if dir is not None else None
        self._lib: Path | None = None
        self._java: str | None = None
        self._namesrvs: list[_Server] = []
        self._brokers: dict[str, _Server] = {}
        self._proxy: _Server | None = None
        self._started = False

    # -- public attributes ---------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The directory holding configs, stores and logs (created on first use)."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="rmqfast-devcluster-")).resolve()
        return self._dir

    @property
    def lib_dir(self) -> Path:
        """The directory with the RocketMQ jars (fetched through Maven on first use)."""
        if self._lib is None:
            self._lib = ensure_jars(quiet=self.quiet)
        return self._lib

    def java_classpath(self) -> str:
        """The `-cp` value for the RocketMQ jars."""
        return java_classpath(self.lib_dir)

    @property
    def namesrv_addrs(self) -> list[str]:
        """Name server addresses, `127.0.0.1:port` each."""
        return [s.addr for s in self._namesrvs]

    @property
    def namesrv_addr(self) -> str:
        """Name server addresses joined with ';', as RocketMQ's namesrvAddr expects."""
        return ";".join(self.namesrv_addrs)

    @property
    def brokers(self) -> dict[str, str]:
        """Broker name -> `127.0.0.1:listenPort`."""
        return {name: s.addr for name, s in self._brokers.items()}

    @property
    def proxy_addr(self) -> str | None:
        """The Proxy's remoting address, or None without a Proxy."""
        return self._proxy.addr if self._proxy else None

    @property
    def proxy_grpc_addr(self) -> str | None:
        """The Proxy's gRPC address, or None without a Proxy."""
        if self._proxy is None:
            return None
        return f"{LOOPBACK}:{self._proxy.extra_ports['grpc']}"

    @property
    def rocketmq_home(self) -> Path:
        """The directory passed as rocketmq.home.dir / ROCKETMQ_HOME (conf/ goes below it)."""
        return self.dir / "home"

    @property
    def state_file(self) -> Path:
        """The JSON state file `up` writes and `down`/`status` read."""
        return self.dir / STATE_FILE

    def broker_ports(self, name: str) -> dict[str, int]:
        """The ports of one broker: listen, vip (listen-2) and ha (listen+1)."""
        s = self._brokers[name]
        return {"listen": s.port, **s.extra_ports}

    def log_file(self, name: str) -> Path:
        """The logback file of a server (`namesrv-0`, `broker-a`, `proxy`)."""
        return self.dir / "logs" / f"{name}.log"

    def out_file(self, name: str) -> Path:
        """The stdout/stderr file of a server."""
        return self.dir / "logs" / f"{name}.out"

    def pids(self) -> dict[str, int]:
        """Server name -> pid, for the servers that were launched."""
        return {s.name: s.pid for s in self._servers() if s.pid is not None}

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self) -> DevCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start / stop --------------------------------------------------------------------------

    def start(self) -> DevCluster:
        """Start every server and return once all are ready (within `timeout` seconds)."""
        if self._started:
            return self
        self._java = find_java()
        _ = self.lib_dir
        self._check_dir_free()
        deadline = time.monotonic() + self.timeout
        for sub in ("home", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._started = True
        if not self.detach:
            _LIVE.add(self)
        try:
            self._namesrvs = [
                _Server("namesrv", f"namesrv-{i}", _pick_port()) for i in range(self._want_namesrvs)
            ]
            self._start_group(self._namesrvs, deadline)
            self._brokers = {}
            for i in range(self._want_brokers):
                name = _broker_name(i)
                p = _pick_port((-2, 0, 1))
                self._brokers[name] = _Server("broker", name, p, {"vip": p - 2, "ha": p + 1})
            self._start_group(list(self._brokers.values()), deadline)
            if self._want_proxy:
                self._proxy = _Server("proxy", "proxy", _pick_port(), {"grpc": _pick_port()})
                self._start_group([self._proxy], deadline)
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop everything (SIGTERM proxy, brokers, name servers in turn; SIGKILL at deadline)."""
        grace = self.stop_timeout if timeout is None else timeout
        errors: list[str] = []
        groups: list[list[_Server]] = [
            [self._proxy] if self._proxy else [],
            list(self._brokers.values()),
            list(self._namesrvs),
        ]
        for group in groups:
            errors += self._terminate(group, grace)
        _LIVE.discard(self)
        self._started = False
        if self._owns_dir and not self._keep_dir and self._dir is not None and not errors:
            shutil.rmtree(self._dir, ignore_errors=True)
        elif self._dir is not None and self.state_file.exists():
            self._write_state()
        if errors:
            raise DevClusterError("; ".join(errors))

    def stop_broker(self, name: str, *, kill: bool = False, wait_unregistered: bool = True) -> None:
        """Stop one broker (SIGTERM; SIGKILL if kill) and wait until it is deregistered."""
        self._stop_one(self._brokers[name], kill)
        if wait_unregistered:
            deadline = time.monotonic() + self.timeout
            while True:
                known = [ns for ns in self.namesrv_addrs if name in self._registered_on(ns)]
                if not known:
                    break
                if time.monotonic() > deadline:
                    raise DevClusterError(
                        f"{name} still registered on {', '.join(known)} after {self.timeout:g} s"
                    )
                time.sleep(2 * _POLL)
        self._write_state()

    def start_broker(self, name: str) -> None:
        """Start a stopped broker again with the same ports and store; wait until registered."""
        self._restart_one(self._brokers[name])

    def stop_namesrv(self, index: int = 0, *, kill: bool = False) -> None:
        """Stop one name server (SIGTERM; SIGKILL if kill). Brokers keep running."""
        self._stop_one(self._namesrvs[index], kill)
        self._write_state()

    def start_namesrv(self, index: int = 0) -> None:
        """Start a stopped name server again on its port, empty (brokers register with it at
        their next heartbeat, every 30 s); waits until it accepts connections."""
        self._restart_one(self._namesrvs[index])

    def _stop_one(self, srv: _Server, kill: bool) -> None:
        if kill and srv.pid is not None and self._alive(srv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(srv.pid, signal.SIGKILL)
        errors = self._terminate([srv], self.stop_timeout)
        if errors:
            raise DevClusterError("; ".join(errors))

    def _restart_one(self, srv: _Server) -> None:
        """Starts a stopped server again on its ports; waits until it is ready."""
        if self._alive(srv):
            raise DevClusterError(f"{srv.name} is already running (pid {srv.pid})")
        srv.boot_seconds = None
        self._start_group([srv], time.monotonic() + self.timeout, retry_ports=False)
        self._write_state()

    def mqadmin(
        self, args: Sequence[str], *, timeout: float = 120.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run mqadmin against this cluster's name servers (ROCKETMQ_HOME is the cluster's)."""
        return run_mqadmin(
            args,
            self.namesrv_addr,
            timeout=timeout,
            rocketmq_home=self.rocketmq_home,
            check=check,
        )

    def status(self) -> list[dict[str, Any]]:
        """One dict per server: role, name, pid, alive, addr, ports, rss_kib, boot_seconds."""
        rows: list[dict[str, Any]] = []
        for s in self._servers():
            alive = self._alive(s)
            rows.append(
                {
                    "role": s.role,
                    "name": s.name,
                    "pid": s.pid,
                    "alive": alive,
                    "addr": s.addr,
                    "ports": {"main": s.port, **s.extra_ports},
                    "rss_kib": _rss_kib(s.pid) if alive and s.pid else None,
                    "boot_seconds": s.boot_seconds,
                }
            )
        return rows

    @classmethod
    def from_state(cls, dir: str | os.PathLike[str]) -> DevCluster:
        """Attach to a cluster that `up` started in dir (for `down` and `status`)."""
        path = Path(dir).expanduser().resolve()
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DevClusterError(
                f"no dev cluster state in {path} ({STATE_FILE} missing)"
            ) from None
        except (OSError, ValueError) as e:
            raise DevClusterError(f"cannot read {path / STATE_FILE}: {e}") from None
        props = state.get("props") or {}
        c = cls(
            namesrvs=max(1, len(state.get("namesrvs", []))),
            brokers=len(state.get("brokers", {})),
            proxy=bool(state.get("proxy")),
            dir=path,
            broker_props=props.get("broker"),
            broker_jvm_props=props.get("broker_jvm"),
            namesrv_props=props.get("namesrv"),
            proxy_props=props.get("proxy"),
            proxy_jvm_props=props.get("proxy_jvm"),
            cluster_name=state.get("cluster_name", CLUSTER_NAME),
            detach=True,
        )
        c._owns_dir = bool(state.get("owns_dir", False))
        c._keep_dir = not c._owns_dir
        lib = state.get("lib_dir")
        c._lib = Path(lib) if lib else None
        c._namesrvs = [_server_from_json(d) for d in state.get("namesrvs", [])]
        c._brokers = {d["name"]: _server_from_json(d) for d in state.get("brokers", {}).values()}
        c._proxy = _server_from_json(state["proxy"]) if state.get("proxy") else None
        c._started = any(c._alive(s) for s in c._servers())
        return c

    def set_keep_dir(self, keep: bool) -> None:
        """Whether stop() keeps a temporary DIR it created (it is removed by default)."""
        self._keep_dir = keep

    # -- internals -----------------------------------------------------------------------------

    def _servers(self) -> list[_Server]:
        out = list(self._namesrvs) + list(self._brokers.values())
        if self._proxy:
            out.append(self._proxy)
        return out

    def _marker(self) -> str:
        return f"-Drmqfast.devcluster.dir={self.dir}"

    def _check_dir_free(self) -> None:
        if self._dir is None or not self.state_file.exists():
            return
        try:
            other = DevCluster.from_state(self._dir)
        except DevClusterError:
            return
        live = [f"{s.name} pid {s.pid}" for s in other._servers() if other._alive(s)]
        if live:
            raise DevClusterError(
                f"a dev cluster is already running in {self._dir} ({', '.join(live)}); "
                f"stop it first: python -m rmqfast.devcluster down --dir {self._dir}"
            )

    def _alive(self, s: _Server) -> bool:
        if s.popen is not None:
            return s.popen.poll() is None
        if s.pid is None:
            return False
        return _pid_running(s.pid, self._marker())

    def _log(self, msg: str) -> None:
        if not self.quiet:
            print(f"rmqfast.devcluster: {msg}", file=sys.stderr, flush=True)

    def _registered_on(self, namesrv: str) -> dict[str, str]:
        try:
            return registered_brokers(namesrv, timeout=2.0)
        except (OSError, ValueError, DevClusterError):
            return {}

    def _write_conf(self, s: _Server) -> list[str]:
        """Write the server's config file; return the program arguments pointing at it."""
        home = self.dir / s.name
        home.mkdir(parents=True, exist_ok=True)
        if s.role == "namesrv":
            props: dict[str, object] = {"listenPort": s.port, **self.namesrv_props}
            conf = home / "namesrv.properties"
            conf.write_text(_properties(props), encoding="utf-8")
            return ["-c", str(conf)]
        if s.role == "broker":
            store = home / "store"
            store.mkdir(exist_ok=True)
            props = {
                "brokerClusterName": self.cluster_name,
                "brokerName": s.name,
                "brokerId": 0,
                "brokerRole": "ASYNC_MASTER",
                "flushDiskType": "ASYNC_FLUSH",
                "namesrvAddr": self.namesrv_addr,
                "brokerIP1": LOOPBACK,
                # The HA address a slave would use; defaults to the NIC's IP otherwise.
                "brokerIP2": LOOPBACK,
                "listenPort": s.port,
                "storePathRootDir": store,
                "mappedFileSizeCommitLog": 64 * 1024 * 1024,
                "maxHashSlotNum": 20000,
                "maxIndexNum": 80000,
                "diskMaxUsedSpaceRatio": 95,
                "traceTopicEnable": False,
                "timerWheelEnable": True,
                "autoCreateTopicEnable": True,
                "autoCreateSubscriptionGroup": True,
                "enablePropertyFilter": True,
                **self.broker_props,
            }
            conf = home / "broker.conf"
            conf.write_text(_properties(props), encoding="utf-8")
            return ["-c", str(conf)]
        cfg: dict[str, object] = {
            "rocketMQClusterName": self.cluster_name,
            "namesrvAddr": self.namesrv_addr,
            "proxyMode": "cluster",
            "remotingListenPort": s.port,
            "grpcServerPort": s.extra_ports["grpc"],
            "localServeAddr": LOOPBACK,
            "remotingAccessAddr": LOOPBACK,
            **self.proxy_props,
        }
        conf = home / "rmq-proxy.json"
        conf.write_text(json.dumps(cfg, indent=2, default=str) + "\n", encoding="utf-8")
        return ["-pc", str(conf), "-pm", "cluster"]

    def _command(self, s: _Server) -> list[str]:
        args = self._write_conf(s)
        if s.role == "namesrv":
            main, heap, jprops = NAMESRV_MAIN, NAMESRV_HEAP, {}
        elif s.role == "broker":
            main, heap, jprops = BROKER_MAIN, BROKER_HEAP, self.broker_jvm_props
        else:
            main, heap, jprops = PROXY_MAIN, PROXY_HEAP, self.proxy_jvm_props
        tmp = self.dir / s.name / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        # java.io.tmpdir gets netty's native libraries and the self-signed TLS key/cert pair that
        # brokers and the Proxy create at every start; keep them out of /tmp.
        props: dict[str, object] = {
            "rmqfast.devcluster.dir": self.dir,
            "java.io.tmpdir": tmp,
            **jprops,
        }
        return java_command(
            main,
            args,
            heap=heap,
            jvm_props=props,
            log_file=self.log_file(s.name),
            rocketmq_home=self.rocketmq_home,
            user_home=self.dir / s.name,
            lib_dir=self.lib_dir,
            java=self._java or find_java(),
        )

    def _launch(self, s: _Server) -> None:
        cmd = self._command(s)
        env = dict(os.environ)
        env["ROCKETMQ_HOME"] = str(self.rocketmq_home)
        env.pop("NAMESRV_ADDR", None)
        out = self.out_file(s.name)
        with out.open("ab") as f:
            f.write(f"\n=== rmqfast.devcluster launch {time.ctime()}: {cmd!r}\n".encode())
            f.flush()
            s.popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.dir / s.name,
                env=env,
                start_new_session=True,
                preexec_fn=None if self.detach else _pdeathsig_preexec(),
            )
        s.pid = s.popen.pid
        s.launched_at = time.monotonic()
        self._write_state()

    def _out_since_launch(self, s: _Server) -> str:
        try:
            text = self.out_file(s.name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text.rpartition("=== rmqfast.devcluster launch ")[2]

    def _is_ready(self, s: _Server, registered: Mapping[str, Mapping[str, str]]) -> bool:
        if s.role == "broker":
            # Every name server must know it (an empty answer set must not count as "all").
            known = [registered.get(ns, {}).get(s.name) for ns in self.namesrv_addrs]
            # Only the main port is probed: a connection to the HA port looks like a slave to
            # the broker and makes it log errors; VIP and HA are bound before registration.
            return all(addr == s.addr for addr in known) and _accepting(s.port)
        line = NAMESRV_READY if s.role == "namesrv" else PROXY_READY
        return line in self._out_since_launch(s) and all(
            _accepting(p) for p in [s.port, *s.extra_ports.values()]
        )

    def _booted(self, s: _Server) -> bool:
        return BROKER_READY in self._out_since_launch(s)

    def _failure(self, s: _Server, what: str) -> DevClusterError:
        parts = [f"{s.name} {what}"]
        for path in (self.out_file(s.name), self.log_file(s.name)):
            tail = _tail(path)
            if tail.strip():
                parts.append(f"--- last lines of {path}:\n{tail}")
        return DevClusterError("\n".join(parts))

    def _start_group(
        self, group: list[_Server], deadline: float, *, retry_ports: bool = True
    ) -> None:
        for s in group:
            self._launch(s)
        attempts = dict.fromkeys((s.name for s in group), 0)
        pending = list(group)
        while pending:
            registered: dict[str, dict[str, str]] = {}
            # A broker prints its boot line only after registering; asking the name servers
            # before that would just fill their logs with connection noise.
            if any(s.role == "broker" and self._booted(s) for s in pending):
                registered = {ns: self._registered_on(ns) for ns in self.namesrv_addrs}
            for s in list(pending):
                if s.popen is not None and s.popen.poll() is not None:
                    code = s.popen.returncode
                    out = self._out_since_launch(s)
                    if retry_ports and "Address already in use" in out and attempts[s.name] < 3:
                        # Another program took a port between our check and the JVM's bind.
                        attempts[s.name] += 1
                        self._repick_ports(s)
                        self._launch(s)
                        continue
                    raise self._failure(s, f"exited with code {code} during startup")
                if self._is_ready(s, registered):
                    s.boot_seconds = round(time.monotonic() - s.launched_at, 2)
                    self._log(f"{s.name} ready at {s.addr} in {s.boot_seconds:.1f} s")
                    pending.remove(s)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise self._failure(pending[0], f"not ready before the {self.timeout:g} s deadline")
            time.sleep(_POLL)
        self._write_state()

    def _repick_ports(self, s: _Server) -> None:
        if s.role == "broker":
            p = _pick_port((-2, 0, 1))
            s.port, s.extra_ports = p, {"vip": p - 2, "ha": p + 1}
        elif s.role == "proxy":
            s.port, s.extra_ports = _pick_port(), {"grpc": _pick_port()}
        else:
            s.port = _pick_port()

    def _terminate(self, group: list[_Server], grace: float) -> list[str]:
        live = [s for s in group if self._alive(s)]
        for s in live:
            if s.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(self._alive(s) for s in live) and time.monotonic() < deadline:
            time.sleep(_POLL)
        for s in live:
            if self._alive(s) and s.pid is not None:
                self._log(f"{s.name} (pid {s.pid}) ignored SIGTERM for {grace:g} s; SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.pid, signal.SIGKILL)
        errors: list[str] = []
        kill_deadline = time.monotonic() + 15.0
        for s in live:
            if s.popen is not None:
                try:
                    s.popen.wait(max(0.1, kill_deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    errors.append(f"{s.name} (pid {s.pid}) survived SIGKILL")
                continue
            while self._alive(s) and time.monotonic() < kill_deadline:
                time.sleep(_POLL)
            if self._alive(s):
                errors.append(f"{s.name} (pid {s.pid}) survived SIGKILL")
        for s in group:
            if not self._alive(s):
                s.popen = None
        return errors

    def _write_state(self) -> None:
        if self._dir is None or not self._dir.is_dir():
            return
        state = {
            "format": 1,
            "rocketmq_version": ROCKETMQ_VERSION,
            "dir": str(self.dir),
            "owns_dir": self._owns_dir,
            "cluster_name": self.cluster_name,
            "lib_dir": str(self._lib) if self._lib else None,
            "namesrv_addr": self.namesrv_addr,
            "namesrvs": [_server_to_json(s) for s in self._namesrvs],
            "brokers": {n: _server_to_json(s) for n, s in self._brokers.items()},
            "proxy": _server_to_json(self._proxy) if self._proxy else None,
            "proxy_addr": self.proxy_addr,
            # Kept so that a broker restarted through from_state() gets the same config.
            "props": {
                "broker": _str_props(self.broker_props),
                "broker_jvm": _str_props(self.broker_jvm_props),
                "namesrv": _str_props(self.namesrv_props),
                "proxy": {k: v for k, v in self.proxy_props.items() if _jsonable(v)},
                "proxy_jvm": _str_props(self.proxy_jvm_props),
            },
        }
        _write_atomic(self.state_file, json.dumps(state, indent=2) + "\n")


def _str_props(props: Mapping[str, object]) -> dict[str, str]:
    return {k: _prop_value(v) for k, v in props.items()}


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _properties(props: Mapping[str, object]) -> str:
    return "".join(f"{k}={_prop_value(v)}\n" for k, v in props.items())


def _server_to_json(s: _Server) -> dict[str, Any]:
    return {
        "role": s.role,
        "name": s.name,
        "addr": s.addr,
        "port": s.port,
        "extra_ports": dict(s.extra_ports),
        "pid": s.pid,
        "boot_seconds": s.boot_seconds,
    }


def _server_from_json(d: Mapping[str, Any]) -> _Server:
    return _Server(
        role=str(d["role"]),
        name=str(d["name"]),
        port=int(d["port"]),
        extra_ports={str(k): int(v) for k, v in (d.get("extra_ports") or {}).items()},
        pid=int(d["pid"]) if d.get("pid") is not None else None,
        boot_seconds=d.get("boot_seconds"),
    )


_LIVE: set[DevCluster] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    # Last resort for clusters the program forgot to stop; PDEATHSIG covers hard crashes.
    for cluster in list(_LIVE):
        with contextlib.suppress(Exception):
            cluster.stop(timeout=10.0)
