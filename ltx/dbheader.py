"""What page 1 of a SQLite database says about the database, checked against an LTX header.

SQLite records the database size in pages at bytes 28..31 of page 1, and trusts it only when it
is not 0 and the change counter (bytes 24..27) equals the version-valid-for number (92..95).
An LTX file's `commit` is that same size after the file's last transaction, so a file holding
page 1 whose commit disagrees with a valid in-header size is damaged or hostile: applied as it
says, a commit of 0x7FFFFFFF makes an 8 TiB file out of a 2-page database.
"""

from __future__ import annotations

import struct

from ltx.errors import LTXHeaderError

#: Bytes of page 1 the checks read (the 100-byte database header).
DB_HEADER_SIZE = 100
#: Offset of the LTX header's commit field (what a CommitSizeError points at).
COMMIT_OFFSET = 12

_U32 = struct.Struct(">I")


class CommitSizeError(LTXHeaderError):
    """An LTX header's commit disagrees with the database size page 1 records."""

    def __init__(self, name: str, commit: int, db_size: int, advice: str = "") -> None:
        self.commit = commit
        self.db_size = db_size
        reason = (f"the header's commit says the database has {commit} pages, its page 1 says {db_size}"
                  + (f" ({advice})" if advice else ""))
        super().__init__(name, COMMIT_OFFSET, reason)


def header_db_size(page1: bytes | bytearray | memoryview | None) -> int | None:
    """The database size in pages that page 1 records, or None when SQLite would not trust it
    (a short page, a size of 0, or a change counter that differs from version-valid-for)."""
    if page1 is None or len(page1) < DB_HEADER_SIZE:
        return None
    head = bytes(page1[:DB_HEADER_SIZE])
    size = int(_U32.unpack_from(head, 28)[0])
    if size and head[24:28] == head[92:96]:
        return size
    return None


def commit_problem(commit: int, page1: bytes | bytearray | memoryview | None) -> int | None:
    """Page 1's valid in-header size when it disagrees with `commit`; None when they agree or page
    1 says nothing trustworthy."""
    size = header_db_size(page1)
    return size if size is not None and size != commit else None


def check_commit(name: str, commit: int, page1: bytes | bytearray | memoryview | None, advice: str = "") -> None:
    """Raise CommitSizeError (naming `name`) when `commit` disagrees with page 1's valid size."""
    size = commit_problem(commit, page1)
    if size is not None:
        raise CommitSizeError(name, commit, size, advice)
