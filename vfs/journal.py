"""The rollback journal of an ltxvfs database: a private, anonymous local temporary file.

SQLite writes the original of every page it changes to the journal, and plays the journal back
on ROLLBACK (or when a commit fails) through xWrite. For ltxvfs the journal only ever matters
inside the process that wrote it: the replica holds committed transactions only, so a journal
left behind by a crash is never a "hot" journal to replay (the VFS reports none). Hence the
journal is a temporary file of the base VFS that is unlinked at once:

- it never collides with another connection's or process's journal of the same name, and never
  outlives the process (a SIGKILL leaves nothing behind);
- its syncs are skipped: nobody reads it after a crash.
"""

from __future__ import annotations

import apsw

#: Open flags of the private file: a temporary journal the base VFS deletes on close.
_KEEP = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
_PRIVATE = apsw.SQLITE_OPEN_TEMP_JOURNAL | apsw.SQLITE_OPEN_DELETEONCLOSE | apsw.SQLITE_OPEN_EXCLUSIVE


class PrivateJournal(apsw.VFSFile):
    """A main-database journal kept in an anonymous temporary file of the base VFS `base`."""

    def __init__(self, base: str, flags: list[int]) -> None:
        private = (flags[0] & _KEEP) | _KEEP | _PRIVATE
        super().__init__(base, None, [private, 0])
        flags[1] = flags[0]

    def xSync(self, flags: int) -> None:
        return None
