"""The 100-byte LTX header: fields, encode/decode, and validation by the format's rules."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from ltx.checksum import CHECKSUM_FLAG
from ltx.errors import (
    LTXFlagsError,
    LTXHeaderError,
    LTXMagicError,
    LTXPageSizeError,
    LTXTruncatedError,
)

MAGIC = b"LTX1"
HEADER_SIZE = 100
#: Header flag: the file carries no database checksums (Litestream 0.5 sets it on every file).
FLAG_NO_CHECKSUM = 0x2
HEADER_FLAG_MASK = FLAG_NO_CHECKSUM
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536
#: SQLite's PENDING_BYTE: the page holding it (the lock page) is never stored.
PENDING_BYTE = 0x40000000

_STRUCT = struct.Struct(">4sIIIQQqQqqIIQ20x")


def is_valid_page_size(page_size: int) -> bool:
    """A power of two from 512 to 65536."""
    return MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE and page_size & (page_size - 1) == 0


def lock_pgno(page_size: int) -> int:
    """The page number of SQLite's lock page for this page size."""
    return PENDING_BYTE // page_size + 1


@dataclass(frozen=True)
class Header:
    """An LTX file header. TXIDs are ints; `timestamp` is milliseconds since the Unix epoch."""

    page_size: int
    commit: int
    min_txid: int
    max_txid: int
    timestamp: int = 0
    flags: int = FLAG_NO_CHECKSUM
    pre_apply_checksum: int = 0
    wal_offset: int = 0
    wal_size: int = 0
    wal_salt1: int = 0
    wal_salt2: int = 0
    node_id: int = 0

    @property
    def is_snapshot(self) -> bool:
        """A snapshot starts at TXID 1 and holds every page 1..commit except the lock page."""
        return self.min_txid == 1

    @property
    def no_checksum(self) -> bool:
        return bool(self.flags & FLAG_NO_CHECKSUM)

    @property
    def lock_pgno(self) -> int:
        return lock_pgno(self.page_size)

    def encode(self) -> bytes:
        return _STRUCT.pack(
            MAGIC, self.flags, self.page_size, self.commit, self.min_txid, self.max_txid,
            self.timestamp, self.pre_apply_checksum, self.wal_offset, self.wal_size,
            self.wal_salt1, self.wal_salt2, self.node_id,
        )

    @classmethod
    def decode(cls, data: bytes, name: str = "") -> Header:
        """Parse the first 100 bytes of `data`; raise on a short buffer or a wrong magic."""
        if len(data) < HEADER_SIZE:
            raise LTXTruncatedError(name, len(data), f"header needs {HEADER_SIZE} bytes, got {len(data)}")
        (magic, flags, page_size, commit, min_txid, max_txid, timestamp, pre, wal_offset, wal_size,
         salt1, salt2, node_id) = _STRUCT.unpack_from(data)
        if magic != MAGIC:
            raise LTXMagicError(name, 0, f"bad magic {magic!r}, expected {MAGIC!r}")
        return cls(page_size=page_size, commit=commit, min_txid=min_txid, max_txid=max_txid,
                   timestamp=timestamp, flags=flags, pre_apply_checksum=pre, wal_offset=wal_offset,
                   wal_size=wal_size, wal_salt1=salt1, wal_salt2=salt2, node_id=node_id)

    def validate(self, name: str = "") -> None:
        """Apply the format's header rules (those of superfly/ltx v0.5.2's Header.Validate)."""
        if self.flags & ~HEADER_FLAG_MASK:
            raise LTXFlagsError(name, 4, f"unknown header flags 0x{self.flags:08x}")
        if not is_valid_page_size(self.page_size):
            raise LTXPageSizeError(name, 8, f"invalid page size {self.page_size}")
        if self.min_txid == 0:
            raise LTXHeaderError(name, 16, "minimum TXID is 0")
        if self.max_txid == 0:
            raise LTXHeaderError(name, 24, "maximum TXID is 0")
        if self.min_txid > self.max_txid:
            raise LTXHeaderError(name, 16, f"TXIDs out of order: min {self.min_txid:x} > max {self.max_txid:x}")
        if self.wal_offset < 0:
            raise LTXHeaderError(name, 48, f"negative WAL offset {self.wal_offset}")
        if self.wal_size < 0:
            raise LTXHeaderError(name, 56, f"negative WAL size {self.wal_size}")
        if (self.wal_salt1 or self.wal_salt2) and self.wal_offset == 0:
            raise LTXHeaderError(name, 64, "WAL salt set without a WAL offset")
        if self.wal_offset == 0 and self.wal_size != 0:
            raise LTXHeaderError(name, 56, "WAL size set without a WAL offset")
        if self.is_snapshot or self.no_checksum:
            if self.pre_apply_checksum != 0:
                what = "snapshot" if self.is_snapshot else "file without checksums"
                raise LTXHeaderError(name, 40, f"pre-apply checksum must be 0 in a {what}")
        elif self.pre_apply_checksum == 0 or not self.pre_apply_checksum & CHECKSUM_FLAG:
            raise LTXHeaderError(name, 40, "pre-apply checksum missing or malformed")

    def with_(self, **changes: int) -> Header:
        """A copy with some fields changed."""
        return replace(self, **changes)
