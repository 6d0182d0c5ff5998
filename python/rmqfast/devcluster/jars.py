"""The RocketMQ jars and the `java` command lines that run them.

`ensure_jars` fetches the jars that `pom.xml` next to this file names into $RMQFAST_CACHE or
~/.cache/rmqfast (Maven, once per pom); `java_command` builds a command line for any RocketMQ
main class; `run_mqadmin` runs mqadmin with them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .errors import DevClusterError

__all__ = [
    "JDK17_FLAGS",
    "LOGBACK_XML",
    "MQADMIN_HEAP",
    "MQADMIN_MAIN",
    "POM",
    "ROCKETMQ_VERSION",
    "cache_root",
    "ensure_jars",
    "find_java",
    "find_mvn",
    "java_classpath",
    "java_command",
    "run_mqadmin",
]

_PKG_DIR = Path(__file__).resolve().parent
POM = _PKG_DIR / "pom.xml"
LOGBACK_XML = _PKG_DIR / "logback.xml"

# RocketMQ 5.3.x builds on JDK 8; on 17 these are needed (apache/rocketmq#9887).
JDK17_FLAGS: tuple[str, ...] = (
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.nio=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.nio.ch=ALL-UNNAMED",
)

# mqadmin is short-lived: C1 only and a serial GC make it start noticeably faster.
MQADMIN_HEAP: tuple[str, ...] = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
)

MQADMIN_MAIN = "org.apache.rocketmq.tools.command.MQAdminStartup"

_LOG_TAIL_LINES = 20


def _pom_version() -> str:
    try:
        text = POM.read_text(encoding="utf-8")
    except OSError:
        return "5.3.3"
    m = re.search(r"<rocketmq\.version>\s*([^<\s]+)\s*</rocketmq\.version>", text)
    return m.group(1) if m else "5.3.3"


ROCKETMQ_VERSION = _pom_version()


def _find_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DevClusterError(f"{name} not found on PATH: {what}")
    return path


def find_java() -> str:
    """Return the path of `java` on PATH, or raise DevClusterError saying what to install."""
    return _find_tool(
        "java", "install a Java 17 JDK (Debian: apt-get install openjdk-17-jdk-headless)"
    )


def find_mvn() -> str:
    """Return the path of `mvn` on PATH, or raise DevClusterError saying what to install."""
    return _find_tool(
        "mvn", "install Maven 3.8+ to fetch the RocketMQ jars (Debian: apt-get install maven)"
    )


def cache_root() -> Path:
    """Return the rmqfast cache directory: $RMQFAST_CACHE or ~/.cache/rmqfast."""
    env = os.environ.get("RMQFAST_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "rmqfast"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    # Two test runs (or xdist workers) downloading into the same cache must not interleave.
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux/macOS
        yield
        return
    with path.open("a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_jars(quiet: bool = True) -> Path:
    """Return the directory holding the RocketMQ jars, fetching them with Maven the first time."""
    base = cache_root() / f"rocketmq-{ROCKETMQ_VERSION}"
    lib = base / "lib"
    marker = base / ".complete"
    pom_bytes = POM.read_bytes()
    # The marker carries the pom's hash, so editing the pom refreshes the cache.
    digest = hashlib.sha256(pom_bytes).hexdigest()

    def ready() -> bool:
        try:
            return lib.is_dir() and marker.read_text(encoding="utf-8").strip() == digest
        except OSError:
            return False

    if ready():
        return lib
    mvn = find_mvn()
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base / ".lock"):
        if ready():
            return lib
        # Leftovers of interrupted downloads; holding the lock, nobody else is writing them.
        for stale in base.glob("lib.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = base / f"lib.partial-{os.getpid()}"
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]
        if not quiet:
            print(
                f"rmqfast.devcluster: fetching RocketMQ {ROCKETMQ_VERSION} jars into {lib}",
                file=sys.stderr,
                flush=True,
            )
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if proc.returncode != 0 or not any(partial.glob("rocketmq-broker-*.jar")):
            shutil.rmtree(partial, ignore_errors=True)
            out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
            detail = "\n".join(out[-_LOG_TAIL_LINES:])
            raise DevClusterError(
                f"mvn dependency:copy-dependencies failed (exit {proc.returncode})"
                + (f":\n{detail}" if detail else "")
            )
        # The marker is written last: a half-finished copy never looks complete.
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        marker.write_text(digest + "\n", encoding="utf-8")
    return lib


def java_classpath(lib_dir: Path | None = None) -> str:
    """Return the `-cp` value for the RocketMQ jars (`<lib>/*`)."""
    return os.path.join(str(lib_dir or ensure_jars()), "*")


def _jvm_props(props: Mapping[str, object] | None) -> list[str]:
    return [f"-D{k}={_prop_value(v)}" for k, v in (props or {}).items()]


def _prop_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def java_command(
    main: str,
    args: Sequence[str] = (),
    *,
    heap: Sequence[str] = ("-Xms64m", "-Xmx256m"),
    jvm_props: Mapping[str, object] | None = None,
    log_file: Path | None = None,
    rocketmq_home: Path | None = None,
    user_home: Path | None = None,
    lib_dir: Path | None = None,
    java: str | None = None,
) -> list[str]:
    """Build a `java` command line for a RocketMQ main class with the JDK 17 flags and logging."""
    cmd = [java or find_java(), *heap, *JDK17_FLAGS, "-XX:+ExitOnOutOfMemoryError"]
    if rocketmq_home is not None:
        cmd.append(f"-Drocketmq.home.dir={rocketmq_home}")
    if user_home is not None:
        cmd.append(f"-Duser.home={user_home}")
    # The shaded logback reads rmq.logback.configurationFile; without it every JVM sharing one
    # lib/ would pick the Proxy's config from the classpath.
    cmd.append(f"-Drmq.logback.configurationFile={LOGBACK_XML}")
    if log_file is not None:
        cmd.append(f"-Drmqfast.log.file={log_file}")
    cmd += _jvm_props(jvm_props)
    cmd += ["-cp", java_classpath(lib_dir), main, *args]
    return cmd


def run_mqadmin(
    args: Sequence[str],
    namesrv: str | None = None,
    *,
    timeout: float = 120.0,
    jvm_props: Mapping[str, object] | None = None,
    rocketmq_home: Path | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `mqadmin <args>` (MQAdminStartup, small heap) and return its captured output."""
    work = cache_root() / "mqadmin"
    home = rocketmq_home or (work / "home")
    home.mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    props: dict[str, object] = {"java.io.tmpdir": work / "tmp"}
    env = dict(os.environ)
    env["ROCKETMQ_HOME"] = str(home)
    if namesrv:
        # The client reads this property when the subcommand has no -n.
        props["rocketmq.namesrv.addr"] = namesrv
        env["NAMESRV_ADDR"] = namesrv
    props.update(jvm_props or {})
    cmd = java_command(
        MQADMIN_MAIN,
        list(args),
        heap=MQADMIN_HEAP,
        jvm_props=props,
        log_file=work / "mqadmin.log",
        rocketmq_home=home,
        user_home=work,
    )
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise DevClusterError(f"mqadmin {' '.join(args)} timed out after {timeout:g} s") from e
    if check and proc.returncode != 0:
        raise DevClusterError(
            f"mqadmin {' '.join(args)} failed (exit {proc.returncode}): "
            f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
        )
    return proc
