"""The 16-byte LTX trailer: post-apply database checksum, then the file checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ltx.checksum import CHECKSUM_FLAG
from ltx.errors import LTXTrailerError, LTXTruncatedError
from ltx.header import Header

TRAILER_SIZE = 16
_STRUCT = struct.Struct(">QQ")


@dataclass(frozen=True)
class Trailer:
    post_apply_checksum: int
    file_checksum: int

    def encode(self) -> bytes:
        return _STRUCT.pack(self.post_apply_checksum, self.file_checksum)

    @classmethod
    def decode(cls, data: bytes, name: str = "", offset: int = 0) -> Trailer:
        if len(data) < TRAILER_SIZE:
            raise LTXTruncatedError(name, offset, f"trailer needs {TRAILER_SIZE} bytes, got {len(data)}")
        return cls(*_STRUCT.unpack_from(data))

    def validate(self, header: Header, name: str = "", offset: int = 0) -> None:
        if header.no_checksum:
            if self.post_apply_checksum != 0:
                raise LTXTrailerError(name, offset, "post-apply checksum set in a file without checksums")
        elif not self.post_apply_checksum & CHECKSUM_FLAG:
            raise LTXTrailerError(name, offset, "post-apply checksum missing or malformed")
        if not self.file_checksum & CHECKSUM_FLAG:
            raise LTXTrailerError(name, offset + 8, "file checksum missing or malformed")
