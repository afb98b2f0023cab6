"""The hint file: page 1 and the top of every b-tree of one state of the database, in one object
of at most HINT_BUDGET bytes.

A cold reader fetches it in one GET beside its first LIST (its name is fixed, so it needs no
listing) and then holds the pages a b-tree descent visits first: page 1, each b-tree's root, and
the levels below the roots, level by level, as many as fit the budget. Where the interior pages
all fit (up to a few hundred MB of database at 256 KiB) a point query waits for the LIST, the page
indexes and the leaf: three round trips; each level that does not fit costs one more. The budget
keeps the hint from growing with the database (at 5 GB its interior pages are ~30 MB, more than
the round trips they save are worth).

Where: the key `ltxvfs-hint.ltx` at the replica's root, beside the level directories
(`ROOT/ltxvfs-hint.ltx` for file://, `PATH/ltxvfs-hint.ltx` for s3://). Litestream lists only
`ltx/<level>/` (file) and `PATH/<level %04x>/` (S3) and skips names that are not
`<min>-<max>.ltx`, so it neither reads nor deletes the hint (only its delete-everything reset
removes it, which is right).

Which state: the header names the TXID, the commit, the page size and the timestamp of the LTX
file that ended at that TXID. A reader applies the pages only when all four equal those of the
view it built from the listing (the timestamp tells two histories that reached the same TXID
apart); a hint for an older TXID is ignored, so a stale hint costs a GET and is never served.

Layout (big-endian), a wire struct of its own because an LTX file with min TXID 1 must be a full
snapshot:
    header (48 bytes): magic `LTXH`, version u32, page size u32, commit u32, TXID u64,
        timestamp i64 (ms), page count u32, 12 zero bytes
    page frames as in LTX (page number u32, flags u16, size u32, LZ4 block), ascending
    trailer: u64 CRC-64 (Go ISO, bit 63 set) over the header and the frames as stored
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ltx.btree import INTERIOR_PAGE_TYPES, interior_children, schema_roots
from ltx.checksum import crc64_update, file_checksum
from ltx.decoder import Decoder
from ltx.errors import LTXError, LTXHeaderError, LTXMagicError, LTXPageOrderError, LTXTruncatedError
from ltx.frame import FRAME_PREFIX_SIZE, decode_frame, encode_frame
from ltx.header import Header, is_valid_page_size, lock_pgno
from ltx.names import HINT_KEY
from ltx.plan import MAX_COMPACTION_LEVEL, SNAPSHOT_LEVEL, LTXFileInfo, restore_plan
from ltx.reader import read_header
from ltx.replica import Replica
from ltx.store.base import ObjectNotFoundError, ObjectStore

#: The hint's key relative to the replica's root (beside the level directories).
HINT_MAGIC = b"LTXH"
HINT_VERSION = 1
HINT_HEADER_SIZE = 48
HINT_TRAILER_SIZE = 8
#: Bytes of a hint object at most (header, frames, trailer): the pages nearest the roots that fit.
HINT_BUDGET = 256 * 1024
#: A hint holding more pages than this is refused by readers (a budget this large is a mistake).
MAX_HINT_PAGES = 8192

_HEADER = struct.Struct(">4sIIIQqI12x")
_U64 = struct.Struct(">Q")
_PREFIX = struct.Struct(">IHI")


class HintError(LTXError):
    """A hint object is malformed or its checksum does not match."""


def is_hint_page(pgno: int, page: bytes | memoryview) -> bool:
    """Whether a page may go into a hint: page 1, or an interior b-tree page."""
    if pgno == 1:
        return True
    return len(page) > 0 and page[0] in INTERIOR_PAGE_TYPES


def hint_roots(pages: Mapping[int, bytes]) -> set[int]:
    """The b-tree roots among `pages` (hint pages, page 1 included): those no page of `pages` names
    as a child, and those the schema on page 1 names. Right for a complete set of hint pages, and
    for a hint chosen by `select_hint_pages` (every page in it but the roots has its parent in it)."""
    named: set[int] = set()
    for pgno, page in pages.items():
        children = interior_children(pgno, page)
        if children is not None:
            named.update(children)
    page1 = pages.get(1)
    return {p for p in pages if p not in named} | set(schema_roots(page1) if page1 is not None else ())


def select_hint_pages(pages: Mapping[int, bytes], budget: int | None = None,
                      roots: set[int] | None = None) -> dict[int, bytes]:
    """The pages of `pages` a hint of at most `budget` bytes holds: page 1, then the b-trees from
    their roots down (`roots`, by default `hint_roots(pages)`), a level of every tree at a time, in
    page order within a level, until the next page does not fit. Pages no root leads to are left
    out (an interior page whose parent did not fit an earlier hint, say)."""
    budget = HINT_BUDGET if budget is None else budget
    tops = hint_roots(pages) if roots is None else roots
    chosen: dict[int, bytes] = {}
    used = HINT_HEADER_SIZE + HINT_TRAILER_SIZE
    level = sorted({1} | {p for p in tops if p in pages})
    seen = set(level)
    while level:
        below: set[int] = set()
        for pgno in level:
            page = pages.get(pgno)
            if page is None:
                continue
            size = len(encode_frame(pgno, page))
            if used + size > budget and chosen:
                return chosen
            chosen[pgno] = page
            used += size
            below.update(c for c in interior_children(pgno, page) or () if c in pages and c not in seen)
        seen |= below
        level = sorted(below)
    return chosen


@dataclass(frozen=True)
class HintHeader:
    """Which state a hint holds pages of."""

    page_size: int
    commit: int
    txid: int
    timestamp: int
    page_count: int
    version: int = HINT_VERSION

    def encode(self) -> bytes:
        return _HEADER.pack(HINT_MAGIC, self.version, self.page_size, self.commit, self.txid, self.timestamp,
                            self.page_count)

    @classmethod
    def decode(cls, data: bytes | memoryview, name: str = "") -> HintHeader:
        if len(data) < HINT_HEADER_SIZE:
            raise LTXTruncatedError(name, len(data), f"hint ends inside its header ({len(data)} of "
                                                     f"{HINT_HEADER_SIZE} bytes)")
        magic, version, page_size, commit, txid, timestamp, count = _HEADER.unpack_from(data)
        if magic != HINT_MAGIC:
            raise LTXMagicError(name, 0, f"not a hint file (magic {bytes(magic)!r})")
        return cls(page_size, commit, txid, timestamp, count, version)

    def validate(self, name: str = "") -> None:
        if self.version != HINT_VERSION:
            raise LTXHeaderError(name, 4, f"hint version {self.version} is not {HINT_VERSION}")
        if not is_valid_page_size(self.page_size):
            raise LTXHeaderError(name, 8, f"invalid page size {self.page_size}")
        if self.commit < 1 or self.txid < 1:
            raise LTXHeaderError(name, 12, f"hint for commit {self.commit} at TXID {self.txid}")
        if self.page_count > min(self.commit, MAX_HINT_PAGES):
            raise LTXHeaderError(name, 40, f"hint claims {self.page_count} pages (commit {self.commit})")

    def matches(self, txid: int, timestamp: int, commit: int, page_size: int) -> bool:
        """Whether this hint holds pages of exactly that state."""
        return (self.txid, self.timestamp, self.commit, self.page_size) == (txid, timestamp, commit, page_size)


@dataclass(frozen=True)
class Hint:
    """A decoded, checked hint: its header and its pages (page number -> image)."""

    header: HintHeader
    pages: dict[int, bytes]


def encode_hint(header: HintHeader, pages: Mapping[int, bytes]) -> bytes:
    """The hint object for `pages` (their count must be `header.page_count`)."""
    header.validate()
    if len(pages) != header.page_count:
        raise ValueError(f"hint header says {header.page_count} pages, {len(pages)} given")
    parts = [header.encode()]
    for pgno in sorted(pages):
        page = pages[pgno]
        if len(page) != header.page_size or not 1 <= pgno <= header.commit:
            raise ValueError(f"hint page {pgno} ({len(page)} bytes) does not fit page size "
                             f"{header.page_size} and commit {header.commit}")
        parts.append(encode_frame(pgno, page))
    crc = 0
    for part in parts:
        crc = crc64_update(crc, part)
    parts.append(_U64.pack(file_checksum(crc)))
    return b"".join(parts)


def decode_hint(data: bytes, name: str = HINT_KEY) -> Hint:
    """Decode and check a whole hint object: header, checksum, every frame (order, page numbers
    within the commit, LZ4 blocks giving exactly one page)."""
    header = HintHeader.decode(data, name)
    header.validate(name)
    if len(data) < HINT_HEADER_SIZE + HINT_TRAILER_SIZE:
        raise LTXTruncatedError(name, len(data), "hint ends before its trailer")
    end = len(data) - HINT_TRAILER_SIZE
    (stored,) = _U64.unpack_from(data, end)
    actual = file_checksum(crc64_update(0, memoryview(data)[:end]))
    if stored != actual:
        raise HintError(name, end, f"hint checksum mismatch: trailer has {stored:016x}, contents give {actual:016x}")
    pages: dict[int, bytes] = {}
    view = memoryview(data)
    pos = HINT_HEADER_SIZE
    prev = 0
    lock = lock_pgno(header.page_size)
    while pos < end:
        if end - pos < FRAME_PREFIX_SIZE:
            raise LTXTruncatedError(name, pos, "hint frame cut short")
        pgno, _, size = _PREFIX.unpack_from(data, pos)
        frame_end = pos + FRAME_PREFIX_SIZE + size
        if frame_end > end:
            raise LTXTruncatedError(name, pos, f"hint frame of page {pgno} runs past the pages")
        if pgno <= prev or pgno > header.commit or pgno == lock:
            raise LTXPageOrderError(name, pos, f"hint page {pgno} after {prev} (commit {header.commit})")
        got, page = decode_frame(view[pos:frame_end], header.page_size, name, pos, pgno)
        pages[got] = page
        prev = pgno
        pos = frame_end
    if len(pages) != header.page_count:
        raise HintError(name, pos, f"hint holds {len(pages)} pages, its header says {header.page_count}")
    return Hint(header, pages)


def read_hint(store: ObjectStore, key: str = HINT_KEY) -> Hint | None:
    """The replica's hint, or None when it has none. A damaged hint raises (LTXError)."""
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return None
    return decode_hint(data, key)


