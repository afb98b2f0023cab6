"""The JuiceFS 1.4 SQL schema, statement for statement as `juicefs format sqlite3://…` creates it.

The text must match byte for byte what the binary leaves in `sqlite_master`: the binary re-syncs
its schema at every session, and any difference in a table, column or index becomes an ALTER.
`tests/blockmap/test_juicefs_interop.py` compares the two.
"""

from __future__ import annotations

import apsw

#: Table name prefix JuiceFS uses for SQL engines.
TABLE_PREFIX = "jfs_"

#: Every CREATE statement, in the order the binary runs them (so `sqlite_master` rowids agree too).
DDL: tuple[str, ...] = (
    "CREATE TABLE `jfs_setting` (`name` TEXT PRIMARY KEY NOT NULL, `value` TEXT NOT NULL)",
    "CREATE TABLE `jfs_counter` (`name` TEXT PRIMARY KEY NOT NULL, `value` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_edge` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `parent` INTEGER NOT NULL,"
    " `name` BLOB NOT NULL, `inode` INTEGER NOT NULL, `type` INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_edge_edge` ON `jfs_edge` (`parent`,`name`)",
    "CREATE INDEX `IDX_jfs_edge_inode` ON `jfs_edge` (`inode`)",
    "CREATE TABLE `jfs_node` (`inode` INTEGER PRIMARY KEY NOT NULL, `type` INTEGER NOT NULL,"
    " `flags` INTEGER NOT NULL, `mode` INTEGER NOT NULL, `uid` INTEGER NOT NULL, `gid` INTEGER NOT NULL,"
    " `atime` INTEGER NOT NULL, `mtime` INTEGER NOT NULL, `ctime` INTEGER NOT NULL,"
    " `atimensec` INTEGER DEFAULT 0 NOT NULL, `mtimensec` INTEGER DEFAULT 0 NOT NULL,"
    " `ctimensec` INTEGER DEFAULT 0 NOT NULL, `nlink` INTEGER NOT NULL, `length` INTEGER NOT NULL,"
    " `rdev` INTEGER NULL, `parent` INTEGER NULL, `access_acl_id` INTEGER NULL,"
    " `default_acl_id` INTEGER NULL, `tier_id` INTEGER NULL)",
    "CREATE TABLE `jfs_symlink` (`inode` INTEGER PRIMARY KEY NOT NULL, `target` BLOB NOT NULL)",
    "CREATE TABLE `jfs_xattr` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL,"
    " `name` TEXT NOT NULL, `value` BLOB NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_xattr_name` ON `jfs_xattr` (`inode`,`name`)",
    "CREATE TABLE `jfs_chunk` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL,"
    " `indx` INTEGER NOT NULL, `slices` BLOB NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_chunk_chunk` ON `jfs_chunk` (`inode`,`indx`)",
    "CREATE TABLE `jfs_chunk_ref` (`chunkid` INTEGER PRIMARY KEY NOT NULL, `size` INTEGER NOT NULL,"
    " `refs` INTEGER NOT NULL)",
    "CREATE INDEX `IDX_jfs_chunk_ref_refs` ON `jfs_chunk_ref` (`refs`)",
    "CREATE TABLE `jfs_delslices` (`chunkid` INTEGER PRIMARY KEY NOT NULL, `deleted` INTEGER NOT NULL,"
    " `slices` BLOB NOT NULL)",
    "CREATE TABLE `jfs_session2` (`sid` INTEGER PRIMARY KEY NOT NULL, `expire` INTEGER NOT NULL,"
    " `info` BLOB NULL)",
    "CREATE TABLE `jfs_sustained` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `sid` INTEGER NOT NULL,"
    " `inode` INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_sustained_sustained` ON `jfs_sustained` (`sid`,`inode`)",
    "CREATE TABLE `jfs_delfile` (`inode` INTEGER PRIMARY KEY NOT NULL, `length` INTEGER NOT NULL,"
    " `expire` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_flock` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL,"
    " `sid` INTEGER NOT NULL, `owner` INTEGER NOT NULL, `ltype` INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_flock_flock` ON `jfs_flock` (`inode`,`sid`,`owner`)",
    "CREATE TABLE `jfs_plock` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL,"
    " `sid` INTEGER NOT NULL, `owner` INTEGER NOT NULL, `records` BLOB NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_plock_plock` ON `jfs_plock` (`inode`,`sid`,`owner`)",
    "CREATE TABLE `jfs_dir_quota` (`inode` INTEGER PRIMARY KEY NOT NULL, `max_space` INTEGER NOT NULL,"
    " `max_inodes` INTEGER NOT NULL, `used_space` INTEGER NOT NULL, `used_inodes` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_user_group_quota` (`qtype` INTEGER NOT NULL, `qkey` INTEGER NOT NULL,"
    " `max_space` INTEGER NOT NULL, `max_inodes` INTEGER NOT NULL, `used_space` INTEGER NOT NULL,"
    " `used_inodes` INTEGER NOT NULL, PRIMARY KEY ( `qtype`,`qkey` ))",
    "CREATE TABLE `jfs_dir_stats` (`inode` INTEGER PRIMARY KEY NOT NULL, `data_length` INTEGER NOT NULL,"
    " `used_space` INTEGER NOT NULL, `used_inodes` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_detached_node` (`inode` INTEGER PRIMARY KEY NOT NULL, `added` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_acl` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `owner` INTEGER NULL,"
    " `group` INTEGER NULL, `mask` INTEGER NULL, `other` INTEGER NULL, `named_users` BLOB NULL,"
    " `named_groups` BLOB NULL)",
    "CREATE TABLE `jfs_delegation_token` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,"
    " `token` BLOB NULL)",
    "CREATE TABLE `jfs_change_log` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `entry` TEXT NOT NULL)",
)

#: The tables JuiceFS 1.4 defines (without the prefix).
TABLES: tuple[str, ...] = (
    "setting", "counter", "edge", "node", "symlink", "xattr", "chunk", "chunk_ref", "delslices",
    "session2", "sustained", "delfile", "flock", "plock", "dir_quota", "user_group_quota", "dir_stats",
    "detached_node", "acl", "delegation_token", "change_log",
)  # fmt: skip


def create_schema(cursor: apsw.Cursor) -> None:
    """Create every table and index (inside the caller's transaction)."""
    for statement in DDL:
        cursor.execute(statement)


def has_schema(cursor: apsw.Cursor) -> bool:
    """True when the database already holds the JuiceFS settings table."""
    row = cursor.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (TABLE_PREFIX + "setting",)
    ).fetchone()
    return row is not None


def foreign_tables(cursor: apsw.Cursor) -> list[str]:
    """Tables that are not JuiceFS's (an application's own): a database holding any is not a
    volume's to format."""
    rows = cursor.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name"
    )
    return [str(r[0]) for r in rows if not str(r[0]).startswith(TABLE_PREFIX)]


def schema_rows(cursor: apsw.Cursor) -> list[tuple[str, str, str, str | None]]:
    """`sqlite_master` as (type, name, tbl_name, sql) in creation order, for comparisons."""
    return [
        (str(t), str(n), str(tb), None if s is None else str(s))
        for t, n, tb, s in cursor.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
        )
    ]
