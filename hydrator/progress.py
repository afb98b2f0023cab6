"""A snapshot of a hydration's progress, for progress bars and `litestream_hydration_progress`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HydrationProgress:
    """Bytes and files of the current plan done (fetched and verified) versus in all.

    `txid` is the TXID the local file holds (0 before the first snapshot is in place) and
    `target_txid` the last TXID of the current plan; `pages_written` counts pages applied by
    this process."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    pages_written: int
    txid: int
    target_txid: int
    complete: bool

    @property
    def percent(self) -> float:
        """0..100; exactly 100 only once the file is complete."""
        if self.complete:
            return 100.0
        if self.bytes_total <= 0:
            return 0.0
        return min(99.9, 100.0 * self.bytes_done / self.bytes_total)
