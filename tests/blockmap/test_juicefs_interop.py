"""blockmap and the real juicefs 1.4.2 binary read each other's volumes.

(a) our schema and settings JSON equal what `juicefs format` creates;
(b) a corpus written by blockmap on an ltxvfs replica, its metadata restored to a local file by
    `ltxctl restore`, passes `juicefs fsck`, leaves `juicefs gc` nothing leaked, and
    `juicefs sync` / `juicefs dump` read it exactly;
(c) a tree written by `juicefs sync`, its metadata seeded into a replica by `ltxctl import`,
    reads back identically through blockmap on ltxvfs (and blockmap's further writes, restored
    again, still pass the binary's checks).
"""

from __future__ import annotations

import functools
import os
import random
import re
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from blockmap.blocks import BlockObject
from blockmap.meta import as_bytes
from blockmap.node import TRASH_INODE
from blockmap.schema import schema_rows
from blockmap.settings import VolumeSettings
from blockmap.slices import CHUNK_SIZE, decode_records
from blockmap.volume import Volume
from tests.blockmap.conftest import meta_conn
from tests.blockmap.juicefs_cli import dump, gc_report, run_juicefs, sync_in, sync_out
from tests.blockmap.metacheck import metadata_problems

BLOCK = 256 << 10  # small blocks: many block objects with little data
LTXCTL = Path(sys.executable).with_name("ltxctl")
LTXCTL_TIMEOUT = 120


