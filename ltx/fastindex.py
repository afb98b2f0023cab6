"""The page-index check of `ltx.decoder`, vectorised with numpy: used when the rest of a file
(index, length field, trailer) fits FAST_INDEX_MAX_BYTES. Parsing the index a varint at a time
in Python costs ~0.1 s for a 64k-page snapshot, all of it after the last page; here the varints
are decoded with array operations and checked as the decoder checks them (entries ascending,
each frame starting where the previous one ends, CRC-64 digests of page numbers and frame sizes
equal to the frames'). Anything unusual (a varint of 10 bytes, a non-canonical terminator, any
failed check) answers -1, and the decoder's streaming check decides and names the error: this
path only ever accepts what that check accepts.
"""

from __future__ import annotations

import numpy as np
from fastcrc import crc64

from ltx.header import HEADER_SIZE
from ltx.index import MAX_INDEX_ENTRY_SIZE

#: The rest of a file (from its page index on) is checked in memory up to this many bytes (an
#: index of about two million pages); beyond, the streaming check runs.
FAST_INDEX_MAX_BYTES = 16 * 1024 * 1024
#: Index entries decoded per vectorised step (bounds the temporary arrays to a few MB).
FAST_INDEX_WINDOW = 64 * 1024
#: Varints longer than this go to the streaming check (it checks the 64-bit overflow of a 10th byte).
FAST_VARINT_MAX = 9
_crc = crc64.go_iso


def check_entries(data: bytes, count: int, frames_end: int, pgno_digest: int, size_digest: int) -> int:
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

