"""The `blockmap` CLI: every command run for real (typer's CliRunner through the same error
handling as the console script, and a real process for a few), the one-line errors, and the
juicefs binary reading what the CLI wrote."""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from blockmap.cli import app, put_stream
from blockmap.engine import READDIR_BATCH
from blockmap.meta import connect_meta
from blockmap.volume import Volume
from ltx.replica import Replica
from tests.blockmap.conftest import TEST_BLOCK_SIZE
from tests.blockmap.juicefs_cli import gc_report, run_juicefs, sync_out
from tests.interrupt import interrupt_first_request
from tests.s3server import S3Server

BLOCKMAP = [sys.executable, "-m", "blockmap.cli"]
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
NAME = "clivol"

runner = CliRunner()


def bm(meta: str, command: str, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """`blockmap <command> --meta META <args>` in process."""
    return runner.invoke(app, [command, "--meta", meta, *args], input=stdin, env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr!r} {result.exception!r}"
    return result


def one_line_error(code: int, stderr: str, *needles: str) -> str:
    assert code != 0, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {stderr!r}"
    assert lines[0].startswith("blockmap: "), lines[0]
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def error(result: Result, *needles: str) -> str:
    return one_line_error(result.exit_code, result.stderr, *needles)


def run_blockmap(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
                 ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    return subprocess.run([*BLOCKMAP, *args], capture_output=True, cwd=ROOT, timeout=TIMEOUT, input=stdin,
                          env=env if env is not None else dict(os.environ))  # fmt: skip


@pytest.fixture
def meta(tmp_path: Path) -> str:
    """A volume formatted through the CLI (64 KiB blocks): its metadata in an ltxvfs replica under
    tmp_path/meta (the default home), data under tmp_path/data."""
    url = f"file://{tmp_path}/meta"
    ok(bm(url, "format", "--data", f"file://{tmp_path}/data", "--block-size", "64K", NAME))
    return url


def block_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "data" / NAME / "chunks").rglob("*") if p.is_file())


# --- format and status ---------------------------------------------------------------------------


def test_format_and_status(tmp_path: Path, meta: str) -> None:
    assert (tmp_path / "data" / NAME / "juicefs_uuid").is_file()
    status = json.loads(ok(bm(meta, "status", "--json")).stdout)
    assert status["Setting"]["Name"] == NAME
    assert status["Setting"]["BlockSize"] == 64
    assert status["Setting"]["Storage"] == "file"
    assert status["Data"] == f"file://{tmp_path}/data"
    assert status["Counters"]["nextInode"] >= 2 and "nextChunk" in status["Counters"]
    assert status["Usage"]["UsedInodes"] == 0
    ok(bm(meta, "put", "-", "/f", stdin=b"x" * 5000))
    after = json.loads(ok(bm(meta, "status", "--json")).stdout)
    assert after["Usage"] == {**status["Usage"], "UsedSpace": 8192, "UsedInodes": 1}
    text = ok(bm(meta, "status")).stdout
    assert NAME in text and status["Setting"]["UUID"] in text and "nextInode" in text
    # A second format refuses to overwrite the volume.
    error(bm(meta, "format", "--data", f"file://{tmp_path}/data2", NAME), "already holds a volume")
    assert ok(bm(meta, "cat", "/f")).stdout_bytes == b"x" * 5000


def test_format_options(tmp_path: Path) -> None:
    url = f"sqlite3://{tmp_path}/m.db"
    ok(bm(url, "format", "--data", f"file://{tmp_path}/d", "--block-size", "1M", "--trash-days", "2",
          "--hash-prefix", "other-vol"))  # fmt: skip
    with Volume.open(url) as v:
        assert (v.settings.block_size, v.settings.trash_days, v.settings.hash_prefix) == (1 << 20, 2, True)
    # With trash on, rm moves the file to .trash instead of deleting its blocks.
    ok(bm(url, "put", "-", "/f", stdin=b"data"))
    ok(bm(url, "rm", "/f"))
    assert ok(bm(url, "ls", "/")).stdout.split() == []
    assert len([p for p in (tmp_path / "d" / "other-vol" / "chunks").rglob("*") if p.is_file()]) == 1


def test_meta_from_environment(tmp_path: Path, meta: str) -> None:
    ok(runner.invoke(app, ["mkdir", "/from-env"], env={"BLOCKMAP_META": meta}))
    assert ok(bm(meta, "ls")).stdout.split() == ["from-env"]


# --- the namespace -------------------------------------------------------------------------------


