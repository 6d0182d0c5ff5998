"""The proxy's access log without a RocketMQ: the file sink's rotation and reopen, the config's
errors, and lines written for requests through an in-process proxy in front of fakes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from rmqfast.codec import RemotingCommand, RequestCode, ResponseCode
from rmqfast.devcluster.remoting import RemotingClient
from rmqfast.proxy import ConfigError, Proxy, from_mapping
from rmqfast.proxy.access_log import FileSink

from .fakes import FakeServer, name_server, wait_until


def line(n: int, width: int = 100) -> bytes:
    """One access-log-like line of exactly `width` bytes, newline included."""
    head = f'{{"n":{n},"pad":"'.encode()
    return head + b"x" * (width - len(head) - 3) + b'"}\n'


def test_the_file_rotates_between_lines_and_keeps_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = FileSink(path, max_bytes=1000, backups=2)
    # 25 lines of 100 bytes, in batches of 7 that straddle the limit.
    lines = [line(i) for i in range(25)]
    for i in range(0, 25, 7):
        sink.write(b"".join(lines[i : i + 7]))
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["access.log", "access.log.1", "access.log.2"]
    # Newest in access.log: lines 20-24; .1 holds 10-19, .2 holds 0-9; the oldest beyond
    # two backups are gone.
    assert path.read_bytes() == b"".join(lines[20:])
    assert (tmp_path / "access.log.1").read_bytes() == b"".join(lines[10:20])
    assert (tmp_path / "access.log.2").read_bytes() == b"".join(lines[0:10])
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 1000
        assert all(json.loads(text) for text in p.read_text().splitlines())


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    sink = FileSink(path, max_bytes=4096, backups=3)
    big = line(1, 5000)
    sink.write(line(0) + big + line(2))
    sink.close()
    assert (tmp_path / "a.log.2").read_bytes() == line(0)
    assert (tmp_path / "a.log.1").read_bytes() == big
    assert path.read_bytes() == line(2)


def test_no_backups_starts_over_and_zero_max_bytes_never_rotates(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "a.log", max_bytes=4096, backups=0)
    for i in range(100):
        sink.write(line(i))
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]
    assert (tmp_path / "a.log").stat().st_size == 20 * 100  # 40 lines a file: 40, 40, 20
    sink = FileSink(tmp_path / "b.log", max_bytes=0, backups=2)
    sink.write(b"".join(line(i) for i in range(100)))
    sink.close()
    assert (tmp_path / "b.log").stat().st_size == 100 * 100
    assert not (tmp_path / "b.log.1").exists()


def test_reopen_starts_a_new_file_after_logrotate_moved_it(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = FileSink(path, max_bytes=1 << 20, backups=1)
    sink.write(line(0))
    path.rename(tmp_path / "moved.log")
    sink.write(line(1))  # still the moved file until reopened
    sink.reopen()
    sink.write(line(2))
    sink.close()
    assert (tmp_path / "moved.log").read_bytes() == line(0) + line(1)
    assert path.read_bytes() == line(2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"access_log": "syslog"}, 'access_log: expected stdout, file or rocketmq, got "syslog"'),
        ({"access_log": "file"}, 'access_log_file: expected a file path with access_log = "file"'),
        (
            {"access_log": "file", "access_log_file": "/nonexistent/dir/access.log"},
            "access_log_file: directory '/nonexistent/dir' does not exist",
        ),
        (
            {"access_log": "rocketmq"},
            'access_log_topic: expected a topic with access_log = "rocketmq"',
        ),
        ({"access_log": "rocketmq", "access_log_topic": "a b"}, "access_log_topic: expected a"),
        (
            {"access_log": "rocketmq", "access_log_topic": "t", "access_log_namesrv": "x"},
            "access_log_namesrv: expected",
        ),
        ({"access_log_sample": 0}, "access_log_sample: expected an integer from 1 to"),
        ({"access_log_buffer_bytes": 10}, "access_log_buffer_bytes: expected an integer"),
        ({"access_log_max_bytes": 100}, "access_log_max_bytes: expected 0 (never rotate)"),
        ({"access_log_backups": -1}, "access_log_backups: expected a non-negative integer"),
        ({"access_log_sample": "2"}, "access_log_sample: expected an integer"),
    ],
)
def test_access_log_errors_name_the_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_mapping({"namesrv": "127.0.0.1:9876", **settings}).validate()
    assert message in str(e.value)


def test_the_flags_set_the_access_log_and_off_turns_it_off(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rmqfast.proxy",
            "--namesrv=127.0.0.1:9876",
            "--access-log=file",
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "access_log_file: expected a file path" in r.stderr, r.stderr
    from rmqfast.proxy.__main__ import build_parser, resolve_config

    path = str(tmp_path / "a.log")
    args = ["--namesrv", "127.0.0.1:9876", "--access-log", "file", "--access-log-file", path]
    args += ["--access-log-sample", "10", "--access-log-backups", "2"]
    cfg = resolve_config(build_parser().parse_args(args))
    assert (cfg.access_log, cfg.access_log_file, cfg.access_log_sample) == ("file", path, 10)
    assert cfg.access_log_backups == 2
    cfg = resolve_config(build_parser().parse_args([*args, "--access-log", "off"]))
    assert cfg.access_log is None
    assert "access_log_file" not in json.loads(cfg.to_core_json())


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def test_requests_through_the_proxy_are_logged_one_line_each(tmp_path: Path) -> None:
    """Route lookups and sends through an in-process proxy in front of fakes: one line per
    request, with topic, group, queue and how it ended; after stop() every line is written."""

    def broker(_conn: object, req: RemotingCommand) -> RemotingCommand | None:
        if req.code == RequestCode.SEND_MESSAGE_V2:
            return RemotingCommand(ResponseCode.SUCCESS, {"msgId": "m", "queueId": "1"})
        return RemotingCommand(ResponseCode.SYSTEM_ERROR, remark="not here")

    path = tmp_path / "access.log"
    with FakeServer(broker) as b, FakeServer(name_server({"broker-a": b.addr})) as ns:
        cfg = {
            "namesrv": ns.addr,
            "listen": "127.0.0.1:0",
            "admin": None,
            "access_log": "file",
            "access_log_file": str(path),
        }
        proxy = Proxy(cfg).start()
        namesrv_addr = proxy.namesrv_addr
        try:
            with RemotingClient(proxy.namesrv_addr) as c:
                assert c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}).code == 0
            port = proxy.broker_listeners()[b.addr]
            fields = {"a": "pg", "b": "T1", "e": "3"}
            with RemotingClient(port) as c:
                for _ in range(3):
                    assert c.request(RequestCode.SEND_MESSAGE_V2, fields, b"hello").code == 0
                assert c.request(RequestCode.QUERY_CONSUMER_OFFSET, {"topic": "T1"}).code == 1
                c.oneway(RequestCode.SEND_MESSAGE_V2, fields, b"bye")
                wait_until(lambda: len(b.requests) == 5, 10, "the oneway send at the broker")
            # The writer thread gets the lines out while the proxy runs.
            wait_until(lambda: path.exists() and len(read_lines(path)) == 6, 10, "six lines")
        finally:
            proxy.stop()
    lines = read_lines(path)
    assert proxy.stats()["access_log_lines"] == 6
    route, *sends, query, oneway = lines
    assert (route["request"], route["topic"], route["broker"]) == (
        "GET_ROUTEINFO_BY_TOPIC",
        "T1",
        None,
    )
    assert route["listener"] == namesrv_addr
    for s in sends:
        assert (s["request"], s["topic"], s["group"], s["queue"]) == (
            "SEND_MESSAGE_V2",
            "T1",
            "pg",
            3,
        )
        assert (s["response_code"], s["local_reply"], s["oneway"]) == (0, None, False)
        assert s["broker"] == b.addr and s["listener"] == port
        assert s["bytes_in"] > 5 and s["bytes_out"] > 0 and s["latency_ms"] >= 0
    assert (query["request"], query["response_code"]) == ("QUERY_CONSUMER_OFFSET", 1)
    assert (oneway["oneway"], oneway["response_code"], oneway["latency_ms"]) == (True, None, None)
    assert len({s["opaque"] for s in sends}) == 3
    assert all(s["client"].startswith("127.0.0.1:") for s in lines)


def test_the_destination_can_be_swapped_while_running(tmp_path: Path) -> None:
    """reconfigure() with a new file: lines from then on go there; the old file is closed."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    base = {"namesrv": "127.0.0.1:1", "listen": "127.0.0.1:0", "admin": None}
    cfg = from_mapping({**base, "access_log": "file", "access_log_file": str(first)})
    with Proxy(cfg) as proxy, RemotingClient(proxy.namesrv_addr) as c:
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "before"})
        wait_until(lambda: first.exists() and first.stat().st_size > 0, 10, "the first line")
        proxy.access_log.reconfigure(
            from_mapping({**base, "access_log": "file", "access_log_file": str(second)})
        )
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "after"})
        wait_until(lambda: second.exists() and second.stat().st_size > 0, 10, "the second line")
    assert [x["topic"] for x in read_lines(first)] == ["before"]
    assert [x["topic"] for x in read_lines(second)] == ["after"]
    assert [x["local_reply"] for x in read_lines(second)] == ["unavailable"]


