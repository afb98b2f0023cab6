"""fsck: every referenced block exists with the right size, and the metadata agrees with itself
(entries point at nodes of their type, nlink, chunk refs, dir stats, volume counters).

With `repair`, the derived values blockmap can recompute safely are rewritten: directory nlink,
dir stats and the volume counters (what `juicefs fsck --repair --sync-dir-stat` fixes).
Missing blocks cannot be repaired: they are reported with the files they break.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import apsw

from blockmap.accounting import align4k, calc_dir_stat
from blockmap.blocks import BlockObject, block_sizes
from blockmap.counters import TOTAL_INODES, USED_SPACE
from blockmap.errors import CorruptMetadataError
from blockmap.meta import as_bytes, as_int
from blockmap.node import ROOT_INODE, TRASH_INODE, TYPE_DIRECTORY, TYPE_FILE, TYPE_SYMLINK
from blockmap.release import decode_delayed
from blockmap.slices import decode_records

if TYPE_CHECKING:
    from blockmap.engine import Engine


@dataclass
class FsckReport:
    """Problems found; `ok` when there are none."""

    problems: list[str] = field(default_factory=list)
    missing_blocks: list[str] = field(default_factory=list)
    broken_files: dict[int, str] = field(default_factory=dict)
    files: int = 0
    slices: int = 0
    blocks: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing_blocks


def path_of(cursor: apsw.Cursor, inode: int) -> str:
    """One path of `inode` (via its entries), or `inode:<n>` when it has none."""
    parts: list[str] = []
    cur = inode
    for _ in range(4096):
        if cur == ROOT_INODE:
            return "/" + "/".join(reversed(parts))
        row = cursor.execute("SELECT parent, name FROM jfs_edge WHERE inode = ? LIMIT 1", (cur,)).fetchone()
        if row is None:
            break
        parts.append(as_bytes(row[1]).decode("utf-8", "surrogateescape"))
        cur = as_int(row[0])
    return f"inode:{inode}"


def _metadata(cursor: apsw.Cursor, report: FsckReport, dir_stats: bool) -> dict[str, object]:
    """Check the tables against each other; returns the recomputed values repair would write."""
    nodes: dict[int, tuple[int, int, int]] = {}
    for ino, typ, nlink, length in cursor.execute("SELECT inode, type, nlink, length FROM jfs_node"):
        nodes[as_int(ino)] = (as_int(typ), as_int(nlink), as_int(length))
    links: collections.Counter[int] = collections.Counter()
    subdirs: collections.Counter[int] = collections.Counter()
    for parent, name, ino, typ in cursor.execute("SELECT parent, name, inode, type FROM jfs_edge"):
        p, i, t = as_int(parent), as_int(ino), as_int(typ)
        links[i] += 1
        if t == TYPE_DIRECTORY:
            subdirs[p] += 1
        if i not in nodes:
            report.problems.append(f"entry {path_of(cursor, p)}/{as_bytes(name)!r} points at missing inode {i}")
        elif nodes[i][0] != t:
            report.problems.append(f"entry for inode {i} says type {t}, the node says {nodes[i][0]}")
    detached = {as_int(r[0]) for r in cursor.execute("SELECT inode FROM jfs_detached_node")}
    fix_nlink: dict[int, int] = {}
    used = count = 0
    for ino, (typ, nlink, length) in nodes.items():
        if ino in (ROOT_INODE, TRASH_INODE):
            want = 2 + subdirs[ino] if ino == ROOT_INODE else nlink
        elif typ == TYPE_DIRECTORY:
            want = 2 + subdirs[ino]
        else:
            want = links[ino]
        if ino not in (ROOT_INODE, TRASH_INODE):
            used += align4k(length if typ in (TYPE_FILE, TYPE_SYMLINK) else 0)
            count += 1
            if links[ino] == 0 and ino not in detached:
                report.problems.append(f"inode {ino} has no entry (orphan)")
        if nlink != want and ino not in detached and ino < TRASH_INODE:
            report.problems.append(f"nlink of {path_of(cursor, ino)} is {nlink}, should be {want}")
            if typ == TYPE_DIRECTORY:
                fix_nlink[ino] = want
        if typ == TYPE_SYMLINK and not cursor.execute(
            "SELECT 1 FROM jfs_symlink WHERE inode = ?", (ino,)
        ).fetchone():
            report.problems.append(f"symlink {path_of(cursor, ino)} has no target row")
    counters = dict(cursor.execute("SELECT name, value FROM jfs_counter"))
    if counters.get(USED_SPACE) != used:
        report.problems.append(f"usedSpace is {counters.get(USED_SPACE)}, should be {used}")
    if counters.get(TOTAL_INODES) != count:
        report.problems.append(f"totalInodes is {counters.get(TOTAL_INODES)}, should be {count}")
    fix_stats: dict[int, tuple[int, int, int]] = {}
    if dir_stats:
        stats = {
            as_int(r[0]): (as_int(r[1]), as_int(r[2]), as_int(r[3]))
            for r in cursor.execute("SELECT inode, data_length, used_space, used_inodes FROM jfs_dir_stats")
        }
        for ino, (typ, _, _) in nodes.items():
            if typ != TYPE_DIRECTORY or ino == TRASH_INODE:
                continue
            want_stat = calc_dir_stat(cursor, ino)
            got = stats.get(ino)
            if got is None and want_stat[2] == 0:
                continue
            if got is None or got[1:] != want_stat[1:]:
                report.problems.append(f"dir stats of {path_of(cursor, ino)} are {got}, should be {want_stat}")
                fix_stats[ino] = want_stat
    # Chunk refs: one per record (and per delayed-slice entry).
    refs: collections.Counter[int] = collections.Counter()
    for inode, indx, blob in cursor.execute("SELECT inode, indx, CAST(slices AS BLOB) FROM jfs_chunk"):
        try:
            records = decode_records(blob, f"chunk {inode}:{indx}")
        except CorruptMetadataError as exc:
            report.problems.append(str(exc))
            continue
        for r in records:
            if r.id:
                refs[r.id] += 1
    for (blob,) in cursor.execute("SELECT slices FROM jfs_delslices"):
        for sid, _ in decode_delayed(as_bytes(blob)):
            refs[sid] += 1
    rows = {as_int(a): as_int(b) for a, b in cursor.execute("SELECT chunkid, refs FROM jfs_chunk_ref")}
    for sid, n in refs.items():
        if rows.get(sid) != n:
            report.problems.append(f"slice {sid} has refs {rows.get(sid)}, but {n} records name it")
    return {"nlink": fix_nlink, "stats": fix_stats, "used": used, "count": count}


def fsck(eng: Engine, *, repair: bool = False) -> FsckReport:
    report = FsckReport()
    store_sizes: dict[str, int] = {}
    for obj in eng.blocks.list_blocks():
        if isinstance(obj, BlockObject):
            store_sizes[obj.info.key] = obj.info.size

    def check(c: apsw.Cursor) -> dict[str, object]:
        pending = {as_int(r[0]) for r in c.execute("SELECT inode FROM jfs_delfile")}
        seen: set[int] = set()
        files: set[int] = set()
        for inode, indx, blob in c.execute("SELECT inode, indx, CAST(slices AS BLOB) FROM jfs_chunk").fetchall():
            ino = as_int(inode)
            if ino in pending:
                continue
            files.add(ino)
            try:
                records = decode_records(blob, f"chunk {ino}:{indx}")
            except CorruptMetadataError:
                continue  # reported by _metadata
            for r in records:
                if not r.id or r.id in seen:
                    continue
                seen.add(r.id)
                for key, (index, size) in zip(
                    eng.blocks.keys(r.id, r.size),
                    enumerate(block_sizes(r.size, eng.settings.block_size)),
                    strict=True,
                ):
                    got = store_sizes.get(key)
                    if got != size:
                        what = "missing" if got is None else f"{got} bytes, expected {size}"
                        report.missing_blocks.append(f"{key} ({what}, block {index})")
                        report.broken_files.setdefault(ino, path_of(c, ino))
        report.files = len(files)
        report.slices = len(seen)
        report.blocks = len(store_sizes)
        return _metadata(c, report, eng.settings.dir_stats)

    fixes = eng.read(check)
    if repair:
        _repair(eng, report, fixes)
    return report


def _repair(eng: Engine, report: FsckReport, fixes: dict[str, object]) -> None:
    nlink: dict[int, int] = fixes["nlink"]  # type: ignore[assignment]
    stats: dict[int, tuple[int, int, int]] = fixes["stats"]  # type: ignore[assignment]

    def body(c: apsw.Cursor) -> None:
        for ino, n in nlink.items():
            c.execute("UPDATE jfs_node SET nlink = ? WHERE inode = ?", (n, ino))
            report.repaired.append(f"nlink of inode {ino} set to {n}")
        for ino, (length, space, inodes) in stats.items():
            c.execute(
                "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (inode) DO UPDATE SET data_length = excluded.data_length,"
                " used_space = excluded.used_space, used_inodes = excluded.used_inodes",
                (ino, length, space, inodes),
            )
            report.repaired.append(f"dir stats of inode {ino} recomputed")
        c.execute("UPDATE jfs_counter SET value = ? WHERE name = ?", (fixes["used"], USED_SPACE))
        c.execute("UPDATE jfs_counter SET value = ? WHERE name = ?", (fixes["count"], TOTAL_INODES))

    eng.write(body)