def test_mkdir_ls_stat(meta: str) -> None:
    ok(bm(meta, "mkdir", "/a", "/b"))
    ok(bm(meta, "mkdir", "-p", "/a/x/y/z", "/a"))
    error(bm(meta, "mkdir", "/a"), "/a: File exists")
    error(bm(meta, "mkdir", "/q/r"), "/q/r: No such file or directory")
    ok(bm(meta, "put", "-", "/a/file", stdin=b"hello"))
    assert ok(bm(meta, "ls")).stdout.split() == ["a", "b"]
    assert ok(bm(meta, "ls", "/a")).stdout.split() == ["file", "x"]
    long = ok(bm(meta, "ls", "-l", "/a")).stdout.splitlines()
    assert len(long) == 2
    assert long[0].startswith("-rw-") and long[0].endswith(" file") and " 5 " in long[0]
    assert long[1].startswith("d") and long[1].endswith(" x")
    assert ok(bm(meta, "ls", "/a/file")).stdout.strip() == "/a/file"
    st = json.loads(ok(bm(meta, "stat", "--json", "/a/file")).stdout)
    assert (st["type"], st["size"], st["nlink"], st["mode"]) == ("regular file", 5, 1, "0644")
    d = json.loads(ok(bm(meta, "stat", "--json", "/a")).stdout)
    assert (d["type"], d["nlink"]) == ("directory", 3)
    assert "Size: 5" in ok(bm(meta, "stat", "/a/file")).stdout
    error(bm(meta, "ls", "/a/file/sub"), "/a/file/sub: Not a directory")
    error(bm(meta, "stat", "/nope"), "/nope: No such file or directory")


def test_ls_streams_a_large_directory(meta: str) -> None:
    names = [f"n{i:05d}" for i in range(READDIR_BATCH + 100)]  # more than one readdir batch
    with Volume.open(meta) as v:
        v.mkdir("/big")
        for n in names:
            v.write_file(f"/big/{n}", b"")
    assert ok(bm(meta, "ls", "/big")).stdout.split() == names


def test_links_and_symlinks(meta: str) -> None:
    ok(bm(meta, "put", "-", "/f", stdin=b"linked"))
    ok(bm(meta, "mkdir", "/d"))
    ok(bm(meta, "ln", "/f", "/hard"))
    ok(bm(meta, "ln", "/f", "/d"))  # into the directory, keeping the name
    ok(bm(meta, "ln", "-s", "../f", "/d/sym"))
    assert json.loads(ok(bm(meta, "stat", "--json", "/f")).stdout)["nlink"] == 3
    assert ok(bm(meta, "cat", "/hard", "/d/f", "/d/sym")).stdout_bytes == b"linked" * 3
    link = json.loads(ok(bm(meta, "stat", "--json", "/d/sym")).stdout)
    assert (link["type"], link["target"]) == ("symbolic link", "../f")
    assert json.loads(ok(bm(meta, "stat", "--json", "-L", "/d/sym")).stdout)["type"] == "regular file"
    assert ok(bm(meta, "ls", "-l", "/d")).stdout.splitlines()[1].endswith("sym -> ../f")
    error(bm(meta, "ln", "/f", "/hard", "-T"), "File exists")
    error(bm(meta, "ln", "/missing", "/x"), "/missing: No such file or directory")


def test_mv(meta: str) -> None:
    ok(bm(meta, "put", "-", "/f", stdin=b"1"))
    ok(bm(meta, "mkdir", "-p", "/d/e", "/full/x"))
    ok(bm(meta, "mv", "/f", "/g"))
    ok(bm(meta, "mv", "/g", "/d"))  # into the directory
    assert ok(bm(meta, "ls", "/d")).stdout.split() == ["e", "g"]
    ok(bm(meta, "mv", "-T", "/d/e", "/empty"))
    ok(bm(meta, "mkdir", "/d/e"))
    ok(bm(meta, "mv", "-T", "/empty", "/d/e"))  # replaces an empty directory
    error(bm(meta, "mv", "-T", "/d", "/full"), "/d -> /full: Directory not empty")
    error(bm(meta, "mv", "/nope", "/x"), "No such file or directory")
    assert ok(bm(meta, "cat", "/d/g")).stdout_bytes == b"1"


def test_rm(tmp_path: Path, meta: str) -> None:
    data = random.Random(1).randbytes(3 * TEST_BLOCK_SIZE)
    ok(bm(meta, "mkdir", "-p", "/t/u/v"))
    ok(bm(meta, "put", "-", "/t/u/v/f", stdin=data))
    ok(bm(meta, "put", "-", "/t/g", stdin=b"g"))
    assert len(block_files(tmp_path)) == 4
    error(bm(meta, "rm", "/t"), "/t: Is a directory")
    error(bm(meta, "rm", "/"), "refusing to remove the root")
    error(bm(meta, "rm", "-r", "/"), "refusing to remove the root")
    error(bm(meta, "rm", "/none"), "/none: No such file or directory")
    ok(bm(meta, "rm", "-f", "/none", "/t/g"))
    ok(bm(meta, "rm", "-r", "/t"))
    assert ok(bm(meta, "ls")).stdout == ""
    assert block_files(tmp_path) == []  # no trash: the blocks went with the last link