def write_hint(store: ObjectStore, header: HintHeader, pages: Mapping[int, bytes], key: str = HINT_KEY) -> bool:
    """Store (replace) the hint; False, and the old hint removed, when it would be too large."""
    if len(pages) > MAX_HINT_PAGES:
        store.delete(key)
        return False
    store.put(key, encode_hint(header, pages))
    return True


def delete_hint(store: ObjectStore, key: str = HINT_KEY) -> None:
    store.delete(key)


# -- building ---------------------------------------------------------------------------------

def apply_pages(hint: dict[int, bytes], pages: Iterable[tuple[int, bytes]], commit: int) -> None:
    """Advance `hint` (the hint pages of one state) past a file holding `pages` and ending at
    `commit` pages: a changed page joins or leaves by its new type; pages past the commit go."""
    for pgno, page in pages:
        if is_hint_page(pgno, page):
            hint[pgno] = bytes(page)
        else:
            hint.pop(pgno, None)
    for pgno in [p for p in hint if p > commit]:
        del hint[pgno]


def hint_pages_of_image(path: str | os.PathLike[str], page_size: int) -> dict[int, bytes]:
    """The hint pages of a local database file (read in chunks; only the hint pages are kept)."""
    pages: dict[int, bytes] = {}
    chunk_pages = 256
    with open(path, "rb") as f:
        pgno = 1
        while chunk := f.read(page_size * chunk_pages):
            view = memoryview(chunk)
            for off in range(0, len(chunk) - page_size + 1, page_size):
                page = view[off:off + page_size]
                if is_hint_page(pgno, page):
                    pages[pgno] = bytes(page)
                pgno += 1
    pages.pop(lock_pgno(page_size), None)
    return pages