def test_off_by_default_logs_nothing_and_starts_no_thread() -> None:
    cfg = {"namesrv": "127.0.0.1:1", "listen": "127.0.0.1:0", "admin": None}
    with Proxy(cfg) as proxy, RemotingClient(proxy.namesrv_addr) as c:
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"})
        assert proxy.access_log.sink is None
        assert proxy.stats()["access_log_lines"] == 0


def test_a_reload_turns_the_access_log_on_and_reopens_its_file(tmp_path: Path) -> None:
    """Off at start; a reload turns it on (the data path and the writer), and the next reload
    with the same settings reopens the file (logrotate's postrotate: SIGHUP)."""
    path = tmp_path / "access.log"
    base = {"namesrv": "127.0.0.1:1", "listen": "127.0.0.1:0", "admin": None}
    on = {**base, "access_log": "file", "access_log_file": str(path)}
    with Proxy(base) as proxy, RemotingClient(proxy.namesrv_addr) as c:
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "off"})
        proxy.reload(on)
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "on"})
        wait_until(lambda: path.exists() and path.stat().st_size > 0, 10, "the first line")
        path.rename(tmp_path / "access.log.rotated")
        proxy.reload(on)
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "reopened"})
        wait_until(lambda: path.exists() and path.stat().st_size > 0, 10, "the reopened file")
        proxy.reload(base)
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "off again"})
        assert proxy.access_log.sink is None
    assert [x["topic"] for x in read_lines(tmp_path / "access.log.rotated")] == ["on"]
    assert [x["topic"] for x in read_lines(path)] == ["reopened"]