# --- bytes in and out ----------------------------------------------------------------------------


def test_put_get_cat_round_trip(tmp_path: Path, meta: str) -> None:
    data = random.Random(2).randbytes(5 * TEST_BLOCK_SIZE + 123)
    local = tmp_path / "in.bin"
    local.write_bytes(data)
    local.chmod(0o640)
    ok(bm(meta, "mkdir", "/dir"))
    ok(bm(meta, "put", str(local), "/dir"))  # into the directory: keeps the name and the mode
    st = json.loads(ok(bm(meta, "stat", "--json", "/dir/in.bin")).stdout)
    assert (st["size"], st["mode"]) == (len(data), "0640")
    assert len(block_files(tmp_path)) == 6
    assert ok(bm(meta, "cat", "/dir/in.bin")).stdout_bytes == data
    assert ok(bm(meta, "get", "/dir/in.bin", "-")).stdout_bytes == data
    out = tmp_path / "out"
    out.mkdir()
    ok(bm(meta, "get", "/dir/in.bin", str(out)))
    ok(bm(meta, "get", "/dir/in.bin", str(out / "copy")))
    assert (out / "in.bin").read_bytes() == data and (out / "copy").read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["copy", "in.bin"]  # no temporary files left
    error(bm(meta, "get", "/dir", str(out / "x")), "/dir: Is a directory")
    error(bm(meta, "get", "/dir/in.bin", str(tmp_path / "no" / "x")), str(tmp_path / "no" / "x"))
    error(bm(meta, "put", str(tmp_path / "missing"), "/m"), f"{tmp_path / 'missing'}: No such file or directory")
    error(bm(meta, "put", str(tmp_path), "/m"), "Is a directory")
    error(bm(meta, "put", "-", "/dir", stdin=b"x"), "/dir: Is a directory")
    error(bm(meta, "put", "-", "/nodir/x", stdin=b"x"), "/nodir/x: No such file or directory")


def test_put_replaces_atomically(tmp_path: Path, meta: str) -> None:
    ok(bm(meta, "put", "-", "/f", stdin=b"old contents"))
    ok(bm(meta, "ln", "/f", "/old-link"))
    ok(bm(meta, "put", "-", "/f", stdin=b"new"))
    assert ok(bm(meta, "cat", "/f")).stdout_bytes == b"new"
    # The old inode was replaced by a rename, not overwritten in place.
    assert ok(bm(meta, "cat", "/old-link")).stdout_bytes == b"old contents"
    assert ok(bm(meta, "ls")).stdout.split() == ["f", "old-link"]


class FailingStream(io.RawIOBase):
    """Yields `good` bytes, then fails like a broken local disk."""

    def __init__(self, good: bytes) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.left:
            raise OSError(5, "Input/output error", "local.bin")
        out, self.left = self.left[:size], self.left[size:]
        return out


def test_failed_put_leaves_the_target_alone(tmp_path: Path, meta: str) -> None:
    with Volume.open(meta) as v:
        v.write_file("/f", b"keep me")
        before = block_files(tmp_path)
        with pytest.raises(OSError, match="Input/output error"):
            put_stream(v, FailingStream(random.Random(3).randbytes(2 * TEST_BLOCK_SIZE)), "/f", 0o644)  # type: ignore[arg-type]
        assert v.read_file("/f") == b"keep me"
        assert v.listdir("/") == ["f"]
    assert block_files(tmp_path) == before  # the uploaded blocks were taken back


def test_failed_get_leaves_the_local_file_alone(tmp_path: Path, meta: str) -> None:
    ok(bm(meta, "put", "-", "/f", stdin=random.Random(4).randbytes(4 * TEST_BLOCK_SIZE)))
    lost = block_files(tmp_path)[2]
    lost.unlink()
    local = tmp_path / "local"
    local.write_bytes(b"previous")
    line = error(bm(meta, "get", "/f", str(local)), "blockmap: /f: ")
    assert f"{NAME}/chunks/" in line and lost.name in line
    assert local.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "local", "meta"]
    # fsck names the missing block and the broken file, and fails.
    result = bm(meta, "fsck")
    error(result, "fsck found 1 problem")
    assert lost.name in result.stdout and "broken file /f" in result.stdout