def _apply_files(store: ObjectStore, hint: dict[int, bytes], files: Sequence[LTXFileInfo]) -> Header:
    """Stream `files` in order (each checked whole by the decoder) through `apply_pages`;
    return the last file's header."""
    last: Header | None = None
    for info in files:
        with store.open(info.key) as src:
            dec = Decoder(src, info.key)
            apply_pages(hint, dec.pages(), dec.header.commit)
            last = dec.header
    assert last is not None
    return last


def chain_after(levels: Mapping[int, Sequence[LTXFileInfo]], txid: int, target: int) -> list[LTXFileInfo] | None:
    """Files of levels 0..8 that carry a state at `txid` forward to `target` (the restore plan's
    rule: the file continuing the chain with the largest max TXID), or None when there is a gap."""
    chain: list[LTXFileInfo] = []
    current = txid
    while current < target:
        best: LTXFileInfo | None = None
        for lvl in range(MAX_COMPACTION_LEVEL + 1):
            for f in levels.get(lvl, ()):
                if f.min_txid <= current + 1 < f.max_txid + 1 and f.max_txid <= target:
                    if best is None or (f.max_txid, -f.min_txid, f.level) > (best.max_txid, -best.min_txid, best.level):
                        best = f
        if best is None:
            return None
        chain.append(best)
        current = best.max_txid
    return chain