def _schema(meta: str | apsw.Connection) -> list[tuple[str, str, str, str | None]]:
    db = meta if isinstance(meta, apsw.Connection) else apsw.Connection(meta, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [r for r in schema_rows(db.cursor()) if r[1] != "sqlite_sequence"]
    finally:
        db.close()


def _format_with_binary(tmp: Path, *args: str) -> tuple[str, Path]:
    data = tmp / "jdata"
    data.mkdir()
    meta = f"sqlite3://{tmp}/jmeta.db"
    run_juicefs("format", meta, "--storage", "file", "--bucket", f"{data}/", *args, "jvol")
    return meta, data


def test_schema_equals_the_binarys(tmp_path: Path, vol: Volume) -> None:
    meta, _ = _format_with_binary(tmp_path, "--trash-days", "0")
    theirs = _schema(urllib.parse.urlsplit(meta).path)
    ours = _schema(meta_conn(vol))
    assert ours == theirs


def test_settings_json_is_written_like_the_binary(tmp_path: Path) -> None:
    meta, data = _format_with_binary(
        tmp_path, "--trash-days", "3", "--block-size", "1M", "--hash-prefix", "--capacity", "5", "--inodes", "77"
    )
    db = apsw.Connection(urllib.parse.urlsplit(meta).path)
    theirs = str(db.execute("SELECT value FROM jfs_setting WHERE name = 'format'").fetchall()[0][0])
    parsed = VolumeSettings.decode(theirs)
    assert (parsed.block_size, parsed.trash_days, parsed.hash_prefix) == (1 << 20, 3, True)
    assert (parsed.capacity, parsed.inodes) == (5 << 30, 77)
    mine = VolumeSettings.new(
        "jvol", "file", f"{data}/", block_size=1 << 20, trash_days=3, hash_prefix=True, capacity=5 << 30, inodes=77
    )
    mine.uuid = parsed.uuid
    assert mine.encode() == theirs
    assert parsed.encode() == theirs


def _write_corpus(v: Volume, rng: random.Random) -> None:
    """Small files, a 70 MiB file across chunks, overwrites, appends, sparse and truncated files,
    hard links, symlinks, xattrs, nested directories, a rename over a file, an unlink, clones of a
    tree and of a file, a compacted file."""
    v.makedirs("/docs/deep/er")
    v.mkdir("/empty")
    for i in range(12):
        v.write_file(f"/docs/small-{i}.txt", rng.randbytes(rng.randrange(0, 9000)))
    v.write_file("/docs/deep/er/leaf.bin", rng.randbytes(3 * BLOCK + 17))
    big = 70 << 20
    with v.open_file("/big.bin", "w") as f:
        f.pwrite(rng.randbytes(2 * BLOCK), 0)
        f.pwrite(rng.randbytes(3 * BLOCK), CHUNK_SIZE - BLOCK - 5)
        f.pwrite(rng.randbytes(BLOCK), big - BLOCK)
    v.write_file("/over.bin", rng.randbytes(600_000))
    for _ in range(8):
        v.pwrite("/over.bin", rng.randbytes(rng.randrange(1, 50_000)), rng.randrange(0, 650_000))
    with v.open_file("/app.log", "a") as f:
        for i in range(40):
            f.write(b"line %d\n" % i)
    with v.open_file("/app.log", "a") as f:
        f.write(b"reopened\n")
    with v.open_file("/sparse.bin", "w") as f:
        f.pwrite(b"start", 0)
        f.pwrite(b"end", 5_000_000)
    v.write_file("/trunc.bin", rng.randbytes(700_000))
    v.truncate("/trunc.bin", 123_457)
    v.truncate("/trunc.bin", 400_000)
    v.link("/docs/small-3.txt", "/hard-3.txt")
    v.link("/docs/small-3.txt", "/docs/deep/hard-3b.txt")
    v.symlink("docs/deep/er/leaf.bin", "/leaf-link")
    v.symlink("../../small-1.txt", "/docs/deep/er/up-link")
    v.setxattr("/docs/small-0.txt", "user.color", b"blue")
    v.setxattr("/docs/deep", "user.bin", bytes(range(10)))
    v.chmod("/docs/small-2.txt", 0o600)
    v.write_file("/victim.txt", b"to be replaced")
    v.rename("/docs/small-4.txt", "/victim.txt")
    v.unlink("/docs/small-5.txt")
    v.rename("/docs/deep/er", "/moved-er")
    v.clone("/docs", "/docs-clone")
    v.clone("/over.bin", "/over-clone.bin")
    v.pwrite("/over-clone.bin", b"diverged", 3)
    assert v.compact("/over.bin") == 1


def _tree(v: Volume) -> dict[str, Any]:
    """path -> what blockmap reports (attributes, target, bytes digest source)."""
    out: dict[str, Any] = {}
    stack = ["/"]
    while stack:
        d = stack.pop()
        for e in v.readdir(d, with_attrs=True):
            p = (d.rstrip("/") + "/" + e.name)
            out[p] = e
            if e.is_dir():
                stack.append(p)
    return out


def _dump_entries(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, child in node.get("entries", {}).items():
        p = f"{prefix}/{name}"
        out[p] = child
        out.update(_dump_entries(child, p))
    return out


def ltxctl(*args: str) -> str:
    """Run the real `ltxctl` console script; its output (raise with it when it fails)."""
    proc = subprocess.run([str(LTXCTL), *args], capture_output=True, text=True, timeout=LTXCTL_TIMEOUT)
    assert proc.returncode == 0, f"ltxctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[tuple[str, Volume]]:
    """The corpus written through ltxvfs (group commit: ordering against the blocks is on
    blockmap), its metadata restored by `ltxctl restore` to meta.db for the binary; yields that
    local URL and the volume opened read-only on the replica."""
    replica = f"file://{tmp_path}/meta-replica"
    (tmp_path / "data").mkdir()
    with Volume.format(replica, f"file://{tmp_path}/data", "bmvol", block_size=BLOCK, sync="interval:5ms") as v:
        _write_corpus(v, random.Random(2024))
    ltxctl("restore", replica, "-o", str(tmp_path / "meta.db"))
    with Volume.open(replica, read_only=True) as v:
        yield f"sqlite3://{tmp_path}/meta.db", v


def test_binary_checks_and_reads_a_blockmap_volume(tmp_path: Path, corpus: tuple[str, Volume]) -> None:
    meta, v = corpus
    path = urllib.parse.urlsplit(meta).path
    assert metadata_problems(path) == []
    before = _schema(path)
    # What blockmap reads from the replica, taken before the binary runs: the binary works on the
    # restored copy and may change it (reading a fragmented chunk makes it compact the chunk and
    # delete the replaced blocks, which the replica's state still names).
    ours = _tree(v)
    usage = v.usage()
    contents = {p: v.read_file(p) for p, e in ours.items() if e.is_file()}
    def records(c: apsw.Cursor, inode: int) -> list[tuple[int, int, int, int, int]]:
        rows = c.execute("SELECT slices FROM jfs_chunk WHERE inode = ? ORDER BY indx", (inode,))
        return [(r.pos, r.id, r.size, r.off, r.len) for (blob,) in rows for r in decode_records(as_bytes(blob))]

    ours_slices = {p: v.engine.read(functools.partial(records, inode=e.inode)) for p, e in ours.items() if e.is_file()}
    links = {p: v.readlink(p) for p, e in ours.items() if e.is_symlink()}
    xattrs = {p: sorted(v.listxattr(p, follow_symlinks=False)) for p in ours}

    # fsck: every block present, nlink and dir stats right (exit 1 and a warning otherwise).
    proc = run_juicefs("fsck", meta, "--path", "/", "--recursive", "--sync-dir-stat", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "should be" not in out and "lost" not in out and "missing" not in out, out

    # gc: nothing leaked (objects of any age), nothing pending.
    summary = gc_report(meta)
    assert re.search(r"\b0 leaked\b", summary), summary
    m = re.search(r"scanned (\d+) objects, (\d+) valid", summary)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, summary

    # dump: the tree, attributes, links, symlinks, xattrs and slice records are ours.
    d = dump(meta, tmp_path / "dump.json")
    assert d["Counters"]["usedSpace"] == usage.used_space
    assert d["Counters"]["usedInodes"] == usage.total_inodes
    dumped = _dump_entries(d["FSTree"])
    assert sorted(dumped) == sorted(ours)
    kinds = {"regular": 1, "directory": 2, "symlink": 3}
    for p, e in ours.items():
        a = dumped[p]["attr"]
        assert a["inode"] == e.inode and kinds[a["type"]] == e.type, p
        assert a["mode"] == stat.S_IMODE(e.attr.st_mode) and a["nlink"] == e.attr.st_nlink, p
        assert a["mtime"] * 10**9 + a.get("mtimensec", 0) == e.attr.st_mtime_ns, p
        if e.is_file():
            assert a["length"] == e.attr.st_size, p
            dumped_slices = [
                (s.get("pos", 0), s["id"], s["size"], s.get("off", 0), s["len"])
                for c in dumped[p].get("chunks", []) for s in c["slices"]
            ]  # fmt: skip
            assert dumped_slices == ours_slices[p], p
        if e.is_symlink():
            assert dumped[p]["symlink"] == links[p], p
        names = sorted(x["name"] for x in dumped[p].get("xattrs", []))
        assert names == xattrs[p], p

    # sync: every file's bytes come out identical; symlinks stay symlinks.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sync_out(meta, out_dir)
    for p, e in ours.items():
        local = out_dir / p.lstrip("/")
        if e.is_file():
            assert local.read_bytes() == contents[p], p
        elif e.is_symlink():
            assert os.readlink(local) == links[p], p
        else:
            assert local.is_dir(), p
    # The binary found our schema identical: its schema sync altered nothing.
    assert _schema(path) == before


def test_blockmap_reads_a_volume_the_binary_wrote(tmp_path: Path) -> None:
    rng = random.Random(99)
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    files = {
        "a/one.txt": b"hello juicefs\n",
        "a/b/two.bin": rng.randbytes(1_500_000),
        "three.bin": rng.randbytes(5 * BLOCK + 3),
        "empty": b"",
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (src / "a" / "b" / "two.bin").chmod(0o640)
    os.symlink("a/one.txt", src / "link")
    meta, data_dir = _format_with_binary(tmp_path, "--trash-days", "0", "--block-size", str(BLOCK >> 10))
    sync_in(src, meta)
    # The binary's metadata becomes the first state of a replica; blockmap reads it through ltxvfs.
    replica = f"file://{tmp_path}/meta-replica"
    ltxctl("import", urllib.parse.urlsplit(meta).path, replica)
    with Volume.open(replica) as v:
        assert v.txid == 1
        assert v.settings.block_size == BLOCK
        assert v.data_url == f"file://{data_dir}"
        for rel, data in files.items():
            assert v.read_file("/" + rel) == data, rel
        assert stat.S_IMODE(v.stat("/a/b/two.bin").st_mode) == 0o640
        assert v.readlink("/link") == "a/one.txt"
        assert sorted(v.listdir("/")) == ["a", "empty", "link", "three.bin"]
        assert metadata_problems(meta_conn(v)) == []
        # blockmap keeps writing the binary's volume on the replica, and the binary still agrees.
        v.write_file("/a/added.txt", b"written by blockmap")
        v.unlink("/three.bin")
        assert v.txid > 1
    restored = tmp_path / "restored.db"
    ltxctl("restore", replica, "-o", str(restored))
    meta2 = f"sqlite3://{restored}"
    assert metadata_problems(str(restored)) == []
    proc = run_juicefs("fsck", meta2, "--path", "/", "--recursive", "--sync-dir-stat", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b0 leaked\b", gc_report(meta2))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sync_out(meta2, out_dir)
    assert (out_dir / "a" / "added.txt").read_bytes() == b"written by blockmap"
    assert not (out_dir / "three.bin").exists()
    assert (out_dir / "a" / "b" / "two.bin").read_bytes() == files["a/b/two.bin"]


def test_trash_volume_matches_the_binarys_layout(tmp_path: Path) -> None:
    meta = f"sqlite3://{tmp_path}/meta.db"
    (tmp_path / "data").mkdir()
    with Volume.format(meta, f"file://{tmp_path}/data", "trashvol", block_size=BLOCK, trash_days=1) as v:
        v.mkdir("/d")
        v.write_file("/d/f", b"x" * 5000)
        v.unlink("/d/f")
        v.rmdir("/d")
        used = v.usage()
    path = urllib.parse.urlsplit(meta).path
    db = apsw.Connection(path)
    trash_entries = list(db.execute("SELECT parent, name FROM jfs_edge WHERE parent >= ?", (TRASH_INODE,)))
    names = sorted(bytes(n).decode() for _, n in trash_entries)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d-\d\d", n) for n in names)
    assert any(n.endswith("-f") for n in names) and any(n.endswith("-d") for n in names)
    assert used.total_inodes == 3  # the hour directory, d and f stay counted while in the trash
    proc = run_juicefs("fsck", meta, "--path", "/", "--recursive", "--sync-dir-stat", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = dump(meta, tmp_path / "dump.json")
    assert len(_dump_entries(d["Trash"])) == 3


def test_hash_prefix_volume_is_read_by_the_binary(tmp_path: Path) -> None:
    meta = f"sqlite3://{tmp_path}/meta.db"
    (tmp_path / "data").mkdir()
    data = random.Random(5).randbytes(2 * BLOCK + 99)
    with Volume.format(meta, f"file://{tmp_path}/data", "hashed", block_size=BLOCK, hash_prefix=True) as v:
        v.write_file("/f", data)
        sid = next(b.slice_id for b in v.engine.blocks.list_blocks() if isinstance(b, BlockObject))
    keys = sorted(str(p.relative_to(tmp_path / "data")) for p in (tmp_path / "data").rglob("*_*_*"))
    assert keys == sorted(f"hashed/chunks/{sid % 256:02X}/0/{sid}_{i}_{n}" for i, n in enumerate([BLOCK, BLOCK, 99]))
    proc = run_juicefs("fsck", meta, "--path", "/", "--recursive", "--sync-dir-stat", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b0 leaked\b", gc_report(meta))
    out = tmp_path / "out"
    out.mkdir()
    sync_out(meta, out)
    assert (out / "f").read_bytes() == data