def test_clone_copies_no_bytes(tmp_path: Path, meta: str) -> None:
    data = random.Random(5).randbytes(2 * TEST_BLOCK_SIZE)
    ok(bm(meta, "mkdir", "-p", "/src/sub"))
    ok(bm(meta, "put", "-", "/src/sub/f", stdin=data))
    before = block_files(tmp_path)
    ok(bm(meta, "clone", "/src", "/copy"))
    ok(bm(meta, "mkdir", "/into"))
    ok(bm(meta, "clone", "/src/sub/f", "/into"))
    assert block_files(tmp_path) == before
    assert ok(bm(meta, "cat", "/copy/sub/f", "/into/f")).stdout_bytes == data * 2
    ok(bm(meta, "rm", "-r", "/src"))
    assert ok(bm(meta, "cat", "/copy/sub/f")).stdout_bytes == data
    error(bm(meta, "clone", "/copy", "/into/f", "-T"), "File exists")


# --- maintenance ---------------------------------------------------------------------------------


def test_gc_finds_and_deletes_a_leak(tmp_path: Path, meta: str) -> None:
    ok(bm(meta, "put", "-", "/f", stdin=b"z" * 100))
    leak = tmp_path / "data" / NAME / "chunks" / "0" / "999" / "999999_0_10"
    leak.parent.mkdir(parents=True)
    leak.write_bytes(b"0123456789")
    young = ok(bm(meta, "gc")).stdout  # the default skips objects younger than an hour
    assert "leaked: 0 objects" in young and "2 skipped" in young
    report = ok(bm(meta, "gc", "--skip-age", "0")).stdout
    assert "leaked: 1 object (" in report and f"{NAME}/chunks/0/999/999999_0_10" in report
    assert "1 valid" in report
    assert leak.exists()
    deleted = ok(bm(meta, "gc", "--skip-age", "0", "--delete")).stdout
    assert "deleted 1 object;" in deleted
    assert not leak.exists()
    assert ok(bm(meta, "cat", "/f")).stdout_bytes == b"z" * 100
    assert "leaked: 0 objects" in ok(bm(meta, "gc", "--skip-age", "0")).stdout


def test_fsck_ok_and_repair(meta: str, tmp_path: Path) -> None:
    ok(bm(meta, "mkdir", "-p", "/a/b"))
    ok(bm(meta, "put", "-", "/a/b/f", stdin=b"f" * 70000))
    assert ok(bm(meta, "fsck")).stdout.startswith("ok: 1 file, 1 slice, 2 blocks")
    conn = connect_meta(meta)  # a wrong counter, as a crashed foreign writer might leave it
    conn.execute("UPDATE jfs_counter SET value = value + 4096 WHERE name = 'usedSpace'")
    conn.close()
    result = bm(meta, "fsck")
    error(result, "fsck found 1 problem")
    assert "usedSpace is" in result.stdout
    repaired = ok(bm(meta, "fsck", "--repair")).stdout
    assert "usedSpace is" in repaired and "ok after repair" in repaired
    ok(bm(meta, "fsck"))


# --- errors --------------------------------------------------------------------------------------


def test_usage_and_url_errors(tmp_path: Path, meta: str) -> None:
    line = error(runner.invoke(app, ["ls", "/"], env={"BLOCKMAP_META": None}), "--meta")
    assert "BLOCKMAP_META" in line
    error(bm(meta, "ls", "--bogus"), "--bogus")
    assert runner.invoke(app, []).exit_code == 2  # help on stderr
    error(bm("http://host/x.db", "ls"), "http://host/x.db", "file:// or s3://", "sqlite3://")
    error(bm(f"file://{tmp_path}/nothing-here", "ls"), "no volume here", "no LTX files")
    error(bm(f"sqlite3://{tmp_path}/none/m.db", "ls"), "does not exist")
    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(6).randbytes(8192))
    error(bm(str(junk), "status"), "not a database")
    empty = tmp_path / "empty.db"
    import apsw

    apsw.Connection(str(empty)).close()
    error(bm(str(empty), "ls"), "no volume here")
    new = f"sqlite3://{tmp_path}/new.db"
    error(bm(new, "format", "--data", "ftp://host/x", NAME), "ftp://host/x", "file:// or s3://")
    error(bm(new, "format", "--data", f"file://{tmp_path}/d", "Bad_Name"), "invalid name")
    error(bm(new, "format", "--data", f"file://{tmp_path}/d", "--block-size", "3X", NAME), "invalid block size")
    error(bm(new, "format", "--data", f"file://{tmp_path}/d", "--block-size", "100K", NAME), "power of two")
    line = error(bm(new, "format", "--data", "s3://bkt/vol-data?endpoint=http://127.0.0.1:9", NAME),
                 "names the bucket only", "s3://bkt?endpoint")  # fmt: skip
    assert line.count("s3://bkt/vol-data") == 1
    assert not (tmp_path / "new.db").exists()


