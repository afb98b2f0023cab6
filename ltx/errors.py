"""Exceptions raised while encoding, decoding or validating LTX files.

Every decode error names the object (`name`: a path or store key) and the byte offset where the
problem was found, so an operator can locate the damage.
"""

from __future__ import annotations


class LTXError(Exception):
    """Base class: something is wrong with an LTX file `name` at byte `offset`."""

    def __init__(self, name: str, offset: int, reason: str) -> None:
        self.name = name
        self.offset = offset
        self.reason = reason
        super().__init__(f"{name or '<ltx>'} at offset {offset}: {reason}")


class LTXTruncatedError(LTXError):
    """The file ended before a structure it promised was complete."""


class LTXMagicError(LTXError):
    """The file does not start with the LTX magic."""


class LTXHeaderError(LTXError):
    """A header field is invalid (TXIDs, WAL fields, checksums)."""


class LTXFlagsError(LTXHeaderError):
    """The header sets flag bits that the format does not define."""


class LTXPageSizeError(LTXHeaderError):
    """The page size is not a power of two between 512 and 65536."""


class LTXPageError(LTXError):
    """A page frame header is invalid (page number 0, unknown flags, beyond the commit)."""


class LTXPageOrderError(LTXError):
    """Pages are out of order, or a snapshot misses a page."""


class LTXLockPageError(LTXError):
    """The lock page (the one holding SQLite's PENDING_BYTE) appears in the file."""


class LTXCompressionError(LTXError):
    """A page's LZ4 block is malformed or decompresses to the wrong size."""


class LTXIndexError(LTXError):
    """The page index is malformed or disagrees with the page frames."""


class LTXTrailerError(LTXError):
    """The trailer's checksum fields are malformed, or bytes follow it."""


class LTXChecksumError(LTXError):
    """The file checksum in the trailer does not match the file's contents."""

    def __init__(self, name: str, offset: int, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(name, offset, f"file checksum mismatch: trailer has {expected:016x}, "
                                       f"contents give {actual:016x}")


class LTXEncodeError(ValueError):
    """The encoder was used wrongly (pages out of order, a page beyond the commit, …)."""
