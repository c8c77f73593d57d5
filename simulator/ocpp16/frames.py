"""The WebSocket frames of the hot path: the masked text frame a charge point sends (and
its keepalive ping, and its pong to the CSMS's), and the server's unmasked text frames it
reads (the answers to its calls).

websockets builds a frame through its Sans-I/O protocol (a Frame object, a BytesIO, and
`secrets.token_bytes(4)`, one getrandom system call per frame). A client's unfragmented,
uncompressed text frame is a two-to-ten byte header, a four byte masking key and the
masked payload (RFC 6455, 5.2): built here directly, with websockets' own C masking
routine and masking keys cut from a buffer of operating-system randomness (they must be
unpredictable, RFC 6455 5.3, not unique). The connection uses it only when websockets
itself would produce exactly this frame (open, no fragmented message in progress, no
extension negotiated).

Reading, websockets runs a generator-based parser per frame (a StreamReader, a Frame, an
event list) before the frame reaches the connection; `take_text_frames` reads the plain
text frames at the start of a chunk directly, for the connection to use only while
websockets' parser waits between frames.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

_FIN_TEXT = 0x81
_FIN_PING = 0x89
_FIN_PONG = 0x8A
_MASKED = 0x80
_POOL_BYTES = 4096
# Header and masking key in one `pack` (RFC 6455 5.2), by the payload length's form.
_SHORT = struct.Struct("!BB4s").pack  # length < 126: in the second byte
_MEDIUM = struct.Struct("!BBH4s").pack  # length < 65536: 126, then 16 bits
_LONG = struct.Struct("!BBQ4s").pack  # else 127, then 64 bits
# A pool cut into its four-byte keys in one C call (a comprehension's slices cost more per key).
_CUT_POOL = struct.Struct("4s" * (_POOL_BYTES // 4)).unpack


class _MaskKeys:
    """Four-byte masking keys from os.urandom, fetched 4 KiB at a time and cut into keys
    at once: taking one is a `list.pop`, no Python call."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        # The next key, or IndexError when the pool is used up (then `refill`).
        self.pop = self._keys.pop

    def refill(self) -> None:
        self._keys[:] = _CUT_POOL(os.urandom(_POOL_BYTES))

    def next(self) -> bytes:
        try:
            return self.pop()
        except IndexError:
            self.refill()
            return self.pop()


_keys = _MaskKeys()
_next_key = _keys.pop
# A forked child draws its own keys, never the rest of its parent's pool.
os.register_at_fork(after_in_child=_keys._keys.clear)


def client_text_frame(payload: bytes) -> bytes:
    """A complete, masked text frame carrying `payload` (UTF-8 text)."""
    try:
        key = _next_key()  # `_keys.next()` without its call
    except IndexError:
        key = _keys.next()
    length = len(payload)
    if length < 126:
        head = _SHORT(_FIN_TEXT, _MASKED | length, key)
    elif length < 65536:
        head = _MEDIUM(_FIN_TEXT, _MASKED | 126, length, key)
    else:
        head = _LONG(_FIN_TEXT, _MASKED | 127, length, key)
    return head + apply_mask(payload, key)


def ping_payload() -> bytes:
    """Four unpredictable bytes for a ping's payload (websockets' own choice of size)."""
    try:
        return _next_key()
    except IndexError:
        return _keys.next()


def client_ping_frame(payload: bytes) -> bytes:
    """A complete, masked ping frame carrying `payload` (at most 125 bytes, RFC 6455 5.5)."""
    return _control_frame(_FIN_PING, payload)


def client_pong_frame(payload: bytes) -> bytes:
    """The masked pong answering a ping that carried `payload` (RFC 6455 5.5.3)."""
    return _control_frame(_FIN_PONG, payload)


def _control_frame(first: int, payload: bytes) -> bytes:
    if len(payload) > 125:
        raise ValueError("a control frame carries at most 125 bytes")
    key = ping_payload()  # a masking key, drawn as a payload is
    return _SHORT(first, _MASKED | len(payload), key) + apply_mask(payload, key)


def take_text_frames(data: bytes, sink: Callable[[bytes], bool], max_size: int | None) -> int:
    """Hand the complete server text frames at the start of `data` to `sink`, up to the
    first one it does not take; the number of bytes taken.

    Only what websockets' parser would turn into exactly such a frame: FIN set, no RSV bit,
    opcode text, unmasked (a server's frames are), a length below 65536 within `max_size`.
    Anything else (a control frame, a fragment, a masked or oversized frame, a frame cut
    off at the end of `data`) stops here and is left to websockets, with all that follows.
    """
    at, end = 0, len(data)
    while end - at >= 2:
        length = data[at + 1]
        if data[at] != _FIN_TEXT or length > 126:  # 127: a 64-bit length; 128+: masked
            break
        if length == 126:
            if end - at < 4:
                break
            length = (data[at + 2] << 8) | data[at + 3]
            start = at + 4
        else:
            start = at + 2
        stop = start + length
        if stop > end or (max_size is not None and length > max_size):
            break
        if not sink(data[start:stop]):
            break
        at = stop
    return at
