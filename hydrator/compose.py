"""A snapshot and the verified files that follow it, resolved into one pass of page writes.

Applying files one after the other (each file's pages, then a cut to its commit) writes a page
once per file that holds it; after the snapshot's writeback has begun, each later write dirties
a random page again and the final fsync pays one random write per page. `Composition` instead
works out, before the snapshot is decoded, what every page holds once all files are applied, so
the snapshot's stream writes each page's final image in place (sequential, once) and only pages
beyond the snapshot's commit are written afterwards. The result equals applying the files in
order: a page holds the image of the last file writing it, unless a file after that one cut the
database below it (then it reads as zeros, or lies beyond the end).
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence

from hydrator.apply import (
    APPLY_READ_PAGES,
    HYDRATION_ADVICE,
    AsyncPageWriter,
    HeaderMismatchError,
    VerifiedFile,
    check_header,
    preallocate,
)
from ltx.dbheader import check_commit
from ltx.decoder import Decoder, Readable
from ltx.header import Header
from ltx.pageslots import PageSlots
from ltx.pagewrite import write_pages
from ltx.plan import LTXFileInfo


class Composition:
    """The final images of pages rewritten by `files` (verified, in TXID order, following a snapshot
    of `snapshot_commit` pages of `page_size` bytes)."""

    def __init__(self, files: Sequence[VerifiedFile], snapshot_commit: int, page_size: int) -> None:
        self._files = files
        self._page_size = page_size
        self._zero = bytes(page_size)
        self.snapshot_commit = snapshot_commit
        #: The database's size in pages after the last file.
        self.commit = files[-1].header.commit if files else snapshot_commit
        # after[k]: the smallest commit of the files after file k (a page of file k above it is cut).
        after = [0] * len(files)
        cut = self.commit
        for k in range(len(files) - 1, -1, -1):
            after[k] = cut
            cut = min(cut, files[k].header.commit)
        #: Snapshot pages above this were cut by some file (zeros unless a later file rewrote them).
        self.cut = cut
        final: dict[int, tuple[int, int]] = {}
        for k, vf in enumerate(files):
            limit = after[k]
            for i, pgno in enumerate(vf.pgnos):
                if pgno <= limit:
                    final[pgno] = (k, i)
        self._final = final
        self._rewritten = sorted(final)

    def _image(self, pgno: int) -> bytes:
        k, i = self._final[pgno]
        spill = self._files[k].spill
        spill.seek(i * self._page_size)
        page = spill.read(self._page_size)
        if len(page) != self._page_size:
            raise OSError(f"{self._files[k].name}: the spill file lost pages")
        return page

    def resolve(self, slots: PageSlots) -> None:
        """Replace, in place, the snapshot pages of one batch by their final images."""
        pgnos = slots.pgnos
        first, last = pgnos[0], pgnos[-1]
        lo = bisect_left(self._rewritten, first)
        hi = bisect_right(self._rewritten, last, lo)
        start = 0
        for pgno in self._rewritten[lo:hi]:
            at = bisect_left(pgnos, pgno, start)
            if at < len(pgnos) and pgnos[at] == pgno:
                slots.replace(at, self._image(pgno))
                start = at + 1
        if last > self.cut and first <= self.commit:  # cut and not rewritten: zeros
            for at in range(bisect_right(pgnos, self.cut), bisect_right(pgnos, self.commit)):
                if pgnos[at] not in self._final:
                    slots.replace(at, self._zero)

    def beyond_snapshot(self) -> Iterator[tuple[array[int], list[bytes]]]:
        """Final images of pages past the snapshot's commit, ascending, a batch at a time."""
        tail = self._rewritten[bisect_right(self._rewritten, self.snapshot_commit):]
        for i in range(0, len(tail), APPLY_READ_PAGES):
            part = tail[i:i + APPLY_READ_PAGES]
            yield array("Q", part), [self._image(p) for p in part]


def verify_snapshot_into(stream: Readable, name: str, fd: int, *, info: LTXFileInfo | None = None,
                         then: Sequence[VerifiedFile] = ()) -> Header:
    """Decode a snapshot straight into the empty file `fd` and verify it, with the verified files
    `then` (those following it, in TXID order) resolved into the same writes (`Composition`);
    cut the file to the last commit and fsync. The caller renames the file into place only after
    this returns; nothing of `then` is trusted before, as they were verified whole already."""
    dec = Decoder(stream, name, fast_index=True)
    header = dec.header
    check_header(header, name, info, 0)
    if not header.is_snapshot:
        raise HeaderMismatchError(name, 16, "a hydration must start from a snapshot (min TXID 1)")
    ps = header.page_size
    for vf in then:
        if vf.header.page_size != ps:
            raise HeaderMismatchError(vf.name, 8, f"page size {vf.header.page_size} differs from the "
                                                  f"snapshot's {ps}")
    composition = Composition(then, header.commit, ps) if then else None
    # Page 1 (a snapshot's first page) must agree with the commits before anything is allocated:
    # a hostile commit would reserve terabytes. The snapshot's own, then the composed result's.
    batches = dec.slot_batches()
    first = next(batches, None)
    has_page1 = first is not None and len(first) > 0 and first.pgnos[0] == 1
    if first is not None and has_page1:
        check_commit(name, header.commit, first.page(0), HYDRATION_ADVICE)
    if first is not None and composition is not None:
        composition.resolve(first)
        if has_page1:
            check_commit(then[-1].name, composition.commit, first.page(0), HYDRATION_ADVICE)
    preallocate(fd, header.commit * ps)
    writer = AsyncPageWriter(fd, ps)
    try:
        if first is not None:
            writer.submit(first)
        for slots in batches:
            if composition is not None:
                composition.resolve(slots)
            writer.submit(slots)
    except BaseException:
        writer.close()
        raise
    assert dec.verified
    if composition is None:
        writer.finish(header.commit * ps)
        return header
    writer.finish(sync=False)  # the fsync below covers these writes too
    for pgnos, images in composition.beyond_snapshot():
        write_pages(fd, ps, pgnos, images)
    os.ftruncate(fd, composition.commit * ps)
    os.fsync(fd)
    return header
