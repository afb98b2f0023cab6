"""Just enough of SQLite's b-tree page format to walk trees without SQLite: the children of an
interior page, and the root pages the schema names when it fits on page 1.

Page layout (https://www.sqlite.org/fileformat2.html#b_tree_pages): page 1 starts with the
100-byte database header, every other page with its b-tree header: type (0x02 interior index,
0x05 interior table, 0x0a leaf index, 0x0d leaf table), first freeblock u16, cell count u16,
content start u16, fragmented bytes u8, and for interior pages the right-most child u32; then the
cell pointers (u16 each). An interior cell starts with its left child (u32).
"""

from __future__ import annotations

import struct

#: Page 1 starts with the 100-byte database header; its b-tree header follows.
DB_HEADER_SIZE = 100
INTERIOR_INDEX = 0x02
INTERIOR_TABLE = 0x05
LEAF_TABLE = 0x0D
INTERIOR_PAGE_TYPES = (INTERIOR_INDEX, INTERIOR_TABLE)
#: Columns of a sqlite_schema row up to the root page: type, name, tbl_name, rootpage.
_ROOTPAGE_COLUMN = 3
_U32 = struct.Struct(">I")


def header_offset(pgno: int) -> int:
    """Where page `pgno`'s b-tree header starts."""
    return DB_HEADER_SIZE if pgno == 1 else 0


def interior_children(pgno: int, page: bytes | memoryview) -> list[int] | None:
    """Child page numbers of a b-tree interior page in key order, or None for any other page
    (or an interior page whose cell pointers do not fit it)."""
    hdr = header_offset(pgno)
    if len(page) < hdr + 12 or page[hdr] not in INTERIOR_PAGE_TYPES:
        return None
    count = int.from_bytes(page[hdr + 3:hdr + 5], "big")
    if hdr + 12 + 2 * count > len(page):
        return None
    limit = len(page) - 4
    children = []
    for off in struct.unpack_from(f">{count}H", page, hdr + 12):
        if off > limit:
            return None
        children.append(_U32.unpack_from(page, off)[0])
    children.append(_U32.unpack_from(page, hdr + 8)[0])
    return children


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """An SQLite varint (1-9 bytes, big-endian, the 9th byte whole) at `pos`: (value, next)."""
    value = 0
    for i in range(8):
        b = data[pos + i]
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, pos + i + 1
    return (value << 8) | data[pos + 8], pos + 9


def _int_value(serial: int, data: bytes | memoryview, pos: int) -> int | None:
    """An integer column of serial type `serial` at `pos` (None: not an integer type)."""
    sizes = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}
    if serial in (8, 9):
        return serial - 8
    size = sizes.get(serial)
    if size is None:
        return None
    return int.from_bytes(data[pos:pos + size], "big", signed=True)


def _serial_size(serial: int) -> int:
    if serial >= 12:
        return (serial - 12) // 2
    return (0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0)[serial]


def schema_roots(page1: bytes | memoryview) -> list[int]:
    """The root pages of the tables and indexes sqlite_schema names, when the whole schema is on
    page 1 (a table leaf); [] when it is not, or a row cannot be read from page 1 alone."""
    hdr = DB_HEADER_SIZE
    if len(page1) < hdr + 8 or page1[hdr] != LEAF_TABLE:
        return []
    count = int.from_bytes(page1[hdr + 3:hdr + 5], "big")
    roots: list[int] = []
    try:
        for (cell,) in struct.iter_unpack(">H", page1[hdr + 8:hdr + 8 + 2 * count]):
            _, pos = _varint(page1, cell)  # payload size (the first columns are always local)
            _, pos = _varint(page1, pos)  # rowid
            header_size, body = _varint(page1, pos)
            end = pos + header_size
            serials: list[int] = []
            while body < end and len(serials) <= _ROOTPAGE_COLUMN:
                serial, body = _varint(page1, body)
                serials.append(serial)
            if len(serials) <= _ROOTPAGE_COLUMN:
                return []
            at = end + sum(_serial_size(s) for s in serials[:_ROOTPAGE_COLUMN])
            root = _int_value(serials[_ROOTPAGE_COLUMN], page1, at)
            if root is not None and root > 1:
                roots.append(root)
    except IndexError:
        return []
    return roots