def test_lines_a_failing_destination_loses_are_counted() -> None:
    """A file the lines cannot be written to (/dev/full: every write fails with ENOSPC): the
    proxy goes on relaying and counts each lost line in `access_log_lost` and /metrics."""
    cfg = {
        "namesrv": "127.0.0.1:1",
        "listen": "127.0.0.1:0",
        "admin": None,
        "access_log": "file",
        "access_log_file": "/dev/full",
    }
    with Proxy(cfg) as proxy, RemotingClient(proxy.namesrv_addr) as c:
        for topic in ("a", "b", "c"):
            reply = c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
            assert reply.code == ResponseCode.SYSTEM_ERROR  # no name server: a local reply
        wait_until(lambda: proxy.stats()["access_log_lost"] == 3, 10, "three lost lines")
        assert proxy.stats()["access_log_lines"] == 3
        assert "\nrmqfast_proxy_access_log_lost_total 3\n" in proxy.prometheus()


def test_a_destination_that_cannot_be_opened_is_a_config_error_at_start_and_at_reload(
    tmp_path: Path,
) -> None:
    """A file path that is a directory passes validate() but cannot be opened: start refuses
    with the field named; a reload to it is rejected whole (counted) and the log stays as it
    was."""
    blocked = tmp_path / "a-directory"
    blocked.mkdir()
    good = tmp_path / "access.log"
    base = {"namesrv": "127.0.0.1:1", "listen": "127.0.0.1:0", "admin": None}
    bad = {**base, "access_log": "file", "access_log_file": str(blocked)}
    with pytest.raises(ConfigError, match=r"access_log_file: cannot open .*a-directory"):
        Proxy(bad).start()
    on = {**base, "access_log": "file", "access_log_file": str(good)}
    with Proxy(on) as proxy, RemotingClient(proxy.namesrv_addr) as c:
        with pytest.raises(ConfigError, match="access_log_file: cannot open"):
            proxy.reload(bad)
        assert proxy.stats()["config_reload_failures"] == 1
        assert proxy.config.access_log_file == str(good)
        c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "after"})
        wait_until(lambda: good.exists() and good.stat().st_size > 0, 10, "a line in the file")
    assert [x["topic"] for x in read_lines(good)] == ["after"]


def test_the_file_survives_being_deleted_before_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = FileSink(path, max_bytes=4096, backups=2)
    sink.write(b"".join(line(i) for i in range(30)))
    path.unlink()  # removed by hand: the next rotation has nothing to move
    sink.write(b"".join(line(i) for i in range(30, 60)))
    sink.write(line(60))
    sink.close()
    assert read_lines(path)[-1]["n"] == 60


def test_a_reload_racing_the_admin_readiness_check_does_not_deadlock() -> None:
    """Reloads on one thread while another keeps asking `running` (as GET /ready does): the
    server's lock must never be held while waiting for the GIL."""
    base = {"namesrv": "127.0.0.1:1", "listen": "127.0.0.1:0", "admin": None}
    with Proxy(base) as proxy:
        stop = threading.Event()
        checks = [0]

        def ask() -> None:
            while not stop.is_set():
                assert proxy.running
                checks[0] += 1

        t = threading.Thread(target=ask, daemon=True)
        t.start()
        done = threading.Event()

        def reload_many() -> None:
            for i in range(50):
                proxy.reload({**base, "request_timeout_ms": 3000 + i})
            done.set()

        threading.Thread(target=reload_many, daemon=True).start()
        assert done.wait(60), "the reloads did not finish: deadlocked"
        stop.set()
        t.join(10)
        assert checks[0] > 0
        assert proxy.stats()["config_reloads"] == 50


def test_a_take_with_a_nan_or_negative_wait_does_not_panic() -> None:
    base = {"namesrv": "127.0.0.1:1", "listen": "127.0.0.1:0", "admin": None}
    with Proxy(base) as proxy:
        assert proxy._server.access_log_take(float("nan")) == b""
        assert proxy._server.access_log_take(-1.0) == b""
