"""Type stubs for the Rust extension `rmqfast._core` (checked by mypy.stubtest).

One section per binding file under rust/src/py/, in the order `_core` registers them.
"""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, Final, final

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_INFLATED",
    "FLAG_ONEWAY",
    "FLAG_RESPONSE",
    "BatchMessage",
    "ClusterInfo",
    "FrameDecoder",
    "FrameError",
    "MessageError",
    "MessageExt",
    "Producer",
    "ProducerError",
    "ProxyServer",
    "RemotingCommand",
    "RouteError",
    "SendResult",
    "TopicRouteData",
    "__version__",
    "check_proxy_config",
    "decode",
    "decode_batch",
    "decode_messages",
    "decode_properties",
    "encode_batch",
    "encode_properties",
    "json_dumps",
    "policy_rule_keys",
    "proxy_config_defaults",
    "proxy_restart_only_fields",
    "proxy_stat_names",
    "request_codes",
    "response_codes",
    "split_host_port",
    "view",
]

# --- rust/src/py/mod.rs ---

__version__: Final[str]
DEFAULT_MAX_FRAME_SIZE: Final[int]
FLAG_RESPONSE: Final[int]
"""RemotingCommand flag bit 0: the frame is a response."""
FLAG_ONEWAY: Final[int]
"""RemotingCommand flag bit 1: the request expects no response."""

class FrameError(ValueError):
    """An invalid remoting frame; `offset` is the byte where the problem was found."""

    offset: int

@final
class RemotingCommand:
    """A RocketMQ remoting request or response."""

    code: int
    opaque: int
    flag: int
    version: int
    remark: str | None
    def __new__(
        cls,
        code: int,
        ext_fields: dict[str, str | int | float | bool] | None = None,
        body: bytes | bytearray | str | None = None,
        opaque: int = 0,
        flag: int = 0,
        language: str = "PYTHON",
        version: int = 479,
        remark: str | None = None,
    ) -> RemotingCommand: ...
    @property
    def ext_fields(self) -> dict[str, str]: ...
    @ext_fields.setter
    def ext_fields(self, value: dict[str, str | int | float | bool]) -> None: ...
    @property
    def body(self) -> bytes: ...
    @body.setter
    def body(self, value: bytes | bytearray | str) -> None: ...
    @property
    def language(self) -> str: ...
    @language.setter
    def language(self, value: str) -> None: ...
    @property
    def serialize_type(self) -> str: ...
    @property
    def is_response(self) -> bool: ...
    @property
    def is_oneway(self) -> bool: ...
    def encode(self, serialize_type: str | None = None) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class FrameDecoder:
    """Splits a byte stream into commands; errors name the offset within the whole stream."""

    def __new__(cls, max_frame_size: int = 16777216) -> FrameDecoder: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    def feed(self, data: bytes) -> list[RemotingCommand]: ...

def decode(frame: bytes) -> RemotingCommand: ...
def view(
    frame: bytes,
) -> tuple[int, int, int, str, tuple[int, int], tuple[int, int]]: ...
def split_host_port(addr: str) -> tuple[str, int]: ...

# --- rust/src/py/json.rs ---

def json_dumps(obj: object, default: Callable[[Any], object] | None = None) -> bytes: ...

# --- rust/src/py/message.rs ---

DEFAULT_MAX_INFLATED: Final[int]

class MessageError(ValueError):
    """An invalid batch or stored-message body.

    `offset` is the byte at fault and `record` the start of its record (for encoding, both
    are the message's index).
    """

    offset: int
    record: int

class RouteError(ValueError):
    """Route JSON that does not parse; `offset` is the byte where parsing stopped, or None."""

    offset: int | None