def test_errors_as_a_real_process(tmp_path: Path, meta: str) -> None:
    env = {**os.environ, "BLOCKMAP_META": meta}
    proc = run_blockmap("cat", "/missing", env=env)
    one_line_error(proc.returncode, proc.stderr.decode(), "blockmap: /missing: No such file or directory")
    proc = run_blockmap("put", "-", "/p", env=env, stdin=b"through a pipe")
    assert proc.returncode == 0, proc.stderr
    proc = run_blockmap("cat", "/p", env=env)
    assert (proc.returncode, proc.stdout) == (0, b"through a pipe")
    proc = run_blockmap("ls", "--meta", "mysql://h/db")
    one_line_error(proc.returncode, proc.stderr.decode(), "mysql://h/db")


def test_s3_volume_wrong_credentials_and_missing_bucket(tmp_path: Path, s3_server: S3Server, s3_url: str) -> None:
    parts = urllib.parse.urlsplit(s3_url)  # metadata and blocks both on S3: blocks at the bucket's root
    meta = urllib.parse.urlunsplit(parts._replace(path=parts.path + "-meta"))
    data_url = urllib.parse.urlunsplit(parts._replace(path=""))
    name = "clivol-" + parts.path.strip("/").rsplit("-", 1)[-1]
    env = s3_server.env()
    proc = run_blockmap("format", "--meta", meta, "--data", data_url, "--block-size", "64K", name, env=env)
    assert proc.returncode == 0, proc.stderr
    data = random.Random(7).randbytes(TEST_BLOCK_SIZE + 9)
    proc = run_blockmap("put", "--meta", meta, "-", "/f", env=env, stdin=data)
    assert proc.returncode == 0, proc.stderr
    assert run_blockmap("cat", "--meta", meta, "/f", env=env).stdout == data
    wrong = {**env, "AWS_ACCESS_KEY_ID": "WRONGKEYID", "AWS_SECRET_ACCESS_KEY": "wrong-secret-" + "x" * 20}
    for args in (("cat", "/f"), ("put", "-", "/g")):
        proc = run_blockmap(args[0], "--meta", meta, *args[1:], env=wrong, stdin=b"x")
        line = one_line_error(proc.returncode, proc.stderr.decode())
        assert "wrong-secret" not in line
        assert re.search(r"credential|access|denied|signature|forbidden", line, re.IGNORECASE), line
        typed = meta.split("?")[0]
        assert line.count(typed) == 1 and "ltxvfs:" not in line and "/0000/" not in line, line
    missing = s3_server.url("", bucket="no-such-bucket-blockmap-cli")
    proc = run_blockmap("format", "--meta", f"sqlite3://{tmp_path}/m2.db", "--data", missing, NAME, env=env)
    assert "no-such-bucket-blockmap-cli" in one_line_error(proc.returncode, proc.stderr.decode())


# --- replicas: group commit, the past -------------------------------------------------------------


def _level0(meta: str) -> int:
    replica = Replica.open(meta)
    try:
        return len(replica.list_level(0))
    finally:
        replica.close()


def _created(meta: str) -> dict[int, datetime]:
    replica = Replica.open(meta)
    try:
        return {f.max_txid: f.created_at for f in replica.list_level(0)}
    finally:
        replica.close()


def test_writing_commands_group_their_commits(meta: str) -> None:
    ok(bm(meta, "mkdir", "-p", "/t/a", "/t/b"))
    for i in range(6):
        ok(bm(meta, "put", "-", f"/t/a/e{i}", stdin=b""))
    before = _level0(meta)
    ok(bm(meta, "rm", "-r", "/t"))  # 9 transactions, shipped as few files before the command returns
    shipped = _level0(meta) - before
    assert 1 <= shipped < 9, shipped
    assert ok(bm(meta, "ls", "/")).stdout.split() == []
    with Volume.open(meta, read_only=True) as v:  # a new reader sees it all: it is in the store
        assert v.listdir("/") == []


