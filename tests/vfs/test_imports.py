"""What a new process loads to read through ltxvfs: `import vfs` registers the VFS and nothing
more; a read-only connection loads the reader, and never numpy, the hydrator, the writer, group
commit, compaction or (for a file:// replica) the S3 client. Each check runs in a new interpreter,
so a module that another test imported cannot hide an eager import. A new eager import fails
here: add it to the pinned sets only when a read-only connection really needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import apsw

from ltx.importer import import_database
from ltx.replica import Replica

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("ltx", "vfs", "hydrator", "blockmap")

#: Every module `import vfs` adds (project and third-party; the standard library's are not pinned).
IMPORT_VFS = {"apsw", "vfs", "vfs.journal", "vfs.process", "vfs.resolve", "vfs.vfs"}

#: The project's modules a read-only connection to a file:// replica loads by its first row.
READ_PATH = {
    "ltx", "ltx._frames", "ltx.btree", "ltx.checksum", "ltx.decoder", "ltx.errors", "ltx.frame", "ltx.fsutil",
    "ltx.header", "ltx.hint", "ltx.index", "ltx.names", "ltx.native", "ltx.pageslots", "ltx.pagesums", "ltx.pagewrite",
    "ltx.plan", "ltx.reader", "ltx.replica", "ltx.store", "ltx.store.base", "ltx.store.file", "ltx.store.keys",
    "ltx.store.url", "ltx.timefmt", "ltx.trailer",
    "vfs", "vfs.errors", "vfs.fetch", "vfs.file", "vfs.firstlook", "vfs.follower", "vfs.hint", "vfs.journal",
    "vfs.lazyindex", "vfs.opening", "vfs.options", "vfs.pagecache", "vfs.pagemap", "vfs.parallel", "vfs.pragmas",
    "vfs.process", "vfs.readahead", "vfs.resolve", "vfs.sparseindex", "vfs.stats", "vfs.vfs", "vfs.view",
}
#: The third-party packages it loads.
READ_PATH_THIRD_PARTY = {"apsw", "cachetools", "fastcrc", "lz4"}
#: Never loaded by a read-only connection (whatever else changes).
NEVER_READING = ("numpy", "hydrator", "vfs.writefile", "vfs.writer", "vfs.autocompact", "ltx.compaction",
                 "ltx.store.s3", "boto3", "botocore", "urllib3")
#: Modules of the reader that an s3:// open loads only after its first requests have left.
FIRST_LOOK_LATER = ("ltx.plan", "ltx.decoder", "ltx.reader", "vfs.view", "vfs.file", "vfs.pagemap")

CHILD = """
import json, sys
at_connect = []
def first_connect(event, args):
    if event == "socket.connect" and not at_connect:
        at_connect.append(sorted(sys.modules))
sys.addaudithook(first_connect)
before = set(sys.modules)
import vfs
imported = sorted(set(sys.modules) - before)
rows = None
if len(sys.argv) > 1:
    import apsw
    con = apsw.Connection(sys.argv[1], vfs="ltxvfs", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    rows = con.execute("SELECT id, length(v) FROM t WHERE id = 77").fetchall()
print(json.dumps({"import": imported, "read": sorted(set(sys.modules) - before), "rows": rows,
                  "at_first_request": at_connect[0] if at_connect else None}))
"""


def _child(*args: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def _ours_and_third_party(modules: object) -> set[str]:
    """The modules that are not the standard library's."""
    assert isinstance(modules, list)
    stdlib = sys.stdlib_module_names
    return {m for m in modules if m.split(".")[0] not in stdlib and not m.startswith("_")}


def _replica(tmp_path: Path) -> str:
    """A file:// replica of a ~1 MB database (a snapshot with a page checksum sidecar, and a hint)."""
    db = tmp_path / "src.db"
    conn = apsw.Connection(str(db))
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, os.urandom(200).hex()) for i in range(2000)])
    conn.close()
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    try:
        import_database(str(db), replica, tmpdir=str(tmp_path))
    finally:
        replica.close()
    return url


def test_import_vfs_loads_only_the_registration() -> None:
    got = _child()
    assert _ours_and_third_party(got["import"]) == IMPORT_VFS


def test_read_only_connection_loads_only_the_reader(tmp_path: Path) -> None:
    url = _replica(tmp_path)
    got = _child(f"file:app.db?mode=ro&replica={quote(url, safe='')}")
    assert got["rows"] == [[77, 400]]
    loaded = _ours_and_third_party(got["read"])
    for name in NEVER_READING:
        assert not any(m == name or m.startswith(name + ".") for m in loaded), f"a reader loaded {name}"
    assert {m for m in loaded if m.split(".")[0] in PROJECT} == READ_PATH
    assert {m.split(".")[0] for m in loaded if m.split(".")[0] not in PROJECT} == READ_PATH_THIRD_PARTY


def test_s3_reader_loads_the_s3_path(s3_url: str, tmp_path: Path) -> None:
    """An s3:// reader loads the S3 store, and still neither numpy, the hydrator nor the writer;
    on an http:// endpoint not http.client nor ssl either."""
    db = tmp_path / "src.db"
    conn = apsw.Connection(str(db))
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 400) for i in range(100)])
    conn.close()
    replica = Replica.open(s3_url)
    try:
        import_database(str(db), replica, tmpdir=str(tmp_path))
    finally:
        replica.close()
    got = _child(f"file:app.db?mode=ro&replica={quote(s3_url, safe='')}")
    assert got["rows"] == [[77, 400]]
    loaded = _ours_and_third_party(got["read"])
    assert "ltx.store.s3" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("numpy", "hydrator", "boto3", "botocore")}
    assert not {"vfs.writefile", "vfs.autocompact", "ltx.compaction"} & loaded
    # A plain-HTTP endpoint: the store's own HTTP/1.1 connection, never http.client, email or ssl;
    # requests are signed with CPython's own SHA-256, never hashlib's OpenSSL.
    everything = got["read"]
    assert isinstance(everything, list)
    assert not {m for m in everything
                if m.split(".")[0] in ("ssl", "_ssl", "email", "hashlib", "_hashlib") or m == "http.client"}
    # The open's first requests leave before the reader's modules load (they load while the
    # requests are in flight: vfs/firstlook.py).
    early = got["at_first_request"]
    assert isinstance(early, list)
    assert not set(FIRST_LOOK_LATER) & set(early), set(FIRST_LOOK_LATER) & set(early)
