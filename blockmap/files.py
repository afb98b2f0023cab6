"""File contents in the metadata: appending slice records (write), hole records (truncate), and
reading a byte range back through the chunks' visible views.

A write's blocks are uploaded before `commit_write` runs, so the metadata never points at an
object that is not there yet.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass

import apsw

from blockmap.blocks import BlockStore
from blockmap.errors import fs_error
from blockmap.meta import as_int
from blockmap.namespace import OpContext, Released, drop_chunk_refs, now_ns
from blockmap.node import TYPE_DIRECTORY, TYPE_FILE, Node, check_changeable, get_node, update_node
from blockmap.paths import PathLike
from blockmap.slices import CHUNK_SIZE, MAX_FILE_SIZE, SLICE_RECORD_SIZE, SliceRecord, build_view, decode_records, hole

#: Chunks a shrinking truncate drops inside its own transaction.
TRUNCATE_DROP_CHUNKS = 1024
#: Largest piece fetched per block read while assembling a range.
READ_PIECE = 4 << 20

_APPEND_SQL = (
    "INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?, ?, ?)"
    " ON CONFLICT (inode, indx) DO UPDATE SET slices = CAST(slices || excluded.slices AS BLOB)"
)


def append_records(cursor: apsw.Cursor, inode: int, indx: int, data: bytes) -> None:
    """Append encoded records to chunk (inode, indx), creating the row if needed (kept a BLOB)."""
    cursor.execute(_APPEND_SQL, (inode, indx, data))


def append_counted(cursor: apsw.Cursor, inode: int, indx: int, data: bytes) -> int:
    """`append_records`, returning the number of records the chunk holds now (one statement)."""
    row = cursor.execute(_APPEND_SQL + " RETURNING length(CAST(slices AS BLOB))", (inode, indx, data)).fetchone()
    assert row is not None  # an upsert returns its row
    return int(row[0]) // SLICE_RECORD_SIZE


def _file_node(cursor: apsw.Cursor, inode: int, path: PathLike) -> Node:
    node = get_node(cursor, inode)
    if node is None:
        raise fs_error(errno.ENOENT, path)
    return _check_file(node, path)


def _check_file(node: Node, path: PathLike) -> Node:
    if node.type == TYPE_DIRECTORY:
        raise fs_error(errno.EISDIR, path)
    if node.type != TYPE_FILE:
        raise fs_error(errno.EINVAL, path)
    return node


def unlinked_length(cursor: apsw.Cursor, inode: int) -> int | None:
    """The length of a file unlinked while open (no node; its data pending in `jfs_delfile` until
    the last close), or None when `inode` is not such a file."""
    row = cursor.execute("SELECT length FROM jfs_delfile WHERE inode = ?", (inode,)).fetchone()
    return None if row is None else as_int(row[0])


def _open_file(cursor: apsw.Cursor, inode: int, path: PathLike) -> tuple[Node | None, int]:
    """(node, length) of a file that handles write to; (None, length) for one unlinked while open,
    whose writes and truncates go on against its `jfs_delfile` row, as POSIX wants."""
    node = get_node(cursor, inode)
    if node is not None:
        return _check_file(node, path), node.length
    length = unlinked_length(cursor, inode)
    if length is None:
        raise fs_error(errno.ENOENT, path)
    return None, length


def _set_unlinked_length(cursor: apsw.Cursor, inode: int, length: int) -> None:
    cursor.execute("UPDATE jfs_delfile SET length = ? WHERE inode = ?", (length, inode))


@dataclass(frozen=True)
class WritePiece:
    """A new slice placed in chunk `indx` (its record's `pos` is the chunk offset)."""

    indx: int
    record: SliceRecord

    @property
    def file_end(self) -> int:
        return self.indx * CHUNK_SIZE + self.record.end


def commit_write(
    cursor: apsw.Cursor,
    ctx: OpContext,
    inode: int,
    pieces: list[WritePiece],
    path: PathLike,
    mtime_ns: int | None = None,
) -> dict[int, int]:
    """Record uploaded slices in a file (JuiceFS doWrite, for one or more slices at once).

    Returns the number of records now in each chunk written (to decide on compaction)."""
    node, old_length = _open_file(cursor, inode, path)
    if node is not None:
        check_changeable(node, path, append=True)  # append-only: open() allowed O_APPEND only
    new_length = max([old_length] + [p.file_end for p in pieces])
    counts: dict[int, int] = {}
    for p in pieces:
        counts[p.indx] = append_counted(cursor, inode, p.indx, p.record.encode())  # the last one counts
        cursor.execute(
            "INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?, ?, 1)", (p.record.id, p.record.size)
        )
    if node is None:  # unlinked while open: no longer counted in the volume's usage
        _set_unlinked_length(cursor, inode, new_length)
        return counts
    ns = now_ns()
    node.length = new_length
    node.set_mtime(ns if mtime_ns is None else mtime_ns)
    node.set_ctime(ns)
    update_node(cursor, node, "length", "mtime", "mtimensec", "ctime", "ctimensec")
    ctx.acct.file_length_changed(cursor, inode, node.parent, old_length, new_length, path)
    return counts


def _set_length(cursor: apsw.Cursor, ctx: OpContext, node: Node, old_length: int, length: int,
                path: PathLike) -> None:
    """Record a file's new length (mtime and ctime now) and the usage it changes."""
    ns = now_ns()
    node.length = length
    node.set_mtime(ns)
    node.set_ctime(ns)
    update_node(cursor, node, "length", "mtime", "mtimensec", "ctime", "ctimensec")
    ctx.acct.file_length_changed(cursor, node.inode, node.parent, old_length, length, path)


def truncate(
    cursor: apsw.Cursor, ctx: OpContext, inode: int, length: int, path: PathLike
) -> tuple[Node, Released]:
    """Set a file's length (JuiceFS doTruncate): the bytes between the old and new length become a
    hole, so a later extension reads zeros. When shrinking, chunks wholly past the new length are
    dropped at once (up to TRUNCATE_DROP_CHUNKS; beyond that they get hole records, as in JuiceFS),
    which readers cannot tell apart and which gives their slices back now."""
    _check_length(length, path)
    node = _file_node(cursor, inode, path)
    check_changeable(node, path)
    released = Released()
    if length == node.length:
        return node, released
    old_length = node.length
    _cut(cursor, inode, old_length, length, released)
    _set_length(cursor, ctx, node, old_length, length, path)
    return node, released


#: fallocate(2) modes (linux/falloc.h).
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
#: The modes fallocate takes; the others (collapse, insert, unshare) are EOPNOTSUPP, as in JuiceFS.
FALLOCATE_MODES = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE


def fallocate(
    cursor: apsw.Cursor, ctx: OpContext, inode: int, mode: int, offset: int, size: int, path: PathLike
) -> Node:
    """fallocate(2) as JuiceFS's Fallocate does it: the file grows to `offset + size` unless
    KEEP_SIZE (nothing is reserved: blocks are written when data is); PUNCH_HOLE and ZERO_RANGE
    lay hole records over the part of [offset, offset+size) inside the old length, so it reads
    as zeros, and the slices under them are freed when the chunk is next compacted."""
    if mode & ~FALLOCATE_MODES:
        raise fs_error(errno.EOPNOTSUPP, path)
    if mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        raise fs_error(errno.EINVAL, path)
    if offset < 0 or size <= 0:
        raise fs_error(errno.EINVAL, path)
    node = _file_node(cursor, inode, path)
    check_changeable(node, path, append=not mode & ~FALLOC_FL_KEEP_SIZE)
    old_length = node.length
    length = old_length
    if offset + size > old_length and not mode & FALLOC_FL_KEEP_SIZE:
        _check_length(offset + size, path)
        length = offset + size
    if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) and offset < old_length:
        pos, end = offset, min(offset + size, old_length)
        while pos < end:
            indx, coff = divmod(pos, CHUNK_SIZE)
            n = min(end - pos, CHUNK_SIZE - coff)
            append_records(cursor, inode, indx, hole(coff, n).encode())
            pos += n
    _set_length(cursor, ctx, node, old_length, length, path)
    return node


