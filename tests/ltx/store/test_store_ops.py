"""Every ObjectStore operation, run against every store class (file://, and s3:// against the real
S3 server, directly and through an HTTP proxy)."""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Iterator

import pytest

from ltx.store import (
    InvalidKeyError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectRangeError,
    ObjectStore,
    open_store,
)
from ltx.store.file import FileStore
from ltx.store.s3 import S3Store
from tests.s3proxy import S3Proxy
from tests.s3server import S3Server

#: A host name that never resolves (RFC 6761 reserves .invalid).
UNRESOLVABLE_HOST = "s3.ltxvfs.invalid"


@pytest.fixture(params=["file", "s3", "s3-through-proxy"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ObjectStore]:
    """Each store class (FileStore, S3Store), and S3Store through the HTTP proxy the environment
    names: the endpoint's host does not resolve, so only the proxy can carry the requests."""
    if request.param != "s3-through-proxy":
        s = open_store(request.getfixturevalue(f"{request.param}_url"))
        yield s
        s.close()
        return
    server: S3Server = request.getfixturevalue("s3_server")
    url = request.getfixturevalue("s3_url").replace(server.endpoint, f"http://{UNRESOLVABLE_HOST}:8333")
    with S3Proxy(server.endpoint) as proxy:
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url)
        s = open_store(url)
        assert isinstance(s, S3Store) and s.proxied
        yield s
        s.close()
        assert proxy.counts(), "the requests went through the proxy"


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class OneWayStream(io.RawIOBase):
    """A readable stream that cannot seek or tell (like a pipe), handing out small pieces."""

    def __init__(self, data: bytes, piece: int = 7919) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._piece = piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._piece, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


# -- put / get / head ------------------------------------------------------------------------------

def test_put_get_roundtrip_and_head(store: ObjectStore) -> None:
    data = blob(1, 10_000)
    store.put("ltx/0/0000000000000001-0000000000000001.ltx", data)
    assert store.get("ltx/0/0000000000000001-0000000000000001.ltx") == data
    info = store.head("ltx/0/0000000000000001-0000000000000001.ltx")
    assert info.key == "ltx/0/0000000000000001-0000000000000001.ltx"
    assert info.size == len(data)
    assert info.modified.tzinfo is not None


def test_put_from_streams(store: ObjectStore) -> None:
    seekable = blob(2, 300_000)
    store.put("streams/seekable", io.BytesIO(seekable))
    assert store.get("streams/seekable") == seekable
    oneway = blob(3, 200_003)
    store.put("streams/oneway", io.BufferedReader(OneWayStream(oneway)), if_absent=True)
    assert store.get("streams/oneway") == oneway
    # A seekable stream is stored from its current position on.
    partial = io.BytesIO(b"skip-me:" + seekable[:1000])
    partial.seek(8)
    store.put("streams/partial", partial)
    assert store.get("streams/partial") == seekable[:1000]


def test_empty_object(store: ObjectStore) -> None:
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.head("empty").size == 0
    assert store.get_suffix("empty", 10) == (b"", 0)
    assert store.get_range("empty", 0, 0) == b""
    with pytest.raises(ObjectRangeError):
        store.get_range("empty", 0, 1)


def test_overwrite_without_if_absent_replaces(store: ObjectStore) -> None:
    store.put("k", b"first")
    store.put("k", b"second, longer")
    assert store.get("k") == b"second, longer"


def test_timestamp_is_recorded(store: ObjectStore) -> None:
    ts = 1_700_000_000_123
    store.put("ts/a.ltx", b"x" * 100, timestamp_ms=ts, if_absent=True)
    assert store.head("ts/a.ltx").timestamp_ms == ts


# -- create if absent ------------------------------------------------------------------------------

def test_if_absent_conflict_keeps_the_original(store: ObjectStore) -> None:
    original = blob(4, 5000)
    store.put("commit/0000000000000007-0000000000000007.ltx", original, if_absent=True,
              timestamp_ms=1_600_000_000_000)
    before = store.head("commit/0000000000000007-0000000000000007.ltx")
    with pytest.raises(ObjectExistsError) as caught:
        store.put("commit/0000000000000007-0000000000000007.ltx", blob(5, 7000), if_absent=True,
                  timestamp_ms=1_700_000_000_000)
    assert "commit/0000000000000007-0000000000000007.ltx" in str(caught.value)
    assert store.get("commit/0000000000000007-0000000000000007.ltx") == original
    after = store.head("commit/0000000000000007-0000000000000007.ltx")
    assert after.size == before.size and after.timestamp_ms == 1_600_000_000_000
    # Nothing else appeared beside it (no temporary or second object).
    assert [i.key for i in store.list("commit/")] == ["commit/0000000000000007-0000000000000007.ltx"]