def test_reading_commands_read_the_past(tmp_path: Path, meta: str) -> None:
    ok(bm(meta, "put", "-", "/f", stdin=b"first"))
    t1 = json.loads(ok(bm(meta, "status", "--json")).stdout)["TXID"]
    t1_ms = int(_created(meta)[int(t1, 16)].timestamp() * 1000)
    deadline = time.monotonic() + 5
    while int(time.time() * 1000) <= t1_ms:  # LTX times are whole ms: the next state gets a later one
        assert time.monotonic() < deadline
    with Volume.open(meta) as v:
        v.pwrite("/f", b"SECOND", 0)  # an overwrite keeps the first slice's blocks
        v.mkdir("/later")
    after_t1 = _created(meta)[int(t1, 16) + 1]  # t1's state: every file created before this
    assert ok(bm(meta, "cat", "/f")).stdout_bytes == b"SECOND"
    assert ok(bm(meta, "cat", "--txid", t1, "/f")).stdout_bytes == b"first"
    assert ok(bm(meta, "ls", "--txid", t1.lstrip("0"))).stdout.split() == ["f"]
    assert ok(bm(meta, "ls")).stdout.split() == ["f", "later"]
    assert ok(bm(meta, "cat", "--at", after_t1.isoformat(), "/f")).stdout_bytes == b"first"
    assert json.loads(ok(bm(meta, "status", "--json", "--txid", t1)).stdout)["TXID"] == t1
    out = tmp_path / "old"
    ok(bm(meta, "get", "--txid", t1, "/f", str(out)))
    assert out.read_bytes() == b"first"
    assert json.loads(ok(bm(meta, "stat", "--json", "--txid", t1, "/f")).stdout)["size"] == 5
    error(bm(meta, "ls", "--txid", "zz"), "--txid", "hexadecimal")
    error(bm(meta, "ls", "--at", "yesterday-ish"), "--at 'yesterday-ish'", "RFC 3339")
    error(bm(f"sqlite3://{tmp_path}/m.db", "ls", "--txid", "1"), "replica URL")


# --- the binary reads what the CLI wrote ----------------------------------------------------------