def truncate_open(
    cursor: apsw.Cursor, ctx: OpContext, inode: int, length: int, path: PathLike
) -> tuple[Node | None, Released]:
    """`truncate` of a file some handle has open: one unlinked meanwhile (no node) is cut too, its
    `jfs_delfile` row taking the new length."""
    _check_length(length, path)
    node, old_length = _open_file(cursor, inode, path)
    if node is not None:
        return truncate(cursor, ctx, inode, length, path)
    released = Released()
    if length != old_length:
        _cut(cursor, inode, old_length, length, released)
        _set_unlinked_length(cursor, inode, length)
    return None, released


def _check_length(length: int, path: PathLike) -> None:
    if length < 0:
        raise fs_error(errno.EINVAL, path)
    if length >= MAX_FILE_SIZE:
        raise fs_error(errno.EFBIG, path)


def _cut(cursor: apsw.Cursor, inode: int, old_length: int, length: int, released: Released) -> None:
    """The chunk rows of a length change from `old_length` to `length`."""
    left, right = sorted((old_length, length))
    first = left // CHUNK_SIZE
    coff = left % CHUNK_SIZE
    last = right // CHUNK_SIZE
    dropped: set[int] = set()
    if length < old_length:
        rows = cursor.execute(
            "SELECT indx, CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ? AND indx >= ? ORDER BY indx LIMIT ?",
            (inode, -(-length // CHUNK_SIZE), TRUNCATE_DROP_CHUNKS),
        ).fetchall()
        for indx, blob in rows:
            drop_chunk_refs(cursor, decode_records(blob, f"chunk {inode}:{indx}"), released)
            cursor.execute("DELETE FROM jfs_chunk WHERE inode = ? AND indx = ?", (inode, indx))
            dropped.add(as_int(indx))
    if right > (first + 1) * CHUNK_SIZE:
        if first not in dropped:
            append_records(cursor, inode, first, hole(coff, CHUNK_SIZE - coff).encode())
        full = hole(0, CHUNK_SIZE).encode()
        if last - first > 1:
            rows = cursor.execute(
                "SELECT indx FROM jfs_chunk WHERE inode = ? AND indx > ? AND indx < ?", (inode, first, last)
            ).fetchall()
            for (indx,) in rows:
                append_records(cursor, inode, as_int(indx), full)
        if right % CHUNK_SIZE and last not in dropped:
            append_records(cursor, inode, last, hole(0, right % CHUNK_SIZE).encode())
    elif first not in dropped:
        append_records(cursor, inode, first, hole(coff, right - left).encode())


@dataclass
class ReadPlan:
    """A file's length and the records of the chunks a read touches, taken in one transaction."""

    length: int
    chunks: dict[int, list[SliceRecord]]


def _length_for_read(cursor: apsw.Cursor, inode: int, path: PathLike) -> int:
    """A file's length; an unlinked file whose data is still pending (open somewhere) keeps its
    last length from `jfs_delfile`, so open handles read on, as POSIX wants."""
    return _open_file(cursor, inode, path)[1]


def plan_read(cursor: apsw.Cursor, inode: int, offset: int, size: int, path: PathLike) -> ReadPlan:
    length = _length_for_read(cursor, inode, path)
    end = min(length, offset + size) if size >= 0 else length
    chunks: dict[int, list[SliceRecord]] = {}
    if end > offset:
        rows = cursor.execute(
            "SELECT indx, CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ? AND indx >= ? AND indx <= ?",
            (inode, offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE),
        ).fetchall()
        for indx, blob in rows:
            chunks[as_int(indx)] = decode_records(blob, f"chunk {inode}:{indx}")
    return ReadPlan(length, chunks)


def iter_pieces(plan: ReadPlan, offset: int, size: int) -> Iterator[tuple[int, int, int, int]]:
    """The pieces of [offset, offset+size) (clamped to the file length) in order, as
    (slice id, slice size, offset in the slice, bytes); slice id 0 is a hole (zeros)."""
    end = min(plan.length, offset + size) if size >= 0 else plan.length
    pos = offset
    while pos < end:
        indx, coff = divmod(pos, CHUNK_SIZE)
        chunk_end = min(end, (indx + 1) * CHUNK_SIZE) - indx * CHUNK_SIZE
        view = build_view(plan.chunks.get(indx, []))
        at = coff
        for seg in view:
            if seg.end <= at:
                continue
            if seg.pos >= chunk_end:
                break
            start = max(at, seg.pos)
            stop = min(chunk_end, seg.end)
            while start < stop:
                n = min(stop - start, READ_PIECE)
                yield (seg.id, seg.size, seg.off + (start - seg.pos), n) if seg.id else (0, 0, 0, n)
                start += n
            at = stop
        while at < chunk_end:  # past the last record: zeros
            n = min(chunk_end - at, READ_PIECE)
            yield 0, 0, 0, n
            at += n
        pos = indx * CHUNK_SIZE + chunk_end


def iter_range(blocks: BlockStore, plan: ReadPlan, offset: int, size: int) -> Iterator[bytes]:
    """Yield the bytes of [offset, offset+size) (clamped to the file length) piece by piece."""
    for sid, ssize, soff, n in iter_pieces(plan, offset, size):
        yield blocks.read(sid, ssize, soff, n) if sid else bytes(n)