def test_if_absent_from_a_stream_conflicts_too(store: ObjectStore) -> None:
    store.put("c/x", b"one", if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put("c/x", io.BytesIO(b"two"), if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put("c/x", io.BufferedReader(OneWayStream(b"three")), if_absent=True)
    assert store.get("c/x") == b"one"


def test_racing_creates_have_exactly_one_winner(store: ObjectStore) -> None:
    writers = 8
    payloads = [f"writer {i} ".encode() * (100 + i) for i in range(writers)]
    outcomes: list[str] = [""] * writers
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        barrier.wait()
        try:
            store.put("race/0000000000000002-0000000000000002.ltx", payloads[i], if_absent=True)
            outcomes[i] = "won"
        except ObjectExistsError:
            outcomes[i] = "lost"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1, outcomes
    assert outcomes.count("lost") == writers - 1
    winner = outcomes.index("won")
    assert store.get("race/0000000000000002-0000000000000002.ltx") == payloads[winner]


# -- list --------------------------------------------------------------------------------------------

LIST_KEYS = [
    "ltx/0/0000000000000001-0000000000000001.ltx",
    "ltx/0/0000000000000002-0000000000000002.ltx",
    "ltx/0/000000000000000a-000000000000000a.ltx",
    "ltx/0/0000000000000010-0000000000000011.ltx",
    "ltx/1/0000000000000001-0000000000000011.ltx",
    "ltx/9/0000000000000001-0000000000000011.ltx",
    "ltx/10/0000000000000001-0000000000000002.ltx",
    "ltx/00/deep/nested/key",
    "ltx/0a",
    "ltx/zz",
    "other/key",
    "ltx_other",
]
#: Keys with a character below '/' where another key has a '/' ("ltx.txt" < "ltx/…" in byte
#: order) are left out here: SeaweedFS lists directory by directory and orders them differently
#: (see test_s3_store.py and test_file_store.py for those).


def _fill(store: ObjectStore) -> None:
    """Store LIST_KEYS in a shuffled order; each object's size is 10 + its index in LIST_KEYS."""
    order = list(enumerate(LIST_KEYS))
    random.Random(11).shuffle(order)
    for i, key in order:
        store.put(key, blob(i, 10 + i))


def test_list_everything_in_key_order(store: ObjectStore) -> None:
    _fill(store)
    listed = list(store.list(""))
    assert [i.key for i in listed] == sorted(LIST_KEYS)
    assert {i.key: i.size for i in listed} == {key: 10 + i for i, key in enumerate(LIST_KEYS)}


def test_list_prefix_and_start_after(store: ObjectStore) -> None:
    _fill(store)
    level0 = [k for k in sorted(LIST_KEYS) if k.startswith("ltx/0/")]
    assert [i.key for i in store.list("ltx/0/")] == level0
    assert [i.key for i in store.list("ltx/0")] == [k for k in sorted(LIST_KEYS) if k.startswith("ltx/0")]
    assert [i.key for i in store.list("ltx/0/00000000000000")] == [
        k for k in level0 if k.startswith("ltx/0/00000000000000")]
    # start_after is exclusive, and need not be an existing key.
    after = "ltx/0/0000000000000002-0000000000000002.ltx"
    assert [i.key for i in store.list("ltx/0/", start_after=after)] == [k for k in level0 if k > after]
    assert [i.key for i in store.list("ltx/0/", start_after="ltx/0/0000000000000003")] == [
        k for k in level0 if k > "ltx/0/0000000000000003"]
    assert list(store.list("ltx/0/", start_after="ltx/0/z")) == []
    assert list(store.list("nothing/here/")) == []
    assert [i.key for i in store.list("ltx/00/")] == ["ltx/00/deep/nested/key"]


def test_list_of_a_missing_location_is_empty(store: ObjectStore) -> None:
    assert list(store.list("")) == []
    assert list(store.list("ltx/0/")) == []


# -- ranges, suffixes, streams -----------------------------------------------------------------------

def test_get_range(store: ObjectStore) -> None:
    data = blob(6, 100_000)
    store.put("r", data)
    for offset, length in [(0, 1), (0, 100), (4096, 4096), (99_999, 1), (12_345, 50_000), (0, 100_000)]:
        assert store.get_range("r", offset, length) == data[offset:offset + length]
    assert store.get_range("r", 500, 0) == b""


@pytest.mark.parametrize("offset,length", [(99_990, 20), (100_000, 1), (200_000, 10)])
def test_get_range_past_the_end_is_an_error(store: ObjectStore, offset: int, length: int) -> None:
    store.put("short", blob(7, 100_000))
    with pytest.raises(ObjectRangeError) as caught:
        store.get_range("short", offset, length)
    err = caught.value
    assert err.key == "short" and err.offset == offset and err.length == length
    assert err.size == 100_000
    assert "short" in str(err) and str(offset) in str(err)


def test_get_suffix(store: ObjectStore) -> None:
    data = blob(8, 50_000)
    store.put("s", data)
    assert store.get_suffix("s", 1000) == (data[-1000:], 50_000)
    assert store.get_suffix("s", 50_000) == (data, 50_000)
    assert store.get_suffix("s", 80_000) == (data, 50_000)
    assert store.get_suffix("s", 0) == (b"", 50_000)


def test_open_streams_the_whole_object(store: ObjectStore) -> None:
    data = blob(9, 3 * 1024 * 1024 + 17)
    store.put("big", data)
    pieces = []
    with store.open("big") as stream:
        assert stream.read(10) == data[:10]
        pieces.append(data[:10])
        while chunk := stream.read(123_457):
            pieces.append(chunk)
    assert b"".join(pieces) == data
    with store.open("big") as stream:
        assert stream.read() == data


# -- delete and missing keys -------------------------------------------------------------------------

def test_delete(store: ObjectStore) -> None:
    store.put("d/1", b"one")
    store.put("d/2", b"two")
    store.delete("d/1")
    assert [i.key for i in store.list("d/")] == ["d/2"]
    with pytest.raises(ObjectNotFoundError):
        store.get("d/1")
    store.delete("d/1")  # deleting a missing key is not an error
    store.delete("never/existed")
    # The name is free again for a create-if-absent.
    store.put("d/1", b"again", if_absent=True)
    assert store.get("d/1") == b"again"


def test_missing_key_errors_name_the_key(store: ObjectStore) -> None:
    store.put("present", b"x")
    calls = [
        lambda: store.get("absent/key"),
        lambda: store.get_range("absent/key", 0, 1),
        lambda: store.get_suffix("absent/key", 10),
        lambda: store.head("absent/key"),
        lambda: store.open("absent/key"),
    ]
    for call in calls:
        with pytest.raises(ObjectNotFoundError) as caught:
            call()
        assert caught.value.key == "absent/key"
        assert "absent/key" in str(caught.value)


@pytest.mark.parametrize("key", ["", "/abs", "../escape", "a/../../escape", "a//b", "a/./b", "a/", ".",
                                 "nul\x00byte", "new\nline", "back\\slash"])
def test_bad_keys_are_refused_everywhere(store: ObjectStore, key: str) -> None:
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.head(key),
                 lambda: store.get_range(key, 0, 1), lambda: store.delete(key)):
        with pytest.raises(InvalidKeyError):
            call()
    assert list(store.list("")) == []


# -- stats ---------------------------------------------------------------------------------------------

def test_stats_count_requests_and_bytes(store: ObjectStore) -> None:
    start = store.stats.snapshot()
    store.put("st/a", b"a" * 1000)
    store.put("st/b", b"b" * 500, if_absent=True)
    store.get("st/a")
    store.get_range("st/a", 10, 100)
    store.get_suffix("st/b", 50)
    store.head("st/a")
    list(store.list("st/"))
    with store.open("st/b") as f:
        f.read()
    store.delete("st/a")
    now = store.stats.snapshot()
    delta = {k: now[k] - start[k] for k in now}
    assert delta["puts"] == 2
    assert delta["bytes_written"] == 1500
    assert delta["gets"] == 4
    assert delta["bytes_read"] == 1000 + 100 + 50 + 500
    assert delta["heads"] == 1
    assert delta["lists"] == 1
    assert delta["deletes"] == 1
    assert delta["retries"] == 0


def test_keys_with_unusual_characters(store: ObjectStore) -> None:
    keys = ["sp ace/x", "uni/çé漢字", "sym/a+b=c&d", "pct/%41%2F", "tilde/~x"]
    for i, key in enumerate(keys):
        store.put(key, f"value {i}".encode())
    for i, key in enumerate(keys):
        assert store.get(key) == f"value {i}".encode()
        assert store.get_range(key, 0, 5) == b"value"
    assert [i.key for i in store.list("")] == sorted(keys)
    assert os.sep == "/"  # the file store maps '/' to directories


# -- listing while objects come and go ----------------------------------------------------------------

def test_listing_during_in_order_creates_and_deletes_has_no_holes(store: ObjectStore) -> None:
    """A writer creates keys in key order (as LTX files are), a cleaner deletes the oldest ones in
    order, a reader lists meanwhile: each listing is one contiguous run of keys."""
    # Many keys for the file store (a directory read misses a new file only now and then);
    # fewer against the server, where each create and delete is a request.
    total = 400 if isinstance(store, FileStore) else 120
    keys = [f"ltx/0/{i:016x}-{i:016x}.ltx" for i in range(1, total + 1)]
    created = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for key in keys:
                store.put(key, b"x", if_absent=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            created.set()

    def cleaner() -> None:
        try:
            for key in keys[: total // 2]:
                while not any(True for _ in store.list("ltx/0/", start_after=key)):
                    if created.is_set():
                        break
                store.delete(key)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=cleaner)]
    for t in threads:
        t.start()
    listings = 0
    while not created.is_set() or listings == 0:
        seen = [int(i.key[6:22], 16) for i in store.list("ltx/0/")]
        assert seen == list(range(seen[0], seen[-1] + 1)) if seen else True, f"hole in {seen}"
        listings += 1
    for t in threads:
        t.join()
    assert not errors, errors
    final = [i.key for i in store.list("ltx/0/")]
    assert final == keys[total // 2:]
