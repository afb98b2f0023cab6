"""An LTX decoder whose page-index check runs vectorised (numpy) instead of entry by entry.

`ltx.decoder.Decoder` parses the page index one varint at a time in Python: for a snapshot of
64k pages that is about 0.1 s, all of it after the last page (nothing overlaps it). Here the
rest of the file (index, length field, trailer) is read whole when small enough, its varints
decoded with array operations and checked exactly as the base decoder does: entries ascending,
each frame starting where the previous one ends, CRC-64 digests of page numbers and frame sizes
equal to the frames', the length field, the trailer and the file checksum. Anything unusual (a
varint of 10 bytes, a non-canonical terminator, any failed check, an index larger than
FAST_INDEX_MAX_BYTES) hands the same bytes to the base decoder, whose check decides and names
the error: this path only ever accepts what the base decoder accepts.
"""

from __future__ import annotations

import struct

import numpy as np
from fastcrc import crc64

from ltx.checksum import file_checksum
from ltx.decoder import MAX_INDEX_ENTRY_SIZE, Decoder
from ltx.errors import LTXError
from ltx.frame import PAGE_HEADER_SIZE
from ltx.header import HEADER_SIZE
from ltx.index import INDEX_SIZE_FIELD
from ltx.trailer import TRAILER_SIZE, Trailer

#: The rest of a file (from its page index on) is checked in memory up to this many bytes (an
#: index of about two million pages); beyond, the base decoder's streaming check runs.
FAST_INDEX_MAX_BYTES = 16 * 1024 * 1024
#: Index entries decoded per vectorised step (bounds the temporary arrays to a few MB).
FAST_INDEX_WINDOW = 64 * 1024
#: Varints longer than this go to the base decoder (it checks the 64-bit overflow of a 10th byte).
FAST_VARINT_MAX = 9
_U64_BE = struct.Struct(">Q")
_crc = crc64.go_iso


class FastIndexDecoder(Decoder):
    """`ltx.decoder.Decoder` with the page-index check vectorised (same checks, same errors)."""

    def _finish(self, buf: bytes, pos: int, base: int, crc: int, count: int, pgno_digest: int,
                size_digest: int) -> None:
        rest, at_eof = self._read_rest(buf, pos)
        index_start = base + pos
        if not (at_eof and self._accept(rest, index_start, crc, count, pgno_digest, size_digest)):
            super()._finish(rest, 0, index_start, crc, count, pgno_digest, size_digest)

    def _read_rest(self, buf: bytes, pos: int) -> tuple[bytes, bool]:
        """The bytes from `buf[pos]` to the end of the stream (True) or to FAST_INDEX_MAX_BYTES
        and a little more (False: the stream goes on)."""
        parts = [memoryview(buf)[pos:]]
        have = len(parts[0])
        while have <= FAST_INDEX_MAX_BYTES:
            more = self._src.read(self._read_size)
            if not more:
                return b"".join(parts), True
            parts.append(memoryview(more))
            have += len(more)
        return b"".join(parts), False

    def _accept(self, rest: bytes, index_start: int, crc: int, count: int, pgno_digest: int,
                size_digest: int) -> bool:
        """Whether `rest` (index to end of file) passes every check; sets the decoder's results."""
        end = _check_entries(rest, count, index_start - PAGE_HEADER_SIZE, pgno_digest, size_digest)
        if end < 0:
            return False
        tail = end + INDEX_SIZE_FIELD + TRAILER_SIZE
        if len(rest) != tail or _U64_BE.unpack_from(rest, end)[0] != end:
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


def _check_entries(data: bytes, count: int, frames_end: int, pgno_digest: int, size_digest: int) -> int:
    """Check the `count` index entries and terminator at the start of `data` against the frames;
    return where the terminator ends, or -1 when the base decoder has to decide."""
    arr = np.frombuffer(data, dtype=np.uint8)
    pos = 0
    done = 0
    prev = 0
    expect = HEADER_SIZE
    pd = sd = 0
    while done < count:
        want = min(count - done, FAST_INDEX_WINDOW)
        window = arr[pos:pos + want * MAX_INDEX_ENTRY_SIZE]
        ends = np.flatnonzero(window < 0x80)[:3 * want]
        if len(ends) < 3 * want:
            return -1
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts + 1
        if int(lengths.max()) > FAST_VARINT_MAX:
            return -1
        used = int(ends[-1]) + 1
        shifts = (np.arange(used) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
        groups = (window[:used] & 0x7F).astype(np.uint64) << shifts
        values = np.add.reduceat(groups, starts)
        pgnos = np.ascontiguousarray(values[0::3])
        offsets = values[1::3]
        sizes = np.ascontiguousarray(values[2::3])
        # Values stay below 2**63 (at most 9 varint bytes), so a sum of two cannot wrap.
        if (int(pgnos[0]) <= prev or bool((pgnos[1:] <= pgnos[:-1]).any()) or int(offsets[0]) != expect
                or bool((offsets[1:] != offsets[:-1] + sizes[:-1]).any())):
            return -1
        pd = _crc(_native_u64(pgnos), pd)
        sd = _crc(_native_u64(sizes), sd)
        prev = int(pgnos[-1])
        expect = int(offsets[-1]) + int(sizes[-1])
        done += want
        pos += used
    if pos >= len(data) or data[pos] != 0:
        return -1
    if expect != frames_end or pd != pgno_digest or sd != size_digest:
        return -1
    return pos + 1


def _native_u64(values: np.ndarray) -> bytes:
    """The bytes `array('Q', values)` would hold (the base decoder digests those)."""
    return values.astype(np.dtype("=u8"), copy=False).tobytes()

