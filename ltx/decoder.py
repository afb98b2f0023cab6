"""Streaming LTX decoder that validates everything the format lets it check, in constant memory.

`batches()` yields the pages of each large read with their page numbers, `pages()` one
(pgno, page) at a time. After the last page the page index is parsed from the stream and checked
against the frames read, then the trailer and the file checksum; only a caller that consumed every
page without an error has a verified file (`trailer` and `page_count` are set then).

Memory is one read buffer plus one batch of pages, whatever the file's size or claims: frames are
contiguous from the header and ascending, so the index is checked entry by entry against a running
offset and compared with the frames through running digests (CRC-64 of the page numbers and of
the frame sizes), never stored.

The frames are decoded by the C loop in ltx/_frames.c where it was built, else by the Python loop
(`_python_batches`, the reference); the two accept, refuse and name exactly the same things.
`slot_batches()` hands the pages out as one buffer per batch, without a copy per page, for the
hydrator; it decodes straight from the stream's reads when these are memoryviews.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from types import ModuleType
from typing import Protocol

import lz4.block
from fastcrc import crc64

from ltx.checksum import CRC64_EMPTY, file_checksum
from ltx.errors import (
    LTXChecksumError,
    LTXError,
    LTXIndexError,
    LTXLockPageError,
    LTXPageError,
    LTXPageOrderError,
    LTXTrailerError,
    LTXTruncatedError,
)
from ltx.frame import FRAME_PREFIX_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, PageHeader, decompress_page, lz4_bound
from ltx.header import HEADER_SIZE, Header
from ltx.index import INDEX_SIZE_FIELD, MAX_INDEX_ENTRY_SIZE, read_uvarint
from ltx.native import load_frames
from ltx.pageslots import PageSlots
from ltx.trailer import TRAILER_SIZE, Trailer

#: Bytes asked of the stream per read.
READ_SIZE = 256 * 1024
#: Decoded page bytes handed over per batch at most (a read of well-compressed pages holds many).
BATCH_BYTES = 1024 * 1024
#: The C loop's batch buffer (frame prefixes and decoded pages): a batch ends when this is full,
#: and for `batches()` also at a read's end. Half of BATCH_BYTES keeps the decoder's working memory
#: under 1 MiB.
NATIVE_BATCH_BYTES = 512 * 1024
_PREFIX = struct.Struct(">IHI")
_U64 = struct.Struct(">Q")
#: Array typecode of a batch's page numbers, and of the frame sizes and index values digested
#: (64 bits: any index varint fits, so values are digested before they are judged).
PGNO_TYPECODE = "Q"
_crc = crc64.go_iso


#: The C frame loop (ltx/_frames.c), or None where it was not built: the Python loop then does the
#: same work, slower.
_frames = load_frames()


def native_frames() -> bool:
    """Whether page frames are decoded by the C loop (ltx._frames) rather than the Python one."""
    return _frames is not None


class Readable(Protocol):
    """What a decoder reads from: a stream of the file's bytes."""

    def read(self, size: int = ..., /) -> bytes | memoryview: ...


#: The pages of one batch: their page numbers and their images, in file order.
PageBatch = tuple["array[int]", list[bytes]]


