"""Independent checks of a volume's metadata invariants, computed straight from the tables.

Written separately from blockmap's own code so the tests do not grade blockmap with itself.
"""

from __future__ import annotations

import collections

import apsw


def _align(n: int) -> int:
    return 4096 if n <= 0 else -(-n // 4096) * 4096


def metadata_problems(meta: str | apsw.Connection) -> list[str]:
    """Everything wrong with counters, dir stats, nlink and chunk refs (empty when consistent).
    `meta` is a local database path, or an open connection (one transaction is read)."""
    if isinstance(meta, apsw.Connection):
        with meta:
            return _problems(meta)
    db = apsw.Connection(str(meta), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return _problems(db)
    finally:
        db.close()


def _problems(db: apsw.Connection) -> list[str]:
    out: list[str] = []
    nodes = {r[0]: r for r in db.execute("SELECT inode, type, nlink, length, parent FROM jfs_node")}
    edges = list(db.execute("SELECT parent, name, inode, type FROM jfs_edge"))
    trash = 0x7FFFFFFF10000000
    # Volume counters: every node but the root and the trash directory.
    used = sum(
        _align(length if typ == 1 else (length if typ == 3 else 0))
        for ino, typ, _, length, _ in nodes.values()
        if ino not in (1, trash)
    )
    count = sum(1 for ino in nodes if ino not in (1, trash))
    counters = dict(db.execute("SELECT name, value FROM jfs_counter"))
    if counters.get("usedSpace") != used:
        out.append(f"usedSpace {counters.get('usedSpace')} != {used}")
    if counters.get("totalInodes") != count:
        out.append(f"totalInodes {counters.get('totalInodes')} != {count}")
    # nlink: directories 2 + subdirectories; others one per entry.
    links = collections.Counter(e[2] for e in edges)
    subdirs = collections.Counter(e[0] for e in edges if e[3] == 2)
    for ino, typ, nlink, _, _ in nodes.values():
        want = 2 + subdirs[ino] if typ == 2 else links[ino]
        if ino >= trash:  # JuiceFS does not count entries moved into the trash in its nlink
            continue
        if nlink != want:
            out.append(f"inode {ino} nlink {nlink} != {want}")
    # Every entry points at a node, with the node's type.
    for parent, name, ino, typ in edges:
        if ino not in nodes:
            out.append(f"entry {parent}/{name!r} -> missing inode {ino}")
        elif nodes[ino][1] != typ:
            out.append(f"entry {parent}/{name!r} type {typ} != node type {nodes[ino][1]}")
    # Parent: 0 exactly for multiply-linked non-directories that were hard-linked.
    for parent, _, ino, _ in edges:
        n = nodes.get(ino)
        if n and n[4] not in (0, parent) and not (parent >= trash):
            out.append(f"inode {ino} parent {n[4]} but entry in {parent}")
    # Dir stats: each directory's direct entries.
    stats = {r[0]: r[1:] for r in db.execute("SELECT inode, data_length, used_space, used_inodes FROM jfs_dir_stats")}
    for ino, typ, _, _, _ in nodes.values():
        if typ != 2 or ino == trash:
            continue
        length = space = inodes = 0
        for parent, _, child, _ in edges:
            if parent != ino or child not in nodes:
                continue
            ctyp, clen = nodes[child][1], nodes[child][3]
            inodes += 1
            length += clen if ctyp == 1 else 0
            space += _align(clen) if ctyp == 1 else 4096
        got = stats.get(ino)
        if got is None:
            if inodes:
                out.append(f"dir {ino} has no dir_stats row")
        elif tuple(got) != (length, space, inodes):
            out.append(f"dir {ino} stats {tuple(got)} != {(length, space, inodes)}")
    # Chunk refs: one per record naming the slice (plus delayed slices).
    refs: collections.Counter[int] = collections.Counter()
    for (blob,) in db.execute("SELECT CAST(slices AS BLOB) FROM jfs_chunk"):
        data = bytes(blob)
        for i in range(0, len(data), 24):
            sid = int.from_bytes(data[i + 4 : i + 12], "big")
            if sid:
                refs[sid] += 1
    for (blob,) in db.execute("SELECT slices FROM jfs_delslices"):
        data = bytes(blob)
        for i in range(0, len(data), 12):
            refs[int.from_bytes(data[i : i + 8], "big")] += 1
    rows = dict((r[0], r[1]) for r in db.execute("SELECT chunkid, refs FROM jfs_chunk_ref"))
    for sid, n in refs.items():
        if rows.get(sid) != n:
            out.append(f"slice {sid} refs {rows.get(sid)} != {n} records")
    for sid, n in rows.items():
        if sid not in refs and n > 0:
            out.append(f"slice {sid} has refs {n} but no record")
    return out
