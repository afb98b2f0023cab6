"""CRC-64 with Go's ISO table, as LTX uses for file checksums (continuable across chunks)."""

from __future__ import annotations

from fastcrc import crc64

#: Bit 63 is set on every stored LTX checksum.
CHECKSUM_FLAG = 1 << 63

#: CRC of no bytes: the value to start a running checksum from.
CRC64_EMPTY = 0


def crc64_update(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Continue a running CRC-64/GO-ISO over `data` (start from CRC64_EMPTY)."""
    return crc64.go_iso(data, initial=crc)


def file_checksum(crc: int) -> int:
    """The stored form of a file checksum: the CRC with the flag bit set."""
    return CHECKSUM_FLAG | crc
