"""The one WebSocket frame a charge point sends on its hot path: a masked text frame.

websockets builds a frame through its Sans-I/O protocol (a Frame object, a BytesIO, and
`secrets.token_bytes(4)`, one getrandom system call per frame). A client's unfragmented,
uncompressed text frame is a two-to-ten byte header, a four byte masking key and the
masked payload (RFC 6455, 5.2): built here directly, with websockets' own C masking
routine and masking keys cut from a buffer of operating-system randomness (they must be
unpredictable, RFC 6455 5.3, not unique). The connection uses it only when websockets
itself would produce exactly this frame (open, no fragmented message in progress, no
extension negotiated).
"""

from __future__ import annotations

import os
import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

_FIN_TEXT = 0x81
_MASKED = 0x80
_POOL_BYTES = 4096


class _MaskKeys:
    """Four-byte masking keys from os.urandom, fetched 4 KiB at a time."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def next(self) -> bytes:
        at = self._at
        if at + 4 > len(self._pool):
            self._pool = os.urandom(_POOL_BYTES)
            at = 0
        self._at = at + 4
        return self._pool[at : at + 4]


_keys = _MaskKeys()


def client_text_frame(payload: bytes) -> bytes:
    """A complete, masked text frame carrying `payload` (UTF-8 text)."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN_TEXT, _MASKED | length))
    elif length < 65536:
        header = struct.pack("!BBH", _FIN_TEXT, _MASKED | 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, _MASKED | 127, length)
    key = _keys.next()
    return header + key + apply_mask(payload, key)
