"""Type stubs for the Rust extension `rmqfast._core` (checked by mypy.stubtest)."""

from typing import Final

__version__: Final[str]
DEFAULT_MAX_FRAME_SIZE: Final[int]

class FrameError(ValueError):
    """An invalid remoting frame; `offset` is the byte where the problem was found."""

    offset: int

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
    def __eq__(self, other: object) -> bool: ...

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