def test_juicefs_reads_what_the_cli_wrote(tmp_path: Path, meta: str) -> None:
    r = random.Random(8)
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.bin": r.randbytes(3 * TEST_BLOCK_SIZE + 17), "empty": b"", "small.txt": b"small\n"}
    ok(bm(meta, "mkdir", "-p", "/docs/deep/er"))
    for name, data in files.items():
        (src / name).write_bytes(data)
        ok(bm(meta, "put", str(src / name), "/" if name == "a.bin" else "/docs"))
    ok(bm(meta, "put", str(src / "small.txt"), "/docs/deep/er"))
    ok(bm(meta, "ln", "/a.bin", "/docs/hard.bin"))
    ok(bm(meta, "ln", "-s", "../a.bin", "/docs/sym"))
    ok(bm(meta, "clone", "/docs", "/docs2"))
    ok(bm(meta, "mv", "/docs2/small.txt", "/moved.txt"))
    ok(bm(meta, "rm", "-r", "/docs/deep"))
    ok(bm(meta, "fsck"))
    # The binary reads the replica's metadata restored to a local file.
    restored = tmp_path / "restored.db"
    subprocess.run([str(Path(sys.executable).with_name("ltxctl")), "restore", meta, "-o", str(restored)],
                   check=True, capture_output=True, timeout=TIMEOUT)  # fmt: skip
    local = f"sqlite3://{restored}"
    proc = run_juicefs("fsck", local, "--path", "/", "--recursive", "--sync-dir-stat", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b0 leaked\b", gc_report(local))
    out = tmp_path / "out"
    out.mkdir()
    sync_out(local, out)
    assert (out / "a.bin").read_bytes() == files["a.bin"]
    assert (out / "docs" / "hard.bin").read_bytes() == files["a.bin"]
    assert os.readlink(out / "docs" / "sym") == "../a.bin"
    assert (out / "docs" / "empty").read_bytes() == b""
    assert (out / "docs2" / "deep" / "er" / "small.txt").read_bytes() == b"small\n"
    assert (out / "moved.txt").read_bytes() == b"small\n"
    assert not (out / "docs" / "deep").exists()


# --- trees: put -r, get -r, ls -R, several sources -----------------------------------------------


def _local_tree(root: Path, rng: random.Random, files: int = 12) -> dict[str, bytes]:
    """A local tree: nested directories, files of a few sizes, a symlink, an empty directory."""
    made: dict[str, bytes] = {}
    for i in range(files):
        rel = f"d{i % 3}/sub{i % 2}/f{i}.bin" if i % 4 else f"top{i}.txt"
        data = rng.randbytes(rng.choice((0, 10, TEST_BLOCK_SIZE + 7)))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        made[rel] = data
    (root / "empty").mkdir()
    (root / "d0" / "link").symlink_to("sub0/f4.bin")
    os.chmod(root / "d1", 0o750)
    return made


def _latest_txid(meta: str) -> int:
    replica = Replica.open(meta)
    try:
        return max(f.max_txid for files in replica.list_levels().values() for f in files)
    finally:
        replica.close()


def test_put_and_get_a_tree(tmp_path: Path, meta: str) -> None:
    src = tmp_path / "src"
    made = _local_tree(src, random.Random(81))
    out = ok(bm(meta, "put", "-r", str(src), "/")).stdout
    dirs = 1 + sum(1 for p in src.rglob("*") if p.is_dir() and not p.is_symlink())
    size = f"{sum(map(len, made.values())) / 1024:.1f} KiB"
    assert out.strip() == f"put {len(made)} files ({size}), {dirs} directories, 1 symbolic link"
    with Volume.open(meta, read_only=True) as vol:
        for rel, data in made.items():
            assert vol.read_file(f"/src/{rel}") == data
        assert vol.readlink("/src/d0/link") == "sub0/f4.bin"
        assert vol.listdir("/src/empty") == []
        assert vol.stat("/src/d1").st_mode & 0o777 == 0o750
    # Again into an existing tree: files replaced, nothing doubled.
    (src / "top0.txt").write_bytes(b"changed")
    ok(bm(meta, "put", "--recursive", str(src), "/"))
    out_dir = tmp_path / "out"
    got = ok(bm(meta, "get", "-r", "/src", str(out_dir))).stdout
    assert got.strip().startswith(f"got {len(made)} files")
    made["top0.txt"] = b"changed"
    for rel, data in made.items():
        assert (out_dir / rel).read_bytes() == data
    assert os.readlink(out_dir / "d0" / "link") == "sub0/f4.bin"
    assert (out_dir / "empty").is_dir() and list((out_dir / "empty").iterdir()) == []
    listing = ok(bm(meta, "ls", "-R", "/src")).stdout.split("\n\n")
    assert listing[0].splitlines() == ["/src:", "d0", "d1", "d2", "empty", "top0.txt", "top4.txt", "top8.txt"]
    assert listing[1].splitlines() == ["/src/d0:", "link", "sub0", "sub1"]
    long = ok(bm(meta, "ls", "-lR", "/src/d0")).stdout
    assert "/src/d0/sub0:" in long and "link -> sub0/f4.bin" in long


def test_put_several_sources_into_a_directory(tmp_path: Path, meta: str) -> None:
    files = {f"f{i}": random.Random(i).randbytes(100 + i) for i in range(3)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_bytes(b"inner")
    ok(bm(meta, "mkdir", "/in"))
    ok(bm(meta, "put", "-r", *(str(tmp_path / n) for n in files), str(tmp_path / "dir"), "/in"))
    with Volume.open(meta, read_only=True) as vol:
        assert sorted(vol.listdir("/in")) == ["dir", "f0", "f1", "f2"]
        assert all(vol.read_file(f"/in/{n}") == d for n, d in files.items())
        assert vol.read_file("/in/dir/inner") == b"inner"
    error(bm(meta, "put", str(tmp_path / "f0"), str(tmp_path / "f1"), "/nowhere"), "/nowhere", "not a directory")
    error(bm(meta, "put", str(tmp_path / "dir"), "/in2"), str(tmp_path / "dir"), "Is a directory")
    error(bm(meta, "get", "/in", str(tmp_path / "o")), "/in", "Is a directory")
    assert bm(meta, "put", "/only-one").exit_code == 2


def test_a_300_file_tree_goes_in_as_one_process(tmp_path: Path, meta: str) -> None:
    # One process and a few group commits, where a shell loop of `put` pays a process and at
    # least one commit per file.
    src = tmp_path / "tree"
    rng = random.Random(82)
    for i in range(300):
        path = src / f"d{i % 10}" / f"f{i:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(1, 3000)))
    before = _latest_txid(meta)
    proc = run_blockmap("put", "-r", "--meta", meta, str(src), "/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("put 300 files")
    assert _latest_txid(meta) - before < 30, "the files shipped in group-commit batches"
    with Volume.open(meta, read_only=True) as vol:
        for i in (0, 151, 299):
            assert vol.read_file(f"/tree/d{i % 10}/f{i:03d}") == (src / f"d{i % 10}" / f"f{i:03d}").read_bytes()
        assert sum(len(vol.listdir(f"/tree/d{k}")) for k in range(10)) == 300


# --- reporting: --json, --version, -v, usage exits, progress, Ctrl-C -----------------------------


def test_json_reports_of_ls_fsck_and_gc(tmp_path: Path, meta: str) -> None:
    ok(bm(meta, "mkdir", "/d"))
    ok(bm(meta, "put", "-", "/d/f", stdin=b"x" * 1000))
    ok(bm(meta, "ln", "-s", "f", "/d/l"))
    entries = json.loads(ok(bm(meta, "ls", "--json", "/d")).stdout)
    assert [(e["name"], e["path"], e["type"], e["size"]) for e in entries] == [
        ("f", "/d/f", "regular file", 1000), ("l", "/d/l", "symbolic link", 1)]
    assert entries[1]["target"] == "f"
    assert [e["path"] for e in json.loads(ok(bm(meta, "ls", "--json", "-R", "/")).stdout)] == ["/d", "/d/f", "/d/l"]
    fsck = json.loads(ok(bm(meta, "fsck", "--json")).stdout)
    assert fsck["ok"] is True and (fsck["files"], fsck["problems"]) == (1, [])
    gc = json.loads(ok(bm(meta, "gc", "--json", "--skip-age", "0")).stdout)
    assert (gc["valid"], gc["leaked"]) == (1, [])
    for block in block_files(tmp_path):
        block.unlink()
    result = bm(meta, "fsck", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


def test_version_verbose_and_usage_exits(tmp_path: Path, meta: str) -> None:
    from ltx.clifmt import version

    assert ok(runner.invoke(app, ["--version"])).stdout.strip() == f"blockmap {version()}"
    assert runner.invoke(app, ["--log-level", "loud", "ls", "--meta", meta]).exit_code == 2
    assert bm(meta, "ls", "--txid", "zz").exit_code == 2, "a bad option value is a usage error"
    assert bm(f"sqlite3://{tmp_path}/n.db", "format", "--data", f"file://{tmp_path}/d", "--block-size", "3X",
              NAME).exit_code == 2
    assert bm(meta, "cat", "/missing").exit_code == 1, "a failure is not a usage error"
    proc = run_blockmap("-v", "ls", "--meta", f"file://{tmp_path}/nothing-here")
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 1 and lines[0].startswith("blockmap: ") and "no volume here" in lines[0]


def test_progress_bars_for_large_files(tmp_path: Path, meta: str) -> None:
    from blockmap.clitree import PROGRESS_MIN_BYTES

    big = tmp_path / "big"
    big.write_bytes(random.Random(9).randbytes(PROGRESS_MIN_BYTES + 5))
    small = tmp_path / "small"
    small.write_bytes(b"tiny")
    put = ok(bm(meta, "put", "--progress", str(big), str(small), "/"))
    assert "put big" in put.stderr and "put small" not in put.stderr
    got = ok(bm(meta, "get", "--progress", "/big", str(tmp_path / "back")))
    assert "get big" in got.stderr
    assert (tmp_path / "back").read_bytes() == big.read_bytes()
    quiet = ok(bm(meta, "get", "--no-progress", "/big", str(tmp_path / "back2")))
    assert quiet.stderr == ""


def test_interrupt_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    # A command waiting on an S3 endpoint that accepts and never answers, interrupted (Ctrl-C).
    code, err = interrupt_first_request(
        lambda endpoint: [*BLOCKMAP, "ls", "--meta", f"s3://bucket/meta?endpoint={endpoint}&region=us-east-1"],
        ROOT, TIMEOUT)
    assert code == 130, err
    assert err.strip().splitlines() == ["blockmap: interrupted"]


def test_error_lines_name_what_was_typed_once(tmp_path: Path, meta: str) -> None:
    line = error(bm(meta, "ls", "--at", "yesterday"), "--at 'yesterday'", "5 minutes ago")
    assert "URI parameter" not in line and "ltxvfs:" not in line
    assert bm(meta, "ls", "--at", "yesterday").exit_code == 2
    line = error(bm(meta, "ls", "--txid", "ff"), "cannot restore to 00000000000000ff")
    assert line.count(meta) == 1 and "ltxvfs:" not in line and "metadata" not in line
    ok(bm(meta, "ls", "--at", "0 seconds ago"))


def test_format_takes_a_relative_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stored absolute: the volume opens from any directory afterwards.
    monkeypatch.chdir(tmp_path)
    meta = f"file://{tmp_path}/m"
    ok(bm(meta, "format", "--data", "vol-data", NAME))
    assert (tmp_path / "vol-data" / NAME / "juicefs_uuid").is_file()
    monkeypatch.chdir("/")
    ok(bm(meta, "put", "-", "/f", stdin=b"bytes"))
    assert ok(bm(meta, "cat", "/f")).stdout_bytes == b"bytes"
    assert json.loads(ok(bm(meta, "status", "--json")).stdout)["Data"] == f"file://{tmp_path}/vol-data"


def test_a_directory_path_is_the_replica_in_it(tmp_path: Path, meta: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # As ltxctl takes it: `--meta meta` (relative) is the replica in ./meta, not a SQLite file.
    ok(bm(meta, "put", "-", "/f", stdin=b"in the replica"))
    monkeypatch.chdir(tmp_path)
    assert ok(bm("meta", "cat", "/f")).stdout_bytes == b"in the replica"
    assert ok(bm(str(tmp_path / "meta"), "cat", "/f")).stdout_bytes == b"in the replica"
