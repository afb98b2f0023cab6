"""Hostile input at the edges: replica URLs, object keys, file-system names.

- Every entry point that takes a replica URL (open_store, Replica.open, each `ltxctl` command,
  `ltxctl hydrate`, the Hydrator, the VFS reader and writer) refuses each bad URL with an error
  that says what is wrong with it: one line on stderr and exit status 1 for the CLI, an
  exception of the documented class otherwise; a secret in the URL is never repeated. A missing
  bucket and wrong credentials are told apart, the same way everywhere.
- The file:// store, given any key (hypothesis: `..`, absolute paths, NUL, backslashes, unicode,
  symbolic links planted in its root that lead outside), never writes, reads or deletes outside
  its root.
- blockmap refuses names with NUL, names over 255 bytes (counted in bytes, not characters), and
  a '/' inside a name can only ever be a path separator; a refused operation changes nothing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockmap.volume import Volume
from hydrator.cli import main as hydrate_main
from hydrator.hydrator import Hydrator
from ltx import cli
from ltx.replica import Replica
from ltx.store import InvalidKeyError, InvalidURLError, StoreError, open_store
from ltx.store.file import FileStore
from tests.blockmap.metacheck import metadata_problems
from tests.reliability import tally
from tests.reliability.rowwriter import open_writer
from tests.s3server import S3Server
from tests.vfs.replicas import connect

SECRET = "hunter2-very-secret-value"

#: Bad URL -> what the error must say about it.
BAD_URLS: dict[str, str] = {
    "ftp://host/replica": "unknown scheme",
    "s3:///no-bucket/path": "missing bucket",
    "s3://": "missing bucket",
    "file://otherhost/srv/replica": "host name",
    "": "empty URL",
    "s3://bucket/p?bogus=1": "unknown query parameter",
    f"s3://AKIAEXAMPLE:{SECRET}@bucket/p": "credentials in the URL",
    "file:///tmp/replica?mode=ro": "no query parameters",
    "s3://bucket/p?force-path-style=maybe": "not a boolean",
    "s3://b!d_bucket/p": "invalid bucket name",
    "s3://bucket/p?endpoint=http://": "has no host",
}
#: Entry points the VFS cannot be given these through (an empty replica= is resolved
#: beside the database name, as documented).
VFS_RESOLVES = {""}


def one_line(capsys: pytest.CaptureFixture[str], code: int) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == cli.EXIT_FAILURE, captured
    assert len(lines) == 1 and lines[0].startswith("ltxctl: error: "), captured.err
    assert "Traceback" not in captured.err and SECRET not in captured.out
    return lines[0]


def chain(exc: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 10:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


EntryPoint = Callable[[str, Path, pytest.CaptureFixture[str]], str]


def raises(call: Callable[[], object], kinds: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    with pytest.raises(kinds) as caught:
        call()
    return chain(caught.value)


def source_db(tmp: Path) -> Path:
    path = tmp / "source.db"
    if not path.exists():
        conn = apsw.Connection(str(path))
        conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        conn.close()
    return path


ENTRY_POINTS: dict[str, EntryPoint] = {
    "open_store": lambda url, tmp, cap: raises(lambda: open_store(url), (InvalidURLError, StoreError)),
    "Replica.open": lambda url, tmp, cap: raises(lambda: Replica.open(url), (InvalidURLError, StoreError)),
    "ltxctl ls": lambda url, tmp, cap: one_line(cap, cli.main(["ls", url])),
    "ltxctl info": lambda url, tmp, cap: one_line(cap, cli.main(["info", url])),
    "ltxctl verify": lambda url, tmp, cap: one_line(cap, cli.main(["verify", url])),
    "ltxctl restore": lambda url, tmp, cap: one_line(cap, cli.main(["restore", url, "-o", str(tmp / "out.db")])),
    "ltxctl compact": lambda url, tmp, cap: one_line(cap, cli.main(["compact", url])),
    "ltxctl import": lambda url, tmp, cap: one_line(cap, cli.main(["import", str(source_db(tmp)), url])),
    "ltxctl hydrate": lambda url, tmp, cap: one_line(cap, hydrate_main(["hydrate", url, str(tmp / "h.db")])),
    "Hydrator": lambda url, tmp, cap: raises(lambda: Hydrator(url, tmp / "h.db").run(),
                                             (InvalidURLError, StoreError)),
    "VFS reader": lambda url, tmp, cap: raises(lambda: connect(tmp / "v.db", url, wait=0), apsw.CantOpenError),
    "VFS writer": lambda url, tmp, cap: raises(lambda: open_writer(tmp / "w.db", url), apsw.CantOpenError),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_bad_urls_are_refused_saying_why(entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for url, reason in BAD_URLS.items():
        if entry.startswith("VFS") and url in VFS_RESOLVES:
            continue
        tally.add(tally.HOSTILE)
        text = ENTRY_POINTS[entry](url, tmp_path, capsys)
        assert reason in text, f"{entry} given {url!r}: {text}"
        assert SECRET not in text, f"{entry} repeated the secret of {url!r}: {text}"
    assert not (tmp_path / "out.db").exists() and not (tmp_path / "h.db").exists()


@pytest.fixture
def wrong_credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    yield SECRET


@pytest.mark.parametrize("entry", sorted(set(ENTRY_POINTS) - {"open_store", "Replica.open"}))
def test_missing_bucket_and_wrong_credentials_are_told_apart(entry: str, s3_server: S3Server, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tally.add(tally.HOSTILE, 2)
    missing = s3_server.url("p", bucket="no-such-bucket-for-ltxvfs")
    text = ENTRY_POINTS[entry](missing, tmp_path, capsys)
    assert "no-such-bucket-for-ltxvfs" in text and "does not exist" in text, text
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    text = ENTRY_POINTS[entry](s3_server.url("p"), tmp_path, capsys)
    assert "access refused" in text and "AWS_ACCESS_KEY_ID" in text, text
    assert SECRET not in text and s3_server.secret_key not in text


# -- the file store's root --------------------------------------------------------------------

SEGMENTS = st.sampled_from(["..", ".", "", "a", "b", "ltx", "0", "x.ltx", "outside", "link", "dlink", "flink",
                            "\x00", "a\\..\\b", "ü", "~", "/", "//", " ", ".ltxvfs-tmp-x", "..."])


@st.composite
def hostile_keys(draw: st.DrawFn) -> str:
    parts = draw(st.lists(SEGMENTS | st.text(min_size=1, max_size=6), min_size=1, max_size=6))
    key = "/".join(parts)
    return ("/" + key) if draw(st.booleans()) and draw(st.booleans()) else key


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` (links not followed) with its bytes."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def test_the_file_store_never_leaves_its_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "ltx").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"keep")
    (outside / "ltx" / "x.ltx").write_bytes(b"keep too")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)  # a directory link leading out
    (root / "dlink").symlink_to(outside / "not-there-yet")  # a dangling link leading out
    (root / "flink").symlink_to(outside / "secret.txt")  # a file link leading out
    (root / "a").mkdir()
    (root / "a" / "up").symlink_to("../../outside", target_is_directory=True)
    before = tree(outside)
    store = FileStore(str(root))
    outcomes: dict[str, int] = {}

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(hostile_keys())
    def check(key: str) -> None:
        tally.add(tally.HOSTILE)
        for action, call in (("put", lambda: store.put(key, b"evil")),
                             ("put if absent", lambda: store.put(key, b"evil", if_absent=True)),
                             ("get", lambda: store.get(key)), ("head", lambda: store.head(key)),
                             ("delete", lambda: store.delete(key)),
                             ("list", lambda: list(store.list(key.rstrip("/") + "/")))):
            try:
                call()
                outcomes[action] = outcomes.get(action, 0) + 1
            except (InvalidKeyError, StoreError):
                outcomes[f"{action} refused"] = outcomes.get(f"{action} refused", 0) + 1
        assert tree(outside) == before, f"key {key!r} reached outside the root"
        for path in root.rglob("*"):
            if not path.is_symlink() and path.is_file():
                assert path.resolve().is_relative_to(root.resolve()), path

    check()
    assert tree(outside) == before
    assert outcomes.get("put refused", 0) > 0 and outcomes.get("put", 0) > 0, outcomes
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.put("link/secret.txt", b"evil")
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.put("dlink", b"evil")
    with pytest.raises(InvalidKeyError):
        store.delete("flink")
    assert (outside / "secret.txt").read_bytes() == b"keep" and not (outside / "not-there-yet").exists()


# -- blockmap names ---------------------------------------------------------------------------

MAX_NAME = 255


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Volume]:
    (tmp_path / "data").mkdir()
    vol = Volume.format(f"sqlite3://{tmp_path}/meta.db", f"file://{tmp_path}/data", "hostile")
    vol.mkdir("/d")
    vol.write_file("/d/f", b"content")
    try:
        yield vol
    finally:
        vol.close()


def names() -> st.SearchStrategy[bytes]:
    """Names that must be refused: with NUL, or longer than 255 bytes (also in few characters)."""
    with_nul = st.tuples(st.binary(max_size=20), st.binary(max_size=20)).map(lambda t: t[0] + b"\0" + t[1])
    long_ascii = st.integers(MAX_NAME + 1, 600).map(lambda n: b"n" * n)
    long_utf8 = st.integers(MAX_NAME // 2 + 1, 200).map(lambda n: ("é" * n).encode())  # 2 bytes a character
    return with_nul | long_ascii | long_utf8


def snapshot_of(vol: Volume) -> tuple[list[str], list[str]]:
    return sorted(vol.listdir("/")), sorted(vol.listdir("/d"))


def test_blockmap_refuses_bad_names_and_changes_nothing(volume: Volume) -> None:
    before = snapshot_of(volume)

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(names())
    def check(name: bytes) -> None:
        tally.add(tally.HOSTILE)
        path = b"/d/" + name
        want = errno.EINVAL if b"\0" in name else errno.ENAMETOOLONG
        for action, call in (("create", lambda: volume.create(path)), ("mkdir", lambda: volume.mkdir(path)),
                             ("symlink", lambda: volume.symlink(b"/d/f", path)),
                             ("link", lambda: volume.link(b"/d/f", path)),
                             ("rename", lambda: volume.rename(b"/d/f", path)),
                             ("write_file", lambda: volume.write_file(path, b"x"))):
            with pytest.raises(OSError) as caught:
                call()
            assert caught.value.errno == want, f"{action} {name[:40]!r}: {caught.value}"
        assert snapshot_of(volume) == before

    check()
    assert metadata_problems(volume_meta(volume)) == []
    assert volume.read_file("/d/f") == b"content"


def test_a_slash_in_a_name_is_only_ever_a_separator(volume: Volume) -> None:
    """'/' splits a path; a name holding one cannot be created, and a lookup of one finds nothing."""
    tally.add(tally.HOSTILE, 3)
    with pytest.raises(FileNotFoundError):
        volume.create(b"/d/no-such-dir/f")
    root = volume.stat("/").st_ino
    assert volume.lookup(root, b"d/f") is None
    volume.create(b"/d//g")  # empty components are skipped, as the kernel does
    assert snapshot_of(volume)[1] == ["f", "g"]
    assert metadata_problems(volume_meta(volume)) == []


def volume_meta(vol: Volume) -> str:
    """The path of the volume's metadata database, for the independent metadata checker."""
    return str(vol.engine.db.conn.filename)