@final
class BatchMessage:
    """One message of a SEND_BATCH_MESSAGE body: flag, body and properties."""

    def __new__(
        cls,
        body: bytes | bytearray | str,
        properties: dict[str, str] | None = None,
        flag: int = 0,
    ) -> BatchMessage: ...
    @property
    def body(self) -> bytes: ...
    @property
    def properties(self) -> dict[str, str]: ...
    @property
    def flag(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class MessageExt:
    """A stored message from a pull, pop or check-transaction body."""

    @property
    def topic(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def properties(self) -> dict[str, str]: ...
    @property
    def tags(self) -> str | None: ...
    @property
    def keys(self) -> str | None: ...
    @property
    def msg_id(self) -> str: ...
    @property
    def offset_msg_id(self) -> str: ...
    @property
    def uniq_key(self) -> str | None: ...
    @property
    def queue_id(self) -> int: ...
    @property
    def queue_offset(self) -> int: ...
    @property
    def commit_log_offset(self) -> int: ...
    @property
    def sys_flag(self) -> int: ...
    @property
    def flag(self) -> int: ...
    @property
    def born_timestamp(self) -> int: ...
    @property
    def born_host(self) -> str: ...
    @property
    def store_timestamp(self) -> int: ...
    @property
    def store_host(self) -> str: ...
    @property
    def reconsume_times(self) -> int: ...
    @property
    def prepared_transaction_offset(self) -> int: ...
    @property
    def body_crc(self) -> int: ...
    @property
    def store_size(self) -> int: ...
    @property
    def magic(self) -> int: ...

@final
class TopicRouteData:
    """The route of one topic (the GET_ROUTEINFO_BY_TOPIC body)."""

    @staticmethod
    def from_json(data: bytes | bytearray | str) -> TopicRouteData: ...
    def to_json(self) -> bytes: ...
    @property
    def queue_datas(self) -> list[dict[str, Any]]: ...
    @property
    def broker_datas(self) -> list[dict[str, Any]]: ...
    @property
    def order_topic_conf(self) -> str | None: ...
    def broker_addrs(self) -> dict[str, dict[int, str]]: ...
    def rewrite_broker_addrs(
        self, mapping: dict[str, str] | Callable[[str, int, str], str | None]
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class ClusterInfo:
    """Brokers and clusters (the GET_BROKER_CLUSTER_INFO body)."""

    @staticmethod
    def from_json(data: bytes | bytearray | str) -> ClusterInfo: ...
    def to_json(self) -> bytes: ...
    @property
    def broker_addr_table(self) -> dict[str, dict[str, Any]]: ...
    @property
    def cluster_addr_table(self) -> dict[str, list[str]]: ...
    def broker_addrs(self) -> dict[str, dict[int, str]]: ...
    def rewrite_broker_addrs(
        self, mapping: dict[str, str] | Callable[[str, int, str], str | None]
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

def encode_properties(properties: dict[str, str]) -> str: ...
def decode_properties(properties: str) -> dict[str, str]: ...
def encode_batch(
    messages: Iterable[BatchMessage | dict[str, Any] | bytes | bytearray],
) -> bytes: ...
def decode_batch(body: bytes) -> list[BatchMessage]: ...
def decode_messages(body: bytes, max_inflated: int = 67108864) -> list[MessageExt]: ...
def request_codes() -> list[tuple[str, int]]: ...
def response_codes() -> list[tuple[str, int]]: ...

# --- rust/src/py/producer.rs ---

class ProducerError(Exception):
    """A send or route lookup failed.

    `code` is the RocketMQ response code if a broker or name server answered, else None;
    `retryable` says whether Java's producer would retry it (codes 17, 14, 1, 2, 16, 204, 205,
    1500 from a broker, timeouts, connection errors).
    """

    code: int | None
    retryable: bool

@final
class SendResult:
    """Where a send request was stored (one per request; a batch request holds many messages)."""

    @property
    def msg_id(self) -> str: ...
    @property
    def offset_msg_id(self) -> str: ...
    @property
    def queue_id(self) -> int: ...
    @property
    def queue_offset(self) -> int: ...
    @property
    def broker_name(self) -> str: ...
    @property
    def topic(self) -> str: ...

@final
class Producer:
    """A RocketMQ producer; every send releases the GIL."""

    def __new__(
        cls,
        nameservers: list[str],
        producer_group: str = "rmqfast_producer",
        timeout: float = 3.0,
        use_tls: bool = False,
        tls_ca_file: str | None = None,
        tls_verify: bool = True,
        tls_server_name: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        retry_times: int = 2,
        route_refresh_interval: float = 30.0,
        max_message_size: int = 4194304,
        tls_insecure_skip_verify: bool | None = None,
        auto_create_topic: bool = False,
    ) -> Producer: ...
    def send(
        self,
        topic: str,
        body: bytes,
        keys: str | None = None,
        tags: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> SendResult: ...
    def send_batch(
        self, topic: str, messages: list[tuple[bytes, dict[str, str] | None]]
    ) -> list[SendResult]:
        """Send as SEND_BATCH_MESSAGE requests, each body within max_message_size.

        Returns one SendResult per request sent (not per message); its msg_id and
        offset_msg_id hold the ids of the request's messages joined by commas.
        """
    def send_async(
        self,
        topic: str,
        body: bytes,
        keys: str | None = None,
        tags: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Awaitable[SendResult]: ...
    def send_batch_async(
        self, topic: str, messages: list[tuple[bytes, dict[str, str] | None]]
    ) -> Awaitable[list[SendResult]]: ...
    def route(self, topic: str) -> dict[str, Any]:
        """The cached route (looked up first if need be), with `write_queues`, `stale`,
        `fetched_at` and `from_default_topic` (TBW102's route, for auto_create_topic)."""
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...

# --- rust/src/py/proxy.rs ---

@final
class ProxyServer:
    """The proxy's Rust data path; `rmqfast.proxy.Proxy` wraps it."""

    def __new__(cls, config_json: str) -> ProxyServer: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    @property
    def running(self) -> bool: ...
    @property
    def namesrv_addr(self) -> str: ...
    def broker_listeners(self) -> list[tuple[str, str]]: ...
    def open_broker(self, real_addr: str) -> str: ...
    def access_log_take(self, timeout: float = 0.0) -> bytes: ...
    def access_log_lost(self, lines: int) -> None: ...
    def reload(self, config_json: str) -> list[str]: ...
    def note_reload_failure(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...

def proxy_stat_names() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]: ...
def proxy_config_defaults() -> dict[str, Any]: ...
def policy_rule_keys() -> list[str]: ...
def proxy_restart_only_fields() -> list[str]: ...
def check_proxy_config(config_json: str) -> None: ...