class Decoder:
    """Decode one LTX file from a readable stream; `name` identifies it in errors. The header is
    read and checked on construction; `n` counts the bytes consumed so far. With `fast_index`,
    the page index is checked vectorised (ltx.fastindex) when the rest of the file fits
    FAST_INDEX_MAX_BYTES, which it then holds in memory: faster for large files, at the cost of
    the constant memory the streaming check keeps."""

    def __init__(self, src: Readable, name: str = "", read_size: int = READ_SIZE, fast_index: bool = False) -> None:
        self.name = name
        self._src = src
        self._read_size = read_size
        self._fast_index = fast_index
        self.n = 0
        raw = self._read_header()
        self.header = Header.decode(raw, name)
        self.header.validate(name)
        self.n = HEADER_SIZE
        self._crc = _crc(raw)
        self.trailer: Trailer | None = None
        self.page_count: int | None = None
        self._started = False
        #: (bridge, bytes of it from the earlier read, the later read) while decoding in a bridge
        self._bridge: tuple[bytes, int, memoryview] | None = None
        #: bytes of the later read a bridge takes beyond the frame cut: the largest frame
        self._bridge_extra = FRAME_PREFIX_SIZE + lz4_bound(self.header.page_size)

    def _read_header(self) -> bytes:
        data = bytes(self._src.read(HEADER_SIZE))
        while len(data) < HEADER_SIZE:
            more = self._src.read(HEADER_SIZE - len(data))
            if not more:
                raise LTXTruncatedError(self.name, len(data),
                                        f"file ends inside the header ({len(data)} of {HEADER_SIZE} bytes)")
            data += more
        return data

    def _refill(self, buf: bytes | memoryview, pos: int, need: int) -> bytes:
        """The bytes of `buf` from `pos` on, then reads until at least `need` are held (fewer only
        at the end of the stream)."""
        have = len(buf) - pos
        parts: list[bytes | memoryview] = [memoryview(buf)[pos:]] if have else []
        while have < need:
            more = self._src.read(self._read_size)
            if not more:
                break
            parts.append(more)
            have += len(more)
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _refill_views(self, buf: bytes | memoryview, pos: int, need: int) -> bytes | memoryview:
        """As `_refill`, copying as little as it can of streams that hand out large reads (such as
        memoryviews of fetched chunks): a read is used in place, and only a frame cut between two
        reads is copied, into a small bridge (the rest of the earlier read, then the start of the
        next); once past the earlier read's bytes, decoding goes on in the next read itself."""
        bridge = self._bridge
        self._bridge = None
        if bridge is not None and buf is bridge[0] and pos >= bridge[1]:
            buf, pos = bridge[2][pos - bridge[1]:], 0  # the same bytes, in the read itself
            if len(buf) >= need:
                return buf
        have = len(buf) - pos
        piece = self._src.read(self._read_size)
        if have == 0 and len(piece) >= need:
            return piece
        take = min(len(piece), max(need - have, 0) + self._bridge_extra)
        if have + take < need:  # short reads: gather them as _refill does
            return self._refill(b"".join((buf[pos:], piece)), 0, need)
        joined = b"".join((buf[pos:], piece[:take]))
        if take < len(piece):
            self._bridge = (joined, have, memoryview(piece))
        return joined

    def _unbridge(self, buf: bytes | memoryview, pos: int, base: int) -> tuple[bytes | memoryview, int, int]:
        """(buf, pos, base) holding every byte not yet consumed, the rest of the read behind a
        pending bridge included (for what follows the page frames)."""
        bridge = self._bridge
        self._bridge = None
        if bridge is None or buf is not bridge[0]:
            return buf, pos, base
        joined, before, piece = bridge
        if pos >= before:
            return piece[pos - before:], 0, base + pos
        return b"".join((joined[pos:], piece[len(joined) - before:])), 0, base + pos

    @property
    def verified(self) -> bool:
        """Every page was read and the index, trailer and file checksum were checked."""
        return self.trailer is not None

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """Yield every (pgno, page); validates the index, trailer and checksum after the last."""
        for pgnos, pages in self.batches():
            yield from zip(pgnos, pages, strict=True)

    def verify(self) -> Trailer:
        """Read the whole file, checking everything; return the trailer."""
        for _ in self.batches():
            pass
        assert self.trailer is not None
        return self.trailer

    def batches(self) -> Iterator[PageBatch]:
        """Yield the pages in file order, a batch per large read (at most BATCH_BYTES of pages),
        with their page numbers; validates the index, trailer and checksum after the last."""
        if _frames is None:
            return self._python_batches()
        return ((slots.pgnos, _frames.page_list(slots.buf, len(slots), slots.page_size))
                for slots in self._native_slots(_frames, reuse=True))

    def slot_batches(self) -> Iterator[PageSlots]:
        """As `batches()`, each batch one buffer of pages (`PageSlots`): no object per page at all,
        for a caller that patches pages in place and writes them out (`PageSlots.write_to`)."""
        if _frames is not None:
            return self._native_slots(_frames)
        return (PageSlots(pgnos, bytearray(b"".join(pages)), self.header.page_size, self.header.page_size)
                for pgnos, pages in self._python_batches())

    def _start(self) -> None:
        if self._started:
            raise RuntimeError(f"{self.name}: a decoder's pages may be iterated once")
        self._started = True

    def _native_slots(self, frames: ModuleType, reuse: bool = False) -> Iterator[PageSlots]:
        """The frame loop of `_python_batches` run by ltx._frames, a batch at a time into one buffer
        laid out as the checksum reads it (each frame's prefix, then its page), so the batch is
        checksummed in one call. A frame off the common path (the end marker, the lock page, any
        error) is handled here in Python exactly as `_python_batches` handles it. With `reuse`, every
        batch comes in the same buffer (for a caller that copies the pages out before the next)."""
        self._start()
        hdr = self.header
        name = self.name
        ps = hdr.page_size
        commit = hdr.commit
        lock = hdr.lock_pgno
        snapshot = hdr.is_snapshot
        stride = FRAME_PREFIX_SIZE + ps
        per_batch = max(1, min(BATCH_BYTES // ps, NATIVE_BATCH_BYTES // stride))
        decode = frames.decode_frames
        stop_full, stop_need, stop_slow = frames.STOP_FULL, frames.STOP_NEED_INPUT, frames.STOP_SLOW_FRAME
        unpack = _PREFIX.unpack_from
        crc = self._crc
        pgno_digest = size_digest = CRC64_EMPTY
        hi = lock if lock <= commit else commit + 1
        prev = count = 0
        buf: bytes | memoryview = b""
        pos = 0
        base = HEADER_SIZE  # file offset of buf[0]
        need = FRAME_PREFIX_SIZE  # bytes from pos the loop needs before it can go on
        ended = False
        blank = bytes(8 * per_batch)
        scratch = frames.scratch  # not zero-filled: only the slots filled are ever read
        out = scratch(per_batch * stride)
        while not ended:
            if count and not reuse:
                out = scratch(per_batch * stride)
            pgnos: array[int] = array(PGNO_TYPECODE, blank)
            sizes: array[int] = array(PGNO_TYPECODE, blank)
            n = 0
            while n < per_batch:
                if len(buf) - pos < need:
                    buf = self._refill_views(buf, pos, need)
                    base += pos
                    pos = 0
                    if len(buf) < need:
                        raise self._cut_in_frames(buf, base)
                need = FRAME_PREFIX_SIZE
                pos, got, stop = decode(buf, pos, ps, n, per_batch, out, pgnos, sizes, prev, hi, snapshot)
                if got:
                    n += got
                    prev = pgnos[n - 1]
                if stop == stop_full:
                    break
                if stop == stop_need:
                    if len(buf) - pos >= FRAME_PREFIX_SIZE:
                        need = FRAME_PREFIX_SIZE + unpack(buf, pos)[2]
                    if n and reuse:
                        break  # a batch per read, as in _python_batches; else fill the new buffer
                    continue
                # One frame in Python: off the common path, or a block the C decoder refused.
                pgno, flags, size = unpack(buf, pos)
                if stop == stop_slow:
                    if pgno == 0 and flags == 0:
                        ended = True
                        break
                    hi = _check_frame(hdr, name, base + pos, pgno, flags, size, prev)
                start = pos + FRAME_PREFIX_SIZE
                end = start + size
                if end > len(buf):
                    need = end - pos  # decoded after the refill (by C, or here again)
                    continue
                page = decompress_page(memoryview(buf)[start:end], ps, name, base + pos, pgno)
                at = n * stride
                out[at:at + FRAME_PREFIX_SIZE] = buf[pos:start]
                out[at + FRAME_PREFIX_SIZE:at + stride] = page
                pgnos[n] = pgno
                sizes[n] = end - pos
                n += 1
                prev = pgno
                pos = end
            crc = _crc(memoryview(out)[:n * stride], crc)
            if ended:
                pos += PAGE_HEADER_SIZE
                crc = _crc(bytes(PAGE_HEADER_SIZE), crc)
            count += n
            if n:
                del pgnos[n:], sizes[n:]
                pgno_digest = _crc(pgnos, pgno_digest)
                size_digest = _crc(sizes, size_digest)
                self.n = base + pos
                yield PageSlots(pgnos, out, ps, stride)
        self._check_snapshot_end(prev, base + pos - PAGE_HEADER_SIZE)
        buf, pos, base = self._unbridge(buf, pos, base)
        self._finish(buf, pos, base, crc, count, pgno_digest, size_digest)

    def _python_batches(self) -> Iterator[PageBatch]:
        """The reference frame loop: one page at a time through lz4.block."""
        self._start()
        hdr = self.header
        name = self.name
        ps = hdr.page_size
        commit = hdr.commit
        lock = hdr.lock_pgno
        snapshot = hdr.is_snapshot
        bound = lz4_bound(ps)
        per_batch = max(1, BATCH_BYTES // ps)
        decompress = lz4.block.decompress
        unpack = _PREFIX.unpack_from
        crc = self._crc
        pgno_digest = size_digest = CRC64_EMPTY
        # Page numbers from `hi` on need a closer look: the lock page, then those beyond the commit.
        hi = lock if lock <= commit else commit + 1
        prev = count = 0
        buf = b""
        pos = 0
        base = HEADER_SIZE  # file offset of buf[0]
        need = FRAME_PREFIX_SIZE  # bytes from pos the loop needs before it can go on
        ended = False
        while not ended:
            if len(buf) - pos < need:
                buf = self._refill(buf, pos, need)
                base += pos
                pos = 0
                if len(buf) < need:
                    raise self._cut_in_frames(buf, base)
            view = memoryview(buf)
            last = len(buf) - FRAME_PREFIX_SIZE
            end = len(buf)
            pgnos: array[int] = array(PGNO_TYPECODE)
            sizes: array[int] = array(PGNO_TYPECODE)
            pages: list[bytes] = []
            add_pgno, add_size, add_page = pgnos.append, sizes.append, pages.append
            full = count + per_batch
            need = FRAME_PREFIX_SIZE
            while pos <= last and count < full:
                pgno, flags, size = unpack(buf, pos)
                # One test for the common case; the end marker, errors and the lock page come after.
                if (pgno <= prev or pgno >= hi or flags != PAGE_FLAG_SIZE or size > bound
                        or (snapshot and pgno != prev + 1)):
                    if pgno == 0 and flags == 0:
                        ended = True
                        pos += PAGE_HEADER_SIZE
                        crc = _crc(bytes(PAGE_HEADER_SIZE), crc)
                        break
                    hi = _check_frame(hdr, name, base + pos, pgno, flags, size, prev)
                start = pos + FRAME_PREFIX_SIZE
                stop = start + size
                if stop > end:
                    need = stop - pos  # the frame continues beyond this read
                    break
                try:
                    page = decompress(view[start:stop], ps)
                except lz4.block.LZ4BlockError:
                    page = decompress_page(view[start:stop], ps, name, base + pos, pgno)  # raises, naming it
                if len(page) != ps:
                    decompress_page(view[start:stop], ps, name, base + pos, pgno)
                crc = _crc(page, _crc(buf[pos:start], crc))
                add_pgno(pgno)
                add_size(stop - pos)
                add_page(page)
                prev = pgno
                count += 1
                pos = stop
            if pages:
                pgno_digest = _crc(pgnos, pgno_digest)
                size_digest = _crc(sizes, size_digest)
                self.n = base + pos
                yield pgnos, pages
        self._check_snapshot_end(prev, base + pos - PAGE_HEADER_SIZE)
        self._finish(buf, pos, base, crc, count, pgno_digest, size_digest)

    def _check_snapshot_end(self, last: int, offset: int) -> None:
        """A snapshot's last page must be its commit (or the page before, when that is the lock page)."""
        hdr = self.header
        if hdr.is_snapshot and last != (hdr.commit - 1 if hdr.commit == hdr.lock_pgno else hdr.commit):
            raise LTXPageOrderError(self.name, offset, f"snapshot ends at page {last}, commit is {hdr.commit}")

    def _cut_in_frames(self, buf: bytes | memoryview, base: int) -> LTXTruncatedError:
        """The error for a stream that ended in the page frames, `buf` holding its last bytes."""
        if len(buf) >= PAGE_HEADER_SIZE and buf[:PAGE_HEADER_SIZE] == bytes(PAGE_HEADER_SIZE):
            what = "the page index"
        elif len(buf) >= FRAME_PREFIX_SIZE:
            pgno, _, size = _PREFIX.unpack_from(buf)
            what = f"the frame of page {pgno} ({len(buf)} of {FRAME_PREFIX_SIZE + size} bytes)"
        else:
            what = f"a page header ({len(buf)} of {FRAME_PREFIX_SIZE} bytes)"
        return LTXTruncatedError(self.name, base + len(buf), f"file ends inside {what}")

    def _finish(self, buf: bytes | memoryview, pos: int, base: int, crc: int, count: int, pgno_digest: int,
                size_digest: int) -> None:
        """Check the page index, length field, trailer, end of file and file checksum: vectorised
        (ltx.fastindex) when asked for and the rest of the file is small enough and usual, else
        streaming."""
        if not self._fast_index:
            self._finish_streaming(buf, pos, base, crc, count, pgno_digest, size_digest)
            return
        from ltx import fastindex  # numpy loads only for a decoder that asks for it

        rest, at_eof = self._read_rest(buf, pos, fastindex.FAST_INDEX_MAX_BYTES)
        index_start = base + pos
        if not (at_eof and self._accept_rest(rest, index_start, crc, count, pgno_digest, size_digest)):
            self._finish_streaming(rest, 0, index_start, crc, count, pgno_digest, size_digest)

    def _read_rest(self, buf: bytes | memoryview, pos: int, limit: int) -> tuple[bytes, bool]:
        """The bytes from `buf[pos]` to the end of the stream (True) or to `limit` and a little
        more (False: the stream goes on)."""
        parts = [memoryview(buf)[pos:]]
        have = len(parts[0])
        while have <= limit:
            more = self._src.read(self._read_size)
            if not more:
                return b"".join(parts), True
            parts.append(memoryview(more))
            have += len(more)
        return b"".join(parts), False

    def _accept_rest(self, rest: bytes, index_start: int, crc: int, count: int, pgno_digest: int,
                     size_digest: int) -> bool:
        """Whether `rest` (index to end of file) passes every check; sets the decoder's results."""
        from ltx import fastindex

        end = fastindex.check_entries(rest, count, index_start - PAGE_HEADER_SIZE, pgno_digest, size_digest)
        if end < 0:
            return False
        tail = end + INDEX_SIZE_FIELD + TRAILER_SIZE
        if len(rest) != tail or _U64.unpack_from(rest, end)[0] != end:
            return False
        trailer_at = index_start + end + INDEX_SIZE_FIELD
        trailer = Trailer.decode(rest[end + INDEX_SIZE_FIELD:tail], self.name, trailer_at)
        try:
            trailer.validate(self.header, self.name, trailer_at)
        except LTXError:
            return False
        if file_checksum(_crc(memoryview(rest)[:tail - 8], crc)) != trailer.file_checksum:
            return False
        self.n = index_start + tail
        self.page_count = count
        self.trailer = trailer
        return True

    def _finish_streaming(self, buf: bytes | memoryview, pos: int, base: int, crc: int, count: int, pgno_digest: int,
                          size_digest: int) -> None:
        """Parse the page index from `buf[pos:]` and the stream, a read at a time, checking each
        entry as it comes; then the length field, trailer, end of file and file checksum."""
        if isinstance(buf, memoryview):  # the parsing below works on bytes
            buf, pos, base = bytes(buf[pos:]), 0, base + pos
        name = self.name
        index_start = base + pos
        index = _IndexCheck(name)
        crc_from = pos  # buf[crc_from:pos] is parsed but not yet in the checksum
        eof = False
        while True:
            pos, done = index.feed(buf, pos, base)
            if not done and eof and pos < len(buf):
                pos, done = index.feed_last(buf, pos, base)
            if index.entries > count:
                raise LTXIndexError(name, index_start, f"page index lists {index.entries} or more entries, the "
                                                       f"file holds {count} pages")
            if done:
                break
            if eof and pos >= len(buf):
                raise LTXTruncatedError(name, base + len(buf), "file ends inside the page index")
            if not eof:
                crc = _crc(memoryview(buf)[crc_from:pos], crc)
                left = len(buf) - pos
                buf = self._refill(buf, pos, left + 1)
                base += pos
                pos = crc_from = 0
                eof = len(buf) == left
        crc = _crc(memoryview(buf)[crc_from:pos], crc)
        body_end = base + pos
        index.compare(index_start, body_end, count, pgno_digest, size_digest)
        tail = INDEX_SIZE_FIELD + TRAILER_SIZE
        if len(buf) - pos < tail:
            buf = self._refill(buf, pos, tail)
            base += pos
            pos = 0
            if len(buf) < tail:
                what = "index length field" if len(buf) < INDEX_SIZE_FIELD else "trailer"
                raise LTXTruncatedError(name, base + len(buf), f"file ends inside the {what}")
        (declared,) = _U64.unpack_from(buf, pos)
        if declared != body_end - index_start:
            raise LTXIndexError(name, body_end, f"index length field says {declared} bytes, the index has "
                                                f"{body_end - index_start}")
        trailer_at = base + pos + INDEX_SIZE_FIELD
        trailer = Trailer.decode(buf[pos + INDEX_SIZE_FIELD:pos + tail], name, trailer_at)
        crc = _crc(buf[pos:pos + tail - 8], crc)  # the length field and the post-apply checksum
        file_end = trailer_at + TRAILER_SIZE
        self._check_end(len(buf) - pos - tail, file_end)
        trailer.validate(self.header, name, trailer_at)
        if file_checksum(crc) != trailer.file_checksum:
            raise LTXChecksumError(name, file_end - 8, trailer.file_checksum, file_checksum(crc))
        self.n = file_end
        self.page_count = count
        self.trailer = trailer

    def _check_end(self, extra: int, file_end: int) -> None:
        """Nothing may follow the trailer: `extra` bytes already read do; read a little to be sure."""
        while extra <= self._read_size:
            more = self._src.read(self._read_size)
            if not more:
                break
            extra += len(more)
        if extra:
            at_least = "at least " if extra > self._read_size else ""
            raise LTXTrailerError(self.name, file_end, f"{at_least}{extra} bytes follow the trailer")


def _check_frame(hdr: Header, name: str, offset: int, pgno: int, flags: int, size: int, prev: int) -> int:
    """Raise the error a frame deserves; for a good one (after the lock page), return from which
    page number on frames need this closer look again."""
    PageHeader(pgno, flags).validate(name, offset)
    lock, commit = hdr.lock_pgno, hdr.commit
    if pgno == lock:
        raise LTXLockPageError(name, offset, f"lock page {pgno} is present")
    if pgno > commit:
        raise LTXPageError(name, offset, f"page {pgno} lies beyond the commit ({commit} pages)")
    if hdr.is_snapshot:
        want = prev + 1 if prev + 1 != lock else prev + 2
        if pgno != want:
            raise LTXPageOrderError(name, offset, f"snapshot has page {pgno} where {want} was due")
    elif pgno <= prev:
        raise LTXPageOrderError(name, offset, f"page {pgno} follows page {prev}")
    bound = lz4_bound(hdr.page_size)
    if size > bound:
        raise LTXPageError(name, offset, f"page {pgno}: compressed size {size} exceeds the LZ4 bound {bound} "
                                         f"for {hdr.page_size}-byte pages")
    return lock if pgno < lock <= commit else commit + 1


class _IndexCheck:
    """The page index checked as it streams past: entries ascending, each frame starting where the
    previous one ends (from the header on); running digests of the page numbers and frame sizes to
    compare with the frames'."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.expect = HEADER_SIZE  # where the next entry's frame must start
        self.prev = 0
        self.entries = 0
        self.pgno_digest = self.size_digest = CRC64_EMPTY

    def feed(self, buf: bytes, pos: int, base: int) -> tuple[int, bool]:
        """Check the entries from `buf[pos]` while a whole entry surely fits; return where parsing
        stopped and whether the terminator was read. `base` is the file offset of buf[0]."""
        name = self.name
        expect, prev = self.expect, self.prev
        pgnos: array[int] = array(PGNO_TYPECODE)
        sizes: array[int] = array(PGNO_TYPECODE)
        add_pgno, add_size = pgnos.append, sizes.append
        limit = len(buf) - MAX_INDEX_ENTRY_SIZE
        done = False
        while pos <= limit:
            p, pos = _uvarint(buf, pos, name, base)
            if not p:
                done = True
                break
            o, pos = _uvarint(buf, pos, name, base)
            s, pos = _uvarint(buf, pos, name, base)
            if p <= prev or o != expect:
                raise self._error(base + _entry_start(buf, pos), self.entries + len(pgnos), p, o, s, prev, expect)
            add_pgno(p)
            add_size(s)
            prev = p
            expect += s
        self.expect, self.prev = expect, prev
        self._digest(pgnos, sizes)
        return pos, done

    def feed_last(self, buf: bytes, pos: int, base: int) -> tuple[int, bool]:
        """Check one entry (or the terminator) among the stream's last bytes, reading carefully."""
        at = pos
        try:
            p, pos = read_uvarint(buf, pos, self.name, base)
            if not p:
                return pos, True
            o, pos = read_uvarint(buf, pos, self.name, base)
            s, pos = read_uvarint(buf, pos, self.name, base)
        except LTXTruncatedError as exc:
            raise LTXTruncatedError(self.name, base + len(buf), "file ends inside the page index") from exc
        if p <= self.prev or o != self.expect:
            raise self._error(base + at, self.entries, p, o, s, self.prev, self.expect)
        self.prev = p
        self.expect += s
        self._digest(array(PGNO_TYPECODE, [p]), array(PGNO_TYPECODE, [s]))
        return pos, False

    def _digest(self, pgnos: array[int], sizes: array[int]) -> None:
        if pgnos:
            self.entries += len(pgnos)
            self.pgno_digest = _crc(pgnos, self.pgno_digest)
            self.size_digest = _crc(sizes, self.size_digest)

    def compare(self, start: int, end: int, count: int, pgno_digest: int, size_digest: int) -> None:
        """After the terminator (the index spans [start, end)): the entries must be the frames'."""
        name = self.name
        if self.entries != count:
            raise LTXIndexError(name, end - 1, f"page index lists {self.entries} pages, the file holds {count}")
        frames_end = start - PAGE_HEADER_SIZE
        if self.expect != frames_end:
            raise LTXIndexError(name, start, f"page index entries end at offset {self.expect}, the page frames "
                                             f"at {frames_end}")
        if self.pgno_digest != pgno_digest:
            raise LTXIndexError(name, start, f"page index lists other page numbers than the {count} frames read")
        if self.size_digest != size_digest:
            raise LTXIndexError(name, start, "page index gives other frame sizes than the frames read")

    def _error(self, offset: int, number: int, pgno: int, frame_offset: int, size: int, prev: int,
               expect: int) -> LTXIndexError:
        """The error for index entry `number` (from 0) at file `offset`, which failed the entry test."""
        name = self.name
        entry = f"page index entry {number + 1} (page {pgno}, offset {frame_offset}, size {size})"
        if pgno <= prev:
            return LTXIndexError(name, offset, f"{entry} out of order after page {prev}")
        where = "the header" if number == 0 else "the previous entry's frame"
        return LTXIndexError(name, offset, f"{entry} disagrees with the frames: they are contiguous, so it "
                                           f"must start at {expect}, where {where} ends")


def _uvarint(buf: bytes, pos: int, name: str, base: int) -> tuple[int, int]:
    """Read the varint at `pos` (the caller made sure MAX_VARINT_SIZE bytes follow); return (value,
    next position). Unrolled to five bytes (offsets to 32 GiB), then read_uvarint's checks."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    c = buf[pos + 1]
    if c < 0x80:
        return (b & 0x7F) | c << 7, pos + 2
    d = buf[pos + 2]
    if d < 0x80:
        return (b & 0x7F) | (c & 0x7F) << 7 | d << 14, pos + 3
    e = buf[pos + 3]
    if e < 0x80:
        return (b & 0x7F) | (c & 0x7F) << 7 | (d & 0x7F) << 14 | e << 21, pos + 4
    f = buf[pos + 4]
    if f < 0x80:
        return (b & 0x7F) | (c & 0x7F) << 7 | (d & 0x7F) << 14 | (e & 0x7F) << 21 | f << 28, pos + 5
    return read_uvarint(buf, pos, name, base)


def _entry_start(buf: bytes, end: int) -> int:
    """Where the index entry ending at `end` starts: three varints back (a varint's last byte is
    the only one below 0x80)."""
    pos = end
    for _ in range(3):
        pos -= 1
        while pos > 0 and buf[pos - 1] >= 0x80:
            pos -= 1
    return pos