def _state_header(store: ObjectStore, levels: Mapping[int, Sequence[LTXFileInfo]], txid: int) -> Header | None:
    """The header of some file ending at `txid` (its commit and timestamp are that state's)."""
    for lvl in range(SNAPSHOT_LEVEL + 1):
        for f in levels.get(lvl, ()):
            if f.max_txid == txid:
                return read_header(store, f.key)
    return None


@dataclass(frozen=True)
class HintRefresh:
    """What `refresh_hint` did: the hint now in place (None: none was written) and how."""

    header: HintHeader | None
    #: "current" (already right), "incremental" (old hint advanced), "full" (rebuilt from the plan),
    #: "too-large" (no hint: more pages than MAX_HINT_PAGES, which the budget keeps from happening).
    how: str
    files_read: int = 0


def refresh_hint(replica: Replica) -> HintRefresh:
    """Bring the replica's hint to its latest state. The writer's compaction and `ltxctl compact`
    call this after they change the levels.

    An existing hint of an earlier state of this same history (a file ending at its TXID has its
    timestamp and commit) is advanced through the files after it; otherwise the latest state's
    restore plan is streamed and its hint pages kept."""
    store = replica.store
    levels = replica.list_levels()
    plan = restore_plan(levels, url=replica.url)
    target = plan[-1].max_txid
    try:
        old = read_hint(store)
    except LTXError:
        old = None
    hint: dict[int, bytes] | None = None
    files: list[LTXFileInfo] | None = None
    roots: set[int] | None = None
    if old is not None and old.header.txid <= target:
        state = _state_header(store, levels, old.header.txid)
        if state is not None and old.header.matches(old.header.txid, state.timestamp, state.commit, state.page_size):
            if old.header.txid == target:
                return HintRefresh(old.header, "current")
            files = chain_after(levels, old.header.txid, target)
            if files is not None:
                hint = dict(old.pages)
                roots = hint_roots(old.pages)  # the old hint is a budgeted subset: its trees, not its orphans
    how = "incremental"
    if hint is None or files is None:
        hint, files, how = {}, plan, "full"
    last = _apply_files(store, hint, files)
    if roots is not None and 1 in hint:
        roots |= set(schema_roots(hint[1]))
    hint = select_hint_pages(hint, roots=roots)
    header = HintHeader(last.page_size, last.commit, last.max_txid, last.timestamp, len(hint))
    if not write_hint(store, header, hint):
        return HintRefresh(None, "too-large", len(files))
    return HintRefresh(header, how, len(files))
